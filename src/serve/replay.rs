//! `infer-eval verify --served FILE`: re-run every request of a served-traffic
//! log (`serve --log`) alone, through the same request reading and the same
//! engine, and compare each choice's digests with what was served.

use super::api::{self, Endpoint};
use crate::engine::core::{run_all, EngineOptions};
use crate::engine::ids_digest;
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// The first difference found, or how much matched.
#[derive(Debug)]
pub enum Verdict {
    Match {
        requests: usize,
        choices: usize,
    },
    Differs {
        line: usize,
        choice: usize,
        what: String,
        logged: String,
        now: String,
    },
}

/// A log line's model: its name and sha256.
pub fn logged_model(file: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io {
        path: file.into(),
        source: e,
    })?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| Error::BadFile {
            path: file.into(),
            msg: "the log holds no requests".into(),
        })?;
    let v: Value = serde_json::from_str(first).map_err(|e| Error::BadFile {
        path: file.into(),
        msg: format!("line 1: {e}"),
    })?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok((s("model"), s("model_sha256")))
}

pub fn verify(
    loaded: Arc<LoadedModel>,
    file: &Path,
    mut progress: impl FnMut(usize),
) -> Result<Verdict> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io {
        path: file.into(),
        source: e,
    })?;
    let bad = |line: usize, msg: String| Error::BadFile {
        path: file.into(),
        msg: format!("line {line}: {msg}"),
    };
    let (mut requests, mut choices) = (0, 0);
    for (n, l) in text.lines().enumerate() {
        let line = n + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| bad(line, e.to_string()))?;
        let field = |k: &str| v.get(k).ok_or_else(|| bad(line, format!("no '{k}' field")));
        let sha = field("model_sha256")?.as_str().unwrap_or_default();
        if sha != loaded.info.sha256 {
            return Ok(Verdict::Differs {
                line,
                choice: 0,
                what: "model sha256".into(),
                logged: sha.into(),
                now: loaded.info.sha256.clone(),
            });
        }
        let dv = field("determinism_version")?.as_u64().unwrap_or(0);
        if dv != crate::DETERMINISM_VERSION as u64 {
            return Ok(Verdict::Differs {
                line,
                choice: 0,
                what: "determinism version".into(),
                logged: dv.to_string(),
                now: crate::DETERMINISM_VERSION.to_string(),
            });
        }
        let endpoint = field("endpoint")?
            .as_str()
            .and_then(Endpoint::parse_path)
            .ok_or_else(|| {
                bad(
                    line,
                    "'endpoint' is not /v1/completions or /v1/chat/completions".into(),
                )
            })?;
        let job = api::parse(&loaded, endpoint, field("request")?).map_err(|e| {
            bad(
                line,
                format!("the logged request no longer reads: {}", e.message),
            )
        })?;
        let logged = field("choices")?
            .as_array()
            .ok_or_else(|| bad(line, "'choices' is not a list".into()))?;
        if logged.len() != job.prompts.len() {
            return Ok(Verdict::Differs {
                line,
                choice: 0,
                what: "number of choices".into(),
                logged: logged.len().to_string(),
                now: job.prompts.len().to_string(),
            });
        }
        let opts = EngineOptions {
            prefix_cache_bytes: 0,
            ..EngineOptions::default()
        };
        let outs = run_all(&loaded.model, opts, job.specs(&loaded), |_| {})?;
        for (i, ((_, fin), want)) in outs.iter().zip(logged).enumerate() {
            let got = [
                ("prompt_digest", ids_digest(&job.prompts[i].ids)),
                ("digest", fin.digest.clone()),
                ("logits_digest", fin.logits_digest.clone()),
            ];
            for (k, now) in got {
                let was = want.get(k).and_then(Value::as_str).unwrap_or_default();
                if was != now {
                    return Ok(Verdict::Differs {
                        line,
                        choice: i,
                        what: k.into(),
                        logged: was.into(),
                        now,
                    });
                }
            }
            choices += 1;
        }
        requests += 1;
        progress(requests);
    }
    Ok(Verdict::Match { requests, choices })
}
