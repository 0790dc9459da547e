//! Reference losses on the cpu (f32, f64). Every element is evaluated in f64 and the
//! mean is an f64 sum, rounded once to the tensor's dtype.

use super::LossKind;
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// The per-element loss (before the mean's scale; see [`LossKind::scale`]).
pub fn elem(kind: LossKind, x: f64, t: f64) -> f64 {
    match kind {
        LossKind::BceWithLogits => x.max(0.0) - x * t + (-x.abs()).exp().ln_1p(),
        LossKind::LeastSquares | LossKind::Mse => (x - t) * (x - t),
        LossKind::L1 => (x - t).abs(),
    }
}

/// `(d/dx, d/dt)` of [`elem`].
pub fn elem_grad(kind: LossKind, x: f64, t: f64) -> (f64, f64) {
    match kind {
        LossKind::BceWithLogits => {
            let e = (-x.abs()).exp();
            let s = if x >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            (s - t, -x)
        }
        LossKind::LeastSquares | LossKind::Mse => (2.0 * (x - t), -2.0 * (x - t)),
        LossKind::L1 => {
            let d = x - t;
            let s = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
            (s, -s)
        }
    }
}

/// The contiguous elements of `t` as f64, and whether it was f64.
fn values(t: &Tensor, op: &'static str) -> Result<(Vec<f64>, bool)> {
    let off = t.layout().offset;
    let n = t.numel();
    let b = t.cpu_buffer(op)?;
    match &*b {
        CpuBuffer::F32(v) => Ok((v[off..off + n].iter().map(|&a| a as f64).collect(), false)),
        CpuBuffer::F64(v) => Ok((v[off..off + n].to_vec(), true)),
        _ => Err(Error::dtype(
            op,
            format!("{op} on cpu takes f32 or f64, got {}", t.dtype()),
        )),
    }
}

fn tensor(v: Vec<f64>, f64_out: bool, shape: Shape) -> Result<Tensor> {
    let buf = if f64_out {
        CpuBuffer::F64(v)
    } else {
        CpuBuffer::F32(v.into_iter().map(|a| a as f32).collect())
    };
    Tensor::from_cpu_buffer(buf, shape)
}

/// The mean loss of contiguous `x` against contiguous `t` (same shape) or the scalar `ts`.
pub fn forward(kind: LossKind, x: &Tensor, t: Option<&Tensor>, ts: f64) -> Result<Tensor> {
    let (xv, is64) = values(x, kind.name())?;
    let tv = match t {
        Some(t) => Some(values(t, kind.name())?.0),
        None => None,
    };
    let sum: f64 = match &tv {
        Some(tv) => xv.iter().zip(tv).map(|(&a, &b)| elem(kind, a, b)).sum(),
        None => xv.iter().map(|&a| elem(kind, a, ts)).sum(),
    };
    tensor(vec![sum * kind.scale(xv.len())], is64, Shape::scalar())
}

/// `(dx, dt)` for the incoming one-element gradient `g`; `dt` only when `want_dt`.
pub fn backward(
    kind: LossKind,
    x: &Tensor,
    t: Option<&Tensor>,
    ts: f64,
    g: &Tensor,
    want_dt: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (xv, is64) = values(x, kind.name())?;
    let tv = match t {
        Some(t) => values(t, kind.name())?.0,
        None => vec![ts; xv.len()],
    };
    let go = g.item()? * kind.scale(xv.len());
    let (dx, dt): (Vec<f64>, Vec<f64>) = xv
        .iter()
        .zip(&tv)
        .map(|(&a, &b)| {
            let (gx, gt) = elem_grad(kind, a, b);
            (go * gx, go * gt)
        })
        .unzip();
    let dx = tensor(dx, is64, x.shape().clone())?;
    let dt = if want_dt && t.is_some() {
        Some(tensor(dt, is64, x.shape().clone())?)
    } else {
        None
    };
    Ok((dx, dt))
}
