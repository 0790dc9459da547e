//! The planning half of conv2d / conv_transpose2d: parameter and operand checks, the
//! output-size formulas and the column geometry ([`Geom`]) each op runs on.

use super::{Conv2dParams, ConvTranspose2dParams, CONV, CONVT};
use crate::error::{Error, Result};
use crate::ops::precision::Precision;
use crate::tensor::{DType, Tensor};

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

    /// The geometry of `n` images of `c` channels `h x w` under a `kh x kw` window with
    /// these strides, paddings and dilations (`None` when the window does not fit).
    #[cfg(test)]
    pub fn of(
        (n, c, h, w): (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
        (dh, dw): (usize, usize),
    ) -> Option<Geom> {
        let span =
            |size: usize, p: usize, d: usize, k: usize| (size + 2 * p).checked_sub(d * (k - 1) + 1);
        let (ho, wo) = (span(h, ph, dh, kh)? / sh + 1, span(w, pw, dw, kw)? / sw + 1);
        Some(Geom {
            n,
            c,
            h,
            w,
            ho,
            wo,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
        })
    }
}

/// The planned shapes of one op: the geometry plus the GEMM operand sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub geom: Geom,
    /// Channels on the other side of the weight (conv2d: Cout; convT: Cin).
    pub other: usize,
    /// The precision of every GEMM of the op, forward and backward (read when the op is
    /// called: `ops::precision`).
    pub precision: Precision,
}

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

pub(super) fn plan_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Plan> {
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
        precision: crate::ops::precision::current(),
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

pub(super) fn plan_conv_transpose2d(
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
        precision: crate::ops::precision::current(),
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
