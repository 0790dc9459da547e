//! What a gradient check is made of: an op's case (inputs and the function to
//! differentiate) and its tolerance. Each op family lists its cases next to its rules
//! (`gradcheck.rs` or `gradcheck_cases` in its folder); `crate::autograd::gradcheck` runs
//! them against central finite differences and derives the default bound below.

use crate::device::Device;
use crate::error::Result;
use crate::tensor::{Shape, Tensor};

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
