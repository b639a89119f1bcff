//! A run's samples: what is computed (`SampleSpec`), what comes back
//! (`Raw`), what is recorded (`SampleRecord`), and the hashes that key them.

use super::config::TaskKind;
use super::dataset::Item;
use crate::engine::LoglikRequest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One sample to compute.
#[derive(Clone)]
pub struct SampleSpec {
    pub dataset: usize,
    pub item: Item,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    /// Multiple choice: one request per choice.
    pub choices: Vec<LoglikRequest>,
    /// sha256 of every token id that determines the output (baseline key).
    pub prompt_hash: String,
    /// With several seeds (`run.seeds`): the seed this copy samples with.
    pub seed: Option<u64>,
    /// Set when the prompt's text is so long that it cannot fit the model's
    /// context whatever its tokens (it was not tokenised): its length in bytes.
    pub oversize_bytes: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Time to first token (generation) or to the scores (multiple choice).
    pub ttft_ms: f64,
    /// Times between consecutive output tokens.
    pub token_ms: Vec<f64>,
    /// Wall time of the batch this sample ran in, shared among its samples.
    pub batch_ms: f64,
    pub batch_len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleRecord {
    pub id: String,
    pub task: String,
    pub prompt_sha256: String,
    pub prompt_ids: Vec<u32>,
    /// Generation: the tokens. lm-eval loglikelihood: 1 if greedy decoding
    /// gives the continuation, else 0 (lm-eval's `is_greedy`).
    pub output_ids: Vec<u32>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logliks: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<usize>,
    pub score: f64,
    /// Multiple choice: the score when log-likelihoods are divided by the
    /// choice's length in characters, as lm-evaluation-harness's acc_norm
    /// (see `score::acc_norm_prediction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_norm: Option<f64>,
    /// Generation: sha256 of the output ids (LE u32). Multiple choice: of the
    /// log-likelihoods' f64 bits (LE), in choice order.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits_digest: Option<String>,
    /// Generation: log p of each output token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f64>,
    /// Baseline-store key parts.
    pub prompt_hash: String,
    pub params_hash: String,
    /// With several seeds: the seed this sample was drawn with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// lm-eval tasks: the few-shot examples the prompt holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fewshot: Vec<super::dataset::FewshotRef>,
    /// lm-eval generate_until: each filter pipeline's answer and exact_match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filtered: Vec<Filtered>,
    /// Served from the baseline store rather than computed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    pub latency: Latency,
}

/// The computed part of a sample, before scoring.
pub struct Raw {
    pub output_ids: Vec<u32>,
    pub digest: String,
    pub logits_digest: Option<String>,
    /// Generation: per-token log p. Multiple choice: per-choice log-likelihood.
    pub logprobs: Vec<f64>,
    pub latency: Latency,
    pub cached: bool,
}

/// How an eval run uses the baseline store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheMode {
    /// Serve stored outputs; compute and store the rest.
    Read,
    /// Compute everything and store it.
    Write,
    /// Do not touch the store.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

pub(crate) fn ids_hash(h: &mut Sha256, ids: &[u32]) {
    h.update((ids.len() as u32).to_le_bytes());
    ids.iter().for_each(|i| h.update(i.to_le_bytes()));
}

/// sha256 of every token id that determines a sample's output (baseline key).
pub(crate) fn prompt_hash(kind: TaskKind, prompt_ids: &[u32], choices: &[LoglikRequest]) -> String {
    let mut h = Sha256::new();
    match kind {
        TaskKind::Generate => ids_hash(&mut h, prompt_ids),
        TaskKind::MultipleChoice => choices.iter().for_each(|c| {
            ids_hash(&mut h, &c.context);
            ids_hash(&mut h, &c.continuation);
        }),
    }
    hex::encode(h.finalize())
}

pub(crate) fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// One pipeline's answer and exact_match for a sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filtered {
    pub filter: String,
    pub answer: String,
    pub exact_match: f64,
}

/// sha256 of a multiple-choice sample's log-likelihoods' f64 bits (LE), in
/// choice order: its digest.
pub fn logliks_digest(ll: &[f64]) -> String {
    let mut h = Sha256::new();
    ll.iter().for_each(|v| h.update(v.to_bits().to_le_bytes()));
    hex::encode(h.finalize())
}
