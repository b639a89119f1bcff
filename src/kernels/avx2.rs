//! Hand-vectorised AVX2+FMA versions of the hottest kernels. Each performs
//! exactly the operations of the portable code in the same order (same
//! lanes, same fma, same tree), so the bits match; tests compare them.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// The canonical 32-lane accumulation (dot.rs `accumulate`) into 4 registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_array(acc: &[__m256; 4]) -> [f32; 32] {
    let mut out = [0f32; 32];
    for r in 0..4 {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * r), acc[r]);
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn from_array(v: &[f32; 32]) -> [__m256; 4] {
    [0, 1, 2, 3].map(|r| _mm256_loadu_ps(v.as_ptr().add(8 * r)))
}

/// The fixed tree: lanes j += j+16, j += j+8, then 4, 2, 1 within a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    accumulate(&mut acc, a, b);
    tree(&acc)
}

/// 8 bytes -> 8 f32 (exact integer conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn u8x8_to_ps(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i8x8_to_ps(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

#[inline(always)]
fn f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_1 row: w = (d * q) + m; low nibbles are elements 0..16, high 16..32.
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
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

/// An f16 scale, converted exactly (F16C), broadcast to 8 lanes.
#[inline(always)]
unsafe fn scale_at(p: *const u8) -> __m256 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm256_broadcastss_ps(v)
}

/// Elements 0..32 of a block as 4 registers of 8, from 16 bytes of nibbles.
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> [__m256; 4] {
    let mask = _mm_set1_epi8(0x0F);
    let q = _mm_loadu_si128(qs as *const __m128i);
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    [
        u8x8_to_ps(lo),
        u8x8_to_ps(_mm_srli_si128(lo, 8)),
        u8x8_to_ps(hi),
        u8x8_to_ps(_mm_srli_si128(hi, 8)),
    ]
}

/// One dequantised 32-element block in registers: the same formulas as
/// quant.rs (Q4_0: d*(q-8); Q4_1: (d*q)+m; Q8_0: d*q).
#[inline(always)]
unsafe fn block(fmt: u8, p: *const u8) -> [__m256; 4] {
    match fmt {
        0 => {
            let d = scale_at(p);
            let eight = _mm256_set1_ps(8.0);
            nibbles(p.add(2)).map(|q| _mm256_mul_ps(d, _mm256_sub_ps(q, eight)))
        }
        1 => {
            let (d, m) = (scale_at(p), scale_at(p.add(2)));
            nibbles(p.add(4)).map(|q| _mm256_add_ps(_mm256_mul_ps(d, q), m))
        }
        _ => {
            let d = scale_at(p);
            [0, 1, 2, 3].map(|i| {
                _mm256_mul_ps(
                    d,
                    i8x8_to_ps(_mm_loadl_epi64(p.add(2 + 8 * i) as *const __m128i)),
                )
            })
        }
    }
}

/// Fused dequantise-and-dot for Q4_0 (fmt 0), Q4_1 (1), Q8_0 (2): each
/// block is expanded once in registers and used for M rows of x.
/// out[row * m_total + t0 + t] for t < M.
#[inline(always)]
unsafe fn fused<const M: usize>(
    fmt: u8,
    bb: usize,
    w_rows: &[u8],
    x: &[f32],
    k: usize,
    t0: usize,
    m_total: usize,
    out: &mut [f32],
) {
    let rb = k / 32 * bb;
    let xp = x.as_ptr().add(t0 * k);
    for (r, row) in w_rows.chunks_exact(rb).enumerate() {
        let mut acc = [[_mm256_setzero_ps(); 4]; M];
        let p = row.as_ptr();
        for b in 0..k / 32 {
            let w = block(fmt, p.add(b * bb));
            for (t, a) in acc.iter_mut().enumerate() {
                let xb = xp.add(t * k + b * 32);
                for i in 0..4 {
                    a[i] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(xb.add(8 * i)), a[i]);
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            out[r * m_total + t0 + t] = tree(a);
        }
    }
}

/// Rows of a Q4_0/Q4_1/Q8_0 matrix against all m rows of x, three rows of x
/// at a time. `fmt`: 0 Q4_0, 1 Q4_1, 2 Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows_fused(fmt: u8, w_rows: &[u8], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    let bb = [18, 20, 34][fmt as usize];
    let mut t0 = 0;
    while t0 < m {
        match m - t0 {
            1 => fused::<1>(fmt, bb, w_rows, x, k, t0, m, out),
            2 => fused::<2>(fmt, bb, w_rows, x, k, t0, m, out),
            _ => fused::<3>(fmt, bb, w_rows, x, k, t0, m, out),
        }
        t0 += 3;
    }
}

/// exp of 8 lanes, bit-identical to `numerics::exp_f32` on each lane.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    let big = _mm256_cmp_ps(x, _mm256_set1_ps(88.0), _CMP_GT_OQ);
    let small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0), _CMP_LT_OQ);
    // Clamp so the lanes replaced below cannot produce garbage exponents.
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps(
        _mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let neg_n = _mm256_xor_ps(n, _mm256_set1_ps(-0.0));
    let mut r = _mm256_fmadd_ps(neg_n, _mm256_set1_ps(0.693_145_75), xc);
    r = _mm256_fmadd_ps(neg_n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [
        1.0f32 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
    let mut y = _mm256_mul_ps(p, scale);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), big);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), small);
    _mm256_blendv_ps(y, x, nan)
}

/// out[i] = exp(x[i] - shift), each bit-identical to the portable code.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn exp_shifted(x: &[f32], shift: f32, out: &mut [f32]) {
    let n = x.len() / 8 * 8;
    let s = _mm256_set1_ps(shift);
    for i in (0..n).step_by(8) {
        let v = _mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), s);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), exp8(v));
    }
    for i in n..x.len() {
        out[i] = crate::numerics::exp_f32(x[i] - shift);
    }
}
