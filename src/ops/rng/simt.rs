//! Launch logic for kernels/rng.cu, shared by `cuda` and `emu`.

use super::Distribution;
use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

const THREADS: u32 = 256;

/// One thread per Philox block (4 positions) touched by `offset .. offset + n`.
pub fn sample_f32(
    simt: &SimtDevice,
    device: &Device,
    dist: Distribution,
    shape: &Shape,
    seed: u64,
    offset: u64,
) -> Result<Tensor> {
    let n = shape.numel();
    if n > i32::MAX as usize {
        return Err(Error::shape(
            "rng",
            format!("shape {shape} has {n} elements, over the 2^31-1 limit of the CUDA kernels"),
        ));
    }
    let buffer = simt.alloc(n * DType::F32.size_in_bytes())?;
    if n > 0 {
        let blocks = ((offset % 4) as usize + n).div_ceil(4);
        let cfg = LaunchConfig::linear(blocks, THREADS)?;
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
