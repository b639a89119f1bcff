//! Causal grouped-query attention over a KV cache (docs/DETERMINISM.md §6).
//!
//! Query row t sits at position pos0 + t and attends to cache positions
//! 0..=pos0+t (the last `window` of them with a sliding window). Scores use
//! the canonical dot, scaled and optionally soft-capped; softmax is max (exact), our exp,
//! a sum in position order, a division; the output accumulates p_i * v_i with
//! fma in position order. Nothing depends on how many rows arrived together.

use super::dot::dot;
use super::multiversion;
use super::pool;
use super::Isa;
use crate::numerics::{attention_score, exp_f32};

/// The attention of a layer: heads, and how scores are formed.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Scores are dot(q, k) * scale (1 / sqrt(head_dim), or 1 where Q was
    /// pre-scaled).
    pub scale: f32,
    /// tanh soft-capping of the scores: s = tanh(s * (1 / cap)) * cap.
    pub softcap: Option<f32>,
    /// Sliding window: a query at position p sees positions p - window + 1
    /// ..= p only.
    pub window: Option<usize>,
}

impl AttnShape {
    /// Full causal attention scaled by 1/sqrt(head_dim) (Llama).
    pub fn causal(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Self {
        AttnShape {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            softcap: None,
            window: None,
        }
    }

    /// The first position a query at `pos` attends to.
    pub fn first_position(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

multiversion! {
    /// One query head over cache positions first..n_pos.
    pub fn head_kernel(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        kv_row: usize,
        kv_off: usize,
        first: usize,
        n_pos: usize,
        scale: f32,
        softcap: Option<f32>,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let hd = q.len();
        scores.clear();
        for i in first..n_pos {
            let kr = &k[i * kv_row + kv_off..i * kv_row + kv_off + hd];
            scores.push(attention_score(dot(q, kr), scale, softcap));
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
        for (j, i) in (first..n_pos).enumerate() {
            let p = scores[j] / sum;
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
        scale,
        softcap,
        ..
    } = shape;
    let group = n_heads / n_kv_heads;
    let kv_row = n_kv_heads * hd;
    pool::for_each_chunk_mut(out, hd, |i, o| {
        let (t, h) = (i / n_heads, i % n_heads);
        let n_pos = pos0 + t + 1;
        let first = shape.first_position(pos0 + t);
        let qh = &q[i * hd..(i + 1) * hd];
        let mut scores = Vec::with_capacity(n_pos - first);
        let kv_off = (h / group) * hd;
        #[cfg(target_arch = "x86_64")]
        if isa != Isa::Scalar {
            // SAFETY: checked above: the CPU has avx2, fma and f16c.
            return unsafe {
                super::avx2::attention_head(
                    qh,
                    k,
                    v,
                    kv_row,
                    kv_off,
                    first,
                    n_pos,
                    scale,
                    softcap,
                    &mut scores,
                    o,
                )
            };
        }
        head_kernel(
            Isa::Scalar,
            qh,
            k,
            v,
            kv_row,
            kv_off,
            first,
            n_pos,
            scale,
            softcap,
            &mut scores,
            o,
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ISA gives the same bits, for head sizes with and without a tail
    /// past the last full 8 or 32 lanes, several query rows, GQA, and with a
    /// sliding window and soft-capping.
    #[test]
    fn every_isa_gives_the_same_bits() {
        let mut s = 5u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        };
        for hd in [64, 40, 13] {
            for (softcap, window) in [
                (None, None),
                (Some(2.5), None),
                (None, Some(4)),
                (Some(1.0), Some(1)),
            ] {
                let shape = AttnShape {
                    softcap,
                    window,
                    ..AttnShape::causal(6, 2, hd)
                };
                let (pos0, rows, cap) = (9, 3, 16);
                let q: Vec<f32> = (0..rows * 6 * hd).map(|_| r()).collect();
                let k: Vec<f32> = (0..cap * 2 * hd).map(|_| r()).collect();
                let v: Vec<f32> = (0..cap * 2 * hd).map(|_| r()).collect();
                let mut want = vec![0f32; q.len()];
                attention(Isa::Scalar, &q, &k, &v, pos0, shape, &mut want);
                for isa in Isa::under_test() {
                    let mut got = vec![0f32; q.len()];
                    attention(isa, &q, &k, &v, pos0, shape, &mut got);
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "head_dim {hd} softcap {softcap:?} window {window:?} on {}",
                        isa.name()
                    );
                }
            }
        }
        eprintln!(
            "attention: compared {} with scalar",
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// A window of w: the output is the attention over the last w positions
    /// alone (the positions before it do not exist for it).
    #[test]
    fn a_sliding_window_sees_only_its_positions() {
        let (hd, w, pos) = (8, 3, 6);
        let q: Vec<f32> = (0..hd).map(|i| i as f32 * 0.3 - 1.0).collect();
        let k: Vec<f32> = (0..(pos + 1) * hd)
            .map(|i| ((i * 7) % 11) as f32 * 0.2 - 1.0)
            .collect();
        let v: Vec<f32> = (0..(pos + 1) * hd)
            .map(|i| ((i * 5) % 13) as f32 * 0.1)
            .collect();
        let shape = AttnShape {
            window: Some(w),
            ..AttnShape::causal(1, 1, hd)
        };
        let mut windowed = vec![0f32; hd];
        attention(Isa::Scalar, &q, &k, &v, pos, shape, &mut windowed);
        // The same query over a cache holding only the last w positions.
        let start = pos + 1 - w;
        let mut alone = vec![0f32; hd];
        attention(
            Isa::Scalar,
            &q,
            &k[start * hd..],
            &v[start * hd..],
            w - 1,
            AttnShape::causal(1, 1, hd),
            &mut alone,
        );
        assert_eq!(windowed, alone);
    }
}
