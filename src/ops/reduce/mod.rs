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
//!
//! Autodiff: each reduction records "sum", "mean" or "max". Backward of sum: the output
//! gradient broadcast back over the reduced axes; of mean: the same divided by the number
//! of reduced elements; of max: the output gradient goes to the elements equal to the
//! maximum, split evenly among ties (PyTorch's `amax`; a NaN maximum sends it to the NaN
//! elements), computed by `reduce_max_backward_*_f32` (and its cpu reference).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::grad_case::{input, GradCase};
use crate::tensor::tape::{record, save, Backward};
use crate::tensor::{Layout, Shape, Tensor};

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
    /// `shape` (the input's) with the reduced axes set to 1: the output as `keepdim` gives it.
    pub fn keepdim_shape(&self, shape: &Shape) -> Shape {
        let mut dims = shape.dims().to_vec();
        for &axis in &self.perm[self.kept..] {
            dims[axis] = 1;
        }
        Shape::new(dims)
    }
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

/// Reduce `x` over `axes` (see the module docs for the rules), recording "sum", "mean" or
/// "max" on the tape.
pub fn reduce(x: &Tensor, op: ReduceOp, axes: &[isize], keepdim: bool) -> Result<Tensor> {
    let _p = crate::profile::forward(op.name());
    let plan = ReducePlan::new(op, x.layout(), axes, keepdim)?;
    let out = reduce_forward(x, op, &plan)?;
    Ok(match op {
        ReduceOp::Sum | ReduceOp::Mean => record(op.name(), &[x], out, || SumBackward {
            input: x.shape().clone(),
            kept: plan.keepdim_shape(x.shape()),
            mean_of: (op == ReduceOp::Mean).then_some(plan.k),
        }),
        ReduceOp::Max => {
            let y = out.clone();
            record("max", &[x], out, || MaxBackward {
                x: save(x),
                y: save(&y),
                axes: axes.to_vec(),
                keepdim,
            })
        }
    })
}

fn reduce_forward(x: &Tensor, op: ReduceOp, plan: &ReducePlan) -> Result<Tensor> {
    crate::ops::check_compute_dtype(op.name(), x)?;
    match x.device().simt() {
        None => cpu::reduce(x, op, plan),
        Some(simt) => simt::reduce(simt, x, op, plan),
    }
}

// ---- backward ---------------------------------------------------------------------------

/// Backward of sum and mean: every input element receives its output's gradient (divided
/// by the number of reduced elements for mean). The gradient is reshaped to the
/// `keepdim` shape, broadcast back (a stride-0 view) and materialised by one kernel: the
/// strided copy for sum, `affine(1/k)` for mean.
struct SumBackward {
    input: Shape,
    kept: Shape,
    /// `Some(k)` for mean over `k` elements.
    mean_of: Option<usize>,
}

impl Backward for SumBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let spread = g
            .reshape(self.kept.clone())?
            .broadcast_to(self.input.clone())?;
        let dx = match self.mean_of {
            Some(k) => spread.affine(1.0 / k as f64, 0.0)?,
            None => spread.contiguous()?,
        };
        Ok(vec![Some(dx)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// Backward of max: the gradient goes to the elements equal to their row's maximum (to
/// the NaN elements when the maximum is NaN), split evenly among ties as PyTorch's
/// `amax` does. Saves the input and the output.
struct MaxBackward {
    x: Tensor,
    y: Tensor,
    axes: Vec<isize>,
    keepdim: bool,
}

impl Backward for MaxBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(max_backward(
            &self.x,
            &self.y,
            g,
            &self.axes,
            self.keepdim,
        )?)])
    }
    fn saved_bytes(&self) -> usize {
        (self.x.numel() + self.y.numel()) * self.x.dtype().size_in_bytes()
    }
}

/// The gradient of `y = x.max(axes, keepdim)` given `dy` (the gradient of `y`): a new
/// contiguous tensor of `x`'s shape, `dy / c` at the `c` maxima of each reduced row
/// (NaN maxima: the NaN entries) and 0 elsewhere. Kernels: `reduce_max_backward_*_f32`.
pub fn max_backward(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    axes: &[isize],
    keepdim: bool,
) -> Result<Tensor> {
    let plan = ReducePlan::new(ReduceOp::Max, x.layout(), axes, keepdim)?;
    if y.shape() != &plan.out_shape || dy.shape() != &plan.out_shape {
        return Err(Error::shape(
            "max_backward",
            format!(
                "max of {} over {axes:?} has shape {}, got y {} and dy {}",
                x.shape(),
                plan.out_shape,
                y.shape(),
                dy.shape()
            ),
        ));
    }
    if y.dtype() != x.dtype() || dy.dtype() != x.dtype() {
        return Err(Error::dtype(
            "max_backward",
            format!(
                "x is {}, y is {}, dy is {}; all must match",
                x.dtype(),
                y.dtype(),
                dy.dtype()
            ),
        ));
    }
    x.device().check_same("max_backward", y.device())?;
    x.device().check_same("max_backward", dy.device())?;
    let (y, dy) = (y.contiguous()?, dy.contiguous()?);
    // dx is contiguous in x's shape; `dx_layout` sees it kept-axes-first like `plan.permuted`.
    let dx_layout = Layout::contiguous(x.shape().clone()).permute("max", &plan.perm)?;
    match x.device().simt() {
        None => cpu::max_backward(x, &y, &dy, &plan, &dx_layout),
        Some(simt) => simt::max_backward(simt, x, &y, &dy, &plan, &dx_layout),
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

/// Distinct f64 values (gaps of at least 0.05) in a random order, so a max has no ties and
/// a ±1e-6 step cannot move the argmax: the kink of max stays out of the finite difference.
fn distinct_input(shape: impl Into<Shape>, seed: u64) -> Result<Tensor> {
    let shape = shape.into();
    let noise = input(shape.clone(), seed, 0.0)?.to_vec::<f64>()?;
    let mut order: Vec<usize> = (0..noise.len()).collect();
    order.sort_by(|&a, &b| noise[a].total_cmp(&noise[b]));
    let mut values = vec![0.0; noise.len()];
    for (rank, &i) in order.iter().enumerate() {
        values[i] = rank as f64 * 0.07 - 1.0 + noise[i] * 0.005;
    }
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// Gradient-check cases for sum, mean and max (see `autograd::gradcheck`): single and
/// multiple axes, negative axes, keepdim on and off, full reductions, strided inputs.
/// Max inputs have no ties (ties are a kink; their rule is tested with exact values in
/// tests/reduce_grad.rs).
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x234 = input([2, 3, 4], 31, 0.0)?;
    let x35 = input([3, 5], 32, 0.0)?;
    let d234 = distinct_input([2, 3, 4], 33)?;
    let d35 = distinct_input([3, 5], 34)?;
    let d7 = distinct_input([7], 35)?;
    let mut cases = Vec::new();
    for (op, name) in [
        (ReduceOp::Sum, "sum"),
        (ReduceOp::Mean, "mean"),
        (ReduceOp::Max, "max"),
    ] {
        let (a, b) = if op == ReduceOp::Max {
            (d234.clone(), d35.clone())
        } else {
            (x234.clone(), x35.clone())
        };
        let variants: Vec<(&str, Vec<isize>, bool)> = vec![
            ("axis 1 of [2,3,4]", vec![1], false),
            ("axis -1 of [2,3,4], keepdim", vec![-1], true),
            ("axes [0, 2] of [2,3,4]", vec![0, 2], false),
            ("axes [2, -3] of [2,3,4], keepdim", vec![2, -3], true),
            ("all axes of [2,3,4], keepdim", vec![0, 1, 2], true),
            ("no axes of [2,3,4] (identity)", vec![], false),
        ];
        for (what, axes, keepdim) in variants {
            cases.push(GradCase::new(name, what, vec![a.clone()], move |x| {
                reduce(&x[0], op, &axes, keepdim)
            }));
        }
        cases.push(GradCase::new(
            name,
            "axis 0 of a transposed [3,5] (strided input)",
            vec![b.clone()],
            move |x| reduce(&x[0].t()?, op, &[0], false),
        ));
        cases.push(GradCase::new(name, "*_all of [3,5]", vec![b], move |x| {
            reduce(&x[0], op, &all_axes(&x[0]), false)
        }));
    }
    cases.push(GradCase::new("max", "max_all of [7]", vec![d7], |x| {
        x[0].max_all()
    }));
    cases.push(GradCase::new(
        "mean",
        "mean_all of [2,3,4]",
        vec![x234],
        |x| x[0].mean_all(),
    ));
    Ok(cases)
}
