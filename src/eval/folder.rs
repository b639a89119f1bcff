//! Run folders: outputs/<date>/<time>-<name>/ with the resolved config, a
//! fingerprint of everything that decides the outputs, samples.jsonl
//! appended batch by batch, and at the end metrics.json and manifest.json.
//! An INCOMPLETE marker stays until the end; `--resume` continues a folder
//! only if its fingerprint is the current one, to the same digests.

use super::config::to_yaml;
use super::manifest::{Fingerprint, Manifest, FINGERPRINT, INCOMPLETE};
use super::metrics::{metrics, Metrics};
use super::plan::{Plan, PLAN};
use super::proof::{
    check_against_plan, first_json_difference, hash_files, read_checked_samples, MANIFEST, METRICS,
    SAMPLES,
};
use super::run::{run_digest, Prepared};
use super::sample::{sha_hex, CacheMode, Raw, SampleRecord};
use crate::error::{Error, Result};
use crate::fsio::{write_atomic, write_json};
use crate::record::environment::Environment;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunOutcome {
    pub dir: PathBuf,
    pub metrics: Metrics,
    pub digest: String,
    pub samples: Vec<SampleRecord>,
}

/// A filled temporary run folder in `parent`: the INCOMPLETE marker, the
/// fingerprint, the resolved config and the overrides.
fn staged_run_dir(
    parent: &Path,
    stem: &str,
    tree: &serde_json::Value,
    overrides: &[String],
    prep: &Prepared,
) -> Result<PathBuf> {
    let config_yaml = to_yaml(tree);
    let fingerprint = Fingerprint::current(prep, config_yaml.as_bytes())?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = crate::fsio::unique_sibling(parent, stem, "tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    write_json(&tmp.join(FINGERPRINT), &fingerprint)?;
    write_atomic(
        &tmp.join(INCOMPLETE),
        b"this run has not finished; `infer-eval eval --resume <this folder>` continues it\n",
    )?;
    write_atomic(&tmp.join("config.yaml"), config_yaml.as_bytes())?;
    write_atomic(
        &tmp.join("overrides.yaml"),
        to_yaml(&serde_json::json!(overrides)).as_bytes(),
    )?;
    write_json(&tmp.join(PLAN), &prep.plan())?;
    crate::fsio::sync_dir(&tmp)?;
    Ok(tmp)
}

/// Create outputs/<date>/<time>-<name>/ with the INCOMPLETE marker, the
/// resolved config and the overrides, appearing at once by a rename.
pub fn create_run_dir(
    outputs: &Path,
    name: &str,
    tree: &serde_json::Value,
    overrides: &[String],
    prep: &Prepared,
) -> Result<PathBuf> {
    let (date, time) = crate::record::utc_now();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let parent = outputs.join(date);
    let tmp = staged_run_dir(&parent, &format!("{time}-{safe}"), tree, overrides, prep)?;
    // The first free name: another process may take one between the check
    // and the rename (renaming onto its non-empty folder fails), so retry.
    for k in 1.. {
        let dir = match k {
            1 => parent.join(format!("{time}-{safe}")),
            k => parent.join(format!("{time}-{safe}-{k}")),
        };
        if dir.exists() {
            continue;
        }
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {
                crate::fsio::sync_dir(&parent)?;
                return Ok(dir);
            }
            Err(_) if dir.exists() => continue,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(Error::io(&dir, e));
            }
        }
    }
    unreachable!("some run folder name is free")
}

/// Create the run folder at exactly `dir` (`eval --run-dir`, e.g. a DVC
/// stage's output), which must not exist or be an empty folder.
pub fn create_run_dir_at(
    dir: &Path,
    tree: &serde_json::Value,
    overrides: &[String],
    prep: &Prepared,
) -> Result<PathBuf> {
    let taken = || {
        Error::Input(format!(
            "--run-dir {}: already exists and is not empty (remove it, or pick another folder)",
            dir.display()
        ))
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(taken());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Input(format!("--run-dir {}: not a folder name", dir.display())))?;
    let tmp = staged_run_dir(parent, &stem, tree, overrides, prep)?;
    // Renaming onto an empty folder replaces it; onto a non-empty one fails.
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(if dir.exists() {
            taken()
        } else {
            Error::io(dir, e)
        });
    }
    crate::fsio::sync_dir(parent)?;
    Ok(dir.to_path_buf())
}

/// Refuse to resume `dir` unless its recorded fingerprint is the current one.
fn check_resumable(prep: &Prepared, dir: &Path) -> Result<()> {
    // What the folder was made with, and its marker, are regular files
    // (checked before anything reads them, is computed or is written).
    for f in [
        INCOMPLETE,
        "config.yaml",
        "overrides.yaml",
        FINGERPRINT,
        PLAN,
    ] {
        let p = dir.join(f);
        if p.exists() || p.is_symlink() {
            crate::fsio::regular_size(&p)?;
        }
    }
    let path = dir.join(FINGERPRINT);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::bad_file(
                &path,
                "cannot resume: the run folder has no fingerprint (it was made by an older infer-eval); start the run again",
            )
        } else {
            Error::io(&path, e)
        }
    })?;
    let recorded: Fingerprint = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&path, format!("not a run fingerprint: {e}")))?;
    let yaml = std::fs::read(dir.join("config.yaml"))
        .map_err(|e| Error::io(dir.join("config.yaml"), e))?;
    let now = Fingerprint::current(prep, &yaml)?;
    let diffs = recorded.differences(&now);
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{}: cannot resume: the run was started with other inputs; differs (recorded -> now): {}",
        dir.display(),
        diffs
            .iter()
            .map(|(k, a, b)| format!("{k} {a} -> {b}"))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The samples an unfinished folder already holds, each proven before it is
/// kept: its digest against its outputs, its id and prompt hash against the
/// plan (which must be this run's), its parameters against this run's, and
/// the whole record against the one its outputs give when scored again.
/// Any that fails refuses the folder: tampered evidence is never silently
/// recomputed over.
fn kept_samples(prep: &Prepared, dir: &Path) -> Result<Vec<SampleRecord>> {
    let samples_path = dir.join(SAMPLES);
    let plan = Plan::read(dir)?;
    if plan != prep.plan() {
        return Err(Error::bad_file(
            dir.join(PLAN),
            "cannot resume: the recorded plan is not the samples this run computes (the file was altered)",
        ));
    }
    let done = read_checked_samples(&samples_path, false)?;
    check_against_plan(&samples_path, &done, &plan, false)?;
    for (n, (r, i)) in done.iter().zip(0..).enumerate() {
        let at = |m: String| Error::bad_file(&samples_path, format!("line {}: {m}", n + 1));
        if r.params_hash != prep.params_hash(&prep.samples[i]) {
            return Err(at(format!(
                "sample '{}': field 'params_hash': computed with other parameters than this run's: not this run's samples",
                r.id
            )));
        }
        let again = prep.finish(
            i,
            Raw {
                output_ids: r.output_ids.clone(),
                digest: r.digest.clone(),
                logits_digest: r.logits_digest.clone(),
                logprobs: r
                    .choice_logliks
                    .clone()
                    .unwrap_or_else(|| r.logprobs.clone()),
                latency: r.latency.clone(),
                cached: r.cached,
            },
        )?;
        let (a, b) = (
            serde_json::to_value(r).expect("records serialize"),
            serde_json::to_value(&again).expect("records serialize"),
        );
        if let Some((k, was, now)) = first_json_difference(&a, &b) {
            return Err(at(format!(
                "sample '{}': field '{k}' is {was} where its outputs give {now}: the record was altered",
                r.id
            )));
        }
    }
    // A folder that finished (it has a manifest) and was marked unfinished
    // again must still prove itself whole: resuming never launders what
    // the checks above cannot see (a log-probability, say).
    if dir.join(MANIFEST).exists() {
        super::proof::check_contents(dir)?;
    }
    Ok(done)
}

/// Compute every sample not yet in `dir`/samples.jsonl, then write the
/// metrics and manifest and remove the INCOMPLETE marker.
pub fn execute(
    prep: &Prepared,
    dir: &Path,
    resumed: bool,
    threads: usize,
    mut store: Option<(&mut crate::baseline::Store, CacheMode)>,
    mut progress: impl FnMut(usize, usize),
) -> Result<RunOutcome> {
    let samples_path = dir.join(SAMPLES);
    if resumed {
        check_resumable(prep, dir)?;
    }
    let mut done = if resumed {
        kept_samples(prep, dir)?
    } else {
        Vec::new()
    };
    // Rewrite without a torn last line before appending.
    let mut text = String::new();
    for r in &done {
        text.push_str(&serde_json::to_string(r).expect("records serialize"));
        text.push('\n');
    }
    write_atomic(&samples_path, text.as_bytes())?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&samples_path)
        .map_err(|e| Error::io(&samples_path, e))?;
    progress(done.len(), prep.samples.len());
    for batch in prep.batches(done.len()) {
        let recs = prep.compute_cached(&batch, &mut store)?;
        let mut chunk = String::new();
        for r in &recs {
            chunk.push_str(&serde_json::to_string(r).expect("records serialize"));
            chunk.push('\n');
        }
        file.write_all(chunk.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&samples_path, e))?;
        done.extend(recs);
        progress(done.len(), prep.samples.len());
    }
    let digest = run_digest(&done);
    let metrics = metrics(&prep.config, &done);
    write_json(&dir.join(METRICS), &metrics)?;
    let info = &prep.model.info;
    let manifest = Manifest {
        run_name: prep.config.name.clone(),
        infer_eval_version: env!("CARGO_PKG_VERSION").into(),
        determinism_version: crate::DETERMINISM_VERSION,
        environment: Environment::current(threads, prep.model.model.isa),
        model: crate::record::ModelRecord {
            name: prep.config.model.name.clone(),
            path: info.path.display().to_string(),
            format: info.format.into(),
            sha256: info.sha256.clone(),
        },
        model_files: info.files.clone(),
        tokenizer_sha256: prep.model.tokenizer.sha256.clone(),
        config_sha256: sha_hex(
            &std::fs::read(dir.join("config.yaml"))
                .map_err(|e| Error::io(dir.join("config.yaml"), e))?,
        ),
        datasets: prep.datasets.clone(),
        templates: prep.templates.clone(),
        data_drift: prep.drifts.clone(),
        dvc: prep.dvc.clone(),
        shard: prep.shard.clone(),
        shards: Vec::new(),
        n_samples: done.len(),
        resumed,
        run_digest: digest.clone(),
        files: hash_files(dir)?,
    };
    write_json(&dir.join(MANIFEST), &manifest)?;
    let marker = dir.join(INCOMPLETE);
    std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
    crate::fsio::sync_dir(dir)?;
    Ok(RunOutcome {
        dir: dir.to_path_buf(),
        metrics,
        digest,
        samples: done,
    })
}
