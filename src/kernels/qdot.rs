//! Integer block dot products for Q4_0, Q4_1, Q5_0 and Q8_0 weights
//! (docs/DETERMINISM.md §3b): activations are quantised to 8 bits per
//! 32-element block, each block's products are summed exactly in integers
//! (8 lanes of 4 elements), and blocks are combined with fma in block order.

use super::quant::WeightFormat;

/// An activation row quantised per 32-element block.
#[derive(Debug, Clone, PartialEq)]
pub struct Q8Row {
    /// Scale per block: max |x| / 127, rounded to f16.
    pub d: Vec<f32>,
    /// (max |x| / 127) * (sum of the block's q) rounded to f16, for Q4_1's offset term.
    pub s: Vec<f32>,
    pub q: Vec<i8>,
}

pub fn is_integer_format(fmt: WeightFormat) -> bool {
    matches!(
        fmt,
        WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q5_0 | WeightFormat::Q8_0
    )
}

super::multiversion! {
    /// Quantise x (length a multiple of 32), as llama.cpp's AVX2 code does:
    /// q = round-half-even(x * (127 / amax)) clamped to ±127; the scale
    /// d = amax / 127 and s = d * sum(q) are then rounded to f16. A block
    /// holding a NaN or an infinity gets d = s = NaN (and q = 0).
    pub fn quantize_row(x: &[f32]) -> Q8Row {
        let nb = x.len() / 32;
        let mut out = Q8Row { d: Vec::with_capacity(nb), s: Vec::with_capacity(nb), q: vec![0; x.len()] };
        for (b, blk) in x.chunks_exact(32).enumerate() {
            let mut amax = 0f32;
            let mut finite = true;
            for &v in blk {
                let a = v.abs();
                if a > amax {
                    amax = a;
                }
                finite &= v.is_finite();
            }
            if !finite {
                // A NaN or infinity is never quantised away: the block's
                // scales become NaN, so every output that reads it is NaN,
                // as in the float formats (docs/DETERMINISM.md §3b).
                out.d.push(f32::NAN);
                out.s.push(f32::NAN);
                continue;
            }
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (j, &v) in blk.iter().enumerate() {
                let q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
                out.q[b * 32 + j] = q;
                sum += q as i32;
            }
            out.d.push(half::f16::from_f32(d).to_f32());
            out.s.push(half::f16::from_f32(d * sum as f32).to_f32());
        }
        out
    }
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The integer weights of block `blk` in element order, and (d, m).
#[inline(always)]
fn weights(fmt: WeightFormat, blk: &[u8], w: &mut [i32; 32]) -> (f32, f32) {
    match fmt {
        WeightFormat::Q8_0 => {
            for j in 0..32 {
                w[j] = blk[2 + j] as i8 as i32;
            }
            (f16_at(blk, 0), 0.0)
        }
        WeightFormat::Q5_0 => {
            let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
            for j in 0..16 {
                w[j] = ((blk[6 + j] & 0xF) as u32 | ((qh >> j) & 1) << 4) as i32 - 16;
                w[j + 16] = ((blk[6 + j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4) as i32 - 16;
            }
            (f16_at(blk, 0), 0.0)
        }
        WeightFormat::Q4_0 => {
            for j in 0..16 {
                w[j] = (blk[2 + j] & 0xF) as i32 - 8;
                w[j + 16] = (blk[2 + j] >> 4) as i32 - 8;
            }
            (f16_at(blk, 0), 0.0)
        }
        _ => {
            for j in 0..16 {
                w[j] = (blk[4 + j] & 0xF) as i32;
                w[j + 16] = (blk[4 + j] >> 4) as i32;
            }
            (f16_at(blk, 0), f16_at(blk, 2))
        }
    }
}

/// The reference: one output, dot(W row, x) in the integer contract.
pub fn dot(fmt: WeightFormat, row: &[u8], x: &Q8Row) -> f32 {
    let bb = fmt.block_bytes();
    let mut acc = [0f32; 8];
    let mut acc_m = 0f32;
    let mut w = [0i32; 32];
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let (dw, mw) = weights(fmt, blk, &mut w);
        let q = &x.q[b * 32..b * 32 + 32];
        let scale = dw * x.d[b];
        for (l, a) in acc.iter_mut().enumerate() {
            let isum: i32 = (4 * l..4 * l + 4).map(|j| w[j] * q[j] as i32).sum();
            *a = scale.mul_add(isum as f32, *a);
        }
        if fmt == WeightFormat::Q4_1 {
            acc_m = mw.mul_add(x.s[b], acc_m);
        }
    }
    for l in 0..4 {
        acc[l] += acc[l + 4];
    }
    for l in 0..2 {
        acc[l] += acc[l + 2];
    }
    let r = acc[0] + acc[1];
    if fmt == WeightFormat::Q4_1 {
        r + acc_m
    } else {
        r
    }
}

/// Portable kernel: rows of W against quantised rows of x; out[r * m + t].
pub fn rows(fmt: WeightFormat, w_rows: &[u8], xs: &[Q8Row], k: usize, out: &mut [f32]) {
    let rb = fmt.row_bytes(k).expect("checked at load");
    let m = xs.len();
    for (r, row) in w_rows.chunks_exact(rb).enumerate() {
        for (t, x) in xs.iter().enumerate() {
            out[r * m + t] = dot(fmt, row, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_by_hand() {
        let mut x = vec![0f32; 32];
        x[0] = 2.54;
        x[1] = -1.27;
        x[2] = 0.005;
        let q = quantize_row(crate::kernels::Isa::Scalar, &x);
        assert_eq!(q.d[0], half::f16::from_f32(2.54f32 / 127.0).to_f32());
        assert_eq!(&q.q[..3], &[127, -64, 0]); // -63.5 rounds to even
        assert_eq!(q.s[0], half::f16::from_f32(2.54f32 / 127.0 * 63.0).to_f32());
        assert_eq!(
            quantize_row(crate::kernels::Isa::Scalar, &[0f32; 32]).q,
            vec![0i8; 32]
        );
    }

    /// A NaN or infinity in a block makes its scales NaN on every ISA (it
    /// used to quantise to 0 and vanish); other blocks are untouched.
    #[test]
    fn non_finite_blocks_get_nan_scales() {
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x: Vec<f32> = (0..64).map(|i| i as f32 * 0.1 - 3.0).collect();
            x[40] = bad;
            for isa in crate::kernels::Isa::under_test() {
                let q = quantize_row(isa, &x);
                assert!(!q.d[0].is_nan() && !q.s[0].is_nan(), "{}", isa.name());
                assert!(
                    q.d[1].is_nan() && q.s[1].is_nan(),
                    "{bad} on {}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn close_to_the_float_product() {
        let k = 256;
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let xq = quantize_row(crate::kernels::Isa::Scalar, &x);
        for fmt in [
            WeightFormat::Q4_0,
            WeightFormat::Q4_1,
            WeightFormat::Q5_0,
            WeightFormat::Q8_0,
        ] {
            let mut row = Vec::new();
            for b in 0..k / 32 {
                row.extend_from_slice(&half::f16::from_f32(0.01 * (b + 1) as f32).to_le_bytes());
                if fmt == WeightFormat::Q4_1 {
                    row.extend_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
                }
                if fmt == WeightFormat::Q5_0 {
                    row.extend_from_slice(&(0x9e37_79b9u32.rotate_left(b as u32)).to_le_bytes());
                }
                let n = if fmt == WeightFormat::Q8_0 { 32 } else { 16 };
                row.extend((0..n).map(|j| (j * 29 + b * 7) as u8));
            }
            let mut w = vec![0f32; k];
            super::super::quant::dequantize_row(fmt, &row, &mut w);
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let norm: f64 = w
                .iter()
                .zip(&x)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let got = dot(fmt, &row, &xq) as f64;
            assert!(
                (got - exact).abs() < 0.01 * norm,
                "{}: {got} vs {exact}",
                fmt.name()
            );
        }
    }
}
