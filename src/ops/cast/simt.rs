//! Launch logic for kernels/cast.cu, shared by `cuda` and `emu`: one thread per element,
//! strided inputs read through their layout.

use crate::device::simt::{kernel_count, Arg, KernelLayout, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Layout, Shape, Tensor};

/// The kernel layout of `x`, collapsed to rank 1 when contiguous (cheaper indexing).
pub fn input_layout(op: &'static str, layout: &Layout) -> Result<KernelLayout> {
    if layout.is_contiguous() {
        let flat = Layout {
            shape: Shape::new([layout.numel()]),
            strides: vec![1],
            offset: layout.offset,
        };
        KernelLayout::new(op, &flat)
    } else {
        KernelLayout::new(op, layout)
    }
}

pub fn cast(simt: &SimtDevice, x: &Tensor, dtype: DType) -> Result<Tensor> {
    let kernel = match (x.dtype(), dtype) {
        (DType::F32, DType::F16) => "cast_f32_to_f16",
        (DType::F32, DType::BF16) => "cast_f32_to_bf16",
        (DType::F16, DType::F32) => "cast_f16_to_f32",
        (DType::BF16, DType::F32) => "cast_bf16_to_f32",
        (DType::F16, DType::BF16) | (DType::BF16, DType::F16) => {
            // through f32: the first step is exact, so this rounds once
            return cast(simt, &cast(simt, x, DType::F32)?, dtype);
        }
        (from, to) => {
            return Err(Error::dtype(
                "cast",
                format!("no {from} -> {to} conversion on {}", x.device()),
            ))
        }
    };
    let n = kernel_count("cast", x.shape())? as usize;
    let layout = input_layout("cast", x.layout())?;
    let buffer = simt.alloc_elems(dtype, n)?;
    if n > 0 {
        simt.launch(
            kernel,
            &LaunchConfig::per_item(n)?,
            &[
                Arg::val(layout),
                Arg::ptr(x.device_ptr("cast")?),
                Arg::ptr(buffer.ptr()),
                Arg::val(n as i32),
            ],
        )?;
    }
    Ok(Tensor::from_device_buffer(
        buffer,
        x.shape().clone(),
        dtype,
        x.device(),
    ))
}
