//! Normalisation: batch norm (1-D `[N, C]` / `[N, C, L]` and 2-D `[N, C, H, W]`) and
//! instance norm 2-D, with PyTorch semantics.
//!
//! * [`batch_norm`] — training: statistics of the batch per channel (over N and the
//!   spatial axes), normalised with the **biased** variance; when running statistics are
//!   given they are updated in place (not recorded on the tape):
//!   `running = (1 − momentum)·running + momentum·batch_stat`, with the **unbiased**
//!   variance `var·M/(M−1)` for `running_var`. Eval: the running statistics normalise.
//!   `weight` (γ) and `bias` (β) are optional (affine or not). Training with one value
//!   per channel (`M = 1`) is an error, as in PyTorch.
//! * [`instance_norm2d`] — statistics per (n, c) over H×W (no running statistics: the
//!   default of PyTorch's `InstanceNorm2d`, CycleGAN's use), optional per-channel affine.
//!
//! Both are one family: the contiguous input is seen as `[outer, G, inner]` and group `g`
//! normalises its `M = outer·inner` elements (batch norm: `outer = N, G = C`; instance
//! norm: `outer = 1, G = N·C`, `inner = H·W`); affine parameters are indexed `g % C`.
//!
//! Autodiff: one node ("batch_norm" / "instance_norm2d") with inputs x, then weight and
//! bias when given. Backward is the fused closed form per group (kernel
//! `norm_backward_f32`, and its cpu reference): with x̂ = (x − mean)·invstd,
//! `dx = (w·invstd/M)·(M·dy − Σdy − x̂·Σ(dy·x̂))` in training, `dx = w·invstd·dy` in eval;
//! `dweight = Σ dy·x̂`, `dbias = Σ dy` (for instance norm the per-(n, c) sums are then
//! summed over n). Saved: x, the per-group mean and invstd, and the weight.
//!
//! Backends: cpu for f32 and f64 (sums in f64, two-pass variance), cuda/emu for f32
//! (kernels/norm.cu; two-pass variance in f32, block reductions).

#[doc(hidden)]
mod columns;
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::ops::grad_case::{input, positive_input, GradCase};
use crate::tensor::tape::{no_grad, record, save, Backward};
use crate::tensor::Tensor;

/// The `[outer, groups, inner]` view of a normalisation; affine index = group % channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormGeom {
    pub outer: usize,
    pub groups: usize,
    pub inner: usize,
    pub channels: usize,
}

impl NormGeom {
    /// Elements per group.
    pub fn m(&self) -> usize {
        self.outer * self.inner
    }
    pub fn numel(&self) -> usize {
        self.outer * self.groups * self.inner
    }
}

/// Where the statistics come from.
pub enum Stats<'a> {
    /// Batch statistics; `running` (mean, var) updated in place when given.
    Batch {
        running: Option<(&'a Tensor, &'a Tensor)>,
        momentum: f64,
    },
    /// Running statistics (mean, var): eval mode.
    Running(&'a Tensor, &'a Tensor),
}

/// What a forward computes: the output and, per group, the mean and 1/sqrt(var + eps)
/// used (dtype of x, shape `[G]`).
pub struct NormForward {
    pub y: Tensor,
    pub mean: Tensor,
    pub invstd: Tensor,
}

/// Check a per-channel parameter: shape `[c]`, x's dtype and device.
fn check_param(op: &'static str, what: &str, p: &Tensor, x: &Tensor, c: usize) -> Result<()> {
    if p.dims() != [c] {
        return Err(Error::shape(
            op,
            format!(
                "{what} must have shape [{c}] (one value per channel of input {}), got {}",
                x.shape(),
                p.shape()
            ),
        ));
    }
    if p.dtype() != x.dtype() {
        return Err(Error::dtype(
            op,
            format!("{what} is {} but the input is {}", p.dtype(), x.dtype()),
        ));
    }
    x.device().check_same(op, p.device())
}

/// Normalise `x` (any layout; made contiguous) as described by `geom`: the forward of both
/// ops, without recording. Running statistics in `stats` must be contiguous `[G]`.
pub fn norm_forward(
    op: &'static str,
    x: &Tensor,
    geom: NormGeom,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: Stats<'_>,
    eps: f64,
) -> Result<NormForward> {
    let x = x.contiguous()?;
    let weight = weight.map(|w| w.contiguous()).transpose()?;
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    match x.device().simt() {
        None => cpu::forward(op, &x, geom, weight.as_ref(), bias.as_ref(), &stats, eps),
        Some(simt) => simt::forward(
            simt,
            op,
            &x,
            geom,
            weight.as_ref(),
            bias.as_ref(),
            &stats,
            eps,
        ),
    }
}

/// The fused backward: `(dx, Σdy per group, Σdy·x̂ per group)`.
pub fn norm_backward(
    x: &Tensor,
    dy: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    geom: NormGeom,
    training: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dy = dy.contiguous()?;
    match x.device().simt() {
        None => cpu::backward(x, &dy, mean, invstd, weight, geom, training),
        Some(simt) => simt::backward(simt, x, &dy, mean, invstd, weight, geom, training),
    }
}

struct NormBackward {
    /// Contiguous input.
    x: Tensor,
    mean: Tensor,
    invstd: Tensor,
    weight: Option<Tensor>,
    has_bias: bool,
    geom: NormGeom,
    training: bool,
}

impl NormBackward {
    /// Per-group sums `[G]` → per-channel `[C]` (summed over the `G / C` groups of a channel).
    fn per_channel(&self, sums: Tensor) -> Result<Tensor> {
        let NormGeom {
            groups, channels, ..
        } = self.geom;
        if groups == channels {
            Ok(sums)
        } else {
            sums.reshape([groups / channels, channels])?
                .sum(&[0], false)
        }
    }
}

impl Backward for NormBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (dx, sum_dy, sum_dy_xhat) = norm_backward(
            &self.x,
            g,
            &self.mean,
            &self.invstd,
            self.weight.as_ref(),
            self.geom,
            self.training,
        )?;
        let mut grads = vec![Some(dx.reshape(self.x.shape().clone())?)];
        if self.weight.is_some() {
            grads.push(Some(self.per_channel(sum_dy_xhat)?));
        }
        if self.has_bias {
            grads.push(Some(self.per_channel(sum_dy)?));
        }
        Ok(grads)
    }
    fn saved_bytes(&self) -> usize {
        let elem = self.x.dtype().size_in_bytes();
        (self.x.numel()
            + self.mean.numel()
            + self.invstd.numel()
            + self.weight.as_ref().map_or(0, |w| w.numel()))
            * elem
    }
}

/// Record the node of `op` on `x` (`xc`, its contiguous form, is saved for backward).
#[allow(clippy::too_many_arguments)]
fn record_norm(
    op: &'static str,
    x: &Tensor,
    xc: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    fwd: NormForward,
    geom: NormGeom,
    training: bool,
) -> Result<Tensor> {
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let NormForward { y, mean, invstd } = fwd;
    Ok(record(op, &inputs, y, || NormBackward {
        x: save(xc),
        mean,
        invstd,
        weight: weight.map(save),
        has_bias: bias.is_some(),
        geom,
        training,
    }))
}

/// Batch normalisation of `x` (`[N, C]`, `[N, C, L]` or `[N, C, H, W]`) with PyTorch's
/// semantics (see the module docs). `running_mean` / `running_var` (`[C]`, contiguous,
/// x's dtype and device) are updated in place in training mode and required in eval mode.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    let _p = crate::profile::forward("batch_norm");
    const OP: &str = "batch_norm";
    check_compute_dtype(OP, x)?;
    if x.rank() < 2 || x.rank() > 4 {
        return Err(Error::shape(
            OP,
            format!(
                "batch_norm takes [N, C], [N, C, L] or [N, C, H, W], got shape {}",
                x.shape()
            ),
        ));
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let inner: usize = x.dims()[2..].iter().product();
    let geom = NormGeom {
        outer: n,
        groups: c,
        inner,
        channels: c,
    };
    for (what, p) in [
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ] {
        if let Some(p) = p {
            check_param(OP, what, p, x, c)?;
        }
    }
    for (what, p) in [("running_mean", running_mean), ("running_var", running_var)] {
        if let Some(p) = p {
            if !p.is_contiguous() {
                return Err(Error::shape(
                    OP,
                    format!("{what} is updated in place and must be contiguous; pass .contiguous() of it"),
                ));
            }
        }
    }
    let stats = if training {
        if geom.m() <= 1 {
            return Err(Error::shape(
                OP,
                format!(
                    "expected more than 1 value per channel when training, got input size {}",
                    x.shape()
                ),
            ));
        }
        let running = match (running_mean, running_var) {
            (Some(m), Some(v)) => Some((m, v)),
            (None, None) => None,
            _ => {
                return Err(Error::invalid(
                    "batch_norm: pass both running_mean and running_var, or neither",
                ))
            }
        };
        Stats::Batch { running, momentum }
    } else {
        match (running_mean, running_var) {
            (Some(m), Some(v)) => Stats::Running(m, v),
            _ => {
                return Err(Error::invalid(
                    "batch_norm: running_mean and running_var must be given in eval mode \
                     (training = false); use training = true to normalise with batch statistics",
                ))
            }
        }
    };
    let xc = no_grad(|| x.contiguous())?;
    let fwd = norm_forward(OP, &xc, geom, weight, bias, stats, eps)?;
    record_norm(OP, x, &xc, weight, bias, fwd, geom, training)
}

/// Instance normalisation of `x` `[N, C, H, W]`: statistics per (n, c) over H×W (biased
/// variance), no running statistics; optional per-channel `weight` and `bias` `[C]`.
/// Fewer than 2 spatial elements is an error, as in PyTorch.
pub fn instance_norm2d(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let _p = crate::profile::forward("instance_norm2d");
    const OP: &str = "instance_norm2d";
    check_compute_dtype(OP, x)?;
    if x.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!(
                "instance_norm2d takes [N, C, H, W], got shape {}",
                x.shape()
            ),
        ));
    }
    let (n, c, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    for (what, p) in [("weight", weight), ("bias", bias)] {
        if let Some(p) = p {
            check_param(OP, what, p, x, c)?;
        }
    }
    if h * w <= 1 {
        return Err(Error::shape(
            OP,
            format!(
                "expected more than 1 spatial element when training, got input size {}",
                x.shape()
            ),
        ));
    }
    let geom = NormGeom {
        outer: 1,
        groups: n * c,
        inner: h * w,
        channels: c,
    };
    let stats = Stats::Batch {
        running: None,
        momentum: 0.0,
    };
    let xc = no_grad(|| x.contiguous())?;
    let fwd = norm_forward(OP, &xc, geom, weight, bias, stats, eps)?;
    record_norm(OP, x, &xc, weight, bias, fwd, geom, true)
}

impl Tensor {
    /// [`batch_norm`] in training mode without running statistics.
    pub fn batch_norm_train(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        batch_norm(self, None, None, weight, bias, true, 0.1, eps)
    }
    /// [`instance_norm2d`].
    pub fn instance_norm2d(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        instance_norm2d(self, weight, bias, eps)
    }
}

/// Gradient-check cases: batch norm in training mode (w.r.t. x, weight, bias; 2-D and 4-D
/// inputs; affine and not; weight only), in eval mode (running statistics), and instance
/// norm (affine and not). Inputs have clearly non-zero variance.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x4 = input([3, 2, 2, 3], 71, 0.0)?;
    let x2 = input([5, 3], 72, 0.0)?;
    let x3 = input([2, 3, 4], 73, 0.0)?;
    let w2 = positive_input([2], 74, 0.5)?;
    let b2 = input([2], 75, 0.0)?;
    let w3 = positive_input([3], 76, 0.5)?;
    let b3 = input([3], 77, 0.0)?;
    let rm2 = input([2], 78, 0.0)?;
    let rv2 = positive_input([2], 79, 0.5)?;
    let xi = input([2, 3, 3, 2], 80, 0.0)?;
    let mut cases = vec![
        GradCase::new(
            "batch_norm",
            "training [3,2,2,3], affine",
            vec![x4.clone(), w2.clone(), b2.clone()],
            |t| batch_norm(&t[0], None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5),
        ),
        GradCase::new(
            "batch_norm",
            "training [5,3] (1-D), affine",
            vec![x2.clone(), w3.clone(), b3.clone()],
            |t| batch_norm(&t[0], None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5),
        ),
        GradCase::new(
            "batch_norm",
            "training [2,3,4], weight only",
            vec![x3, w3.clone()],
            |t| batch_norm(&t[0], None, None, Some(&t[1]), None, true, 0.1, 1e-5),
        ),
        GradCase::new(
            "batch_norm",
            "training [5,3], bias only",
            vec![x2.clone(), b3.clone()],
            |t| batch_norm(&t[0], None, None, None, Some(&t[1]), true, 0.1, 1e-5),
        ),
        GradCase::new(
            "batch_norm",
            "training [3,2,2,3], not affine",
            vec![x4.clone()],
            |t| batch_norm(&t[0], None, None, None, None, true, 0.1, 1e-5),
        ),
    ];
    let (rm, rv) = (rm2.clone(), rv2.clone());
    cases.push(GradCase::new(
        "batch_norm",
        "eval [3,2,2,3] (running stats), affine",
        vec![x4, w2.clone(), b2.clone()],
        move |t| {
            batch_norm(
                &t[0],
                Some(&rm),
                Some(&rv),
                Some(&t[1]),
                Some(&t[2]),
                false,
                0.1,
                1e-5,
            )
        },
    ));
    cases.push(GradCase::new(
        "instance_norm2d",
        "[2,3,3,2], affine",
        vec![xi.clone(), w3, b3],
        |t| instance_norm2d(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
    ));
    cases.push(GradCase::new(
        "instance_norm2d",
        "[2,3,3,2], not affine",
        vec![xi],
        |t| instance_norm2d(&t[0], None, None, 1e-5),
    ));
    Ok(cases)
}
