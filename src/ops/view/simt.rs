//! Launch logic for kernels/view.cu, shared by `cuda` and `emu`: one thread per element,
//! both layouts passed whole (offsets included), `copy_into_f32` for f32 and
//! `copy_into_b16` for the 2-byte storage types.

use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const THREADS: u32 = 256;

pub fn copy_into(simt: &SimtDevice, src: &Tensor, dst: &Tensor) -> Result<()> {
    let kernel = match dst.dtype() {
        DType::F32 => "copy_into_f32",
        DType::F16 | DType::BF16 => "copy_into_b16",
        DType::F64 => {
            return Err(Error::dtype(
                "copy_into",
                format!(
                    "f64 is cpu-only (used for gradient checks); use f32 on {}",
                    dst.device()
                ),
            ))
        }
    };
    let n = dst.numel();
    if n > i32::MAX as usize {
        return Err(Error::shape(
            "copy_into",
            format!(
                "shape {} has {n} elements, over the 2^31-1 limit of the CUDA kernels",
                dst.shape()
            ),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    let src_layout = crate::ops::cast::simt::input_layout("copy_into", src.layout())?;
    let dst_layout = crate::ops::cast::simt::input_layout("copy_into", dst.layout())?;
    simt.launch(
        kernel,
        &LaunchConfig::linear(n, THREADS)?,
        &[
            Arg::val(src_layout),
            Arg::ptr(src.device_ptr("copy_into")?),
            Arg::val(dst_layout),
            Arg::ptr(dst.device_ptr("copy_into")?),
            Arg::val(n as i32),
        ],
    )
}
