//! Element-type conversion. f32 ↔ f16 and f32 ↔ bf16 on every device (round to nearest
//! even, bit-exact with the `half` crate's `from_f32`, subnormals and ±inf preserved, NaN
//! stays NaN); f16 ↔ bf16 goes through f32 (exact first step, so one rounding); f64 ↔
//! anything on the cpu only (f64 is for gradient checks).

pub mod cpu;
pub mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// `x` converted to `dtype` as a new contiguous tensor (a copy even when the dtype is
/// unchanged; `Tensor::to_dtype` returns `x` itself in that case).
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        // The same bits: the one strided-copy kernel serves every dtype.
        return crate::ops::elementwise::unary(x, crate::ops::elementwise::UnaryOp::Copy);
    }
    match x.device() {
        Device::Cpu => cpu::cast(x, dtype),
        Device::Cuda(simt, _) | Device::Emu(simt) => {
            if x.dtype() == DType::F64 || dtype == DType::F64 {
                return Err(Error::dtype(
                    "cast",
                    format!(
                        "cannot convert {} to {} on {}: f64 is cpu-only (used for gradient checks); use f32",
                        x.dtype(),
                        dtype,
                        x.device()
                    ),
                ));
            }
            simt::cast(simt, x, dtype)
        }
    }
}
