//! `infer-eval eval`, `verify` and `diff`.

use anyhow::{Context, Result};
use infer_eval::eval::experiment::{
    project_root, recorded_shard, threads_of, Destination, Experiment, ExperimentSpec, LmEvalTasks,
    Opened, Source,
};
use infer_eval::eval::{compare, config, metrics, proof, run, sample};
use infer_eval::record::environment::Environment;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone)]
pub struct EvalArgs {
    /// Overrides: experiment=NAME, group=option (model, sampling, task, prompt),
    /// a.b.c=value for existing keys, +a.b=value for new ones.
    pub overrides: Vec<String>,
    /// Folder of config groups; data and template paths are relative to its parent.
    #[arg(long, default_value = "configs")]
    pub config_dir: PathBuf,
    /// Where run folders go (default: <project root>/outputs).
    #[arg(long)]
    pub outputs: Option<PathBuf>,
    /// Continue an interrupted run folder (its recorded config is used).
    #[arg(long, conflicts_with = "overrides")]
    pub resume: Option<PathBuf>,
    /// Run even if a dataset or template no longer matches its pinned sha256; the drift is recorded.
    #[arg(long)]
    pub allow_data_drift: bool,
    /// Baseline store use: read (serve stored outputs, store the rest), write (store all), off.
    #[arg(long, value_enum, default_value = "off")]
    pub cache: sample::CacheMode,
    /// Baseline store (default: the user cache folder's infer-eval/baselines.sqlite).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Write the run into exactly this folder instead of
    /// <outputs>/<date>/<time>-<name> (a DVC stage's output, a shard's
    /// folder). An unfinished run of the same config there is resumed, so a
    /// retried job (Slurm requeue, a pod retry) continues where it stopped.
    #[arg(long, conflicts_with_all = ["resume", "outputs"])]
    pub run_dir: Option<PathBuf>,
    /// Run shard I of N: the samples whose global index i has i mod N = I
    /// (with --shard-count). Without the flags, a Slurm array task or a
    /// Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX with
    /// INFER_EVAL_SHARD_COUNT) is its shard. `infer-eval merge` joins them.
    #[arg(long, requires = "shard_count")]
    pub shard_index: Option<usize>,
    #[arg(long, requires = "shard_index")]
    pub shard_count: Option<usize>,
    /// Evaluate an lm-evaluation-harness task instead of the config's task:
    /// a task YAML file, or a task name found under --include-path.
    /// Repeatable. The task file, its includes and data files are pinned
    /// in the run's config.
    #[arg(
        long = "lm-eval-task",
        value_name = "FILE|NAME",
        conflicts_with = "resume"
    )]
    pub lm_eval_task: Vec<String>,
    /// Folders searched for --lm-eval-task names (as lm_eval --include_path).
    #[arg(long, value_name = "DIR", requires = "lm_eval_task")]
    pub include_path: Vec<PathBuf>,
    /// Few-shot examples per prompt for --lm-eval-task (default: the task's num_fewshot, else 0).
    #[arg(long, requires = "lm_eval_task")]
    pub num_fewshot: Option<usize>,
    /// Seed of lm-eval's few-shot sampler (lm_eval --fewshot_random_seed).
    #[arg(long, default_value_t = infer_eval::eval::lmeval::DEFAULT_FEWSHOT_SEED, requires = "lm_eval_task")]
    pub fewshot_seed: u64,
    /// lm-eval's `max_length` model argument for --lm-eval-task (lm_eval
    /// --model_args max_length=N; default 2048): a request feeds at most
    /// N - 1 tokens (longer contexts are left-truncated, as
    /// local-completions truncates them) and loglikelihood_rolling windows
    /// score N - 2 tokens each.
    #[arg(long, requires = "lm_eval_task", value_parser = clap::value_parser!(u64).range(3..))]
    pub max_length: Option<u64>,
    /// Hydra's multirun: overrides sweep with key=a,b,c, key=range(1,4) or
    /// key=choice(a,b); every combination is one run, into <sweep dir>/<n>/
    /// (n in Hydra's job order). A failing point does not stop the others;
    /// a summary table is printed and written to <sweep dir>/summary.json.
    #[arg(long, short = 'm', conflicts_with_all = ["resume", "run_dir", "outputs", "shard_index"])]
    pub multirun: bool,
    /// Where a multirun's points go (default: <project root>/multirun/<date>/<time>).
    /// Re-running a sweep into the same folder finishes its unfinished points.
    #[arg(long, requires = "multirun")]
    pub sweep_dir: Option<PathBuf>,
    /// At the end, export the run to MLflow (--tracking-uri or MLFLOW_TRACKING_URI).
    #[arg(long)]
    pub mlflow: bool,
    #[command(flatten)]
    pub mlflow_server: super::export::MlflowArgs,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A finished run folder.
    #[arg(required_unless_present = "served")]
    pub run_dir: Option<PathBuf>,
    /// Instead: a served-traffic log (`serve --log FILE`); every request is
    /// re-run alone and its digests compared with what was served.
    #[arg(long, conflicts_with = "run_dir")]
    pub served: Option<PathBuf>,
    /// With --served: the model to re-run with (default: the log's model name).
    #[arg(long, requires = "served")]
    pub model: Option<String>,
    #[arg(long, default_value = "configs")]
    pub config_dir: PathBuf,
    /// Re-run with another thread count (bits must not change).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Re-run with another batch size (bits must not change).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// On a mismatch, write an HTML report of the recorded run against the
    /// re-run (as `report A B`) to this file.
    #[arg(long, conflicts_with = "served")]
    pub report: Option<PathBuf>,
    /// Check the folder without the model (milliseconds): every file's
    /// hash, each sample's digest against its outputs, the samples against
    /// the plan, the run digest and the metrics recomputed. Every verify
    /// does this first; with --offline it stops there.
    #[arg(long, conflicts_with_all = ["served", "threads", "batch_size", "report"])]
    pub offline: bool,
}

fn bar(len: usize) -> indicatif::ProgressBar {
    let b = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples ({per_sec}) [{elapsed}<{eta}]",
        )
        .unwrap(),
    );
    b
}

/// Where stderr is not a terminal (a batch job's log), a progress line
/// every 30 s and at the end: samples done, samples/s, ETA.
fn progress_log(total: usize) -> impl FnMut(usize) {
    let quiet = std::io::stderr().is_terminal();
    let t0 = std::time::Instant::now();
    let mut last = t0;
    let mut first: Option<usize> = None;
    move |done| {
        let start = *first.get_or_insert(done);
        if quiet || (done < total && last.elapsed().as_secs() < 30) || done == start {
            return;
        }
        last = std::time::Instant::now();
        let rate = (done - start) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "infer-eval: {done}/{total} samples, {rate:.2} samples/s, ETA {:.0} s",
            (total - done) as f64 / rate.max(1e-9)
        );
    }
}

impl EvalArgs {
    /// The library's description of this evaluation.
    pub fn spec(&self) -> ExperimentSpec {
        ExperimentSpec {
            config_dir: self.config_dir.clone(),
            source: match &self.resume {
                Some(d) => Source::Resume(d.clone()),
                None => Source::Compose {
                    overrides: self.overrides.clone(),
                    lm_eval: LmEvalTasks {
                        tasks: self.lm_eval_task.clone(),
                        include_path: self.include_path.clone(),
                        num_fewshot: self.num_fewshot,
                        fewshot_seed: self.fewshot_seed,
                        max_length: self.max_length.map(|n| n as usize),
                    },
                },
            },
            destination: match &self.run_dir {
                Some(d) => Destination::RunDir(d.clone()),
                None => Destination::Outputs(self.outputs.clone()),
            },
            shard_flags: (self.shard_index, self.shard_count),
            cache: self.cache,
            store: self.store.clone(),
            allow_data_drift: self.allow_data_drift,
        }
    }
}

/// `infer-eval eval` (one run; `--multirun` goes to `multirun`).
pub fn eval(a: EvalArgs) -> Result<()> {
    // Checked before the run, so a missing server URI does not wait for the end.
    let mlflow = a.mlflow.then(|| a.mlflow_server.target()).transpose()?;
    run_experiment(&a.spec(), mlflow.as_ref())
}

/// The library's `Experiment`, with a progress bar (or a progress line in
/// a batch job's log), the summary table, and the MLflow export if asked.
pub fn run_experiment(
    spec: &ExperimentSpec,
    mlflow: Option<&infer_eval::export::mlflow::Target>,
) -> Result<()> {
    let opened = Experiment::open(spec, |k| std::env::var(k).ok(), super::load)?;
    let exp = match opened {
        Opened::Complete { dir, run_digest } => {
            println!("run folder {} is already complete", dir.display());
            println!("run digest {run_digest}");
            println!("run folder {}", dir.display());
            return Ok(());
        }
        Opened::Ready(e) => e,
    };
    let prep = &exp.prep;
    if !prep.skipped.is_empty() {
        eprintln!(
            "infer-eval: leaving out {} item(s) that cannot fit the model's context (run.too_long=skip; listed in plan.json):",
            prep.skipped.len()
        );
        for s in prep.skipped.iter().take(10) {
            eprintln!("  {}: {}", s.id, s.why);
        }
    }
    if let Some((s, source)) = &exp.shard {
        eprintln!(
            "infer-eval: shard {} of {} ({source}): {} of {} samples",
            s.index,
            s.count,
            prep.samples.len(),
            prep.shard.as_ref().map(|x| x.total_samples).unwrap_or(0)
        );
    }
    if let Some(hits) = exp.store_hits {
        eprintln!(
            "infer-eval: the store serves {hits} of {} samples",
            prep.samples.len()
        );
    }
    eprintln!(
        "infer-eval: run {} ({} samples){}",
        exp.dir.display(),
        prep.samples.len(),
        if exp.resumed { ", resuming" } else { "" }
    );
    let b = bar(prep.samples.len());
    let mut log = progress_log(prep.samples.len());
    let out = exp.execute(|done| {
        b.set_position(done as u64);
        log(done);
    })?;
    b.finish_and_clear();
    print_summary(&out.metrics, &out.digest, &out.dir);
    if let Some(t) = mlflow {
        super::export::export_one(t, &out.dir).context(
            "the run folder is complete; `infer-eval export mlflow <run folder>` retries the export",
        )?;
    }
    Ok(())
}

fn print_summary(m: &metrics::Metrics, digest: &str, dir: &Path) {
    println!(
        "{:<18} {:<16} {:>5}  {:>8}  {:<17} {:>8}",
        "dataset", "kind", "n", "accuracy", "95% CI", "acc_norm"
    );
    for (name, d) in &m.datasets {
        let kind = serde_json::to_value(d.kind)
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string();
        let norm = d
            .accuracy_norm
            .as_ref()
            .map(|e| format!("{:.3}", e.mean))
            .unwrap_or_else(|| "-".into());
        if let Some(p) = &d.perplexity {
            // A loglikelihood_rolling task: perplexities, no accuracy.
            println!(
                "{name:<18} {:<16} {:>5}  {:>8}",
                "perplexity", d.accuracy.n, "-"
            );
            println!(
                "  {} tokens in {} windows, {} words, {} bytes: token perplexity {:.4}, word perplexity {:.4}, byte perplexity {:.5}, bits per byte {:.5}",
                p.tokens, p.windows, p.words, p.bytes, p.token_perplexity, p.word_perplexity, p.byte_perplexity, p.bits_per_byte
            );
            continue;
        }
        println!(
            "{:<18} {:<16} {:>5}  {:>8.3}  [{:.3}, {:.3}]    {:>8}",
            name, kind, d.accuracy.n, d.accuracy.mean, d.accuracy.ci_low, d.accuracy.ci_high, norm
        );
        let mut seeds: Vec<(&String, &infer_eval::eval::score::Estimate)> =
            d.per_seed.iter().collect();
        seeds.sort_by_key(|(s, _)| s.parse::<u64>().unwrap_or(u64::MAX));
        for (seed, e) in seeds {
            println!(
                "  seed {:<12} {:<16} {:>5}  {:>8.3}  [{:.3}, {:.3}]",
                seed, "", e.n, e.mean, e.ci_low, e.ci_high
            );
        }
        for (metric, e) in &d.lm_eval {
            println!(
                "  {:<33} {:>5}  {:>8.3}  [{:.3}, {:.3}]",
                metric, e.n, e.mean, e.ci_low, e.ci_high
            );
        }
        if let Some(s) = &d.across_seeds {
            println!(
                "  across {} seeds: mean {:.3}, std {:.3}, 95% t interval [{:.3}, {:.3}]",
                s.seeds, s.mean, s.std, s.ci_low, s.ci_high
            );
        }
    }
    // Perplexity tasks alone have no accuracy to average.
    let macro_acc = if m.has_accuracy() {
        format!("{:.3}", m.macro_accuracy)
    } else {
        "-".to_string()
    };
    println!(
        "macro accuracy {macro_acc}; {} samples ({:.2} samples/s computed), {} tokens generated, {:.1} tok/s",
        m.n_samples, m.samples_per_s, m.generated_tokens, m.tokens_per_s
    );
    println!(
        "time to first token p50 {:.1} ms, p90 {:.1}, p95 {:.1}, p99 {:.1}; per output token p50 {:.1} ms, p90 {:.1}, p95 {:.1}, p99 {:.1}",
        m.ttft_ms.p50, m.ttft_ms.p90, m.ttft_ms.p95, m.ttft_ms.p99, m.tpot_ms.p50, m.tpot_ms.p90, m.tpot_ms.p95, m.tpot_ms.p99
    );
    println!("run digest {digest}");
    println!("run folder {}", dir.display());
}

/// Exit code of a verify that found a difference.
pub const MISMATCH_EXIT: i32 = infer_eval::error::exit::MISMATCH;

pub fn verify(a: VerifyArgs) -> Result<i32> {
    if let Some(f) = &a.served {
        return super::serve::verify_served(f, a.model.as_deref(), a.threads);
    }
    let run_dir = a.run_dir.clone().expect("clap: run_dir or --served");
    let a = VerifyArgs {
        run_dir: Some(run_dir.clone()),
        ..a
    };
    let t0 = std::time::Instant::now();
    let proven = proof::check_run_folder(&run_dir)?;
    if a.offline {
        println!(
            "PROVEN {}: {} samples, run digest {}, {} files hashed, metrics recomputed ({:.1} ms, no model)",
            run_dir.display(),
            proven.samples.len(),
            proven.manifest.run_digest,
            proven.files,
            t0.elapsed().as_secs_f64() * 1e3
        );
        return Ok(0);
    }
    let root = project_root(&a.config_dir)?;
    let (manifest, recorded) = (proven.manifest, proven.samples);
    let (mut cfg, _) = config::load_resolved(&run_dir.join("config.yaml"))?;
    if let Some(t) = a.threads {
        cfg.run.threads = Some(t);
    }
    if let Some(b) = a.batch_size {
        cfg.run.batch_size = b;
    }
    // (The recorded config passed its check: what fails now is a flag.)
    config::validate(&cfg)
        .map_err(|m| infer_eval::Error::Usage(format!("verify --threads/--batch-size: {m}")))?;
    let threads = threads_of(&cfg);
    let mut problems = Vec::new();
    let mut hint = None;
    // Data and templates must be what the run used (its recorded hashes, drift included).
    for f in manifest.datasets.iter().chain(&manifest.templates) {
        let p = root.join(&f.path);
        match infer_eval::formats::sha256_file(&p) {
            Ok(h) if h == f.sha256 => {}
            Ok(h) => problems.push(format!(
                "{} changed since the run: recorded sha256 {}, now {h}",
                p.display(),
                f.sha256
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        let mut prep = run::prepare(&cfg, &root, super::load(&cfg.model.name)?, true)?;
        // A shard's folder is re-run as that shard.
        if let Some(s) = recorded_shard(&run_dir)? {
            let tree = config::load_resolved(&run_dir.join("config.yaml"))?.1;
            prep.select_shard(s, "verify", &tree);
        }
        if prep.model.info.sha256 != manifest.model.sha256 {
            problems.push(format!(
                "model {}: recorded sha256 {}, now {}",
                cfg.model.name, manifest.model.sha256, prep.model.info.sha256
            ));
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let b = bar(prep.samples.len());
            let mut current = Vec::with_capacity(prep.samples.len());
            pool.install(|| -> Result<()> {
                for batch in prep.batches(0) {
                    current.extend(prep.compute(&batch)?);
                    b.set_position(current.len() as u64);
                }
                Ok(())
            })?;
            b.finish_and_clear();
            let digest = run::run_digest(&current);
            match compare::first_difference(&recorded, &current) {
                None if digest == manifest.run_digest => {
                    println!(
                        "MATCH {digest} ({} samples, threads {threads}, batch size {})",
                        current.len(),
                        cfg.run.batch_size
                    )
                }
                None => problems.push(format!(
                    "samples match but the run digest differs: recorded {}, now {digest}",
                    manifest.run_digest
                )),
                Some(d) => {
                    problems.push(format!(
                        "first difference: {d}; run digest recorded {}, now {digest}",
                        manifest.run_digest
                    ));
                    if let Some(out) = &a.report {
                        let recorded_run = compare::RunData {
                            label: run_dir.display().to_string(),
                            manifest: manifest.clone(),
                            metrics: proven.metrics.clone(),
                            samples: recorded.clone(),
                            tree: proven.tree.clone(),
                        };
                        let mut m = manifest.clone();
                        m.environment = Environment::current(threads, prep.model.model.isa);
                        m.run_digest = digest.clone();
                        m.n_samples = current.len();
                        let rerun = compare::RunData {
                            label: format!("re-run of {} here", run_dir.display()),
                            metrics: metrics::metrics(&cfg, &current),
                            manifest: m,
                            samples: current.clone(),
                            tree: recorded_run.tree.clone(),
                        };
                        super::report::write_report(&recorded_run, Some(&rerun), out)?;
                    }
                    let device = &manifest.environment.device;
                    if let Some(cmd) = trace_command(&cfg.model.name, device, &d, &recorded) {
                        hint = Some(cmd);
                    }
                }
            }
        }
    }
    for p in &problems {
        println!("MISMATCH {p}");
    }
    if let Some(cmd) = hint {
        println!("to find the first op that differs, run here and on the machine that recorded the run:\n  {cmd}\nthen compare the two files: infer-eval trace --compare A.json B.json");
    }
    let diffs = manifest.environment.differences(&Environment::current(
        threads,
        infer_eval::kernels::default_isa().map_err(infer_eval::Error::Usage)?,
    ));
    if diffs.is_empty() {
        println!("environment: same as recorded");
    } else {
        println!("environment differences (recorded -> now):");
        for (k, a, b) in diffs {
            println!("  {k}: {a} -> {b}");
        }
    }
    Ok(if problems.is_empty() {
        0
    } else {
        MISMATCH_EXIT
    })
}

/// The `trace` command that covers the first differing step of sample `d`:
/// its prompt and, for a generation, the tokens before the differing one.
fn trace_command(
    model: &str,
    device: &str,
    d: &compare::FirstDifference,
    recorded: &[sample::SampleRecord],
) -> Option<String> {
    let (id, upto) = match d {
        compare::FirstDifference::Token { id, position, .. } => (id, *position),
        compare::FirstDifference::Loglik { id, .. } => (id, None),
        compare::FirstDifference::Missing { .. } => return None,
    };
    let s = recorded.iter().find(|s| &s.id == id)?;
    let mut ids = s.prompt_ids.clone();
    if let Some(p) = upto {
        ids.extend(s.output_ids.iter().take(p));
    }
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    Some(format!(
        "infer-eval trace --model {model} --device {device} --prompt-ids {} --out trace-$(hostname).json",
        list.join(",")
    ))
}

pub fn merge(shards: &[PathBuf], out: &Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    let m = infer_eval::eval::merge::merge(shards, out)?;
    eprintln!(
        "infer-eval: merged {} shards ({} samples) in {:.2} s",
        m.n_shards,
        m.n_samples,
        t0.elapsed().as_secs_f64()
    );
    print_summary(&m.metrics, &m.digest, &m.dir);
    Ok(())
}

pub fn diff(a: &Path, b: &Path) -> Result<()> {
    let d = compare::diff_runs(a, b)?;
    println!(
        "run digests: {} vs {}{}",
        d.digest_a,
        d.digest_b,
        if d.digest_a == d.digest_b {
            " (identical)"
        } else {
            ""
        }
    );
    println!(
        "config: {}",
        if d.config.is_empty() {
            "same".to_string()
        } else {
            format!("{} keys differ", d.config.len())
        }
    );
    for (k, x, y) in &d.config {
        println!("  {k}: {x} -> {y}");
    }
    println!(
        "environment: {}",
        if d.environment.is_empty() {
            "same".to_string()
        } else {
            format!("{} fields differ", d.environment.len())
        }
    );
    for (k, x, y) in &d.environment {
        println!("  {k}: {x} -> {y}");
    }
    println!(
        "outputs: {} samples differ, {} only in A, {} only in B",
        d.changed_samples.len(),
        d.only_in_a.len(),
        d.only_in_b.len()
    );
    for (id, first) in d.changed_samples.iter().take(10) {
        println!(
            "  {id}: {}",
            first.as_ref().map(|f| f.to_string()).unwrap_or_default()
        );
    }
    println!(
        "{:<18} {:>6} {:>8} {:>8} {:>8} {:>17} {:>9} {:>9}  verdict",
        "dataset", "pairs", "A", "B", "B-A", "95% CI of B-A", "A-only", "B-only"
    );
    for m in &d.metrics {
        println!(
            "{:<18} {:>6} {:>8.3} {:>8.3} {:>+8.3} {:>17} {:>9} {:>9}  McNemar p={:.3}: {}",
            m.dataset,
            m.n_pairs,
            m.a,
            m.b,
            m.b - m.a,
            format!("[{:+.3}, {:+.3}]", m.delta.ci_low, m.delta.ci_high),
            m.a_only,
            m.b_only,
            m.p_value,
            if m.significant() {
                "significant"
            } else {
                "within noise"
            }
        );
    }
    for (t, pa, pb) in &d.perplexity {
        println!(
            "{t:<18} perplexity A -> B: word {:.4} -> {:.4}, byte {:.5} -> {:.5}, bits per byte {:.5} -> {:.5} ({} -> {} tokens)",
            pa.word_perplexity, pb.word_perplexity, pa.byte_perplexity, pb.byte_perplexity, pa.bits_per_byte, pb.bits_per_byte,
            pa.tokens, pb.tokens
        );
    }
    Ok(())
}
