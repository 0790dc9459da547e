//! Element-type conversion. f32 ↔ f16 and f32 ↔ bf16 on every device (round to nearest
//! even, bit-exact with the `half` crate's `from_f32`, subnormals and ±inf preserved, NaN
//! stays NaN); f16 ↔ bf16 goes through f32 (exact first step, so one rounding); f64 ↔
//! anything on the cpu only (f64 is for gradient checks).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::Result;
use crate::tensor::tape::{record, Backward};
use crate::tensor::{DType, Tensor};

/// `x` converted to `dtype` as a new contiguous tensor (a copy even when the dtype is
/// unchanged; `Tensor::to_dtype` returns `x` itself in that case). Recorded as "cast":
/// the gradient is cast back to `x`'s dtype (the gradient of an f16 input is f16).
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let _p = crate::profile::forward("cast");
    let out = convert(x, dtype)?;
    Ok(record("cast", &[x], out, || CastBackward {
        input: x.dtype(),
    }))
}

/// Backward of cast: rounding is treated as the identity (as PyTorch does), so the
/// gradient is the output's gradient converted to the input's dtype.
///
/// With the default step (1e-6) finite differences cannot check a rounding cast: f64 → f32
/// moves x ± 1e-6 by up to half an f32 ulp (6e-8 near 1), a 6% error in the central
/// difference. The gradcheck (listed with the view cases) runs the f64 → f64 copy with the
/// default bounds and the f64 → f32 → f64 round trip with h = 0.1, where the rounding is a
/// 1e-6 error; tests/cast_grad.rs checks the 16-bit casts' gradients exactly (f32 → f16 →
/// f32 gives exactly 1s, an f16 leaf gets an f16 gradient) on cpu and emu.
struct CastBackward {
    input: DType,
}

impl Backward for CastBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(convert(g, self.input)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

fn convert(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        // The same bits: the one strided-copy kernel serves every dtype.
        return crate::ops::elementwise::unary(x, crate::ops::elementwise::UnaryOp::Copy);
    }
    match x.device().simt() {
        None => cpu::cast(x, dtype),
        Some(simt) => {
            crate::ops::check_storage_dtype("cast", x.dtype(), x.device())?;
            crate::ops::check_storage_dtype("cast", dtype, x.device())?;
            simt::cast(simt, x, dtype)
        }
    }
}

/// The dtype conversion.
impl Tensor {
    /// Convert the element type (f32 ↔ f16/bf16/f64), rounding to nearest even.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        cast(self, dtype)
    }
}
