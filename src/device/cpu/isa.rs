//! The vector instruction sets the cpu kernels may use, detected once at run time.
//!
//! Every fast path asks here, never `is_x86_feature_detected!` itself, so one switch turns
//! them all off: `DUEL_CPU_ISA=baseline` makes every kernel take its portable loop (what a
//! CPU without AVX-512 runs), which is how the fallbacks are tested on this machine.
//! Results do not depend on the path: the vector loops reorder no arithmetic.

use std::sync::OnceLock;

/// The instruction sets in use (after the `DUEL_CPU_ISA` switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    /// AVX-512 Foundation (16 f32 lanes, masked loads and stores).
    pub avx512f: bool,
}

/// The environment variable that limits the instruction sets (`baseline` = none).
pub const ISA_ENV: &str = "DUEL_CPU_ISA";

fn detect() -> Isa {
    let baseline = std::env::var(ISA_ENV).is_ok_and(|v| v == "baseline");
    #[cfg(target_arch = "x86_64")]
    let avx512f = !baseline && std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512f = {
        let _ = baseline;
        false
    };
    Isa { avx512f }
}

/// The instruction sets the kernels use, read once per process.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}
