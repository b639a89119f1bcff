//! Run folders that prove themselves: what the engine wrote can be checked
//! without the model, in milliseconds, by anyone.
//!
//! A finished folder's manifest names the sha256 and size of every other
//! file in it; `plan.json`, written when the folder is made, lists the
//! samples the run computes (id and prompt hash, in order). The check
//! (`check_run_folder`) recomputes each sample's digest from its own ids (or
//! log-likelihoods), the run digest from the samples in order, the metrics
//! from the samples and the config, and every file's hash, and names the
//! first file, line and field that does not hold. Every command that reads
//! a run folder runs it first. It is tamper-evidence, not a signature:
//! whoever can rewrite the folder can rewrite the manifest too (see
//! docs/DETERMINISM.md, "What a run folder proves").

use super::config::{load_resolved, EvalConfig};
use super::manifest::{Fingerprint, Manifest, WrittenFile, FINGERPRINT, INCOMPLETE};
use super::metrics::{metrics, Metrics};
use super::plan::{Plan, PLAN};
use super::sample::{ids_hash, logliks_digest, SampleRecord};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const SAMPLES: &str = "samples.jsonl";
pub const METRICS: &str = "metrics.json";
pub const MANIFEST: &str = "manifest.json";

/// Largest manifest read.
const SMALL_FILE: u64 = 64 << 20;

/// The files a finished run folder holds besides its manifest, in the order
/// the manifest lists their hashes.
pub const RECORDED: [&str; 6] = [
    "config.yaml",
    "overrides.yaml",
    FINGERPRINT,
    PLAN,
    SAMPLES,
    METRICS,
];

/// Hash the `RECORDED` files of `dir`.
pub fn hash_files(dir: &Path) -> Result<Vec<WrittenFile>> {
    RECORDED
        .iter()
        .map(|name| {
            let p = dir.join(name);
            let b = crate::fsio::read_regular(&p, u64::MAX)?;
            Ok(WrittenFile {
                name: name.to_string(),
                bytes: b.len() as u64,
                sha256: hex::encode(Sha256::digest(&b)),
            })
        })
        .collect()
}

/// What a sample's digest must be, from its own outputs: a generation's
/// output ids, or a scored sample's log-likelihoods.
pub fn expected_digest(r: &SampleRecord) -> String {
    match &r.choice_logliks {
        Some(ll) => logliks_digest(ll),
        None => crate::engine::ids_digest(&r.output_ids),
    }
}

/// The first field of one record that does not hold by itself: its digest
/// against its outputs, a generation's prompt hash against its prompt ids,
/// one log-probability per generated token.
pub fn check_record(r: &SampleRecord) -> std::result::Result<(), String> {
    let want = expected_digest(r);
    if r.digest != want {
        let what = if r.choice_logliks.is_some() {
            "choice_logliks"
        } else {
            "output_ids"
        };
        return Err(format!(
            "sample '{}': field 'digest' {} is not the digest of its '{what}' ({want}): the record was altered",
            r.id, r.digest
        ));
    }
    if r.choice_logliks.is_none() {
        let mut h = Sha256::new();
        ids_hash(&mut h, &r.prompt_ids);
        let ph = hex::encode(h.finalize());
        if r.prompt_hash != ph {
            return Err(format!(
                "sample '{}': field 'prompt_hash' {} is not the hash of its 'prompt_ids' ({ph}): the record was altered",
                r.id, r.prompt_hash
            ));
        }
        if r.logprobs.len() != r.output_ids.len() {
            return Err(format!(
                "sample '{}': field 'logprobs' holds {} values for {} output tokens: the record was altered",
                r.id,
                r.logprobs.len(),
                r.output_ids.len()
            ));
        }
    }
    Ok(())
}

/// Read a samples.jsonl and check each record by itself. A finished folder's
/// file must be whole; an unfinished one may end in a torn line (a batch cut
/// short by a crash), which is dropped.
pub fn read_checked_samples(path: &Path, finished: bool) -> Result<Vec<SampleRecord>> {
    if !finished && !path.exists() {
        return Ok(Vec::new());
    }
    let text = crate::fsio::read_regular(path, u64::MAX)?;
    parse_checked_samples(path, &text, finished)
}

/// `read_checked_samples` on the bytes of `path`, already read.
fn parse_checked_samples(path: &Path, text: &[u8], finished: bool) -> Result<Vec<SampleRecord>> {
    let complete = if text.is_empty() || text.ends_with(b"\n") {
        &text[..]
    } else if finished {
        return Err(Error::bad_file(
            path,
            "the last line is cut short (no newline at the end): the file was truncated or altered",
        ));
    } else {
        match text.iter().rposition(|&b| b == b'\n') {
            Some(i) => &text[..=i],
            None => &[][..],
        }
    };
    let mut out = Vec::new();
    for (n, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            // The empty tail after the last newline.
            continue;
        }
        let r: SampleRecord = serde_json::from_slice(line).map_err(|e| {
            Error::bad_file(path, format!("line {}: not a sample record: {e}", n + 1))
        })?;
        check_record(&r).map_err(|m| Error::bad_file(path, format!("line {}: {m}", n + 1)))?;
        out.push(r);
    }
    Ok(out)
}

/// Check `samples` (a prefix of the run, or all of it) against the plan:
/// the same ids and prompt hashes in the same order.
pub fn check_against_plan(
    path: &Path,
    samples: &[SampleRecord],
    plan: &Plan,
    finished: bool,
) -> Result<()> {
    if samples.len() > plan.samples.len() {
        return Err(Error::bad_file(
            path,
            format!(
                "holds {} samples where the run's plan ({PLAN}) has {}",
                samples.len(),
                plan.samples.len()
            ),
        ));
    }
    if finished && samples.len() != plan.samples.len() {
        return Err(Error::bad_file(
            path,
            format!(
                "holds {} samples where the run's plan ({PLAN}) has {}: samples were removed",
                samples.len(),
                plan.samples.len()
            ),
        ));
    }
    for (n, (r, p)) in samples.iter().zip(&plan.samples).enumerate() {
        if r.id != p.id {
            return Err(Error::bad_file(
                path,
                format!(
                    "line {}: field 'id' is '{}' where the plan has '{}'",
                    n + 1,
                    r.id,
                    p.id
                ),
            ));
        }
        if r.prompt_hash != p.prompt_hash {
            return Err(Error::bad_file(
                path,
                format!(
                    "line {}: sample '{}': field 'prompt_hash' {} where the plan has {}",
                    n + 1,
                    r.id,
                    r.prompt_hash,
                    p.prompt_hash
                ),
            ));
        }
    }
    Ok(())
}

/// A finished run folder that passed `check_run_folder`.
#[derive(Debug, Clone)]
pub struct Proven {
    pub manifest: Manifest,
    pub metrics: Metrics,
    pub samples: Vec<SampleRecord>,
    /// The resolved config as a tree, and typed.
    pub tree: serde_json::Value,
    pub config: EvalConfig,
    pub files: usize,
}

/// Leaf paths of a JSON value (`a.b.0`) and their values.
pub(crate) fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The first leaf where `a` and `b` differ: (path, a's value, b's value).
pub(crate) fn first_json_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let s = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
    let first = keys.into_iter().find(|k| fa.get(*k) != fb.get(*k))?;
    Some((first.clone(), s(fa.get(first)), s(fb.get(first))))
}

/// The manifest's facts that the fingerprint (hashed among the files) also
/// records must agree with it.
fn check_manifest_against_fingerprint(dir: &Path, m: &Manifest, b: &[u8]) -> Result<()> {
    let fpath = dir.join(FINGERPRINT);
    let fp: Fingerprint = serde_json::from_slice(b)
        .map_err(|e| Error::bad_file(&fpath, format!("not a run fingerprint: {e}")))?;
    let facts: [(&str, String, String); 7] = [
        (
            "infer_eval_version",
            m.infer_eval_version.clone(),
            fp.infer_eval_version,
        ),
        (
            "determinism_version",
            m.determinism_version.to_string(),
            fp.determinism_version.to_string(),
        ),
        ("model.sha256", m.model.sha256.clone(), fp.model_sha256),
        (
            "tokenizer_sha256",
            m.tokenizer_sha256.clone(),
            fp.tokenizer_sha256,
        ),
        ("config_sha256", m.config_sha256.clone(), fp.config_sha256),
        (
            "datasets",
            serde_json::to_string(&m.datasets).expect("serializes"),
            serde_json::to_string(&fp.datasets).expect("serializes"),
        ),
        (
            "templates",
            serde_json::to_string(&m.templates).expect("serializes"),
            serde_json::to_string(&fp.templates).expect("serializes"),
        ),
    ];
    for (field, a, b) in facts {
        if a != b {
            return Err(Error::bad_file(
                dir.join(MANIFEST),
                format!("field '{field}' is {a} where {FINGERPRINT} records {b}"),
            ));
        }
    }
    // A shard's place: as its fingerprint records it, and a real one.
    let mine = m.shard.as_ref().map(|s| (s.index, s.count));
    let recorded = fp.shard.as_ref().map(|s| (s.index, s.count));
    if mine != recorded {
        return Err(Error::bad_file(
            dir.join(MANIFEST),
            format!("field 'shard' is {mine:?} where {FINGERPRINT} records {recorded:?}"),
        ));
    }
    if let Some(s) = &m.shard {
        if s.count == 0 || s.index >= s.count {
            return Err(Error::bad_file(
                dir.join(MANIFEST),
                format!(
                    "field 'shard': index {} of count {} over {} samples is not a shard",
                    s.index, s.count, s.total_samples
                ),
            ));
        }
        let want = super::shard::Shard {
            index: s.index,
            count: s.count,
        }
        .len_of(s.total_samples);
        if want != m.n_samples {
            return Err(Error::bad_file(
                dir.join(MANIFEST),
                format!(
                    "field 'shard': shard {} of {} holds {want} of {} samples, the manifest says {}",
                    s.index, s.count, s.total_samples, m.n_samples
                ),
            ));
        }
    }
    Ok(())
}

/// Every file the config pins (an object with `path` and `sha256`) whose
/// recorded hash differs from its pin must be listed in the manifest's
/// `data_drift` (the run was made with --allow-data-drift): deleting that
/// record would hide that the run read other data than its config names.
fn check_drift(mpath: &Path, m: &Manifest, tree: &serde_json::Value) -> Result<()> {
    fn pins(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(o) => {
                if let (Some(serde_json::Value::String(p)), Some(serde_json::Value::String(h))) =
                    (o.get("path"), o.get("sha256"))
                {
                    out.push((p.clone(), h.clone()));
                }
                o.values().for_each(|x| pins(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| pins(x, out)),
            _ => {}
        }
    }
    let mut pinned = Vec::new();
    pins(tree, &mut pinned);
    for f in m.datasets.iter().chain(&m.templates) {
        let drifted = pinned.iter().any(|(p, h)| *p == f.path && *h != f.sha256);
        let listed = m
            .data_drift
            .iter()
            .any(|d| d.file == f.path && d.actual == f.sha256);
        if drifted && !listed {
            return Err(Error::bad_file(
                mpath,
                format!(
                    "field 'data_drift' does not list {}, whose recorded sha256 {} is not the one config.yaml pins",
                    f.path, f.sha256
                ),
            ));
        }
    }
    Ok(())
}

/// Check a finished run folder without the model: each sample by itself and
/// against the plan, the sample count, the run digest, the config hash, the
/// metrics recomputed from the samples, and last every file's hash. The error
/// names the first file (line, field) that does not hold.
pub fn check_run_folder(dir: &Path) -> Result<Proven> {
    if !dir.is_dir() {
        return Err(Error::bad_file(
            dir,
            if dir.exists() {
                "not a folder: a run folder is expected here"
            } else {
                "no such run folder"
            },
        ));
    }
    if dir.join(INCOMPLETE).exists() {
        return Err(Error::bad_file(
            dir,
            "this run is incomplete (resume it with `infer-eval eval --resume`)",
        ));
    }
    check_contents(dir)
}

/// `check_run_folder` less the INCOMPLETE guard (`--resume` of a folder
/// that holds a manifest, i.e. one that finished).
pub fn check_contents(dir: &Path) -> Result<Proven> {
    let mpath = dir.join(MANIFEST);
    let mbytes = crate::fsio::read_regular(&mpath, SMALL_FILE)?;
    let manifest: Manifest = serde_json::from_slice(&mbytes)
        .map_err(|e| Error::bad_file(&mpath, format!("not a run manifest: {e}")))?;
    if manifest.files.is_empty() {
        return Err(Error::bad_file(
            &mpath,
            "field 'files': records no file hashes (the folder was written by an older infer-eval); run it again to get a folder that can be checked",
        ));
    }
    // Every file the manifest names, and only those, with their hashes.
    let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    if names != RECORDED {
        return Err(Error::bad_file(
            &mpath,
            format!("field 'files' names {names:?} where a run folder records {RECORDED:?}"),
        ));
    }
    // Every listed file is a regular file before any is read (a device or
    // FIFO put in its place is named, not read).
    for f in &manifest.files {
        crate::fsio::regular_size(&dir.join(&f.name))?;
    }
    // Each listed file is read once; every check below works on these bytes.
    let bytes: Vec<Vec<u8>> = manifest
        .files
        .iter()
        .map(|f| crate::fsio::read_regular(&dir.join(&f.name), u64::MAX))
        .collect::<Result<_>>()?;
    let file = |name: &str| -> &[u8] {
        let i = RECORDED
            .iter()
            .position(|n| *n == name)
            .expect("a recorded file");
        &bytes[i]
    };
    check_manifest_against_fingerprint(dir, &manifest, file(FINGERPRINT))?;
    let spath = dir.join(SAMPLES);
    let samples = parse_checked_samples(&spath, file(SAMPLES), true)?;
    let plan = Plan::parse(&dir.join(PLAN), file(PLAN))?;
    check_against_plan(&spath, &samples, &plan, true)?;
    if samples.len() != manifest.n_samples {
        return Err(Error::bad_file(
            &mpath,
            format!(
                "field 'n_samples' is {} where {SAMPLES} holds {}",
                manifest.n_samples,
                samples.len()
            ),
        ));
    }
    let digest = super::run::run_digest(&samples);
    if digest != manifest.run_digest {
        return Err(Error::bad_file(
            &mpath,
            format!(
                "field 'run_digest' is {} where the samples' digests give {digest}",
                manifest.run_digest
            ),
        ));
    }
    let cpath = dir.join("config.yaml");
    let csha = hex::encode(Sha256::digest(file("config.yaml")));
    if csha != manifest.config_sha256 {
        return Err(Error::bad_file(
            &mpath,
            format!(
                "field 'config_sha256' is {} where config.yaml hashes to {csha}",
                manifest.config_sha256
            ),
        ));
    }
    let (config, tree) = load_resolved(&cpath)?;
    check_drift(&mpath, &manifest, &tree)?;
    let metpath = dir.join(METRICS);
    let recorded: serde_json::Value = serde_json::from_slice(file(METRICS))
        .map_err(|e| Error::bad_file(&metpath, format!("not a metrics file: {e}")))?;
    let now = metrics(&config, &samples);
    let now_v = serde_json::to_value(&now).expect("metrics serialize");
    if let Some((k, a, b)) = first_json_difference(&recorded, &now_v) {
        return Err(Error::bad_file(
            &metpath,
            format!("field '{k}' is {a} where the samples give {b}"),
        ));
    }
    // Last, every file byte for byte: what the checks above cannot see
    // (a text, a score, an override) is still covered.
    for (f, b) in manifest.files.iter().zip(&bytes) {
        let p = dir.join(&f.name);
        let sha = hex::encode(Sha256::digest(b));
        if b.len() as u64 != f.bytes || sha != f.sha256 {
            return Err(Error::bad_file(
                &p,
                format!(
                    "does not match the manifest: recorded {} bytes, sha256 {}; now {} bytes, sha256 {sha} (the file was altered after the run)",
                    f.bytes,
                    f.sha256,
                    b.len()
                ),
            ));
        }
    }
    // (The recomputed metrics, equal to the file's: a NaN or infinite
    // figure, written as null, reads back as what it was.)
    let metrics = now;
    Ok(Proven {
        files: manifest.files.len() + 1,
        manifest,
        metrics,
        samples,
        tree,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_differences_name_the_first_leaf() {
        let a = serde_json::json!({"x": {"y": [1, 2]}, "z": 1});
        let b = serde_json::json!({"x": {"y": [1, 3]}, "z": 1});
        assert_eq!(
            first_json_difference(&a, &b),
            Some(("x.y.1".into(), "2".into(), "3".into()))
        );
        assert_eq!(first_json_difference(&a, &a), None);
        let c = serde_json::json!({"x": {"y": [1, 2]}});
        assert_eq!(
            first_json_difference(&a, &c).unwrap().2,
            "(absent)".to_string()
        );
    }

    #[test]
    fn a_torn_last_line_is_refused_when_finished_and_dropped_when_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(SAMPLES);
        std::fs::write(&p, b"{\"id\":").unwrap();
        assert!(read_checked_samples(&p, false).unwrap().is_empty());
        let e = read_checked_samples(&p, true).unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
        std::fs::write(&p, b"not json\n").unwrap();
        let e = read_checked_samples(&p, false).unwrap_err().to_string();
        assert!(e.contains("line 1: not a sample record"), "{e}");
    }
}
