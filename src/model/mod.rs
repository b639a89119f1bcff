//! The model: typed config, weights read from a source, shared blocks and
//! the forward pass. It knows nothing of tokenizers, sampling or evaluation
//! (`crate::loader` puts a model and its tokenizer together).

pub mod arch;
pub mod attention;
pub mod layers;
pub mod names;
pub mod transformer;
pub mod weights;

use crate::error::{Error, Result};

/// Receives the named intermediates of a forward pass, as llama.cpp's
/// `cb(cur, name, il)`: the layer (None: before the first block or after the
/// last), the op name, and the tensor ([rows, width], rows the new tokens).
pub type Tap<'a> = dyn FnMut(Option<usize>, &'static str, &candle_core::Tensor) -> Result<()> + 'a;

/// The intermediates a traced forward pass names, in the order they are
/// computed within a layer (`trace --compare` reports the first that differs).
pub const TAP_ORDER: [&str; 20] = [
    "inp_embd",
    "attn_norm",
    "Qcur",
    "Kcur",
    "Vcur",
    "Qcur_normed",
    "Kcur_normed",
    "Qcur_rope",
    "Kcur_rope",
    "kqv_out",
    "attn_out",
    "attn_post_norm",
    "ffn_inp",
    "ffn_norm",
    "ffn_act",
    "ffn_out",
    "ffn_post_norm",
    "l_out",
    "result_norm",
    "result_output",
];

/// How strictly a checkpoint is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Load a file that holds tensors the forward pass does not use (they
    /// are listed in the model info) instead of refusing it.
    pub allow_extra_tensors: bool,
}

/// Bytes of memory we may use: $INFER_EVAL_MEMORY_LIMIT, else the kernel's
/// MemAvailable; None if unknown. A malformed limit is an error, never
/// silently replaced by MemAvailable. (Host memory: on a GPU the weights and
/// caches live in device memory, which the CUDA driver checks itself.)
pub fn memory_limit() -> Result<Option<u64>> {
    Ok(match env_memory_limit()? {
        Some(l) => Some(l),
        None => available_memory(),
    })
}

/// $INFER_EVAL_MEMORY_LIMIT, parsed: bytes, or a number with a K, M, G or T
/// suffix (also KB/KiB and so on: powers of 1024); None if unset.
pub fn env_memory_limit() -> Result<Option<u64>> {
    match std::env::var("INFER_EVAL_MEMORY_LIMIT") {
        Ok(v) => parse_memory_size(&v)
            .map(Some)
            .ok_or_else(|| Error::Usage(format!(
                "INFER_EVAL_MEMORY_LIMIT '{v}': expected bytes or a number with K, M, G or T (e.g. 8G)"
            ))),
        Err(_) => Ok(None),
    }
}

/// "8G", "512 MiB", "1.5GB", "1048576" -> bytes (powers of 1024).
pub fn parse_memory_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = (v[..split].trim(), v[split..].trim());
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
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
    if let Some(limit) = memory_limit()? {
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

#[cfg(test)]
mod tests {
    #[test]
    fn memory_sizes() {
        use super::parse_memory_size as p;
        assert_eq!(p("1048576"), Some(1 << 20));
        assert_eq!(p("8G"), Some(8 << 30));
        assert_eq!(p("8GB"), Some(8 << 30));
        assert_eq!(p("8 GiB"), Some(8 << 30));
        assert_eq!(p("10k"), Some(10 << 10));
        assert_eq!(p("1.5M"), Some(3 << 19));
        for bad in ["", "G", "8X", "eight", "-1G", "8 G B"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
