//! The scheduler every caller shares: sequences join and leave between
//! forward calls, each with its own sampling parameters, stop rule and
//! logprob needs; one step packs prefill chunks of some sequences and decode
//! tokens of others into one `Transformer::forward`.
//!
//! Why a sequence's bits cannot depend on who else is running: every op
//! computes each row on its own in a fixed order (docs/DETERMINISM.md), so
//! its logits depend only on its own tokens; prefill chunking does not change
//! them either, which is what makes a prefix-cache hit equal to a miss; and
//! its sampling draws are keyed by (seed, sequence key, step) only.

use super::prefix::{PosInfo, PrefixCache, PROMPT_TOP};
use super::{check_finite, hash_f32s, ids_digest, StopReason};
use crate::error::{Error, Result};
use crate::kernels::softmax::log_softmax_top;
use crate::model::attention::KvCache;
use crate::model::transformer::{Logits, SeqStep, Transformer};
use crate::sampling::{Sampler, SamplingParams};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

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
    /// Report the log-probability (and this many alternatives) of every
    /// prompt token after the first (`echo` with `logprobs`).
    pub prompt_logprobs: Option<usize>,
    /// Report, for each generated token, this many alternatives besides
    /// its own log-probability.
    pub top_logprobs: usize,
    pub stop: Option<StopRule>,
    /// Keep every sampled-from logits row in `Finished::step_logits`.
    pub keep_logits: bool,
}

/// One token's log-probability under the model and the most likely tokens
/// at its position, each from the same log-softmax of the logits row.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
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
    /// Prompt tokens whose KV came from the prefix cache.
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

struct Seq {
    id: SeqId,
    spec: SeqSpec,
    cache: Option<KvCache>,
    /// Tokens whose KV is in the cache.
    fed: usize,
    /// Prompt tokens taken from the prefix cache.
    cached: usize,
    out: Vec<u32>,
    /// Logprob rows of prompt positions (position p predicts token p+1).
    prompt_info: Vec<PosInfo>,
    hasher: Sha256,
    /// The token to feed next (just sampled).
    next: Option<u32>,
    logprobs: Vec<f64>,
    step_logits: Vec<Vec<f32>>,
    admitted: std::time::Instant,
    t_last: std::time::Instant,
    ttft: f64,
    times: Vec<f64>,
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

pub struct Engine<'m> {
    model: &'m Transformer,
    opts: EngineOptions,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    prefix: PrefixCache,
    /// Prompt rows per forward chunk when every position's logits are kept.
    all_logits_chunk: usize,
    /// Sequences in the last forward call.
    last_batch: usize,
}

impl<'m> Engine<'m> {
    pub fn new(model: &'m Transformer, opts: EngineOptions) -> Result<Self> {
        if opts.max_batch == 0 || opts.prefill_chunk == 0 || opts.step_prefill_tokens == 0 {
            return Err(Error::Input(
                "max batch, prefill chunk and step prefill tokens must be at least 1".into(),
            ));
        }
        // Keep a chunk's [rows, vocab] logits near 16 MiB.
        let vocab = model.config.vocab_size.max(1);
        let all_logits_chunk = ((16usize << 20) / (vocab * 4))
            .max(8)
            .min(opts.prefill_chunk);
        Ok(Engine {
            model,
            prefix: PrefixCache::new(opts.prefix_cache_bytes),
            opts,
            waiting: VecDeque::new(),
            running: Vec::new(),
            all_logits_chunk,
            last_batch: 0,
        })
    }

    /// Checks a sequence could run: a clear error naming what is wrong.
    pub fn check(&self, spec: &SeqSpec) -> Result<()> {
        spec.sampling.validate().map_err(Error::Input)?;
        let ctx = self.model.config.max_position_embeddings;
        let vocab = self.model.config.vocab_size;
        if spec.prompt.is_empty() {
            return Err(Error::Input("the prompt has no tokens".into()));
        }
        if !super::prompt_fits(spec.prompt.len(), ctx) {
            return Err(Error::Resource(format!(
                "the prompt has {} tokens; the model's context is {ctx} positions",
                spec.prompt.len()
            )));
        }
        if let Some(&t) = spec.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "token id {t} is outside the vocabulary of {vocab} tokens"
            )));
        }
        Ok(())
    }

    /// Queue a sequence; it joins a step when there is room.
    pub fn add(&mut self, id: SeqId, spec: SeqSpec) -> Result<()> {
        self.check(&spec)?;
        self.waiting.push_back(Seq {
            id,
            spec,
            cache: None,
            fed: 0,
            cached: 0,
            out: Vec::new(),
            prompt_info: Vec::new(),
            hasher: Sha256::new(),
            next: None,
            logprobs: Vec::new(),
            step_logits: Vec::new(),
            admitted: std::time::Instant::now(),
            t_last: std::time::Instant::now(),
            ttft: 0.0,
            times: Vec::new(),
        });
        Ok(())
    }

    /// Drop a sequence wherever it is; its KV goes to the prefix cache.
    pub fn abort(&mut self, id: SeqId) -> bool {
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i);
            return true;
        }
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.swap_remove(i);
            self.retire(s);
            return true;
        }
        false
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Sequences in the last step's forward call (0: it ran none).
    pub fn last_batch(&self) -> usize {
        self.last_batch
    }

    pub fn prefix_cache(&self) -> &PrefixCache {
        &self.prefix
    }

    /// Ids of the running and waiting sequences.
    pub fn ids(&self) -> Vec<SeqId> {
        self.running
            .iter()
            .chain(&self.waiting)
            .map(|s| s.id)
            .collect()
    }

    /// Admit waiting sequences, run one forward call, sample, and report.
    pub fn step(&mut self) -> Result<Vec<(SeqId, Event)>> {
        let mut events = Vec::new();
        self.last_batch = 0;
        self.admit(&mut events);
        // max_tokens 0: nothing to compute beyond the prompt's logprobs.
        let mut plan: Vec<(usize, usize, Logits)> = Vec::new(); // (seq, tokens, logits)
        let mut budget = self.opts.step_prefill_tokens;
        for (i, s) in self.running.iter().enumerate() {
            if s.next.is_some() {
                plan.push((i, 1, Logits::Last));
            }
        }
        for (i, s) in self.running.iter().enumerate() {
            let n = s.spec.prompt.len();
            if s.next.is_some() || s.fed >= n || budget == 0 {
                continue;
            }
            let per = if s.spec.prompt_logprobs.is_some() {
                self.all_logits_chunk
            } else {
                self.opts.prefill_chunk
            };
            let take = (n - s.fed).min(per).min(budget);
            budget -= take;
            let last = s.fed + take == n;
            let want = if s.spec.prompt_logprobs.is_some() {
                Logits::All
            } else if last {
                Logits::Last
            } else {
                Logits::None
            };
            plan.push((i, take, want));
        }
        if plan.is_empty() {
            return Ok(events);
        }
        plan.sort_by_key(|p| p.0);
        self.last_batch = plan.len();
        let feeds: Vec<Vec<u32>> = plan
            .iter()
            .map(|&(i, take, _)| {
                let s = &self.running[i];
                match s.next {
                    Some(t) => vec![t],
                    None => s.spec.prompt[s.fed..s.fed + take].to_vec(),
                }
            })
            .collect();
        let outs = {
            let mut steps = Vec::with_capacity(plan.len());
            let mut rest: &mut [Seq] = &mut self.running;
            let mut base = 0;
            for ((i, _, want), toks) in plan.iter().zip(&feeds) {
                let (_, tail) = rest.split_at_mut(i - base);
                let (s, after) = tail.split_first_mut().expect("planned sequence");
                rest = after;
                base = i + 1;
                steps.push(SeqStep {
                    tokens: toks,
                    cache: s.cache.as_mut().expect("admitted sequence has a cache"),
                    logits: *want,
                });
            }
            self.model.forward(&mut steps)?
        };
        let mut finished = Vec::new();
        for (&(i, take, _), out) in plan.iter().zip(outs) {
            let r = self.after_forward(i, take, out, &mut events);
            if let Err(e) = r {
                events.push((self.running[i].id, Event::Failed(Failure::of(&e))));
                finished.push((i, None));
            } else if let Some(done) = r.unwrap() {
                finished.push((i, Some(done)));
            }
        }
        // Retire from the back so the indices stay valid.
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, done) in finished {
            let mut s = self.running.swap_remove(i);
            let id = s.id;
            let fin = done.map(|(stop, by_rule)| Finished {
                stop,
                by_rule,
                output_ids: s.out.clone(),
                digest: ids_digest(&s.out),
                logits_digest: hex::encode(s.hasher.clone().finalize()),
                cached_tokens: s.cached,
                logprobs: std::mem::take(&mut s.logprobs),
                step_logits: std::mem::take(&mut s.step_logits),
                ttft_s: s.ttft,
                token_times_s: std::mem::take(&mut s.times),
            });
            self.retire(s);
            if let Some(f) = fin {
                events.push((id, Event::Done(f)));
            }
        }
        Ok(events)
    }

    /// Start waiting sequences while there is room: a cache, with the
    /// longest usable prefix from the prefix cache.
    fn admit(&mut self, events: &mut Vec<(SeqId, Event)>) {
        while self.running.len() < self.opts.max_batch {
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            let ctx = self.model.config.max_position_embeddings;
            // Room for the prompt and the first tokens; it grows as needed
            // (a copy), so a large max_tokens does not hold memory it never uses.
            let cap = (s.spec.prompt.len()
                + s.spec.sampling.max_tokens.min(self.opts.kv_start_tokens))
            .min(ctx);
            let mut cache = match self.model.new_cache(cap) {
                Ok(c) => c,
                Err(e) => {
                    // Memory: give the prefix cache's back and try once more.
                    self.prefix.clear();
                    match self.model.new_cache(cap) {
                        Ok(c) => c,
                        Err(_) => {
                            events.push((s.id, Event::Failed(Failure::of(&e))));
                            continue;
                        }
                    }
                }
            };
            let need_info = s.spec.prompt_logprobs.is_some();
            if let Some(hit) = self.prefix.lookup(&s.spec.prompt, need_info) {
                if cache.copy_prefix_from(hit.kv, hit.reuse).is_ok() {
                    s.fed = hit.reuse;
                    s.cached = hit.reuse;
                    if need_info {
                        s.prompt_info = hit.info[..hit.reuse].to_vec();
                    }
                } else {
                    cache.len = 0;
                }
            }
            s.cache = Some(cache);
            s.admitted = std::time::Instant::now();
            if s.spec.sampling.max_tokens == 0 && s.spec.prompt_logprobs.is_none() {
                // Nothing to compute: done at once.
                let fin = Finished {
                    stop: StopReason::Length,
                    by_rule: false,
                    output_ids: Vec::new(),
                    digest: ids_digest(&[]),
                    logits_digest: hex::encode(Sha256::new().finalize()),
                    cached_tokens: s.cached,
                    logprobs: Vec::new(),
                    step_logits: Vec::new(),
                    ttft_s: 0.0,
                    token_times_s: Vec::new(),
                };
                events.push((s.id, Event::Done(fin)));
                continue;
            }
            self.running.push(s);
        }
    }

    /// Take one sequence's logits: prompt logprobs, a sampled token, a stop.
    fn after_forward(
        &mut self,
        i: usize,
        take: usize,
        out: Option<candle_core::Tensor>,
        events: &mut Vec<(SeqId, Event)>,
    ) -> Result<Option<(StopReason, bool)>> {
        let isa = self.model.isa;
        let s = &mut self.running[i];
        let decoding = s.next.is_some();
        s.fed += take;
        s.next = None;
        let Some(t) = out else { return Ok(None) };
        let rows: Vec<Vec<f32>> = t.to_vec2()?;
        let n = s.spec.prompt.len();
        let last = rows.last().expect("logits rows").clone();
        check_finite(&last, &s.spec.name, s.fed)?;
        if !decoding && s.spec.prompt_logprobs.is_some() {
            // Rows of positions fed-take .. fed; each predicts the next prompt token.
            let p0 = s.fed - take;
            for (k, row) in rows.iter().enumerate() {
                let p = p0 + k;
                if p + 1 < n {
                    check_finite(row, &s.spec.name, p + 1)?;
                    let (lp, top) =
                        log_softmax_top(isa, row, s.spec.prompt[p + 1] as usize, PROMPT_TOP);
                    s.prompt_info.push(PosInfo { logprob: lp, top });
                }
            }
            if s.fed == n {
                let want = s.spec.prompt_logprobs.unwrap_or(0);
                let list = s
                    .prompt_info
                    .iter()
                    .enumerate()
                    .map(|(p, info)| TokenLogprob {
                        token: s.spec.prompt[p + 1],
                        logprob: info.logprob,
                        top: info.top[..want.min(info.top.len())].to_vec(),
                    });
                events.push((s.id, Event::Prompt(list.collect())));
            }
        }
        if s.fed < n {
            return Ok(None);
        }
        if s.spec.sampling.max_tokens == 0 {
            return Ok(Some((StopReason::Length, false)));
        }
        hash_f32s(&mut s.hasher, &last);
        let sampler = Sampler {
            params: &s.spec.sampling,
        };
        let tok = sampler
            .sample(
                &last,
                &s.spec.prompt,
                &s.out,
                s.spec.key,
                s.out.len() as u64,
            )
            .map_err(|e| Error::Input(format!("sequence '{}': {e}", s.spec.name)))?;
        let (lp, top) = log_softmax_top(isa, &last, tok as usize, s.spec.top_logprobs);
        s.out.push(tok);
        s.logprobs.push(lp);
        let now = std::time::Instant::now();
        if s.out.len() == 1 {
            s.ttft = (now - s.admitted).as_secs_f64();
        } else {
            s.times.push((now - s.t_last).as_secs_f64());
        }
        s.t_last = now;
        if s.spec.keep_logits {
            s.step_logits.push(last);
        }
        events.push((
            s.id,
            Event::Token(TokenLogprob {
                token: tok,
                logprob: lp,
                top,
            }),
        ));
        if s.spec.eos.contains(&tok) {
            return Ok(Some((StopReason::Eos, false)));
        }
        if let Some(rule) = s.spec.stop.as_mut() {
            if rule(&s.out) {
                return Ok(Some((StopReason::Eos, true)));
            }
        }
        if s.out.len() >= s.spec.sampling.max_tokens {
            return Ok(Some((StopReason::Length, false)));
        }
        let cache = s.cache.as_ref().expect("cache");
        if cache.len + 1 > cache.capacity {
            let ctx = self.model.config.max_position_embeddings;
            let limit = (n + s.spec.sampling.max_tokens).min(ctx);
            if cache.capacity >= limit {
                return Ok(Some((StopReason::Context, false)));
            }
            let mut bigger = self.model.new_cache((cache.capacity * 2).min(limit))?;
            bigger.copy_prefix_from(cache, cache.len)?;
            s.cache = Some(bigger);
        }
        s.next = Some(tok);
        Ok(None)
    }

    /// A sequence leaves: its KV (every token fed) goes to the prefix cache.
    fn retire(&mut self, s: Seq) {
        let Some(mut cache) = s.cache else { return };
        if cache.len == 0 || self.opts.prefix_cache_bytes == 0 {
            return;
        }
        // Keep only what was filled: a copy when much of the capacity is unused.
        if cache.capacity > cache.len + cache.len / 4 + 16 {
            let Ok(mut small) = self.model.new_cache(cache.len) else {
                return;
            };
            if small.copy_prefix_from(&cache, cache.len).is_err() {
                return;
            }
            cache = small;
        }
        let mut tokens = s.spec.prompt.clone();
        tokens.extend_from_slice(&s.out);
        tokens.truncate(cache.len);
        let mut info = s.prompt_info;
        info.truncate(cache.len.saturating_sub(1));
        let info = if s.spec.prompt_logprobs.is_some() {
            Some(info)
        } else {
            None
        };
        self.prefix.insert(tokens, cache, info);
    }
}

/// Run sequences to the end on their own engine: what a caller that needs
/// no streaming does (`verify --served`). Per sequence, in the order given:
/// its events before the end, and how it ended.
pub fn run_all(
    model: &Transformer,
    opts: EngineOptions,
    specs: Vec<SeqSpec>,
    mut on_event: impl FnMut(&Event),
) -> Result<Vec<(Vec<Event>, Finished)>> {
    let mut e = Engine::new(model, opts)?;
    let n = specs.len();
    for (i, s) in specs.into_iter().enumerate() {
        e.add(i as SeqId, s)?;
    }
    let mut events: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
    let mut done: Vec<Option<Finished>> = (0..n).map(|_| None).collect();
    while !e.is_idle() {
        for (id, ev) in e.step()? {
            on_event(&ev);
            match ev {
                Event::Done(f) => done[id as usize] = Some(f),
                Event::Failed(f) => return Err(f.into_error()),
                ev => events[id as usize].push(ev),
            }
        }
    }
    Ok(events
        .into_iter()
        .zip(done)
        .map(|(ev, f)| (ev, f.expect("every sequence ends")))
        .collect())
}
