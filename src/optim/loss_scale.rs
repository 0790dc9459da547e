//! Dynamic loss scaling for f16 training (Micikevicius et al., "Mixed Precision
//! Training", 2018): the loss is multiplied by a scale `S` before backward so that small
//! gradients survive the f16 operands of the backward GEMMs, and the gradients are divided
//! by `S` before the optimizer sees them. A gradient that overflowed f16 (±65504) shows up
//! as inf or NaN: then the step is skipped (the gradients are dropped, the parameters and
//! optimizer state are untouched) and `S` backs off; after `growth_interval` finite steps
//! in a row, `S` grows.
//!
//! `S` is always a power of two, so scaling and unscaling are exact in f32 (barring
//! underflow below f32's normal range), and a run whose gradients never overflow takes the
//! very steps it would take unscaled. bf16 has f32's range and needs no scaling.

use crate::error::Result;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The scale, its schedule and its counters (all of it is stored in a checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current scale `S` (a power of two).
    pub scale: f64,
    /// Finite steps in a row since the scale last changed.
    pub good_steps: u64,
    /// Steps skipped because a gradient overflowed, over the whole run.
    pub skipped_steps: u64,
    /// Finite steps in a row after which the scale doubles.
    pub growth_interval: u64,
}

/// The first scale: 2^16, PyTorch's `GradScaler` default too.
pub const INITIAL_SCALE: f64 = 65536.0;
/// Finite steps between growths (PyTorch's default, 2000).
pub const GROWTH_INTERVAL: u64 = 2000;
/// The scale never backs off below 1 (then the loss is not scaled at all) nor grows past
/// 2^24 (far above what f16 gradients need).
const MIN_SCALE: f64 = 1.0;
const MAX_SCALE: f64 = 16_777_216.0;

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: INITIAL_SCALE,
            good_steps: 0,
            skipped_steps: 0,
            growth_interval: GROWTH_INTERVAL,
        }
    }
}

impl LossScaler {
    /// The loss to call `backward()` on: `loss · S`.
    pub fn scaled(&self, loss: &Tensor) -> Result<Tensor> {
        loss.mul_scalar(self.scale)
    }

    /// After `backward()` on [`LossScaler::scaled`]: when every gradient of `params` is
    /// finite, divide them by `S` (each leaf's `.grad` is replaced) and return true; else
    /// drop them (`zero_grad`), halve `S` and return false — the caller skips the
    /// optimizer step. Advances the growth schedule either way.
    pub fn unscale_or_skip(&mut self, params: &[Tensor]) -> Result<bool> {
        // The norm is finite exactly when every element is: on the cpu it sums the squares
        // in f64, where no square of a finite f32 overflows.
        if !super::grad_norm(params)?.is_finite() {
            for p in params {
                p.zero_grad();
            }
            self.scale = (self.scale * 0.5).max(MIN_SCALE);
            self.good_steps = 0;
            self.skipped_steps += 1;
            return Ok(false);
        }
        let inv = 1.0 / self.scale;
        for p in params {
            let Some(g) = p.grad() else { continue };
            let unscaled = crate::autograd::no_grad(|| g.mul_scalar(inv))?;
            p.zero_grad();
            p.backward_with(&unscaled)?;
        }
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(MAX_SCALE);
            self.good_steps = 0;
        }
        Ok(true)
    }
}

/// The loss scalers of a two-network (GAN) run, one per optimizer: each adapts to its own
/// network's gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossScalers {
    pub d: LossScaler,
    pub g: LossScaler,
}

/// `loss.backward()`, on `loss · S` when a scaler is given.
pub fn scaled_backward(loss: &Tensor, scaler: Option<&LossScaler>) -> Result<()> {
    match scaler {
        None => loss.backward(),
        Some(s) => s.scaled(loss)?.backward(),
    }
}

/// After every backward pass an optimizer step collects: whether it may step — always
/// without a scaler, else [`LossScaler::unscale_or_skip`].
pub fn unscale_for_step(scaler: Option<&mut LossScaler>, params: &[Tensor]) -> Result<bool> {
    match scaler {
        None => Ok(true),
        Some(s) => s.unscale_or_skip(params),
    }
}
