//! Launch logic for kernels/view.cu, shared by `cuda` and `emu`: one thread per element,
//! both layouts passed whole (offsets included), `copy_into_f32` for f32 and
//! `copy_into_b16` for the 2-byte storage types.

use crate::device::simt::{kernel_count, Arg, LaunchConfig, SimtDevice};
use crate::error::Result;
use crate::ops::check_storage_dtype;
use crate::tensor::{DType, Tensor};

pub fn copy_into(simt: &SimtDevice, src: &Tensor, dst: &Tensor) -> Result<()> {
    check_storage_dtype("copy_into", dst.dtype(), dst.device())?;
    // f32, or one of the 2-byte storage types
    let kernel = if dst.dtype() == DType::F32 {
        "copy_into_f32"
    } else {
        "copy_into_b16"
    };
    let n = kernel_count("copy_into", dst.shape())? as usize;
    if n == 0 {
        return Ok(());
    }
    let src_layout = crate::ops::cast::simt::input_layout("copy_into", src.layout())?;
    let dst_layout = crate::ops::cast::simt::input_layout("copy_into", dst.layout())?;
    simt.launch(
        kernel,
        &LaunchConfig::per_item(n)?,
        &[
            Arg::val(src_layout),
            Arg::ptr(src.device_ptr("copy_into")?),
            Arg::val(dst_layout),
            Arg::ptr(dst.device_ptr("copy_into")?),
            Arg::val(n as i32),
        ],
    )
}
