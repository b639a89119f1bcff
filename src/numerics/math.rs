//! f32 `exp` (the hot one, mirrored in kernels/*.cu) and f64 `exp`, `ln`,
//! `cos`/`sin` and `pow` used for tables computed once (RoPE frequencies).

/// exp(x) in f32: exp(x) = 2^n * p(r), r = x - n ln2, |r| <= ln2/2, with a
/// degree-7 polynomial in Horner form using fma. Max relative error vs libm
/// about 1.2e-7. Same code in kernels/det_math.cuh.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.0 {
        return f32::INFINITY;
    }
    if x < -87.0 {
        return 0.0;
    }
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let mut r = (-n).mul_add(0.693_145_75_f32, x);
    r = (-n).mul_add(1.428_606_8e-6_f32, r);
    let mut p = 1.0f32 / 5040.0;
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let e = n as i32 + 127;
    p * f32::from_bits((e << 23) as u32)
}

/// silu(x) = x / (1 + exp(-x)), with our exp.
#[inline(always)]
pub fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// Taylor coefficients of tanh(x) = x + x^3 * Q(x^2), Q's from the constant
/// term up (as f32 of these fractions): -1/3, 2/15, -17/315, 62/2835,
/// -1382/155925, 21844/6081075, -929569/638512875, 6404582/10854718875.
const TANH_Q: [f32; 8] = [
    -1.0 / 3.0,
    2.0 / 15.0,
    -17.0 / 315.0,
    62.0 / 2835.0,
    -1382.0 / 155925.0,
    21844.0 / 6081075.0,
    -929569.0 / 638512875.0,
    6404582.0 / 10854718875.0,
];

/// tanh(x) in f32 (docs/DETERMINISM.md §4b): NaN -> NaN; +-0 -> +-0;
/// |x| >= 9 -> +-1; |x| < 0.5: x + x^3 Q(x^2), Q by Horner with fma; otherwise
/// 1 - 2 / (exp(2|x|) + 1) with our exp, the sign of x. Max relative error
/// against libm about 3e-7.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a >= 9.0 {
        return 1.0f32.copysign(x);
    }
    if a == 0.0 {
        return x; // keeps the sign of zero
    }
    if a < 0.5 {
        let y2 = x * x;
        let mut q = TANH_Q[7];
        for c in TANH_Q[..7].iter().rev() {
            q = q.mul_add(y2, *c);
        }
        return (x * y2).mul_add(q, x);
    }
    let e = exp_f32(2.0 * a);
    (1.0 - 2.0 / (e + 1.0)).copysign(x)
}

/// The tanh approximation of GELU, as llama.cpp's f32 code and
/// `gelu_pytorch_tanh` write it: 0.5x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))),
/// operation by operation: u = (c * x) * (1 + (a * x) * x); (0.5 * x) * (1 + tanh(u)).
#[inline(always)]
pub fn gelu_tanh_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    let u = (SQRT_2_OVER_PI * x) * (1.0 + (COEF_A * x) * x);
    (0.5 * x) * (1.0 + tanh_f32(u))
}

/// Soft-capping (Gemma 2): tanh(x * (1 / cap)) * cap, `inv_cap` = 1 / cap in f32.
#[inline(always)]
pub fn softcap_f32(x: f32, inv_cap: f32, cap: f32) -> f32 {
    tanh_f32(x * inv_cap) * cap
}

const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// exp(x) in f64: range reduction by ln2 (two-part constant) and a degree-13
/// Taylor polynomial on |r| <= ln2/2 (truncation error below 1e-17).
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -708.0 {
        return 0.0;
    }
    let n = (x * std::f64::consts::LOG2_E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = 0.0f64;
    let mut fact = [1.0f64; 14];
    for i in 1..14 {
        fact[i] = fact[i - 1] * i as f64;
    }
    for i in (0..14).rev() {
        p = p.mul_add(r, 1.0 / fact[i]);
    }
    let e = n as i64 + 1023;
    p * f64::from_bits((e as u64) << 52)
}

/// Natural log in f64 for finite x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
/// ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, series to s^23.
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let mut bits = x.to_bits();
    let mut e: i64 = 0;
    if (bits >> 52) == 0 {
        // subnormal: scale up by 2^54
        bits = (x * f64::from_bits((1023u64 + 54) << 52)).to_bits();
        e -= 54;
    }
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 0.0f64;
    for k in (0..12).rev() {
        p = p.mul_add(s2, 1.0 / (2 * k + 1) as f64);
    }
    let lnm = 2.0 * s * p;
    (e as f64).mul_add(LN2_LO, (e as f64).mul_add(LN2_HI, lnm))
}

/// x^y for x > 0, as exp(y ln x).
pub fn pow_f64(x: f64, y: f64) -> f64 {
    exp_f64(y * ln_f64(x))
}

// pi/2 split in three parts for Cody-Waite reduction (each exactly representable).
const PIO2_1: f64 = 1.570_796_326_734_125_6;
const PIO2_2: f64 = 6.077_100_506_303_966e-11;
const PIO2_3: f64 = 2.022_266_248_795_950_6e-21;

/// (cos x, sin x) in f64, for |x| up to about 1e9 (RoPE angles are position
/// times a frequency <= 1). Cody-Waite reduction by pi/2, then Taylor
/// polynomials on |r| <= pi/4.
pub fn cos_sin_f64(x: f64) -> (f64, f64) {
    if !x.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    let k = (x * std::f64::consts::FRAC_2_PI).round_ties_even();
    let r = (-k).mul_add(PIO2_3, (-k).mul_add(PIO2_2, (-k).mul_add(PIO2_1, x)));
    let r2 = r * r;
    // sin r = r (1 - r^2/3! + r^4/5! ...), cos r = 1 - r^2/2! + ...
    let mut s = 0.0f64;
    let mut c = 0.0f64;
    let mut fact = [1.0f64; 20];
    for i in 1..20 {
        fact[i] = fact[i - 1] * i as f64;
    }
    for i in (0..9).rev() {
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        s = s.mul_add(r2, sign / fact[2 * i + 1]);
        c = c.mul_add(r2, sign / fact[2 * i]);
    }
    let sin_r = r * s;
    let cos_r = c;
    match (k as i64).rem_euclid(4) {
        0 => (cos_r, sin_r),
        1 => (-sin_r, cos_r),
        2 => (-cos_r, -sin_r),
        _ => (sin_r, -cos_r),
    }
}

/// Score i of a query: the canonical dot, scaled, soft-capped if asked.
#[inline(always)]
pub fn attention_score(d: f32, scale: f32, softcap: Option<f32>) -> f32 {
    let s = d * scale;
    match softcap {
        Some(cap) => softcap_f32(s, 1.0 / cap, cap),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn exp_f32_close_to_libm() {
        let mut st = 1u64;
        for _ in 0..100_000 {
            let x = (lcg(&mut st) * 170.0 - 86.0) as f32;
            let ours = exp_f32(x) as f64;
            let libm = (x as f64).exp();
            assert!(
                ((ours - libm) / libm).abs() < 2.5e-7,
                "x={x} ours={ours} libm={libm}"
            );
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert_eq!(exp_f32(1000.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn tanh_and_gelu_close_to_libm() {
        let mut st = 11u64;
        let mut worst = 0f64;
        for i in 0..200_000 {
            let x = if i % 2 == 0 {
                (lcg(&mut st) * 24.0 - 12.0) as f32
            } else {
                ((lcg(&mut st) - 0.5) * 1.2) as f32
            };
            let (ours, libm) = (tanh_f32(x) as f64, (x as f64).tanh());
            if libm != 0.0 {
                worst = worst.max(((ours - libm) / libm).abs());
            }
            let g = gelu_tanh_f32(x) as f64;
            let xd = x as f64;
            let want = 0.5
                * xd
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd))
                        .tanh());
            // 1 + tanh(u) cancels for negative x: an absolute error of a few
            // f32 ulps of x is inherent to the formula (also llama.cpp's).
            let tol = 1e-6 * want.abs() + 2e-7 * xd.abs().max(1.0);
            assert!((g - want).abs() <= tol, "gelu({x}) = {g}, want {want}");
        }
        assert!(worst < 4e-7, "tanh relative error {worst:e}");
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn f64_functions_close_to_libm() {
        let mut st = 7u64;
        for _ in 0..20_000 {
            let x = lcg(&mut st) * 1400.0 - 700.0;
            let (a, b) = (exp_f64(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-14, "exp({x}): {a} vs {b}");
            let y = lcg(&mut st) * 1e6 + 1e-300;
            let (a, b) = (ln_f64(y), y.ln());
            assert!(
                (a - b).abs() < 1e-14 * b.abs().max(1.0),
                "ln({y}): {a} vs {b}"
            );
            let z = lcg(&mut st) * 2e5 - 1e5;
            let (c, s) = cos_sin_f64(z);
            assert!((c - z.cos()).abs() < 1e-11, "cos({z}): {c} vs {}", z.cos());
            assert!((s - z.sin()).abs() < 1e-11, "sin({z}): {s} vs {}", z.sin());
        }
        assert!((pow_f64(100000.0, -0.5) - 100000f64.powf(-0.5)).abs() < 1e-17);
    }
}

/// log softmax(l)[idx] = l[idx] - (max + ln(sum_i exp(l_i - max))): each
/// exp in f32 with our exp, converted exactly to f64 and summed over 32
/// strided lanes (lane j: i = j, j+32, ... ascending), the lanes folded by
/// the fixed tree 16, 8, 4, 2, 1, the log in f64 with our ln. The reference
/// definition of docs/DETERMINISM.md §7b, element by element.
pub fn log_softmax_at(l: &[f32], idx: usize) -> f64 {
    let mut max = f32::NEG_INFINITY;
    for &v in l {
        if v > max {
            max = v;
        }
    }
    let mut lanes = [0f64; 32];
    for (i, &v) in l.iter().enumerate() {
        lanes[i % 32] += exp_f32(v - max) as f64;
    }
    for half in [16, 8, 4, 2, 1] {
        for j in 0..half {
            lanes[j] += lanes[j + half];
        }
    }
    l[idx] as f64 - (max as f64 + ln_f64(lanes[0]))
}
