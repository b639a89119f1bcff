//! What a caller gives the engine core and gets back: a sequence's
//! specification, its events and how it ended, the engine's limits.

use super::base::StopReason;
use crate::error::Error;
use crate::sampling::SamplingParams;

/// The caller's handle of a sequence.
pub type SeqId = u64;

/// Decides after each new token whether the sequence stops (stop strings:
/// the caller knows the tokenizer, the engine does not).
pub type StopRule = Box<dyn FnMut(&[u32]) -> bool + Send>;

/// What a sequence is.
pub struct SeqSpec {
    /// How errors name the sequence (a prompt id, "choice 2").
    pub name: String,
    pub prompt: Vec<u32>,
    /// `max_tokens` and `seed` included.
    pub sampling: SamplingParams,
    /// The RNG's sequence key: from the caller's stable name of the
    /// sequence (a prompt id, a choice index), never from arrival order.
    pub key: u64,
    pub eos: Vec<u32>,
    /// Report the log-probabilities of prompt tokens: scoring a
    /// continuation, or `echo` with `logprobs`.
    pub prompt_logprobs: Option<PromptLogprobs>,
    /// Report, for each generated token, this many alternatives besides
    /// its own log-probability.
    pub top_logprobs: usize,
    pub stop: Option<StopRule>,
    /// Keep every sampled-from logits row in `Finished::step_logits`.
    pub keep_logits: bool,
}

/// Which prompt tokens a sequence reports the log-probabilities of: tokens
/// `from..` (each under everything before it), with `top` alternatives
/// each. A scoring request (log-likelihood of a continuation) has `from` at
/// the continuation's first token and `max_tokens` 0; `echo` has `from` 1.
/// With `max_tokens` 0 the last prompt token is never fed (no position
/// reads it), so a request fits when all but its last token fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLogprobs {
    pub from: usize,
    pub top: usize,
}

impl PromptLogprobs {
    /// Every prompt token after the first (`echo`).
    pub fn echo(top: usize) -> Self {
        PromptLogprobs { from: 1, top }
    }
}

/// One token's log-probability under the model and the most likely tokens
/// at its position, each from the same log-softmax of the logits row.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
    /// The token has the largest logit at its position (ties count):
    /// greedy decoding would produce it (lm-eval's `is_greedy`).
    pub greedy: bool,
}

/// How a sequence ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stop: StopReason,
    /// True when the stop rule ended it (a stop string).
    pub by_rule: bool,
    pub output_ids: Vec<u32>,
    /// sha256 of the output ids (little-endian u32), as records write it.
    pub digest: String,
    /// sha256 over the logits rows sampled from, as records write it.
    pub logits_digest: String,
    /// Prompt tokens whose KV came from the prefix cache or a running
    /// sequence sharing them.
    pub cached_tokens: usize,
    /// log p of each output token under the model (before any sampling transform).
    pub logprobs: Vec<f64>,
    /// With `keep_logits`: the logits row each token was sampled from.
    pub step_logits: Vec<Vec<f32>>,
    /// Seconds from the sequence's admission to its first token.
    pub ttft_s: f64,
    /// Seconds between consecutive output tokens.
    pub token_times_s: Vec<f64>,
}

/// Why a sequence failed; `resource`: it would not fit (memory, context).
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub resource: bool,
}

impl Failure {
    pub fn of(e: &Error) -> Self {
        Failure {
            message: e.to_string(),
            resource: matches!(e, Error::Resource(_)),
        }
    }

    pub fn into_error(self) -> Error {
        if self.resource {
            Error::Resource(self.message)
        } else {
            Error::Input(self.message)
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Log-probabilities of prompt tokens 1.. (once, after the prefill).
    Prompt(Vec<TokenLogprob>),
    Token(TokenLogprob),
    Done(Finished),
    /// This sequence failed (the others go on).
    Failed(Failure),
}

/// Limits of one engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Sequences in one forward call at most.
    pub max_batch: usize,
    /// Prompt tokens per sequence and step.
    pub prefill_chunk: usize,
    /// Prompt tokens per step over all sequences (decode tokens come first).
    pub step_prefill_tokens: usize,
    /// Bytes the prefix cache may hold (0: no prefix cache).
    pub prefix_cache_bytes: u64,
    /// Generated tokens a new sequence's KV cache has room for at first; it
    /// doubles (a copy) as needed, so a large max_tokens holds no memory it
    /// does not use.
    pub kv_start_tokens: usize,
}

impl EngineOptions {
    /// A batch of known sequences run to the end (generation, scoring):
    /// `max_batch` at a time, `prefill_chunk` prompt tokens per sequence
    /// and step, no prefix cache.
    pub fn batch(max_batch: usize, prefill_chunk: usize, max_tokens: usize) -> Self {
        EngineOptions {
            max_batch,
            prefill_chunk,
            step_prefill_tokens: prefill_chunk.saturating_mul(max_batch),
            prefix_cache_bytes: 0,
            kv_start_tokens: max_tokens,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_batch: 16,
            prefill_chunk: 256,
            step_prefill_tokens: 256,
            prefix_cache_bytes: 512 << 20,
            kv_start_tokens: 256,
        }
    }
}
