//! Reductions: sum, mean and max over a list of axes, with or without `keepdim`, and
//! full reductions. Semantics follow PyTorch:
//!
//! * axes may be negative (`-1` is the last); a repeated axis is an error;
//! * an empty axis list reduces nothing (the result equals the input, as a new tensor);
//!   reduce every axis (or call `sum_all`, …) for a full reduction to shape `[]`;
//! * the sum of no elements is 0, their mean is NaN, their max is an error naming the
//!   shape;
//! * max propagates NaN; ±inf behave as IEEE arithmetic says (inf + −inf = NaN).
//!
//! Backends: cpu for f32 and f64 (f32 sums accumulate in f64), cuda/emu for f32
//! (kernels/reduce.cu). f16/bf16 are storage types: convert with `to_dtype(F32)` first.

pub mod cpu;
pub mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Layout, Shape, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

/// How a reduction maps onto "rows": the input viewed (without copying) with the kept
/// axes first and the reduced axes last, so output element `r` reduces the `k` elements
/// at row-major positions `r·k .. r·k + k` of `permuted`.
#[derive(Clone, Debug)]
pub struct ReducePlan {
    /// The output shape (`keepdim` applied).
    pub out_shape: Shape,
    /// Kept axes, in order, then reduced axes, in order.
    pub perm: Vec<usize>,
    /// How many of `perm` are kept.
    pub kept: usize,
    pub rows: usize,
    pub k: usize,
    /// The input layout permuted by `perm` (a view).
    pub permuted: Layout,
}

impl ReducePlan {
    pub fn new(op: ReduceOp, layout: &Layout, axes: &[isize], keepdim: bool) -> Result<ReducePlan> {
        let shape = &layout.shape;
        let mut reduced = vec![false; shape.rank()];
        for &a in axes {
            let axis = shape.axis(op.name(), a)?;
            if std::mem::replace(&mut reduced[axis], true) {
                return Err(Error::shape(
                    op.name(),
                    format!("axis {a} (axis {axis}) is repeated in {axes:?} for shape {shape}"),
                ));
            }
        }
        let kept_axes: Vec<usize> = (0..shape.rank()).filter(|&i| !reduced[i]).collect();
        let red_axes: Vec<usize> = (0..shape.rank()).filter(|&i| reduced[i]).collect();
        let rows: usize = kept_axes.iter().map(|&i| shape.dim(i)).product();
        let k: usize = red_axes.iter().map(|&i| shape.dim(i)).product();
        if op == ReduceOp::Max && k == 0 {
            return Err(Error::shape(
                "max",
                format!(
                    "max over axes {axes:?} of shape {shape} reduces zero elements (an empty axis); it has no identity"
                ),
            ));
        }
        let out_dims: Vec<usize> = if keepdim {
            (0..shape.rank())
                .map(|i| if reduced[i] { 1 } else { shape.dim(i) })
                .collect()
        } else {
            kept_axes.iter().map(|&i| shape.dim(i)).collect()
        };
        let perm: Vec<usize> = kept_axes.iter().chain(&red_axes).copied().collect();
        let permuted = layout.permute(op.name(), &perm)?;
        Ok(ReducePlan {
            out_shape: Shape::new(out_dims),
            kept: kept_axes.len(),
            perm,
            rows,
            k,
            permuted,
        })
    }
}

/// Reduce `x` over `axes` (see the module docs for the rules).
pub fn reduce(x: &Tensor, op: ReduceOp, axes: &[isize], keepdim: bool) -> Result<Tensor> {
    let plan = ReducePlan::new(op, x.layout(), axes, keepdim)?;
    match x.device() {
        Device::Cpu => {
            if !x.dtype().is_compute() {
                return Err(Error::dtype(
                    op.name(),
                    format!(
                        "{} on cpu takes f32 or f64, got {} (shape {}); convert with .to_dtype(DType::F32) first",
                        op.name(),
                        x.dtype(),
                        x.shape()
                    ),
                ));
            }
            cpu::reduce(x, op, &plan)
        }
        Device::Cuda(simt, _) | Device::Emu(simt) => {
            if x.dtype() != DType::F32 {
                return Err(Error::dtype(
                    op.name(),
                    format!(
                        "{} on {} takes f32, got {} (shape {}){}",
                        op.name(),
                        x.device(),
                        x.dtype(),
                        x.shape(),
                        if x.dtype() == DType::F64 {
                            ": f64 is cpu-only (used for gradient checks); use f32"
                        } else {
                            "; convert with .to_dtype(DType::F32) first"
                        }
                    ),
                ));
            }
            simt::reduce(simt, x, op, &plan)
        }
    }
}

fn all_axes(x: &Tensor) -> Vec<isize> {
    (0..x.rank() as isize).collect()
}

impl Tensor {
    /// Sum over `axes` (negative allowed); `keepdim` keeps them as size 1.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Sum, axes, keepdim)
    }
    /// Mean over `axes`; the mean of no elements is NaN.
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Mean, axes, keepdim)
    }
    /// Maximum over `axes` (NaN propagates); an error when an axis is empty.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Max, axes, keepdim)
    }
    /// Sum of every element, shape `[]`.
    pub fn sum_all(&self) -> Result<Tensor> {
        reduce(self, ReduceOp::Sum, &all_axes(self), false)
    }
    /// Mean of every element, shape `[]`.
    pub fn mean_all(&self) -> Result<Tensor> {
        reduce(self, ReduceOp::Mean, &all_axes(self), false)
    }
    /// Maximum of every element, shape `[]`.
    pub fn max_all(&self) -> Result<Tensor> {
        reduce(self, ReduceOp::Max, &all_axes(self), false)
    }
}

/// Sum `grad` down to `shape`, the shape of an operand that was broadcast to
/// `grad.shape()`: the backward of broadcasting. Leading axes that broadcasting added and
/// axes where `shape` has size 1 are summed; the result has exactly `shape`.
pub fn sum_to_shape(grad: &Tensor, shape: &Shape) -> Result<Tensor> {
    if grad.shape() == shape {
        return Ok(grad.clone());
    }
    let (rank, own) = (grad.rank(), shape.rank());
    let broadcast_ok = own <= rank
        && (0..own).all(|i| shape.dim(i) == grad.dims()[rank - own + i] || shape.dim(i) == 1);
    if !broadcast_ok {
        return Err(Error::shape(
            "sum_to_shape",
            format!("{} is not a broadcast of {shape}", grad.shape()),
        ));
    }
    let axes: Vec<isize> = (0..rank)
        .filter(|&i| i < rank - own || (shape.dim(i - (rank - own)) == 1 && grad.dims()[i] != 1))
        .map(|i| i as isize)
        .collect();
    reduce(grad, ReduceOp::Sum, &axes, true)?.reshape(shape.clone())
}
