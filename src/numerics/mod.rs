//! Deterministic math: our own transcendentals, built only from IEEE `+ - * /`,
//! `sqrt`, fused multiply-add and bit operations, so that they give the same
//! bits on every CPU, every SIMD width and on CUDA. See docs/DETERMINISM.md.

mod math;

pub use math::{
    attention_score, cos_sin_f64, exp_f32, exp_f64, gelu_tanh_f32, ln_f64, log_softmax_at, pow_f64,
    silu_f32, softcap_f32, tanh_f32,
};

/// Number of strided lanes of the canonical dot product (docs/DETERMINISM.md §2).
pub const LANES: usize = 32;
