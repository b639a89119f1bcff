//! The canonical dot product (docs/DETERMINISM.md §2): 32 strided lanes, each a
//! sequential chain of fused multiply-adds in index order, then a fixed
//! pairwise tree (16, 8, 4, 2, 1).

use crate::numerics::LANES;

/// Lane accumulation: acc[j] = fma(a[k], b[k], acc[j]) for k = j, j+32, ...
#[inline(always)]
pub fn accumulate(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    debug_assert_eq!(a.len(), b.len());
    let full = a.len() / LANES * LANES;
    for (ca, cb) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for j in 0..LANES {
            acc[j] = ca[j].mul_add(cb[j], acc[j]);
        }
    }
    for (j, (x, y)) in a[full..].iter().zip(&b[full..]).enumerate() {
        acc[j] = x.mul_add(*y, acc[j]);
    }
}

/// The fixed tree that folds 32 lanes into one value (f32 lanes of the dot
/// product, f64 lanes of the log-softmax sum).
#[inline(always)]
pub fn tree<T: Copy + std::ops::AddAssign>(mut acc: [T; LANES]) -> T {
    let mut half = LANES / 2;
    while half > 0 {
        for j in 0..half {
            acc[j] += acc[j + half];
        }
        half /= 2;
    }
    acc[0]
}

/// The canonical dot product of two equal-length slices.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    accumulate(&mut acc, a, b);
    tree(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference, written as the document states it, element by element.
    fn reference(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 32];
        for j in 0..32 {
            let mut k = j;
            while k < a.len() {
                acc[j] = a[k].mul_add(b[k], acc[j]);
                k += 32;
            }
        }
        let mut off = 16;
        while off > 0 {
            for j in 0..off {
                acc[j] += acc[j + off];
            }
            off /= 2;
        }
        acc[0]
    }

    #[test]
    fn matches_reference_for_all_lengths() {
        let mut s = 3u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for n in 0..300 {
            let a: Vec<f32> = (0..n).map(|_| r()).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            assert_eq!(dot(&a, &b).to_bits(), reference(&a, &b).to_bits(), "n={n}");
        }
    }
}
