//! Launch logic for kernels/dropout.cu (`dropout_f32`), shared by `cuda` and `emu`: one
//! thread per Philox block (4 positions) touched by `offset .. offset + n`.

use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const THREADS: u32 = 256;

/// `x` contiguous f32.
pub fn apply_mask(simt: &SimtDevice, x: &Tensor, p: f64, seed: u64, offset: u64) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        return Err(Error::dtype(
            "dropout",
            format!("dropout on {} takes f32, got {}", x.device(), x.dtype()),
        ));
    }
    let n = x.numel();
    if n > i32::MAX as usize {
        return Err(Error::shape(
            "dropout",
            format!("{n} elements exceed the 2^31-1 limit of the CUDA kernels"),
        ));
    }
    let out = simt.alloc(n * 4)?;
    if n > 0 {
        let blocks = ((offset % 4) as usize + n).div_ceil(4);
        simt.launch(
            "dropout_f32",
            &LaunchConfig::linear(blocks, THREADS)?,
            &[
                Arg::val(seed),
                Arg::val(offset),
                Arg::val(p as f32),
                Arg::val(super::keep_scale(p) as f32),
                Arg::ptr(x.device_ptr("dropout")? + (x.layout().offset * 4) as u64),
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
