//! The `emu` runtime: kernels/*.cu compiled for the host by build.rs and executed with
//! CUDA semantics by kernels/emu/runtime.cpp (threads of a block are cooperative fibers,
//! `__syncthreads` is a barrier, warps exchange values among 32 lanes, blocks run on a
//! pool of worker threads). "Device" pointers are host addresses.
//!
//! It reports what a GPU cannot, or would only show as a fault or a wrong result: every
//! memory access of a kernel is checked against the launch's buffers (with redzones), the
//! block's shared memory and the thread's stack, misaligned accesses are caught, static
//! and dynamic shared memory is poisoned at every block start, launches break no GPU limit
//! ([`crate::device::simt::limits`]), divergent barriers and stuck warp operations name the
//! kernel and block, arguments whose size differs from the kernel parameter are refused,
//! races within a barrier interval are reported when [`EmuOptions::races`] is on, and
//! [`Schedule::Reverse`] / [`Schedule::Random`] run threads between barriers in other
//! orders so a missing barrier changes results. kernels/README.md lists it all.

mod ffi;

use crate::device::simt::limits::{self, KernelLimits};
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
    /// A fresh random order for every round of every block, drawn from this seed (and the
    /// block index, so the order does not depend on which worker runs the block).
    Random(u64),
}

impl Schedule {
    fn parse(s: &str) -> Option<Schedule> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "forward" | "" => Some(Schedule::Forward),
            "reverse" => Some(Schedule::Reverse),
            _ => s
                .strip_prefix("random:")
                .and_then(|seed| seed.trim().parse().ok())
                .map(Schedule::Random),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Forward => write!(f, "forward"),
            Schedule::Reverse => write!(f, "reverse"),
            Schedule::Random(seed) => write!(f, "random:{seed}"),
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
    /// Report two threads of a block touching the same bytes in one barrier interval, one
    /// of them writing, not both atomically (several times slower).
    pub races: bool,
}

impl Default for EmuOptions {
    fn default() -> Self {
        EmuOptions {
            schedule: Schedule::Forward,
            trace: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            races: false,
        }
    }
}

impl EmuOptions {
    /// DUEL_EMU_SCHEDULE=forward|reverse|random:SEED, DUEL_EMU_TRACE=path,
    /// DUEL_EMU_WORKERS=n, DUEL_EMU_RACES=0|1. Invalid values are reported by
    /// [`EmuRuntime::new`].
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
        o.races = std::env::var("DUEL_EMU_RACES").is_ok_and(|s| s.trim() == "1");
        o
    }

    /// Errors for environment variables that are set but invalid; checked at creation so
    /// a typo in CI fails loudly instead of silently running the default.
    fn check_env() -> Result<()> {
        if let Ok(s) = std::env::var("DUEL_EMU_SCHEDULE") {
            if Schedule::parse(&s).is_none() {
                return Err(Error::invalid(format!(
                    "DUEL_EMU_SCHEDULE={s:?} is not a schedule; use forward, reverse or \
                     random:SEED (SEED a number below 2^64)"
                )));
            }
        }
        if let Ok(s) = std::env::var("DUEL_EMU_RACES") {
            if !matches!(s.trim(), "0" | "1") {
                return Err(Error::invalid(format!(
                    "DUEL_EMU_RACES={s:?} is neither 0 nor 1"
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
    /// Which parameters are pointers (checked against live allocations at launch).
    pointers: Vec<bool>,
    /// `__launch_bounds__`, if declared.
    launch_bounds: Option<u32>,
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
    races: bool,
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
/// Each allocation is `REDZONE` bytes of nothing, the buffer, and `REDZONE` more: a kernel
/// access there stops the launch (kernels/emu/checks.cpp).
const REDZONE: usize = ffi::REDZONE;
const _: () = assert!(REDZONE.is_multiple_of(ALIGN));

/// The host layout behind an allocation of `size` bytes (its redzones included).
fn host_layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(2 * REDZONE)?, ALIGN).ok()
}

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
            let (name, param_sizes, bounds) = unsafe {
                let k = &*table.add(index);
                let name = CStr::from_ptr(k.name).to_str().map_err(|_| {
                    Error::backend("emulator: a kernel name is not UTF-8".to_string())
                })?;
                let sizes = std::slice::from_raw_parts(k.param_sizes, k.nparams).to_vec();
                (name, sizes, *k.max_threads)
            };
            let info = kernels::find(name);
            let pointers = (0..param_sizes.len())
                .map(|i| {
                    info.and_then(|k| k.params.get(i))
                        .is_some_and(|t| t.contains('*'))
                })
                .collect();
            kernels.insert(
                name,
                EmuKernel {
                    index,
                    param_sizes,
                    pointers,
                    launch_bounds: (bounds > 0).then_some(bounds),
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
            races: options.races,
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

    /// The launch rules, the argument sizes, and the buffer behind every pointer argument
    /// (each must point into a live allocation; null is passed on, and faults if used).
    fn validate(
        &self,
        kernel: &str,
        k: &EmuKernel,
        cfg: &LaunchConfig,
        args: &[Arg],
    ) -> Result<Vec<ffi::DuelEmuBuffer>> {
        limits::check(kernel, cfg, &self.limits(k))?;
        if args.len() != k.param_sizes.len() {
            return Err(Error::backend(format!(
                "kernel {kernel} takes {} arguments, launch passed {}",
                k.param_sizes.len(),
                args.len()
            )));
        }
        let param = |i: usize| k.info.and_then(|info| info.params.get(i)).unwrap_or(&"?");
        for (i, (arg, &size)) in args.iter().zip(&k.param_sizes).enumerate() {
            if arg.size() != size {
                return Err(Error::backend(format!(
                    "kernel {kernel} parameter {i} ({}) is {size} bytes, the argument is {} bytes",
                    param(i),
                    arg.size()
                )));
            }
        }
        let allocs = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        let mut buffers = Vec::new();
        for (i, arg) in args.iter().enumerate().filter(|&(i, _)| k.pointers[i]) {
            // SAFETY: a pointer parameter's argument is 8 bytes (checked above), in words
            // that are 8-byte aligned.
            let ptr = unsafe { *(arg.as_void_ptr() as *const u64) };
            if ptr == 0 {
                continue;
            }
            match allocs.range(..=ptr).next_back() {
                Some((
                    &base,
                    &Block {
                        size,
                        lent: Some(lent),
                    },
                )) if ptr < base + size as u64 => {
                    buffers.push(ffi::DuelEmuBuffer {
                        base,
                        lent: lent as u64,
                        size: size as u64,
                        param: i,
                    });
                }
                _ => {
                    return Err(Error::backend(format!(
                        "kernel {kernel} parameter {i} ({}) is 0x{ptr:x}, which is inside no \
                         live allocation of this device (freed, or from another device)",
                        param(i)
                    )))
                }
            }
        }
        Ok(buffers)
    }

    /// What the launch rules know of `k` before it runs: its `__launch_bounds__`. Static
    /// shared memory is counted while blocks run, against the same limit.
    fn limits(&self, k: &EmuKernel) -> KernelLimits {
        KernelLimits {
            launch_bounds: k.launch_bounds,
            static_shared: 0,
            opted_in_shared: None,
        }
    }
}

/// # Safety
/// `ptr` came from [`EmuRuntime::alloc`] for `size` bytes and is not used afterwards.
unsafe fn dealloc_host(ptr: DevicePtr, size: usize) {
    // SAFETY: `alloc` returned REDZONE bytes into an allocation of host_layout(size).
    unsafe {
        std::alloc::dealloc(
            (ptr as *mut u8).sub(REDZONE),
            Layout::from_size_align_unchecked(size + 2 * REDZONE, ALIGN),
        )
    }
}

impl Drop for EmuRuntime {
    fn drop(&mut self) {
        // SAFETY: created in new, freed once; no launch can be running (&mut self).
        unsafe { ffi::duel_emu_pool_free(self.pool.0) };
        let allocs = std::mem::take(self.allocs.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (ptr, block) in allocs {
            // SAFETY: every entry was allocated in `alloc` for `block.size` bytes.
            unsafe { dealloc_host(ptr, block.size) };
        }
    }
}

impl Runtime for EmuRuntime {
    fn name(&self) -> String {
        "emu".to_string()
    }

    /// Host memory, 256-byte aligned between two redzones, filled with 0xFF bytes (NaN as
    /// float) so a kernel that reads memory nobody wrote produces visibly wrong results, as
    /// on a GPU where fresh memory holds garbage.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        let size = bytes.max(1);
        let layout = host_layout(size)
            .ok_or_else(|| Error::backend(format!("emu: cannot allocate {bytes} bytes")))?;
        // SAFETY: layout has non-zero size.
        let host = unsafe { std::alloc::alloc(layout) };
        if host.is_null() {
            return Err(Error::backend(format!(
                "emu: out of host memory allocating {bytes} bytes"
            )));
        }
        // SAFETY: the buffer is `size` writable bytes REDZONE bytes into the allocation.
        let ptr = unsafe { host.add(REDZONE) };
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
            // SAFETY: allocated in `alloc` for `block.size` bytes.
            Some(block) => unsafe { dealloc_host(ptr, block.size) },
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
        let buffers = self.validate(kernel, k, cfg, args)?;
        let (schedule, seed) = match self.schedule {
            Schedule::Forward => (ffi::FORWARD, 0),
            Schedule::Reverse => (ffi::REVERSE, 0),
            Schedule::Random(seed) => (ffi::RANDOM, seed),
        };
        let options = ffi::DuelEmuLaunchOptions {
            schedule,
            seed,
            races: self.races as i32,
            shared_limit: self.limits(k).shared_limit() as usize,
            buffers: buffers.as_ptr(),
            nbuffers: buffers.len(),
        };
        let mut ptrs: Vec<*mut c_void> = args.iter().map(Arg::as_void_ptr).collect();
        let grid = [cfg.grid.0, cfg.grid.1, cfg.grid.2];
        let block = [cfg.block.0, cfg.block.1, cfg.block.2];
        // Written (NUL-terminated) only on failure: left uninitialised, as zeroing 2 KiB
        // per launch would be a visible share of an empty launch.
        let mut err = std::mem::MaybeUninit::<[u8; 2048]>::uninit();
        // SAFETY: `ptrs` holds one pointer per parameter to at least sizeof(param) bytes
        // (checked above); `options` and `buffers` outlive the call; the pool is live; `err`
        // is writable for its length.
        let rc = unsafe {
            ffi::duel_emu_launch(
                self.pool.0,
                k.index,
                grid.as_ptr(),
                block.as_ptr(),
                cfg.shared_bytes as usize,
                ptrs.as_mut_ptr(),
                &options,
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
        assert_eq!(Schedule::parse("random:42"), Some(Schedule::Random(42)));
        assert_eq!(Schedule::parse("random:"), None);
        assert_eq!(Schedule::Random(7).to_string(), "random:7");
    }
}
