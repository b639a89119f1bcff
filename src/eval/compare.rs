//! `verify` (re-run a recorded run and compare bits) and `diff` (compare two
//! recorded runs: config, environment, outputs, metrics with a paired test).

use super::manifest::Manifest;
use super::metrics::Metrics;
use super::perplexity::Totals;
use super::sample::SampleRecord;
use crate::error::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Where two sample lists first disagree.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstDifference {
    /// A sample present in one list only, or in another order.
    Missing {
        index: usize,
        recorded: Option<String>,
        current: Option<String>,
    },
    /// Generated tokens differ at `position` (None: same tokens, other logits).
    Token {
        id: String,
        position: Option<usize>,
        recorded: Option<u32>,
        current: Option<u32>,
    },
    /// Multiple-choice log-likelihood of `choice` differs.
    Loglik {
        id: String,
        choice: usize,
        recorded: f64,
        current: f64,
    },
}

impl std::fmt::Display for FirstDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tok = |t: &Option<u32>| t.map(|v| v.to_string()).unwrap_or_else(|| "(end)".into());
        match self {
            FirstDifference::Missing {
                index,
                recorded,
                current,
            } => write!(
                f,
                "sample #{index}: recorded {}, now {}",
                recorded.as_deref().unwrap_or("(none)"),
                current.as_deref().unwrap_or("(none)")
            ),
            FirstDifference::Token {
                id,
                position: Some(p),
                recorded,
                current,
            } => {
                write!(
                    f,
                    "sample {id}, output token {p}: recorded {}, now {}",
                    tok(recorded),
                    tok(current)
                )
            }
            FirstDifference::Token {
                id, position: None, ..
            } => {
                write!(f, "sample {id}: same tokens, but the logits bits differ")
            }
            FirstDifference::Loglik {
                id,
                choice,
                recorded,
                current,
            } => {
                write!(f, "sample {id}, choice {choice}: log-likelihood recorded {recorded:e}, now {current:e}")
            }
        }
    }
}

fn sample_difference(index: usize, a: &SampleRecord, b: &SampleRecord) -> Option<FirstDifference> {
    if a.id != b.id {
        return Some(FirstDifference::Missing {
            index,
            recorded: Some(a.id.clone()),
            current: Some(b.id.clone()),
        });
    }
    if let (Some(x), Some(y)) = (&a.choice_logliks, &b.choice_logliks) {
        for (c, (p, q)) in x.iter().zip(y).enumerate() {
            if p.to_bits() != q.to_bits() {
                return Some(FirstDifference::Loglik {
                    id: a.id.clone(),
                    choice: c,
                    recorded: *p,
                    current: *q,
                });
            }
        }
    }
    if a.output_ids != b.output_ids {
        let p = a
            .output_ids
            .iter()
            .zip(&b.output_ids)
            .take_while(|(x, y)| x == y)
            .count();
        return Some(FirstDifference::Token {
            id: a.id.clone(),
            position: Some(p),
            recorded: a.output_ids.get(p).copied(),
            current: b.output_ids.get(p).copied(),
        });
    }
    if a.digest != b.digest || a.logits_digest != b.logits_digest {
        return Some(FirstDifference::Token {
            id: a.id.clone(),
            position: None,
            recorded: None,
            current: None,
        });
    }
    None
}

/// The first difference between recorded and current samples, if any.
pub fn first_difference(
    recorded: &[SampleRecord],
    current: &[SampleRecord],
) -> Option<FirstDifference> {
    for i in 0..recorded.len().max(current.len()) {
        match (recorded.get(i), current.get(i)) {
            (Some(a), Some(b)) => {
                if let Some(d) = sample_difference(i, a, b) {
                    return Some(d);
                }
            }
            (a, b) => {
                return Some(FirstDifference::Missing {
                    index: i,
                    recorded: a.map(|s| s.id.clone()),
                    current: b.map(|s| s.id.clone()),
                })
            }
        }
    }
    None
}

/// Differences between two config trees: (key, A, B), "(absent)" where missing.
pub fn config_differences(a: &Value, b: &Value) -> Vec<(String, String, String)> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    super::proof::flatten("", a, &mut fa);
    super::proof::flatten("", b, &mut fb);
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            let g = |m: &BTreeMap<String, String>| {
                m.get(k).cloned().unwrap_or_else(|| "(absent)".into())
            };
            (k.clone(), g(&fa), g(&fb))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct MetricDelta {
    pub dataset: String,
    pub a: f64,
    pub b: f64,
    pub n_pairs: usize,
    /// Pairs right in A only, right in B only.
    pub a_only: usize,
    pub b_only: usize,
    pub p_value: f64,
    /// B - A over the pairs with a 95% bootstrap interval of the paired
    /// per-sample differences (the run's fixed-key resampler).
    pub delta: super::score::Estimate,
}

impl MetricDelta {
    pub fn significant(&self) -> bool {
        self.p_value < 0.05
    }
}

pub struct RunDiff {
    pub config: Vec<(String, String, String)>,
    pub environment: Vec<(String, String, String)>,
    pub changed_samples: Vec<(String, Option<FirstDifference>)>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub metrics: Vec<MetricDelta>,
    /// Perplexity tasks (no accuracy to pair): each run's totals.
    pub perplexity: Vec<(String, Totals, Totals)>,
    pub digest_a: String,
    pub digest_b: String,
}

/// A run as `diff` and `report` read it: from a folder, or (verify) made
/// from samples just computed.
#[derive(Debug, Clone)]
pub struct RunData {
    pub label: String,
    pub manifest: Manifest,
    pub metrics: Metrics,
    pub samples: Vec<SampleRecord>,
    /// The resolved config tree.
    pub tree: Value,
}

impl RunData {
    /// A finished run folder, checked first (`proof::check_run_folder`).
    pub fn read(dir: &Path) -> Result<Self> {
        let p = super::proof::check_run_folder(dir)?;
        Ok(RunData {
            label: dir.display().to_string(),
            manifest: p.manifest,
            metrics: p.metrics,
            samples: p.samples,
            tree: p.tree,
        })
    }
}

pub fn diff_runs(a: &Path, b: &Path) -> Result<RunDiff> {
    Ok(diff_data(&RunData::read(a)?, &RunData::read(b)?))
}

/// Bootstrap resamples for the interval of a metric delta.
const DELTA_RESAMPLES: usize = 1000;

pub fn diff_data(a: &RunData, b: &RunData) -> RunDiff {
    let (ma, mb) = (&a.manifest, &b.manifest);
    let (sa, sb) = (&a.samples, &b.samples);
    let by_id = |s: &[SampleRecord]| -> BTreeMap<String, SampleRecord> {
        s.iter().map(|r| (r.id.clone(), r.clone())).collect()
    };
    let (ia, ib) = (by_id(sa), by_id(sb));
    let mut changed = Vec::new();
    for r in sa {
        if let Some(o) = ib.get(&r.id) {
            if let Some(d) = sample_difference(0, r, o) {
                changed.push((r.id.clone(), Some(d)));
            }
        }
    }
    let only_in_a = sa
        .iter()
        .filter(|r| !ib.contains_key(&r.id))
        .map(|r| r.id.clone())
        .collect();
    let only_in_b = sb
        .iter()
        .filter(|r| !ia.contains_key(&r.id))
        .map(|r| r.id.clone())
        .collect();
    // Per dataset, and with several seeds per dataset and seed.
    let mut seen = std::collections::HashSet::new();
    let is_perplexity = |t: &str| {
        a.metrics
            .datasets
            .get(t)
            .is_some_and(|m| m.perplexity.is_some())
    };
    let groups: Vec<(String, Option<u64>)> = sa
        .iter()
        .filter(|r| !is_perplexity(&r.task))
        .map(|r| (r.task.clone(), r.seed))
        .filter(|g| seen.insert(g.clone()))
        .collect();
    let perplexity = a
        .metrics
        .datasets
        .iter()
        .filter_map(|(t, m)| {
            let pb = b.metrics.datasets.get(t)?.perplexity.clone()?;
            Some((t.clone(), m.perplexity.clone()?, pb))
        })
        .collect();
    let metrics = groups
        .into_iter()
        .map(|(t, seed)| {
            let pairs: Vec<(f64, f64)> = sa
                .iter()
                .filter(|r| r.task == t && r.seed == seed)
                .filter_map(|r| ib.get(&r.id).map(|o| (r.score, o.score)))
                .collect();
            let n = pairs.len().max(1) as f64;
            let a_only = pairs.iter().filter(|(x, y)| x > y).count();
            let b_only = pairs.iter().filter(|(x, y)| y > x).count();
            let d: Vec<f64> = pairs.iter().map(|(x, y)| y - x).collect();
            MetricDelta {
                dataset: match seed {
                    Some(s) => format!("{t}@seed={s}"),
                    None => t,
                },
                a: pairs.iter().map(|p| p.0).sum::<f64>() / n,
                b: pairs.iter().map(|p| p.1).sum::<f64>() / n,
                n_pairs: pairs.len(),
                a_only,
                b_only,
                p_value: super::score::mcnemar_exact(a_only, b_only),
                delta: super::score::bootstrap_mean(&d, DELTA_RESAMPLES),
            }
        })
        .collect();
    RunDiff {
        config: config_differences(&a.tree, &b.tree),
        environment: ma.environment.differences(&mb.environment),
        changed_samples: changed,
        only_in_a,
        only_in_b,
        metrics,
        perplexity,
        digest_a: ma.run_digest.clone(),
        digest_b: mb.run_digest.clone(),
    }
}
