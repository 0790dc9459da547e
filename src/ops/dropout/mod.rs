//! Dropout (inverted, as PyTorch's): in training, element `i` (row-major position of `x`)
//! is kept iff `uniform_at(seed, offset + i) >= p` and kept values are scaled by
//! `1/(1 − p)`; dropped ones are 0. The mask comes from the Philox stream
//! ([`crate::ops::rng`]) at positions `offset .. offset + numel`, so it is identical on
//! every backend (bitwise: one f32 comparison and one multiplication per element).
//!
//! * `training == false` or `p == 0` → the input itself (identity, gradient passes);
//! * `p == 1` → zeros (gradient zero);
//! * `p` outside [0, 1] (or NaN) → an error.
//!
//! Autodiff: one node "dropout" whose backward applies the same mask and scale to the
//! output gradient, regenerating the mask from (seed, offset, p) — nothing is saved
//! (kernel `dropout_f32` run on the gradient, or the cpu reference).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::ops::grad_case::{input, GradCase};
use crate::tensor::tape::{record, Backward};
use crate::tensor::Tensor;

/// The scale of kept elements: `1/(1 − p)`, 0 when `p == 1` (nothing is kept).
pub fn keep_scale(p: f64) -> f64 {
    if p < 1.0 {
        1.0 / (1.0 - p)
    } else {
        0.0
    }
}

/// Apply the mask of (seed, offset, p) to `x` (no recording): the forward in training and
/// the backward.
pub fn apply_mask(x: &Tensor, p: f64, seed: u64, offset: u64) -> Result<Tensor> {
    let x = x.contiguous()?;
    match x.device().simt() {
        None => cpu::apply_mask(&x, p, seed, offset),
        Some(simt) => simt::apply_mask(simt, &x, p, seed, offset),
    }
}

struct DropoutBackward {
    p: f64,
    seed: u64,
    offset: u64,
}

impl Backward for DropoutBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(apply_mask(g, self.p, self.seed, self.offset)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// Inverted dropout of `x` with drop probability `p`, the mask drawn from the Philox
/// stream of `seed` at positions `offset ..` (see the module docs).
pub fn dropout(x: &Tensor, p: f64, seed: u64, offset: u64, training: bool) -> Result<Tensor> {
    let _p = crate::profile::forward("dropout");
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "dropout probability has to be between 0 and 1, but got {p}"
        )));
    }
    check_compute_dtype("dropout", x)?;
    if offset.checked_add(x.numel() as u64).is_none() {
        return Err(Error::invalid(format!(
            "dropout: offset {offset} + {} elements overflows the 2^64 positions of a Philox stream",
            x.numel()
        )));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let y = apply_mask(x, p, seed, offset)?;
    Ok(record("dropout", &[x], y, || DropoutBackward {
        p,
        seed,
        offset,
    }))
}

impl Tensor {
    /// [`dropout`].
    pub fn dropout(&self, p: f64, seed: u64, offset: u64, training: bool) -> Result<Tensor> {
        dropout(self, p, seed, offset, training)
    }
}

/// Gradient-check cases: p = 0.3 and 0.5 on odd shapes, a nonzero offset, p = 1.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x = input([3, 7], 81, 0.0)?;
    let x3 = input([2, 3, 5], 82, 0.0)?;
    Ok(vec![
        GradCase::new("dropout", "p=0.3 [3,7]", vec![x.clone()], |t| {
            dropout(&t[0], 0.3, 7, 0, true)
        }),
        GradCase::new(
            "dropout",
            "p=0.5 [2,3,5], offset 5",
            vec![x3.clone()],
            |t| dropout(&t[0], 0.5, 11, 5, true),
        ),
        GradCase::new("dropout", "p=1 (all dropped)", vec![x3], |t| {
            dropout(&t[0], 1.0, 3, 0, true)
        }),
        GradCase::new("dropout", "transposed input", vec![x], |t| {
            dropout(&t[0].t()?, 0.25, 9, 2, true)
        }),
    ])
}
