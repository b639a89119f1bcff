//! The floating-point environment the contract assumes (docs/DETERMINISM.md
//! §1): round to nearest even, no flush-to-zero, no denormals-are-zero. On
//! x86 these are MXCSR bits, which a library loaded into the process (or a
//! `-ffast-math` build of one) can change behind our back; we check them at
//! start-up, at model load and at every forward call, instead of trusting.

/// MXCSR bits that change SSE/AVX results: flush-to-zero (15), the rounding
/// control (13-14) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const MXCSR_FTZ: u32 = 1 << 15;
#[cfg(target_arch = "x86_64")]
const MXCSR_RC: u32 = 3 << 13;
#[cfg(target_arch = "x86_64")]
const MXCSR_DAZ: u32 = 1 << 6;

/// This thread's MXCSR.
#[cfg(target_arch = "x86_64")]
pub fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // Safety: stmxcsr stores the 32-bit control register to the given address.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags));
    }
    v
}

/// Ok if this thread computes as the contract says; else what is wrong.
pub fn check() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let m = mxcsr();
        let mut bad = Vec::new();
        if m & MXCSR_FTZ != 0 {
            bad.push("flush-to-zero (FTZ) is on");
        }
        if m & MXCSR_DAZ != 0 {
            bad.push("denormals-are-zero (DAZ) is on");
        }
        if m & MXCSR_RC != 0 {
            bad.push("the rounding mode is not round-to-nearest");
        }
        if !bad.is_empty() {
            return Err(format!(
                "the CPU's floating-point mode (MXCSR {m:#06x}) breaks the determinism contract: {}; something in this process (a library built with fast-math?) changed it",
                bad.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn set_mxcsr(v: u32) {
        // Safety: ldmxcsr loads a valid control word (reserved bits kept as read).
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags));
        }
    }

    /// Each forbidden bit is caught, on a thread of its own (MXCSR is per thread).
    #[test]
    fn ftz_daz_and_rounding_are_refused() {
        assert!(check().is_ok(), "{:?}", check());
        for bit in [MXCSR_FTZ, MXCSR_DAZ, 1 << 13] {
            std::thread::spawn(move || {
                let before = mxcsr();
                set_mxcsr(before | bit);
                let r = check();
                set_mxcsr(before);
                let e = r.expect_err("a forbidden MXCSR bit must be refused");
                assert!(e.contains("MXCSR"), "{e}");
                assert!(check().is_ok());
            })
            .join()
            .unwrap();
        }
    }
}
