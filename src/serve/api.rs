//! OpenAI request bodies read into what the engine runs: every field is
//! checked by hand so an error names it (serde's messages name a line and
//! column, not the field a client sent wrong). Unknown fields are ignored,
//! as every OpenAI-compatible client expects (../shared/SERVER-CLIENTS.md).

use crate::engine::core::{PromptLogprobs, SeqSpec, StopRule};
use crate::engine::prefix::PROMPT_TOP;
use crate::loader::LoadedModel;
use crate::sampling::{sequence_key, SamplingParams};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The seed of a request that names none (recorded in every answer).
pub const DEFAULT_SEED: u64 = 42;

/// An OpenAI-style error: HTTP status and the `error` object's fields.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.to_string()),
            code: None,
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    pub fn with_param(self, param: &str) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..self
        }
    }

    pub fn body(&self) -> Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }

    pub fn parse_path(p: &str) -> Option<Self> {
        match p {
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/chat/completions" => Some(Endpoint::Chat),
            _ => None,
        }
    }
}

/// One prompt of a request: its ids and the text `echo` gives back.
#[derive(Debug, Clone)]
pub struct PromptIn {
    pub ids: Vec<u32>,
    pub text: String,
}

/// A request, read and checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub endpoint: Endpoint,
    pub prompts: Vec<PromptIn>,
    pub sampling: SamplingParams,
    /// The seed came from the request (else DEFAULT_SEED).
    pub seed_given: bool,
    pub stop: Vec<String>,
    pub echo: bool,
    /// Completions: top-N per token; chat: Some(top_logprobs) when logprobs.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    pub ignore_eos: bool,
    /// Choices returned per prompt (`n`), and sequences drawn per prompt
    /// (`best_of`, at least n: the n of highest cumulative log-probability
    /// are returned).
    pub n: usize,
    pub best_of: usize,
}

fn obj(body: &Value) -> ApiResult<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| ApiError::bad("body", "the request body must be a JSON object"))
}

fn present<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn opt_f32(o: &Map<String, Value>, k: &str) -> ApiResult<Option<f32>> {
    match present(o, k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| Some(x as f32))
            .ok_or_else(|| ApiError::bad(k, format!("'{k}' must be a number, got {v}"))),
    }
}

/// OpenAI's `logit_bias`: token ids (as the object's keys) to a bias.
fn logit_bias(
    o: &Map<String, Value>,
    vocab: usize,
) -> ApiResult<std::collections::BTreeMap<u32, f32>> {
    let mut out = std::collections::BTreeMap::new();
    let Some(v) = present(o, "logit_bias") else {
        return Ok(out);
    };
    let map = v.as_object().ok_or_else(|| {
        ApiError::bad(
            "logit_bias",
            format!("'logit_bias' must be an object of token id -> bias, got {v}"),
        )
    })?;
    for (k, b) in map {
        let param = format!("logit_bias.{}", k.chars().take(20).collect::<String>());
        let id = k
            .parse::<u32>()
            .ok()
            .filter(|&t| (t as usize) < vocab)
            .ok_or_else(|| {
                ApiError::bad(
                    &param,
                    format!("a key of 'logit_bias' must be a token id below {vocab}"),
                )
            })?;
        let b = b
            .as_f64()
            .filter(|x| (-100.0..=100.0).contains(x))
            .ok_or_else(|| {
                ApiError::bad(
                    &param,
                    format!("a bias must be a number in [-100, 100], got {b}"),
                )
            })?;
        out.insert(id, b as f32);
    }
    Ok(out)
}

fn opt_int(o: &Map<String, Value>, k: &str) -> ApiResult<Option<i64>> {
    match present(o, k) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_u64().map(|u| u as i64))
            .map(Some)
            .ok_or_else(|| ApiError::bad(k, format!("'{k}' must be an integer, got {v}"))),
    }
}

fn opt_count(o: &Map<String, Value>, k: &str) -> ApiResult<Option<usize>> {
    match opt_int(o, k)? {
        Some(n) if n < 0 => Err(ApiError::bad(k, format!("'{k}' must be >= 0, got {n}"))),
        n => Ok(n.map(|n| n as usize)),
    }
}

fn opt_bool(o: &Map<String, Value>, k: &str) -> ApiResult<Option<bool>> {
    match present(o, k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad(
            k,
            format!("'{k}' must be true or false, got {v}"),
        )),
    }
}

/// Sampling fields shared by both endpoints.
fn sampling(
    o: &Map<String, Value>,
    max_tokens: usize,
    vocab: usize,
) -> ApiResult<(SamplingParams, bool)> {
    let mut s = SamplingParams {
        temperature: opt_f32(o, "temperature")?.unwrap_or(1.0),
        top_p: opt_f32(o, "top_p")?.unwrap_or(1.0),
        min_p: opt_f32(o, "min_p")?.unwrap_or(0.0),
        repetition_penalty: opt_f32(o, "repetition_penalty")?.unwrap_or(1.0),
        presence_penalty: opt_f32(o, "presence_penalty")?.unwrap_or(0.0),
        frequency_penalty: opt_f32(o, "frequency_penalty")?.unwrap_or(0.0),
        logit_bias: logit_bias(o, vocab)?,
        top_k: 0,
        seed: DEFAULT_SEED,
        max_tokens,
    };
    match opt_int(o, "top_k")? {
        None | Some(-1) | Some(0) => {}
        Some(k) if k > 0 => s.top_k = k as usize,
        Some(k) => {
            return Err(ApiError::bad(
                "top_k",
                format!("'top_k' must be >= 0 (or -1: off), got {k}"),
            ))
        }
    }
    let seed_given = match present(o, "seed") {
        None => false,
        Some(v) => {
            s.seed = v.as_u64().ok_or_else(|| {
                ApiError::bad("seed", format!("'seed' must be an integer >= 0, got {v}"))
            })?;
            true
        }
    };
    if let Err(m) = s.validate() {
        // validate's message starts with the quantity's name: its field.
        let param = [
            ("temperature", "temperature"),
            ("top-p", "top_p"),
            ("min-p", "min_p"),
            ("repetition penalty", "repetition_penalty"),
            ("presence penalty", "presence_penalty"),
            ("frequency penalty", "frequency_penalty"),
            ("logit bias", "logit_bias"),
        ]
        .iter()
        .find(|(w, _)| m.starts_with(w))
        .map_or("body", |(_, p)| p);
        return Err(ApiError::bad(param, m));
    }
    Ok((s, seed_given))
}

/// The most sequences one prompt may ask for (`n`, `best_of`).
pub const MAX_CHOICES: usize = 64;

/// `n` and `best_of` (default n; best_of > n cannot stream, as OpenAI says).
fn choice_counts(o: &Map<String, Value>, stream: bool) -> ApiResult<(usize, usize)> {
    let count = |k: &str| -> ApiResult<Option<usize>> {
        match opt_int(o, k)? {
            None => Ok(None),
            Some(v) if (1..=MAX_CHOICES as i64).contains(&v) => Ok(Some(v as usize)),
            Some(v) => Err(ApiError::bad(
                k,
                format!("'{k}' must be from 1 to {MAX_CHOICES}, got {v}"),
            )),
        }
    };
    let n = count("n")?.unwrap_or(1);
    let best_of = count("best_of")?.unwrap_or(n);
    if best_of < n {
        return Err(ApiError::bad(
            "best_of",
            format!("'best_of' ({best_of}) must be at least 'n' ({n})"),
        ));
    }
    if stream && best_of > n {
        return Err(ApiError::bad(
            "best_of",
            "'best_of' above 'n' cannot be streamed (the best are known only at the end)",
        ));
    }
    Ok((n, best_of))
}

fn stop_strings(o: &Map<String, Value>) -> ApiResult<Vec<String>> {
    let bad = || ApiError::bad("stop", "'stop' must be a string or a list of strings");
    let v = match present(o, "stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(bad()),
    };
    Ok(v.into_iter().filter(|s| !s.is_empty()).collect())
}

fn stream_fields(o: &Map<String, Value>) -> ApiResult<(bool, bool)> {
    let stream = opt_bool(o, "stream")?.unwrap_or(false);
    let usage = match present(o, "stream_options") {
        None => false,
        Some(Value::Object(so)) => match present(so, "include_usage") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(ApiError::bad(
                    "stream_options.include_usage",
                    format!("must be true or false, got {v}"),
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::bad(
                "stream_options",
                "'stream_options' must be an object",
            ))
        }
    };
    Ok((stream, usage))
}

fn token_list(v: &Value, param: &str, vocab: usize) -> ApiResult<Vec<u32>> {
    if v.as_array().is_some_and(|a| a.is_empty()) {
        return Err(ApiError::bad(param, "a token-id prompt must not be empty"));
    }
    token_ids(v, param, vocab)
}

/// A list of token ids of this vocabulary (possibly empty).
fn token_ids(v: &Value, param: &str, vocab: usize) -> ApiResult<Vec<u32>> {
    let a = v
        .as_array()
        .ok_or_else(|| ApiError::bad(param, "expected a list of token ids"))?;
    a.iter()
        .map(|t| match t.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(id as u32),
            Some(id) => Err(ApiError::bad(
                param,
                format!("token id {id} is outside the vocabulary of {vocab} tokens"),
            )),
            None => Err(ApiError::bad(
                param,
                format!("token ids must be integers >= 0, got {t}"),
            )),
        })
        .collect()
}

fn check_context(m: &LoadedModel, p: &PromptIn, param: &str) -> ApiResult<()> {
    let ctx = m.model.config.max_position_embeddings;
    if p.ids.len() >= ctx {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad(
                param,
                format!(
                    "the prompt has {} tokens; this model's context is {ctx} positions",
                    p.ids.len()
                ),
            )
        });
    }
    Ok(())
}

fn tokenize(m: &LoadedModel, text: &str, param: &str) -> ApiResult<PromptIn> {
    let ids = m
        .tokenizer
        .encode_prompt(text, false)
        .map_err(|e| ApiError::bad(param, e.to_string()))?;
    Ok(PromptIn {
        ids,
        text: text.to_string(),
    })
}

/// `POST /v1/completions`: `prompt` as a string, strings, ids or lists of ids.
pub fn parse_completion(m: &LoadedModel, body: &Value) -> ApiResult<Job> {
    let o = obj(body)?;
    let vocab = m.model.config.vocab_size;
    let prompt =
        present(o, "prompt").ok_or_else(|| ApiError::bad("prompt", "'prompt' is required"))?;
    let decode = |ids: Vec<u32>| -> ApiResult<PromptIn> {
        let text = m
            .tokenizer
            .decode(&ids)
            .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
        Ok(PromptIn { ids, text })
    };
    let prompts: Vec<PromptIn> = match prompt {
        Value::String(s) => vec![tokenize(m, s, "prompt")?],
        Value::Array(a) if a.is_empty() => return Err(ApiError::bad("prompt", "'prompt' must not be an empty list")),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .enumerate()
            .map(|(i, s)| tokenize(m, s.as_str().unwrap_or_default(), &format!("prompt[{i}]")))
            .collect::<ApiResult<_>>()?,
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .enumerate()
            .map(|(i, l)| decode(token_list(l, &format!("prompt[{i}]"), vocab)?))
            .collect::<ApiResult<_>>()?,
        Value::Array(_) => decode(token_list(prompt, "prompt", vocab)?).map(|p| vec![p])?,
        _ => {
            return Err(ApiError::bad(
                "prompt",
                "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
            ))
        }
    };
    for (i, p) in prompts.iter().enumerate() {
        check_context(
            m,
            p,
            &if prompts.len() == 1 {
                "prompt".into()
            } else {
                format!("prompt[{i}]")
            },
        )?;
    }
    let max_tokens = opt_count(o, "max_tokens")?.unwrap_or(16);
    let (sampling, seed_given) = sampling(o, max_tokens, m.model.config.vocab_size)?;
    let logprobs = match present(o, "logprobs") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n as usize <= PROMPT_TOP => Some(n as usize),
            _ => {
                return Err(ApiError::bad(
                    "logprobs",
                    format!("'logprobs' must be an integer from 0 to {PROMPT_TOP}, got {v}"),
                ))
            }
        },
    };
    let (stream, include_usage) = stream_fields(o)?;
    let (n, best_of) = choice_counts(o, stream)?;
    Ok(Job {
        endpoint: Endpoint::Completions,
        prompts,
        sampling,
        seed_given,
        stop: stop_strings(o)?,
        echo: opt_bool(o, "echo")?.unwrap_or(false),
        logprobs,
        stream,
        include_usage,
        ignore_eos: opt_bool(o, "ignore_eos")?.unwrap_or(false),
        n,
        best_of,
    })
}

/// `POST /v1/chat/completions`: messages rendered by the model's template.
pub fn parse_chat(m: &LoadedModel, body: &Value) -> ApiResult<Job> {
    let o = obj(body)?;
    let msgs = present(o, "messages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad("messages", "'messages' must be a non-empty list"))?;
    let mut turns = Vec::with_capacity(msgs.len());
    for (i, msg) in msgs.iter().enumerate() {
        let p = |f: &str| format!("messages[{i}].{f}");
        let mo = msg.as_object().ok_or_else(|| {
            ApiError::bad(&format!("messages[{i}]"), "each message must be an object")
        })?;
        let role = present(mo, "role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad(&p("role"), "'role' must be a string"))?;
        let content = match present(mo, "content") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            s.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default())
                        }
                        _ => {
                            return Err(ApiError::bad(
                                &format!("messages[{i}].content[{j}]"),
                                "only text content parts are supported",
                            ))
                        }
                    }
                }
                s
            }
            Some(_) => {
                return Err(ApiError::bad(
                    &p("content"),
                    "'content' must be a string or a list of parts",
                ))
            }
        };
        turns.push((role.to_string(), content));
    }
    let text = m
        .tokenizer
        .apply_chat_messages(&turns)
        .map_err(|e| ApiError::bad("messages", e.to_string()))?;
    let ids = m
        .tokenizer
        .encode_chat(&turns)
        .map_err(|e| ApiError::bad("messages", e.to_string()))?;
    let prompt = PromptIn { ids, text };
    check_context(m, &prompt, "messages")?;
    let ctx = m.model.config.max_position_embeddings;
    let max_tokens = match opt_count(o, "max_completion_tokens")? {
        Some(n) => n,
        None => opt_count(o, "max_tokens")?.unwrap_or(ctx - prompt.ids.len()),
    };
    let (sampling, seed_given) = sampling(o, max_tokens, m.model.config.vocab_size)?;
    let logprobs = if opt_bool(o, "logprobs")?.unwrap_or(false) {
        let n = opt_count(o, "top_logprobs")?.unwrap_or(0);
        if n > PROMPT_TOP {
            return Err(ApiError::bad(
                "top_logprobs",
                format!("'top_logprobs' must be at most {PROMPT_TOP}, got {n}"),
            ));
        }
        Some(n)
    } else {
        None
    };
    let (stream, include_usage) = stream_fields(o)?;
    let (n, best_of) = choice_counts(o, stream)?;
    Ok(Job {
        endpoint: Endpoint::Chat,
        prompts: vec![prompt],
        sampling,
        seed_given,
        stop: stop_strings(o)?,
        echo: false,
        logprobs,
        stream,
        include_usage,
        ignore_eos: opt_bool(o, "ignore_eos")?.unwrap_or(false),
        n,
        best_of,
    })
}

/// A `/tokenize` body: the text, and whether special-token strings in it
/// map to their ids (`add_special_tokens`, default true).
pub fn parse_tokenize(body: &Value) -> ApiResult<(&str, bool)> {
    let o = obj(body)?;
    let text = o
        .get("prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("prompt", "'prompt' must be a string"))?;
    Ok((text, opt_bool(o, "add_special_tokens")?.unwrap_or(true)))
}

/// A `/detokenize` body: its token ids.
pub fn parse_detokenize(body: &Value, vocab: usize) -> ApiResult<Vec<u32>> {
    let toks = present(obj(body)?, "tokens")
        .ok_or_else(|| ApiError::bad("tokens", "'tokens' is required"))?;
    token_ids(toks, "tokens", vocab)
}

pub fn parse(m: &LoadedModel, endpoint: Endpoint, body: &Value) -> ApiResult<Job> {
    match endpoint {
        Endpoint::Completions => parse_completion(m, body),
        Endpoint::Chat => parse_chat(m, body),
    }
}

impl Job {
    /// The sequences drawn, in order: sequence s is draw j = s % best_of of
    /// prompt i = s / best_of, with its seed. Draw j is keyed by (seed + j,
    /// "i", step), the key the CLI gives a prompt with id "i" and that seed
    /// (DETERMINISM.md §7), so each draw is reproducible alone.
    pub fn sequences(&self) -> impl Iterator<Item = (usize, &PromptIn, u64)> + '_ {
        self.prompts.iter().enumerate().flat_map(move |(i, p)| {
            (0..self.best_of as u64).map(move |j| (i, p, self.sampling.seed.wrapping_add(j)))
        })
    }

    /// The engine's sequences, one per draw of `sequences`.
    pub fn specs(&self, m: &Arc<LoadedModel>) -> Vec<SeqSpec> {
        self.sequences()
            .enumerate()
            .map(|(s, (i, p, seed))| {
                let stop: Option<StopRule> = if self.stop.is_empty() {
                    None
                } else {
                    Some(Box::new(crate::tokenizer::stop::stop_rule(
                        m.tokenizer.clone(),
                        self.stop.clone(),
                    )))
                };
                SeqSpec {
                    name: format!("choice {s}"),
                    prompt: p.ids.clone(),
                    sampling: SamplingParams {
                        seed,
                        ..self.sampling.clone()
                    },
                    key: sequence_key(&i.to_string()),
                    eos: if self.ignore_eos {
                        Vec::new()
                    } else {
                        m.tokenizer.eos.clone()
                    },
                    prompt_logprobs: if self.echo {
                        self.logprobs.map(PromptLogprobs::echo)
                    } else {
                        None
                    },
                    top_logprobs: self.logprobs.unwrap_or(0),
                    stop,
                    keep_logits: false,
                }
            })
            .collect()
    }
}

/// The HTTP response of an API error (429 and 503 say when to retry).
pub(crate) fn error_response(e: &ApiError) -> axum::response::Response {
    let status = axum::http::StatusCode::from_u16(e.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = axum::response::IntoResponse::into_response((status, axum::Json(e.body())));
    if e.status == 429 || e.status == 503 {
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    r
}
