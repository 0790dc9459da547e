//! Launch logic for kernels/rng.cu, shared by `cuda` and `emu`.

use super::Distribution;
use crate::device::simt::{kernel_count, Arg, LaunchConfig, SimtDevice};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{DType, Shape, Tensor};

/// One thread per Philox block (4 positions) touched by `offset .. offset + n`.
pub fn sample_f32(
    simt: &SimtDevice,
    device: &Device,
    dist: Distribution,
    shape: &Shape,
    seed: u64,
    offset: u64,
) -> Result<Tensor> {
    let n = kernel_count("rng", shape)? as usize;
    let buffer = simt.alloc_elems(DType::F32, n)?;
    if n > 0 {
        let blocks = ((offset % 4) as usize + n).div_ceil(4);
        let cfg = LaunchConfig::per_item(blocks)?;
        let kernel = match dist {
            Distribution::Uniform => "rng_uniform_f32",
            Distribution::Normal => "rng_normal_f32",
        };
        simt.launch(
            kernel,
            &cfg,
            &[
                Arg::val(seed),
                Arg::val(offset),
                Arg::ptr(buffer.ptr()),
                Arg::val(n as i32),
            ],
        )?;
    }
    Ok(Tensor::from_device_buffer(
        buffer,
        shape.clone(),
        DType::F32,
        device,
    ))
}
