//! Element-wise kernels.

use super::multiversion;
use crate::numerics::silu_f32;

multiversion! {
    /// SwiGLU: out = silu(gate) * up.
    pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for i in 0..out.len() {
            out[i] = silu_f32(gate[i]) * up[i];
        }
    }
}

/// The residual connection: out = a + b, one IEEE addition per element.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}
