//! 2-D convolution and transposed convolution with PyTorch semantics (groups = 1):
//!
//! - [`conv2d`]: `x [N, Cin, H, W]`, weight `[Cout, Cin, kh, kw]`, optional bias `[Cout]`,
//!   stride, zero padding and dilation;
//!   `Ho = floor((H + 2·ph − dh·(kh − 1) − 1) / sh) + 1` (likewise `Wo`).
//! - [`conv_transpose2d`]: `x [N, Cin, H, W]`, weight `[Cin, Cout, kh, kw]` (PyTorch's
//!   layout), optional bias `[Cout]`, stride, padding, output_padding and dilation;
//!   `Ho = (H − 1)·sh − 2·ph + dh·(kh − 1) + oph + 1`, with `oph < max(sh, dh)` (PyTorch's
//!   rule; likewise for the width).
//!
//! Both are expressed through one column geometry (`Geom`): an "image" `[N, C, Hi, Wi]`
//! and the grid `Go x Wo` of window positions over it. `im2col` gathers the image into
//! `[C·kh·kw, Go·Wo]` columns, `col2im` is its adjoint (sums columns back into pixels).
//! - conv2d: image = x, grid = output. `y = W·im2col(x) + b`; backward `dx = col2im(Wᵀ·dy)`,
//!   `dW = Σ_n dy·im2col(x)ᵀ`, `db = Σ dy`.
//! - conv_transpose2d is the adjoint of conv2d: image = y, grid = x. `y = col2im(Wᵀ·x) + b`;
//!   backward `dx = W·im2col(dy)`, `dW = Σ_n x·im2col(dy)ᵀ`, `db = Σ dy`.
//!
//! Dtypes: f32 on every device, f64 on cpu. Results are fresh contiguous tensors.
//! Precision: every GEMM of an op, forward and backward, runs in the `ops::precision` read
//! when the op is called (the plan keeps it); im2col/col2im and the bias stay f32.
//!
//! Both ops, forward and backward, are written once below over three primitives (column
//! products, the col2im product, the bias gradient; see "the primitives" below) that each
//! backend implements: `cpu.rs` (im2col + the cpu GEMM of `ops::cpu_gemm` over fixed blocks of images,
//! thread-local workspaces reused across calls) and `simt.rs` (the launch logic for
//! kernels/conv.cu plus the register-blocked GEMM of kernels/matmul.cu through the matmul
//! family, shared by `cuda` and `emu`).
//!
//! Autograd: each op records one node ("conv2d", "conv_transpose2d") whose backward rule
//! is written by hand for input, weight and bias (see above); it saves the contiguous
//! input and weight the forward pass used.

mod blocking;
mod cols;
mod cpu;
mod dense;
mod elem;
mod gradcheck;
mod patches;
mod plan;
mod simt;
mod windows;

#[doc(hidden)]
pub use gradcheck::gradcheck_cases;
pub use plan::{conv2d_output_size, conv_transpose2d_output_size};
use plan::{plan_conv2d, plan_conv_transpose2d};
pub(crate) use plan::{Geom, Plan};

use crate::error::{Error, Result};
use crate::tensor::tape::{self, Backward};
use crate::tensor::Tensor;

/// Stride, zero padding and dilation of [`conv2d`] (each `(height, width)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        }
    }
}

/// Stride, padding, output padding and dilation of [`conv_transpose2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub output_padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
        }
    }
}

const CONV: &str = "conv2d";
const CONVT: &str = "conv_transpose2d";

/// Which of the two ops a node or plan belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Conv,
    ConvT,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Conv => CONV,
            Kind::ConvT => CONVT,
        }
    }
}

/// 2-D convolution (cross-correlation, as PyTorch): see the module doc. Records on the tape.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let plan = plan_conv2d(x, w, bias, p)?;
    run_op(Kind::Conv, plan, x, w, bias)
}

/// 2-D transposed convolution (PyTorch's `conv_transpose2d`, groups = 1): see the module
/// doc. Records on the tape.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &ConvTranspose2dParams,
) -> Result<Tensor> {
    let plan = plan_conv_transpose2d(x, w, bias, p)?;
    run_op(Kind::ConvT, plan, x, w, bias)
}

fn run_op(kind: Kind, plan: Plan, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let _p = crate::profile::forward(kind.name());
    // Contiguous once: the forward pass and the saved operands of backward share them.
    let xc = x.detach().contiguous()?;
    let wc = w.detach().contiguous()?;
    let out = tape::no_grad(|| -> Result<Tensor> {
        let bc = bias.map(|b| b.detach().contiguous()).transpose()?;
        forward(kind, &plan, &xc, &wc, bc.as_ref())
    })?;
    let mut inputs = vec![x, w];
    if let Some(b) = bias {
        inputs.push(b);
    }
    Ok(tape::record(kind.name(), &inputs, out, || ConvBackward {
        kind,
        plan,
        x: tape::save(&xc),
        w: tape::save(&wc),
        has_bias: bias.is_some(),
        wanted: Wanted {
            x: x.requires_grad(),
            w: w.requires_grad(),
            bias: bias.is_some_and(|b| b.requires_grad()),
        },
    }))
}

// ---- the primitives both ops are written over --------------------------------------
//
// Each backend implements three on contiguous operands of one dtype (checked above), with
// `R = C·kh·kw`, `L = ho·wo` of the plan's geometry and `O = plan.other`:
// - `column_products(img, w, bias, a)`: `out[n] = W·im2col(img[n]) (+ bias[o])` as
//   `[N, O, L]`, and, when `a` (`[N, O, L]`) is given, `dW = Σ_n a[n]·im2col(img[n])ᵀ` as
//   `[O, R]` from the same columns (`w` absent: only the weight gradient).
// - `col2im_product(a, w, bias)`: `img[n] = col2im(Wᵀ·a[n]) (+ bias[c])` as `[N, C, h, w]`.
// - `bias_grad(dy, c)`: `db[c] = Σ_{n, s} dy[n, c, s]`.

/// The column products of one call: the `[N, O, L]` product when a weight was given and
/// the `[O, R]` weight gradient when `a` was.
pub(crate) struct Columns {
    pub product: Option<Tensor>,
    pub weight_grad: Option<Tensor>,
}

fn column_products(
    plan: &Plan,
    img: &Tensor,
    w: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: Option<&Tensor>,
) -> Result<Columns> {
    match img.device().simt() {
        None => cpu::column_products(plan, img, w, bias, a),
        Some(dev) => simt::column_products(dev, plan, img, w, bias, a),
    }
}

fn col2im_product(plan: &Plan, a: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match a.device().simt() {
        None => cpu::col2im_product(plan, a, w, bias),
        Some(dev) => simt::col2im_product(dev, plan, a, w, bias),
    }
}

fn bias_grad(dy: &Tensor, channels: usize) -> Result<Tensor> {
    match dy.device().simt() {
        None => cpu::bias_grad(dy, channels),
        Some(dev) => simt::bias_grad(dev, dy, channels),
    }
}

/// A product the primitive was asked for and did not return (an internal error).
fn asked(t: Option<Tensor>, what: &str) -> Result<Tensor> {
    t.ok_or_else(|| {
        Error::backend(format!(
            "conv: the {what} was not computed (internal error)"
        ))
    })
}

// ---- each op's forward and backward, once ------------------------------------------

/// The forward pass on contiguous operands, without the tape.
fn forward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let g = &plan.geom;
    match kind {
        // y = W·im2col(x) + b
        Kind::Conv => asked(
            column_products(plan, x, Some(w), bias, None)?.product,
            "output",
        )?
        .reshape([g.n, plan.other, g.ho, g.wo]),
        // y = col2im(Wᵀ·x) + b
        Kind::ConvT => col2im_product(plan, x, w, bias),
    }
}

/// Which of (x, weight, bias) want a gradient.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    x: bool,
    w: bool,
    bias: bool,
}

/// Saved for backward: the contiguous input and weight (detached); the bias is not needed.
struct ConvBackward {
    kind: Kind,
    plan: Plan,
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    wanted: Wanted,
}

impl Backward for ConvBackward {
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (plan, x, w) = (&self.plan, &self.x, &self.w);
        let dy = grad_output.contiguous()?;
        let want = self.wanted;
        let (dx, dw, db) = match self.kind {
            Kind::Conv => {
                // dx = col2im(Wᵀ·dy), dW = Σ_n dy·im2col(x)ᵀ, db = Σ dy
                let dx = match want.x {
                    true => Some(col2im_product(plan, &dy, w, None)?),
                    false => None,
                };
                let dw = match want.w {
                    true => Some(asked(
                        column_products(plan, x, None, None, Some(&dy))?.weight_grad,
                        "weight gradient",
                    )?),
                    false => None,
                };
                let db = match want.bias {
                    true => Some(bias_grad(&dy, plan.other)?),
                    false => None,
                };
                (dx, dw, db)
            }
            Kind::ConvT => {
                // dx = W·im2col(dy), dW = Σ_n x·im2col(dy)ᵀ (one set of columns), db = Σ dy
                let (dx, dw) = if want.x || want.w {
                    let c =
                        column_products(plan, &dy, want.x.then_some(w), None, want.w.then_some(x))?;
                    let dx = want
                        .x
                        .then(|| asked(c.product, "input gradient"))
                        .transpose()?;
                    let dw = want
                        .w
                        .then(|| asked(c.weight_grad, "weight gradient"))
                        .transpose()?;
                    (dx, dw)
                } else {
                    (None, None)
                };
                let db = match want.bias {
                    true => Some(bias_grad(&dy, plan.geom.c)?),
                    false => None,
                };
                (
                    dx.map(|t| t.reshape(x.shape().clone())).transpose()?,
                    dw,
                    db,
                )
            }
        };
        let mut out = vec![dx, dw.map(|t| t.reshape(w.shape().clone())).transpose()?];
        if self.has_bias {
            out.push(db);
        }
        Ok(out)
    }
    fn saved_bytes(&self) -> usize {
        (self.x.numel() + self.w.numel()) * self.x.dtype().size_in_bytes()
    }
}

impl Tensor {
    /// [`conv2d`] of `self` with weight `w` and an optional bias.
    pub fn conv2d(&self, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
        conv2d(self, w, bias, p)
    }
    /// [`conv_transpose2d`] of `self` with weight `w` and an optional bias.
    pub fn conv_transpose2d(
        &self,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &ConvTranspose2dParams,
    ) -> Result<Tensor> {
        conv_transpose2d(self, w, bias, p)
    }
}
