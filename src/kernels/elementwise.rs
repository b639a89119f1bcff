//! Element-wise kernels: one correctly rounded result per element, each
//! with the operations of docs/DETERMINISM.md §4b and §6.

use super::multiversion;
use crate::numerics::{gelu_tanh_f32, silu_f32, softcap_f32};

multiversion! {
    /// SwiGLU: out = silu(gate) * up.
    pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for i in 0..out.len() {
            out[i] = silu_f32(gate[i]) * up[i];
        }
    }
}

multiversion! {
    /// GeGLU with the tanh GELU (Gemma): out = gelu_tanh(gate) * up.
    pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for i in 0..out.len() {
            out[i] = gelu_tanh_f32(gate[i]) * up[i];
        }
    }
}

multiversion! {
    /// out = tanh(x * (1 / cap)) * cap (Gemma 2's soft-capping).
    pub fn softcap(x: &[f32], cap: f32, out: &mut [f32]) {
        let inv = 1.0 / cap;
        for i in 0..out.len() {
            out[i] = softcap_f32(x[i], inv, cap);
        }
    }
}

/// The residual connection: out = a + b, one IEEE addition per element.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// out = x * s, one multiplication per element (embedding and Q scales).
pub fn scale(x: &[f32], s: f32, out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = v * s;
    }
}

/// A bias on every row: out[r][c] = x[r][c] + b[c], one addition each.
pub fn add_bias(x: &[f32], b: &[f32], out: &mut [f32]) {
    for (orow, xrow) in out.chunks_exact_mut(b.len()).zip(x.chunks_exact(b.len())) {
        for ((o, v), c) in orow.iter_mut().zip(xrow).zip(b) {
            *o = v + c;
        }
    }
}
