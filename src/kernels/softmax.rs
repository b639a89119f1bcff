//! Log-softmax over a logits row (docs/DETERMINISM.md §7): max (exact), our
//! exp of each shifted logit (vectorised where the ISA allows, same bits),
//! a sequential sum in index order, then our ln.

use crate::numerics::{exp_f32, ln_f64};

/// log softmax(l)[idx] for every idx in `ids`, from one pass over `l`.
pub fn log_softmax_at(l: &[f32], ids: &[usize]) -> Vec<f64> {
    let mut max = f32::NEG_INFINITY;
    for &v in l {
        if v > max {
            max = v;
        }
    }
    let mut e = vec![0f32; l.len()];
    #[cfg(target_arch = "x86_64")]
    if super::isa() != super::Isa::Scalar {
        // SAFETY: isa() is Avx2 only when the CPU has avx2, fma and f16c.
        unsafe { super::avx2::exp_shifted(l, max, &mut e) };
    } else {
        e.iter_mut()
            .zip(l)
            .for_each(|(o, &v)| *o = exp_f32(v - max));
    }
    #[cfg(not(target_arch = "x86_64"))]
    e.iter_mut()
        .zip(l)
        .for_each(|(o, &v)| *o = exp_f32(v - max));
    let mut sum = 0f32;
    for &v in &e {
        sum += v;
    }
    let lse = max as f64 + ln_f64(sum as f64);
    ids.iter().map(|&i| l[i] as f64 - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_definition_on_every_isa() {
        let l: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 2000) as f32 * 0.05 - 60.0)
            .chain([f32::NEG_INFINITY, 95.0])
            .collect();
        let want: Vec<f64> = (0..l.len())
            .step_by(37)
            .map(|i| crate::numerics::log_softmax_at(&l, i))
            .collect();
        let ids: Vec<usize> = (0..l.len()).step_by(37).collect();
        for isa in crate::kernels::Isa::available() {
            crate::kernels::set_isa(isa).unwrap();
            let got = log_softmax_at(&l, &ids);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}",
                isa.name()
            );
        }
        crate::kernels::set_isa(crate::kernels::Isa::detect()).unwrap();
    }

    #[test]
    fn vector_exp_is_bit_identical() {
        for isa in crate::kernels::Isa::available() {
            if isa == crate::kernels::Isa::Scalar {
                continue;
            }
            let x: Vec<f32> = (0..200_000)
                .map(|i| (i as f32 - 100_000.0) * 0.001_1)
                .chain([f32::NAN, 88.5, -87.5, 1e30, -1e30])
                .collect();
            let mut out = vec![0f32; x.len()];
            #[cfg(target_arch = "x86_64")]
            unsafe {
                crate::kernels::avx2::exp_shifted(&x, 0.0, &mut out)
            };
            for (a, b) in x.iter().zip(&out) {
                let want = exp_f32(*a);
                assert!(
                    want.to_bits() == b.to_bits() || (want.is_nan() && b.is_nan()),
                    "exp({a}): {want} vs {b}"
                );
            }
        }
    }
}
