//! The cpu helpers that more than one op family's `cpu.rs` uses: reading a strided layout
//! in row-major order, and the one dispatch of the kernels that read one real tensor and
//! write another.

use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::tensor::{Layout, Tensor};
use std::borrow::Cow;

/// The elements of `layout` over `data` in row-major order (borrowed when contiguous).
pub(crate) fn gather<'a, T: Copy>(data: &'a [T], layout: &Layout) -> Cow<'a, [T]> {
    if layout.is_contiguous() {
        Cow::Borrowed(&data[layout.offset..layout.offset + layout.numel()])
    } else {
        Cow::Owned(layout.indices().map(|i| data[i]).collect())
    }
}

/// Map the contiguous f32 or f64 elements of the cpu tensor `t` through `f32f` or `f64f`
/// into a new tensor of shape `out_dims` (the one dispatch of the cpu reference kernels
/// that read one real tensor and write another); other dtypes are refused, naming `op`.
pub(crate) fn map_real(
    op: &'static str,
    t: &Tensor,
    out_dims: &[usize],
    f32f: impl FnOnce(&[f32]) -> Vec<f32>,
    f64f: impl FnOnce(&[f64]) -> Vec<f64>,
) -> Result<Tensor> {
    let off = t.layout().offset;
    let n = t.numel();
    let out = {
        let b = t.cpu_buffer(op)?;
        match &*b {
            CpuBuffer::F32(v) => CpuBuffer::F32(f32f(&v[off..off + n])),
            CpuBuffer::F64(v) => CpuBuffer::F64(f64f(&v[off..off + n])),
            _ => {
                return Err(Error::dtype(
                    op,
                    format!("{op} on cpu takes f32 or f64, got {}", t.dtype()),
                ))
            }
        }
    };
    Tensor::from_cpu_buffer(out, out_dims.to_vec())
}
