//! CPU kernels: the canonical arithmetic of docs/DETERMINISM.md over plain
//! slices. They know nothing of tensors, models or devices.
//!
//! Each kernel body is written once, generic over nothing, and compiled twice:
//! as portable code, and inside a `#[target_feature(enable = "avx2,fma,f16c")]`
//! wrapper where LLVM vectorises the 32 independent lanes. Both compute every
//! lane with the same correctly rounded operations in the same order, so the
//! bits are the same; `Isa` only picks the speed. Every kernel entry point
//! takes the ISA as its first argument: there is no hidden global, so a test
//! comparing two ISAs compares exactly those two.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx2_float;
pub mod dot;
pub mod elementwise;
pub mod fp_env;
#[cfg(target_arch = "x86_64")]
pub mod gemm_f32;
pub mod gemm_int;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod qdot;
pub mod quant;
pub mod rope;
pub mod softmax;

use std::sync::OnceLock;

/// Instruction set the kernels are compiled for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// The AVX2 float code, plus AVX-512 VNNI (with F, BW, VL) for the
    /// integer block products. There is no 16-wide float path: the float
    /// kernels are the AVX2 ones (same bits on every ISA by contract).
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The best ISA this machine supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c");
            let avx512 = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni");
            if avx2 && avx512 {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    pub fn available() -> Vec<Isa> {
        match Isa::detect() {
            Isa::Scalar => vec![Isa::Scalar],
            Isa::Avx2 => vec![Isa::Scalar, Isa::Avx2],
            Isa::Avx512 => vec![Isa::Scalar, Isa::Avx2, Isa::Avx512],
        }
    }

    /// Every ISA of this CPU, for a test that compares them: fails where
    /// only the scalar path is here, since comparing scalar with itself
    /// proves nothing.
    #[cfg(test)]
    pub(crate) fn under_test() -> Vec<Isa> {
        let v = Isa::available();
        assert!(
            v.len() >= 2,
            "this CPU has only the scalar ISA: the comparison of ISAs would compare scalar with itself"
        );
        v
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

impl Isa {
    /// Panics (never undefined behaviour) if this CPU lacks the ISA: the
    /// kernels' vector paths are only sound where it is available.
    #[inline]
    pub fn assert_available(self) {
        if self != Isa::Scalar && !self.is_available() {
            panic!("ISA '{}' is not available on this CPU", self.name());
        }
    }

    pub fn is_available(self) -> bool {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        let best = *DETECTED.get_or_init(Isa::detect);
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => best != Isa::Scalar,
            Isa::Avx512 => best == Isa::Avx512,
        }
    }

    /// What each ISA runs, for records and `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Scalar => "portable code",
            Isa::Avx2 => "AVX2+FMA+F16C: 8-wide float lanes, maddubs integer block sums",
            Isa::Avx512 => {
                "the AVX2 float code, with AVX-512 VNNI (dpbusd) for the integer block sums"
            }
        }
    }
}

/// An ISA named by `--isa` or `INFER_EVAL_ISA`: an error naming the bad
/// value, or an ISA this CPU lacks (with the ones it has).
pub fn parse_isa(s: &str, origin: &str) -> Result<Isa, String> {
    let isa = Isa::parse(s.trim())
        .ok_or_else(|| format!("{origin} '{s}': expected scalar, avx2 or avx512"))?;
    if !isa.is_available() {
        return Err(format!(
            "{origin} '{s}': ISA '{}' is not available on this CPU (available: {})",
            isa.name(),
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(isa)
}

static DEFAULT: OnceLock<Isa> = OnceLock::new();

/// Fix the process's default ISA (`--isa`); an error if this CPU lacks it
/// or a different default was already fixed.
pub fn set_default_isa(isa: Isa) -> Result<(), String> {
    if !isa.is_available() {
        return parse_isa(isa.name(), "--isa").map(|_| ());
    }
    let got = *DEFAULT.get_or_init(|| isa);
    if got != isa {
        return Err(format!(
            "the default ISA is already '{}'; it cannot change to '{}'",
            got.name(),
            isa.name()
        ));
    }
    Ok(())
}

/// The ISA models use unless told otherwise: the one fixed by
/// `set_default_isa`, else `INFER_EVAL_ISA` (a bad or unavailable value is
/// an error, never silently replaced), else the best this CPU has.
pub fn default_isa() -> Result<Isa, String> {
    if let Some(i) = DEFAULT.get() {
        return Ok(*i);
    }
    let isa = match std::env::var("INFER_EVAL_ISA") {
        Ok(v) if !v.trim().is_empty() => parse_isa(&v, "INFER_EVAL_ISA")?,
        _ => Isa::detect(),
    };
    Ok(*DEFAULT.get_or_init(|| isa))
}

/// Defines `pub fn $name(isa, args) -> ret` that runs `$body` compiled for
/// `isa`. The body must be pure arithmetic over its arguments.
macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name(isa: $crate::kernels::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            isa.assert_available();
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: assert_available checked that the CPU has avx2, fma and f16c.
                $crate::kernels::Isa::Avx2 | $crate::kernels::Isa::Avx512 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
