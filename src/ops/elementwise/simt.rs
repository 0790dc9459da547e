//! Launch logic for kernels/elementwise.cu, shared by the `cuda` and `emu` devices.
//!
//! - f32 unary: `unary_contiguous_f32` when the input is contiguous (its layout offset
//!   is folded into the pointer; the kernel switches to float4 itself when every pointer
//!   is 16-byte aligned), else `unary_strided_f32` with the input's layout.
//! - f32 binary: `binary_contiguous_f32` when both inputs are contiguous with the output
//!   shape, else `binary_strided_f32` with both layouts broadcast to the output shape.
//! - copies of 2- and 8-byte dtypes (f16/bf16/f64 storage): `copy_strided_b16/b64`.
//! - backward: `unary_backward_f32` on contiguous x/y/dy (non-contiguous ones are copied
//!   first; the unread one of x/y is passed as null), `binary_backward_f32` with a and b
//!   broadcast to the output shape, dy contiguous, and null for an unwanted da/db or an
//!   unread operand.
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

/// `t` as a contiguous tensor (itself, or a copy) and the address of its first element.
fn contiguous_view(op: &'static str, t: &Tensor) -> Result<(Tensor, u64)> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let ptr = view_ptr(op, &t)?;
    Ok((t, ptr))
}

fn check_f32(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::dtype(
            op,
            format!(
                "backward: {what} is {}; kernels on {} compute in f32 only",
                t.dtype(),
                t.device()
            ),
        ));
    }
    Ok(())
}

pub(super) fn unary_backward(op: UnaryOp, saved: Option<&Tensor>, dy: &Tensor) -> Result<Tensor> {
    let name = op.name();
    let dev = simt_of(name, dy)?;
    let n = check_count(name, dy.shape())?;
    check_f32(name, "the gradient", dy)?;
    let out = dev.alloc(dy.numel() * 4)?;
    if n > 0 {
        let (_g, g_ptr) = contiguous_view(name, dy)?;
        let (_s, s_ptr) = match saved {
            Some(s) => {
                check_f32(name, "the saved tensor", s)?;
                let (t, p) = contiguous_view(name, s)?;
                (Some(t), p)
            }
            None => (None, 0),
        };
        let (x_ptr, y_ptr) = match op.backward_reads() {
            super::Reads::Nothing => (0, 0),
            super::Reads::Input => (s_ptr, 0),
            super::Reads::Output => (0, s_ptr),
        };
        let (code, p0, p1) = op.code();
        let args = [
            Arg::val(code as i32),
            Arg::val(p0 as f32),
            Arg::val(p1 as f32),
            Arg::ptr(x_ptr),
            Arg::ptr(y_ptr),
            Arg::ptr(g_ptr),
            Arg::ptr(out.ptr()),
            Arg::val(n),
        ];
        dev.launch("unary_backward_f32", &config(n as usize), &args)?;
    }
    Ok(Tensor::from_device_buffer(
        out,
        dy.shape().clone(),
        DType::F32,
        dy.device(),
    ))
}

pub(super) fn binary_backward(
    op: BinaryOp,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    dy: &Tensor,
    shape: &Shape,
    want_a: bool,
    want_b: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let name = op.name();
    let dev = simt_of(name, dy)?;
    let n = check_count(name, shape)?;
    check_f32(name, "the gradient", dy)?;
    let bytes = shape.numel() * 4;
    let da = if want_a {
        Some(dev.alloc(bytes)?)
    } else {
        None
    };
    let db = if want_b {
        Some(dev.alloc(bytes)?)
    } else {
        None
    };
    if n > 0 {
        let (_g, g_ptr) = contiguous_view(name, dy)?;
        let operand = |t: Option<&Tensor>, what: &str| -> Result<(u64, KernelLayout)> {
            match t {
                Some(t) => {
                    check_f32(name, what, t)?;
                    let l = t.layout().broadcast_to(name, shape)?;
                    Ok((t.device_ptr(name)?, KernelLayout::new(name, &l)?))
                }
                // Not read by the kernel; any valid layout of the output shape will do.
                None => Ok((0, KernelLayout::new(name, dy.layout())?)),
            }
        };
        let (a_ptr, al) = operand(a, "operand a")?;
        let (b_ptr, bl) = operand(b, "operand b")?;
        let args = [
            Arg::val(op.code()),
            Arg::ptr(a_ptr),
            Arg::val(al),
            Arg::ptr(b_ptr),
            Arg::val(bl),
            Arg::ptr(g_ptr),
            Arg::ptr(da.as_ref().map_or(0, |d| d.ptr())),
            Arg::ptr(db.as_ref().map_or(0, |d| d.ptr())),
            Arg::val(n),
        ];
        dev.launch("binary_backward_f32", &config(n as usize), &args)?;
    }
    let wrap = |buf: Option<_>| {
        buf.map(|buf| Tensor::from_device_buffer(buf, shape.clone(), DType::F32, dy.device()))
    };
    Ok((wrap(da), wrap(db)))
}
