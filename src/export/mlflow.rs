//! Export a finished run folder to an MLflow tracking server over its REST
//! API (`/api/2.0/mlflow/...`, artifacts through `mlflow-artifacts`): the
//! experiment (created if missing), one run named after the folder, params
//! from the resolved config, metrics with their intervals and latency
//! percentiles, a tag per manifest fact, the folder's files as artifacts and
//! each dataset as a logged input. Idempotent: a run is found again by its
//! `infer_eval.run_digest` tag (plus the folder name and manifest hash), and
//! a finished export is not repeated. Nothing in the run folder is written.

use crate::error::{Error, Result};
use crate::eval::manifest::Manifest;
use crate::record::flat::{flatten, Flat};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// MLflow's per-request limits (log-batch) and value sizes.
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
const MAX_METRICS: usize = 1000;
const MAX_KEY: usize = 250;
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 8000;
/// A dataset input's digest field holds at most 36 characters.
const MAX_DIGEST: usize = 36;

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// The tracking URI, `http(s)://host:port[/prefix]`.
    pub uri: String,
    pub experiment: String,
    auth: Option<String>,
}

impl Target {
    /// A target with credentials from `MLFLOW_TRACKING_TOKEN` (bearer) or
    /// `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (basic).
    pub fn new(uri: &str, experiment: &str) -> Result<Self> {
        let uri = uri.trim_end_matches('/').to_string();
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "MLflow tracking URI '{uri}': only http:// and https:// servers are supported (a local mlruns folder or a database URI is not a server; run `mlflow server` on it)"
            )));
        }
        if experiment.is_empty() {
            return Err(Error::Usage("MLflow experiment name is empty".into()));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = if let Some(t) = env("MLFLOW_TRACKING_TOKEN") {
            Some(format!("Bearer {t}"))
        } else if let (Some(u), Some(p)) = (
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            Some(format!("Basic {b64}"))
        } else {
            None
        };
        Ok(Target {
            uri,
            experiment: experiment.to_string(),
            auth,
        })
    }
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct Exported {
    pub experiment_id: String,
    pub run_id: String,
    /// False when the run was already exported (nothing was sent again).
    pub created: bool,
    pub artifacts: usize,
    /// The run's page in the MLflow UI.
    pub url: String,
}

struct Client {
    agent: ureq::Agent,
    target: Target,
}

/// ureq's error as a one-line reason, with MLflow's error code and message.
fn describe(e: ureq::Error) -> (Option<u16>, String) {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .map(|v| {
                    format!(
                        "{}: {}",
                        v["error_code"].as_str().unwrap_or("error"),
                        v["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| body.chars().take(300).collect());
            (Some(code), format!("HTTP {code} {msg}"))
        }
        ureq::Error::Transport(t) => (None, format!("cannot reach the server: {t}")),
    }
}

impl Client {
    fn new(target: &Target) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .try_proxy_from_env(true)
            .build();
        Client {
            agent,
            target: target.clone(),
        }
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.target.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    fn fail(&self, what: &str, reason: String) -> Error {
        Error::Remote(format!("MLflow at {}: {what}: {reason}", self.target.uri))
    }

    /// A REST call; Err((status, reason)).
    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::result::Result<Value, (Option<u16>, String)> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.target.uri);
        let req = self.request(method, &url);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        }
        .map_err(describe)?;
        let text = resp
            .into_string()
            .map_err(|e| (None, format!("reading the reply: {e}")))?;
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).map_err(|e| {
            (
                None,
                format!(
                    "the reply is not JSON ({e}): {}",
                    text.chars().take(200).collect::<String>()
                ),
            )
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.try_call(method, path, body)
            .map_err(|(_, r)| self.fail(&format!("{method} {path}"), r))
    }

    fn experiment_id(&self) -> Result<String> {
        let name = &self.target.experiment;
        let get = || {
            self.try_call(
                "GET",
                &format!(
                    "experiments/get-by-name?experiment_name={}",
                    url_encode(name)
                ),
                None,
            )
        };
        let id = |v: &Value| v["experiment"]["experiment_id"].as_str().map(String::from);
        match get() {
            Ok(v) => {
                if v["experiment"]["lifecycle_stage"] == "deleted" {
                    return Err(self.fail(
                        &format!("experiment '{name}'"),
                        "it is deleted; restore it (mlflow experiments restore) or pick another name".into(),
                    ));
                }
                return id(&v).ok_or_else(|| {
                    self.fail(
                        "experiments/get-by-name",
                        "no experiment_id in the reply".into(),
                    )
                });
            }
            Err((Some(404), _)) => {}
            Err((_, r)) => return Err(self.fail("experiments/get-by-name", r)),
        }
        let body = json!({"name": name, "tags": [{"key": "infer_eval.created_by", "value": "infer-eval export mlflow"}]});
        match self.try_call("POST", "experiments/create", Some(&body)) {
            Ok(v) => v["experiment_id"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| {
                    self.fail("experiments/create", "no experiment_id in the reply".into())
                }),
            // Created by someone else in between.
            Err((Some(400), r)) if r.contains("RESOURCE_ALREADY_EXISTS") => get()
                .ok()
                .as_ref()
                .and_then(id)
                .ok_or_else(|| self.fail("experiments/create", r)),
            Err((_, r)) => Err(self.fail("experiments/create", r)),
        }
    }

    /// Runs of the experiment tagged with `digest`: (run_id, status, tags).
    fn find_runs(
        &self,
        exp: &str,
        digest: &str,
    ) -> Result<Vec<(String, String, Vec<(String, String)>)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [exp],
                "filter": format!("tags.`infer_eval.run_digest` = '{digest}'"),
                "max_results": 100,
                "run_view_type": "ACTIVE_ONLY",
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.call("POST", "runs/search", Some(&body))?;
            for r in v["runs"].as_array().into_iter().flatten() {
                let tags = r["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        Some((
                            t["key"].as_str()?.to_string(),
                            t["value"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                out.push((
                    r["info"]["run_id"].as_str().unwrap_or_default().to_string(),
                    r["info"]["status"].as_str().unwrap_or_default().to_string(),
                    tags,
                ));
            }
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    fn put_artifact(&self, artifact_root: &str, rel: &str, bytes: &[u8]) -> Result<()> {
        let path: Vec<String> = rel.split('/').map(url_encode).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{artifact_root}/{}",
            self.target.uri,
            path.join("/")
        );
        self.request("PUT", &url)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .map_err(|e| self.fail(&format!("uploading artifact {rel}"), describe(e).1))?;
        Ok(())
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// At most `n` bytes of `s`, cut at a character boundary.
fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Metric keys: MLflow allows letters, digits, `_ - . / `and space.
fn metric_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn mtime_ms(p: &Path) -> Result<i64> {
    let m = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    Ok(millis(m.modified().map_err(|e| Error::io(p, e))?))
}

/// Everything an export sends, read from the run folder first (so a bad
/// folder fails before anything reaches the server).
pub struct RunPayload {
    pub dir: PathBuf,
    pub name: String,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    pub params: Flat,
    pub metrics: Vec<(String, f64)>,
    pub tags: Flat,
    pub files: Vec<(String, PathBuf)>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The metrics logged for a run: per dataset accuracy with its interval and
/// n (and acc_norm, per-seed and across-seed figures, lm-eval's metrics by
/// their names; a perplexity task's perplexities instead of an accuracy),
/// the totals, and latency percentiles.
fn metric_list(m: &crate::eval::metrics::Metrics) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (name, d) in &m.datasets {
        if let Some(p) = &d.perplexity {
            for (what, v) in [
                ("token_perplexity", p.token_perplexity),
                ("word_perplexity", p.word_perplexity),
                ("byte_perplexity", p.byte_perplexity),
                ("bits_per_byte", p.bits_per_byte),
                ("tokens", p.tokens as f64),
                ("documents", d.accuracy.n as f64),
            ] {
                out.push((format!("{name}/{what}"), v));
            }
            continue;
        }
        let mut est = |what: &str, e: &crate::eval::score::Estimate| {
            out.push((format!("{name}/{what}"), e.mean));
            out.push((format!("{name}/{what}.ci_low"), e.ci_low));
            out.push((format!("{name}/{what}.ci_high"), e.ci_high));
            out.push((format!("{name}/{what}.n"), e.n as f64));
        };
        est("accuracy", &d.accuracy);
        if let Some(n) = &d.accuracy_norm {
            est("accuracy_norm", n);
        }
        // lm-eval's names: "exact_match,first-number" logs as
        // "exact_match_first-number" (MLflow keys take no commas).
        for (metric, e) in &d.lm_eval {
            est(metric, e);
        }
        for (seed, e) in &d.per_seed {
            est(&format!("seed_{seed}/accuracy"), e);
        }
        if let Some(s) = &d.across_seeds {
            for (what, v) in [
                ("mean", s.mean),
                ("std", s.std),
                ("ci_low", s.ci_low),
                ("ci_high", s.ci_high),
                ("seeds", s.seeds as f64),
            ] {
                out.push((format!("{name}/across_seeds.{what}"), v));
            }
        }
    }
    if m.has_accuracy() {
        out.push(("macro_accuracy".into(), m.macro_accuracy));
    }
    out.push(("n_samples".into(), m.n_samples as f64));
    out.push(("generated_tokens".into(), m.generated_tokens as f64));
    out.push(("tokens_per_s".into(), m.tokens_per_s));
    out.push(("samples_per_s".into(), m.samples_per_s));
    for (k, p) in [("ttft_ms", &m.ttft_ms), ("tpot_ms", &m.tpot_ms)] {
        for (q, v) in [
            ("p50", p.p50),
            ("p90", p.p90),
            ("p95", p.p95),
            ("p99", p.p99),
        ] {
            out.push((format!("{k}.{q}"), v));
        }
    }
    out.into_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (metric_key(&k), v))
        .collect()
}

fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(base: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let here = base.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .map_err(|e| Error::io(&here, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&here, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            // Temporary files of an atomic write in progress.
            if name.starts_with('.') {
                continue;
            }
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.path().is_dir() {
                walk(base, &r, out)?;
            } else {
                // (A FIFO or device is named, not read.)
                crate::fsio::regular_size(&e.path())?;
                out.push((r, e.path()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

impl RunPayload {
    pub fn read(dir: &Path) -> Result<Self> {
        let crate::eval::proof::Proven {
            manifest, metrics, ..
        } = crate::eval::proof::check_run_folder(dir)?;
        let mpath = dir.join("manifest.json");
        let manifest_sha256 = crate::formats::sha256_file(&mpath)?;
        let cpath = dir.join("config.yaml");
        let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
        let tree: Value = serde_norway::from_str(&text)
            .map_err(|e| Error::bad_file(&cpath, format!("invalid YAML: {e}")))?;
        let params = flatten(&tree);
        let mut mval = serde_json::to_value(&manifest).expect("manifest serializes");
        if let Value::Object(m) = &mut mval {
            // In the artifacts; as tags they would be one per file.
            m.remove("model_files");
        }
        let mut tags: Flat = flatten(&mval)
            .into_iter()
            .map(|(k, v)| (format!("infer_eval.{k}"), v))
            .collect();
        let name = dir
            .canonicalize()
            .map_err(|e| Error::io(dir, e))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let env = &manifest.environment;
        tags.push(("infer_eval.run_folder".into(), name.clone()));
        tags.push(("infer_eval.manifest_sha256".into(), manifest_sha256.clone()));
        tags.push(("mlflow.source.name".into(), "infer-eval".into()));
        tags.push(("mlflow.source.type".into(), "LOCAL".into()));
        tags.push(("mlflow.source.git.commit".into(), env.git_sha.clone()));
        if let Some(img) = &env.image {
            if let Some(r) = &img.reference {
                tags.push(("mlflow.docker.image.uri".into(), r.clone()));
            }
            if let Some(id) = &img.id {
                tags.push(("mlflow.docker.image.id".into(), id.clone()));
            }
        }
        Ok(RunPayload {
            start_ms: mtime_ms(&cpath)?,
            end_ms: mtime_ms(&mpath)?,
            dir: dir.to_path_buf(),
            name,
            manifest_sha256,
            params,
            metrics: metric_list(&metrics),
            tags,
            files: files_of(dir)?,
            manifest,
        })
    }

    /// The datasets as MLflow dataset inputs: digest = DVC md5 where DVC
    /// tracks the file, else the first 32 hex digits of its sha256 (the
    /// field holds 36 characters); the whole sha256 is in the profile.
    fn inputs(&self) -> Value {
        let list: Vec<Value> = self
            .manifest
            .datasets
            .iter()
            .map(|d| {
                let dvc = self.manifest.dvc.iter().find(|r| r.file == d.path);
                let (digest, source_type, source) = match dvc {
                    Some(r) => (
                        clip(r.md5.trim_end_matches(".dir"), MAX_DIGEST),
                        "dvc",
                        json!({"path": d.path, "out": r.out_path, "tracked_by": r.tracked_by,
                               "repo_root": r.repo_root, "rev": r.repo_rev, "remote": r.remote, "md5": r.md5}),
                    ),
                    None => (clip(&d.sha256, 32), "local", json!({"path": d.path})),
                };
                json!({
                    "dataset": {
                        "name": d.name,
                        "digest": digest,
                        "source_type": source_type,
                        "source": source.to_string(),
                        "profile": json!({"sha256": d.sha256, "path": d.path}).to_string(),
                    },
                    "tags": [{"key": "mlflow.data.context", "value": "eval"}],
                })
            })
            .collect();
        Value::Array(list)
    }
}

fn kv(list: &[(String, String)], value_limit: usize) -> Vec<Value> {
    list.iter()
        .map(|(k, v)| json!({"key": clip(k, MAX_KEY), "value": clip(v, value_limit)}))
        .collect()
}

/// Export one finished run folder. Progress lines go to `log`.
pub fn export(target: &Target, dir: &Path, mut log: impl FnMut(&str)) -> Result<Exported> {
    let p = RunPayload::read(dir)?;
    let c = Client::new(target);
    let exp = c.experiment_id()?;
    let digest = &p.manifest.run_digest;
    let same =
        |tags: &[(String, String)], k: &str, v: &str| tags.iter().any(|(a, b)| a == k && b == v);
    let existing = c.find_runs(&exp, digest)?.into_iter().find(|(_, _, t)| {
        same(t, "infer_eval.run_folder", &p.name)
            && same(t, "infer_eval.manifest_sha256", &p.manifest_sha256)
    });
    let url = |run: &str| format!("{}/#/experiments/{exp}/runs/{run}", target.uri);
    let run_id = match existing {
        Some((id, status, _)) if status == "FINISHED" => {
            log(&format!("already exported as run {id}; nothing sent"));
            return Ok(Exported {
                url: url(&id),
                experiment_id: exp,
                run_id: id,
                created: false,
                artifacts: 0,
            });
        }
        Some((id, status, _)) => {
            log(&format!(
                "run {id} exists ({status}: an export that did not finish); completing it"
            ));
            id
        }
        None => {
            let v = c.call(
                "POST",
                "runs/create",
                Some(&json!({
                    "experiment_id": exp,
                    "run_name": p.name,
                    "start_time": p.start_ms,
                    "tags": [{"key": "infer_eval.run_digest", "value": digest}],
                })),
            )?;
            v["run"]["info"]["run_id"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| c.fail("runs/create", "no run_id in the reply".into()))?
        }
    };
    let info = c.call("GET", &format!("runs/get?run_id={run_id}"), None)?;
    let artifact_uri = info["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(artifact_root) = artifact_uri.strip_prefix("mlflow-artifacts:/") else {
        return Err(c.fail(
            &format!("run {run_id}"),
            format!("its artifact location is '{artifact_uri}', which cannot be written over the server's REST API; start the server with --serve-artifacts"),
        ));
    };
    let artifact_root = artifact_root
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string();
    log(&format!(
        "run {run_id} in experiment '{}' ({exp})",
        target.experiment
    ));
    let metrics: Vec<Value> = p
        .metrics
        .iter()
        .map(
            |(k, v)| json!({"key": clip(k, MAX_KEY), "value": v, "timestamp": p.end_ms, "step": 0}),
        )
        .collect();
    let params = kv(&p.params, MAX_PARAM_VALUE);
    let tags = kv(&p.tags, MAX_TAG_VALUE);
    for chunk in params.chunks(MAX_PARAMS) {
        c.call(
            "POST",
            "runs/log-batch",
            Some(&json!({"run_id": run_id, "params": chunk})),
        )?;
    }
    for chunk in tags.chunks(MAX_TAGS) {
        c.call(
            "POST",
            "runs/log-batch",
            Some(&json!({"run_id": run_id, "tags": chunk})),
        )?;
    }
    for chunk in metrics.chunks(MAX_METRICS) {
        c.call(
            "POST",
            "runs/log-batch",
            Some(&json!({"run_id": run_id, "metrics": chunk})),
        )?;
    }
    log(&format!(
        "{} params, {} metrics, {} tags",
        params.len(),
        metrics.len(),
        tags.len()
    ));
    c.call(
        "POST",
        "runs/log-inputs",
        Some(&json!({"run_id": run_id, "datasets": p.inputs()})),
    )?;
    for (rel, path) in &p.files {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        c.put_artifact(&artifact_root, rel, &bytes)?;
    }
    log(&format!("{} artifacts uploaded", p.files.len()));
    c.call(
        "POST",
        "runs/update",
        Some(&json!({"run_id": run_id, "status": "FINISHED", "end_time": p.end_ms})),
    )?;
    Ok(Exported {
        url: url(&run_id),
        experiment_id: exp,
        run_id,
        created: true,
        artifacts: p.files.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A perplexity task logs its perplexities and no accuracy; an lm-eval
    /// generation task its per-filter exact_match; seeds each seed's.
    #[test]
    fn lm_eval_perplexity_and_seed_metrics_are_logged() {
        let e = |v: f64| serde_json::json!({"mean": v, "ci_low": v, "ci_high": v, "n": 3});
        let pct = serde_json::json!({"p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0});
        let m: crate::eval::metrics::Metrics = serde_json::from_value(serde_json::json!({
            "datasets": {
                "wiki": {"kind": "multiple_choice", "accuracy": e(0.0),
                    "lm_eval": {"word_perplexity,none": e(20.0)},
                    "perplexity": {"loglik": -30.0, "tokens": 10, "words": 5, "bytes": 20,
                        "windows": 1, "token_perplexity": 20.1, "word_perplexity": 20.0,
                        "byte_perplexity": 4.5, "bits_per_byte": 2.2}},
                "gen": {"kind": "generate", "accuracy": e(0.5),
                    "lm_eval": {"exact_match,first-number": e(0.25)},
                    "per_seed": {"7": e(0.4)},
                    "across_seeds": {"mean": 0.5, "std": 0.1, "ci_low": 0.2, "ci_high": 0.8, "seeds": 2}}
            },
            "macro_accuracy": 0.5, "n_samples": 6, "generated_tokens": 9, "tokens_per_s": 1.0,
            "samples_per_s": 1.0, "ttft_ms": pct, "tpot_ms": pct
        }))
        .unwrap();
        let l: std::collections::BTreeMap<String, f64> = metric_list(&m).into_iter().collect();
        assert_eq!(l["wiki/word_perplexity"], 20.0);
        assert_eq!(l["wiki/bits_per_byte"], 2.2);
        assert!(!l.contains_key("wiki/accuracy"));
        assert_eq!(l["gen/exact_match_first-number"], 0.25);
        assert_eq!(l["gen/seed_7/accuracy.ci_low"], 0.4);
        assert_eq!(l["gen/across_seeds.std"], 0.1);
        assert_eq!(l["gen/accuracy"], 0.5);
    }

    #[test]
    fn keys_and_values_fit_mlflow_limits() {
        assert_eq!(metric_key("capitals/accuracy (n)"), "capitals/accuracy _n_");
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(url_encode("a b/é"), "a%20b%2F%C3%A9");
        assert!(Target::new("file:///tmp/mlruns", "x").is_err());
        assert!(Target::new("http://127.0.0.1:5000/", "").is_err());
        assert_eq!(
            Target::new("http://127.0.0.1:5000/", "e").unwrap().uri,
            "http://127.0.0.1:5000"
        );
    }
}
