//! Rotary position embedding with a precomputed table (docs/DETERMINISM.md §5).

use super::multiversion;
use crate::numerics::{cos_sin_f64, pow_f64};

/// Which elements form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RopeLayout {
    /// (x[2i], x[2i+1]): GGUF files (llama.cpp permutes Q and K at conversion).
    Interleaved,
    /// (x[i], x[i + d/2]): Hugging Face checkpoints (`rotate_half`).
    Half,
}

/// Llama 3 frequency scaling, as in the Hugging Face `rope_type = "llama3"`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Inverse frequencies theta^(-2i/d), in f64 with our own pow, then scaled.
pub fn inv_freqs(
    dim: usize,
    theta: f64,
    scaling: Option<&Llama3Scaling>,
    factors: Option<&[f32]>,
) -> Vec<f64> {
    let mut f: Vec<f64> = (0..dim / 2)
        .map(|i| pow_f64(theta, -((2 * i) as f64) / dim as f64))
        .collect();
    if let Some(s) = scaling {
        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
        for v in f.iter_mut() {
            let wavelen = 2.0 * std::f64::consts::PI / *v;
            *v = if wavelen < high_wavelen {
                *v
            } else if wavelen > low_wavelen {
                *v / s.factor
            } else {
                let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * *v / s.factor + smooth * *v
            };
        }
    }
    if let Some(fac) = factors {
        for (v, &d) in f.iter_mut().zip(fac) {
            *v /= d as f64;
        }
    }
    f
}

/// cos and sin tables [positions][dim/2], angles in f64, each value times
/// `mscale` (LongRoPE's attention factor; 1 otherwise) in f64, rounded once
/// to f32.
pub fn tables(inv_freqs: &[f64], positions: usize, mscale: f64) -> (Vec<f32>, Vec<f32>) {
    let h = inv_freqs.len();
    let mut cos = vec![0f32; positions * h];
    let mut sin = vec![0f32; positions * h];
    for p in 0..positions {
        for (i, &f) in inv_freqs.iter().enumerate() {
            let (c, s) = cos_sin_f64(p as f64 * f);
            cos[p * h + i] = (c * mscale) as f32;
            sin[p * h + i] = (s * mscale) as f32;
        }
    }
    (cos, sin)
}

multiversion! {
    /// Rotate the first `rope_dims` dimensions of each head of each row in
    /// place (the rest pass through). Row t is at position `pos0 + t`; the
    /// tables have rope_dims / 2 columns. (a, b) -> (a*c - b*s, a*s + b*c), no fma.
    pub fn apply(
        x: &mut [f32],
        head_dim: usize,
        rope_dims: usize,
        layout: RopeLayout,
        cos: &[f32],
        sin: &[f32],
        pos0: usize,
        row_len: usize,
    ) {
        let h = rope_dims / 2;
        for (t, row) in x.chunks_exact_mut(row_len).enumerate() {
            let c = &cos[(pos0 + t) * h..(pos0 + t + 1) * h];
            let s = &sin[(pos0 + t) * h..(pos0 + t + 1) * h];
            for head in row.chunks_exact_mut(head_dim) {
                for i in 0..h {
                    let (ia, ib) = match layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        RopeLayout::Half => (i, i + h),
                    };
                    let (a, b) = (head[ia], head[ib]);
                    head[ia] = a * c[i] - b * s[i];
                    head[ib] = a * s[i] + b * c[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_close_to_libm() {
        let f = inv_freqs(64, 10000.0, None, None);
        let (c, s) = tables(&f, 100, 1.0);
        for p in 0..100 {
            for i in 0..32 {
                let a = p as f64 * 10000f64.powf(-((2 * i) as f64) / 64.0);
                assert!((c[p * 32 + i] as f64 - a.cos()).abs() < 1e-6);
                assert!((s[p * 32 + i] as f64 - a.sin()).abs() < 1e-6);
            }
        }
    }
}
