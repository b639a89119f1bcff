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

use super::base::{check_finite, hash_f32s, ids_digest, prompt_fits, StopReason};
use super::prefix::PrefixCache;
use super::seq::{copy_shared, pos_info, row_max, share, Seq, MIN_WAIT_SHARE};
use crate::error::{Error, Result};
use crate::kernels::softmax::log_softmax_top;
use crate::model::transformer::{Logits, SeqStep, Transformer};
use crate::sampling::Sampler;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

// The core's interface types live in spec.rs; callers name them here.
pub use super::spec::{
    EngineOptions, Event, Failure, Finished, PromptLogprobs, SeqId, SeqSpec, StopRule, TokenLogprob,
};

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
    /// Tokens fed to the model, and prompt tokens copied from a leader.
    computed: u64,
    shared: u64,
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
            computed: 0,
            shared: 0,
        })
    }

    /// Checks a sequence could run: a clear error naming what is wrong.
    pub fn check(&self, spec: &SeqSpec) -> Result<()> {
        spec.sampling.validate().map_err(Error::Input)?;
        let ctx = self.model.config.max_position_embeddings;
        let vocab = self.model.config.vocab_size;
        let n = spec.prompt.len();
        let name = &spec.name;
        if n == 0 {
            return Err(Error::Input(format!("{name}: the prompt has no tokens")));
        }
        if let Some(p) = spec.prompt_logprobs {
            if p.from == 0 || p.from > n {
                return Err(Error::Input(format!(
                    "{name}: prompt log-probabilities from token {} of a {n}-token prompt: the first scored token must be 1..={n}",
                    p.from
                )));
            }
        }
        let fits = if spec.sampling.max_tokens == 0 {
            n - 1 <= ctx
        } else {
            prompt_fits(n, ctx)
        };
        if !fits {
            return Err(Error::Resource(format!(
                "{name}: the prompt has {n} tokens; the model's context is {ctx} positions"
            )));
        }
        if let Some(&t) = spec.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "{name}: token id {t} is outside the vocabulary of {vocab} tokens"
            )));
        }
        Ok(())
    }

    /// Queue a sequence; it joins a step when there is room.
    pub fn add(&mut self, id: SeqId, spec: SeqSpec) -> Result<()> {
        self.check(&spec)?;
        self.waiting.push_back(Seq::new(id, spec));
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

    /// Tokens fed to the model so far (prompt and generated).
    pub fn computed_tokens(&self) -> u64 {
        self.computed
    }

    /// Prompt tokens whose KV a sequence copied from a running one that
    /// shares them, instead of computing them.
    pub fn shared_tokens(&self) -> u64 {
        self.shared
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
        self.follow_leaders();
        let mut plan: Vec<(usize, usize, Logits)> = Vec::new(); // (seq, tokens, logits)
        let mut budget = self.opts.step_prefill_tokens;
        for (i, s) in self.running.iter().enumerate() {
            if s.next.is_some() {
                plan.push((i, 1, Logits::Last));
            }
        }
        for (i, s) in self.running.iter().enumerate() {
            let target = s.target();
            if s.next.is_some() || s.leader.is_some() || s.fed >= target || budget == 0 {
                continue;
            }
            let mut take = (target - s.fed).min(self.opts.prefill_chunk).min(budget);
            // Logits rows: the positions whose logprobs are wanted (at most
            // `all_logits_chunk` of them per step), and the last prompt
            // position's when a token is sampled after it.
            let want = match s.info_from() {
                Some(f0) if s.fed + take > f0 => {
                    let first = f0.max(s.fed);
                    take = take.min(first - s.fed + self.all_logits_chunk);
                    Logits::Tail(s.fed + take - first)
                }
                _ if s.fed + take == s.spec.prompt.len() => Logits::Last,
                _ => Logits::None,
            };
            budget -= take;
            plan.push((i, take, want));
        }
        if plan.is_empty() {
            return Ok(events);
        }
        plan.sort_by_key(|p| p.0);
        self.last_batch = plan.len();
        self.computed += plan.iter().map(|p| p.1 as u64).sum::<u64>();
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
        // Followers copy from leaders that got far enough, before any leader leaves.
        self.follow_leaders();
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
            s.admitted = std::time::Instant::now();
            let n = s.spec.prompt.len();
            if s.spec.sampling.max_tokens == 0 && s.spec.prompt_logprobs.is_none_or(|p| p.from >= n)
            {
                // Nothing to compute: no token to sample, none to score.
                if s.spec.prompt_logprobs.is_some() {
                    events.push((s.id, Event::Prompt(Vec::new())));
                }
                let fin = Finished {
                    stop: StopReason::Length,
                    by_rule: false,
                    output_ids: Vec::new(),
                    digest: ids_digest(&[]),
                    logits_digest: hex::encode(Sha256::new().finalize()),
                    cached_tokens: 0,
                    logprobs: Vec::new(),
                    step_logits: Vec::new(),
                    ttft_s: 0.0,
                    token_times_s: Vec::new(),
                };
                events.push((s.id, Event::Done(fin)));
                continue;
            }
            let ctx = self.model.config.max_position_embeddings;
            // Room for the prompt and the first tokens; it grows as needed
            // (a copy), so a large max_tokens does not hold memory it never uses.
            let cap = (n + s.spec.sampling.max_tokens.min(self.opts.kv_start_tokens)).min(ctx);
            let cache = match self.model.new_cache(cap) {
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
            s.cache = Some(cache);
            self.start_from_shared(&mut s);
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
        if let (false, Some(f0)) = (decoding, s.info_from()) {
            // The rows are the chunk's last positions; each predicts the next prompt token.
            let p0 = s.fed - rows.len();
            let keep = s.kept_top();
            for (k, row) in rows.iter().enumerate() {
                let p = p0 + k;
                if p >= f0 && p + 1 < n {
                    check_finite(row, &s.spec.name, p + 1)?;
                    s.prompt_info
                        .push(pos_info(isa, row, s.spec.prompt[p + 1], keep));
                }
            }
            if s.fed == s.target() {
                let want = s.spec.prompt_logprobs.map_or(0, |p| p.top);
                let list = s
                    .prompt_info
                    .iter()
                    .enumerate()
                    .map(|(k, info)| TokenLogprob {
                        token: s.spec.prompt[f0 + k + 1],
                        logprob: info.logprob,
                        top: info.top[..want.min(info.top.len())].to_vec(),
                        greedy: info.greedy,
                    });
                events.push((s.id, Event::Prompt(list.collect())));
            }
        }
        if s.fed < s.target() {
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
            .map_err(|e| Error::Input(format!("{}: {e}", s.spec.name)))?;
        let (lp, top) = log_softmax_top(isa, &last, tok as usize, s.spec.top_logprobs);
        let greedy = last[tok as usize] >= row_max(&last);
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
                greedy,
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
        let from_start = s.info_from() == Some(0);
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
        // The prefix cache keeps logprob rows from the first position only.
        let info = from_start.then(|| {
            let mut info = s.prompt_info;
            info.truncate(cache.len.saturating_sub(1));
            info
        });
        self.prefix.insert(tokens, cache, info);
    }

    /// Start a new sequence from the longest prefix it shares with the
    /// prefix cache or with a running sequence: the KV (and logprob rows)
    /// of those tokens are copied, the same bits as computing them
    /// (docs/DETERMINISM.md §8). A running sequence that has not fed the
    /// shared tokens yet becomes the new one's leader: the new one waits
    /// for it instead of computing the same tokens beside it (the choices
    /// of a multiple-choice item, requests with one few-shot prefix).
    fn start_from_shared(&mut self, s: &mut Seq) {
        let limit = s.target() - 1;
        let f0 = s.info_from();
        let mut best = 0;
        if let Some(hit) = self.prefix.lookup(&s.spec.prompt, f0, limit) {
            let cache = s.cache.as_mut().expect("admitted sequence has a cache");
            if cache.copy_prefix_from(hit.kv, hit.reuse).is_ok() {
                best = hit.reuse;
                if let Some(f0) = f0.filter(|&f0| hit.reuse > f0) {
                    s.prompt_info = hit.info[f0..hit.reuse].to_vec();
                }
            } else {
                cache.len = 0;
            }
        }
        s.fed = best;
        s.cached = best;
        let leader = self
            .running
            .iter()
            .filter(|r| r.leader.is_none())
            .map(|r| (r.id, share(s, r, limit), r.fed))
            .filter(|&(_, n, fed)| n > best && (fed >= n || n >= MIN_WAIT_SHARE || 2 * n >= limit))
            .max_by_key(|&(_, n, _)| n);
        if let Some((id, n, _)) = leader {
            s.leader = Some((id, n));
            let li = self
                .running
                .iter()
                .position(|r| r.id == id)
                .expect("leader");
            self.shared += copy_shared(&self.running[li], s) as u64;
        }
    }

    /// Followers whose leader has fed the shared tokens copy them; a
    /// follower whose leader left (finished short, failed, aborted)
    /// computes them itself.
    fn follow_leaders(&mut self) {
        for i in 0..self.running.len() {
            let Some((id, _)) = self.running[i].leader else {
                continue;
            };
            match self.running.iter().position(|r| r.id == id) {
                Some(li) => {
                    // li != i: a follower never leads.
                    let (leader, f) = if li < i {
                        let (a, b) = self.running.split_at_mut(i);
                        (&a[li], &mut b[0])
                    } else {
                        let (a, b) = self.running.split_at_mut(li);
                        (&b[0], &mut a[i])
                    };
                    self.shared += copy_shared(leader, f) as u64;
                }
                None => self.running[i].leader = None,
            }
        }
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
