//! The model: typed config, weights read from a source, shared blocks and
//! the forward pass. It knows nothing of tokenizers, sampling or evaluation
//! (`crate::loader` puts a model and its tokenizer together).

pub mod config;
pub mod layers;
pub mod llama;
pub mod weights;

use crate::error::{Error, Result};

/// How strictly a checkpoint is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Load a file that holds tensors the forward pass does not use (they
    /// are listed in the model info) instead of refusing it.
    pub allow_extra_tensors: bool,
}

/// Bytes of memory we may use: $INFER_EVAL_MEMORY_LIMIT (bytes, or with a
/// K/M/G suffix), else the kernel's MemAvailable; None if unknown.
pub fn memory_limit() -> Option<u64> {
    if let Some(l) = env_memory_limit() {
        return Some(l);
    }
    available_memory()
}

/// $INFER_EVAL_MEMORY_LIMIT, parsed; None if unset or not a number.
pub fn env_memory_limit() -> Option<u64> {
    let v = std::env::var("INFER_EVAL_MEMORY_LIMIT").ok()?;
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .map(|n| n.saturating_mul(mult))
}

/// The kernel's MemAvailable now.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

pub(crate) fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Refuse `need` bytes more than the memory limit allows; `what` names the request.
pub fn check_memory(need: u64, what: impl FnOnce() -> String) -> Result<()> {
    if let Some(limit) = memory_limit() {
        if need > limit {
            return Err(Error::Resource(format!(
                "{}: needs about {:.2} GiB of memory but only {:.2} GiB are available (INFER_EVAL_MEMORY_LIMIT overrides the limit)",
                what(),
                gib(need),
                gib(limit)
            )));
        }
    }
    Ok(())
}
