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
//! All launches are 1-D grid-stride ([`LaunchConfig::grid_stride`]).

use super::{BinaryOp, UnaryOp};
use crate::device::simt::{kernel_count, Arg, KernelLayout, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::ops::check_compute;
use crate::tensor::{DType, Shape, Tensor};

pub(super) fn unary(dev: &SimtDevice, x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let name = op.name();
    let n = kernel_count(name, x.shape())?;
    let dtype = x.dtype();
    let out = dev.alloc_elems(dtype, x.numel())?;
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
                        Arg::ptr(x.view_ptr(name)?),
                        Arg::ptr(out.ptr()),
                        Arg::val(n),
                    ];
                    let all: Vec<Arg> = head.into_iter().chain(args).collect();
                    dev.launch(
                        "unary_contiguous_f32",
                        &LaunchConfig::grid_stride((n as usize).div_ceil(4)),
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
                    dev.launch(
                        "unary_strided_f32",
                        &LaunchConfig::grid_stride(n as usize),
                        &all,
                    )?;
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
                dev.launch(kernel, &LaunchConfig::grid_stride(n as usize), &args)?;
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

/// `a` and `b` f32 (checked by `binary`).
pub(super) fn binary(
    dev: &SimtDevice,
    a: &Tensor,
    b: &Tensor,
    shape: &Shape,
    op: BinaryOp,
) -> Result<Tensor> {
    let name = op.name();
    let n = kernel_count(name, shape)?;
    let out = dev.alloc_elems(DType::F32, shape.numel())?;
    if n > 0 {
        let same = |t: &Tensor| t.shape() == shape && t.is_contiguous();
        if same(a) && same(b) {
            let args = [
                Arg::val(op.code()),
                Arg::ptr(a.view_ptr(name)?),
                Arg::ptr(b.view_ptr(name)?),
                Arg::ptr(out.ptr()),
                Arg::val(n),
            ];
            dev.launch(
                "binary_contiguous_f32",
                &LaunchConfig::grid_stride((n as usize).div_ceil(4)),
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
            dev.launch(
                "binary_strided_f32",
                &LaunchConfig::grid_stride(n as usize),
                &args,
            )?;
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
    let ptr = t.view_ptr(op)?;
    Ok((t, ptr))
}

fn check_f32(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    check_compute(op, what, t.dtype(), t.device())
}

pub(super) fn unary_backward(
    dev: &SimtDevice,
    op: UnaryOp,
    saved: Option<&Tensor>,
    dy: &Tensor,
) -> Result<Tensor> {
    let name = op.name();
    let n = kernel_count(name, dy.shape())?;
    check_f32(name, "the gradient", dy)?;
    let out = dev.alloc_elems(DType::F32, dy.numel())?;
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
        dev.launch(
            "unary_backward_f32",
            &LaunchConfig::grid_stride(n as usize),
            &args,
        )?;
    }
    Ok(Tensor::from_device_buffer(
        out,
        dy.shape().clone(),
        DType::F32,
        dy.device(),
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn binary_backward(
    dev: &SimtDevice,
    op: BinaryOp,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    dy: &Tensor,
    shape: &Shape,
    want_a: bool,
    want_b: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let name = op.name();
    let n = kernel_count(name, shape)?;
    check_f32(name, "the gradient", dy)?;
    let grad = || dev.alloc_elems(DType::F32, shape.numel());
    let da = if want_a { Some(grad()?) } else { None };
    let db = if want_b { Some(grad()?) } else { None };
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
        dev.launch(
            "binary_backward_f32",
            &LaunchConfig::grid_stride(n as usize),
            &args,
        )?;
    }
    let wrap = |buf: Option<_>| {
        buf.map(|buf| Tensor::from_device_buffer(buf, shape.clone(), DType::F32, dy.device()))
    };
    Ok((wrap(da), wrap(db)))
}
