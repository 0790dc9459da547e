//! Launch logic for kernels/conv.cu, shared by the `cuda` and `emu` devices.
//!
//! Every pass is a column transform (`conv_im2col_f32` / `conv_col2im_f32`, whole batch
//! at once into a `[N, R, L]` column tensor) around one batched GEMM run by the matmul
//! family (its default `matmul_regblock_f32`: the weight `[O, R]` is a broadcast operand
//! with batch stride 0, a transposed weight or column matrix is read in place as a
//! column-major operand), plus `conv_bias_add_f32` (in place on the fresh output) and
//! `conv_bias_grad_f32`. The weight gradient is the batched product `a[n]·col[n]ᵀ`
//! summed over the batch by the reduce family (deterministic).
//!
//! - conv2d forward:   `y = W·im2col(x) + b`
//! - conv2d backward:  `dx = col2im(Wᵀ·dy)`, `dW = Σ_n dy·im2col(x)ᵀ`, `db = Σ dy`
//! - convT forward:    `y = col2im(Wᵀ·x) + b`
//! - convT backward:   `dx = W·im2col(dy)`, `dW = Σ_n x·im2col(dy)ᵀ`, `db = Σ dy`
//!
//! Launches: the column and bias-add kernels are 1-D grid-stride loops of [`THREADS`]
//! threads and at most [`MAX_BLOCKS`] blocks; the bias gradient runs one 256-thread block
//! per channel (see the header of kernels/conv.cu).

use super::{Geom, Grads, Kind, Plan};
use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::ops::matmul::matmul;
use crate::tensor::{DType, Shape, Tensor};

/// Threads per block of every conv kernel.
pub const THREADS: u32 = 256;
/// Grid cap for the grid-stride kernels.
pub const MAX_BLOCKS: usize = 2048;

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

fn int(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::shape(
            op,
            format!("{what} {v} exceeds the 2^31-1 limit of the CUDA kernels"),
        )
    })
}

impl ConvGeom {
    fn new(op: &'static str, g: &Geom) -> Result<Self> {
        // The element counts the kernels index with must fit in an int as well.
        int(op, "column elements", g.n * g.rows() * g.cols())?;
        int(op, "image elements", g.n * g.image_len())?;
        Ok(ConvGeom {
            n: int(op, "batch", g.n)?,
            c: int(op, "channels", g.c)?,
            h: int(op, "height", g.h)?,
            w: int(op, "width", g.w)?,
            ho: int(op, "grid height", g.ho)?,
            wo: int(op, "grid width", g.wo)?,
            kh: int(op, "kernel height", g.kh)?,
            kw: int(op, "kernel width", g.kw)?,
            sh: int(op, "stride", g.sh)?,
            sw: int(op, "stride", g.sw)?,
            ph: int(op, "padding", g.ph)?,
            pw: int(op, "padding", g.pw)?,
            dh: int(op, "dilation", g.dh)?,
            dw: int(op, "dilation", g.dw)?,
        })
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

/// A 1-D grid-stride launch over `items`.
fn config(items: usize) -> LaunchConfig {
    LaunchConfig {
        grid: (
            items.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32,
            1,
            1,
        ),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Device address of the first element of a contiguous f32 tensor's view.
fn view_ptr(op: &'static str, t: &Tensor) -> Result<u64> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return Err(Error::invalid(format!(
            "{op}: expected a contiguous f32 operand (internal error)"
        )));
    }
    Ok(t.device_ptr(op)? + (t.layout().offset * 4) as u64)
}

/// `[N, R, L]` columns of the image tensor `img` (`[N, C, h, w]`, contiguous).
fn im2col(op: &'static str, g: &Geom, img: &Tensor) -> Result<Tensor> {
    let dev = simt_of(op, img)?;
    let geom = ConvGeom::new(op, g)?;
    let len = g.n * g.rows() * g.cols();
    let col = dev.alloc(len * 4)?;
    if len > 0 {
        let args = [
            Arg::ptr(view_ptr(op, img)?),
            Arg::ptr(col.ptr()),
            Arg::val(geom),
        ];
        dev.launch("conv_im2col_f32", &config(len), &args)?;
    }
    Ok(Tensor::from_device_buffer(
        col,
        [g.n, g.rows(), g.cols()],
        DType::F32,
        img.device(),
    ))
}

/// The image `[N, C, h, w]` whose pixels sum the column entries of `col` (`[N, R, L]`).
fn col2im(op: &'static str, g: &Geom, col: &Tensor) -> Result<Tensor> {
    let dev = simt_of(op, col)?;
    let geom = ConvGeom::new(op, g)?;
    let len = g.n * g.image_len();
    let img = dev.alloc(len * 4)?;
    if len > 0 {
        let args = [
            Arg::ptr(view_ptr(op, col)?),
            Arg::ptr(img.ptr()),
            Arg::val(geom),
        ];
        dev.launch("conv_col2im_f32", &config(len), &args)?;
    }
    Ok(Tensor::from_device_buffer(
        img,
        [g.n, g.c, g.h, g.w],
        DType::F32,
        col.device(),
    ))
}

/// `y[n, c, s] += bias[c]` in place; `y` is a fresh contiguous `[N, C, S]` result.
fn bias_add(op: &'static str, y: &Tensor, bias: &Tensor) -> Result<()> {
    let dev = simt_of(op, y)?;
    let (c, total) = (bias.numel(), y.numel());
    if total == 0 {
        return Ok(());
    }
    let l = total / (y.dims()[0] * c);
    let args = [
        Arg::ptr(view_ptr(op, y)?),
        Arg::ptr(view_ptr(op, bias)?),
        Arg::val(int(op, "channels", c)?),
        Arg::val(int(op, "spatial size", l)?),
        Arg::val(int(op, "output elements", total)?),
    ];
    dev.launch("conv_bias_add_f32", &config(total), &args)
}

/// `db[c] = Σ_{n, s} dy[n, c, s]` for a contiguous `dy` of `[N, C, ...]`.
fn bias_grad(op: &'static str, dy: &Tensor, c: usize) -> Result<Tensor> {
    let dev = simt_of(op, dy)?;
    let n = dy.dims()[0];
    let l = dy.numel().checked_div(n * c).unwrap_or(0);
    let db = dev.alloc(c * 4)?;
    if c > 0 {
        int(op, "gradient elements", dy.numel())?;
        let cfg = LaunchConfig {
            grid: (int(op, "channels", c)? as u32, 1, 1),
            block: (256, 1, 1),
            shared_bytes: 0,
        };
        let args = [
            Arg::ptr(view_ptr(op, dy)?),
            Arg::ptr(db.ptr()),
            Arg::val(int(op, "batch", n)?),
            Arg::val(int(op, "channels", c)?),
            Arg::val(int(op, "spatial size", l)?),
        ];
        dev.launch("conv_bias_grad_f32", &cfg, &args)?;
    }
    Ok(Tensor::from_device_buffer(db, [c], DType::F32, dy.device()))
}

fn check_f32(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        if t.dtype() != DType::F32 {
            return Err(Error::dtype(
                op,
                format!(
                    "operands are {}; kernels on {} compute in f32 only",
                    t.dtype(),
                    t.device()
                ),
            ));
        }
    }
    Ok(())
}

/// The weight as the `[O, R]` matrix of the column products.
fn weight_matrix(plan: &Plan, w: &Tensor) -> Result<Tensor> {
    w.reshape([plan.other, plan.geom.rows()])
}

pub(super) fn forward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    shape: Shape,
) -> Result<Tensor> {
    let op = kind.name();
    check_f32(op, &[x, w])?;
    let (g, o) = (&plan.geom, plan.other);
    let w2 = weight_matrix(plan, w)?;
    let y = match kind {
        Kind::Conv => {
            let col = im2col(op, g, x)?;
            // [O, R] · [N, R, L] -> [N, O, L]
            matmul(&w2, &col)?
        }
        Kind::ConvT => {
            let x3 = x.reshape([g.n, o, g.cols()])?;
            // [R, O] · [N, O, L] -> [N, R, L], then summed into the image
            let col = matmul(&w2.t()?, &x3)?;
            col2im(op, g, &col)?
        }
    };
    if let Some(b) = bias {
        check_f32(op, &[b])?;
        bias_add(op, &y, b)?;
    }
    y.reshape(shape)
}

pub(super) fn backward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    want: [bool; 3],
) -> Result<Grads> {
    let op = kind.name();
    check_f32(op, &[x, w, dy])?;
    let (g, o) = (&plan.geom, plan.other);
    let w2 = weight_matrix(plan, w)?;
    let l = g.cols();
    let mut out = Grads {
        x: None,
        w: None,
        bias: None,
    };
    match kind {
        Kind::Conv => {
            let dy3 = dy.reshape([g.n, o, l])?;
            if want[0] {
                let dcol = matmul(&w2.t()?, &dy3)?;
                out.x = Some(col2im(op, g, &dcol)?);
            }
            if want[1] {
                let col = im2col(op, g, x)?;
                let per_image = matmul(&dy3, &col.t()?)?; // [N, O, R]
                out.w = Some(per_image.sum(&[0], false)?.reshape(w.shape().clone())?);
            }
            if want[2] {
                out.bias = Some(bias_grad(op, dy, o)?);
            }
        }
        Kind::ConvT => {
            if want[0] || want[1] {
                let col = im2col(op, g, dy)?; // [N, R, L], L = x's spatial size
                if want[0] {
                    out.x = Some(matmul(&w2, &col)?.reshape(x.shape().clone())?);
                }
                if want[1] {
                    let x3 = x.reshape([g.n, o, l])?;
                    let per_image = matmul(&x3, &col.t()?)?; // [N, O, R]
                    out.w = Some(per_image.sum(&[0], false)?.reshape(w.shape().clone())?);
                }
            }
            if want[2] {
                out.bias = Some(bias_grad(op, dy, g.c)?);
            }
        }
    }
    Ok(out)
}
