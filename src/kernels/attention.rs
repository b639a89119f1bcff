//! Causal grouped-query attention over a KV cache (docs/DETERMINISM.md §6).
//!
//! Query row t sits at position pos0 + t and attends to cache positions
//! 0..=pos0+t. Scores use the canonical dot; softmax is max (exact), our exp,
//! a sum in position order, a division; the output accumulates p_i * v_i with
//! fma in position order. Nothing depends on how many rows arrived together.

use super::dot::dot;
use super::multiversion;
use crate::numerics::exp_f32;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

multiversion! {
    pub fn head_kernel(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        kv_row: usize,
        kv_off: usize,
        n_pos: usize,
        scale: f32,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let hd = q.len();
        scores.clear();
        for i in 0..n_pos {
            let kr = &k[i * kv_row + kv_off..i * kv_row + kv_off + hd];
            scores.push(dot(q, kr) * scale);
        }
        let mut max = f32::NEG_INFINITY;
        for &s in scores.iter() {
            if s > max {
                max = s;
            }
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = exp_f32(*s - max);
            sum += *s;
        }
        out.fill(0.0);
        for i in 0..n_pos {
            let p = scores[i] / sum;
            let vr = &v[i * kv_row + kv_off..i * kv_row + kv_off + hd];
            for d in 0..hd {
                out[d] = p.mul_add(vr[d], out[d]);
            }
        }
    }
}

/// q: [t][n_heads*hd]; k, v: cache [capacity][n_kv_heads*hd]; out like q.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], pos0: usize, shape: AttnShape, out: &mut [f32]) {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    let group = n_heads / n_kv_heads;
    let kv_row = n_kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd)
        .zip(q.par_chunks(hd))
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, (o, qh))| {
            let (t, h) = (i / n_heads, i % n_heads);
            let n_pos = pos0 + t + 1;
            head_kernel(qh, k, v, kv_row, (h / group) * hd, n_pos, scale, scores, o);
        });
}
