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
    let mut sink = Store(out.as_mut_ptr());
    match fmt {
        WeightFormat::Q4K => q4k(row, &mut sink),
        WeightFormat::Q6K => q6k(row, &mut sink),
        _ => super::quant::dequantize_row(fmt, row, out),
    }
}

/// `avx2::dot(dequantised row, x)` without writing the row out: each
/// weight is formed as `dequantize_row` forms it and goes straight into the
/// same fma lane, so the result has the same bits. `None` for formats
/// other than Q4_K and Q6_K.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantized_dot(fmt: WeightFormat, row: &[u8], x: &[f32]) -> Option<f32> {
    let mut sink = Dot {
        x: x.as_ptr(),
        acc: [_mm256_setzero_ps(); 4],
    };
    match fmt {
        WeightFormat::Q4K if x.len() == row.len() / 144 * 256 => q4k(row, &mut sink),
        WeightFormat::Q6K if x.len() == row.len() / 210 * 256 => q6k(row, &mut sink),
        _ => return None,
    }
    Some(super::avx2::tree(&sink.acc))
}

/// Where dequantised weights go, 32 at a time: elements `at..at + 32`.
trait Sink {
    unsafe fn put(&mut self, at: usize, v: [__m256; 4]);
}

/// Into a row of floats.
struct Store(*mut f32);

impl Sink for Store {
    #[inline(always)]
    unsafe fn put(&mut self, at: usize, v: [__m256; 4]) {
        for (r, v) in v.into_iter().enumerate() {
            _mm256_storeu_ps(self.0.add(at + 8 * r), v);
        }
    }
}

/// Into `avx2::dot`'s four accumulators against x: lane j of register r
/// takes elements at + 8r + j, as `avx2::accumulate` does over 32 at a time.
struct Dot {
    x: *const f32,
    acc: [__m256; 4],
}

impl Sink for Dot {
    #[inline(always)]
    unsafe fn put(&mut self, at: usize, v: [__m256; 4]) {
        for (r, v) in v.into_iter().enumerate() {
            self.acc[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(self.x.add(at + 8 * r)), self.acc[r]);
        }
    }
}

/// 32 bytes as 32 floats, each `f(byte)`: unsigned or signed bytes, then
/// `scale * v - shift` (Q4_K) or `scale * v` (Q6_K), one scale per 16.
#[inline(always)]
unsafe fn bytes_to_f32(
    q: __m256i,
    signed: bool,
    scales: [f32; 2],
    shifts: Option<[f32; 2]>,
) -> [__m256; 4] {
    let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
    let mut out = [_mm256_setzero_ps(); 4];
    for (h, half) in halves.into_iter().enumerate() {
        let s = _mm256_set1_ps(scales[h]);
        for (i, part) in [half, _mm_srli_si128::<8>(half)].into_iter().enumerate() {
            let ints = if signed {
                _mm256_cvtepi8_epi32(part)
            } else {
                _mm256_cvtepu8_epi32(part)
            };
            let v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(ints));
            out[2 * h + i] = match shifts {
                Some(m) => _mm256_sub_ps(v, _mm256_set1_ps(m[h])),
                None => v,
            };
        }
    }
    out
}

/// Q4_K: w = (d * sc) * q - (dmin * m) per 32-element sub-block.
#[inline(always)]
unsafe fn q4k(row: &[u8], sink: &mut impl Sink) {
    let mask = _mm256_set1_epi8(0x0F);
    for (b, blk) in row.chunks_exact(144).enumerate() {
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
            let at = b * 256 + g * 64;
            sink.put(at, bytes_to_f32(lo, false, [d1, d1], Some([mm1, mm1])));
            sink.put(at + 32, bytes_to_f32(hi, false, [d2, d2], Some([mm2, mm2])));
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
unsafe fn q6k(row: &[u8], sink: &mut impl Sink) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let off = _mm256_set1_epi8(32);
    for (b, blk) in row.chunks_exact(210).enumerate() {
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
            for (j, q) in qs.into_iter().enumerate() {
                let ds = [
                    d * (sc[2 * j] as i8) as f32,
                    d * (sc[2 * j + 1] as i8) as f32,
                ];
                sink.put(
                    b * 256 + half * 128 + 32 * j,
                    bytes_to_f32(_mm256_sub_epi8(q, off), true, ds, None),
                );
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
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    /// Every bit of the AVX2 dequantisation equals the portable code's, on
    /// random blocks (random f16 scales: subnormal, infinite and NaN ones
    /// too), the dot that never writes the row equals dequantise-then-dot,
    /// and the shared-load dots equal one dot at a time.
    #[test]
    fn kquant_dequant_and_dots_match_the_portable_code() {
        if !is_x86_feature_detected!("avx2")
            || !is_x86_feature_detected!("fma")
            || !is_x86_feature_detected!("f16c")
        {
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
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
                assert_eq!(bits(&a), bits(&b), "{} row {i}", fmt.name());
                let x: Vec<f32> = bytes(4 * k, i as u64)
                    .chunks_exact(4)
                    .map(|c| (c[0] as f32 - 128.0) / 41.0)
                    .collect();
                let fused = unsafe { dequantized_dot(fmt, r, &x) }.unwrap().to_bits();
                let plain = unsafe { super::super::avx2::dot(&a, &x) }.to_bits();
                assert_eq!(fused, plain, "{} row {i}: dot", fmt.name());
            }
        }
        for n in [32, 640, 1000, 7] {
            let f: Vec<f32> = bytes(4 * n, n as u64)
                .iter()
                .map(|&b| (b as f32 - 128.0) / 37.0)
                .collect();
            let (w, x) = (&f[..n], &f[n..]);
            let xs = [&x[..n], &x[n..2 * n], &x[2 * n..3 * n]];
            let one: Vec<u32> = xs
                .iter()
                .map(|x| unsafe { super::super::avx2::dot(w, x) }.to_bits())
                .collect();
            let three = unsafe { dots::<3>(w, xs) }.map(f32::to_bits);
            let two = unsafe { dots::<2>(w, [xs[0], xs[1]]) }.map(f32::to_bits);
            assert_eq!(one, three.to_vec(), "n {n}");
            assert_eq!(one[..2], two[..], "n {n}");
        }
    }
}
