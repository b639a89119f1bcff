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

/// Columns of x per pass: 3 rows of x (12 KiB) stay in L1 while the task's
/// rows pass, whatever k is; the accumulators carry over between passes, so
/// each output still takes its products in element order.
const KC: usize = 1024;

/// Rows r0.. (R) against tokens t0.. (T) over columns c0..c1, continuing
/// each output's four accumulators (the canonical 32 lanes) in `st`: row r,
/// token t0 + j at `st[r * 3 + j]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const T: usize>(
    w: &[f32],
    x: &[f32],
    k: usize,
    (c0, c1): (usize, usize),
    r0: usize,
    t0: usize,
    st: &mut [[__m256; 4]],
) {
    let mut acc = [[[_mm256_setzero_ps(); 4]; T]; R];
    for i in 0..R {
        for j in 0..T {
            acc[i][j] = st[(r0 + i) * 3 + j];
        }
    }
    let wp = w.as_ptr().add(r0 * k);
    let xp = x.as_ptr().add(t0 * k);
    let mut c = c0;
    while c < c1 {
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
            st[(r0 + i) * 3 + j] = acc[i][j];
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
    // Tokens outer: a tile's 3 rows of x stay in L1 while the task's
    // dequantised rows pass from L2, KC columns at a time.
    let zero = [_mm256_setzero_ps(); 4];
    let mut st = vec![zero; nr * 3];
    let mut t0 = 0;
    while t0 < m {
        let tt = (m - t0).min(3);
        st.fill(zero);
        let mut c0 = 0;
        while c0 < k {
            let cols = (c0, (c0 + KC).min(k));
            let mut r0 = 0;
            while r0 < nr {
                let rr = (nr - r0).min(2);
                match (rr, tt) {
                    (2, 3) => tile::<2, 3>(w, x, k, cols, r0, t0, &mut st),
                    (2, 2) => tile::<2, 2>(w, x, k, cols, r0, t0, &mut st),
                    (2, _) => tile::<2, 1>(w, x, k, cols, r0, t0, &mut st),
                    (_, 3) => tile::<1, 3>(w, x, k, cols, r0, t0, &mut st),
                    (_, 2) => tile::<1, 2>(w, x, k, cols, r0, t0, &mut st),
                    _ => tile::<1, 1>(w, x, k, cols, r0, t0, &mut st),
                }
                r0 += rr;
            }
            c0 += KC;
        }
        for r in 0..nr {
            for j in 0..tt {
                out[r * m + t0 + j] = super::avx2::tree(&st[r * 3 + j]);
            }
        }
        t0 += tt;
    }
}

/// `avx2_float::dequantized_dot` for R Q4_K rows with AVX-512VL, the same
/// bits: a 32-element sub-block's weights can take only 16 values,
/// `(d * sc) * q - (dmin * m)` for q = 0..15, so those 16 are formed once
/// (with the same mul and sub as `dequantize_row`) and each weight is picked
/// from them by its nibble (one permute instead of a convert, a multiply
/// and a subtract per 8 weights), then goes into the same fma lane in the
/// same order. Two rows at once give the fma chains (one per 8 lanes of a
/// row, by contract) twice the independent work to overlap.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub unsafe fn q4k_dots<const R: usize>(rows: [&[u8]; R], x: &[f32]) -> [f32; R] {
    use super::quant::{f16_at, k4_scale_min};
    for row in rows {
        assert_eq!(x.len(), row.len() / 144 * 256, "Q4_K row against x");
    }
    let q0 = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
    let q1 = _mm256_setr_ps(8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0);
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    let xp = x.as_ptr();
    let (mut ds, mut dm) = ([[0f32; 8]; R], [[0f32; 8]; R]);
    for b in 0..x.len() / 256 {
        for i in 0..R {
            let blk = &rows[i][b * 144..b * 144 + 144];
            super::avx2::prefetch_ahead(blk);
            // d * sc and dmin * m of the 8 sub-blocks, as dequantize_row forms them.
            let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
            for j in 0..8 {
                (sc[j], mn[j]) = k4_scale_min(j, &blk[4..16]);
            }
            // (No closures over intrinsics: they would not inherit the target features.)
            let scv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                sc.as_ptr() as *const __m128i
            )));
            let mnv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                mn.as_ptr() as *const __m128i
            )));
            _mm256_storeu_ps(
                ds[i].as_mut_ptr(),
                _mm256_mul_ps(_mm256_set1_ps(f16_at(blk, 0)), scv),
            );
            _mm256_storeu_ps(
                dm[i].as_mut_ptr(),
                _mm256_mul_ps(_mm256_set1_ps(f16_at(blk, 2)), mnv),
            );
        }
        for g in 0..4 {
            let at = b * 256 + g * 64;
            for i in 0..R {
                // The 16 values of each sub-block: (d * sc) * q - (dmin * m) is
                // one rounding, since (d * sc) * q is exact (at most 11 + 6 + 4
                // significant bits), so fmsub gives dequantize_row's mul-then-sub.
                let (s, m) = (_mm256_set1_ps(ds[i][2 * g]), _mm256_set1_ps(dm[i][2 * g]));
                let (lo0, lo1) = (_mm256_fmsub_ps(s, q0, m), _mm256_fmsub_ps(s, q1, m));
                let (s, m) = (
                    _mm256_set1_ps(ds[i][2 * g + 1]),
                    _mm256_set1_ps(dm[i][2 * g + 1]),
                );
                let (hi0, hi1) = (_mm256_fmsub_ps(s, q0, m), _mm256_fmsub_ps(s, q1, m));
                let qp = rows[i].as_ptr().add(b * 144 + 16 + g * 32);
                // Elements at.. are the low nibbles of the 32 bytes, at + 32.. the
                // high ones; byte 8r + j is lane j of register r. The permute
                // reads only an index's low 4 bits, so the low nibble needs no mask.
                let mut idx = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    idx[r] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qp.add(8 * r) as *const __m128i));
                    let w = _mm256_permutex2var_ps(lo0, idx[r], lo1);
                    acc[i][r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(at + 8 * r)), acc[i][r]);
                }
                for r in 0..4 {
                    let w = _mm256_permutex2var_ps(hi0, _mm256_srli_epi32::<4>(idx[r]), hi1);
                    acc[i][r] =
                        _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(at + 32 + 8 * r)), acc[i][r]);
                }
            }
        }
    }
    let mut out = [0f32; R];
    for i in 0..R {
        out[i] = super::avx2::tree(&acc[i]);
    }
    out
}
