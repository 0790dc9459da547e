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
//! Both are expressed through one column geometry ([`Geom`]): an "image" `[N, C, Hi, Wi]`
//! and the grid `Go x Wo` of window positions over it. `im2col` gathers the image into
//! `[C·kh·kw, Go·Wo]` columns, `col2im` is its adjoint (sums columns back into pixels).
//! - conv2d: image = x, grid = output. `y = W·im2col(x) + b`; backward `dx = col2im(Wᵀ·dy)`,
//!   `dW = Σ_n dy·im2col(x)ᵀ`, `db = Σ dy`.
//! - conv_transpose2d is the adjoint of conv2d: image = y, grid = x. `y = col2im(Wᵀ·x) + b`;
//!   backward `dx = W·im2col(dy)`, `dW = Σ_n x·im2col(dy)ᵀ`, `db = Σ dy`.
//!
//! Dtypes: f32 on every device, f64 on cpu. Results are fresh contiguous tensors.
//!
//! Backends: `cpu.rs` (im2col + the `gemm` crate, rayon across the batch, thread-local
//! workspaces reused across calls, batch blocks widening the GEMMs) and `simt.rs` (the
//! launch logic for kernels/conv.cu plus the register-blocked GEMM of kernels/matmul.cu
//! through the matmul family, shared by `cuda` and `emu`).
//!
//! Autograd: each op records one node ("conv2d", "conv_transpose2d") whose backward rule
//! is written by hand for input, weight and bias (see above); it runs as cpu code on cpu
//! and as kernels on cuda/emu.

mod cpu;
mod simt;

use crate::autograd::{self, Backward};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

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

/// The column geometry shared by both ops: an image `[n, c, h, w]`, a kernel `kh x kw`
/// with stride/padding/dilation, and the `ho x wo` grid of window positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl Geom {
    /// Rows of the column matrix: `c·kh·kw`.
    pub fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Columns of the column matrix: `ho·wo`.
    pub fn cols(&self) -> usize {
        self.ho * self.wo
    }
    /// Elements of one image.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// The planned shapes of one op: the geometry plus the GEMM operand sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub geom: Geom,
    /// Channels on the other side of the weight (conv2d: Cout; convT: Cin).
    pub other: usize,
}

const CONV: &str = "conv2d";
const CONVT: &str = "conv_transpose2d";

fn check_params(op: &'static str, stride: (usize, usize), dilation: (usize, usize)) -> Result<()> {
    if stride.0 == 0 || stride.1 == 0 {
        return Err(Error::invalid(format!(
            "{op}: stride must be >= 1, got {stride:?}"
        )));
    }
    if dilation.0 == 0 || dilation.1 == 0 {
        return Err(Error::invalid(format!(
            "{op}: dilation must be >= 1, got {dilation:?}"
        )));
    }
    Ok(())
}

/// Devices, dtypes and ranks common to both ops.
fn check_operands(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    bias_len: usize,
) -> Result<()> {
    x.device().check_same(op, w.device())?;
    if x.rank() != 4 {
        return Err(Error::shape(
            op,
            format!(
                "the input must be [N, C, H, W] (rank 4), got shape {}",
                x.shape()
            ),
        ));
    }
    if w.rank() != 4 {
        return Err(Error::shape(
            op,
            format!(
                "the weight must be rank 4 (kh, kw last), got shape {}",
                w.shape()
            ),
        ));
    }
    let dtype = x.dtype();
    if w.dtype() != dtype {
        return Err(Error::dtype(
            op,
            format!(
                "the input is {dtype} but the weight is {}; cast one with .to_dtype(..)",
                w.dtype()
            ),
        ));
    }
    if !(dtype == DType::F32 || (dtype == DType::F64 && x.device().is_cpu())) {
        return Err(Error::dtype(
            op,
            format!(
                "operands are {dtype}; {op} computes in f32 on every device and in f64 on cpu \
                 only (not on {}); cast with .to_dtype(DType::F32) first",
                x.device()
            ),
        ));
    }
    if let Some(b) = bias {
        x.device().check_same(op, b.device())?;
        if b.dtype() != dtype {
            return Err(Error::dtype(
                op,
                format!("the input is {dtype} but the bias is {}", b.dtype()),
            ));
        }
        if b.dims() != [bias_len] {
            return Err(Error::shape(
                op,
                format!(
                    "the bias must be [{bias_len}] (one per output channel), got shape {}",
                    b.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// Output size of a convolution along one axis, or None when the window does not fit.
pub fn conv2d_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel.checked_sub(1)?) + 1;
    let padded = input + 2 * padding;
    if stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

/// Output size of a transposed convolution along one axis, or None when it is < 1.
pub fn conv_transpose2d_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
    dilation: usize,
) -> Option<usize> {
    let full =
        (input.checked_sub(1)?) * stride + dilation * (kernel.checked_sub(1)?) + output_padding + 1;
    full.checked_sub(2 * padding).filter(|&s| s >= 1)
}

fn plan_conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Plan> {
    check_params(CONV, p.stride, p.dilation)?;
    check_operands(CONV, x, w, bias, w.dims().first().copied().unwrap_or(0))?;
    let (xd, wd) = (x.dims(), w.dims());
    if wd[1] != xd[1] {
        return Err(Error::shape(
            CONV,
            format!(
                "the input {} has {} channels but the weight {} ([Cout, Cin, kh, kw]) expects {}",
                x.shape(),
                xd[1],
                w.shape(),
                wd[1]
            ),
        ));
    }
    let size = |axis: usize| {
        conv2d_output_size(
            xd[2 + axis],
            wd[2 + axis],
            [p.stride.0, p.stride.1][axis],
            [p.padding.0, p.padding.1][axis],
            [p.dilation.0, p.dilation.1][axis],
        )
    };
    let (ho, wo) = match (size(0), size(1)) {
        (Some(ho), Some(wo)) => (ho, wo),
        _ => {
            return Err(Error::shape(
                CONV,
                format!(
                    "input {} with kernel {}x{}, stride {:?}, padding {:?}, dilation {:?}: the \
                     (dilated) kernel is larger than the padded input, or a kernel dim is 0",
                    x.shape(),
                    wd[2],
                    wd[3],
                    p.stride,
                    p.padding,
                    p.dilation
                ),
            ))
        }
    };
    Ok(Plan {
        geom: Geom {
            n: xd[0],
            c: xd[1],
            h: xd[2],
            w: xd[3],
            ho,
            wo,
            kh: wd[2],
            kw: wd[3],
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
        },
        other: wd[0],
    })
}

fn plan_conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &ConvTranspose2dParams,
) -> Result<Plan> {
    check_params(CONVT, p.stride, p.dilation)?;
    check_operands(CONVT, x, w, bias, w.dims().get(1).copied().unwrap_or(0))?;
    let (xd, wd) = (x.dims(), w.dims());
    if wd[0] != xd[1] {
        return Err(Error::shape(
            CONVT,
            format!(
                "the input {} has {} channels but the weight {} ([Cin, Cout, kh, kw]) expects {}",
                x.shape(),
                xd[1],
                w.shape(),
                wd[0]
            ),
        ));
    }
    for (axis, name) in [(0, "height"), (1, "width")] {
        let op = [p.output_padding.0, p.output_padding.1][axis];
        let s = [p.stride.0, p.stride.1][axis];
        let d = [p.dilation.0, p.dilation.1][axis];
        if op >= s.max(d) {
            return Err(Error::invalid(format!(
                "{CONVT}: output_padding {:?} must be smaller than either stride {:?} or \
                 dilation {:?} (PyTorch's rule; {name}: {op} >= max({s}, {d}))",
                p.output_padding, p.stride, p.dilation
            )));
        }
    }
    let size = |axis: usize| {
        conv_transpose2d_output_size(
            xd[2 + axis],
            wd[2 + axis],
            [p.stride.0, p.stride.1][axis],
            [p.padding.0, p.padding.1][axis],
            [p.output_padding.0, p.output_padding.1][axis],
            [p.dilation.0, p.dilation.1][axis],
        )
    };
    let (ho, wo) = match (size(0), size(1)) {
        (Some(ho), Some(wo)) => (ho, wo),
        _ => {
            return Err(Error::shape(
                CONVT,
                format!(
                    "input {} with weight {}, stride {:?}, padding {:?}, output_padding {:?}, \
                     dilation {:?}: the output size (H-1)*s - 2p + d(k-1) + output_padding + 1 \
                     is below 1, or an input/kernel dim is 0",
                    x.shape(),
                    w.shape(),
                    p.stride,
                    p.padding,
                    p.output_padding,
                    p.dilation
                ),
            ))
        }
    };
    Ok(Plan {
        // The image is the output y, the grid is the input x.
        geom: Geom {
            n: xd[0],
            c: wd[1],
            h: ho,
            w: wo,
            ho: xd[2],
            wo: xd[3],
            kh: wd[2],
            kw: wd[3],
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
        },
        other: xd[1],
    })
}

/// The four directions both ops are made of.
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
    let _p = crate::autograd::profile::forward(kind.name());
    let out = autograd::no_grad(|| -> Result<Tensor> {
        let xc = x.detach().contiguous()?;
        let wc = w.detach().contiguous()?;
        let bc = match bias {
            Some(b) => Some(b.detach().contiguous()?),
            None => None,
        };
        forward(kind, &plan, &xc, &wc, bc.as_ref())
    })?;
    let mut inputs = vec![x, w];
    if let Some(b) = bias {
        inputs.push(b);
    }
    Ok(autograd::record(kind.name(), &inputs, out, || {
        ConvBackward {
            kind,
            plan,
            x: autograd::save(x),
            w: autograd::save(w),
            has_bias: bias.is_some(),
            grads: [
                x.requires_grad(),
                w.requires_grad(),
                bias.is_some_and(|b| b.requires_grad()),
            ],
        }
    }))
}

/// Output shape `[N, Cout, Ho, Wo]` of either op.
fn out_shape(kind: Kind, plan: &Plan) -> Shape {
    let g = &plan.geom;
    match kind {
        Kind::Conv => Shape::new([g.n, plan.other, g.ho, g.wo]),
        Kind::ConvT => Shape::new([g.n, g.c, g.h, g.w]),
    }
}

/// The forward pass on contiguous operands, without the tape.
fn forward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    match x.device() {
        Device::Cpu => cpu::forward(kind, plan, x, w, bias, out_shape(kind, plan)),
        Device::Cuda(..) | Device::Emu(..) => {
            simt::forward(kind, plan, x, w, bias, out_shape(kind, plan))
        }
    }
}

/// Saved for backward: the input and the weight (detached); the bias is not needed.
struct ConvBackward {
    kind: Kind,
    plan: Plan,
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    /// Which of (x, w, bias) want a gradient.
    grads: [bool; 3],
}

/// The gradients of one backward pass (each present when asked for).
pub(crate) struct Grads {
    pub x: Option<Tensor>,
    pub w: Option<Tensor>,
    pub bias: Option<Tensor>,
}

impl Backward for ConvBackward {
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = self.x.contiguous()?;
        let w = self.w.contiguous()?;
        let g = grad_output.contiguous()?;
        let want = [self.grads[0], self.grads[1], self.has_bias && self.grads[2]];
        let grads = match x.device() {
            Device::Cpu => cpu::backward(self.kind, &self.plan, &x, &w, &g, want)?,
            Device::Cuda(..) | Device::Emu(..) => {
                simt::backward(self.kind, &self.plan, &x, &w, &g, want)?
            }
        };
        let mut out = vec![grads.x, grads.w];
        if self.has_bias {
            out.push(grads.bias);
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

/// Gradient-check cases (f64 cpu; see `autograd::gradcheck`).
pub fn gradcheck_cases() -> Result<Vec<crate::autograd::gradcheck::GradCase>> {
    use crate::autograd::gradcheck::{input, GradCase};
    type Case<P> = (&'static str, [usize; 4], [usize; 4], bool, P);
    let mut cases = Vec::new();
    let convs: [Case<Conv2dParams>; 7] = [
        (
            "stride 1",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            true,
            Conv2dParams::default(),
        ),
        (
            "stride 2, padding 1, no bias",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            false,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "dilation 2, padding 1",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            true,
            Conv2dParams {
                padding: (1, 1),
                dilation: (2, 2),
                ..Default::default()
            },
        ),
        (
            "non-square stride (2,1), padding (0,2), batch 1",
            [1, 2, 7, 5],
            [3, 2, 2, 3],
            true,
            Conv2dParams {
                stride: (2, 1),
                padding: (0, 2),
                dilation: (1, 2),
            },
        ),
        (
            "DCGAN 4x4/2/1, Cin 1",
            [2, 1, 8, 8],
            [3, 1, 4, 4],
            true,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "DCGAN 4x4/2/1, odd 7x7",
            [1, 2, 7, 7],
            [2, 2, 4, 4],
            false,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "Cout 1",
            [2, 3, 4, 5],
            [1, 3, 2, 2],
            true,
            Conv2dParams::default(),
        ),
    ];
    let mut seed = 100;
    for (name, xs, ws, with_bias, p) in convs {
        let mut inputs = vec![input(xs, seed, 0.0)?, input(ws, seed + 1, 0.0)?];
        if with_bias {
            inputs.push(input([ws[0]], seed + 2, 0.0)?);
        }
        seed += 3;
        cases.push(GradCase::new(
            CONV,
            format!(
                "{name}: x {xs:?} w {ws:?} s{:?} p{:?} d{:?}",
                p.stride, p.padding, p.dilation
            ),
            inputs,
            move |t: &[Tensor]| conv2d(&t[0], &t[1], t.get(2), &p),
        ));
    }
    let convts: [Case<ConvTranspose2dParams>; 6] = [
        (
            "stride 1",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            true,
            ConvTranspose2dParams::default(),
        ),
        (
            "stride 2, padding 1, output_padding 1",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                output_padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "dilation 2, padding 1, no bias",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            false,
            ConvTranspose2dParams {
                padding: (1, 1),
                dilation: (2, 2),
                ..Default::default()
            },
        ),
        (
            "non-square stride (1,3), output_padding (0,2), batch 1",
            [1, 2, 3, 2],
            [2, 3, 2, 3],
            true,
            ConvTranspose2dParams {
                stride: (1, 3),
                padding: (1, 0),
                output_padding: (0, 2),
                dilation: (1, 1),
            },
        ),
        (
            "DCGAN 4x4/2/1",
            [2, 3, 3, 3],
            [3, 2, 4, 4],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "DCGAN 4x4/2/1, Cout 1",
            [1, 3, 4, 4],
            [3, 1, 4, 4],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
    ];
    for (name, xs, ws, with_bias, p) in convts {
        let mut inputs = vec![input(xs, seed, 0.0)?, input(ws, seed + 1, 0.0)?];
        if with_bias {
            inputs.push(input([ws[1]], seed + 2, 0.0)?);
        }
        seed += 3;
        cases.push(GradCase::new(
            CONVT,
            format!(
                "{name}: x {xs:?} w {ws:?} s{:?} p{:?} op{:?} d{:?}",
                p.stride, p.padding, p.output_padding, p.dilation
            ),
            inputs,
            move |t: &[Tensor]| conv_transpose2d(&t[0], &t[1], t.get(2), &p),
        ));
    }
    Ok(cases)
}
