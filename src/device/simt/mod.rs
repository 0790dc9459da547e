//! The SIMT launch layer shared by the `cuda` and `emu` devices. Each op family's launch
//! logic lives in `src/ops/<family>/simt.rs` and uses only what this module offers: a
//! [`SimtDevice`] (the runtime behind the caching allocator: `alloc`, `launch` by name),
//! the launch toolkit ([`LaunchConfig`], [`Arg`], [`KernelLayout`], the checked kernel
//! sizes [`kernel_count`]/[`kernel_int`]), never a runtime directly.

pub mod alloc;
pub mod launch;
pub mod limits;
pub mod runtime;

pub use alloc::{CachingAllocator, DeviceBuffer};
pub use launch::{kernel_count, kernel_int, MAX_BLOCKS, THREADS};
pub use runtime::{Arg, DevicePtr, LaunchConfig, Runtime};

use crate::device::AllocStats;
use crate::error::Result;
use crate::tensor::dtype::DType;
use crate::tensor::shape::{Layout, MAX_RANK};
use std::sync::Arc;

/// A device that runs `kernels/*.cu`: a runtime (cuda or emu) and the caching allocator
/// in front of its memory.
pub struct SimtDevice {
    runtime: Arc<dyn Runtime>,
    allocator: Arc<CachingAllocator>,
}

impl SimtDevice {
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        let allocator = Arc::new(CachingAllocator::new(runtime.clone()));
        SimtDevice { runtime, allocator }
    }
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }
    pub fn name(&self) -> String {
        self.runtime.name()
    }
    /// At least `bytes` bytes of device memory, reused from the cache when it can be.
    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer> {
        DeviceBuffer::new(&self.allocator, bytes)
    }
    /// Room for `n` elements of `dtype`.
    pub fn alloc_elems(&self, dtype: DType, n: usize) -> Result<DeviceBuffer> {
        self.alloc(n * dtype.size_in_bytes())
    }
    /// Allocations that reached the runtime so far (cache hits excluded).
    pub fn alloc_stats(&self) -> AllocStats {
        self.allocator.stats()
    }
    /// Blocks asked for so far, cache hits included.
    pub fn alloc_requests(&self) -> u64 {
        self.allocator.requests()
    }
    /// Give every cached, unused block back to the runtime; returns the bytes freed.
    pub fn release_cached(&self) -> usize {
        self.allocator.release_cached()
    }
    pub fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        self.runtime.launch(kernel, cfg, args)
    }
}

/// Mirror of `TensorLayout` in kernels/common.cuh: a strided view passed to kernels by
/// value. Offsets and strides are in elements; a stride of 0 broadcasts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct KernelLayout {
    pub rank: i32,
    pub offset: i32,
    pub shape: [i32; MAX_RANK],
    pub strides: [i32; MAX_RANK],
}

impl KernelLayout {
    /// Kernels index with 32-bit integers; larger tensors are refused with a clear error.
    pub fn new(op: &'static str, layout: &Layout) -> Result<Self> {
        if layout.shape.rank() > MAX_RANK {
            return Err(crate::error::Error::shape(
                op,
                format!(
                    "rank {} exceeds the kernels' limit of {MAX_RANK} (shape {})",
                    layout.shape.rank(),
                    layout.shape
                ),
            ));
        }
        kernel_int(op, "storage span", layout.storage_span())?;
        let mut out = KernelLayout {
            rank: layout.shape.rank() as i32,
            offset: layout.offset as i32,
            ..Default::default()
        };
        for (i, (&d, &s)) in layout.shape.dims().iter().zip(&layout.strides).enumerate() {
            out.shape[i] = d as i32;
            out.strides[i] = s as i32;
        }
        Ok(out)
    }
}
