//! Prefill GEMM for the float weight path (F32, F16, BF16, Q4_K, Q6_K) with
//! AVX-512's 32 registers: a task's weight rows, already dequantised to f32
//! (matmul.rs), against several rows of x in a register tile of 2 weight
//! rows x 3 tokens. Each output keeps its own four accumulators of the
//! canonical 32-lane order (`avx2::accumulate`: element j into lane j mod
//! 32, fma in element order) and the same tree, so its bits are those of
//! `avx2::dot`; the tile only shares each weight load among 3 tokens and
//! each activation load among 2 rows (5 loads per 6 fma instead of 4 per 3).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const T: usize>(
    w: &[f32],
    x: &[f32],
    k: usize,
    m: usize,
    r0: usize,
    t0: usize,
    out: &mut [f32],
) {
    let mut acc = [[[_mm256_setzero_ps(); 4]; T]; R];
    let wp = w.as_ptr().add(r0 * k);
    let xp = x.as_ptr().add(t0 * k);
    let mut c = 0;
    while c < k {
        for s in 0..4 {
            let mut wv = [_mm256_setzero_ps(); R];
            for i in 0..R {
                wv[i] = _mm256_loadu_ps(wp.add(i * k + c + 8 * s));
            }
            let mut xv = [_mm256_setzero_ps(); T];
            for j in 0..T {
                xv[j] = _mm256_loadu_ps(xp.add(j * k + c + 8 * s));
            }
            for i in 0..R {
                for j in 0..T {
                    acc[i][j][s] = _mm256_fmadd_ps(wv[i], xv[j], acc[i][j][s]);
                }
            }
        }
        c += 32;
    }
    for i in 0..R {
        for j in 0..T {
            out[(r0 + i) * m + t0 + j] = super::avx2::tree(&acc[i][j]);
        }
    }
}

/// out[r * m + t] = dot(w[r], x[t]) for the `w.len() / k` rows of w and the
/// m rows of x, each exactly `avx2::dot`. k must be a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub unsafe fn rows(w: &[f32], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    assert!(k % 32 == 0 && x.len() == m * k && w.len() % k == 0);
    let nr = w.len() / k;
    assert_eq!(out.len(), nr * m);
    let mut r0 = 0;
    while r0 < nr {
        let rr = (nr - r0).min(2);
        let mut t0 = 0;
        while t0 < m {
            let tt = (m - t0).min(3);
            match (rr, tt) {
                (2, 3) => tile::<2, 3>(w, x, k, m, r0, t0, out),
                (2, 2) => tile::<2, 2>(w, x, k, m, r0, t0, out),
                (2, _) => tile::<2, 1>(w, x, k, m, r0, t0, out),
                (_, 3) => tile::<1, 3>(w, x, k, m, r0, t0, out),
                (_, 2) => tile::<1, 2>(w, x, k, m, r0, t0, out),
                _ => tile::<1, 1>(w, x, k, m, r0, t0, out),
            }
            t0 += tt;
        }
        r0 += rr;
    }
}
