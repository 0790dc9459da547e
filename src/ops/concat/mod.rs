//! Concatenation along one axis (`torch.cat`): U-Net skip connections concatenate along
//! channels; any axis works (negative allowed). Every input must have the same rank,
//! dtype and device, and the same size on every other axis; zero-size inputs along the
//! axis are allowed (they contribute nothing). The output is a fresh contiguous tensor.
//!
//! Autodiff: one node "concat" with every input; backward hands input `i` the window of
//! the output gradient it came from (`narrow` along the axis, made contiguous).
//!
//! Backends: cpu (any dtype: a strided gather per input into row blocks), cuda/emu for f32
//! (kernels/concat.cu, one launch per input).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::grad_case::{input, GradCase};
use crate::tensor::tape::{no_grad, record, Backward};
use crate::tensor::{Shape, Tensor};

/// Where input `i` lands: the output seen as `[outer, total]` (`total` = output size along
/// the axis × `inner`), input `i` as `[outer, chunk_i]`, starting at column `col_i`.
#[derive(Clone, Debug)]
pub struct ConcatPlan {
    pub out_shape: Shape,
    pub axis: usize,
    pub outer: usize,
    pub total: usize,
    /// Per input: (start along the axis, length along the axis).
    pub spans: Vec<(usize, usize)>,
    pub inner: usize,
}

fn plan(tensors: &[&Tensor], axis: isize) -> Result<ConcatPlan> {
    const OP: &str = "concat";
    let first = tensors
        .first()
        .ok_or_else(|| Error::invalid("concat needs at least one tensor"))?;
    let rank = first.rank();
    let ax = first.shape().axis(OP, axis)?;
    for (i, t) in tensors.iter().enumerate() {
        if t.dtype() != first.dtype() {
            return Err(Error::dtype(
                OP,
                format!(
                    "tensor {i} is {} but tensor 0 is {}; all must have one dtype",
                    t.dtype(),
                    first.dtype()
                ),
            ));
        }
        first.device().check_same(OP, t.device())?;
        let same = t.rank() == rank && (0..rank).all(|d| d == ax || t.dims()[d] == first.dims()[d]);
        if !same {
            return Err(Error::shape(
                OP,
                format!(
                    "tensor {i} has shape {} but tensor 0 has {}; sizes must match except along axis {ax}",
                    t.shape(),
                    first.shape()
                ),
            ));
        }
    }
    let mut spans = Vec::with_capacity(tensors.len());
    let mut start = 0;
    for t in tensors {
        spans.push((start, t.dims()[ax]));
        start += t.dims()[ax];
    }
    let mut dims = first.dims().to_vec();
    dims[ax] = start;
    let outer: usize = dims[..ax].iter().product();
    let inner: usize = dims[ax + 1..].iter().product();
    Ok(ConcatPlan {
        out_shape: Shape::new(dims),
        axis: ax,
        outer,
        total: start * inner,
        spans,
        inner,
    })
}

struct ConcatBackward {
    axis: usize,
    spans: Vec<(usize, usize)>,
}

impl Backward for ConcatBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        self.spans
            .iter()
            .map(|&(start, len)| {
                Ok(Some(
                    g.narrow(self.axis as isize, start, len)?.contiguous()?,
                ))
            })
            .collect()
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// Concatenate `tensors` along `axis` (see the module docs).
pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
    let _p = crate::profile::forward("concat");
    let plan = plan(tensors, axis)?;
    let out = no_grad(|| match tensors[0].device().simt() {
        None => cpu::concat(tensors, &plan),
        Some(simt) => {
            crate::ops::check_compute_dtype("concat", tensors[0])?;
            simt::concat(simt, tensors, &plan)
        }
    })?;
    Ok(record("concat", tensors, out, || ConcatBackward {
        axis: plan.axis,
        spans: plan.spans.clone(),
    }))
}

impl Tensor {
    /// [`concat`](fn@concat) (`torch.cat`).
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        concat(tensors, axis)
    }
}

/// Gradient-check cases: channel concat of three 4-D tensors (U-Net skip), the last axis,
/// axis 0, a strided input.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let a = input([2, 1, 3, 2], 91, 0.0)?;
    let b = input([2, 3, 3, 2], 92, 0.0)?;
    let c = input([2, 2, 3, 2], 93, 0.0)?;
    let d = input([3, 2], 94, 0.0)?;
    let e = input([3, 5], 95, 0.0)?;
    let f = input([5, 3], 96, 0.0)?;
    Ok(vec![
        GradCase::new("concat", "channels of [2,1|3|2,3,2]", vec![a, b, c], |t| {
            concat(&[&t[0], &t[1], &t[2]], 1)
        }),
        GradCase::new(
            "concat",
            "axis -1 of [3,2] and [3,5]",
            vec![d.clone(), e],
            |t| concat(&[&t[0], &t[1]], -1),
        ),
        GradCase::new(
            "concat",
            "axis 0 of [3,2] and a transposed [2,3]",
            vec![d, f],
            |t| concat(&[&t[0], &t[1].narrow(1, 0, 2)?.t()?.t()?], 0),
        ),
    ])
}
