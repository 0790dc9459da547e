//! Launch logic for kernels/fill.cu, shared by `cuda` and `emu`.

use crate::device::simt::{kernel_count, Arg, LaunchConfig, SimtDevice};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{DType, Shape, Tensor};
use half::{bf16, f16};

pub fn full(
    simt: &SimtDevice,
    device: &Device,
    shape: &Shape,
    value: f64,
    dtype: DType,
) -> Result<Tensor> {
    let n = kernel_count("full", shape)?;
    let buffer = simt.alloc_elems(dtype, shape.numel())?;
    if n > 0 {
        let cfg = LaunchConfig::per_item(n as usize)?;
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
    let count = kernel_count("arange", &shape)?;
    let buffer = simt.alloc_elems(DType::F32, n)?;
    if n > 0 {
        simt.launch(
            "arange_f32",
            &LaunchConfig::per_item(n)?,
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
