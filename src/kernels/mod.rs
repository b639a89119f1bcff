//! CPU kernels: the canonical arithmetic of docs/DETERMINISM.md over plain
//! slices. They know nothing of tensors, models or devices.
//!
//! Each kernel body is written once, generic over nothing, and compiled twice:
//! as portable code, and inside a `#[target_feature(enable = "avx2,fma,f16c")]`
//! wrapper where LLVM vectorises the 32 independent lanes. Both compute every
//! lane with the same correctly rounded operations in the same order, so the
//! bits are the same; `Isa` only picks the speed.

pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
pub mod dot;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod qdot;
pub mod quant;
pub mod rope;
pub mod softmax;

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction set the kernels are compiled for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-512 (F, BW, VL) with VNNI for the integer products.
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

    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

// 0 = not chosen yet, 1 = scalar, 2 = avx2, 3 = avx512.
static ISA: AtomicU8 = AtomicU8::new(0);

/// The ISA in use: forced by `set_isa` or `INFER_EVAL_ISA`, else detected.
pub fn isa() -> Isa {
    match ISA.load(Ordering::Relaxed) {
        1 => Isa::Scalar,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let chosen = std::env::var("INFER_EVAL_ISA")
                .ok()
                .and_then(|s| Isa::parse(&s))
                .filter(|i| Isa::available().contains(i))
                .unwrap_or_else(Isa::detect);
            set_isa(chosen).expect("detected ISA is available");
            chosen
        }
    }
}

/// Force an ISA; an error if this machine lacks it.
pub fn set_isa(isa: Isa) -> Result<(), String> {
    if !Isa::available().contains(&isa) {
        return Err(format!(
            "ISA '{}' is not available on this CPU (available: {})",
            isa.name(),
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    ISA.store(
        match isa {
            Isa::Scalar => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
        },
        Ordering::Relaxed,
    );
    Ok(())
}

/// Defines `pub fn $name(args) -> ret` that runs `$body` compiled for the ISA
/// in use. The body must be pure arithmetic over its arguments.
macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            match $crate::kernels::isa() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: isa() returns Avx2 only when the CPU has avx2 and fma.
                $crate::kernels::Isa::Avx2 | $crate::kernels::Isa::Avx512 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
