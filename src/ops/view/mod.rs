//! Views: `reshape` (and `flatten`), `transpose` (and `t`), `permute`, `narrow`,
//! `broadcast_to`, `unsqueeze`, `squeeze`. Each returns a tensor sharing its input's
//! storage with a new [`Layout`] (reshape of non-contiguous data copies first), and records
//! itself on the tape under its own name with a hand-written backward rule:
//!
//! | op | forward | backward (grad `g` of the output) |
//! |---|---|---|
//! | `reshape` | new shape over contiguous data | `g` reshaped to the input shape |
//! | `transpose` | swap axes a, b | `g` transposed back (a strided view) |
//! | `permute` | output axis i = input axis `perm[i]` | `g` permuted by the inverse |
//! | `unsqueeze` / `squeeze` | insert / remove a size-1 axis | the inverse |
//! | `broadcast_to` | stride 0 on expanded axes | `sum_to_shape(g, input shape)` |
//! | `narrow` | a window of one axis | zeros of the input shape with `g` written into the window ([`copy_into`], kernels/view.cu) |
//!
//! Rules save shapes and axes only (0 bytes of tensors).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::grad_case::{input, GradCase, Tolerance};
use crate::ops::reduce::sum_to_shape;
use crate::tensor::tape::{no_grad, record, Backward};
use crate::tensor::{Layout, Shape, Tensor};

/// Write `src` into the elements of the view `dst` (same shape, dtype and device), through
/// `dst`'s strides: the storage behind `dst` changes, so every tensor sharing it sees the
/// new values. Meant for fresh buffers (the backward of `narrow` writes a gradient into a
/// window of zeros); not recorded on the tape. `dst` must not broadcast (a stride-0 axis
/// of size > 1 would write one element twice). A `src` sharing `dst`'s storage is copied
/// first.
pub fn copy_into(src: &Tensor, dst: &Tensor) -> Result<()> {
    if src.shape() != dst.shape() || src.dtype() != dst.dtype() {
        return Err(Error::shape(
            "copy_into",
            format!(
                "the source is {} {} but the destination is {} {}",
                src.shape(),
                src.dtype(),
                dst.shape(),
                dst.dtype()
            ),
        ));
    }
    src.device().check_same("copy_into", dst.device())?;
    let l = dst.layout();
    if l.shape
        .dims()
        .iter()
        .zip(&l.strides)
        .any(|(&d, &s)| d > 1 && s == 0)
    {
        return Err(Error::shape(
            "copy_into",
            format!(
                "the destination (shape {}, strides {:?}) broadcasts: several elements share one address",
                l.shape, l.strides
            ),
        ));
    }
    let copied;
    let src = if src.shares_storage(dst) {
        copied = crate::ops::elementwise::unary(src, crate::ops::elementwise::UnaryOp::Copy)?;
        &copied
    } else {
        src
    };
    match dst.device().simt() {
        None => cpu::copy_into(src, dst),
        Some(simt) => simt::copy_into(simt, src, dst),
    }
}

struct ReshapeBackward {
    input: Shape,
}

impl Backward for ReshapeBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.reshape(self.input.clone())?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

struct TransposeBackward {
    a: usize,
    b: usize,
}

impl Backward for TransposeBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.transpose(self.a as isize, self.b as isize)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

struct PermuteBackward {
    /// The inverse permutation: `inverse[perm[i]] = i`.
    inverse: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.permute(&self.inverse)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

struct NarrowBackward {
    input: Shape,
    axis: usize,
    start: usize,
    len: usize,
}

impl Backward for NarrowBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dx = Tensor::zeros(self.input.clone(), g.dtype(), g.device())?;
        let window = dx.narrow(self.axis as isize, self.start, self.len)?;
        copy_into(g, &window)?;
        Ok(vec![Some(dx)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

struct BroadcastBackward {
    input: Shape,
}

impl Backward for BroadcastBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(sum_to_shape(g, &self.input)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// The backward of `unsqueeze(axis)` (squeeze it) and of `squeeze(axis)` (unsqueeze it).
struct AxisBackward {
    axis: usize,
    unsqueezed: bool,
}

impl Backward for AxisBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(if self.unsqueezed {
            g.squeeze(self.axis as isize)?
        } else {
            g.unsqueeze(self.axis)?
        })])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

impl Tensor {
    /// Same data, new shape. A view when contiguous, else a contiguous copy first.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {} ({} elements) to {shape} ({} elements)",
                    self.shape(),
                    self.numel(),
                    shape.numel()
                ),
            ));
        }
        // The copy of a strided input is part of this op: its gradient is mapped back by
        // reshape's own rule (logical order is preserved), so the copy is not recorded.
        let base = if self.is_contiguous() {
            self.clone()
        } else {
            no_grad(|| self.contiguous())?
        };
        let offset = base.layout().offset;
        let out = base.with_layout(Layout {
            offset,
            ..Layout::contiguous(shape)
        });
        Ok(record("reshape", &[self], out, || ReshapeBackward {
            input: self.shape().clone(),
        }))
    }
    /// All elements as one axis (a reshape).
    pub fn flatten(&self) -> Result<Tensor> {
        self.reshape([self.numel()])
    }
    /// Swap axes `a` and `b` (negative allowed).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            self.shape().axis("transpose", a)?,
            self.shape().axis("transpose", b)?,
        );
        let out = self.with_layout(self.layout().transpose(a, b));
        Ok(record("transpose", &[self], out, || TransposeBackward {
            a,
            b,
        }))
    }
    /// The matrix transpose of the last two axes.
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }
    /// Reorder axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let out = self.with_layout(self.layout().permute("permute", perm)?);
        Ok(record("permute", &[self], out, || {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            PermuteBackward { inverse }
        }))
    }
    /// Keep `len` entries of `axis` from `start` (a view, like PyTorch's `narrow`).
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let axis = self.shape().axis("narrow", axis)?;
        let out = self.with_layout(self.layout().narrow("narrow", axis, start, len)?);
        Ok(record("narrow", &[self], out, || NarrowBackward {
            input: self.shape().clone(),
            axis,
            start,
            len,
        }))
    }
    /// View as `shape` by broadcasting (NumPy/PyTorch rules; stride 0 on expanded axes).
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let out = self.with_layout(self.layout().broadcast_to("broadcast_to", &shape.into())?);
        Ok(record("broadcast_to", &[self], out, || BroadcastBackward {
            input: self.shape().clone(),
        }))
    }
    /// Insert a size-1 axis at `axis` (0..=rank).
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(Error::shape(
                "unsqueeze",
                format!("axis {axis} is out of range for shape {}", self.shape()),
            ));
        }
        let mut layout = self.layout().clone();
        let mut dims = layout.shape.dims().to_vec();
        let stride = if axis < dims.len() {
            layout.strides[axis] * dims[axis]
        } else {
            1
        };
        dims.insert(axis, 1);
        layout.strides.insert(axis, stride);
        layout.shape = Shape::new(dims);
        let out = self.with_layout(layout);
        Ok(record("unsqueeze", &[self], out, || AxisBackward {
            axis,
            unsqueezed: true,
        }))
    }
    /// Remove a size-1 axis (negative allowed).
    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let axis = self.shape().axis("squeeze", axis)?;
        if self.dims()[axis] != 1 {
            return Err(Error::shape(
                "squeeze",
                format!(
                    "axis {axis} of {} has size {}, not 1",
                    self.shape(),
                    self.dims()[axis]
                ),
            ));
        }
        let mut layout = self.layout().clone();
        let mut dims = layout.shape.dims().to_vec();
        dims.remove(axis);
        layout.strides.remove(axis);
        layout.shape = Shape::new(dims);
        let out = self.with_layout(layout);
        Ok(record("squeeze", &[self], out, || AxisBackward {
            axis,
            unsqueezed: false,
        }))
    }
}

/// Gradient-check cases for every view (see `autograd::gradcheck`). Outputs are checked as
/// they come (strided views), so the weighted sum reads them through their layouts.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x23 = input([2, 3], 11, 0.0)?;
    let x234 = input([2, 3, 4], 12, 0.0)?;
    let x4d = input([2, 3, 2, 4], 13, 0.0)?;
    let x35 = input([3, 5], 14, 0.0)?;
    let x3 = input([3], 15, 0.0)?;
    let x31 = input([3, 1], 16, 0.0)?;
    let x1_3_1 = input([1, 3, 1], 17, 0.0)?;
    let x_f64 = |s: &[usize], seed| input(s.to_vec(), seed, 0.0);
    Ok(vec![
        GradCase::new("reshape", "[2,3,4] -> [6,4]", vec![x234.clone()], |x| {
            x[0].reshape([6, 4])
        }),
        GradCase::new("reshape", "flatten [2,3,4]", vec![x234.clone()], |x| {
            x[0].flatten()
        }),
        GradCase::new(
            "reshape",
            "transposed [3,5] -> [5,3] -> [15] (copy then view)",
            vec![x35.clone()],
            |x| x[0].t()?.reshape([15]),
        ),
        GradCase::new(
            "reshape",
            "narrowed [3,5] window -> [6] (strided input)",
            vec![x35.clone()],
            |x| x[0].narrow(1, 1, 2)?.reshape([6]),
        ),
        GradCase::new("transpose", "t() of [2,3]", vec![x23.clone()], |x| x[0].t()),
        GradCase::new(
            "transpose",
            "axes (0, -1) of [2,3,4]",
            vec![x234.clone()],
            |x| x[0].transpose(0, -1),
        ),
        GradCase::new(
            "permute",
            "[2,3,2,4] by [2,0,3,1]",
            vec![x4d.clone()],
            |x| x[0].permute(&[2, 0, 3, 1]),
        ),
        GradCase::new("permute", "[2,3,4] by [1,2,0]", vec![x234.clone()], |x| {
            x[0].permute(&[1, 2, 0])
        }),
        GradCase::new("narrow", "axis 0 of [3,5], 1..3", vec![x35.clone()], |x| {
            x[0].narrow(0, 1, 2)
        }),
        GradCase::new("narrow", "axis -1 of [3,5], 2..5", vec![x35.clone()], |x| {
            x[0].narrow(-1, 2, 3)
        }),
        GradCase::new(
            "narrow",
            "axis 1 then axis 2 of [2,3,4] (window of a window)",
            vec![x234.clone()],
            |x| x[0].narrow(1, 1, 2)?.narrow(2, 1, 2),
        ),
        GradCase::new(
            "narrow",
            "axis 1 of a transposed [2,3,4]",
            vec![x234.clone()],
            |x| x[0].transpose(0, 2)?.narrow(1, 0, 2),
        ),
        GradCase::new(
            "broadcast_to",
            "[3] -> [2,4,3] (leading dims)",
            vec![x3],
            |x| x[0].broadcast_to([2, 4, 3]),
        ),
        GradCase::new(
            "broadcast_to",
            "[3,1] -> [3,4] (expand a size-1 dim)",
            vec![x31],
            |x| x[0].broadcast_to([3, 4]),
        ),
        GradCase::new(
            "broadcast_to",
            "[1,3,1] -> [2,2,3,5] (both)",
            vec![x1_3_1],
            |x| x[0].broadcast_to([2, 2, 3, 5]),
        ),
        GradCase::new(
            "broadcast_to",
            "[2,3] -> [2,3] (no-op)",
            vec![x23.clone()],
            |x| x[0].broadcast_to([2, 3]),
        ),
        GradCase::new("unsqueeze", "axis 1 of [2,3]", vec![x23.clone()], |x| {
            x[0].unsqueeze(1)
        }),
        GradCase::new(
            "unsqueeze",
            "axis 2 (last) of a transposed [2,3]",
            vec![x23.clone()],
            |x| x[0].t()?.unsqueeze(2),
        ),
        GradCase::new(
            "squeeze",
            "axis -2 of [2,1,3]",
            vec![x_f64(&[2, 1, 3], 19)?],
            |x| x[0].squeeze(-2),
        ),
        // cast's rule is checked here (`ops::gradcheck_cases` has one line per view/reduce family).
        // f64 -> f64 is the copy path. The round trip f64 -> f32 -> f64 is the identity
        // plus a rounding error of at most half an f32 ulp (1.2e-7 for |x| < 4): with
        // h = 0.1 the central difference is 1 ± 1.2e-6 per unit weight, so abs 2e-5 +
        // rel 1e-5 admits the rounding (weights |r| < 5) and no wrong rule.
        GradCase::new("cast", "f64 -> f64 (copy)", vec![x23.clone()], |x| {
            crate::ops::cast::cast(&x[0], crate::tensor::DType::F64)
        }),
        GradCase::new(
            "cast",
            "f64 -> f32 -> f64 (h = 0.1 over f32 rounding)",
            vec![x23.clone()],
            |x| {
                crate::ops::cast::cast(&x[0], crate::tensor::DType::F32)?
                    .to_dtype(crate::tensor::DType::F64)
            },
        )
        .with_tolerance(Tolerance {
            step: 0.1,
            abs: 2e-5,
            rel: 1e-5,
        }),
        GradCase::new(
            "squeeze",
            "axis 0 of [1,3,4]",
            vec![x_f64(&[1, 3, 4], 20)?],
            |x| x[0].squeeze(0),
        ),
    ])
}
