//! GAN and image-to-image losses (THEORY.md), each a mean over all elements, shape `[]`.
//!
//! Fused ops — one tape node each, a fused forward kernel (per-element loss + block
//! reduction, then a deterministic second pass over the per-block partials) and a fused
//! backward kernel (elementwise gradient × incoming scalar gradient / n):
//! - [`bce_with_logits`] / [`bce_with_logits_scalar`] ("bce_with_logits"):
//!   mean(max(x,0) − x·t + log1p(exp(−|x|))), the sigmoid cross-entropy on logits, finite
//!   for any finite logit. ∂/∂x = (σ(x) − t)/n; a tensor target that requires grad gets
//!   ∂/∂t = −x/n (summed back over broadcast axes).
//! - [`least_squares`] ("least_squares"): ½·mean((D − t)²) against a scalar code t, with
//!   the LSGAN codings [`LsCoding`] and [`lsgan_d_loss`] / [`lsgan_g_loss`].
//! - [`l1`] ("l1"): mean|x − y|, [`mse`] ("mse"): mean (x − y)², gradients to both inputs
//!   (y may be broadcast against x). The gradient of |·| at 0 is taken as 0.
//!
//! Composed from existing ops (they are means, no kernel): [`wgan_critic_loss`],
//! [`wgan_generator_loss`], and the vanilla-GAN helpers [`discriminator_loss`],
//! [`minimax_generator_loss`] (saturating) and [`nonsaturating_generator_loss`].
//!
//! Backends: cpu f32/f64 (f64 accumulation), cuda/emu f32 (kernels/loss.cu). The mean of
//! no elements is an error.

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::ops::grad_case::{input, positive_input, GradCase};
use crate::tensor::tape::{record, save, Backward};
use crate::tensor::{Shape, Tensor};

/// The fused losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    BceWithLogits,
    LeastSquares,
    L1,
    Mse,
}

impl LossKind {
    /// The name recorded on the tape.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::BceWithLogits => "bce_with_logits",
            LossKind::LeastSquares => "least_squares",
            LossKind::L1 => "l1",
            LossKind::Mse => "mse",
        }
    }
    /// Kernel names are `<stem>_forward_f32` and `<stem>_backward_f32`.
    pub fn kernel_stem(self) -> &'static str {
        match self {
            LossKind::BceWithLogits => "bce_with_logits",
            LossKind::LeastSquares => "least_squares",
            LossKind::L1 => "l1_loss",
            LossKind::Mse => "mse_loss",
        }
    }
    /// The factor applied to the sum of per-element losses over `n` elements (the ½ of
    /// least squares included).
    pub fn scale(self, n: usize) -> f64 {
        match self {
            LossKind::LeastSquares => 0.5 / n as f64,
            _ => 1.0 / n as f64,
        }
    }
}

/// Forward of `kind` on `x` against `t` (same shape) or the scalar `ts`; no recording.
pub fn loss_forward(kind: LossKind, x: &Tensor, t: Option<&Tensor>, ts: f64) -> Result<Tensor> {
    let _p = crate::profile::forward(kind.name());
    let x = x.detach().contiguous()?;
    let t = t.map(|t| t.detach().contiguous()).transpose()?;
    match x.device().simt() {
        None => cpu::forward(kind, &x, t.as_ref(), ts),
        Some(simt) => simt::forward(simt, kind, &x, t.as_ref(), ts),
    }
}

/// The backward of `kind`: `(dx, dt)` for the incoming one-element gradient `g`; `dt`
/// only when `want_dt` and `t` is a tensor.
pub fn loss_backward(
    kind: LossKind,
    x: &Tensor,
    t: Option<&Tensor>,
    ts: f64,
    g: &Tensor,
    want_dt: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let x = x.contiguous()?;
    let t = t.map(|t| t.contiguous()).transpose()?;
    match x.device().simt() {
        None => cpu::backward(kind, &x, t.as_ref(), ts, g, want_dt),
        Some(simt) => simt::backward(simt, kind, &x, t.as_ref(), ts, g, want_dt),
    }
}

struct LossBackward {
    kind: LossKind,
    x: Tensor,
    t: Option<Tensor>,
    ts: f64,
    /// The recorded inputs: x alone (scalar target) or x and t.
    inputs: usize,
    want_dt: bool,
}

impl Backward for LossBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (dx, dt) = loss_backward(
            self.kind,
            &self.x,
            self.t.as_ref(),
            self.ts,
            g,
            self.want_dt,
        )?;
        let mut grads = vec![Some(dx)];
        if self.inputs == 2 {
            grads.push(dt);
        }
        Ok(grads)
    }
    fn saved_bytes(&self) -> usize {
        // views (a broadcast target) keep only the storage they span alive
        let bytes = |t: &Tensor| t.layout().storage_span() * t.dtype().size_in_bytes();
        bytes(&self.x) + self.t.as_ref().map_or(0, bytes)
    }
}

fn nonempty(op: &'static str, x: &Tensor) -> Result<()> {
    if x.numel() == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{op} is a mean and needs at least one element, got shape {}",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// The fused loss against a scalar target: one node with input `x`.
fn scalar_target(kind: LossKind, x: &Tensor, ts: f64) -> Result<Tensor> {
    let op = kind.name();
    check_compute_dtype(op, x)?;
    nonempty(op, x)?;
    if !ts.is_finite() {
        return Err(Error::invalid(format!(
            "{op}: the target {ts} is not finite"
        )));
    }
    let y = loss_forward(kind, x, None, ts)?;
    Ok(record(op, &[x], y, || LossBackward {
        kind,
        x: save(x),
        t: None,
        ts,
        inputs: 1,
        want_dt: false,
    }))
}

/// The fused loss of `a` against the tensor `b`, both broadcast to their common shape
/// (views; a broadcast operand's gradient is summed back by the view's own rule).
fn tensor_target(kind: LossKind, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = kind.name();
    check_compute_dtype(op, a)?;
    check_compute_dtype(op, b)?;
    if a.dtype() != b.dtype() || !a.device().same(b.device()) {
        return Err(Error::dtype(
            op,
            format!(
                "{op} needs both operands of one dtype on one device, got {} on {} and {} on {}",
                a.dtype(),
                a.device(),
                b.dtype(),
                b.device()
            ),
        ));
    }
    let shape = Shape::broadcast(op, a.shape(), b.shape())?;
    let widen = |t: &Tensor| {
        if t.shape() == &shape {
            Ok(t.clone())
        } else {
            t.broadcast_to(shape.clone())
        }
    };
    let (a, b) = (widen(a)?, widen(b)?);
    nonempty(op, &a)?;
    let y = loss_forward(kind, &a, Some(&b), 0.0)?;
    Ok(record(op, &[&a, &b], y, || LossBackward {
        kind,
        x: save(&a),
        t: Some(save(&b)),
        ts: 0.0,
        inputs: 2,
        want_dt: b.requires_grad(),
    }))
}

/// Mean sigmoid binary cross-entropy of `logits` against `target` (probabilities,
/// broadcastable with `logits`): mean(max(x,0) − x·t + log1p(exp(−|x|))). Stable for
/// logits of any magnitude. The target gets the gradient −x/n when it requires one.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    tensor_target(LossKind::BceWithLogits, logits, target)
}

/// [`bce_with_logits`] against the same target `t` for every element (1 real, 0 fake).
pub fn bce_with_logits_scalar(logits: &Tensor, t: f64) -> Result<Tensor> {
    scalar_target(LossKind::BceWithLogits, logits, t)
}

/// LSGAN's least squares against a target code: ½·mean((d − target)²), D without sigmoid.
pub fn least_squares(d: &Tensor, target: f64) -> Result<Tensor> {
    scalar_target(LossKind::LeastSquares, d, target)
}

/// Mean absolute error mean|x − y| (pix2pix's L1 term, CycleGAN's cycle consistency).
pub fn l1(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    tensor_target(LossKind::L1, x, y)
}

/// Mean squared error mean (x − y)².
pub fn mse(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    tensor_target(LossKind::Mse, x, y)
}

/// An LSGAN target coding (THEORY.md): `a` the target for fakes, `b` for reals, `c` the
/// value the generator wants D to give its fakes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsCoding {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl LsCoding {
    /// (a, b, c) = (0, 1, 1): the binary coding the LSGAN authors used in practice.
    pub const BINARY: LsCoding = LsCoding {
        a: 0.0,
        b: 1.0,
        c: 1.0,
    };
    /// (a, b, c) = (−1, 1, 0): b − c = 1, b − a = 2, so G minimises the Pearson χ².
    pub const PEARSON: LsCoding = LsCoding {
        a: -1.0,
        b: 1.0,
        c: 0.0,
    };
}

/// LSGAN discriminator loss ½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²].
pub fn lsgan_d_loss(d_real: &Tensor, d_fake: &Tensor, coding: LsCoding) -> Result<Tensor> {
    least_squares(d_real, coding.b)?.add(&least_squares(d_fake, coding.a)?)
}

/// LSGAN generator loss ½E[(D(G(z)) − c)²].
pub fn lsgan_g_loss(d_fake: &Tensor, coding: LsCoding) -> Result<Tensor> {
    least_squares(d_fake, coding.c)
}

/// The WGAN critic's loss mean(f(G(z))) − mean(f(x)); minimising it maximises the
/// Wasserstein estimate E f(x) − E f(G(z)).
pub fn wgan_critic_loss(real_scores: &Tensor, fake_scores: &Tensor) -> Result<Tensor> {
    fake_scores.mean_all()?.sub(&real_scores.mean_all()?)
}

/// The WGAN generator's loss −mean(f(G(z))).
pub fn wgan_generator_loss(fake_scores: &Tensor) -> Result<Tensor> {
    fake_scores.mean_all()?.neg()
}

/// The vanilla discriminator's loss bce(real, 1) + bce(fake, 0) (minimising it ascends
/// V(D, G)).
pub fn discriminator_loss(d_real_logits: &Tensor, d_fake_logits: &Tensor) -> Result<Tensor> {
    bce_with_logits_scalar(d_real_logits, 1.0)?.add(&bce_with_logits_scalar(d_fake_logits, 0.0)?)
}

/// The original minimax ("saturating") generator loss mean(log(1 − σ(f))) =
/// −bce(f, 0), which G minimises. Its gradient ∂/∂f = −σ(f)/n vanishes when D rejects
/// the fakes (f ≪ 0): the saturation THEORY.md describes.
pub fn minimax_generator_loss(d_fake_logits: &Tensor) -> Result<Tensor> {
    bce_with_logits_scalar(d_fake_logits, 0.0)?.neg()
}

/// The non-saturating generator loss −mean(log σ(f)) = bce(f, 1): ∂/∂f = −(1 − σ(f))/n,
/// strong when D rejects the fakes.
pub fn nonsaturating_generator_loss(d_fake_logits: &Tensor) -> Result<Tensor> {
    bce_with_logits_scalar(d_fake_logits, 1.0)
}

/// Gradient-check cases (f64 cpu) for the four fused losses: tensor and scalar targets,
/// broadcast targets (both ways), both gradients of l1/mse, logits of ±30.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x = input([3, 5], 601, 0.0)?;
    let probs = positive_input([3, 5], 602, 0.0)?.affine(0.5, 0.0)?;
    let row = positive_input([5], 603, 0.0)?.affine(0.5, 0.0)?;
    let col = positive_input([3, 1], 604, 0.0)?.affine(0.5, 0.0)?;
    let extreme = Tensor::from_vec(
        vec![30.0f64, -30.0, 29.5, -29.5, 0.25, -0.75],
        [2, 3],
        &Device::Cpu,
    )?;
    let ext_t = Tensor::from_vec(vec![1.0f64, 0.0, 0.3, 0.7, 0.5, 1.0], [2, 3], &Device::Cpu)?;
    let y = input([3, 5], 605, 0.0)?;
    // L1: keep x − y away from the kink at 0 (|x − y| ≥ 0.1 for every element)
    let l1y = {
        let (xv, yv) = (x.to_vec::<f64>()?, y.to_vec::<f64>()?);
        let v: Vec<f64> = xv
            .iter()
            .zip(&yv)
            .map(|(&a, &b)| if (a - b).abs() < 0.1 { a - 0.5 } else { b })
            .collect();
        Tensor::from_vec(v, [3, 5], &Device::Cpu)?
    };
    let l1_row = input([5], 606, 0.0)?;
    let bce = "bce_with_logits";
    // Logits of ±30: σ is within 1e-13 of 0 or 1, so ∂/∂x is ~1e-13 where the target
    // agrees with the logit's sign and ~±1 otherwise; the stable form keeps the f64
    // central differences accurate and the default bounds hold.
    Ok(vec![
        GradCase::new(
            bce,
            "tensor target [3,5]",
            vec![x.clone(), probs.clone()],
            |t| bce_with_logits(&t[0], &t[1]),
        ),
        GradCase::new(
            bce,
            "target broadcast [5] -> [3,5]",
            vec![x.clone(), row],
            |t| bce_with_logits(&t[0], &t[1]),
        ),
        GradCase::new(
            bce,
            "target broadcast [3,1] -> [3,5]",
            vec![x.clone(), col],
            |t| bce_with_logits(&t[0], &t[1]),
        ),
        GradCase::new(bce, "scalar target 1", vec![x.clone()], |t| {
            bce_with_logits_scalar(&t[0], 1.0)
        }),
        GradCase::new(bce, "scalar target 0.3", vec![x.clone()], |t| {
            bce_with_logits_scalar(&t[0], 0.3)
        }),
        GradCase::new(bce, "logits ±30", vec![extreme.clone(), ext_t], |t| {
            bce_with_logits(&t[0], &t[1])
        }),
        GradCase::new(bce, "logits ±30, scalar 1", vec![extreme.clone()], |t| {
            bce_with_logits_scalar(&t[0], 1.0)
        }),
        GradCase::new("least_squares", "binary b=1", vec![x.clone()], |t| {
            least_squares(&t[0], 1.0)
        }),
        GradCase::new("least_squares", "pearson a=-1", vec![x.clone()], |t| {
            least_squares(&t[0], -1.0)
        }),
        GradCase::new("least_squares", "custom 0.37, [2,3]", vec![extreme], |t| {
            least_squares(&t[0], 0.37)
        }),
        GradCase::new("l1", "[3,5] vs [3,5]", vec![x.clone(), l1y], |t| {
            l1(&t[0], &t[1])
        }),
        GradCase::new(
            "l1",
            "[3,5] vs broadcast [5]",
            vec![x.clone(), l1_row],
            |t| l1(&t[0], &t[1]),
        ),
        GradCase::new("mse", "[3,5] vs [3,5]", vec![x.clone(), y.clone()], |t| {
            mse(&t[0], &t[1])
        }),
        GradCase::new(
            "mse",
            "broadcast [3,1] vs [3,5]",
            vec![input([3, 1], 607, 0.0)?, y],
            |t| mse(&t[0], &t[1]),
        ),
    ])
}
