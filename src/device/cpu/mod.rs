//! The cpu backend's storage and shared helpers. Op kernels live beside their op in
//! `src/ops/<family>/cpu.rs`.

pub mod alloc_counter;
pub mod isa;

use crate::tensor::dtype::DType;
use half::{bf16, f16};

/// Host storage of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuBuffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl CpuBuffer {
    pub fn zeros(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::F32 => CpuBuffer::F32(vec![0.0; len]),
            DType::F64 => CpuBuffer::F64(vec![0.0; len]),
            DType::F16 => CpuBuffer::F16(vec![f16::ZERO; len]),
            DType::BF16 => CpuBuffer::BF16(vec![bf16::ZERO; len]),
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            CpuBuffer::F32(_) => DType::F32,
            CpuBuffer::F64(_) => DType::F64,
            CpuBuffer::F16(_) => DType::F16,
            CpuBuffer::BF16(_) => DType::BF16,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuBuffer::F32(v) => v.len(),
            CpuBuffer::F64(v) => v.len(),
            CpuBuffer::F16(v) => v.len(),
            CpuBuffer::BF16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CpuBuffer::F32(v) => bytemuck::cast_slice(v),
            CpuBuffer::F64(v) => bytemuck::cast_slice(v),
            CpuBuffer::F16(v) => bytemuck::cast_slice(v),
            CpuBuffer::BF16(v) => bytemuck::cast_slice(v),
        }
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            CpuBuffer::F32(v) => bytemuck::cast_slice_mut(v),
            CpuBuffer::F64(v) => bytemuck::cast_slice_mut(v),
            CpuBuffer::F16(v) => bytemuck::cast_slice_mut(v),
            CpuBuffer::BF16(v) => bytemuck::cast_slice_mut(v),
        }
    }
}

/// `n` copies of `value`, or an error naming `op` when `shape` has more elements than
/// `usize` holds or the system refuses the memory: creation ops (`full`, `rand`) take their
/// sizes from users and files, and a size too large must be an error, not an abort.
pub fn try_filled<T: Clone>(
    op: &'static str,
    shape: &crate::tensor::shape::Shape,
    value: T,
) -> crate::error::Result<Vec<T>> {
    let too_big = |why: &str| {
        crate::error::Error::invalid(format!(
            "{op}: shape {shape} needs {why}; use smaller sizes (batch, width, image size)"
        ))
    };
    let n = shape
        .checked_numel()
        .ok_or_else(|| too_big("more elements than a usize holds"))?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        too_big(&format!(
            "{} bytes, more memory than the system gives",
            n as u128 * std::mem::size_of::<T>() as u128
        ))
    })?;
    v.resize(n, value);
    Ok(v)
}

/// Work below this many elements runs on the calling thread: spawning costs more.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;
