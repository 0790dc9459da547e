//! The vector and matrix instruction sets the cpu kernels may use, detected once at run time.
//!
//! Every fast path asks here, never `is_x86_feature_detected!` itself, so one switch limits
//! them all. `DUEL_CPU_ISA` takes:
//! - unset (or empty): everything detected;
//! - `baseline`: nothing, every kernel takes its portable loop (what a CPU without AVX2
//!   runs);
//! - `avx2`: AVX2 with FMA and F16C but no AVX-512 (what most AMD Zen and older Intel
//!   CPUs run: the 8-lane loops where there are some, the portable ones elsewhere);
//! - `avx512`: AVX-512F but no bf16 units (the bf16 GEMM takes its portable loop);
//! - `avx512bf16`: AVX-512F and AVX512-BF16 but no AMX.
//!
//! A value only turns features off: asking for `avx512bf16` on a CPU without it gives what
//! the CPU has. Any other value is refused with a warning naming the accepted ones (printed
//! once) and everything detected is used. The f32 kernels' results do not depend on the
//! path (the vector loops reorder no arithmetic); the bf16 GEMM's paths differ only in
//! the f32 summation order (see `ops::gemm_bf16`).
//!
//! AMX is usable only when the CPU has it (CPUID), the OS saves its tile state (XCR0) and
//! Linux grants this process the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); the
//! request is made once, here, when the switch allows AMX.

use std::sync::OnceLock;

/// The instruction sets in use (after the `DUEL_CPU_ISA` switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    /// AVX2 with FMA and F16C (8 f32 lanes, `vmaskmovps`, `vcvtps2ph`): every x86-64 CPU
    /// since 2013 (Haswell, Zen).
    pub avx2: bool,
    /// AVX-512 Foundation (16 f32 lanes, masked loads and stores).
    pub avx512f: bool,
    /// AVX512-BF16 (`vdpbf16ps`, `vcvtne2ps2bf16`), with AVX-512F.
    pub avx512_bf16: bool,
    /// AMX-TILE and AMX-BF16 (`tdpbf16ps`), enabled by the OS and granted to the process.
    pub amx_bf16: bool,
}

/// The environment variable that limits the instruction sets (`baseline` = none).
pub const ISA_ENV: &str = "DUEL_CPU_ISA";

/// The values `DUEL_CPU_ISA` accepts (besides unset or empty).
pub const ISA_VALUES: [&str; 4] = ["baseline", "avx2", "avx512", "avx512bf16"];

/// What the `DUEL_CPU_ISA` switch allows, parsed from its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaLimit {
    All,
    Baseline,
    Avx2,
    Avx512,
    Avx512Bf16,
}

impl IsaLimit {
    /// The switch's meaning for `value` (None or empty: no limit), or an error message
    /// naming the accepted values.
    pub fn parse(value: Option<&str>) -> Result<IsaLimit, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(IsaLimit::All),
            Some("baseline") => Ok(IsaLimit::Baseline),
            Some("avx2") => Ok(IsaLimit::Avx2),
            Some("avx512") => Ok(IsaLimit::Avx512),
            Some("avx512bf16") => Ok(IsaLimit::Avx512Bf16),
            Some(other) => Err(format!(
                "{ISA_ENV}={other:?} is not a known value; use one of {} or leave it unset \
                 (everything detected)",
                ISA_VALUES.join(", ")
            )),
        }
    }
}

/// The matrix extensions the hardware and OS offer (CPUID leaf 7 EDX bits 24 and 22, and
/// XCR0 bits 17 and 18: the OS saves the tile configuration and data). AMX detection is
/// not stable in std_detect, hence the direct probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AmxBits {
    pub tile: bool,
    pub bf16: bool,
}

/// [`AmxBits`] of this CPU (before any switch or permission request).
pub fn amx_bits() -> AmxBits {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        #[allow(unused_unsafe)] // safe fns in newer std, unsafe in older
        let (max_leaf, leaf7) = unsafe { (__cpuid(0).eax, __cpuid_count(7, 0)) };
        if max_leaf < 7 || !std::arch::is_x86_feature_detected!("xsave") {
            return AmxBits::default();
        }
        // SAFETY: xgetbv exists (xsave detected above) and only reads XCR0.
        let xcr0 = unsafe { xcr0() };
        let os_tiles = xcr0 & (0b11 << 17) == (0b11 << 17);
        AmxBits {
            tile: os_tiles && leaf7.edx & (1 << 24) != 0,
            bf16: os_tiles && leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 22) != 0,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    AmxBits::default()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

/// Ask Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`), once per process; true when granted. Without the grant the first
/// tile instruction would fault.
pub fn amx_permission() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request_amx)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_amx() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: the arch_prctl system call with these arguments only changes this process's
    // permitted xsave features; `syscall` clobbers rcx and r11, declared below.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_amx() -> bool {
    false
}

/// Everything detected, limited by `limit` (AMX only after the permission is granted).
pub fn detect_with(limit: IsaLimit) -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = limit != IsaLimit::Baseline
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c");
        let avx512f = !matches!(limit, IsaLimit::Baseline | IsaLimit::Avx2)
            && std::arch::is_x86_feature_detected!("avx512f");
        let avx512_bf16 = avx512f
            && matches!(limit, IsaLimit::All | IsaLimit::Avx512Bf16)
            && std::arch::is_x86_feature_detected!("avx512bf16");
        let amx_bf16 = limit == IsaLimit::All && amx_bits().bf16 && amx_permission();
        Isa {
            avx2,
            avx512f,
            avx512_bf16,
            amx_bf16,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = limit;
        Isa {
            avx2: false,
            avx512f: false,
            avx512_bf16: false,
            amx_bf16: false,
        }
    }
}

fn detect() -> Isa {
    let value = std::env::var(ISA_ENV).ok();
    let limit = IsaLimit::parse(value.as_deref()).unwrap_or_else(|why| {
        eprintln!("warning: {why}");
        IsaLimit::All
    });
    detect_with(limit)
}

/// What the CPU has, whatever `DUEL_CPU_ISA` says (no AMX request): for choices that
/// must not change with the switch, such as the f32 GEMM engine.
pub fn hardware() -> Isa {
    static HARDWARE: OnceLock<Isa> = OnceLock::new();
    *HARDWARE.get_or_init(|| detect_with(IsaLimit::Avx512Bf16))
}

/// The instruction sets the kernels use, read once per process.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_parses_its_values_and_names_them_when_wrong() {
        assert_eq!(IsaLimit::parse(None), Ok(IsaLimit::All));
        assert_eq!(IsaLimit::parse(Some("")), Ok(IsaLimit::All));
        assert_eq!(IsaLimit::parse(Some("baseline")), Ok(IsaLimit::Baseline));
        assert_eq!(IsaLimit::parse(Some("avx2")), Ok(IsaLimit::Avx2));
        assert_eq!(IsaLimit::parse(Some("avx512")), Ok(IsaLimit::Avx512));
        assert_eq!(
            IsaLimit::parse(Some("avx512bf16")),
            Ok(IsaLimit::Avx512Bf16)
        );
        let err = IsaLimit::parse(Some("amx")).unwrap_err();
        for v in ISA_VALUES {
            assert!(err.contains(v), "{err}");
        }
    }

    #[test]
    fn limits_only_turn_features_off() {
        let all = detect_with(IsaLimit::All);
        let base = detect_with(IsaLimit::Baseline);
        assert_eq!(
            base,
            Isa {
                avx2: false,
                avx512f: false,
                avx512_bf16: false,
                amx_bf16: false
            }
        );
        let avx2 = detect_with(IsaLimit::Avx2);
        assert_eq!(avx2.avx2, all.avx2);
        assert!(!avx2.avx512f && !avx2.avx512_bf16 && !avx2.amx_bf16);
        let avx = detect_with(IsaLimit::Avx512);
        assert_eq!(avx.avx512f, all.avx512f);
        assert!(!avx.avx512_bf16 && !avx.amx_bf16);
        let bf = detect_with(IsaLimit::Avx512Bf16);
        assert_eq!(bf.avx512_bf16, all.avx512_bf16);
        assert!(!bf.amx_bf16);
    }
}
