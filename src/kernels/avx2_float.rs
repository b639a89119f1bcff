//! AVX2 pieces of the float weight path (matmul.rs `rows_kernel_avx2`):
//! K-quant dequantisation with exactly the operations of quant.rs
//! `dequantize_row` on each element, and the canonical dot of one weight row
//! against several rows of x at once, each result with exactly the
//! operations of `avx2::dot`. Sharing the weight loads changes speed, not bits.

#![cfg(target_arch = "x86_64")]

use super::quant::{f16_at, k4_scale_min, WeightFormat};
use std::arch::x86_64::*;

/// Dequantise one row as `quant::dequantize_row` does, bit for bit.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_row(fmt: WeightFormat, row: &[u8], out: &mut [f32]) {
    match fmt {
        WeightFormat::Q4K => q4k(row, out),
        WeightFormat::Q6K => q6k(row, out),
        _ => super::quant::dequantize_row(fmt, row, out),
    }
}

/// 32 bytes as 32 floats at `o`, each `f(byte)`: unsigned or signed bytes,
/// then `scale * v - shift` (Q4_K) or `scale * v` (Q6_K), one scale per 16.
#[inline(always)]
unsafe fn bytes_to_f32(q: __m256i, signed: bool, scales: [f32; 2], shifts: Option<[f32; 2]>, o: *mut f32) {
    let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
    for (h, half) in halves.into_iter().enumerate() {
        let s = _mm256_set1_ps(scales[h]);
        for (i, part) in [half, _mm_srli_si128::<8>(half)].into_iter().enumerate() {
            let ints = if signed {
                _mm256_cvtepi8_epi32(part)
            } else {
                _mm256_cvtepu8_epi32(part)
            };
            let v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(ints));
            let v = match shifts {
                Some(m) => _mm256_sub_ps(v, _mm256_set1_ps(m[h])),
                None => v,
            };
            _mm256_storeu_ps(o.add(16 * h + 8 * i), v);
        }
    }
}

/// Q4_K: w = (d * sc) * q - (dmin * m) per 32-element sub-block.
#[inline(always)]
unsafe fn q4k(row: &[u8], out: &mut [f32]) {
    let mask = _mm256_set1_epi8(0x0F);
    for (blk, o) in row.chunks_exact(144).zip(out.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let scales = &blk[4..16];
        for g in 0..4 {
            let (sc1, m1) = k4_scale_min(2 * g, scales);
            let (sc2, m2) = k4_scale_min(2 * g + 1, scales);
            let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
            let q = _mm256_loadu_si256(blk.as_ptr().add(16 + g * 32) as *const __m256i);
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
            let y = o.as_mut_ptr().add(g * 64);
            bytes_to_f32(lo, false, [d1, d1], Some([mm1, mm1]), y);
            bytes_to_f32(hi, false, [d2, d2], Some([mm2, mm2]), y.add(32));
        }
    }
}

/// The low two bits of each byte of h, at bits 4 and 5.
#[inline(always)]
unsafe fn two_bits(h: __m256i, m2: __m256i) -> __m256i {
    _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2))
}

/// Q6_K: w = (d * sc) * (q - 32), a signed 8-bit sc per 16 elements.
#[inline(always)]
unsafe fn q6k(row: &[u8], out: &mut [f32]) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let off = _mm256_set1_epi8(32);
    for (blk, o) in row.chunks_exact(210).zip(out.chunks_exact_mut(256)) {
        let d = f16_at(blk, 208);
        for half in 0..2 {
            let p = blk.as_ptr();
            let ql0 = _mm256_loadu_si256(p.add(half * 64) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(half * 64 + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(128 + half * 32) as *const __m256i);
            // bits 2j, 2j+1 of qh, moved to bits 4 and 5
            let high = [
                two_bits(qh, m2),
                two_bits(_mm256_srli_epi16::<2>(qh), m2),
                two_bits(_mm256_srli_epi16::<4>(qh), m2),
                two_bits(_mm256_srli_epi16::<6>(qh), m2),
            ];
            let qs = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), high[0]),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), high[1]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), high[2]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), high[3]),
            ];
            let sc = &blk[192 + half * 8..192 + half * 8 + 8];
            let y = o.as_mut_ptr().add(half * 128);
            for (j, q) in qs.into_iter().enumerate() {
                let ds = [d * (sc[2 * j] as i8) as f32, d * (sc[2 * j + 1] as i8) as f32];
                bytes_to_f32(_mm256_sub_epi8(q, off), true, ds, None, y.add(32 * j));
            }
        }
    }
}

/// `avx2::dot(w, x)` for T rows x at once: the same 32 lanes, fma chains
/// and tree for each, with each weight vector loaded once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dots<const T: usize>(w: &[f32], xs: [&[f32]; T]) -> [f32; T] {
    let n = w.len();
    debug_assert!(xs.iter().all(|x| x.len() == n));
    let full = n / 32 * 32;
    let pw = w.as_ptr();
    let px: [*const f32; T] = std::array::from_fn(|t| xs[t].as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 4]; T];
    let mut k = 0;
    while k < full {
        for r in 0..4 {
            let wv = _mm256_loadu_ps(pw.add(k + 8 * r));
            for t in 0..T {
                acc[t][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px[t].add(k + 8 * r)), acc[t][r]);
            }
        }
        k += 32;
    }
    let mut out = [0f32; T];
    for t in 0..T {
        if full < n {
            super::avx2::accumulate_tail(&mut acc[t], &w[full..], &xs[t][full..]);
        }
        out[t] = super::avx2::tree(&acc[t]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    /// Every bit of the AVX2 dequantisation equals the portable code's, on
    /// random blocks (random f16 scales: subnormal, infinite and NaN ones
    /// too), and the shared-load dots equal one dot at a time.
    #[test]
    fn kquant_dequant_and_dots_match_the_portable_code() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") || !is_x86_feature_detected!("f16c") {
            eprintln!("no AVX2 here: nothing to compare");
            return;
        }
        for fmt in [WeightFormat::Q4K, WeightFormat::Q6K] {
            let k = 1024;
            let row = bytes(fmt.row_bytes(k).unwrap() * 64, fmt.block_bytes() as u64);
            for (i, r) in row.chunks_exact(fmt.row_bytes(k).unwrap()).enumerate() {
                let (mut a, mut b) = (vec![0f32; k], vec![0f32; k]);
                super::super::quant::dequantize_row(fmt, r, &mut a);
                unsafe { dequantize_row(fmt, r, &mut b) };
                let (a, b): (Vec<u32>, Vec<u32>) = (a.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_bits()).collect());
                assert_eq!(a, b, "{} row {i}", fmt.name());
            }
        }
        for n in [32, 640, 1000, 7] {
            let f: Vec<f32> = bytes(4 * n, n as u64).iter().map(|&b| (b as f32 - 128.0) / 37.0).collect();
            let (w, x) = (&f[..n], &f[n..]);
            let xs = [&x[..n], &x[n..2 * n], &x[2 * n..3 * n]];
            let one: Vec<u32> = xs.iter().map(|x| unsafe { super::super::avx2::dot(w, x) }.to_bits()).collect();
            let three = unsafe { dots::<3>(w, xs) }.map(f32::to_bits);
            let two = unsafe { dots::<2>(w, [xs[0], xs[1]]) }.map(f32::to_bits);
            assert_eq!(one, three.to_vec(), "n {n}");
            assert_eq!(one[..2], two[..], "n {n}");
        }
    }
}
