//! The bit-exactness regression suite: cases in tests/golden/bitexact.toml
//! (model, prompts, parameters, expected digests), re-run and compared.

pub mod tiny;
pub mod tiny_family;

use crate::engine::{self, GenOptions, Request};
use crate::error::{Error, Result};
use crate::sampling::SamplingParams;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    pub determinism_version: u32,
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// "tiny" (the tiny random model of `tiny.rs`, from `tiny_seed`), a manifest name, or a path.
    pub model: String,
    #[serde(default)]
    pub tiny_seed: u64,
    pub prompts: Vec<String>,
    #[serde(default)]
    pub chat: bool,
    /// Non-empty: a log-likelihood case. Every prompt is scored with every
    /// continuation (the eval's multiple-choice path) instead of generating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuations: Vec<String>,
    #[serde(default)]
    pub max_tokens: usize,
    #[serde(default)]
    pub temperature: f32,
    #[serde(default)]
    pub top_k: usize,
    #[serde(default = "one")]
    pub top_p: f32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "one_usize")]
    pub batch_size: usize,
    #[serde(default = "chunk")]
    pub prefill_chunk: usize,
    /// sha256 over the sequences' output-id digests, in order.
    pub digest: String,
    /// sha256 over the sequences' logits digests, in order.
    pub logits_digest: String,
    /// sha256 over the f64 bits (LE) of every log-probability the case
    /// produces: each generated token's (docs/DETERMINISM.md §7b), or each
    /// log-likelihood of a log-likelihood case.
    pub logprobs_digest: String,
}

fn one() -> f32 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn chunk() -> usize {
    512
}

pub fn read_golden(path: &Path) -> Result<Golden> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| Error::bad_file(path, format!("invalid golden file: {e}")))
}

/// sha256 over every case's expected digests: what GOLDEN_FINGERPRINTS pins.
pub fn fingerprint(g: &Golden) -> String {
    let mut h = Sha256::new();
    for c in &g.cases {
        h.update(c.name.as_bytes());
        h.update(c.digest.as_bytes());
        h.update(c.logits_digest.as_bytes());
        h.update(c.logprobs_digest.as_bytes());
    }
    hex::encode(h.finalize())
}

pub struct Outcome {
    pub digest: String,
    pub logits_digest: String,
    pub logprobs_digest: String,
    pub tokens: usize,
    pub seconds: f64,
}

/// Run one case. `tiny_dir` is where the tiny model is written if needed.
pub fn run_case(c: &Case, tiny_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let path = if c.model == "tiny" {
        let d = tiny_dir.join(format!("tiny-{}", c.tiny_seed));
        tiny::write_tiny_model(&d, tiny::Dtype::F32, c.tiny_seed).map_err(|e| Error::io(&d, e))?;
        d
    } else {
        crate::fetch::resolve(&c.model, log)?
    };
    let m = crate::loader::load(&path, &crate::device::open()?)?;
    let reqs = c
        .prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Request {
                id: i.to_string(),
                prompt_ids: m.tokenizer.encode_prompt(p, c.chat)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = GenOptions {
        sampling: SamplingParams {
            temperature: c.temperature,
            top_k: c.top_k,
            top_p: c.top_p,
            seed: c.seed,
            max_tokens: c.max_tokens,
            ..Default::default()
        },
        batch_size: c.batch_size,
        prefill_chunk: c.prefill_chunk,
        keep_logits: false,
    };
    let t0 = std::time::Instant::now();
    if !c.continuations.is_empty() {
        return loglik_case(c, &m, &reqs, t0);
    }
    let outs = engine::generate(&m.model, &m.tokenizer.eos, &reqs, &opts, |_| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    let ids: Vec<String> = outs
        .iter()
        .map(|o| engine::ids_digest(&o.output_ids))
        .collect();
    Ok(Outcome {
        digest: engine::combine_digests(ids.iter().map(|s| s.as_str())),
        logits_digest: engine::combine_digests(outs.iter().map(|o| o.logits_digest.as_str())),
        logprobs_digest: f64_digest(outs.iter().flat_map(|o| o.logprobs.iter().copied())),
        tokens: outs.iter().map(|o| o.output_ids.len()).sum(),
        seconds,
    })
}

/// sha256 of f64 values' bits, little-endian, in order.
fn f64_digest(v: impl IntoIterator<Item = f64>) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_bits().to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// A log-likelihood case: every prompt with every continuation, as the
/// eval's multiple-choice path scores them (continuation tokens are those
/// that follow the prompt's in the whole text). `digest` is over the
/// continuations' token ids, `logprobs_digest` over the log-likelihoods;
/// `logits_digest` is empty.
fn loglik_case(
    c: &Case,
    m: &crate::loader::LoadedModel,
    prompts: &[Request],
    t0: std::time::Instant,
) -> Result<Outcome> {
    let mut reqs = Vec::new();
    for (p, text) in prompts.iter().zip(&c.prompts) {
        for cont in &c.continuations {
            let whole = m.tokenizer.encode(&format!("{text}{cont}"), false)?;
            let cont_ids = if whole.len() > p.prompt_ids.len() && whole.starts_with(&p.prompt_ids) {
                whole[p.prompt_ids.len()..].to_vec()
            } else {
                m.tokenizer.encode_with(cont, false, false)?
            };
            reqs.push(engine::LoglikRequest {
                context: p.prompt_ids.clone(),
                continuation: cont_ids,
            });
        }
    }
    let lls = engine::loglikelihoods(&m.model, &reqs, c.batch_size, c.prefill_chunk)?;
    let seconds = t0.elapsed().as_secs_f64();
    let ids: Vec<String> = reqs
        .iter()
        .map(|r| engine::ids_digest(&r.continuation))
        .collect();
    Ok(Outcome {
        digest: engine::combine_digests(ids.iter().map(|s| s.as_str())),
        logits_digest: String::new(),
        logprobs_digest: f64_digest(lls.iter().map(|l| l.loglik)),
        tokens: reqs
            .iter()
            .map(|r| r.context.len() + r.continuation.len())
            .sum(),
        seconds,
    })
}

/// Run the cases (those whose name contains `filter`), print the table to
/// `out`, and with `update` replace the expected digests. Returns the DIFFs.
/// One row of the table, as `bench bitexact --json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub device: String,
    pub expected_digest: String,
    pub expected_logits_digest: String,
    pub expected_logprobs_digest: String,
    pub digest: String,
    pub logits_digest: String,
    pub logprobs_digest: String,
    pub matched: bool,
    pub tokens_per_s: f64,
}

pub fn run_table(
    g: &mut Golden,
    filter: Option<&str>,
    update: bool,
    out: &mut dyn std::io::Write,
) -> Result<Vec<CaseResult>> {
    let tmp = std::env::temp_dir().join(format!("infer-eval-bitexact-{}", std::process::id()));
    let w = |out: &mut dyn std::io::Write, line: String| {
        writeln!(out, "{line}").map_err(|e| Error::io("<stdout>", e))
    };
    w(
        out,
        format!(
            "{:<26} {:<16} {:<16} {:<6} {:>8}",
            "case", "expected", "actual", "result", "tok/s"
        ),
    )?;
    let mut results = Vec::new();
    for c in g
        .cases
        .iter_mut()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
    {
        let o = run_case(c, &tmp, &mut |s| eprintln!("infer-eval: {s}"))?;
        let ok = o.digest == c.digest
            && o.logits_digest == c.logits_digest
            && o.logprobs_digest == c.logprobs_digest;
        results.push(CaseResult {
            case: c.name.clone(),
            device: crate::device::describe().0,
            expected_digest: c.digest.clone(),
            expected_logits_digest: c.logits_digest.clone(),
            expected_logprobs_digest: c.logprobs_digest.clone(),
            digest: o.digest.clone(),
            logits_digest: o.logits_digest.clone(),
            logprobs_digest: o.logprobs_digest.clone(),
            matched: ok,
            tokens_per_s: o.tokens as f64 / o.seconds,
        });
        let short = |s: &str| s.chars().take(16).collect::<String>();
        w(
            out,
            format!(
                "{:<26} {:<16} {:<16} {:<6} {:>8.1}",
                c.name,
                short(&c.digest),
                short(&o.digest),
                if ok { "MATCH" } else { "DIFF" },
                o.tokens as f64 / o.seconds
            ),
        )?;
        if !ok && o.digest == c.digest {
            let what = if o.logits_digest != c.logits_digest {
                "logits"
            } else {
                "log-probabilities"
            };
            w(out, format!("{:<26} (same tokens, {what} bits differ)", ""))?;
        }
        if update {
            c.digest = o.digest;
            c.logits_digest = o.logits_digest;
            c.logprobs_digest = o.logprobs_digest;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(results)
}
