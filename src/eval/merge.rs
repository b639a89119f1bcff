//! `merge`: shard run folders back into one ordinary run folder whose
//! samples, metrics and run digest are those of the unsharded run. The
//! shards must come from one config (less the keys that only change speed),
//! model, tokenizer, data and determinism version, and cover every sample
//! exactly once; machines may differ, and each one's facts are recorded.

use super::config::load_resolved;
use super::manifest::{Fingerprint, Manifest, ShardRecord, FINGERPRINT, INCOMPLETE};
use super::metrics::{metrics, Metrics};
use super::plan::{Plan, Planned, PLAN};
use super::proof::{hash_files, MANIFEST, METRICS, SAMPLES};
use super::run::run_digest;
use super::sample::SampleRecord;
use super::shard::ShardInfo;
use crate::error::{Error, Result};
use crate::fsio::{write_atomic, write_json};
use std::path::{Path, PathBuf};

struct ShardDir {
    dir: PathBuf,
    manifest: Manifest,
    info: ShardInfo,
    samples: Vec<SampleRecord>,
}

fn read_shard(dir: &Path) -> Result<ShardDir> {
    if dir.join(INCOMPLETE).exists() {
        return Err(Error::bad_file(
            dir,
            "this shard has not finished (run its eval command again: it resumes)",
        ));
    }
    let super::proof::Proven {
        manifest,
        samples,
        tree,
        ..
    } = super::proof::check_run_folder(dir)?;
    let info = match &manifest.shard {
        Some(s) => s.clone(),
        // An unsharded run is shard 0 of 1.
        None => ShardInfo {
            index: 0,
            count: 1,
            source: "unsharded".into(),
            total_samples: manifest.n_samples,
            whole_config_sha256: super::shard::whole_config_sha256(&tree),
        },
    };
    Ok(ShardDir {
        dir: dir.to_path_buf(),
        manifest,
        info,
        samples,
    })
}

/// The first input fact in which `b` differs from `a`, if any.
fn mismatch(a: &ShardDir, b: &ShardDir) -> Option<String> {
    let (ma, mb) = (&a.manifest, &b.manifest);
    let facts: [(&str, String, String); 8] = [
        (
            "config (less threads, batch size, prefill chunk)",
            a.info.whole_config_sha256.clone(),
            b.info.whole_config_sha256.clone(),
        ),
        (
            "shard count",
            a.info.count.to_string(),
            b.info.count.to_string(),
        ),
        (
            "total samples",
            a.info.total_samples.to_string(),
            b.info.total_samples.to_string(),
        ),
        (
            "determinism version",
            ma.determinism_version.to_string(),
            mb.determinism_version.to_string(),
        ),
        (
            "model sha256",
            ma.model.sha256.clone(),
            mb.model.sha256.clone(),
        ),
        (
            "tokenizer sha256",
            ma.tokenizer_sha256.clone(),
            mb.tokenizer_sha256.clone(),
        ),
        (
            "datasets",
            serde_json::to_string(&ma.datasets).expect("serializes"),
            serde_json::to_string(&mb.datasets).expect("serializes"),
        ),
        (
            "templates",
            serde_json::to_string(&ma.templates).expect("serializes"),
            serde_json::to_string(&mb.templates).expect("serializes"),
        ),
    ];
    facts
        .into_iter()
        .find(|(_, x, y)| x != y)
        .map(|(what, x, y)| format!("{what}: {x} in {}, {y} here", a.dir.display()))
}

pub struct MergeOutcome {
    pub dir: PathBuf,
    pub metrics: Metrics,
    pub digest: String,
    pub n_samples: usize,
    pub n_shards: usize,
}

/// A short list of numbers: "2, 9, 16 and 4 more".
fn list(v: &[usize]) -> String {
    let shown: Vec<String> = v.iter().take(8).map(|i| i.to_string()).collect();
    if v.len() > 8 {
        format!("{} and {} more", shown.join(", "), v.len() - 8)
    } else {
        shown.join(", ")
    }
}

/// Check and merge `dirs` into the new run folder `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<MergeOutcome> {
    if dirs.is_empty() {
        return Err(Error::Usage("merge: no shard folders given".into()));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::Input(format!(
            "--out {}: already exists and is not empty",
            out.display()
        )));
    }
    let shards: Vec<ShardDir> = dirs.iter().map(|d| read_shard(d)).collect::<Result<_>>()?;
    let first = &shards[0];
    for s in &shards[1..] {
        if let Some(m) = mismatch(first, s) {
            return Err(Error::Input(format!(
                "{}: not a shard of the same run as {}: {m}",
                s.dir.display(),
                first.dir.display()
            )));
        }
    }
    let (n, total) = (first.info.count, first.info.total_samples);
    let mut by_index: Vec<Option<&ShardDir>> = vec![None; n];
    for s in &shards {
        if let Some(other) = by_index[s.info.index] {
            return Err(Error::Input(format!(
                "shard {} of {n} given twice: {} and {}",
                s.info.index,
                other.dir.display(),
                s.dir.display()
            )));
        }
        by_index[s.info.index] = Some(s);
    }
    let missing: Vec<usize> = (0..n).filter(|&i| by_index[i].is_none()).collect();
    if !missing.is_empty() {
        let samples: Vec<usize> = (0..total).filter(|i| missing.contains(&(i % n))).collect();
        return Err(Error::Input(format!(
            "missing shard(s) {} of {n}: samples {} ({} of {total}) are in no folder given",
            list(&missing),
            list(&samples),
            samples.len()
        )));
    }
    let shard = |i: usize| by_index[i].expect("every shard present");
    for i in 0..n {
        let want = super::shard::Shard { index: i, count: n }.len_of(total);
        let s = shard(i);
        if s.samples.len() != want {
            return Err(Error::bad_file(
                &s.dir,
                format!(
                    "shard {i} of {n} holds {} samples where {want} of the run's {total} belong to it",
                    s.samples.len()
                ),
            ));
        }
    }
    let all: Vec<SampleRecord> = (0..total)
        .map(|i| shard(i % n).samples[i / n].clone())
        .collect();
    let mut ids = std::collections::HashSet::new();
    if let Some(d) = all.iter().find(|s| !ids.insert(s.id.as_str())) {
        return Err(Error::Input(format!(
            "sample '{}' appears twice across the shards",
            d.id
        )));
    }
    let base = shard(0);
    let (cfg, _) = load_resolved(&base.dir.join("config.yaml"))?;
    let m = metrics(&cfg, &all);
    let digest = run_digest(&all);
    let mut manifest = base.manifest.clone();
    manifest.shard = None;
    manifest.n_samples = all.len();
    manifest.run_digest = digest.clone();
    manifest.resumed = shards.iter().any(|s| s.manifest.resumed);
    manifest.shards = (0..n)
        .map(|i| {
            let s = shard(i);
            ShardRecord {
                index: i,
                count: n,
                source: s.info.source.clone(),
                folder: s.dir.display().to_string(),
                n_samples: s.samples.len(),
                run_digest: s.manifest.run_digest.clone(),
                resumed: s.manifest.resumed,
                environment: s.manifest.environment.clone(),
            }
        })
        .collect();
    // Shard 0's fingerprint, less its shard: what an unsharded resume would need.
    let fp_path = base.dir.join(FINGERPRINT);
    let mut fp: Fingerprint =
        serde_json::from_slice(&std::fs::read(&fp_path).map_err(|e| Error::io(&fp_path, e))?)
            .map_err(|e| Error::bad_file(&fp_path, format!("not a run fingerprint: {e}")))?;
    fp.shard = None;

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let stem = out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    let tmp = crate::fsio::unique_sibling(parent, &stem, "tmp");
    let staged = (|| -> Result<()> {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for f in ["config.yaml", "overrides.yaml"] {
            let p = base.dir.join(f);
            let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            write_atomic(&tmp.join(f), &b)?;
        }
        write_json(&tmp.join(FINGERPRINT), &fp)?;
        let mut text = String::new();
        for r in &all {
            text.push_str(&serde_json::to_string(r).expect("records serialize"));
            text.push('\n');
        }
        write_atomic(&tmp.join(SAMPLES), text.as_bytes())?;
        let plan = Plan {
            samples: all
                .iter()
                .map(|r| Planned {
                    id: r.id.clone(),
                    prompt_hash: r.prompt_hash.clone(),
                })
                .collect(),
            // Every shard left out the same items (before sharding).
            skipped: Plan::read(&base.dir)?.skipped,
        };
        write_json(&tmp.join(PLAN), &plan)?;
        write_json(&tmp.join(METRICS), &m)?;
        let mut manifest = manifest.clone();
        manifest.files = hash_files(&tmp)?;
        write_json(&tmp.join(MANIFEST), &manifest)?;
        crate::fsio::sync_dir(&tmp)?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        crate::fsio::sync_dir(parent)
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(MergeOutcome {
        dir: out.to_path_buf(),
        metrics: m,
        digest,
        n_samples: all.len(),
        n_shards: n,
    })
}
