//! Scoring and statistics: answer matching, bootstrap confidence intervals,
//! latency percentiles, and paired tests for comparing two runs.

use super::config::Scorer;
use crate::sampling::uniform;

/// The part of a generation that is the answer: up to the first newline, trimmed.
pub fn answer_part(text: &str) -> &str {
    text.trim_start().lines().next().unwrap_or("").trim()
}

fn normalize(s: &str) -> String {
    s.trim()
        .trim_end_matches(['.', '!', '?', ',', ';', ':'])
        .trim()
        .to_lowercase()
}

/// 1.0 if the generated text answers correctly, else 0.0.
pub fn score_generation(
    scorer: Scorer,
    pattern: Option<&regex::Regex>,
    text: &str,
    answer: &str,
) -> f64 {
    let got = answer_part(text);
    let ok = match scorer {
        Scorer::ExactMatch => normalize(got) == normalize(answer),
        Scorer::Contains => normalize(got).contains(&normalize(answer)),
        Scorer::Regex => pattern
            .and_then(|re| re.captures(got))
            .map(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str())
                    .unwrap_or("")
            })
            .is_some_and(|m| normalize(m) == normalize(answer)),
    };
    ok as u8 as f64
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
}

/// Mean with a 95% percentile-bootstrap interval. The resampling RNG is the
/// counter-based Philox with a fixed key, so intervals are reproducible.
pub fn bootstrap_mean(values: &[f64], resamples: usize) -> Estimate {
    let n = values.len();
    let mean = if n == 0 {
        0.0
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    if n == 0 || resamples == 0 {
        return Estimate {
            mean,
            ci_low: mean,
            ci_high: mean,
            n,
        };
    }
    let mut means: Vec<f64> = (0..resamples)
        .map(|b| {
            let mut s = 0.0;
            for i in 0..n {
                let j = ((uniform(0xB007, b as u64, i as u64) * n as f64) as usize).min(n - 1);
                s += values[j];
            }
            s / n as f64
        })
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    Estimate {
        mean,
        ci_low: percentile_sorted(&means, 2.5),
        ci_high: percentile_sorted(&means, 97.5),
        n,
    }
}

/// A metric across seeds: the mean of the per-seed values, their sample
/// standard deviation (n - 1) and a 95% Student-t interval of the mean.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SeedSpread {
    pub mean: f64,
    pub std: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub seeds: usize,
}

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

pub fn seed_spread(values: &[f64]) -> SeedSpread {
    let k = values.len();
    let mean = values.iter().sum::<f64>() / k.max(1) as f64;
    if k < 2 {
        return SeedSpread {
            mean,
            std: 0.0,
            ci_low: mean,
            ci_high: mean,
            seeds: k,
        };
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (k - 1) as f64;
    let std = var.sqrt();
    let half = t975(k - 1) * std / (k as f64).sqrt();
    SeedSpread {
        mean,
        std,
        ci_low: mean - half,
        ci_high: mean + half,
        seeds: k,
    }
}

/// Linear-interpolated percentile of sorted values.
pub fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let r = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

pub fn percentiles(values: &[f64]) -> Percentiles {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Percentiles {
        p50: percentile_sorted(&v, 50.0),
        p90: percentile_sorted(&v, 90.0),
        p95: percentile_sorted(&v, 95.0),
        p99: percentile_sorted(&v, 99.0),
    }
}

/// Exact two-sided McNemar test on paired binary outcomes: b = pairs right
/// in A only, c = right in B only. Returns the p-value.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), in log space to stay finite.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0f64; // ln C(n, 0)
    let mut cdf = 0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        cdf += (ln_choose + ln_half_n).exp();
    }
    (2.0 * cdf).min(1.0)
}

/// The choice lm-evaluation-harness's `acc_norm` picks: the largest
/// log-likelihood divided by the choice's length in characters (Python's
/// `len(choice)`: Unicode scalar values, without the target delimiter),
/// first index on ties. A choice of no characters counts as length 1.
pub fn acc_norm_prediction(logliks: &[f64], choices: &[String]) -> usize {
    let norm: Vec<f64> = logliks
        .iter()
        .zip(choices)
        .map(|(l, c)| l / c.chars().count().max(1) as f64)
        .collect();
    argmax_f64(&norm)
}

pub(crate) fn argmax_f64(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_spread_is_mean_std_and_t_interval() {
        let s = super::seed_spread(&[0.5, 0.7, 0.6]);
        assert!((s.mean - 0.6).abs() < 1e-12);
        assert!((s.std - 0.1).abs() < 1e-12);
        // t(0.975, 2) = 4.303: 0.6 +- 4.303 * 0.1 / sqrt(3).
        assert!((s.ci_high - (0.6 + 4.303 * 0.1 / 3f64.sqrt())).abs() < 1e-12);
        assert_eq!(super::seed_spread(&[0.4]).ci_low, 0.4);
    }

    use super::*;

    #[test]
    fn scorers() {
        assert_eq!(
            score_generation(Scorer::ExactMatch, None, " Paris.\nMore", "paris"),
            1.0
        );
        assert_eq!(
            score_generation(Scorer::ExactMatch, None, " Paris is nice", "Paris"),
            0.0
        );
        assert_eq!(
            score_generation(Scorer::Contains, None, " It is Paris, France", "Paris"),
            1.0
        );
        let re = regex::Regex::new(r"-?\d+").unwrap();
        assert_eq!(
            score_generation(Scorer::Regex, Some(&re), " The answer is -7.", "-7"),
            1.0
        );
        assert_eq!(score_generation(Scorer::Regex, Some(&re), " 12", "-7"), 0.0);
    }

    #[test]
    fn bootstrap_interval_contains_the_mean_and_repeats() {
        let v: Vec<f64> = (0..100).map(|i| (i % 3 == 0) as u8 as f64).collect();
        let e = bootstrap_mean(&v, 500);
        assert!((e.mean - 0.34).abs() < 1e-12);
        assert!(e.ci_low < e.mean && e.mean < e.ci_high && e.ci_high - e.ci_low < 0.25);
        assert_eq!(e, bootstrap_mean(&v, 500));
    }

    #[test]
    fn mcnemar_values() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!((mcnemar_exact(1, 0) - 1.0).abs() < 1e-12);
        // b=0, c=10: p = 2 * 0.5^10
        assert!((mcnemar_exact(0, 10) - 2.0 / 1024.0).abs() < 1e-12);
        assert!(mcnemar_exact(5, 6) > 0.5);
    }

    #[test]
    fn percentile_interpolates() {
        let p = percentiles(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(p.p50, 2.5);
        assert!((p.p99 - 3.97).abs() < 1e-12);
    }

    /// Finding 16 of issue 11: acc_norm divides by the choice's length in
    /// characters, as lm-eval does, not by the bytes of prefix plus choice.
    #[test]
    fn acc_norm_counts_characters_of_the_choice() {
        let choices: Vec<String> = ["café au lait", "thé vert chaud", "ab"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // chars: 12, 14, 2; bytes: 13, 15, 2.
        let ll = [-12.05, -14.0, -3.5];
        // per char: -1.00417, -1.0, -1.75 -> choice 1
        assert_eq!(acc_norm_prediction(&ll, &choices), 1);
        // per byte (the old reading, prefix " " included): -0.861, -0.875, -1.17 -> choice 0
        let by_bytes: Vec<f64> = ll
            .iter()
            .zip(&choices)
            .map(|(l, c)| l / (1 + c.len()) as f64)
            .collect();
        assert_eq!(super::argmax_f64(&by_bytes), 0);
        assert_eq!(
            acc_norm_prediction(&[-1.0, -1.0], &choices[..2].to_vec()),
            1
        );
    }
}
