//! A run's metrics: accuracy per dataset with bootstrap intervals (and
//! acc_norm, per-seed and across-seed figures, lm-eval's per-filter
//! exact_match), throughput and latency percentiles.

use super::config::{DatasetConfig, EvalConfig, TaskKind};
use super::sample::SampleRecord;
use super::score::{self, Estimate, Percentiles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetMetrics {
    pub kind: TaskKind,
    pub accuracy: Estimate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_norm: Option<Estimate>,
    /// With several seeds: accuracy per seed (keys are the seeds).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_seed: BTreeMap<String, Estimate>,
    /// With several seeds: the per-seed accuracies' mean, standard
    /// deviation and 95% t interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across_seeds: Option<score::SeedSpread>,
    /// lm-eval generate_until: `exact_match,<filter>` per filter pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lm_eval: BTreeMap<String, Estimate>,
    /// lm-eval loglikelihood_rolling: the documents' totals and their
    /// token, word and byte perplexities and bits per byte (no accuracy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<super::perplexity::Totals>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    pub datasets: BTreeMap<String, DatasetMetrics>,
    pub macro_accuracy: f64,
    pub n_samples: usize,
    pub generated_tokens: usize,
    pub tokens_per_s: f64,
    /// Computed samples (store hits excluded) per second of engine time.
    #[serde(default)]
    pub samples_per_s: f64,
    pub ttft_ms: Percentiles,
    pub tpot_ms: Percentiles,
}

impl Metrics {
    /// Whether any dataset has an accuracy (perplexity tasks have none), so
    /// `macro_accuracy` means something.
    pub fn has_accuracy(&self) -> bool {
        self.datasets.values().any(|d| d.perplexity.is_none())
    }
}

pub fn metrics(config: &EvalConfig, samples: &[SampleRecord]) -> Metrics {
    let mut datasets = BTreeMap::new();
    for d in &config.task.datasets {
        let rows: Vec<&SampleRecord> = samples.iter().filter(|s| s.task == d.name).collect();
        let acc: Vec<f64> = rows.iter().map(|s| s.score).collect();
        let norm: Vec<f64> = rows.iter().filter_map(|s| s.score_norm).collect();
        let accuracy_norm =
            (d.kind == TaskKind::MultipleChoice && !d.is_lm_loglikelihood() && !d.is_lm_rolling())
                .then(|| score::bootstrap_mean(&norm, config.run.bootstrap));
        let mut by_seed: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for s in &rows {
            if let Some(seed) = s.seed {
                by_seed.entry(seed).or_default().push(s.score);
            }
        }
        // Seeds in numeric order (the spread sums in this order).
        let seed_acc: Vec<(u64, Estimate)> = by_seed
            .iter()
            .map(|(seed, v)| (*seed, score::bootstrap_mean(v, config.run.bootstrap)))
            .collect();
        // An accuracy's interval is clamped to [0, 1].
        let across_seeds = (!seed_acc.is_empty()).then(|| {
            let mut s =
                score::seed_spread(&seed_acc.iter().map(|(_, e)| e.mean).collect::<Vec<_>>());
            s.ci_low = s.ci_low.max(0.0);
            s.ci_high = s.ci_high.min(1.0);
            s
        });
        let per_seed: BTreeMap<String, Estimate> = seed_acc
            .into_iter()
            .map(|(seed, e)| (seed.to_string(), e))
            .collect();
        // (A shard may hold none of a task's documents: no totals.)
        let perplexity = (d.is_lm_rolling() && !rows.is_empty()).then(|| rolling_totals(&rows));
        datasets.insert(
            d.name.clone(),
            DatasetMetrics {
                kind: d.kind,
                accuracy: score::bootstrap_mean(&acc, config.run.bootstrap),
                accuracy_norm,
                per_seed,
                across_seeds,
                lm_eval: lm_eval_metrics(d, &rows, perplexity.as_ref(), config.run.bootstrap),
                perplexity,
            },
        );
    }
    // Perplexity tasks have no accuracy to average.
    let scored: Vec<f64> = config
        .task
        .datasets
        .iter()
        .filter(|d| !d.is_lm_rolling())
        .map(|d| datasets[&d.name].accuracy.mean)
        .collect();
    let macro_accuracy = scored.iter().sum::<f64>() / scored.len().max(1) as f64;
    // Throughput and latency count computed samples only, not store hits.
    let timed = || samples.iter().filter(|s| !s.cached);
    // lm-eval loglikelihood rows hold greedy flags in output_ids, not tokens.
    let generated: usize = timed()
        .filter(|s| s.choice_logliks.is_none())
        .map(|s| s.output_ids.len())
        .sum();
    // A sample's share of its batch's time, in seconds.
    let share_s = |s: &SampleRecord| s.latency.batch_ms / s.latency.batch_len.max(1) as f64 / 1e3;
    let gen_time_s: f64 = timed()
        .filter(|s| s.choice_logliks.is_none())
        .map(share_s)
        .sum();
    let sample_time_s: f64 = timed().map(share_s).sum();
    let ttft: Vec<f64> = timed().map(|s| s.latency.ttft_ms).collect();
    let tpot: Vec<f64> = timed()
        .flat_map(|s| s.latency.token_ms.iter().copied())
        .collect();
    Metrics {
        datasets,
        macro_accuracy,
        n_samples: samples.len(),
        generated_tokens: generated,
        tokens_per_s: if gen_time_s > 0.0 {
            generated as f64 / gen_time_s
        } else {
            0.0
        },
        samples_per_s: if sample_time_s > 0.0 {
            timed().count() as f64 / sample_time_s
        } else {
            0.0
        },
        ttft_ms: score::percentiles(&ttft),
        tpot_ms: score::percentiles(&tpot),
    }
}

/// lm-eval's figures by lm-eval's names: `exact_match,<filter>` per filter
/// pipeline (generate_until); `acc,none` (is_greedy) and `perplexity,none`
/// (exp of minus the mean log-likelihood, its interval the bootstrap
/// interval of the mean carried through) for loglikelihood.
fn lm_eval_metrics(
    d: &DatasetConfig,
    rows: &[&SampleRecord],
    perplexity: Option<&super::perplexity::Totals>,
    bootstrap: usize,
) -> BTreeMap<String, Estimate> {
    if let Some(t) = perplexity {
        // lm-eval's weighted perplexities are corpus figures, reported
        // without an interval (lm-eval gives them no stderr).
        let point = |v: f64| Estimate {
            mean: v,
            ci_low: v,
            ci_high: v,
            n: rows.len(),
        };
        return BTreeMap::from([
            ("word_perplexity,none".to_string(), point(t.word_perplexity)),
            ("byte_perplexity,none".to_string(), point(t.byte_perplexity)),
            ("bits_per_byte,none".to_string(), point(t.bits_per_byte)),
        ]);
    }
    if d.is_lm_loglikelihood() {
        let acc: Vec<f64> = rows.iter().map(|s| s.score).collect();
        let ll: Vec<f64> = rows
            .iter()
            .filter_map(|s| s.choice_logliks.as_ref()?.first().copied())
            .collect();
        let m = score::bootstrap_mean(&ll, bootstrap);
        let ppl = Estimate {
            mean: (-m.mean).exp(),
            ci_low: (-m.ci_high).exp(),
            ci_high: (-m.ci_low).exp(),
            n: m.n,
        };
        return BTreeMap::from([
            (
                "acc,none".to_string(),
                score::bootstrap_mean(&acc, bootstrap),
            ),
            ("perplexity,none".to_string(), ppl),
        ]);
    }
    super::lmeval::generate::by_filter(rows.iter().map(|s| s.filtered.as_slice()))
        .into_iter()
        .map(|(k, v)| (k, score::bootstrap_mean(&v, bootstrap)))
        .collect()
}

/// A rolling task's totals from its records: each document's windows'
/// log-likelihoods summed in window order (as `perplexity::score` sums
/// them), its tokens, and lm-eval's word and byte counts of its text.
fn rolling_totals(rows: &[&SampleRecord]) -> super::perplexity::Totals {
    let docs: Vec<super::perplexity::DocPerplexity> = rows
        .iter()
        .map(|s| {
            let w = s.choice_logliks.as_deref().unwrap_or(&[]);
            super::perplexity::DocPerplexity {
                name: s.id.clone(),
                loglik: w.iter().fold(0.0, |a, &b| a + b),
                tokens: s.prompt_ids.len(),
                words: super::perplexity::word_count(&s.text),
                bytes: s.text.len(),
                windows: w.len(),
            }
        })
        .collect();
    super::perplexity::totals(&docs)
}
