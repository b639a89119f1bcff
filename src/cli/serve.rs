//! `infer-eval serve` and `infer-eval verify --served`.

use anyhow::Result;
use infer_eval::engine::core::EngineOptions;
use infer_eval::serve::{self, replay};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model: a manifest name (llama), a .gguf file, or a Hugging Face model folder.
    #[arg(long, default_value = "llama")]
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the startup line names it).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Worker threads, default the number of cores (answers do not depend on it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub threads: Option<u64>,
    /// Sequences per forward step at most (answers do not depend on it).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_batch: u64,
    /// Sequences that may wait for a place in the batch; beyond, requests get 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: u64,
    /// Prompt tokens per forward step, over all sequences (answers do not depend on it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub prefill_chunk: u64,
    /// MiB of KV the prompt (prefix) cache may keep; 0 turns it off (answers
    /// do not depend on it).
    #[arg(long, default_value_t = 512)]
    pub prompt_cache_mib: u64,
    /// Append every answered request and its digests to this JSONL file
    /// (`infer-eval verify --served FILE` re-runs them).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// An API key clients must send as `Authorization: Bearer KEY`
    /// (repeatable). With any key set, every route but /health needs one.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (blank lines and lines starting with
    /// # are skipped).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Serve /metrics without a key even when keys are set (a scraper on a
    /// trusted network).
    #[arg(long)]
    pub metrics_public: bool,
    /// Seconds a client has to send a request's headers (then the
    /// connection is closed); also how long an idle connection is kept.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_s: u64,
    /// Seconds a client has to send a request's whole body (else 408).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_s: u64,
    /// Largest request body, in MiB (larger: 413).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_body_mib: u64,
    /// Connections open at once; more wait until one closes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let auth = auth(&a)?;
    let loopback = a.host == "localhost"
        || a.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !auth.enabled() && !loopback {
        eprintln!(
            "infer-eval serve: warning: listening on {} without an API key: anyone who can reach it can use the server (--api-key, --api-key-file or INFER_EVAL_API_KEY)",
            a.host
        );
    }
    let threads = infer_eval::generation::threads_or_cores(a.threads.map(|t| t as usize));
    super::warn_oversubscribed(threads);
    let loaded = super::load(&a.model)?;
    let chunk = a.prefill_chunk as usize;
    let opts = serve::ServeOptions {
        host: a.host,
        port: a.port,
        threads,
        model_id: a.model,
        engine: EngineOptions {
            max_batch: a.max_batch as usize,
            prefill_chunk: chunk,
            step_prefill_tokens: chunk,
            prefix_cache_bytes: a.prompt_cache_mib << 20,
            ..EngineOptions::default()
        },
        max_queue: a.max_queue as usize,
        log: a.log,
        auth,
        limits: serve::transport::Limits {
            header_timeout: std::time::Duration::from_secs(a.header_timeout_s),
            body_timeout: std::time::Duration::from_secs(a.body_timeout_s),
            max_body_bytes: (a.max_body_mib as usize) << 20,
            max_connections: a.max_connections as usize,
        },
    };
    serve::run(loaded, opts, |line| eprintln!("infer-eval serve: {line}"))?;
    eprintln!("infer-eval serve: stopped");
    Ok(())
}

/// The API keys of `--api-key`, `INFER_EVAL_API_KEY` and `--api-key-file`.
fn auth(a: &ServeArgs) -> Result<serve::auth::Auth> {
    let mut keys: Vec<(String, &str)> = a
        .api_keys
        .iter()
        .map(|k| (k.clone(), "--api-key"))
        .collect();
    if let Some(k) = std::env::var_os("INFER_EVAL_API_KEY") {
        let k = k.into_string().map_err(|_| {
            infer_eval::error::Error::Input(
                "INFER_EVAL_API_KEY: an API key is not valid UTF-8".into(),
            )
        })?;
        keys.push((k, "INFER_EVAL_API_KEY"));
    }
    Ok(serve::auth::Auth::new(
        &keys,
        a.api_key_file.as_deref(),
        a.metrics_public,
    )?)
}

pub fn verify_served(file: &Path, model: Option<&str>, threads: Option<usize>) -> Result<i32> {
    let (name, sha) = replay::logged_model(file)?;
    let name = model.map(str::to_string).unwrap_or(name);
    let loaded = Arc::new(super::load(&name)?);
    if loaded.info.sha256 != sha {
        println!(
            "DIFFERENT: model {name}: the log's sha256 is {sha}, this file's is {}",
            loaded.info.sha256
        );
        return Ok(infer_eval::error::exit::MISMATCH);
    }
    let threads = infer_eval::generation::threads_or_cores(threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let verdict = pool.install(|| {
        replay::verify(loaded.clone(), file, |n| {
            if n % 50 == 0 {
                eprintln!("infer-eval: verified {n} requests");
            }
        })
    })?;
    match verdict {
        replay::Verdict::Match {
            requests,
            choices,
            skipped,
        } => {
            if let Some(line) = skipped {
                eprintln!(
                    "infer-eval: {} line {line}: an interrupted last line (the server was stopped while writing it): skipped",
                    file.display()
                );
            }
            println!("MATCH: {requests} requests, {choices} choices re-run alone give the served digests");
            Ok(0)
        }
        replay::Verdict::Differs {
            line,
            choice,
            what,
            logged,
            now,
        } => {
            println!(
                "DIFFERENT: {} line {line}, choice {choice}: {what}: served {logged}, re-run {now}",
                file.display()
            );
            Ok(infer_eval::error::exit::MISMATCH)
        }
    }
}
