//! Devices: `cpu` (Rust reference kernels), `cuda[:N]` (kernels/*.cu through cudarc) and
//! `emu` (the same kernels compiled for the host and run with CUDA semantics).

pub mod cpu;
pub mod cuda;
pub mod emu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use simt::SimtDevice;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Cumulative allocations a device made from the system (cuda: `cuMemAlloc`; emu: host
/// blocks; cpu: buffers from the cpu allocator), and their bytes. Reuse from a cache is
/// not counted, so the difference between two readings is what a piece of work cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    pub allocations: u64,
    pub bytes: u64,
}

#[derive(Clone)]
pub enum Device {
    Cpu,
    Cuda(Arc<SimtDevice>, usize),
    Emu(Arc<SimtDevice>),
}

/// A device name as written on a command line, checked without opening anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Emu,
    Auto,
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    /// `cpu`, `cuda`, `cuda:N`, `emu` or `auto`.
    fn from_str(spec: &str) -> Result<DeviceSpec> {
        match spec.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "emu" => Ok(DeviceSpec::Emu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
                _ => Err(Error::invalid(format!(
                    "unknown device '{spec}'; use cpu, cuda, cuda:N, emu or auto"
                ))),
            },
        }
    }
}

impl DeviceSpec {
    /// Create the device; fails with a clear message when it is not usable here.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::cuda(n),
            DeviceSpec::Emu => Device::emu(),
            DeviceSpec::Auto => Ok(Device::auto()),
        }
    }
}

impl Device {
    /// Parse and open `cpu`, `cuda`, `cuda:N`, `emu` or `auto`.
    pub fn parse(spec: &str) -> Result<Device> {
        spec.parse::<DeviceSpec>()?.open()
    }

    /// GPU `ordinal` through cudarc. Fails with a clear message when no driver or GPU exists.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        let runtime = cuda::CudaRuntime::new(ordinal)?;
        Ok(Device::Cuda(
            Arc::new(SimtDevice::new(Arc::new(runtime))),
            ordinal,
        ))
    }

    /// The process-wide emulator (schedule and trace taken from the environment).
    pub fn emu() -> Result<Device> {
        static EMU: OnceLock<std::result::Result<Arc<SimtDevice>, String>> = OnceLock::new();
        EMU.get_or_init(|| {
            emu::EmuRuntime::new(emu::EmuOptions::from_env())
                .map(|rt| Arc::new(SimtDevice::new(Arc::new(rt))))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map(Device::Emu)
        .map_err(Error::backend)
    }

    /// An emulator with explicit options (tests use it to pick the schedule).
    pub fn emu_with(options: emu::EmuOptions) -> Result<Device> {
        let rt = emu::EmuRuntime::new(options)?;
        Ok(Device::Emu(Arc::new(SimtDevice::new(Arc::new(rt)))))
    }

    /// `cuda:0` when a usable GPU exists, else `cpu`.
    pub fn auto() -> Device {
        Device::cuda(0).unwrap_or(Device::Cpu)
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// The launch layer of a device that runs kernels/*.cu (None for cpu).
    pub fn simt(&self) -> Option<&Arc<SimtDevice>> {
        match self {
            Device::Cpu => None,
            Device::Cuda(d, _) | Device::Emu(d) => Some(d),
        }
    }

    /// Allocations this device has made from the system so far (see [`AllocStats`]).
    /// cpu: the tensor-sized heap requests [`cpu::alloc_counter`] counted; zeros when its
    /// counting allocator is not installed (then [`cpu::alloc_counter::read`] says `None`).
    pub fn alloc_stats(&self) -> AllocStats {
        match self {
            Device::Cpu => {
                cpu::alloc_counter::read().map_or_else(AllocStats::default, |c| AllocStats {
                    allocations: c.tensor_allocations,
                    bytes: c.tensor_bytes,
                })
            }
            Device::Cuda(d, _) | Device::Emu(d) => d.alloc_stats(),
        }
    }

    /// True when both name the same memory space (tensors can meet in one op).
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(_, a), Device::Cuda(_, b)) => a == b,
            (Device::Emu(a), Device::Emu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Error unless `other` is the same device; `op` names the op in the message.
    pub fn check_same(&self, op: &'static str, other: &Device) -> Result<()> {
        if self.same(other) {
            Ok(())
        } else {
            Err(Error::device(
                op,
                format!("operands are on {self} and {other}; move one with .to_device(..) first"),
            ))
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(_, n) => write!(f, "cuda:{n}"),
            Device::Emu(_) => f.write_str("emu"),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
