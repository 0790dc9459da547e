//! The launch rules, in one place: both SIMT runtimes check a launch against them before
//! running it (`cuda` before `cuLaunchKernel`, which would fail with a bare "invalid
//! argument"; `emu`, which would otherwise run what no GPU can). Limits of compute
//! capability 8.0 and 9.0 (CUDA C++ Programming Guide, "Technical Specifications per
//! Compute Capability").

use super::runtime::LaunchConfig;
use crate::error::{Error, Result};

/// Threads per block.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// Block dimensions (x, y, z).
pub const MAX_BLOCK_DIM: (u32, u32, u32) = (1024, 1024, 64);
/// Grid dimensions (x, y, z).
pub const MAX_GRID_DIM: (u32, u32, u32) = (i32::MAX as u32, 65535, 65535);
/// Static plus dynamic shared memory per block without opting in
/// (`CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`).
pub const SHARED_WITHOUT_OPT_IN: u32 = 48 * 1024;

/// The most shared memory per block a kernel may opt in to on a GPU of compute capability
/// `(major, minor)`: 163 KiB on sm_80, 227 KiB on sm_90 (the 1 KiB the driver reserves per
/// block already taken off). None: an architecture these kernels are not built for.
pub fn shared_opt_in_max(compute: (i32, i32)) -> Option<u32> {
    match compute {
        (8, 0) | (8, 7) => Some(163 * 1024),
        (8, _) => Some(99 * 1024),
        (9, 0) => Some(227 * 1024),
        _ => None,
    }
}

/// What the launch rules need to know about the kernel being launched.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelLimits {
    /// `__launch_bounds__` maximum threads per block (None: not declared).
    pub launch_bounds: Option<u32>,
    /// Static `__shared__` bytes, where known before the launch (the GPU reports them; the
    /// emulator learns them while running and checks [`KernelLimits::shared_limit`] then).
    pub static_shared: u32,
    /// Shared bytes per block the kernel opted in to; None: not opted in (48 KiB).
    pub opted_in_shared: Option<u32>,
}

impl KernelLimits {
    /// Static plus dynamic shared bytes a block of this kernel may use.
    pub fn shared_limit(&self) -> u32 {
        self.opted_in_shared.unwrap_or(SHARED_WITHOUT_OPT_IN)
    }
}

/// Why `cfg` cannot launch `kernel`, as a GPU would refuse it.
pub fn check(kernel: &str, cfg: &LaunchConfig, limits: &KernelLimits) -> Result<()> {
    let (g, b) = (cfg.grid, cfg.block);
    let threads = b.0 as u64 * b.1 as u64 * b.2 as u64;
    let shared = limits.static_shared as u64 + cfg.shared_bytes as u64;
    let why = if threads == 0 || threads > MAX_THREADS_PER_BLOCK as u64 {
        format!("block {b:?} has {threads} threads; a block holds 1 to {MAX_THREADS_PER_BLOCK}")
    } else if b.0 > MAX_BLOCK_DIM.0 || b.1 > MAX_BLOCK_DIM.1 || b.2 > MAX_BLOCK_DIM.2 {
        format!("block {b:?} exceeds the per-dimension limits {MAX_BLOCK_DIM:?}")
    } else if let Some(bound) = limits.launch_bounds.filter(|&n| threads > n as u64) {
        format!(
            "block {b:?} has {threads} threads; the kernel allows {bound} (its __launch_bounds__, \
             or on a GPU its register use)"
        )
    } else if g.0 == 0 || g.1 == 0 || g.2 == 0 {
        format!("grid {g:?} has a zero dimension")
    } else if g.0 > MAX_GRID_DIM.0 || g.1 > MAX_GRID_DIM.1 || g.2 > MAX_GRID_DIM.2 {
        format!("grid {g:?} exceeds the limits {MAX_GRID_DIM:?}")
    } else if shared > limits.shared_limit() as u64 {
        let how = match limits.opted_in_shared {
            None => "without opting in (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)",
            Some(_) => "as opted in",
        };
        format!(
            "{} bytes of static plus {} bytes of dynamic shared memory exceed the {} bytes a \
             block may use {how}",
            limits.static_shared,
            cfg.shared_bytes,
            limits.shared_limit()
        )
    } else {
        return Ok(());
    };
    Err(Error::backend(format!(
        "invalid configuration argument launching {kernel}: {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32), shared_bytes: u32) -> LaunchConfig {
        LaunchConfig {
            grid,
            block,
            shared_bytes,
        }
    }

    fn refused(c: LaunchConfig, l: KernelLimits, why: &str) {
        let e = check("k", &c, &l).unwrap_err().to_string();
        assert!(e.contains("launching k") && e.contains(why), "{e}");
    }

    #[test]
    fn each_limit_at_its_edge() {
        let none = KernelLimits::default();
        assert!(check("k", &cfg((1, 1, 1), (1024, 1, 1), 48 * 1024), &none).is_ok());
        refused(cfg((1, 1, 1), (1025, 1, 1), 0), none, "1025 threads");
        refused(cfg((1, 1, 1), (32, 32, 2), 0), none, "2048 threads");
        refused(cfg((1, 1, 1), (1, 1, 65), 0), none, "per-dimension");
        refused(cfg((0, 1, 1), (32, 1, 1), 0), none, "zero dimension");
        refused(
            cfg((1, 65536, 1), (32, 1, 1), 0),
            none,
            "exceeds the limits",
        );
        assert!(check(
            "k",
            &cfg((i32::MAX as u32, 65535, 65535), (1, 1, 1), 0),
            &none
        )
        .is_ok());
        refused(
            cfg((1, 1, 1), (32, 1, 1), 48 * 1024 + 1),
            none,
            "without opting in",
        );
        let bounded = KernelLimits {
            launch_bounds: Some(256),
            ..none
        };
        assert!(check("k", &cfg((1, 1, 1), (256, 1, 1), 0), &bounded).is_ok());
        refused(
            cfg((1, 1, 1), (16, 17, 1), 0),
            bounded,
            "the kernel allows 256",
        );
        let with_static = KernelLimits {
            static_shared: 40 * 1024,
            ..none
        };
        refused(
            cfg((1, 1, 1), (32, 1, 1), 8 * 1024 + 1),
            with_static,
            "40960 bytes of static",
        );
        let opted = KernelLimits {
            opted_in_shared: shared_opt_in_max((9, 0)),
            ..none
        };
        assert!(check("k", &cfg((1, 1, 1), (32, 1, 1), 227 * 1024), &opted).is_ok());
        refused(
            cfg((1, 1, 1), (32, 1, 1), 227 * 1024 + 1),
            opted,
            "as opted in",
        );
        assert_eq!(shared_opt_in_max((8, 0)), Some(166_912));
        assert_eq!(shared_opt_in_max((9, 0)), Some(232_448));
    }
}
