//! FFI to the emulator runtime, kernels/emu/runtime.h (compiled by build.rs into the
//! static library `duel_emu`, together with every kernel).

use std::ffi::{c_char, c_int, c_uint, c_void};

/// Mirror of `DuelEmuKernel`.
#[repr(C)]
pub struct DuelEmuKernel {
    pub name: *const c_char,
    pub thunk: Option<unsafe extern "C" fn(*mut *mut c_void)>,
    pub param_sizes: *const usize,
    pub param_names: *const *const c_char,
    pub nparams: usize,
    pub max_threads: *const c_uint,
}

/// Mirror of `DUEL_EMU_REDZONE`: bytes before and after each allocation no access may touch.
pub const REDZONE: usize = 256;

/// Mirror of `DuelEmuBuffer`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DuelEmuBuffer {
    pub base: u64,
    pub lent: u64,
    pub size: u64,
    pub param: usize,
}

pub const FORWARD: c_int = 0;
pub const REVERSE: c_int = 1;
pub const RANDOM: c_int = 2;

/// Mirror of `DuelEmuLaunchOptions`.
#[repr(C)]
pub struct DuelEmuLaunchOptions {
    pub schedule: c_int,
    pub seed: u64,
    pub races: c_int,
    pub shared_limit: usize,
    pub buffers: *const DuelEmuBuffer,
    pub nbuffers: usize,
}

// Linked by build.rs (cc emits `rustc-link-lib=static=duel_emu` and the C++ runtime).
extern "C" {
    pub fn duel_emu_kernels(count: *mut usize) -> *const DuelEmuKernel;
    pub fn duel_emu_pool_new(workers: usize) -> *mut c_void;
    pub fn duel_emu_pool_free(pool: *mut c_void);
    #[allow(clippy::too_many_arguments)]
    pub fn duel_emu_launch(
        pool: *mut c_void,
        kernel: usize,
        grid: *const c_uint,
        block: *const c_uint,
        shared_bytes: usize,
        args: *mut *mut c_void,
        options: *const DuelEmuLaunchOptions,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}
