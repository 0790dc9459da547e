//! The `emu` runtime: kernels/*.cu compiled for the host by build.rs and executed with
//! CUDA semantics by kernels/emu/runtime.cpp (threads of a block are cooperative fibers,
//! `__syncthreads` is a barrier, warps exchange values among 32 lanes, blocks run on a
//! pool of worker threads). "Device" pointers are host addresses.
//!
//! It reports what a GPU cannot: divergent barriers and stuck warp operations name the
//! kernel and block, arguments whose size differs from the kernel parameter are refused,
//! and [`Schedule::Reverse`] runs threads between barriers in reverse order so a missing
//! barrier changes results.

mod ffi;

use crate::device::simt::{Arg, DevicePtr, LaunchConfig, Runtime};
use crate::error::{Error, Result};
use crate::kernels::{self, KernelInfo};
use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_void, CStr};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Order in which the threads of a block run between two barriers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// Thread 0 first.
    #[default]
    Forward,
    /// Last thread first: a kernel that reads shared memory another thread writes without
    /// a barrier in between sees different data than under `Forward`.
    Reverse,
}

impl Schedule {
    fn parse(s: &str) -> Option<Schedule> {
        match s.trim().to_ascii_lowercase().as_str() {
            "forward" | "" => Some(Schedule::Forward),
            "reverse" => Some(Schedule::Reverse),
            _ => None,
        }
    }
}

/// How the emulator runs. Tests that pick a schedule should keep the trace from the
/// environment: `EmuOptions { schedule, ..EmuOptions::from_env() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuOptions {
    pub schedule: Schedule,
    /// Append `kernel=NAME grid=x,y,z block=x,y,z shared=N` per successful launch.
    pub trace: Option<PathBuf>,
    /// OS threads running blocks (the launching thread is one of them).
    pub workers: usize,
}

impl Default for EmuOptions {
    fn default() -> Self {
        EmuOptions {
            schedule: Schedule::Forward,
            trace: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl EmuOptions {
    /// DUEL_EMU_SCHEDULE=forward|reverse, DUEL_EMU_TRACE=path, DUEL_EMU_WORKERS=n. Invalid
    /// values are reported by [`EmuRuntime::new`].
    pub fn from_env() -> Self {
        let mut o = EmuOptions::default();
        if let Ok(s) = std::env::var("DUEL_EMU_SCHEDULE") {
            o.schedule = Schedule::parse(&s).unwrap_or_default();
        }
        o.trace = std::env::var_os("DUEL_EMU_TRACE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(n) = std::env::var("DUEL_EMU_WORKERS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
        {
            o.workers = n;
        }
        o
    }

    /// Errors for environment variables that are set but invalid; checked at creation so
    /// a typo in CI fails loudly instead of silently running the default.
    fn check_env() -> Result<()> {
        if let Ok(s) = std::env::var("DUEL_EMU_SCHEDULE") {
            if Schedule::parse(&s).is_none() {
                return Err(Error::invalid(format!(
                    "DUEL_EMU_SCHEDULE={s:?} is not a schedule; use forward or reverse"
                )));
            }
        }
        if let Ok(s) = std::env::var("DUEL_EMU_WORKERS") {
            if !matches!(s.trim().parse::<usize>(), Ok(n) if n > 0) {
                return Err(Error::invalid(format!(
                    "DUEL_EMU_WORKERS={s:?} is not a positive number of threads"
                )));
            }
        }
        Ok(())
    }
}

/// A kernel the emulator library holds: its registry index and parameter sizes.
struct EmuKernel {
    index: usize,
    param_sizes: Vec<usize>,
    info: Option<&'static KernelInfo>,
}

/// The C++ block-running pool; it synchronises internally.
struct Pool(*mut c_void);
// SAFETY: the pool is only used through duel_emu_launch, which serialises launches with a
// mutex, and freed once in Drop.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

pub struct EmuRuntime {
    pool: Pool,
    kernels: HashMap<&'static str, EmuKernel>,
    /// Every block from `alloc`, by base address.
    allocs: Mutex<BTreeMap<u64, Block>>,
    schedule: Schedule,
    trace: Option<Mutex<std::fs::File>>,
}

/// One host block: its size, and the bytes it is lent for (None while it sits in the
/// caching allocator's free list, when any access to it is an error).
#[derive(Clone, Copy)]
struct Block {
    size: usize,
    lent: Option<usize>,
}

/// Alignment of every allocation: what cudaMalloc guarantees and float4 loads need.
const ALIGN: usize = 256;
/// CUDA's per-block limits (compute capability 9.0).
const MAX_THREADS: u32 = 1024;
const MAX_DYNAMIC_SHARED: u32 = 228 * 1024;

impl EmuRuntime {
    pub fn new(options: EmuOptions) -> Result<EmuRuntime> {
        EmuOptions::check_env()?;
        if options.workers == 0 {
            return Err(Error::invalid("emulator needs at least one worker thread"));
        }
        let mut count = 0usize;
        // SAFETY: returns the static registry and its length.
        let table = unsafe { ffi::duel_emu_kernels(&mut count) };
        let mut kernels = HashMap::new();
        for index in 0..count {
            // SAFETY: index < count; names and size arrays are static data of the library.
            let (name, param_sizes) = unsafe {
                let k = &*table.add(index);
                let name = CStr::from_ptr(k.name).to_str().map_err(|_| {
                    Error::backend("emulator: a kernel name is not UTF-8".to_string())
                })?;
                let sizes = std::slice::from_raw_parts(k.param_sizes, k.nparams).to_vec();
                (name, sizes)
            };
            let info = kernels::find(name);
            kernels.insert(
                name,
                EmuKernel {
                    index,
                    param_sizes,
                    info,
                },
            );
        }
        let trace = match &options.trace {
            None => None,
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?,
            )),
        };
        // SAFETY: plain constructor; null only when out of memory.
        let pool = unsafe { ffi::duel_emu_pool_new(options.workers) };
        if pool.is_null() {
            return Err(Error::backend("emulator: cannot create the worker pool"));
        }
        Ok(EmuRuntime {
            pool: Pool(pool),
            kernels,
            allocs: Mutex::new(BTreeMap::new()),
            schedule: options.schedule,
            trace,
        })
    }

    /// Checks that `[ptr, ptr + bytes)` lies inside one live allocation.
    fn check_range(&self, what: &str, ptr: DevicePtr, bytes: usize) -> Result<()> {
        let allocs = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        let live = allocs
            .range(..=ptr)
            .next_back()
            .and_then(|(&base, b)| Some((base, b.lent?)))
            .filter(|&(base, size)| ptr < base + size.max(1) as u64);
        match live {
            Some((base, size)) if ptr + bytes as u64 <= base + size as u64 => Ok(()),
            Some((base, size)) => Err(Error::backend(format!(
                "emu: {what} of {bytes} bytes at 0x{ptr:x} runs past the end of its \
                 {size}-byte allocation at 0x{base:x}"
            ))),
            _ => Err(Error::backend(format!(
                "emu: {what} at 0x{ptr:x} is not inside any live allocation"
            ))),
        }
    }

    fn validate(
        &self,
        kernel: &str,
        k: &EmuKernel,
        cfg: &LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        let (g, b) = (cfg.grid, cfg.block);
        let threads = b.0 as u64 * b.1 as u64 * b.2 as u64;
        let bad = if threads == 0 || threads > MAX_THREADS as u64 {
            Some(format!(
                "block {b:?} has {threads} threads; a block holds 1 to {MAX_THREADS}"
            ))
        } else if b.0 > 1024 || b.1 > 1024 || b.2 > 64 {
            Some(format!(
                "block {b:?} exceeds the per-dimension limits (1024, 1024, 64)"
            ))
        } else if g.0 == 0 || g.1 == 0 || g.2 == 0 {
            Some(format!("grid {g:?} has a zero dimension"))
        } else if g.0 > i32::MAX as u32 || g.1 > 65535 || g.2 > 65535 {
            Some(format!(
                "grid {g:?} exceeds the limits (2^31-1, 65535, 65535)"
            ))
        } else if cfg.shared_bytes > MAX_DYNAMIC_SHARED {
            Some(format!(
                "{} bytes of dynamic shared memory exceed the {MAX_DYNAMIC_SHARED}-byte limit",
                cfg.shared_bytes
            ))
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::backend(format!(
                "invalid configuration argument launching {kernel}: {why}"
            )));
        }
        if args.len() != k.param_sizes.len() {
            return Err(Error::backend(format!(
                "kernel {kernel} takes {} arguments, launch passed {}",
                k.param_sizes.len(),
                args.len()
            )));
        }
        for (i, (arg, &size)) in args.iter().zip(&k.param_sizes).enumerate() {
            if arg.size() != size {
                let ty = k.info.and_then(|info| info.params.get(i)).unwrap_or(&"?");
                return Err(Error::backend(format!(
                    "kernel {kernel} parameter {i} ({ty}) is {size} bytes, the argument is {} bytes",
                    arg.size()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for EmuRuntime {
    fn drop(&mut self) {
        // SAFETY: created in new, freed once; no launch can be running (&mut self).
        unsafe { ffi::duel_emu_pool_free(self.pool.0) };
        let allocs = std::mem::take(self.allocs.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (ptr, block) in allocs {
            // SAFETY: every entry was allocated in `alloc` with this layout.
            unsafe {
                std::alloc::dealloc(
                    ptr as *mut u8,
                    Layout::from_size_align_unchecked(block.size, ALIGN),
                )
            };
        }
    }
}

impl Runtime for EmuRuntime {
    fn name(&self) -> String {
        "emu".to_string()
    }

    /// Host memory, 256-byte aligned, filled with 0xFF bytes (NaN as float) so a kernel
    /// that reads memory nobody wrote produces visibly wrong results, as on a GPU where
    /// fresh memory holds garbage.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        let size = bytes.max(1);
        let layout = Layout::from_size_align(size, ALIGN)
            .map_err(|_| Error::backend(format!("emu: cannot allocate {bytes} bytes")))?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(Error::backend(format!(
                "emu: out of host memory allocating {bytes} bytes"
            )));
        }
        // SAFETY: ptr points at `size` writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 0xFF, size) };
        self.allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                ptr as u64,
                Block {
                    size,
                    lent: Some(size),
                },
            );
        Ok(ptr as u64)
    }

    /// Poisons the whole block again (a reused block holds the last tensor's values,
    /// which a kernel reading unwritten memory would otherwise see as plausible data).
    fn lend(&self, ptr: DevicePtr, bytes: usize) {
        let mut allocs = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(block) = allocs.get_mut(&ptr) {
            // SAFETY: the block is `block.size` writable bytes allocated in `alloc`.
            unsafe { std::ptr::write_bytes(ptr as *mut u8, 0xFF, block.size) };
            block.lent = Some(bytes);
        }
    }

    fn reclaim(&self, ptr: DevicePtr) {
        let mut allocs = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(block) = allocs.get_mut(&ptr) {
            block.lent = None;
        }
    }

    unsafe fn free(&self, ptr: DevicePtr) {
        let size = self
            .allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ptr);
        match size {
            // SAFETY: allocated in `alloc` with this size and alignment.
            Some(block) => unsafe {
                std::alloc::dealloc(
                    ptr as *mut u8,
                    Layout::from_size_align_unchecked(block.size, ALIGN),
                )
            },
            // Freeing what we did not allocate would corrupt the heap: keep going without.
            None => eprintln!("emu: ignoring free of 0x{ptr:x}, which is not a live allocation"),
        }
    }

    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()> {
        self.check_range("copy to device", dst, src.len())?;
        // SAFETY: the destination range lies inside a live allocation.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn copy_to_host(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()> {
        self.check_range("copy to host", src, dst.len())?;
        // SAFETY: the source range lies inside a live allocation.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<()> {
        self.check_range("device copy source", src, bytes)?;
        self.check_range("device copy destination", dst, bytes)?;
        // SAFETY: both ranges are inside live allocations; `copy` allows overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        let k = self.kernels.get(kernel).ok_or_else(|| {
            Error::backend(format!(
                "emu: kernel {kernel} is not in the kernel manifest ({} kernels built from \
                 kernels/*.cu); is it declared `extern \"C\" __global__ void {kernel}(...)`?",
                self.kernels.len()
            ))
        })?;
        self.validate(kernel, k, cfg, args)?;
        let mut ptrs: Vec<*mut c_void> = args.iter().map(Arg::as_void_ptr).collect();
        let grid = [cfg.grid.0, cfg.grid.1, cfg.grid.2];
        let block = [cfg.block.0, cfg.block.1, cfg.block.2];
        // Written (NUL-terminated) only on failure: left uninitialised, as zeroing 2 KiB
        // per launch would be a visible share of an empty launch.
        let mut err = std::mem::MaybeUninit::<[u8; 2048]>::uninit();
        // SAFETY: `ptrs` holds one pointer per parameter to at least sizeof(param) bytes
        // (checked above); the pool is live; `err` is writable for its length.
        let rc = unsafe {
            ffi::duel_emu_launch(
                self.pool.0,
                k.index,
                grid.as_ptr(),
                block.as_ptr(),
                cfg.shared_bytes as usize,
                ptrs.as_mut_ptr(),
                (self.schedule == Schedule::Reverse) as i32,
                err.as_mut_ptr().cast(),
                2048,
            )
        };
        if rc != 0 {
            // SAFETY: on failure duel_emu_launch wrote a NUL-terminated string into `err`.
            let msg = unsafe { CStr::from_ptr(err.as_ptr().cast()) }
                .to_string_lossy()
                .into_owned();
            return Err(Error::backend(format!("emu: {msg}")));
        }
        if let Some(trace) = &self.trace {
            let line = format!(
                "kernel={kernel} grid={},{},{} block={},{},{} shared={}\n",
                grid[0], grid[1], grid[2], block[0], block[1], block[2], cfg.shared_bytes
            );
            let mut file = trace.lock().unwrap_or_else(|e| e.into_inner());
            // One write() per line on an O_APPEND file: lines from concurrent test
            // processes do not interleave.
            file.write_all(line.as_bytes())
                .map_err(|e| Error::backend(format!("emu: cannot write the launch trace: {e}")))?;
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(()) // launches are synchronous
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn schedule_names() {
        assert_eq!(Schedule::parse("reverse"), Some(Schedule::Reverse));
        assert_eq!(Schedule::parse(" Forward "), Some(Schedule::Forward));
        assert_eq!(Schedule::parse("backwards"), None);
    }
}
