//! Launch logic for kernels/conv.cu, shared by the `cuda` and `emu` devices.
//!
//! Every pass is a column transform (`conv_im2col_f32` / `conv_col2im_f32`, whole batch
//! at once into a `[N, R, L]` column tensor) around one batched GEMM run by the matmul
//! family (its default `matmul_regblock_f32`: the weight `[O, R]` is a broadcast operand
//! with batch stride 0, a transposed weight or column matrix is read in place as a
//! column-major operand), plus `conv_bias_add_f32` (in place on the fresh output) and
//! `conv_bias_grad_f32`. The weight gradient `Σ_n a[n]·col[n]ᵀ` is one GEMM over the
//! batch: `a` and the columns are laid out batch-inner (`[O, N·L]`, `[R, N·L]`, one copy
//! each) so the sum over images is the GEMM's own reduction dimension.
//!
//! These are the primitives of `mod.rs` (which states each op's passes over them); operand
//! devices and dtypes were checked there.
//!
//! Launches: the column and bias-add kernels are 1-D grid-stride loops
//! ([`LaunchConfig::grid_stride`]); the bias gradient runs one [`THREADS`]-thread block
//! per channel (see the header of kernels/conv.cu).

use super::{Columns, Geom, Plan};
use crate::device::simt::{kernel_int, Arg, LaunchConfig, SimtDevice, THREADS};
use crate::error::{Error, Result};
use crate::ops::matmul::{product, MatmulKernel};
use crate::tensor::{DType, Tensor};

/// The op named in launch errors (both ops share these kernels).
const OP: &str = "conv";

/// Mirror of `ConvGeom` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvGeom {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    ho: i32,
    wo: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
}

impl ConvGeom {
    fn new(op: &'static str, g: &Geom) -> Result<Self> {
        kernel_int(op, "column elements", g.n * g.rows() * g.cols())?;
        kernel_int(op, "image elements", g.n * g.image_len())?;
        // The counts bound the extents only when no factor is 0, and stride, padding and
        // dilation never, so each field is converted checked as well.
        let int = |v: usize| kernel_int(op, "a conv size, stride, padding or dilation", v);
        Ok(ConvGeom {
            n: int(g.n)?,
            c: int(g.c)?,
            h: int(g.h)?,
            w: int(g.w)?,
            ho: int(g.ho)?,
            wo: int(g.wo)?,
            kh: int(g.kh)?,
            kw: int(g.kw)?,
            sh: int(g.sh)?,
            sw: int(g.sw)?,
            ph: int(g.ph)?,
            pw: int(g.pw)?,
            dh: int(g.dh)?,
            dw: int(g.dw)?,
        })
    }
}

/// The device address of a contiguous f32 operand (the primitives' contract).
fn f32_ptr(op: &'static str, t: &Tensor) -> Result<u64> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return Err(Error::invalid(format!(
            "{op}: expected a contiguous f32 operand (internal error)"
        )));
    }
    t.view_ptr(op)
}

/// `[N, R, L]` columns of the image tensor `img` (`[N, C, h, w]`, contiguous).
fn im2col(dev: &SimtDevice, op: &'static str, g: &Geom, img: &Tensor) -> Result<Tensor> {
    let geom = ConvGeom::new(op, g)?;
    let len = g.n * g.rows() * g.cols();
    let col = dev.alloc_elems(DType::F32, len)?;
    if len > 0 {
        let args = [
            Arg::ptr(f32_ptr(op, img)?),
            Arg::ptr(col.ptr()),
            Arg::val(geom),
        ];
        dev.launch("conv_im2col_f32", &LaunchConfig::grid_stride(len), &args)?;
    }
    Ok(Tensor::from_device_buffer(
        col,
        [g.n, g.rows(), g.cols()],
        DType::F32,
        img.device(),
    ))
}

/// The image `[N, C, h, w]` whose pixels sum the column entries of `col` (`[N, R, L]`).
fn col2im(dev: &SimtDevice, op: &'static str, g: &Geom, col: &Tensor) -> Result<Tensor> {
    let geom = ConvGeom::new(op, g)?;
    let len = g.n * g.image_len();
    let img = dev.alloc_elems(DType::F32, len)?;
    if len > 0 {
        let args = [
            Arg::ptr(f32_ptr(op, col)?),
            Arg::ptr(img.ptr()),
            Arg::val(geom),
        ];
        dev.launch("conv_col2im_f32", &LaunchConfig::grid_stride(len), &args)?;
    }
    Ok(Tensor::from_device_buffer(
        img,
        [g.n, g.c, g.h, g.w],
        DType::F32,
        col.device(),
    ))
}

/// `y[n, c, s] += bias[c]` in place; `y` is a fresh contiguous `[N, C, S]` result.
fn bias_add(dev: &SimtDevice, op: &'static str, y: &Tensor, bias: &Tensor) -> Result<()> {
    let (c, total) = (bias.numel(), y.numel());
    if total == 0 {
        return Ok(());
    }
    let l = total / (y.dims()[0] * c);
    let args = [
        Arg::ptr(f32_ptr(op, y)?),
        Arg::ptr(f32_ptr(op, bias)?),
        Arg::val(kernel_int(op, "channels", c)?),
        Arg::val(kernel_int(op, "spatial size", l)?),
        Arg::val(kernel_int(op, "output elements", total)?),
    ];
    dev.launch(
        "conv_bias_add_f32",
        &LaunchConfig::grid_stride(total),
        &args,
    )
}

/// `db[c] = Σ_{n, s} dy[n, c, s]` for a contiguous `dy` of `[N, C, ...]`.
fn bias_grad_of(dev: &SimtDevice, op: &'static str, dy: &Tensor, c: usize) -> Result<Tensor> {
    let n = dy.dims()[0];
    let l = dy.numel().checked_div(n * c).unwrap_or(0);
    let db = dev.alloc_elems(DType::F32, c)?;
    if c > 0 {
        kernel_int(op, "gradient elements", dy.numel())?;
        let cfg = LaunchConfig {
            grid: (kernel_int(op, "channels", c)? as u32, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        };
        let args = [
            Arg::ptr(f32_ptr(op, dy)?),
            Arg::ptr(db.ptr()),
            Arg::val(kernel_int(op, "batch", n)?),
            Arg::val(kernel_int(op, "channels", c)?),
            Arg::val(kernel_int(op, "spatial size", l)?),
        ];
        dev.launch("conv_bias_grad_f32", &cfg, &args)?;
    }
    Ok(Tensor::from_device_buffer(db, [c], DType::F32, dy.device()))
}

/// The weight as the `[O, R]` matrix of the column products.
fn weight_matrix(plan: &Plan, w: &Tensor) -> Result<Tensor> {
    w.reshape([plan.other, plan.geom.rows()])
}

/// `[N, A, L]` as the contiguous batch-inner matrix `[A, N·L]`.
fn batch_inner(t: &Tensor, n: usize, a: usize, l: usize) -> Result<Tensor> {
    t.reshape([n, a, l])?
        .permute(&[1, 0, 2])?
        .contiguous()?
        .reshape([a, n * l])
}

pub(super) fn column_products(
    dev: &SimtDevice,
    plan: &Plan,
    img: &Tensor,
    w: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: Option<&Tensor>,
) -> Result<Columns> {
    let (g, o) = (&plan.geom, plan.other);
    let (n, r, l) = (g.n, g.rows(), g.cols());
    let col = im2col(dev, OP, g, img)?; // [N, R, L]
    let product = match w {
        Some(w) => {
            // [O, R] · [N, R, L] -> [N, O, L]
            let y = gemm(plan, &weight_matrix(plan, w)?, &col)?;
            if let Some(b) = bias {
                bias_add(dev, OP, &y, b)?;
            }
            Some(y)
        }
        None => None,
    };
    let weight_grad = match a {
        // [O, N·L] · [R, N·L]ᵀ -> [O, R]
        Some(a) => Some(gemm(
            plan,
            &batch_inner(a, n, o, l)?,
            &batch_inner(&col, n, r, l)?.t()?,
        )?),
        None => None,
    };
    Ok(Columns {
        product,
        weight_grad,
    })
}

pub(super) fn col2im_product(
    dev: &SimtDevice,
    plan: &Plan,
    a: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let g = &plan.geom;
    let a3 = a.reshape([g.n, plan.other, g.cols()])?;
    // [R, O] · [N, O, L] -> [N, R, L], then summed into the image
    let col = gemm(plan, &weight_matrix(plan, w)?.t()?, &a3)?;
    let img = col2im(dev, OP, g, &col)?;
    if let Some(b) = bias {
        bias_add(dev, OP, &img, b)?;
    }
    Ok(img)
}

/// One of the op's GEMMs: the matmul family's default kernel in the plan's precision.
fn gemm(plan: &Plan, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    product(a, b, MatmulKernel::default(), plan.precision)
}

pub(super) fn bias_grad(dev: &SimtDevice, dy: &Tensor, channels: usize) -> Result<Tensor> {
    bias_grad_of(dev, OP, dy, channels)
}
