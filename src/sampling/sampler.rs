//! The sampling pipeline, in a fixed order (docs/DETERMINISM.md §7):
//! repetition penalty, presence and frequency penalties, logit bias,
//! temperature, sort by (logit desc, id asc), top-k, softmax with our exp,
//! top-p, min-p, then one draw from the counter RNG.

use super::rng::uniform;
use crate::numerics::exp_f32;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 means greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// 0 means no limit.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    /// OpenAI's: subtracted once from the logit of every token the output
    /// holds (0: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub presence_penalty: f32,
    /// OpenAI's: subtracted from a token's logit once per time the output
    /// holds it (0: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_penalty: f32,
    /// Added to the logits of these token ids (OpenAI's logit_bias, each in
    /// [-100, 100]; -100 bans a token in practice).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub logit_bias: std::collections::BTreeMap<u32, f32>,
    pub seed: u64,
    pub max_tokens: usize,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Default::default(),
            seed: 42,
            max_tokens: 64,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0) || !self.temperature.is_finite() {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min-p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0) || !self.repetition_penalty.is_finite() {
            return Err(format!(
                "repetition penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        for (name, x) in [
            ("presence penalty", self.presence_penalty),
            ("frequency penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&x) {
                return Err(format!("{name} must be in [-2, 2], got {x}"));
            }
        }
        if let Some((t, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| !(-100.0..=100.0).contains(*b))
        {
            return Err(format!(
                "logit bias of token {t} must be in [-100, 100], got {b}"
            ));
        }
        Ok(())
    }

    /// Whether anything changes the logits before the temperature.
    fn adjusts(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || !self.logit_bias.is_empty()
    }
}

pub struct Sampler<'a> {
    pub params: &'a SamplingParams,
}

impl Sampler<'_> {
    /// Pick the next token from `logits`, given the prompt and the output so
    /// far (the penalties read them), for sequence `seq_key` at decoding
    /// step `step`. NaN logits count as -inf (whatever their sign bit: x86
    /// and CUDA make NaNs of opposite signs); a row with no finite logit is
    /// an error.
    pub fn sample(
        &self,
        logits: &[f32],
        prompt: &[u32],
        output: &[u32],
        seq_key: u64,
        step: u64,
    ) -> Result<u32, String> {
        let p = self.params;
        // (NaN is not finite, so this reads the same before NaN becomes -inf.)
        if !logits.iter().any(|v| v.is_finite()) {
            return Err(format!(
                "no finite logit among {} at step {step}: nothing to sample",
                logits.len()
            ));
        }
        if p.temperature == 0.0 && !p.adjusts() {
            // `argmax` already ranks NaN below every number: the same choice
            // as on the copy below, without copying the logits.
            return Ok(argmax(logits));
        }
        let mut l: Vec<f32> = logits
            .iter()
            .map(|&v| if v.is_nan() { f32::NEG_INFINITY } else { v })
            .collect();
        if p.repetition_penalty != 1.0 {
            let mut seen: Vec<u32> = [prompt, output].concat();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(v) = l.get_mut(t as usize) {
                    *v = if *v > 0.0 {
                        *v / p.repetition_penalty
                    } else {
                        *v * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            // Per token of the output, by id: l -= (count * frequency + presence).
            let mut counts: Vec<u32> = output.to_vec();
            counts.sort_unstable();
            for run in counts.chunk_by(|a, b| a == b) {
                if let Some(v) = l.get_mut(run[0] as usize) {
                    *v -= run.len() as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        for (&t, &b) in &p.logit_bias {
            if let Some(v) = l.get_mut(t as usize) {
                *v += b;
            }
        }
        if p.temperature == 0.0 {
            return Ok(argmax(&l));
        }
        // No NaN is left, so the order is total; -inf sorts last.
        let mut cand: Vec<(f32, u32)> = l
            .iter()
            .enumerate()
            .map(|(i, &v)| (v / p.temperature, i as u32))
            .collect();
        cand.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // A temperature so small that the top logit divided by it is not
        // finite leaves no distribution to sample (exp(inf - inf) is NaN):
        // take its limit, the greedy choice on the (penalised) logits.
        if !cand[0].0.is_finite() {
            return Ok(argmax(&l));
        }
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let max = cand[0].0;
        let mut probs: Vec<f32> = cand.iter().map(|c| exp_f32(c.0 - max)).collect();
        let mut sum = 0f32;
        for &q in &probs {
            sum += q;
        }
        for q in probs.iter_mut() {
            *q /= sum;
        }
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut cum = 0f32;
            for (i, &q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        let mut total = 0f32;
        for &q in &probs[..keep] {
            total += q;
        }
        let u = uniform(p.seed, seq_key, step) as f32 * total;
        let mut cum = 0f32;
        for i in 0..keep {
            cum += probs[i];
            if u < cum {
                return Ok(cand[i].1);
            }
        }
        Ok(cand[keep - 1].1)
    }
}

/// Index of the largest value, ties to the lowest index; NaN never wins.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || (v[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_breaks_ties_by_id() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
    }

    #[test]
    fn sampling_is_a_function_of_seed_sequence_and_step() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            min_p: 0.05,
            ..Default::default()
        };
        let s = Sampler { params: &params };
        let a: Vec<u32> = (0..50)
            .map(|step| s.sample(&logits, &[], &[], 5, step).unwrap())
            .collect();
        let b: Vec<u32> = (0..50)
            .rev()
            .map(|step| s.sample(&logits, &[], &[], 5, step).unwrap())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert_eq!(a, b, "draws must not depend on call order");
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 1, "sampling should not be constant");
        // Only tokens that survive top-k can appear.
        let mut sorted: Vec<(f32, u32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as u32))
            .collect();
        sorted.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let top: Vec<u32> = sorted[..20].iter().map(|x| x.1).collect();
        assert!(a.iter().all(|t| top.contains(t)));
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let s = Sampler { params: &params };
        assert_eq!(s.sample(&[1.0, 1.5, 0.2], &[1], &[], 0, 0), Ok(0));
        assert_eq!(s.sample(&[1.0, 1.5, 0.2], &[], &[], 0, 0), Ok(1));
    }

    /// A temperature so small that logits / T overflow is greedy in the
    /// limit, not a draw from NaN probabilities (which took the last token).
    #[test]
    fn a_tiny_temperature_is_greedy() {
        let logits = [0.5, 3.0, 2.0, -1.0];
        for t in [1e-38f32, 1e-45] {
            let params = SamplingParams {
                temperature: t,
                ..Default::default()
            };
            let s = Sampler { params: &params };
            for step in 0..20 {
                assert_eq!(s.sample(&logits, &[], &[], 1, step), Ok(1), "T = {t}");
            }
        }
    }

    /// Finding 5 of issue 11: a NaN logit of either sign (x86 makes
    /// negative NaNs, CUDA positive ones) is never chosen, greedy or
    /// sampled, and a row of only NaN is an error.
    #[test]
    fn nan_of_either_sign_is_never_chosen() {
        let pos_nan = f32::from_bits(0x7fc0_0000);
        let neg_nan = f32::from_bits(0xffc0_0000);
        assert!(pos_nan.is_nan() && neg_nan.is_nan() && neg_nan.is_sign_negative());
        for nan in [pos_nan, neg_nan] {
            let logits = [0.5, nan, 0.25, nan, -1.0];
            for (temperature, top_k, top_p) in
                [(0.0, 0, 1.0), (1.0, 0, 1.0), (5.0, 2, 1.0), (2.0, 0, 0.5)]
            {
                let params = SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    ..Default::default()
                };
                let s = Sampler { params: &params };
                for step in 0..200 {
                    let t = s.sample(&logits, &[], &[], 9, step).unwrap();
                    assert!(
                        !logits[t as usize].is_nan(),
                        "picked NaN ({:#x}) at T={temperature} k={top_k} p={top_p}",
                        nan.to_bits()
                    );
                }
            }
            let params = SamplingParams {
                temperature: 0.7,
                ..Default::default()
            };
            let s = Sampler { params: &params };
            assert!(s.sample(&[nan, nan], &[], &[], 0, 0).is_err());
        }
    }

    /// The greedy shortcut (no copy) picks what the general path's NaN-free
    /// copy would: NaN of either sign first, among ties, and between values.
    #[test]
    fn greedy_shortcut_equals_greedy_on_the_nan_free_copy() {
        let (pn, nn) = (f32::from_bits(0x7fc0_0000), f32::from_bits(0xffc0_0000));
        let mut st = 5u64;
        let pool = [
            pn,
            nn,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -3.0,
            0.0,
            2.5,
            2.5,
            7.0,
        ];
        let params = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        let s = Sampler { params: &params };
        for case in 0..2000 {
            let n = 1 + case % 9;
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    st = st
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    pool[(st >> 59) as usize % pool.len()]
                })
                .collect();
            let copy: Vec<f32> = v
                .iter()
                .map(|&x| if x.is_nan() { f32::NEG_INFINITY } else { x })
                .collect();
            match s.sample(&v, &[], &[], 0, 0) {
                Ok(t) => assert_eq!(t, argmax(&copy), "{v:?}"),
                Err(_) => assert!(!v.iter().any(|x| x.is_finite()), "{v:?}"),
            }
        }
    }

    /// OpenAI's penalties and logit bias, against values worked by hand:
    /// penalties count the output only (not the prompt), the bias adds.
    #[test]
    fn penalties_and_bias_move_the_logits_as_openai_defines() {
        let logits = [2.0f32, 1.9, 0.5, 0.0];
        let greedy = |p: SamplingParams, prompt: &[u32], out: &[u32]| {
            Sampler { params: &p }
                .sample(&logits, prompt, out, 0, 0)
                .unwrap()
        };
        let pen = SamplingParams {
            temperature: 0.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.3,
            ..Default::default()
        };
        // 0: 2.0 - (2 * 0.3 + 0.5) = 0.9; 1: 1.9 - (0.3 + 0.5) = 1.1; 2: 0.5.
        assert_eq!(greedy(pen.clone(), &[], &[0, 0, 1]), 1);
        // The prompt does not count: 0 keeps 2.0.
        assert_eq!(greedy(pen.clone(), &[0, 0, 1], &[]), 0);
        // Three times 0 and twice 1: 0.6, 0.8 (1.9 - 1.1), 0.5.
        assert_eq!(greedy(pen.clone(), &[], &[0, 0, 0, 1, 1]), 1);
        let mut biased = pen.clone();
        biased.logit_bias.insert(2, 0.7); // 0.5 + 0.7 = 1.2 > 1.1
        assert_eq!(greedy(biased, &[], &[0, 0, 1]), 2);
        let mut ban = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        ban.logit_bias.insert(0, -100.0);
        assert_eq!(greedy(ban.clone(), &[], &[]), 1);
        // Sampled, a banned token is never drawn.
        ban.temperature = 1.0;
        let s = Sampler { params: &ban };
        assert!((0..200).all(|step| s.sample(&logits, &[], &[], 3, step).unwrap() != 0));
        // Out of range is refused by name.
        let mut bad = SamplingParams::default();
        bad.presence_penalty = 2.5;
        assert!(bad.validate().unwrap_err().starts_with("presence penalty"));
        bad.presence_penalty = f32::NAN;
        assert!(bad.validate().is_err());
        let mut bad = SamplingParams::default();
        bad.logit_bias.insert(3, 101.0);
        assert!(bad
            .validate()
            .unwrap_err()
            .starts_with("logit bias of token 3"));
    }
}
