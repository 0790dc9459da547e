//! Launch logic for kernels/elementwise.cu, shared by the `cuda` and `emu` devices.
//!
//! - f32 unary: `unary_contiguous_f32` when the input is contiguous (its layout offset
//!   is folded into the pointer; the kernel switches to float4 itself when every pointer
//!   is 16-byte aligned), else `unary_strided_f32` with the input's layout.
//! - f32 binary: `binary_contiguous_f32` when both inputs are contiguous with the output
//!   shape, else `binary_strided_f32` with both layouts broadcast to the output shape.
//! - copies of 2- and 8-byte dtypes (f16/bf16/f64 storage): `copy_strided_b16/b64`.
//!
//! All launches are 1-D, [`THREADS`] threads per block, at most [`MAX_BLOCKS`] blocks;
//! the kernels walk grid-stride loops.

use super::{BinaryOp, UnaryOp};
use crate::device::simt::{Arg, KernelLayout, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

/// Threads per block.
pub const THREADS: u32 = 256;
/// Grid cap: enough blocks to fill any current GPU several times; grid-stride loops
/// cover the rest.
pub const MAX_BLOCKS: usize = 2048;

/// A 1-D launch for `items` work items (at least one block).
fn config(items: usize) -> LaunchConfig {
    let blocks = items.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
    LaunchConfig {
        grid: (blocks as u32, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    }
}

fn simt_of<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a SimtDevice> {
    t.device().simt().map(|d| &**d).ok_or_else(|| {
        Error::device(
            op,
            format!("expected a cuda/emu tensor, got one on {}", t.device()),
        )
    })
}

fn check_count(op: &'static str, shape: &Shape) -> Result<i32> {
    i32::try_from(shape.numel()).map_err(|_| {
        Error::shape(
            op,
            format!(
                "{} elements (shape {shape}) exceed the 2^31-1 limit of the CUDA kernels",
                shape.numel()
            ),
        )
    })
}

/// Device address of the first element of a tensor's view (storage base + offset).
fn view_ptr(op: &'static str, t: &Tensor) -> Result<u64> {
    Ok(t.device_ptr(op)? + (t.layout().offset * t.dtype().size_in_bytes()) as u64)
}

pub(super) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let name = op.name();
    let dev = simt_of(name, x)?;
    let n = check_count(name, x.shape())?;
    let dtype = x.dtype();
    let out = dev.alloc(x.numel() * dtype.size_in_bytes())?;
    if n > 0 {
        match dtype {
            DType::F32 => {
                let (code, p0, p1) = op.code();
                let head = [
                    Arg::val(code as i32),
                    Arg::val(p0 as f32),
                    Arg::val(p1 as f32),
                ];
                if x.is_contiguous() {
                    let args = [
                        Arg::ptr(view_ptr(name, x)?),
                        Arg::ptr(out.ptr()),
                        Arg::val(n),
                    ];
                    let all: Vec<Arg> = head.into_iter().chain(args).collect();
                    dev.launch(
                        "unary_contiguous_f32",
                        &config((n as usize).div_ceil(4)),
                        &all,
                    )?;
                } else {
                    let args = [
                        Arg::ptr(x.device_ptr(name)?),
                        Arg::val(KernelLayout::new(name, x.layout())?),
                        Arg::ptr(out.ptr()),
                        Arg::val(n),
                    ];
                    let all: Vec<Arg> = head.into_iter().chain(args).collect();
                    dev.launch("unary_strided_f32", &config(n as usize), &all)?;
                }
            }
            DType::F16 | DType::BF16 | DType::F64 if op == UnaryOp::Copy => {
                let kernel = if dtype == DType::F64 {
                    "copy_strided_b64"
                } else {
                    "copy_strided_b16"
                };
                let args = [
                    Arg::ptr(x.device_ptr(name)?),
                    Arg::val(KernelLayout::new(name, x.layout())?),
                    Arg::ptr(out.ptr()),
                    Arg::val(n),
                ];
                dev.launch(kernel, &config(n as usize), &args)?;
            }
            other => {
                return Err(Error::dtype(
                    name,
                    format!(
                        "the input is {other}; kernels on {} compute in f32 only",
                        x.device()
                    ),
                ))
            }
        }
    }
    Ok(Tensor::from_device_buffer(
        out,
        x.shape().clone(),
        dtype,
        x.device(),
    ))
}

pub(super) fn binary(a: &Tensor, b: &Tensor, shape: &Shape, op: BinaryOp) -> Result<Tensor> {
    let name = op.name();
    let dev = simt_of(name, a)?;
    let n = check_count(name, shape)?;
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return Err(Error::dtype(
            name,
            format!(
                "lhs is {}, rhs is {}; kernels on {} compute in f32 only",
                a.dtype(),
                b.dtype(),
                a.device()
            ),
        ));
    }
    let out = dev.alloc(shape.numel() * 4)?;
    if n > 0 {
        let same = |t: &Tensor| t.shape() == shape && t.is_contiguous();
        if same(a) && same(b) {
            let args = [
                Arg::val(op.code()),
                Arg::ptr(view_ptr(name, a)?),
                Arg::ptr(view_ptr(name, b)?),
                Arg::ptr(out.ptr()),
                Arg::val(n),
            ];
            dev.launch(
                "binary_contiguous_f32",
                &config((n as usize).div_ceil(4)),
                &args,
            )?;
        } else {
            let al = a.layout().broadcast_to(name, shape)?;
            let bl = b.layout().broadcast_to(name, shape)?;
            let args = [
                Arg::val(op.code()),
                Arg::ptr(a.device_ptr(name)?),
                Arg::val(KernelLayout::new(name, &al)?),
                Arg::ptr(b.device_ptr(name)?),
                Arg::val(KernelLayout::new(name, &bl)?),
                Arg::ptr(out.ptr()),
                Arg::val(n),
            ];
            dev.launch("binary_strided_f32", &config(n as usize), &args)?;
        }
    }
    Ok(Tensor::from_device_buffer(
        out,
        shape.clone(),
        DType::F32,
        a.device(),
    ))
}
