//! A run's plan (`plan.json`, written when its folder is made): every
//! sample it computes, in order (id and prompt hash), and the items it left
//! out because they cannot fit the model's context (`run.too_long: skip`).
//! Made while the run is planned, before anything is written; `--resume`
//! and the run folder's check (`proof`) hold the samples against it.

use super::config::TooLong;
use super::run::{Prepared, Skipped};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const PLAN: &str = "plan.json";

/// One sample the run computes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Planned {
    pub id: String,
    pub prompt_hash: String,
}

/// Every sample a run folder computes, in order (`plan.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub samples: Vec<Planned>,
    /// Items left out because they cannot fit the model's context
    /// (`run.too_long: skip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl Plan {
    pub fn read(dir: &Path) -> Result<Plan> {
        let p = dir.join(PLAN);
        if !p.exists() {
            return Err(Error::bad_file(
                &p,
                "missing: the run folder has no plan (it was made by an older infer-eval, or the file was removed); run it again",
            ));
        }
        Plan::parse(&p, &crate::fsio::read_regular(&p, 1 << 30)?)
    }

    /// A plan from the bytes of `path`, already read.
    pub fn parse(path: &Path, b: &[u8]) -> Result<Plan> {
        serde_json::from_slice(b).map_err(|e| Error::bad_file(path, format!("not a run plan: {e}")))
    }
}

impl Prepared {
    /// Every sample this run computes, in order (`plan.json`).
    pub fn plan(&self) -> Plan {
        Plan {
            samples: self
                .samples
                .iter()
                .map(|s| Planned {
                    id: self.sample_id(s),
                    prompt_hash: s.prompt_hash.clone(),
                })
                .collect(),
            skipped: self.skipped.clone(),
        }
    }

    /// Check every sample against the model's context before anything is
    /// written: refuse the run naming the first that cannot fit, or (with
    /// `run.too_long: skip`) leave those out and record them as skipped.
    pub(super) fn fit_context(&mut self) -> Result<()> {
        let ctx = self.model.model.config.max_position_embeddings;
        let all = std::mem::take(&mut self.samples);
        for s in all {
            // An empty prompt or context is bad input, whatever run.too_long says.
            let kind = self.config.task.datasets[s.dataset].kind;
            let empty = match kind {
                super::config::TaskKind::Generate => {
                    s.oversize_bytes.is_none() && s.prompt_ids.is_empty()
                }
                super::config::TaskKind::MultipleChoice => {
                    s.choices.iter().any(|c| c.context.is_empty())
                }
            };
            if empty {
                return Err(Error::Input(format!(
                    "{}: item '{}': its prompt has no tokens",
                    self.config.task.datasets[s.dataset].path,
                    self.sample_id(&s)
                )));
            }
            let why = if let Some(b) = s.oversize_bytes {
                Some(format!(
                    "its prompt is {b} bytes, more than the model's context of {ctx} tokens can hold (it was not tokenised)"
                ))
            } else if self.config.task.datasets[s.dataset].kind == super::config::TaskKind::Generate
            {
                (!crate::engine::prompt_fits(s.prompt_ids.len(), ctx)).then(|| {
                    format!(
                        "its prompt has {} tokens; the model's context is {ctx} positions (generation needs at least one free)",
                        s.prompt_ids.len()
                    )
                })
            } else {
                s.choices
                    .iter()
                    .find(|c| !crate::engine::loglik_fits(c.context.len(), c.continuation.len(), ctx))
                    .map(|c| {
                        let n = c.context.len() + c.continuation.len();
                        format!(
                            "a choice needs {n} tokens (context plus continuation); the model's context is {ctx} positions"
                        )
                    })
            };
            let Some(why) = why else {
                self.samples.push(s);
                continue;
            };
            let id = self.sample_id(&s);
            match self.config.run.too_long {
                TooLong::Error => {
                    let d = &self.config.task.datasets[s.dataset];
                    return Err(Error::Resource(format!(
                        "{}: item '{id}': {why}. Nothing was written; set run.too_long=skip to leave such items out (recorded as skipped in plan.json)",
                        d.path
                    )));
                }
                TooLong::Skip => self.skipped.push(Skipped { id, why }),
            }
        }
        Ok(())
    }

    /// A stored baseline entry for sample `i` is served only if its digest
    /// is that of its outputs and a generation has one finite
    /// log-probability per token; otherwise the store (`store`) was altered.
    pub fn check_stored(&self, i: usize, e: &crate::baseline::Entry, store: &Path) -> Result<()> {
        let s = &self.samples[i];
        let kind = self.config.task.datasets[s.dataset].kind;
        let want = match kind {
            super::config::TaskKind::Generate => crate::engine::ids_digest(&e.output_ids),
            super::config::TaskKind::MultipleChoice => super::sample::logliks_digest(&e.logprobs),
        };
        let problem = if e.digest != want {
            Some(format!(
                "has digest {} but its outputs hash to {want}",
                e.digest
            ))
        } else if kind == super::config::TaskKind::Generate
            && e.logprobs.len() != e.output_ids.len()
        {
            Some(format!(
                "holds {} log-probabilities for {} tokens",
                e.logprobs.len(),
                e.output_ids.len()
            ))
        } else if e.logprobs.iter().any(|v| v.is_nan()) {
            Some("holds a NaN log-probability".to_string())
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(p) => Err(Error::bad_file(
                store,
                format!(
                    "the stored entry for sample '{}' (prompt hash {}) {p}: the store was altered; remove the entry or the store, or run with --cache off",
                    self.sample_id(s),
                    s.prompt_hash
                ),
            )),
        }
    }

    /// Before the run folder is made (`--cache read`): every entry the store
    /// would serve this run is checked, so an altered store refuses the run
    /// before anything is written.
    pub fn check_store(&self, st: &mut crate::baseline::Store) -> Result<usize> {
        let mut hits = 0;
        for i in 0..self.samples.len() {
            if let Some(e) = st.get(&self.key(i))? {
                self.check_stored(i, &e, st.path())?;
                hits += 1;
            }
        }
        Ok(hits)
    }
}
