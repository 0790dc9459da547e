//! The launch toolkit every `src/ops/<family>/simt.rs` builds on: one block size, one
//! grid-stride configuration, one checked conversion to the kernels' 32-bit integers.

use super::runtime::LaunchConfig;
use crate::error::{Error, Result};
use crate::tensor::shape::Shape;

/// Threads per block of the 1-D launches.
pub const THREADS: u32 = 256;
/// Grid cap of the grid-stride launches: enough blocks to fill any current GPU several
/// times; the kernels' grid-stride loops cover the rest.
pub const MAX_BLOCKS: usize = 2048;

impl LaunchConfig {
    /// A 1-D launch of [`THREADS`]-thread blocks for a kernel that walks `items` in a
    /// grid-stride loop: one thread per item up to [`MAX_BLOCKS`] blocks (at least one).
    pub fn grid_stride(items: usize) -> Self {
        let blocks = items.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
        LaunchConfig {
            grid: (blocks as u32, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        }
    }

    /// A 1-D launch of [`THREADS`]-thread blocks with one thread per item, for kernels
    /// without a grid-stride loop.
    pub fn per_item(items: usize) -> Result<Self> {
        LaunchConfig::linear(items, THREADS)
    }
}

/// `v` as the `int` a kernel parameter takes; `what` names it in the error (the kernels
/// index with 32-bit integers, so larger tensors are refused rather than wrapped).
pub fn kernel_int(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::shape(
            op,
            format!("{what} {v} exceeds the 2^31-1 limit of the CUDA kernels"),
        )
    })
}

/// The element count of `shape` as a kernel `int`.
pub fn kernel_count(op: &'static str, shape: &Shape) -> Result<i32> {
    kernel_int(op, &format!("shape {shape}: element count"), shape.numel())
}
