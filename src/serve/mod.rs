//! `infer-eval serve`: an OpenAI-compatible HTTP server (axum on tokio) on
//! top of the engine's scheduler. It owns no arithmetic: requests become
//! `SeqSpec`s for the engine thread, events become JSON and SSE chunks.
//! What a choice computes does not depend on what else is running: see
//! engine::core for why.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod replay;
pub mod respond;
pub mod scheduler;
pub mod transport;

use crate::engine::core::EngineOptions;
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use api::{error_response, ApiError, Endpoint, Job};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics::Metrics;
use respond::ChoiceState;
use scheduler::Scheduler;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub threads: usize,
    /// The name `/v1/models` lists and responses carry.
    pub model_id: String,
    pub engine: EngineOptions,
    /// Sequences that may wait for a place in the batch; more get 429.
    pub max_queue: usize,
    /// Append each answered request and its digests to this JSONL file.
    pub log: Option<PathBuf>,
    /// API keys (none: no authentication).
    pub auth: auth::Auth,
    /// Timeouts and sizes a client may not exceed.
    pub limits: transport::Limits,
}

/// What determines the bits: the determinism version, the model's and the
/// tokenizer's sha256. Constant for the process.
pub fn fingerprint(loaded: &LoadedModel) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "infer-eval determinism {}\nmodel {}\ntokenizer {}\n",
        crate::DETERMINISM_VERSION,
        loaded.info.sha256,
        loaded.tokenizer.sha256
    ));
    format!(
        "fp_ie{}_{}",
        crate::DETERMINISM_VERSION,
        &hex::encode(h.finalize())[..16]
    )
}

struct AppState {
    loaded: Arc<LoadedModel>,
    sched: Scheduler,
    metrics: Arc<Metrics>,
    fingerprint: String,
    model_id: String,
    started: u64,
    /// Sequences accepted and not yet answered, and how many may be.
    outstanding: AtomicUsize,
    limit: usize,
    draining: AtomicBool,
    log: Option<Mutex<std::fs::File>>,
    counter: AtomicU64,
    auth: auth::Auth,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request's places in the queue, given back when the request ends or
/// is dropped (a whole response sent, a stream finished or cut off).
struct Places {
    s: Arc<AppState>,
    n: usize,
}

impl Drop for Places {
    fn drop(&mut self) {
        self.s.outstanding.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// Run the server until SIGTERM or Ctrl-C; then stop admitting, finish what
/// runs, and return.
pub fn run(loaded: LoadedModel, opts: ServeOptions, on_ready: impl FnOnce(String)) -> Result<()> {
    let loaded = Arc::new(loaded);
    let metrics = Arc::new(Metrics::default());
    let (sched, engine_thread) = Scheduler::start(
        loaded.clone(),
        opts.engine.clone(),
        opts.threads,
        metrics.clone(),
    )?;
    let log = match &opts.log {
        None => None,
        Some(p) => {
            let (f, cut) = replay::open_log(p)?;
            if cut > 0 {
                eprintln!(
                    "infer-eval serve: {}: removed an interrupted last line ({cut} bytes) left by a server stopped while writing it",
                    p.display()
                );
            }
            Some(Mutex::new(f))
        }
    };
    let state = Arc::new(AppState {
        fingerprint: fingerprint(&loaded),
        loaded,
        sched: sched.clone(),
        metrics,
        model_id: opts.model_id.clone(),
        started: now_s(),
        outstanding: AtomicUsize::new(0),
        limit: opts.engine.max_batch + opts.max_queue,
        draining: AtomicBool::new(false),
        log,
        counter: AtomicU64::new(0),
        auth: opts.auth.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Input(format!("cannot start the HTTP runtime: {e}")))?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .map_err(|e| Error::Input(format!("cannot listen on {}:{}: {e}", opts.host, opts.port)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Input(format!("listening socket: {e}")))?;
        on_ready(format!(
            "listening on http://{addr} model {} ({}) system_fingerprint {} threads {} max-batch {} max-queue {}",
            state.model_id,
            state.loaded.info.path.display(),
            state.fingerprint,
            opts.threads,
            opts.engine.max_batch,
            opts.max_queue
        ));
        let app = router(state.clone(), opts.limits);
        let st = state.clone();
        transport::serve(listener, app, opts.limits, shutdown_signal(), move || {
            st.draining.store(true, Ordering::SeqCst);
            eprintln!(
                "infer-eval serve: stopping: no new requests; finishing {} running",
                st.outstanding.load(Ordering::Relaxed)
            );
        })
        .await;
        Ok(())
    });
    sched.stop();
    let _ = engine_thread.join();
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn router(state: Arc<AppState>, limits: transport::Limits) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/tokenizer_info", get(tokenizer_info))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            error_response(&ApiError::new(404, "not_found_error", "no such endpoint"))
        })
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            transport::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ))
        .with_state(state)
}

/// 401 (OpenAI's `invalid_api_key`) unless the request may pass `s.auth`.
async fn require_key(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let message = match s.auth.check(req.uri().path(), given) {
        Ok(()) => return next.run(req).await,
        Err(auth::Refusal::Missing) => {
            "no API key given: send the header 'Authorization: Bearer <key>'"
        }
        Err(auth::Refusal::Invalid) => "the API key given is not valid",
    };
    let mut r = error_response(&ApiError {
        status: 401,
        message: message.into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("invalid_api_key"),
    });
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    // The route the router matched, never the raw path: a client cannot
    // grow the metrics with paths of its own (the fallback counts as other).
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("other", |m| m.as_str());
    s.metrics.count_request(route, 401);
    r
}

async fn completions(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(s, Endpoint::Completions, body).await
}

async fn chat(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(s, Endpoint::Chat, body).await
}

fn parse_body(body: &[u8]) -> std::result::Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("the request body is not valid JSON: {e}")))
}

async fn generate(s: Arc<AppState>, endpoint: Endpoint, body: Bytes) -> Response {
    let path = endpoint.path();
    let r = generate_inner(&s, endpoint, body).await;
    let resp = r.unwrap_or_else(|e| error_response(&e));
    s.metrics.count_request(path, resp.status().as_u16());
    resp
}

async fn generate_inner(
    s: &Arc<AppState>,
    endpoint: Endpoint,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            503,
            "server_shutting_down",
            "the server is shutting down",
        ));
    }
    let t0 = Instant::now();
    let request = parse_body(&body)?;
    let loaded = s.loaded.clone();
    let job = catch_unwind(AssertUnwindSafe(|| api::parse(&loaded, endpoint, &request))).map_err(
        |_| {
            ApiError::new(
                500,
                "internal_error",
                "internal error while reading the request",
            )
        },
    )??;
    let k = job.prompts.len() * job.best_of;
    // A request larger than the whole limit still runs when nothing else does.
    let before = s.outstanding.fetch_add(k, Ordering::SeqCst);
    if before > 0 && before + k > s.limit {
        s.outstanding.fetch_sub(k, Ordering::SeqCst);
        s.metrics.rejected_full.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            429,
            "rate_limit_error",
            format!(
                "the queue is full ({} sequences running or waiting); retry later",
                s.limit
            ),
        ));
    }
    let places = Places { s: s.clone(), n: k };
    let prompt_tokens: usize = job.prompts.iter().map(|p| p.ids.len()).sum();
    s.metrics
        .prompt_tokens
        .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    if !s.sched.submit(job.specs(&s.loaded), tx) {
        return Err(ApiError::new(
            503,
            "server_shutting_down",
            "the engine has stopped",
        ));
    }
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let id = match endpoint {
        Endpoint::Completions => format!("cmpl-{}-{n}", s.started),
        Endpoint::Chat => format!("chatcmpl-{}-{n}", s.started),
    };
    let states: Vec<ChoiceState> = job
        .sequences()
        .enumerate()
        .map(|(s, (_, p, seed))| ChoiceState::new(s, p.clone(), seed))
        .collect();
    let run = Running {
        s: s.clone(),
        job,
        request,
        id,
        created: now_s(),
        states,
        rx,
        t0,
        last: Vec::new(),
        _places: places,
    };
    if run.job.stream {
        Ok(stream(run).into_response())
    } else {
        whole(run).await
    }
}

/// A request in flight: its events arrive on `rx`.
struct Running {
    s: Arc<AppState>,
    job: Job,
    request: Value,
    id: String,
    created: u64,
    states: Vec<ChoiceState>,
    rx: mpsc::UnboundedReceiver<(usize, crate::engine::core::Event)>,
    t0: Instant,
    last: Vec<Option<Instant>>,
    /// Held while the request lives.
    _places: Places,
}

impl Running {
    /// Wait for the next event; updates the choice and the latency metrics.
    async fn next(&mut self) -> Option<usize> {
        let (i, ev) = self.rx.recv().await?;
        if matches!(ev, crate::engine::core::Event::Token(_)) {
            self.last.resize(self.states.len(), None);
            let now = Instant::now();
            match self.last[i] {
                None => self.s.metrics.ttft.observe((now - self.t0).as_secs_f64()),
                Some(t) => self.s.metrics.inter_token.observe((now - t).as_secs_f64()),
            }
            self.last[i] = Some(now);
        }
        self.states.get_mut(i)?.take(ev);
        Some(i)
    }

    fn envelope(&self, chunk: bool) -> serde_json::Map<String, Value> {
        respond::envelope(
            &self.job,
            &self.id,
            self.created,
            &self.s.model_id,
            &self.s.fingerprint,
            chunk,
        )
    }

    fn all_done(&self) -> bool {
        self.states.iter().all(ChoiceState::done)
    }

    fn failure(&self) -> Option<ApiError> {
        self.states
            .iter()
            .find_map(|c| c.failed.as_ref())
            .map(|m| ApiError::new(500, "internal_error", format!("choice failed: {m}")))
    }

    fn write_log(&self) {
        let Some(log) = &self.s.log else { return };
        let t = &self.s.loaded.tokenizer;
        let choices: Vec<Value> = self
            .states
            .iter()
            .map(|c| {
                let f = c.finished.as_ref();
                json!({
                    "index": c.index,
                    "prompt_digest": crate::engine::ids_digest(&c.prompt.ids),
                    "digest": f.map(|f| f.digest.clone()),
                    "logits_digest": f.map(|f| f.logits_digest.clone()),
                    "finish_reason": c.finish_reason(),
                    "completion_tokens": c.tokens.len(),
                    "text": c.text(t, &self.job.stop).0,
                })
            })
            .collect();
        let line = json!({
            "time": now_s(),
            "id": self.id,
            "endpoint": self.job.endpoint.path(),
            "model": self.s.model_id,
            "model_sha256": self.s.loaded.info.sha256,
            "tokenizer_sha256": t.sha256,
            "determinism_version": crate::DETERMINISM_VERSION,
            "system_fingerprint": self.s.fingerprint,
            "request": self.request,
            "choices": choices,
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        // One write of the whole line to a file opened for appending.
        let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&bytes) {
            eprintln!("infer-eval serve: cannot append to the request log: {e}");
        }
    }
}

async fn whole(mut run: Running) -> std::result::Result<Response, ApiError> {
    while !run.all_done() {
        if run.next().await.is_none() {
            return Err(ApiError::new(
                503,
                "server_shutting_down",
                "the engine stopped",
            ));
        }
    }
    if let Some(e) = run.failure() {
        return Err(e);
    }
    let body = catch_unwind(AssertUnwindSafe(|| {
        let t = &run.s.loaded.tokenizer;
        let mut m = run.envelope(false);
        m.insert(
            "choices".into(),
            Value::Array(
                returned(&run.job, &run.states)
                    .into_iter()
                    .map(|(index, c)| {
                        let mut v = c.choice(t, &run.job);
                        v["index"] = index.into();
                        v
                    })
                    .collect(),
            ),
        );
        m.insert("usage".into(), respond::usage(&run.job, &run.states));
        Value::Object(m)
    }))
    .map_err(|_| {
        ApiError::new(
            500,
            "internal_error",
            "internal error while writing the response",
        )
    })?;
    run.write_log();
    Ok(axum::Json(body).into_response())
}

/// The choices a whole response returns, with their indexes: of each
/// prompt's best_of draws the n of highest cumulative log-probability
/// (ties: the earlier draw), in that order; index = prompt * n + rank.
fn returned<'a>(job: &Job, states: &'a [ChoiceState]) -> Vec<(usize, &'a ChoiceState)> {
    let mut out = Vec::with_capacity(job.prompts.len() * job.n);
    for (i, draws) in states.chunks(job.best_of).enumerate() {
        let mut ranked: Vec<&ChoiceState> = draws.iter().collect();
        if job.best_of > job.n {
            // A stable sort keeps the earlier draw first on a tie.
            ranked.sort_by(|a, b| b.cumulative_logprob().total_cmp(&a.cumulative_logprob()));
        }
        out.extend(
            ranked
                .into_iter()
                .take(job.n)
                .enumerate()
                .map(|(r, c)| (i * job.n + r, c)),
        );
    }
    out
}

/// Where an SSE stream is.
enum Phase {
    /// A chunk per event until every choice is done.
    Tokens,
    /// The request log line, and the usage chunk if asked.
    Usage,
    /// `[DONE]` (also after an error chunk).
    Done,
    /// Nothing more.
    End,
}

/// The SSE stream: chunks as events arrive, a usage chunk if asked, [DONE].
/// The request's queue places go back when the stream ends or the client
/// leaves (`Running` holds them).
fn stream(run: Running) -> impl IntoResponse {
    struct St {
        run: Running,
        first: Vec<bool>,
        phase: Phase,
    }
    let first = vec![true; run.states.len()];
    let st = St {
        run,
        first,
        phase: Phase::Tokens,
    };
    let error = |message: String, kind: &str| json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    let events = futures_util::stream::unfold(st, move |mut st| async move {
        let data = loop {
            match st.phase {
                Phase::Tokens => {
                    if st.run.all_done() {
                        st.phase = Phase::Usage;
                        continue;
                    }
                    let Some(i) = st.run.next().await else {
                        st.phase = Phase::Done;
                        break error("the engine stopped".into(), "server_shutting_down");
                    };
                    if let Some(m) = st.run.states[i].failed.clone() {
                        st.phase = Phase::Done;
                        break error(format!("choice {i} failed: {m}"), "internal_error");
                    }
                    let r = &mut st.run;
                    let t = &r.s.loaded.tokenizer;
                    let Some(c) = r.states[i].stream_delta(t, &r.job, st.first[i]) else {
                        continue;
                    };
                    st.first[i] = false;
                    let mut m = r.envelope(true);
                    m.insert("choices".into(), json!([c]));
                    if r.job.include_usage {
                        m.insert("usage".into(), Value::Null);
                    }
                    break Value::Object(m);
                }
                Phase::Usage => {
                    st.phase = Phase::Done;
                    st.run.write_log();
                    if st.run.job.include_usage {
                        let r = &st.run;
                        let mut m = r.envelope(true);
                        m.insert("choices".into(), json!([]));
                        m.insert("usage".into(), respond::usage(&r.job, &r.states));
                        break Value::Object(m);
                    }
                }
                Phase::Done => {
                    st.phase = Phase::End;
                    return Some((
                        Ok::<_, std::convert::Infallible>(SseEvent::default().data("[DONE]")),
                        st,
                    ));
                }
                Phase::End => return None,
            }
        };
        Some((Ok(SseEvent::default().data(data.to_string())), st))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.count_request("/v1/models", 200);
    axum::Json(json!({"object": "list", "data": [{
        "id": s.model_id, "object": "model", "created": s.started, "owned_by": "infer-eval",
        "max_model_len": s.loaded.model.config.max_position_embeddings,
        "system_fingerprint": s.fingerprint,
    }]}))
    .into_response()
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        return error_response(&ApiError::new(
            503,
            "server_shutting_down",
            "the server is shutting down",
        ));
    }
    axum::Json(json!({"status": "ok", "system_fingerprint": s.fingerprint})).into_response()
}

async fn tokenizer_info(State(s): State<Arc<AppState>>) -> Response {
    let t = &s.loaded.tokenizer;
    let text = |id: Option<u32>| id.and_then(|i| t.token_text(i));
    axum::Json(json!({
        "eos_token": text(t.eos.first().copied()),
        "bos_token": text(t.bos),
        "pad_token": Value::Null,
        "chat_template": t.chat_template,
        "add_bos_token": t.add_bos,
        "model_max_length": s.loaded.model.config.max_position_embeddings,
        "vocab_size": t.vocab_size,
        "tokenizer_class": t.kind(),
    }))
    .into_response()
}

async fn tokenize(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = (|| {
        let v = parse_body(&body)?;
        let (text, special) = api::parse_tokenize(&v)?;
        // Special-token strings (the EOS a client reads from /tokenizer_info) map to their ids.
        let ids = s
            .loaded
            .tokenizer
            .encode_with(text, special, true)
            .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
        let ctx = s.loaded.model.config.max_position_embeddings;
        Ok(json!({"tokens": ids, "count": ids.len(), "max_model_len": ctx}))
    })();
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn detokenize(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = (|| {
        let v = parse_body(&body)?;
        let ids = api::parse_detokenize(&v, s.loaded.model.config.vocab_size)?;
        let text = s
            .loaded
            .tokenizer
            .decode(&ids)
            .map_err(|e| ApiError::bad("tokens", e.to_string()))?;
        Ok(json!({"prompt": text}))
    })();
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
