//! Log-softmax over a logits row (docs/DETERMINISM.md §7b): max (exact), our
//! exp of each shifted logit in f32 (vectorised where the ISA allows, same
//! bits), the exponentials summed in f64 over 32 strided lanes and a fixed
//! tree, then our ln in f64. Runs on the host for every device (logits are
//! copied back for sampling anyway).

use super::multiversion;
use super::Isa;
use crate::numerics::{exp_f32, ln_f64, LANES};

multiversion! {
    /// The contract's f64 sum of f32 values: lane j accumulates v[j], v[j+32],
    /// ... in index order (each v converted exactly to f64), then the fixed
    /// tree 16, 8, 4, 2, 1 (docs/DETERMINISM.md §7b).
    pub fn sum_f64_lanes(v: &[f32]) -> f64 {
        let mut acc = [0f64; LANES];
        let full = v.len() / LANES * LANES;
        for c in v[..full].chunks_exact(LANES) {
            for j in 0..LANES {
                acc[j] += c[j] as f64;
            }
        }
        for (j, &x) in v[full..].iter().enumerate() {
            acc[j] += x as f64;
        }
        super::dot::tree(acc)
    }
}

/// out[i] = exp(x[i] - shift) with our exp, on `isa` (same bits everywhere).
pub fn exp_shifted(isa: Isa, x: &[f32], shift: f32, out: &mut [f32]) {
    isa.assert_available();
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: checked above: the CPU has avx2, fma and f16c.
        return unsafe { super::avx2::exp_shifted(x, shift, out) };
    }
    out.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = exp_f32(v - shift));
}

/// log softmax(l)[idx] for every idx in `ids`, from one pass over `l`.
pub fn log_softmax_at(isa: Isa, l: &[f32], ids: &[usize]) -> Vec<f64> {
    let lse = log_sum_exp(isa, l);
    ids.iter().map(|&i| l[i] as f64 - lse).collect()
}

/// log softmax(l) of `chosen` and of the `n` most likely tokens (logit
/// descending, id ascending on ties), all from one log-sum-exp, so the
/// chosen token's value is the very float of its entry in the top list.
pub fn log_softmax_top(isa: Isa, l: &[f32], chosen: usize, n: usize) -> (f64, Vec<(u32, f64)>) {
    let lse = log_sum_exp(isa, l);
    let mut top: Vec<u32> = Vec::with_capacity(n + 1);
    if n > 0 {
        // Rank NaN lowest, as the sampler does (logits are checked finite anyway).
        let key = |i: u32| {
            let v = l[i as usize];
            if v.is_nan() {
                f32::NEG_INFINITY
            } else {
                v
            }
        };
        let better = |a: u32, b: u32| key(a) > key(b) || (key(a) == key(b) && a < b);
        for i in 0..l.len() as u32 {
            if top.len() == n && !better(i, top[n - 1]) {
                continue;
            }
            let at = top.partition_point(|&t| better(t, i));
            top.insert(at, i);
            top.truncate(n);
        }
    }
    let lp = |i: usize| l[i] as f64 - lse;
    (
        lp(chosen),
        top.into_iter().map(|i| (i, lp(i as usize))).collect(),
    )
}

/// log sum exp(l), the contract's way (the log-softmax's normaliser).
pub fn log_sum_exp(isa: Isa, l: &[f32]) -> f64 {
    let mut max = f32::NEG_INFINITY;
    for &v in l {
        if v > max {
            max = v;
        }
    }
    let mut e = vec![0f32; l.len()];
    exp_shifted(isa, l, max, &mut e);
    max as f64 + ln_f64(sum_f64_lanes(isa, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_list_is_ranked_and_holds_the_chosen_float() {
        let l: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919) % 503) as f32 * 0.01)
            .collect();
        let isa = Isa::available()[0];
        let (lp, top) = log_softmax_top(isa, &l, 502, 20);
        assert_eq!(top.len(), 20);
        let mut want: Vec<u32> = (0..l.len() as u32).collect();
        want.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), want[..20]);
        let at = log_softmax_at(isa, &l, &[502, top[0].0 as usize]);
        assert_eq!(lp.to_bits(), at[0].to_bits());
        assert_eq!(top[0].1.to_bits(), at[1].to_bits());
        if let Some(t) = top.iter().find(|t| t.0 == 502) {
            assert_eq!(t.1.to_bits(), lp.to_bits());
        }
        assert!(log_softmax_top(isa, &l, 0, 0).1.is_empty());
    }

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
        for isa in Isa::under_test() {
            let got = log_softmax_at(isa, &l, &ids);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}",
                isa.name()
            );
        }
        eprintln!(
            "log-softmax: compared {} with the reference definition",
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    #[test]
    fn vector_exp_is_bit_identical() {
        let x: Vec<f32> = (0..200_000)
            .map(|i| (i as f32 - 100_000.0) * 0.001_1)
            .chain([f32::NAN, 88.5, -87.5, 1e30, -1e30])
            .collect();
        for isa in Isa::under_test() {
            let mut out = vec![0f32; x.len()];
            exp_shifted(isa, &x, 0.0, &mut out);
            for (a, b) in x.iter().zip(&out) {
                let want = exp_f32(*a);
                assert!(
                    want.to_bits() == b.to_bits() || (want.is_nan() && b.is_nan()),
                    "exp({a}) on {}: {want} vs {b}",
                    isa.name()
                );
            }
        }
    }

    /// Logits shaped like a real model's: mostly around a few units below
    /// the top, a long tail, a few large ones. Deterministic.
    fn logits_row(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                // Box-Muller: N(0, 2.5), plus a rare spike.
                let z = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
                let spike = if u() < 1e-4 { 12.0 } else { 0.0 };
                (z * 2.5 + spike) as f32
            })
            .collect()
    }

    /// The exact log-likelihood, to within 1e-15: libm exp in f64, a
    /// compensated sum.
    fn exact(l: &[f32], idx: usize) -> f64 {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let (mut s, mut c) = (0f64, 0f64);
        for &v in l {
            let y = (v as f64 - m).exp() - c;
            let t = s + y;
            c = (t - s) - y;
            s = t;
        }
        l[idx] as f64 - (m + s.ln())
    }

    /// Version 2 of the contract: one sequential f32 chain.
    fn f32_chain(l: &[f32], idx: usize) -> f64 {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f32;
        for &v in l {
            s += exp_f32(v - m);
        }
        l[idx] as f64 - (m as f64 + ln_f64(s as f64))
    }

    /// Item 6 of issue 11: over a 49,152 (SmolLM2) and a 262,144 (Gemma)
    /// vocabulary the f64 lanes stay within 2e-7 of the exact
    /// log-likelihood; the old f32 chain did not (printed for the record).
    #[test]
    fn log_likelihood_error_against_f64() {
        for n in [49_152usize, 262_144] {
            let (mut ours, mut old) = (0f64, 0f64);
            for seed in 1..=4 {
                let l = logits_row(n, seed);
                for idx in [0, n / 3, n - 1] {
                    let want = exact(&l, idx);
                    let got = log_softmax_at(Isa::detect(), &l, &[idx])[0];
                    ours = ours.max((got - want).abs());
                    old = old.max((f32_chain(&l, idx) - want).abs());
                }
            }
            eprintln!(
                "vocab {n}: max |log p error| f64 lanes {ours:.3e}, f32 chain (v2) {old:.3e}"
            );
            assert!(ours < 2e-7, "vocab {n}: error {ours}");
        }
    }
}
