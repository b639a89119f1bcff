//! An evaluation from start to end, as a library: plan (compose the config,
//! resolve lm-eval task files and the shard), open or resume the run folder,
//! execute, finish (metrics, manifest). `infer-eval eval` turns its flags
//! into an `ExperimentSpec` and prints; a sweep opens one per point.
//!
//! Everything that can refuse a run (bad config, data drift, a model that
//! does not load, a context too small, a store serving bad records, a
//! `--run-dir` holding something else) does so in `Experiment::open`,
//! before a run folder exists.

use super::config::{self, Composed, EvalConfig};
use super::folder::{self, RunOutcome};
use super::manifest::{Fingerprint, FINGERPRINT, INCOMPLETE};
use super::run::{self, Prepared};
use super::sample::CacheMode;
use super::shard::{self, Shard};
use crate::baseline::Store;
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use std::path::{Path, PathBuf};

/// lm-evaluation-harness task files evaluated instead of the config's task.
#[derive(Debug, Clone, Default)]
pub struct LmEvalTasks {
    /// Task YAML files, or task names found under `include_path`.
    pub tasks: Vec<String>,
    pub include_path: Vec<PathBuf>,
    pub num_fewshot: Option<usize>,
    pub fewshot_seed: u64,
    /// lm-eval's `max_length` model argument.
    pub max_length: Option<usize>,
}

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Composed from the config groups with overrides (and lm-eval tasks).
    Compose {
        overrides: Vec<String>,
        lm_eval: LmEvalTasks,
    },
    /// An unfinished run folder, with its recorded config.
    Resume(PathBuf),
}

/// Where the run folder goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// `<outputs>/<date>/<time>-<name>` (default outputs: `<root>/outputs`).
    Outputs(Option<PathBuf>),
    /// Exactly this folder: a new run, or an unfinished run of the same
    /// config resumed, or a finished one left as it is.
    RunDir(PathBuf),
}

/// Everything an evaluation is asked to be.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    /// The folder of config groups; the project root is its parent.
    pub config_dir: PathBuf,
    pub source: Source,
    pub destination: Destination,
    /// `--shard-index` and `--shard-count`; without them the environment
    /// (a Slurm array task, a Kubernetes Indexed Job pod) may name a shard.
    pub shard_flags: (Option<usize>, Option<usize>),
    pub cache: CacheMode,
    /// The baseline store (default: `baseline::default_path()`).
    pub store: Option<PathBuf>,
    pub allow_data_drift: bool,
}

/// What `Experiment::open` found.
pub enum Opened {
    /// The run folder already holds this run, finished and proven.
    Complete {
        dir: PathBuf,
        run_digest: String,
    },
    Ready(Box<Experiment>),
}

/// A planned evaluation with its run folder, ready to execute.
pub struct Experiment {
    pub prep: Prepared,
    pub dir: PathBuf,
    /// The folder held an unfinished run of this config: its kept samples
    /// are checked and reused.
    pub resumed: bool,
    pub threads: usize,
    /// The shard this run computes, and where that came from.
    pub shard: Option<(Shard, String)>,
    /// Samples the baseline store serves (with `CacheMode::Read`).
    pub store_hits: Option<usize>,
    store: Option<Store>,
    cache: CacheMode,
}

/// The project root: the parent of the config folder.
pub fn project_root(config_dir: &Path) -> Result<PathBuf> {
    if !config_dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no config folder here; run from the project root or pass --config-dir",
            config_dir.display()
        )));
    }
    let abs = std::fs::canonicalize(config_dir).map_err(|e| Error::io(config_dir, e))?;
    Ok(abs.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// Threads a config runs with (default: the cores).
pub fn threads_of(c: &EvalConfig) -> usize {
    c.run.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// What `--run-dir DIR` finds there.
enum RunDirState {
    New,
    /// An unfinished run of the same config: resume it.
    Unfinished,
    /// A finished run of the same config: nothing to do.
    Finished,
}

fn run_dir_state(dir: &Path, config_yaml: &str) -> Result<RunDirState> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::bad_file(
            dir,
            "--run-dir: is not a folder (a file is there); pick a folder",
        ));
    }
    let empty = !dir.exists()
        || std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .next()
            .is_none();
    if empty {
        return Ok(RunDirState::New);
    }
    let cfg = dir.join("config.yaml");
    let recorded = match crate::fsio::regular_size(&cfg) {
        Ok(_) => std::fs::read_to_string(&cfg).unwrap_or_default(),
        Err(_) => String::new(),
    };
    if recorded != config_yaml {
        return Err(Error::Usage(format!(
            "--run-dir {}: holds {} (remove it, or pick another folder)",
            dir.display(),
            if recorded.is_empty() {
                "something other than a run folder"
            } else {
                "a run of another config"
            }
        )));
    }
    Ok(if dir.join(INCOMPLETE).exists() {
        RunDirState::Unfinished
    } else {
        RunDirState::Finished
    })
}

/// The shard a run folder was started as (None: not a shard).
pub fn recorded_shard(dir: &Path) -> Result<Option<Shard>> {
    let p = dir.join(FINGERPRINT);
    if !p.exists() {
        // A folder from before fingerprints: never a shard.
        return Ok(None);
    }
    let fp: Fingerprint = serde_json::from_slice(&crate::fsio::read_regular(&p, 1 << 20)?)
        .map_err(|e| Error::bad_file(&p, format!("not a run fingerprint: {e}")))?;
    Ok(fp.shard)
}

/// Replace the composed config's task with lm-eval task files.
fn with_lm_eval_tasks(c: &mut Composed, t: &LmEvalTasks, root: &Path) -> Result<()> {
    let datasets = t
        .tasks
        .iter()
        .map(|name| {
            super::lmeval::prepare::dataset_config(
                name,
                &t.include_path,
                root,
                t.num_fewshot,
                t.fewshot_seed,
                t.max_length,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let name = datasets
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    c.config.task = config::TaskConfig {
        name: name.clone(),
        datasets,
        fewshot: None,
    };
    c.config.name = name;
    config::validate(&c.config).map_err(Error::Input)?;
    let tree = c.tree.as_object_mut().expect("a mapping");
    let task = serde_json::to_value(&c.config.task)
        .map_err(|e| Error::Input(format!("task config: {e}")))?;
    tree.insert("task".into(), task);
    tree.insert(
        "name".into(),
        serde_json::Value::from(c.config.name.clone()),
    );
    for t in &t.tasks {
        c.overrides.push(format!("--lm-eval-task={t}"));
    }
    Ok(())
}

impl Experiment {
    /// Plan the run and open its folder: compose (or read back) the config,
    /// resolve the shard (`env` reads Slurm and Kubernetes variables), load
    /// the model (`load`, by the config's model name), prepare every
    /// sample, check what the store would serve, and make or reopen the
    /// run folder. Nothing is written before every check has passed.
    /// (`load` may fail with the caller's own error type.)
    pub fn open<E: From<Error>>(
        spec: &ExperimentSpec,
        env: impl Fn(&str) -> Option<String>,
        load: impl FnOnce(&str) -> std::result::Result<LoadedModel, E>,
    ) -> std::result::Result<Opened, E> {
        let root = project_root(&spec.config_dir)?;
        let (cfg, composed) = match &spec.source {
            Source::Resume(dir) => {
                if !dir.join(INCOMPLETE).exists() {
                    return Err(Error::Usage(format!(
                        "{}: not an incomplete run (no {} marker)",
                        dir.display(),
                        INCOMPLETE
                    ))
                    .into());
                }
                (config::load_resolved(&dir.join("config.yaml"))?.0, None)
            }
            Source::Compose { overrides, lm_eval } => {
                let own_task = lm_eval.tasks.is_empty();
                let mut c = config::compose_for(&spec.config_dir, overrides, own_task)?;
                if !own_task {
                    with_lm_eval_tasks(&mut c, lm_eval, &root)?;
                }
                (c.config.clone(), Some(c))
            }
        };
        let shard = match &spec.source {
            Source::Resume(d) => recorded_shard(d)?.map(|s| (s, "resumed".to_string())),
            Source::Compose { .. } => shard::resolve(spec.shard_flags.0, spec.shard_flags.1, env)?,
        };
        let state = match (&spec.destination, &composed) {
            (Destination::RunDir(d), Some(c)) => run_dir_state(d, &config::to_yaml(&c.tree))?,
            _ => RunDirState::New,
        };
        if let (RunDirState::Finished, Destination::RunDir(d)) = (&state, &spec.destination) {
            let want = shard.as_ref().map(|(s, _)| *s);
            let recorded = recorded_shard(d)?;
            if recorded != want {
                return Err(Error::Usage(format!(
                    "--run-dir {}: holds a finished run of another shard (recorded {recorded:?}, now {want:?})",
                    d.display(),
                ))
                .into());
            }
            let m = super::proof::check_run_folder(d)?.manifest;
            return Ok(Opened::Complete {
                dir: d.clone(),
                run_digest: m.run_digest,
            });
        }
        // Data, templates and the model are checked before a run folder exists.
        let loaded = load(&cfg.model.name)?;
        let mut prep = run::prepare(&cfg, &root, loaded, spec.allow_data_drift)?;
        if let Some((s, source)) = &shard {
            let tree = match (&composed, &spec.source) {
                (Some(c), _) => c.tree.clone(),
                (None, Source::Resume(d)) => config::load_resolved(&d.join("config.yaml"))?.1,
                (None, Source::Compose { .. }) => unreachable!("composed when not resuming"),
            };
            prep.select_shard(*s, source, &tree);
        }
        // The store is opened, and what it would serve checked, before a
        // run folder exists.
        let mut store = match spec.cache {
            CacheMode::Off => None,
            _ => Some(Store::open(
                &spec
                    .store
                    .clone()
                    .unwrap_or_else(crate::baseline::default_path),
            )?),
        };
        let store_hits = match (store.as_mut(), spec.cache) {
            (Some(st), CacheMode::Read) => Some(prep.check_store(st)?),
            _ => None,
        };
        let dir = match (&spec.source, &composed) {
            (Source::Resume(d), _) => d.clone(),
            (Source::Compose { .. }, Some(c)) => match (&spec.destination, &state) {
                (Destination::RunDir(d), RunDirState::Unfinished) => d.clone(),
                (Destination::RunDir(d), _) => {
                    folder::create_run_dir_at(d, &c.tree, &c.overrides, &prep)?
                }
                (Destination::Outputs(o), _) => {
                    let outputs = o.clone().unwrap_or_else(|| root.join("outputs"));
                    folder::create_run_dir(&outputs, &c.config.name, &c.tree, &c.overrides, &prep)?
                }
            },
            (Source::Compose { .. }, None) => unreachable!("composed when not resuming"),
        };
        let resumed =
            matches!(spec.source, Source::Resume(_)) || matches!(state, RunDirState::Unfinished);
        Ok(Opened::Ready(Box::new(Experiment {
            threads: threads_of(&cfg),
            prep,
            dir,
            resumed,
            shard,
            store_hits,
            store,
            cache: spec.cache,
        })))
    }

    /// Compute every sample not yet recorded (on a pool of `threads`),
    /// then write the metrics and the manifest. `progress(done)` after
    /// each batch.
    pub fn execute(mut self, mut progress: impl FnMut(usize) + Send) -> Result<RunOutcome> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| Error::Resource(format!("cannot start {} threads: {e}", self.threads)))?;
        let cache = self.store.as_mut().map(|s| (s, self.cache));
        let (prep, dir, resumed, threads) = (&self.prep, &self.dir, self.resumed, self.threads);
        pool.install(|| {
            folder::execute(prep, dir, resumed, threads, cache, |done, _| progress(done))
        })
    }
}
