//! Causal grouped-query attention over a KV cache (docs/DETERMINISM.md §6).
//!
//! Query row t sits at position pos0 + t and attends to cache positions
//! 0..=pos0+t. Scores use the canonical dot; softmax is max (exact), our exp,
//! a sum in position order, a division; the output accumulates p_i * v_i with
//! fma in position order. Nothing depends on how many rows arrived together.

use super::dot::dot;
use super::multiversion;
use super::pool;
use super::Isa;
use crate::numerics::exp_f32;

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
pub fn attention(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos0: usize,
    shape: AttnShape,
    out: &mut [f32],
) {
    isa.assert_available();
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    let group = n_heads / n_kv_heads;
    let kv_row = n_kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    pool::for_each_chunk_mut(out, hd, |i, o| {
        let (t, h) = (i / n_heads, i % n_heads);
        let n_pos = pos0 + t + 1;
        let qh = &q[i * hd..(i + 1) * hd];
        let mut scores = Vec::with_capacity(n_pos);
        let kv_off = (h / group) * hd;
        #[cfg(target_arch = "x86_64")]
        if isa != Isa::Scalar {
            // SAFETY: checked above: the CPU has avx2, fma and f16c.
            return unsafe {
                super::avx2::attention_head(qh, k, v, kv_row, kv_off, n_pos, scale, &mut scores, o)
            };
        }
        head_kernel(Isa::Scalar, qh, k, v, kv_row, kv_off, n_pos, scale, &mut scores, o);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ISA gives the same bits, for head sizes with and without a tail
    /// past the last full 8 or 32 lanes, several query rows and GQA.
    #[test]
    fn every_isa_gives_the_same_bits() {
        let mut s = 5u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        };
        for hd in [64, 40, 13] {
            let shape = AttnShape {
                n_heads: 6,
                n_kv_heads: 2,
                head_dim: hd,
            };
            let (pos0, rows, cap) = (9, 3, 16);
            let q: Vec<f32> = (0..rows * 6 * hd).map(|_| r()).collect();
            let k: Vec<f32> = (0..cap * 2 * hd).map(|_| r()).collect();
            let v: Vec<f32> = (0..cap * 2 * hd).map(|_| r()).collect();
            let mut want = vec![0f32; q.len()];
            attention(Isa::Scalar, &q, &k, &v, pos0, shape, &mut want);
            for isa in Isa::available() {
                let mut got = vec![0f32; q.len()];
                attention(isa, &q, &k, &v, pos0, shape, &mut got);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "head_dim {hd} on {}",
                    isa.name()
                );
            }
        }
        eprintln!(
            "attention: compared {} with scalar",
            Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
        );
    }
}
