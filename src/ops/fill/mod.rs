//! Creation by value: `full` (every element the same) and `arange` (an arithmetic
//! sequence).
//!
//! * `full`: the value is rounded once from f64 to the dtype (`as f32`, or the `half`
//!   crate's `from_f64` for f16/bf16) on the host; kernels store those bits.
//! * `arange(start, end, step)`: `count = ceil((end − start) / step)` clamped at 0;
//!   element `i` is `start + i·step` computed in f64, then rounded to f32 (and from f32
//!   to f16/bf16 for those dtypes, like `Tensor::to_dtype`). Same on every backend.
//!
//! f64 is cpu-only (used for gradient checks).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::check_storage_dtype;
use crate::tensor::{DType, Shape, Tensor};

/// A tensor of `shape` with every element `value` (rounded to `dtype`).
pub fn full(shape: &Shape, value: f64, dtype: DType, device: &Device) -> Result<Tensor> {
    let _p = crate::profile::forward("fill");
    check_storage_dtype("full", dtype, device)?;
    match device.simt() {
        None => Tensor::from_cpu_buffer(cpu::full(shape, value, dtype)?, shape.clone()),
        Some(simt) => simt::full(simt, device, shape, value, dtype),
    }
}

/// The number of elements of `arange(start, end, step)`, or an error naming the bad bound.
pub fn arange_len(start: f64, end: f64, step: f64) -> Result<usize> {
    if !start.is_finite() || !end.is_finite() || !step.is_finite() {
        return Err(Error::invalid(format!(
            "arange: start, end and step must be finite (got start {start}, end {end}, step {step})"
        )));
    }
    if step == 0.0 {
        return Err(Error::invalid(format!(
            "arange: step must not be 0 (start {start}, end {end})"
        )));
    }
    let count = ((end - start) / step).ceil();
    if !count.is_finite() || count > (i32::MAX as f64) {
        return Err(Error::invalid(format!(
            "arange: start {start}, end {end}, step {step} gives {count} elements, more than 2^31-1"
        )));
    }
    Ok(if count > 0.0 { count as usize } else { 0 })
}

/// `[start, start + step, …]` up to (excluding) `end`, as a 1-D tensor.
pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: &Device) -> Result<Tensor> {
    check_storage_dtype("arange", dtype, device)?;
    let n = arange_len(start, end, step)?;
    match device.simt() {
        None => Tensor::from_cpu_buffer(cpu::arange(n, start, step, dtype), [n]),
        Some(simt) => simt::arange(simt, device, n, start, step, dtype),
    }
}

/// The filled-tensor constructors (written here, where they are computed).
impl Tensor {
    pub fn full(
        shape: impl Into<Shape>,
        value: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        full(&shape.into(), value, dtype, device)
    }
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, dtype, device)
    }
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype, device)
    }
    /// `start, start+step, …` up to (excluding) `end`, as a 1-D tensor.
    pub fn arange(
        start: f64,
        end: f64,
        step: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        arange(start, end, step, dtype, device)
    }
}
