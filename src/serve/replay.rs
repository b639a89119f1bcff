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
        /// The line number of an interrupted last line (no newline, not
        /// JSON: the server was killed while writing it), skipped.
        skipped: Option<usize>,
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
    let (text, skipped) = whole_lines(&text);
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
        // Every sequence drawn is logged (best_of's unreturned ones too).
        let prompts: Vec<&api::PromptIn> = job.sequences().map(|(_, p, _)| p).collect();
        if logged.len() != prompts.len() {
            return Ok(Verdict::Differs {
                line,
                choice: 0,
                what: "number of choices".into(),
                logged: logged.len().to_string(),
                now: prompts.len().to_string(),
            });
        }
        let opts = EngineOptions {
            prefix_cache_bytes: 0,
            ..EngineOptions::default()
        };
        let outs = run_all(&loaded.model, opts, job.specs(&loaded), |_| {})?;
        for (i, ((_, fin), want)) in outs.iter().zip(logged).enumerate() {
            let got = [
                ("prompt_digest", ids_digest(&prompts[i].ids)),
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
    Ok(Verdict::Match {
        requests,
        choices,
        skipped,
    })
}

/// The log's whole lines, and the line number of an interrupted last line:
/// one with no newline that is not JSON. Each line is written with its
/// newline in one append, so only a server killed mid-write leaves one.
fn whole_lines(text: &str) -> (&str, Option<usize>) {
    if text.is_empty() || text.ends_with('\n') {
        return (text, None);
    }
    let cut = text.rfind('\n').map_or(0, |i| i + 1);
    if serde_json::from_str::<Value>(&text[cut..]).is_ok() {
        return (text, None);
    }
    (&text[..cut], Some(text[..cut].lines().count() + 1))
}

/// Opens the traffic log for appending. An interrupted last line left by a
/// server killed while writing it (bytes after the last newline) is cut off
/// first, so every line stays whole JSON: returns how many bytes were cut.
pub fn open_log(p: &Path) -> Result<(std::fs::File, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| Error::Io {
        path: p.into(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(p)
        .map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut cut = 0;
    if len > 0 {
        // Scan back from the end, a block at a time, for the last newline.
        let mut end = len;
        let mut keep = 0;
        let mut buf = vec![0u8; 64 << 10];
        'scan: while end > 0 {
            let start = end.saturating_sub(buf.len() as u64);
            let n = (end - start) as usize;
            f.seek(SeekFrom::Start(start)).map_err(io)?;
            f.read_exact(&mut buf[..n]).map_err(io)?;
            if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
                keep = start + i as u64 + 1;
                break 'scan;
            }
            end = start;
        }
        if keep < len {
            f.set_len(keep).map_err(io)?;
            f.sync_data().map_err(io)?;
            cut = len - keep;
        }
    }
    Ok((f, cut))
}
