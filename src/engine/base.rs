//! The engine's ground: how a sequence stops, digests of token ids and
//! logits, the finite-logits rule and the context rules every way in uses.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    Eos,
    Length,
    Context,
}

impl StopReason {
    /// As records write it.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::Context => "context",
        }
    }
}

/// A forward pass that produced a NaN or an infinity has diverged (or the
/// weights are broken): that is an error on every backend and format, never
/// a token picked from garbage. `pos` is the number of tokens it had seen.
pub(crate) fn check_finite(logits: &[f32], what: &str, pos: usize) -> Result<()> {
    // A branch-free pass first (it vectorises); the position only on failure.
    if logits.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{what}: the forward pass produced a non-finite logit ({} for token {i}) after {pos} tokens; the activations diverged or the model is broken",
            logits[i]
        )));
    }
    Ok(())
}

/// Feed the f32 bits of `v`, little-endian, to `h`, 16 KiB at a time: not a
/// call per value, and no copy of the whole vector (a step's logits are
/// 192 KiB on SmolLM2, 1 MiB on Gemma 3). The digest is the same either way.
pub(crate) fn hash_f32s(h: &mut Sha256, v: &[f32]) {
    let mut bytes = [0u8; 16384];
    for part in v.chunks(bytes.len() / 4) {
        for (b, x) in bytes.chunks_exact_mut(4).zip(part) {
            b.copy_from_slice(&x.to_bits().to_le_bytes());
        }
        h.update(&bytes[..part.len() * 4]);
    }
}

/// sha256 of token ids as little-endian u32.
pub fn ids_digest(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for i in ids {
        h.update(i.to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether a prompt of `n` tokens leaves a position to generate into, in a
/// context of `ctx` positions (every way in checks it with this).
pub fn prompt_fits(n: usize, ctx: usize) -> bool {
    n < ctx
}

/// Whether a log-likelihood request fits a context of `ctx` positions: the
/// model reads context plus continuation less the last token.
pub fn loglik_fits(context: usize, continuation: usize, ctx: usize) -> bool {
    context + continuation <= ctx + 1
}

/// sha256 over hex digests in order (the run digest).
pub fn combine_digests<'a>(digests: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d.as_bytes());
    }
    hex::encode(h.finalize())
}
