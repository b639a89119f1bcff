//! Engine events turned into OpenAI response shapes: whole responses and
//! streamed chunks, logprobs in the completions and the chat layouts, text
//! cut at stop strings (streamed text holds back what could start one).

use super::api::{Endpoint, Job, PromptIn};
use crate::engine::core::{Event, Finished, TokenLogprob};
use crate::engine::StopReason;
use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

/// vLLM's floor for a log-probability JSON cannot hold (-inf).
const LOGPROB_FLOOR: f64 = -9999.0;
/// Tokens of context used to find a token's text (a window, not the whole prefix).
const PIECE_WINDOW: usize = 8;

fn lp(x: f64) -> Value {
    json!(if x.is_finite() { x } else { LOGPROB_FLOOR })
}

/// The text token `tok` adds after `before` (their last PIECE_WINDOW ids).
fn piece(t: &Tokenizer, before: &[u32], tok: u32) -> String {
    let ctx = &before[before.len().saturating_sub(PIECE_WINDOW)..];
    let mut with = ctx.to_vec();
    with.push(tok);
    match (t.decode(ctx), t.decode(&with)) {
        (Ok(a), Ok(b)) if b.starts_with(&a) => b[a.len()..].to_string(),
        _ => t.decode(&[tok]).unwrap_or_default(),
    }
}

/// Per-choice state while events arrive.
pub struct ChoiceState {
    pub index: usize,
    pub prompt: PromptIn,
    /// The seed this choice drew with (the request's, + j for draw j).
    pub seed: u64,
    prompt_lps: Option<Vec<TokenLogprob>>,
    pub tokens: Vec<TokenLogprob>,
    /// Characters of the generated text already streamed.
    sent_chars: usize,
    pub finished: Option<Finished>,
    pub failed: Option<String>,
    /// Tokens streamed (their logprobs) so far.
    sent_tokens: usize,
}

impl ChoiceState {
    pub fn new(index: usize, prompt: PromptIn, seed: u64) -> Self {
        ChoiceState {
            index,
            prompt,
            seed,
            prompt_lps: None,
            tokens: Vec::new(),
            sent_chars: 0,
            finished: None,
            failed: None,
            sent_tokens: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.finished.is_some() || self.failed.is_some()
    }

    pub fn take(&mut self, ev: Event) {
        match ev {
            Event::Prompt(l) => self.prompt_lps = Some(l),
            Event::Token(t) => self.tokens.push(t),
            Event::Done(f) => self.finished = Some(f),
            Event::Failed(f) => self.failed = Some(f.message),
        }
    }

    fn out_ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.token).collect()
    }

    /// The generated text, cut before a stop string; and whether one was met.
    pub fn text(&self, t: &Tokenizer, stops: &[String]) -> (String, bool) {
        let full = t.decode(&self.out_ids()).unwrap_or_default();
        crate::tokenizer::stop::cut_at_stop(&full, stops)
    }

    pub fn finish_reason(&self) -> &'static str {
        match &self.finished {
            Some(f) if f.by_rule || f.stop == StopReason::Eos => "stop",
            _ => "length",
        }
    }

    /// The extension field: digests as the CLI and `eval` records write them.
    pub fn extension(&self, job: &Job) -> Value {
        let f = self.finished.as_ref();
        json!({
            "digest": f.map(|f| f.digest.clone()),
            "logits_digest": f.map(|f| f.logits_digest.clone()),
            "prompt_digest": crate::engine::ids_digest(&self.prompt.ids),
            "seed": self.seed,
            "seed_given": job.seed_given,
            "prompt_tokens": self.prompt.ids.len(),
            "cached_tokens": f.map_or(0, |f| f.cached_tokens),
            "stop": f.map(|f| if f.by_rule { "stop_string" } else { f.stop.name() }),
        })
    }

    /// Completions-style logprobs over tokens `from..` of (echoed prompt +) output.
    fn completion_logprobs(
        &self,
        t: &Tokenizer,
        job: &Job,
        first_chunk: bool,
        gen_from: usize,
    ) -> Value {
        let mut tokens = Vec::new();
        let mut lps = Vec::new();
        let mut tops = Vec::new();
        let mut offsets = Vec::new();
        let mut all: Vec<u32> = Vec::new();
        let mut off = 0usize;
        let mut push = |all: &mut Vec<u32>, id: u32, e: Option<&TokenLogprob>, emit: bool| {
            let p = piece(t, all, id);
            all.push(id);
            if emit {
                tokens.push(json!(p));
                offsets.push(json!(off));
                lps.push(e.map_or(Value::Null, |e| lp(e.logprob)));
                tops.push(e.map_or(Value::Null, |e| {
                    let before = &all[..all.len() - 1];
                    let mut m = Map::new();
                    for &(alt, v) in &e.top {
                        m.entry(piece(t, before, alt)).or_insert(lp(v));
                    }
                    Value::Object(m)
                }));
            }
            off += p.chars().count();
        };
        if job.echo {
            let pl = self.prompt_lps.as_deref().unwrap_or(&[]);
            for (i, &id) in self.prompt.ids.iter().enumerate() {
                let e = if i == 0 { None } else { pl.get(i - 1) };
                push(&mut all, id, e, first_chunk);
            }
        } else {
            all.extend_from_slice(&self.prompt.ids);
        }
        for (k, e) in self.tokens.iter().enumerate() {
            push(&mut all, e.token, Some(e), k >= gen_from);
        }
        json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
    }

    /// Chat-style logprobs of generated tokens `from..`.
    fn chat_logprobs(&self, t: &Tokenizer, from: usize) -> Value {
        let mut all = self.prompt.ids.clone();
        let mut content = Vec::new();
        for (k, e) in self.tokens.iter().enumerate() {
            let p = piece(t, &all, e.token);
            if k >= from {
                let top: Vec<Value> = e
                    .top
                    .iter()
                    .map(|&(alt, v)| {
                        let s = piece(t, &all, alt);
                        json!({"token": s, "logprob": lp(v), "bytes": s.as_bytes()})
                    })
                    .collect();
                content.push(json!({"token": p, "logprob": lp(e.logprob), "bytes": p.as_bytes(), "top_logprobs": top}));
            }
            all.push(e.token);
        }
        json!({"content": content})
    }

    /// The whole choice of a non-streamed response.
    pub fn choice(&self, t: &Tokenizer, job: &Job) -> Value {
        let (text, _) = self.text(t, &job.stop);
        let mut c = match job.endpoint {
            Endpoint::Completions => json!({
                "index": self.index,
                "text": if job.echo { format!("{}{text}", self.prompt.text) } else { text },
                "logprobs": job.logprobs.map(|_| self.completion_logprobs(t, job, true, 0)),
                "finish_reason": self.finish_reason(),
            }),
            Endpoint::Chat => json!({
                "index": self.index,
                "message": {"role": "assistant", "content": text},
                "logprobs": job.logprobs.map(|_| self.chat_logprobs(t, 0)),
                "finish_reason": self.finish_reason(),
            }),
        };
        c["infer_eval"] = self.extension(job);
        c
    }

    /// The streamed chunk choices for what arrived since the last call.
    pub fn stream_delta(&mut self, t: &Tokenizer, job: &Job, first: bool) -> Option<Value> {
        let (text, stopped) = self.text(t, &job.stop);
        let done = self.done();
        // Hold back what could be the start of a stop string, or half a character.
        let mut end = text.len();
        if !done && !stopped {
            for s in &job.stop {
                for k in (1..s.len()).rev() {
                    if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                        end = end.min(text.len() - k);
                        break;
                    }
                }
            }
            if text[..end].ends_with('\u{fffd}') {
                end -= '\u{fffd}'.len_utf8();
            }
        }
        let chars: Vec<char> = text[..end].chars().collect();
        let new: String = chars
            .get(self.sent_chars..)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let new_tokens = self.tokens.len() > self.sent_tokens;
        if new.is_empty() && !new_tokens && !done && !first {
            return None;
        }
        let mut delta_text = new;
        self.sent_chars = self.sent_chars.max(chars.len());
        let from = self.sent_tokens;
        self.sent_tokens = self.tokens.len();
        let finish = if done {
            Value::from(self.finish_reason())
        } else {
            Value::Null
        };
        let mut c = match job.endpoint {
            Endpoint::Completions => {
                if first && job.echo {
                    delta_text = format!("{}{delta_text}", self.prompt.text);
                }
                let logprobs = job
                    .logprobs
                    .filter(|_| new_tokens || (first && job.echo))
                    .map(|_| self.completion_logprobs(t, job, first, from));
                json!({"index": self.index, "text": delta_text, "logprobs": logprobs, "finish_reason": finish})
            }
            Endpoint::Chat => {
                let mut delta = Map::new();
                if first {
                    delta.insert("role".into(), json!("assistant"));
                }
                if !delta_text.is_empty() || first {
                    delta.insert("content".into(), json!(delta_text));
                }
                let logprobs = job
                    .logprobs
                    .filter(|_| new_tokens)
                    .map(|_| self.chat_logprobs(t, from));
                json!({"index": self.index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        if done {
            c["infer_eval"] = self.extension(job);
        }
        Some(c)
    }

    /// Cumulative log-probability of the generated tokens, summed in order
    /// in f64 (best_of ranks by it).
    pub fn cumulative_logprob(&self) -> f64 {
        self.tokens.iter().map(|t| t.logprob).sum()
    }
}

/// `usage` over the sequences drawn: each prompt's tokens counted once,
/// every draw's generated tokens (best_of's unreturned ones too).
pub fn usage(job: &Job, choices: &[ChoiceState]) -> Value {
    let p: usize = job.prompts.iter().map(|c| c.ids.len()).sum();
    let g: usize = choices.iter().map(|c| c.tokens.len()).sum();
    let cached: usize = choices
        .iter()
        .map(|c| c.finished.as_ref().map_or(0, |f| f.cached_tokens))
        .sum();
    json!({"prompt_tokens": p, "completion_tokens": g, "total_tokens": p + g,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

/// The response's envelope: id, object, created, model, system_fingerprint.
pub fn envelope(
    job: &Job,
    id: &str,
    created: u64,
    model: &str,
    fingerprint: &str,
    chunk: bool,
) -> Map<String, Value> {
    let object = match (job.endpoint, chunk) {
        (Endpoint::Completions, _) => "text_completion",
        (Endpoint::Chat, false) => "chat.completion",
        (Endpoint::Chat, true) => "chat.completion.chunk",
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("object".into(), json!(object));
    m.insert("created".into(), json!(created));
    m.insert("model".into(), json!(model));
    m.insert("system_fingerprint".into(), json!(fingerprint));
    m
}
