//! Launch logic for kernels/fill.cu, shared by `cuda` and `emu`.

use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};
use half::{bf16, f16};

const THREADS: u32 = 256;

fn check_len(op: &'static str, shape: &Shape) -> Result<i32> {
    let n = shape.numel();
    i32::try_from(n).map_err(|_| {
        Error::shape(
            op,
            format!("shape {shape} has {n} elements, over the 2^31-1 limit of the CUDA kernels"),
        )
    })
}

pub fn full(
    simt: &SimtDevice,
    device: &Device,
    shape: &Shape,
    value: f64,
    dtype: DType,
) -> Result<Tensor> {
    let n = check_len("full", shape)?;
    let buffer = simt.alloc(shape.numel() * dtype.size_in_bytes())?;
    if n > 0 {
        let cfg = LaunchConfig::linear(n as usize, THREADS)?;
        let out = Arg::ptr(buffer.ptr());
        match dtype {
            DType::F32 => simt.launch(
                "fill_f32",
                &cfg,
                &[out, Arg::val(value as f32), Arg::val(n)],
            )?,
            DType::F16 | DType::BF16 => {
                // rounded once on the host, exactly as the cpu backend does
                let bits = if dtype == DType::F16 {
                    f16::from_f64(value).to_bits()
                } else {
                    bf16::from_f64(value).to_bits()
                };
                simt.launch("fill_u16", &cfg, &[out, Arg::val(bits), Arg::val(n)])?
            }
            DType::F64 => unreachable!("rejected by fill::full"),
        }
    }
    Ok(Tensor::from_device_buffer(
        buffer,
        shape.clone(),
        dtype,
        device,
    ))
}

pub fn arange(
    simt: &SimtDevice,
    device: &Device,
    n: usize,
    start: f64,
    step: f64,
    dtype: DType,
) -> Result<Tensor> {
    let shape = Shape::new([n]);
    let count = check_len("arange", &shape)?;
    let buffer = simt.alloc(n * DType::F32.size_in_bytes())?;
    if n > 0 {
        simt.launch(
            "arange_f32",
            &LaunchConfig::linear(n, THREADS)?,
            &[
                Arg::ptr(buffer.ptr()),
                Arg::val(start),
                Arg::val(step),
                Arg::val(count),
            ],
        )?;
    }
    let out = Tensor::from_device_buffer(buffer, shape, DType::F32, device);
    // f16/bf16: rounded from the f32 values, as on the cpu
    out.to_dtype(dtype)
}
