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
        accumulate_tail(acc, &a[full..n], &b[full..n]);
    }
}

/// The last n % 32 products of `accumulate` (fewer than 32), lane j taking
/// element j.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn accumulate_tail(acc: &mut [__m256; 4], a: &[f32], b: &[f32]) {
    let mut lanes = to_array(acc);
    for j in 0..a.len().min(b.len()) {
        lanes[j] = a[j].mul_add(b[j], lanes[j]);
    }
    *acc = from_array(&lanes);
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

/// The 32 weight bytes of an integer-format block, ready for maddubs: the
/// unsigned magnitudes, and the signs to give to the activations.
#[inline(always)]
unsafe fn int_block(fmt: u8, p: *const u8) -> (__m256i, __m256i) {
    match fmt {
        // Q4_1: nibbles 0..15 are already unsigned; signs all +1.
        1 => {
            let q = _mm_loadu_si128(p.add(4) as *const __m128i);
            let mask = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            (_mm256_set_m128i(hi, lo), _mm256_set1_epi8(1))
        }
        // Q4_0: q - 8 in [-8, 7]
        0 => {
            let q = _mm_loadu_si128(p.add(2) as *const __m128i);
            let mask = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let w = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
            (_mm256_sign_epi8(w, w), w)
        }
        // Q5_0: (nibble | bit j of qh << 4) - 16 in [-16, 15]
        3 => {
            let q = _mm_loadu_si128(p.add(6) as *const __m128i);
            let mask = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
            // Byte j of `bits` is 0xFF where bit j of qh is set.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(qh as i32),
                _mm256_set_epi64x(
                    0x0303030303030303,
                    0x0202020202020202,
                    0x0101010101010101,
                    0,
                ),
            );
            let bits = _mm256_cmpeq_epi8(
                _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                _mm256_set1_epi8(-1),
            );
            let q5 = _mm256_or_si256(
                _mm256_set_m128i(hi, lo),
                _mm256_and_si256(bits, _mm256_set1_epi8(0x10)),
            );
            let w = _mm256_sub_epi8(q5, _mm256_set1_epi8(16));
            (_mm256_sign_epi8(w, w), w)
        }
        // Q8_0: signed bytes
        _ => {
            let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
            (_mm256_sign_epi8(w, w), w)
        }
    }
}

/// 8 lanes of exact integer sums of 4 products each (elements 4l..4l+3).
#[inline(always)]
unsafe fn lane_sums(mag: __m256i, sign: __m256i, x: *const i8) -> __m256 {
    let xv = _mm256_loadu_si256(x as *const __m256i);
    let prod16 = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(xv, sign));
    _mm256_cvtepi32_ps(_mm256_madd_epi16(prod16, _mm256_set1_epi16(1)))
}

#[inline(always)]
unsafe fn tree8(acc: __m256) -> f32 {
    let d = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let e = _mm_add_ps(d, _mm_movehl_ps(d, d));
    _mm_cvtss_f32(_mm_add_ss(e, _mm_shuffle_ps(e, e, 1)))
}

/// An f16 at p, converted exactly with F16C.
#[inline(always)]
unsafe fn half_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The same exact lane sums as `lane_sums`, with one VNNI instruction.
#[inline(always)]
unsafe fn lane_sums_vnni(mag: __m256i, sign: __m256i, x: *const i8) -> __m256 {
    let xv = _mm256_loadu_si256(x as *const __m256i);
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        mag,
        _mm256_sign_epi8(xv, sign),
    ))
}

/// How far ahead of the current weight bytes to prefetch. Decode reads every
/// weight once per token from memory, and a hint this far ahead (measured:
/// 1, 2, 4, 8 and 16 KiB) keeps enough loads in flight; it cannot change a result.
const PREFETCH_BYTES: usize = 8192;

/// Prefetch the cache lines `PREFETCH_BYTES` past those of `bytes`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn prefetch_ahead(bytes: &[u8]) {
    let p = bytes.as_ptr();
    for off in (0..bytes.len()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + off) as *const i8);
    }
}

/// M rows of x against every row of W; VNNI picks how the lane sums are formed.
#[inline(always)]
unsafe fn int_rows<const M: usize, const VNNI: bool>(
    fmt: u8,
    bb: usize,
    w_rows: &[u8],
    xs: &[super::qdot::Q8Row],
    k: usize,
    t0: usize,
    out: &mut [f32],
) {
    let m_total = xs.len();
    let nb = k / 32;
    let xq: [*const i8; M] = std::array::from_fn(|t| xs[t0 + t].q.as_ptr());
    let xd: [*const f32; M] = std::array::from_fn(|t| xs[t0 + t].d.as_ptr());
    let xsum: [*const f32; M] = std::array::from_fn(|t| xs[t0 + t].s.as_ptr());
    for (r, row) in w_rows.chunks_exact(nb * bb).enumerate() {
        let mut acc = [_mm256_setzero_ps(); M];
        let mut acc_m = [0f32; M];
        let p = row.as_ptr();
        for b in 0..nb {
            let bp = p.add(b * bb);
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(PREFETCH_BYTES) as *const i8);
            let (mag, sign) = int_block(fmt, bp);
            let dw = half_at(bp);
            let mw = if fmt == 1 { half_at(bp.add(2)) } else { 0.0 };
            for t in 0..M {
                let x = xq[t].add(b * 32);
                let s = if VNNI {
                    lane_sums_vnni(mag, sign, x)
                } else {
                    lane_sums(mag, sign, x)
                };
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * *xd[t].add(b)), s, acc[t]);
                if fmt == 1 {
                    acc_m[t] = mw.mul_add(*xsum[t].add(b), acc_m[t]);
                }
            }
        }
        for t in 0..M {
            let v = tree8(acc[t]);
            out[r * m_total + t0 + t] = if fmt == 1 { v + acc_m[t] } else { v };
        }
    }
}

#[inline(always)]
unsafe fn rows_int_impl<const VNNI: bool>(
    fmt: u8,
    w_rows: &[u8],
    xs: &[super::qdot::Q8Row],
    k: usize,
    out: &mut [f32],
) {
    let bb = [18, 20, 34, 22][fmt as usize];
    let m = xs.len();
    let mut t0 = 0;
    while t0 < m {
        match m - t0 {
            1 => int_rows::<1, VNNI>(fmt, bb, w_rows, xs, k, t0, out),
            2 => int_rows::<2, VNNI>(fmt, bb, w_rows, xs, k, t0, out),
            3 => int_rows::<3, VNNI>(fmt, bb, w_rows, xs, k, t0, out),
            _ => int_rows::<4, VNNI>(fmt, bb, w_rows, xs, k, t0, out),
        }
        t0 += 4;
    }
}

/// Integer-format rows against quantised rows of x, four at a time; the
/// same operations as `qdot::dot`. `fmt`: 0 Q4_0, 1 Q4_1, 2 Q8_0, 3 Q5_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows_int(
    fmt: u8,
    w_rows: &[u8],
    xs: &[super::qdot::Q8Row],
    k: usize,
    out: &mut [f32],
) {
    rows_int_impl::<false>(fmt, w_rows, xs, k, out)
}

/// `rows_int` with VNNI: dpbusd forms the same exact 4-element lane sums.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn rows_int_vnni(
    fmt: u8,
    w_rows: &[u8],
    xs: &[super::qdot::Q8Row],
    k: usize,
    out: &mut [f32],
) {
    rows_int_impl::<true>(fmt, w_rows, xs, k, out)
}

/// The attention of one query head (attention.rs `head_kernel`) with the same
/// operations: canonical dots, exact max, our exp, a sum in position order,
/// a division, and fma of p_i * v_i in position order on each of 8 lanes.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attention_head(
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
    let mut max = f32::NEG_INFINITY;
    for i in first..n_pos {
        let kr = &k[i * kv_row + kv_off..i * kv_row + kv_off + hd];
        let s = crate::numerics::attention_score(dot(q, kr), scale, softcap);
        if s > max {
            max = s;
        }
        scores.push(s);
    }
    let mut e = vec![0f32; scores.len()];
    exp_shifted(scores, max, &mut e);
    let mut sum = 0f32;
    for &x in &e {
        sum += x;
    }
    let full = hd / 8 * 8;
    out.fill(0.0);
    for (j, &ei) in e.iter().enumerate() {
        let i = first + j;
        let p = ei / sum;
        let vr = &v[i * kv_row + kv_off..i * kv_row + kv_off + hd];
        let pv = _mm256_set1_ps(p);
        let mut d = 0;
        while d < full {
            let o = out.as_mut_ptr().add(d);
            _mm256_storeu_ps(
                o,
                _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr.as_ptr().add(d)), _mm256_loadu_ps(o)),
            );
            d += 8;
        }
        for d in full..hd {
            out[d] = p.mul_add(vr[d], out[d]);
        }
    }
}
