//! The engine core's batch front ends: a known set of prompts generated
//! (`generate`) or continuations scored (`loglikelihoods`) to the end, as
//! the CLI, eval, perplexity and bench need them.

use super::base::StopReason;
use super::core;
use super::spec::{EngineOptions, Event, PromptLogprobs, SeqSpec, StopRule, TokenLogprob};
use crate::error::{Error, Result};
use crate::model::transformer::Transformer;
use crate::sampling::{sequence_key, SamplingParams};

#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub prompt_ids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub sampling: SamplingParams,
    /// Sequences run together.
    pub batch_size: usize,
    /// Prompt tokens fed per forward call and sequence.
    pub prefill_chunk: usize,
    /// Keep every step's logits in the output (tests, log-likelihoods).
    pub keep_logits: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            sampling: SamplingParams::default(),
            batch_size: 1,
            prefill_chunk: 512,
            keep_logits: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SeqOutput {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub output_ids: Vec<u32>,
    pub stop: StopReason,
    /// sha256 over the f32 bits (little-endian) of the logits of each step.
    pub logits_digest: String,
    pub step_logits: Vec<Vec<f32>>,
    /// log p(token) of each output token under the model (before any
    /// sampling transform), from our log-softmax.
    pub logprobs: Vec<f64>,
    /// Seconds from the sequence's start (its admission to a batch) to its first token.
    pub ttft_s: f64,
    /// Seconds between consecutive output tokens.
    pub token_times_s: Vec<f64>,
}

/// Run all requests; `on_progress(tokens done)` reports progress. A loop
/// over the engine's scheduler (`core`): `batch_size` sequences share each
/// forward call, and one joins as soon as another leaves.
pub fn generate(
    model: &Transformer,
    eos: &[u32],
    requests: &[Request],
    opts: &GenOptions,
    on_progress: impl FnMut(usize),
) -> Result<Vec<SeqOutput>> {
    generate_with_stops(model, eos, requests, opts, &|| None, on_progress)
}

/// `generate`, each sequence also ending when the rule `stop()` makes for
/// it says so (stop strings: `tokenizer::stop::stop_rule`).
pub fn generate_with_stops(
    model: &Transformer,
    eos: &[u32],
    requests: &[Request],
    opts: &GenOptions,
    stop: &dyn Fn() -> Option<StopRule>,
    mut on_progress: impl FnMut(usize),
) -> Result<Vec<SeqOutput>> {
    // The core checks each sequence (Engine::check) and the options.
    let specs = requests
        .iter()
        .map(|r| SeqSpec {
            name: format!("prompt '{}'", r.id),
            prompt: r.prompt_ids.clone(),
            sampling: opts.sampling.clone(),
            key: sequence_key(&r.id),
            eos: eos.to_vec(),
            prompt_logprobs: None,
            top_logprobs: 0,
            stop: stop(),
            keep_logits: opts.keep_logits,
        })
        .collect();
    let eopts = EngineOptions::batch(
        opts.batch_size,
        opts.prefill_chunk,
        opts.sampling.max_tokens,
    );
    let mut produced = 0;
    let done = core::run_all(model, eopts, specs, |ev| {
        if let Event::Token(_) = ev {
            produced += 1;
            on_progress(produced);
        }
    })?;
    Ok(requests
        .iter()
        .zip(done)
        .map(|(r, (_, f))| SeqOutput {
            id: r.id.clone(),
            prompt_ids: r.prompt_ids.clone(),
            output_ids: f.output_ids,
            stop: f.stop,
            logits_digest: f.logits_digest,
            step_logits: f.step_logits,
            logprobs: f.logprobs,
            ttft_s: f.ttft_s,
            token_times_s: f.token_times_s,
        })
        .collect())
}

/// Log-likelihoods of continuations (multiple choice, lm-eval's
/// `loglikelihood` and rolling windows), each a scoring sequence of the
/// engine core: context and continuation as one prompt whose continuation
/// tokens are scored, nothing generated. Requests that share a context
/// share its KV (the core's leaders: the context is fed once). Bits depend
/// on neither `batch_size` nor `prefill_chunk`, nor on what was shared.
pub fn loglikelihoods(
    model: &Transformer,
    reqs: &[LoglikRequest],
    batch_size: usize,
    prefill_chunk: usize,
) -> Result<Vec<LoglikOutput>> {
    let specs = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.context.is_empty() || r.continuation.is_empty() {
                return Err(Error::Input(format!(
                    "log-likelihood request {i} needs a non-empty context and continuation"
                )));
            }
            let mut prompt = r.context.clone();
            prompt.extend_from_slice(&r.continuation);
            Ok(SeqSpec {
                name: format!("log-likelihood request {i}"),
                prompt,
                sampling: SamplingParams {
                    max_tokens: 0,
                    ..SamplingParams::default()
                },
                key: 0,
                eos: Vec::new(),
                prompt_logprobs: Some(PromptLogprobs {
                    from: r.context.len(),
                    top: 0,
                }),
                top_logprobs: 0,
                stop: None,
                keep_logits: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let eopts = EngineOptions::batch(batch_size, prefill_chunk, 0);
    let done = core::run_all(model, eopts, specs, |_| {})?;
    Ok(done
        .into_iter()
        .map(|(events, _)| {
            let rows: &[TokenLogprob] = events
                .iter()
                .find_map(|e| match e {
                    Event::Prompt(l) => Some(l.as_slice()),
                    _ => None,
                })
                .unwrap_or_default();
            LoglikOutput {
                // In order, in f64, from +0.
                loglik: rows.iter().fold(0f64, |ll, t| ll + t.logprob),
                is_greedy: rows.iter().all(|t| t.greedy),
            }
        })
        .collect())
}

/// Score a continuation given a context (multiple-choice tasks).
#[derive(Debug, Clone)]
pub struct LoglikRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoglikOutput {
    /// Sum over continuation tokens of log p(token | everything before), in order, in f64.
    pub loglik: f64,
    /// Every continuation token has the largest logit at its position (ties
    /// count), i.e. greedy decoding would produce the continuation: lm-eval's
    /// `is_greedy` (its token log-probability equals the top one's).
    pub is_greedy: bool,
}
