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
// The cases and their tolerances are defined with the ops (`crate::ops::grad_case`), which
// list their own; this module runs them.
pub use crate::ops::grad_case::{
    input, positive_input, CaseFn, GradCase, Tolerance, ABS_TOLERANCE, REL_TOLERANCE, STEP,
};

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
