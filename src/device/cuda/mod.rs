//! The `cuda` runtime: kernels/*.cu on an NVIDIA GPU through cudarc's driver API.
//!
//! cudarc loads `libcuda.so` / `libnvrtc.so` at first use and *panics* when they are
//! missing, so every entry point probes first (`is_culib_present`) and runs the first
//! driver calls under `catch_unwind`, turning absence into an [`Error::Backend`].
//!
//! Modules are loaded lazily, one per kernel file, on the first launch of one of its
//! kernels: the PTX nvcc produced at build time when there is one, else (or when the
//! driver rejects that PTX, e.g. a PTX ISA newer than the driver) the embedded source
//! compiled by NVRTC for the device's compute capability.

use crate::device::simt::limits::{self, KernelLimits, SHARED_WITHOUT_OPT_IN};
use crate::device::simt::{Arg, DevicePtr, LaunchConfig, Runtime};
use crate::error::{Error, Result};
use crate::kernels::{KERNELS, KERNEL_SOURCES};
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::{sys, CudaContext};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

const NO_DRIVER: &str = "CUDA driver not found (libcuda.so); use --device cpu";

/// One GPU as `duel devices` reports it.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    /// (major, minor), e.g. (8, 0) for an A100.
    pub compute_capability: (i32, i32),
    pub total_memory: usize,
    /// (major, minor) of the CUDA version the driver supports, e.g. (12, 4).
    pub driver_version: (i32, i32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Peak SM clock and memory clock (kHz), memory bus width (bits): the peaks derive
    /// from these.
    pub clock_khz: u32,
    pub memory_clock_khz: u32,
    pub memory_bus_bits: u32,
}

/// Every GPU the driver sees, or why none can be used.
pub fn probe() -> std::result::Result<Vec<GpuInfo>, String> {
    guarded(|| {
        if let Err(e) = cu::init() {
            return Err(no_device_message(e));
        }
        let driver_version = driver_version()?;
        let count = cu::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
        (0..count)
            .map(|ordinal| {
                let dev = cu::device::get(ordinal).map_err(|e| format!("cuDeviceGet: {e}"))?;
                let attr = |a| unsafe { cu::device::get_attribute(dev, a) };
                use sys::CUdevice_attribute::*;
                Ok(GpuInfo {
                    ordinal: ordinal as usize,
                    name: cu::device::get_name(dev).map_err(|e| e.to_string())?,
                    compute_capability: (
                        attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                            .map_err(|e| e.to_string())?,
                        attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
                            .map_err(|e| e.to_string())?,
                    ),
                    total_memory: unsafe { cu::device::total_mem(dev) }
                        .map_err(|e| e.to_string())?,
                    driver_version,
                    sm_count: count_attr(attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT))?,
                    clock_khz: count_attr(attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE))?,
                    memory_clock_khz: count_attr(attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE))?,
                    memory_bus_bits: count_attr(attr(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH))?,
                })
            })
            .collect()
    })
}

/// A non-negative device attribute, or the driver's error as text.
fn count_attr<E: std::fmt::Display>(
    v: std::result::Result<i32, E>,
) -> std::result::Result<u32, String> {
    v.map(|x| x.max(0) as u32).map_err(|e| e.to_string())
}

/// A GPU context plus the kernel modules loaded into it so far.
pub struct CudaRuntime {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    compute_capability: (i32, i32),
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// Kernel file stem → module.
    modules: HashMap<&'static str, Module>,
    /// Kernel name → function in one of `modules`.
    functions: HashMap<String, Function>,
}

struct Module(sys::CUmodule);
#[derive(Clone, Copy)]
struct Function(sys::CUfunction);
// SAFETY: CUDA module and function handles are plain handles usable from any thread once
// the owning context is current; `CudaRuntime` binds its context before every use.
unsafe impl Send for Module {}
unsafe impl Send for Function {}

impl CudaRuntime {
    /// Open GPU `ordinal`. Never panics: a missing driver, a driver without the symbols
    /// cudarc expects, or a bad ordinal are errors.
    pub fn new(ordinal: usize) -> Result<CudaRuntime> {
        let (ctx, compute_capability) = guarded(|| {
            if let Err(e) = cu::init() {
                return Err(no_device_message(e));
            }
            let count = cu::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
            if ordinal >= count as usize {
                return Err(match count {
                    0 => "no CUDA GPU found; use --device cpu".to_string(),
                    1 => format!("cuda:{ordinal} does not exist: 1 GPU found (cuda:0)"),
                    n => format!(
                        "cuda:{ordinal} does not exist: {n} GPUs found (cuda:0 to cuda:{})",
                        n - 1
                    ),
                });
            }
            let ctx = CudaContext::new(ordinal)
                .map_err(|e| format!("cannot create a context on cuda:{ordinal}: {e}"))?;
            let cc = ctx
                .compute_capability()
                .map_err(|e| format!("cuda:{ordinal}: {e}"))?;
            Ok((ctx, cc))
        })
        .map_err(Error::backend)?;
        Ok(CudaRuntime {
            ordinal,
            ctx,
            compute_capability,
            loaded: Mutex::new(Loaded::default()),
        })
    }

    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.err("bind context", e))
    }

    fn err(&self, what: &str, e: DriverError) -> Error {
        Error::backend(format!("cuda:{}: {what}: {e}", self.ordinal))
    }

    /// The function for `kernel`, loading its file's module on first use.
    fn function(&self, kernel: &str) -> Result<Function> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = loaded.functions.get(kernel) {
            return Ok(*f);
        }
        let info = KERNELS
            .iter()
            .find(|k| k.name == kernel)
            .ok_or_else(|| Error::backend(format!("kernel '{kernel}' is not in kernels/*.cu")))?;
        if !info.product {
            return Err(Error::backend(format!(
                "kernel '{kernel}' is an emulator self-test kernel; it runs only on emu"
            )));
        }
        // The manifest names the file ("elementwise" or "elementwise.cu"); modules by stem.
        let file: &'static str = info.file.trim_end_matches(".cu");
        if !loaded.modules.contains_key(file) {
            let module = self.load_module(file)?;
            loaded.modules.insert(file, module);
        }
        let module = loaded.modules[file].0;
        let name = CString::new(kernel).map_err(|_| Error::invalid("kernel name has a NUL"))?;
        // SAFETY: `module` is loaded in this runtime's context and unloaded only on drop.
        let f = unsafe { cu::module::get_function(module, name) }
            .map_err(|e| self.err(&format!("kernel '{kernel}' in {file}.cu"), e))?;
        loaded.functions.insert(kernel.to_string(), Function(f));
        Ok(Function(f))
    }

    /// What the driver says of a loaded kernel, for the launch rules: its thread limit
    /// (`__launch_bounds__`, or fewer when registers run out), static shared bytes, and
    /// whether it opted in to more than 48 KiB of shared memory.
    fn kernel_limits(&self, f: Function) -> Result<KernelLimits> {
        use sys::CUfunction_attribute_enum::*;
        // SAFETY: `f` is a live function of this context, which is bound.
        let attr = |a| {
            unsafe { cu::function::get_function_attribute(f.0, a) }
                .map(|v| v.max(0) as u32)
                .map_err(|e| self.err("cuFuncGetAttribute", e))
        };
        let static_shared = attr(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?;
        let total = static_shared + attr(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)?;
        Ok(KernelLimits {
            launch_bounds: Some(attr(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?),
            static_shared,
            opted_in_shared: (total > SHARED_WITHOUT_OPT_IN).then_some(total),
        })
    }

    /// Load `kernels/<file>.cu`: build-time PTX first, NVRTC when absent or rejected.
    fn load_module(&self, file: &str) -> Result<Module> {
        let source = KERNEL_SOURCES
            .iter()
            .find(|s| s.file == file)
            .ok_or_else(|| Error::backend(format!("kernels/{file}.cu was not embedded")))?;
        let rejected = match source.ptx {
            Some(ptx) => match self.load_ptx(ptx) {
                Ok(m) => return Ok(m),
                Err(e) if is_ptx_rejection(&e) => Some(e),
                Err(e) => return Err(self.err(&format!("loading {file}.ptx"), e)),
            },
            None => None,
        };
        let ptx = self.nvrtc(file, source.source).map_err(|msg| {
            let why = rejected.map_or(String::new(), |e| {
                format!(" (the build-time PTX was rejected by the driver: {e})")
            });
            Error::backend(format!("cuda:{}: {msg}{why}", self.ordinal))
        })?;
        self.load_ptx(&ptx)
            .map_err(|e| self.err(&format!("loading NVRTC output for {file}.cu"), e))
    }

    fn load_ptx(&self, ptx: &str) -> std::result::Result<Module, DriverError> {
        self.ctx.bind_to_thread()?;
        let image = CString::new(ptx.trim_end_matches('\0')).expect("PTX text has no NUL");
        // SAFETY: `image` is a NUL-terminated PTX string that outlives the call.
        unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }.map(Module)
    }

    /// Compile one kernel file with NVRTC for this device.
    fn nvrtc(&self, file: &str, source: &str) -> std::result::Result<String, String> {
        use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
        let (major, minor) = self.compute_capability;
        let include_paths = std::env::var_os("CUDA_PATH")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain([std::path::PathBuf::from("/usr/local/cuda")])
            .map(|p| p.join("include"))
            .filter(|p| p.is_dir())
            .map(|p| p.display().to_string())
            .collect();
        let opts = CompileOptions {
            options: vec![
                format!("--gpu-architecture=compute_{major}{minor}"),
                "--std=c++17".into(),
            ],
            include_paths,
            name: Some(format!("{file}.cu")),
            ..Default::default()
        };
        // SAFETY: only probes whether the shared library can be opened.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(format!(
                "NVRTC (libnvrtc.so) not found, and it is needed to compile kernels/{file}.cu \
                 for this GPU; install the CUDA toolkit's NVRTC, or rebuild with nvcc \
                 (scripts/install-cuda-compiler.sh, then DUEL_NVCC=<path> cargo build)"
            ));
        }
        guarded(|| match compile_ptx_with_opts(source, opts) {
            Ok(ptx) => Ok(ptx.to_src()),
            Err(CompileError::CompileError { log, .. }) => Err(format!(
                "NVRTC failed on kernels/{file}.cu:\n{}",
                log.to_string_lossy()
            )),
            Err(e) => Err(format!("NVRTC failed on kernels/{file}.cu: {e}")),
        })
    }
}

impl Runtime for CudaRuntime {
    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.bind()?;
        // SAFETY: the context is current; the pointer is freed by `free`.
        unsafe { cu::malloc_sync(bytes) }
            .map_err(|e| self.err(&format!("allocating {bytes} bytes"), e))
    }

    unsafe fn free(&self, ptr: DevicePtr) {
        if self.bind().is_ok() {
            // Errors here would be from an earlier failed launch; nothing left to do.
            let _ = cu::free_sync(ptr);
        }
    }

    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: `dst` is a live allocation of at least `src.len()` bytes (caller's contract).
        unsafe { cu::memcpy_htod_sync(dst, src) }.map_err(|e| self.err("copy to device", e))
    }

    fn copy_to_host(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: as above; the legacy default stream orders this after earlier launches.
        unsafe { cu::memcpy_dtoh_sync(dst, src) }.map_err(|e| self.err("copy to host", e))
    }

    fn copy_on_device(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: both are live allocations of at least `bytes` bytes.
        unsafe { cu::memcpy_dtod_sync(dst, src, bytes) }.map_err(|e| self.err("copy on device", e))
    }

    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        let f = self.function(kernel)?;
        self.bind()?;
        limits::check(kernel, cfg, &self.kernel_limits(f)?)?;
        let mut params: Vec<*mut c_void> = args.iter().map(|a| a.as_void_ptr()).collect();
        // SAFETY: `f` is a live function of this context; `params` point at the argument
        // bytes, which outlive the call (cuLaunchKernel copies them before returning).
        unsafe {
            cu::launch_kernel(
                f.0,
                cfg.grid,
                cfg.block,
                cfg.shared_bytes,
                std::ptr::null_mut(),
                &mut params,
            )
        }
        .map_err(|e| {
            self.err(
                &format!(
                    "launching {kernel} grid {:?} block {:?} shared {}",
                    cfg.grid, cfg.block, cfg.shared_bytes
                ),
                e,
            )
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        cu::ctx::synchronize().map_err(|e| self.err("synchronize", e))
    }
}

impl Drop for CudaRuntime {
    fn drop(&mut self) {
        let loaded = self.loaded.get_mut().unwrap_or_else(|p| p.into_inner());
        if self.ctx.bind_to_thread().is_ok() {
            for (_, module) in loaded.modules.drain() {
                // SAFETY: the module was loaded in this context and no function is used again.
                let _ = unsafe { cu::module::unload(module.0) };
            }
        }
    }
}

/// Driver answers that mean "this PTX cannot be used here; try NVRTC".
fn is_ptx_rejection(e: &DriverError) -> bool {
    use sys::cudaError_enum::*;
    matches!(
        e.0,
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION
            | CUDA_ERROR_INVALID_PTX
            | CUDA_ERROR_INVALID_IMAGE
            | CUDA_ERROR_NO_BINARY_FOR_GPU
            | CUDA_ERROR_JIT_COMPILER_NOT_FOUND
    )
}

fn no_device_message(e: DriverError) -> String {
    if e.0 == sys::cudaError_enum::CUDA_ERROR_NO_DEVICE {
        "no CUDA GPU found; use --device cpu".to_string()
    } else {
        format!("CUDA driver failed to initialise ({e}); use --device cpu")
    }
}

fn driver_version() -> std::result::Result<(i32, i32), String> {
    let mut v = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(|e| format!("cuDriverGetVersion: {e}"))?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// Run driver calls only when libcuda loads, and turn cudarc's panics (a missing library
/// or symbol) into an error message instead of a crash.
fn guarded<T>(
    f: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    // SAFETY: only tries to open the shared library.
    if !unsafe { sys::is_culib_present() } {
        return Err(NO_DRIVER.to_string());
    }
    // Silence the default hook's "panicked at" message while a panic is expected; the lock
    // keeps concurrent callers from restoring each other's hooks.
    static HOOK: Mutex<()> = Mutex::new(());
    let _lock = HOOK.lock().unwrap_or_else(|p| p.into_inner());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        Err(format!(
            "CUDA library unusable ({what}); update the NVIDIA driver or use --device cpu"
        ))
    })
}
