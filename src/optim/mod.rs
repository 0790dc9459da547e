//! Optimizers and weight clipping: in-place updates of parameter leaves from their `.grad`.
//!
//! - [`Sgd`] (momentum, dampening, nesterov, weight decay — `torch.optim.SGD`; the
//!   original GAN paper's choice), [`Adam`] (β1, β2, eps, L2 weight decay, bias correction —
//!   `torch.optim.Adam`), [`RmsProp`] (alpha, eps, optional momentum, weight decay —
//!   `torch.optim.RMSprop`, not centered; WGAN's choice with lr 5e-5).
//! - [`clip_weights`] clamps exactly the tensors it is given to `[−c, c]` (WGAN, after
//!   every critic step, on the critic's parameters only); [`grad_norm`] and
//!   [`clip_grad_norm`] for metrics and gradient clipping.
//!
//! **Groups and state.** An optimizer owns its parameter group (`Vec<Tensor>`, clones of the
//! leaves: same storage and same `.grad` slot) and per-parameter state tensors (momentum
//! buffer; Adam's `exp_avg`/`exp_avg_sq`; RMSProp's `square_avg`), created lazily on the
//! parameter's device at its first update, plus a per-parameter step count (as PyTorch: a
//! parameter whose grad is `None` is skipped and its count does not advance). Nothing is
//! global: a GAN's generator and discriminator always get **separate optimizer instances**,
//! so neither can touch the other's parameters or state.
//!
//! **In place.** `step()` writes the new values into the parameter's own storage, so every
//! clone of the leaf (the module's copy, the optimizer's copy, a view made before the
//! step) sees them. Parameters must be contiguous leaves (made with `with_requires_grad`);
//! anything else is refused with an error naming the parameter.
//!
//! **Kernels.** One fused kernel per optimizer in `kernels/optim.cu` (one thread per
//! element, grid-stride) reads p, g and state and writes p and state in place; per-step
//! scalars (Adam's bias corrections) are computed on the host in f64 and passed as f32.
//! The cpu reference (f32 and f64) performs the same IEEE operations in the same order and
//! the kernels use the non-contracting `__f*_rn` intrinsics, so cpu, emu and cuda agree bit
//! for bit on f32.

mod adam;
mod clip;
mod loss_scale;
mod rmsprop;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::{clip_grad_norm, clip_weights, grad_norm};
pub use loss_scale::{scaled_backward, unscale_for_step, LossScaler, LossScalers};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::device::cpu::CpuBuffer;
use crate::device::simt::{kernel_int, Arg, DevicePtr, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::tensor::Tensor;

/// Values per chunk where a cpu update runs on the rayon pool (tensors of at least two
/// chunks): the updates are elementwise, so the split changes no bit.
const UPDATE_RUN: usize = 1 << 15;

/// What every optimizer offers the trainer.
pub trait Optimizer {
    /// Update every parameter of the group that has a gradient, in place.
    fn step(&mut self) -> Result<()>;
    /// Clear the gradients of the group (and only the group).
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
    /// The parameters and step counters this optimizer updates.
    fn group(&self) -> &ParamGroup;
    /// The parameter group.
    fn params(&self) -> &[Tensor] {
        &self.group().params
    }
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// Number of `step()` calls so far.
    fn steps(&self) -> u64 {
        self.group().steps
    }
    /// The state tensors by PyTorch-like name (`"{index}.{buffer}"`, e.g. `"0.exp_avg"`),
    /// and the per-parameter step counts (`"{index}.step"`, absent until the first update).
    fn state(&self) -> Vec<(String, Tensor)>;
    fn param_steps(&self) -> Vec<Option<u64>> {
        self.group().param_steps.clone()
    }
    /// Restore what [`Optimizer::state`], [`Optimizer::param_steps`] and
    /// [`Optimizer::steps`] returned (exact resume from a checkpoint). The tensors are copied
    /// onto each parameter's device and dtype; an unknown name, a missing buffer, a shape
    /// mismatch or a step-count list of the wrong length is an error naming the tensor.
    fn load_state(
        &mut self,
        state: &[(String, Tensor)],
        param_steps: &[Option<u64>],
        steps: u64,
    ) -> Result<()>;
}

/// What every optimizer keeps besides its own state: the parameters it updates, how many
/// updates each has had (PyTorch's per-parameter `step`; a parameter without a gradient is
/// skipped and its count does not advance) and the number of `step()` calls.
pub struct ParamGroup {
    pub(crate) params: Vec<Tensor>,
    pub(crate) param_steps: Vec<Option<u64>>,
    pub(crate) steps: u64,
}

impl ParamGroup {
    /// Check every parameter (a contiguous leaf of a supported dtype) for optimizer `op`.
    pub(crate) fn new(op: &'static str, params: Vec<Tensor>) -> Result<ParamGroup> {
        for (i, p) in params.iter().enumerate() {
            check_param(op, i, p)?;
        }
        let n = params.len();
        Ok(ParamGroup {
            params,
            param_steps: vec![None; n],
            steps: 0,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.params.len()
    }

    /// Set the counters from a checkpoint (after the state tensors were checked).
    pub(crate) fn restore(&mut self, param_steps: &[Option<u64>], steps: u64) {
        self.param_steps = param_steps.to_vec();
        self.steps = steps;
    }
}

/// Floats the cpu reference updates (f32 and f64) — the operations the kernels use.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// Check that `p` (entry `index` of the group of optimizer `op`) can be updated in place.
pub(crate) fn check_param(op: &'static str, index: usize, p: &Tensor) -> Result<()> {
    let name = || param_name(index, p);
    if !p.is_leaf() {
        return Err(Error::invalid(format!(
            "{op}: parameter {} is not a leaf; optimizers update tensors made with \
             .with_requires_grad() (not results of ops or detached copies)",
            name()
        )));
    }
    if !p.is_contiguous() {
        return Err(Error::invalid(format!(
            "{op}: parameter {} (shape {}) is not contiguous; optimizers update parameters \
             in place and need contiguous storage",
            name(),
            p.shape()
        )));
    }
    check_compute_dtype(op, p)
}

fn param_name(index: usize, p: &Tensor) -> String {
    match p.edge() {
        crate::autograd::Edge::Leaf(leaf) if !leaf.name.is_empty() => {
            format!("#{index} '{}'", leaf.name)
        }
        _ => format!("#{index}"),
    }
}

/// The gradient of `p`, checked and made contiguous; `None` when it has none.
pub(crate) fn param_grad(op: &'static str, index: usize, p: &Tensor) -> Result<Option<Tensor>> {
    let Some(g) = p.grad() else { return Ok(None) };
    if g.shape() != p.shape() || g.dtype() != p.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "parameter {} is {} {} but its grad is {} {}",
                param_name(index, p),
                p.shape(),
                p.dtype(),
                g.shape(),
                g.dtype()
            ),
        ));
    }
    p.device().check_same(op, g.device())?;
    let g = crate::autograd::no_grad(|| g.contiguous())?;
    if g.shares_storage(p) {
        return Err(Error::invalid(format!(
            "{op}: the grad of parameter {} shares storage with the parameter",
            param_name(index, p)
        )));
    }
    Ok(Some(g))
}

/// A zero-filled state tensor like `p` (same shape, dtype, device; contiguous).
pub(crate) fn zeros_like(p: &Tensor) -> Result<Tensor> {
    crate::autograd::no_grad(|| Tensor::zeros(p.shape().clone(), p.dtype(), p.device()))
}

// ---- cpu access ---------------------------------------------------------------------

/// The `numel` elements of a contiguous cpu tensor's view, typed.
pub(crate) fn slice_mut<'a, T: bytemuck::Pod>(buf: &'a mut CpuBuffer, t: &Tensor) -> &'a mut [T] {
    let off = t.layout().offset;
    let n = t.numel();
    let bytes = buf.as_bytes_mut();
    let all: &mut [T] = bytemuck::cast_slice_mut(bytes);
    &mut all[off..off + n]
}

pub(crate) fn slice<'a, T: bytemuck::Pod>(buf: &'a CpuBuffer, t: &Tensor) -> &'a [T] {
    let off = t.layout().offset;
    let n = t.numel();
    let all: &[T] = bytemuck::cast_slice(buf.as_bytes());
    &all[off..off + n]
}

// ---- simt launches ------------------------------------------------------------------

/// The device address of the first element of a contiguous f32 tensor's view.
pub(crate) fn ptr(op: &'static str, t: &Tensor) -> Result<DevicePtr> {
    t.view_ptr(op)
}

/// Launch an elementwise kernel over `n` elements (nothing when `n == 0`).
pub(crate) fn launch_1d(
    simt: &SimtDevice,
    op: &'static str,
    kernel: &str,
    n: usize,
    args: &[Arg],
) -> Result<()> {
    kernel_int(op, "element count", n)?;
    if n == 0 {
        return Ok(());
    }
    simt.launch(kernel, &LaunchConfig::grid_stride(n), args)
}

pub(crate) fn flag(b: bool) -> Arg {
    Arg::val(b as i32)
}

pub(crate) fn f32_arg(v: f64) -> Arg {
    Arg::val(v as f32)
}

/// `v >= 0`, false for NaN (hyper-parameter checks).
pub(crate) fn non_negative(v: f64) -> bool {
    v >= 0.0
}

/// Check a loaded optimizer state against the group: step-count length and names.
pub(crate) fn check_loaded_names(
    op: &'static str,
    n_params: usize,
    state: &[(String, Tensor)],
    param_steps: &[Option<u64>],
    buffers: &[&str],
) -> Result<()> {
    if param_steps.len() != n_params {
        return Err(Error::invalid(format!(
            "{op}: the loaded state has step counts for {} parameters, the group has {n_params}",
            param_steps.len()
        )));
    }
    for (name, _) in state {
        let known = name.split_once('.').is_some_and(|(i, b)| {
            i.parse::<usize>().is_ok_and(|i| i < n_params) && buffers.contains(&b)
        });
        if !known {
            return Err(Error::invalid(format!(
                "{op}: unknown optimizer state tensor '{name}' (expected '<index>.<buffer>' with \
                 index < {n_params} and buffer one of {buffers:?})"
            )));
        }
    }
    Ok(())
}

/// The loaded buffer `"{index}.{buffer}"` as a fresh tensor like `p` (same shape, dtype and
/// device, own storage), or `None` when absent.
pub(crate) fn loaded_buffer(
    op: &'static str,
    state: &[(String, Tensor)],
    index: usize,
    buffer: &str,
    p: &Tensor,
) -> Result<Option<Tensor>> {
    let key = format!("{index}.{buffer}");
    let Some((_, t)) = state.iter().find(|(k, _)| *k == key) else {
        return Ok(None);
    };
    if t.shape() != p.shape() {
        return Err(Error::shape(
            op,
            format!(
                "optimizer state '{key}' has shape {} but parameter {} has shape {}",
                t.shape(),
                param_name(index, p),
                p.shape()
            ),
        ));
    }
    crate::autograd::no_grad(|| -> Result<Tensor> {
        let t = t.to_dtype(p.dtype())?.to_device(p.device())?;
        // a copy of our own: the update writes state in place
        crate::ops::elementwise::unary(&t, crate::ops::elementwise::UnaryOp::Copy)
    })
    .map(Some)
}

/// Error for a parameter that has a step count but lacks a buffer it needs.
pub(crate) fn missing(op: &'static str, index: usize, buffer: &str) -> Error {
    Error::invalid(format!(
        "{op}: the loaded state has a step count for parameter #{index} but no '{index}.{buffer}'"
    ))
}
