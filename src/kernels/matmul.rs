//! y = x W^T for a weight matrix W of `n` rows stored in any `WeightFormat`.
//!
//! Every output y[t][r] is `dot(dequant(W[r]), x[t])` in the canonical order,
//! computed whole by one thread: parallelism is over blocks of output rows
//! only, so neither the thread count nor the number of rows of x (batch size,
//! prefill chunking) can change a bit.

use super::dot::{accumulate, tree};
use super::multiversion;
use super::quant::{dequantize_row, WeightFormat};
use crate::numerics::LANES;
use rayon::prelude::*;

/// Output rows one task computes; fixed, so work splitting never depends on
/// the thread count (and would not change bits even if it did).
const ROWS_PER_TASK: usize = 16;

multiversion! {
    /// Rows `r0..r0 + rows_out.len()/m` of W against all m rows of x, written
    /// transposed: rows_out[(r - r0) * m + t].
    pub fn rows_kernel(
        fmt: WeightFormat,
        w_rows: &[u8],
        x: &[f32],
        m: usize,
        k: usize,
        rows_out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let rb = w_rows.len() / (rows_out.len() / m);
        for (row, out) in w_rows.chunks_exact(rb).zip(rows_out.chunks_exact_mut(m)) {
            dequantize_row(fmt, row, scratch);
            for (t, o) in out.iter_mut().enumerate() {
                let mut acc = [0f32; LANES];
                accumulate(&mut acc, scratch, &x[t * k..t * k + k]);
                *o = tree(acc);
            }
        }
    }
}

/// out[t * n + r] = dot(dequant(W[r]), x[t * k ..]) for t < m, r < n.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[u8], fmt: WeightFormat, n: usize, out: &mut [f32]) {
    let rb = fmt.row_bytes(k).expect("row length checked at load");
    assert_eq!(w.len(), rb * n, "weight bytes");
    assert_eq!(x.len(), m * k, "input shape");
    assert_eq!(out.len(), m * n, "output shape");
    if m == 0 || n == 0 {
        return;
    }
    let mut transposed = vec![0f32; n * m];
    transposed
        .par_chunks_mut(ROWS_PER_TASK * m)
        .zip(w.par_chunks(ROWS_PER_TASK * rb))
        .for_each_init(
            || vec![0f32; k],
            |scratch, (o, wr)| rows_kernel(fmt, wr, x, m, k, o, scratch),
        );
    if m == 1 {
        out.copy_from_slice(&transposed);
    } else {
        for r in 0..n {
            for t in 0..m {
                out[t * n + r] = transposed[r * m + t];
            }
        }
    }
}

/// Dequantise selected rows (an embedding lookup): out[i] = dequant(W[ids[i]]).
pub fn gather_rows(w: &[u8], fmt: WeightFormat, k: usize, ids: &[u32], out: &mut [f32]) {
    let rb = fmt.row_bytes(k).expect("row length checked at load");
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(k)) {
        let id = id as usize;
        dequantize_row(fmt, &w[id * rb..id * rb + rb], o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dot::dot;

    #[test]
    fn rows_are_independent_of_batch() {
        let (n, k) = (37, 96);
        let mut s = 9u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let wf: Vec<f32> = (0..n * k).map(|_| r()).collect();
        let w: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x: Vec<f32> = (0..5 * k).map(|_| r()).collect();
        let mut all = vec![0f32; 5 * n];
        matmul(&x, 5, k, &w, WeightFormat::F32, n, &mut all);
        for t in 0..5 {
            let mut one = vec![0f32; n];
            matmul(&x[t * k..(t + 1) * k], 1, k, &w, WeightFormat::F32, n, &mut one);
            for j in 0..n {
                assert_eq!(one[j].to_bits(), all[t * n + j].to_bits());
                let want = dot(&wf[j * k..(j + 1) * k], &x[t * k..(t + 1) * k]);
                assert_eq!(one[j].to_bits(), want.to_bits());
            }
        }
    }
}
