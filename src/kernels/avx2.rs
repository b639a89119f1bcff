//! Hand-vectorised AVX2+FMA versions of the hottest kernels. Each performs
//! exactly the operations of the portable code in the same order (same
//! lanes, same fma, same tree), so the bits match; tests compare them.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// The canonical 32-lane accumulation (dot.rs `accumulate`) into 4 registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn accumulate(acc: &mut [__m256; 4], a: &[f32], b: &[f32]) {
    let n = a.len().min(b.len());
    let full = n / 32 * 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut k = 0;
    while k < full {
        for r in 0..4 {
            acc[r] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(k + 8 * r)),
                _mm256_loadu_ps(pb.add(k + 8 * r)),
                acc[r],
            );
        }
        k += 32;
    }
    if full < n {
        let mut lanes = to_array(acc);
        for j in 0..n - full {
            lanes[j] = a[full + j].mul_add(b[full + j], lanes[j]);
        }
        *acc = from_array(&lanes);
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn to_array(acc: &[__m256; 4]) -> [f32; 32] {
    let mut out = [0f32; 32];
    for r in 0..4 {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * r), acc[r]);
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn from_array(v: &[f32; 32]) -> [__m256; 4] {
    [0, 1, 2, 3].map(|r| _mm256_loadu_ps(v.as_ptr().add(8 * r)))
}

/// The fixed tree: lanes j += j+16, j += j+8, then 4, 2, 1 within a register.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tree(acc: &[__m256; 4]) -> f32 {
    let a = _mm256_add_ps(acc[0], acc[2]); // lanes 0..8 (+16)
    let b = _mm256_add_ps(acc[1], acc[3]); // lanes 8..16 (+16)
    let c = _mm256_add_ps(a, b); // lanes 0..8 (+8)
    let d = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1)); // 0..4 (+4)
    let e = _mm_add_ps(d, _mm_movehl_ps(d, d)); // 0..2 (+2)
    let f = _mm_add_ss(e, _mm_shuffle_ps(e, e, 1)); // 0 (+1)
    _mm_cvtss_f32(f)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    accumulate(&mut acc, a, b);
    tree(&acc)
}

/// 8 bytes -> 8 f32 (exact integer conversion).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn u8x8_to_ps(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn i8x8_to_ps(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

#[inline(always)]
fn f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_1 row: w = (d * q) + m; low nibbles are elements 0..16, high 16..32.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequant_q4_1(row: &[u8], out: &mut [f32]) {
    let mask = _mm_set1_epi8(0x0F);
    for (blk, o) in row.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16(blk, 0));
        let m = _mm256_set1_ps(f16(blk, 2));
        let qs = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        let op = o.as_mut_ptr();
        for (i, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
            .into_iter()
            .enumerate()
        {
            let w = _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(v)), m);
            _mm256_storeu_ps(op.add(8 * i), w);
        }
    }
}

/// Q4_0 row: w = d * (q - 8).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequant_q4_0(row: &[u8], out: &mut [f32]) {
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm256_set1_ps(8.0);
    for (blk, o) in row.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16(blk, 0));
        let qs = _mm_loadu_si128(blk.as_ptr().add(2) as *const __m128i);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        let op = o.as_mut_ptr();
        for (i, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
            .into_iter()
            .enumerate()
        {
            // q - 8 is exact in f32, as the integer subtraction is.
            let w = _mm256_mul_ps(d, _mm256_sub_ps(u8x8_to_ps(v), eight));
            _mm256_storeu_ps(op.add(8 * i), w);
        }
    }
}

/// Q8_0 row: w = d * q.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequant_q8_0(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16(blk, 0));
        let op = o.as_mut_ptr();
        for i in 0..4 {
            let v = _mm_loadl_epi64(blk.as_ptr().add(2 + 8 * i) as *const __m128i);
            _mm256_storeu_ps(op.add(8 * i), _mm256_mul_ps(d, i8x8_to_ps(v)));
        }
    }
}
