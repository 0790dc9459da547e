//! The small runtime trait under the SIMT launch layer: allocate, copy, launch by name.
//! `cuda` implements it with cudarc, `emu` with an FFI call into the host-compiled
//! kernels. Everything above it (grid sizes, shared memory, argument packing) is shared,
//! so the emulator exercises the exact launch code a GPU runs.

use crate::error::{Error, Result};
use std::ffi::c_void;

/// A device address. On `emu` it is a host address.
pub type DevicePtr = u64;

/// Grid and block dimensions plus dynamic shared memory, as in `cuLaunchKernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D launch covering `n` items with `threads` per block (at least one block).
    pub fn linear(n: usize, threads: u32) -> Result<Self> {
        let blocks = n.div_ceil(threads as usize).max(1);
        if blocks > i32::MAX as usize {
            return Err(Error::invalid(format!(
                "{n} elements need {blocks} blocks, more than a grid holds"
            )));
        }
        Ok(LaunchConfig {
            grid: (blocks as u32, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: 0,
        })
    }
    pub fn threads_per_block(&self) -> u32 {
        self.block.0 * self.block.1 * self.block.2
    }
}

/// One kernel argument, held by value the way `cuLaunchKernel` takes its `void**`:
/// each entry points at the bytes of one parameter. The bytes are 8-byte aligned so the
/// emulator can read any parameter type in place.
#[derive(Clone, Debug)]
pub struct Arg {
    words: Vec<u64>,
    size: usize,
}

impl Arg {
    /// Any plain-old-data value: scalars, device pointers, `#[repr(C)]` structs that
    /// mirror a struct in kernels/common.cuh.
    pub fn val<T: bytemuck::Pod>(value: T) -> Self {
        let bytes = bytemuck::bytes_of(&value);
        let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Arg {
            words,
            size: bytes.len(),
        }
    }
    pub fn ptr(ptr: DevicePtr) -> Self {
        Arg::val(ptr)
    }
    pub fn size(&self) -> usize {
        self.size
    }
    pub fn as_void_ptr(&self) -> *mut c_void {
        self.words.as_ptr() as *mut c_void
    }
}

/// What a backend that runs `kernels/*.cu` must provide.
pub trait Runtime: Send + Sync {
    /// "cuda:0", "emu", … (used in messages).
    fn name(&self) -> String;
    fn alloc(&self, bytes: usize) -> Result<DevicePtr>;
    /// # Safety
    /// `ptr` came from `alloc` of this runtime and is not used afterwards.
    unsafe fn free(&self, ptr: DevicePtr);
    /// `ptr` (new or reused) is handed out for `bytes` bytes by the caching allocator.
    /// The emulator poisons it and bounds-checks copies against `bytes`; a GPU does nothing.
    fn lend(&self, _ptr: DevicePtr, _bytes: usize) {}
    /// `ptr` went back to the allocator's cache: no tensor may use it until it is lent again.
    fn reclaim(&self, _ptr: DevicePtr) {}
    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()>;
    fn copy_to_host(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()>;
    fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<()>;
    /// Launch `kernel` (its `extern "C"` name) with `args` in parameter order.
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
}
