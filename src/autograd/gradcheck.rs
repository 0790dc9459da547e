//! Gradient checks: every op's hand-written backward rule against central finite
//! differences, in f64 on the cpu backend.
//!
//! For a case `y = f(x₁, …, xₙ)` the check draws fixed weights `R` (shape of `y`) and
//! compares, for every element `j` of every input `xᵢ`,
//!   analytic: ∂L/∂xᵢⱼ from `y.backward_with(R)`, where L = Σ R ⊙ y,
//!   numeric:  (L(xᵢⱼ + h) − L(xᵢⱼ − h)) / 2h  with h = 1e-6.
//! In f64 the truncation error is O(h²·f‴) ≈ 1e-12 and the rounding error ≈ 1e-16·|L|/h ≈
//! 1e-10·|L|, so an element passes when |analytic − numeric| ≤ 1e-7 + 1e-6·|numeric|:
//! a hundred times above the noise, far below any real mistake in a rule.
//! Case inputs stay away from kinks (relu at 0, ties of max, clamp bounds).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

pub const STEP: f64 = 1e-6;
pub const ABS_TOLERANCE: f64 = 1e-7;
pub const REL_TOLERANCE: f64 = 1e-6;

/// The function a case differentiates.
pub type CaseFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor> + Send + Sync>;

/// One gradient check: an op (the name it records on the tape), a description of the
/// variant, f64 cpu inputs, and the function of them to differentiate.
pub struct GradCase {
    pub op: &'static str,
    pub variant: String,
    pub inputs: Vec<Tensor>,
    pub f: CaseFn,
    pub tolerance: Tolerance,
}

/// The finite-difference step and the pass bound of a case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub step: f64,
    pub abs: f64,
    pub rel: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            step: STEP,
            abs: ABS_TOLERANCE,
            rel: REL_TOLERANCE,
        }
    }
}

impl GradCase {
    pub fn new(
        op: &'static str,
        variant: impl Into<String>,
        inputs: Vec<Tensor>,
        f: impl Fn(&[Tensor]) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Self {
        GradCase {
            op,
            variant: variant.into(),
            inputs,
            f: Box::new(f),
            tolerance: Tolerance::default(),
        }
    }

    /// A case that needs another step or bound, e.g. an op that rounds to f32, whose
    /// output moves in steps of an f32 ulp: h must be large against that step and the
    /// bound must admit ulp/2h. Say why at the call site.
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }
}

/// The outcome for one input of one case.
#[derive(Clone, Debug)]
pub struct GradcheckRow {
    pub op: &'static str,
    pub variant: String,
    pub input: usize,
    pub shape: Shape,
    pub max_abs_err: f64,
    /// max over elements of |analytic − numeric| / max(|numeric|, 1e-3)
    pub max_rel_err: f64,
    pub tolerance: Tolerance,
    pub passed: bool,
}

/// f64 cpu input values drawn from the Philox stream: uniform in [-2, 2), pushed
/// `min_abs` further from 0 (for ops with a kink there).
pub fn input(shape: impl Into<Shape>, seed: u64, min_abs: f64) -> Result<Tensor> {
    let shape = shape.into();
    let u = Tensor::rand(shape.clone(), seed, 0, &Device::Cpu)?.to_vec::<f32>()?;
    // Shift each side of 0 outwards by min_abs: values in [-2-m, -m] ∪ [m, 2+m].
    let values: Vec<f64> = u
        .iter()
        .map(|&v| match 4.0 * v as f64 - 2.0 {
            x if x >= 0.0 => x + min_abs,
            x => x - min_abs,
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// Positive f64 cpu inputs in [lo, lo + 2) (for log, sqrt, pow bases, division).
pub fn positive_input(shape: impl Into<Shape>, seed: u64, lo: f64) -> Result<Tensor> {
    let shape = shape.into();
    let u = Tensor::rand(shape.clone(), seed, 0, &Device::Cpu)?.to_vec::<f32>()?;
    Tensor::from_vec(
        u.iter().map(|&v| lo + 2.0 * v as f64).collect::<Vec<_>>(),
        shape,
        &Device::Cpu,
    )
}

fn weighted_sum(y: &Tensor, weights: &[f64]) -> Result<f64> {
    let values = y.to_vec::<f64>()?;
    Ok(values.iter().zip(weights).map(|(a, b)| a * b).sum())
}

/// Like `f64::max`, but NaN wins (f64::max would drop it).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Run one case: one row per input.
pub fn check(case: &GradCase) -> Result<Vec<GradcheckRow>> {
    for (i, x) in case.inputs.iter().enumerate() {
        if x.dtype() != DType::F64 || !x.device().is_cpu() {
            return Err(Error::invalid(format!(
                "gradcheck {} ({}): input {i} is {} on {}; cases take f64 cpu tensors",
                case.op,
                case.variant,
                x.dtype(),
                x.device()
            )));
        }
    }
    let leaves: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|x| x.detach().with_requires_grad())
        .collect();
    let y = (case.f)(&leaves)?;
    let weights =
        Tensor::randn(y.shape().clone(), 0x5eed, 0, &Device::Cpu)?.to_dtype(DType::F64)?;
    y.backward_with(&weights)?;
    let r = weights.to_vec::<f64>()?;

    let mut rows = Vec::new();
    for (i, x) in case.inputs.iter().enumerate() {
        let analytic = match leaves[i].grad() {
            Some(g) => g.to_vec::<f64>()?,
            None => vec![0.0; x.numel()], // the output does not depend on this input
        };
        let base = x.contiguous()?.to_vec::<f64>()?;
        let (mut max_abs, mut max_rel, mut passed) = (0.0f64, 0.0f64, true);
        for j in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut moved = base.clone();
                moved[j] += delta;
                let mut inputs = case.inputs.clone();
                inputs[i] = Tensor::from_vec(moved, x.shape().clone(), &Device::Cpu)?;
                let y = super::no_grad(|| (case.f)(&inputs))?;
                weighted_sum(&y, &r)
            };
            let h = case.tolerance.step;
            let numeric = (at(h)? - at(-h)?) / (2.0 * h);
            let err = (analytic[j] - numeric).abs();
            // NaN fails and poisons the maxima, so a NaN gradient cannot hide.
            passed &= err <= case.tolerance.abs + case.tolerance.rel * numeric.abs();
            max_abs = nan_max(max_abs, err);
            max_rel = nan_max(max_rel, err / numeric.abs().max(1e-3));
        }
        rows.push(GradcheckRow {
            op: case.op,
            variant: case.variant.clone(),
            input: i,
            shape: x.shape().clone(),
            max_abs_err: max_abs,
            max_rel_err: max_rel,
            tolerance: case.tolerance,
            passed,
        });
    }
    Ok(rows)
}
