//! Subcommands of the binary (the library knows nothing of them).

pub mod baseline;
pub mod bench;
pub mod eval;
pub mod export;
pub mod multirun;
pub mod perplexity;
pub mod report;
pub mod serve;
pub mod trace;

use anyhow::Result;
use infer_eval::{fetch, loader};
use std::sync::OnceLock;

/// The error and its causes on one line, leaving out a cause whose text the
/// message before it already holds (library errors quote their source).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub(crate) fn log(msg: &str) {
    eprintln!("infer-eval: {msg}");
}

pub(crate) fn load(name: &str) -> Result<loader::LoadedModel> {
    let path = fetch::resolve(name, &mut |s| log(s))?;
    let opts = LOAD_OPTIONS.get().cloned().unwrap_or_default();
    let loaded = loader::load_with(&path, &infer_eval::device::open()?, &opts)?;
    if !loaded.info.ignored_tensors.is_empty() {
        log(&format!(
            "{}: ignoring {} tensor(s) this architecture does not use (--allow-extra-tensors): {}",
            path.display(),
            loaded.info.ignored_tensors.len(),
            loaded.info.ignored_tensors.join(", ")
        ));
    }
    Ok(loaded)
}

/// Warn when more threads than cores were asked for (allowed: slower, same bits).
pub(crate) fn warn_oversubscribed(threads: usize) {
    let cores = infer_eval::generation::cores();
    if threads > cores {
        log(&format!(
            "{threads} threads on {cores} cores: threads will wait for cores (slower; the bits do not change)"
        ));
    }
}

/// How the CLI loads models (`--allow-extra-tensors`).
pub(crate) static LOAD_OPTIONS: OnceLock<infer_eval::model::LoadOptions> = OnceLock::new();
