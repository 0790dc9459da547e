//! Launch logic for kernels/dropout.cu (`dropout_f32`), shared by `cuda` and `emu`: one
//! thread per Philox block (4 positions) touched by `offset .. offset + n`.

use crate::device::simt::{kernel_count, Arg, LaunchConfig, SimtDevice};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// `x` contiguous f32 (checked by `dropout`).
pub fn apply_mask(simt: &SimtDevice, x: &Tensor, p: f64, seed: u64, offset: u64) -> Result<Tensor> {
    let n = kernel_count("dropout", x.shape())? as usize;
    let out = simt.alloc_elems(DType::F32, n)?;
    if n > 0 {
        let blocks = ((offset % 4) as usize + n).div_ceil(4);
        simt.launch(
            "dropout_f32",
            &LaunchConfig::per_item(blocks)?,
            &[
                Arg::val(seed),
                Arg::val(offset),
                Arg::val(p as f32),
                Arg::val(super::keep_scale(p) as f32),
                Arg::ptr(x.view_ptr("dropout")?),
                Arg::ptr(out.ptr()),
                Arg::val(n as i32),
            ],
        )?;
    }
    Ok(Tensor::from_device_buffer(
        out,
        x.shape().clone(),
        DType::F32,
        x.device(),
    ))
}
