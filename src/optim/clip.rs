//! Weight clipping (WGAN), gradient norms and gradient-norm clipping.

use super::{check_compute_dtype, f32_arg, launch_1d, non_negative, ptr, slice_mut};
use crate::device::simt::Arg;
use crate::error::{Error, Result};
use crate::ops::cpu_shared::pooled_lane_sum;
use crate::tensor::{DType, Tensor};

/// Clamp every element of exactly the given tensors to `[−c, c]`, in place (NaN stays
/// NaN). WGAN calls it after each critic step with the critic's parameters — in the
/// reference code *all* of them, norm-layer weights included; leaving some out (e.g. norm
/// parameters) is the caller's choice of slice. Tensors not passed are never touched.
/// On f32 the bounds are `±(c as f32)`.
pub fn clip_weights(params: &[Tensor], c: f64) -> Result<()> {
    const OP: &str = "clip_weights";
    if !non_negative(c) {
        return Err(Error::invalid(format!(
            "clip_weights: the clip value must be >= 0, got {c}"
        )));
    }
    for (i, p) in params.iter().enumerate() {
        check_compute_dtype(OP, p)?;
        if !p.is_contiguous() {
            return Err(Error::invalid(format!(
                "clip_weights: tensor #{i} (shape {}) is not contiguous; clipping is in place",
                p.shape()
            )));
        }
        match p.device().simt() {
            None => {
                let mut b = p.cpu_buffer_mut(OP)?;
                match p.dtype() {
                    DType::F32 => {
                        let (lo, hi) = (-(c as f32), c as f32);
                        for x in slice_mut::<f32>(&mut b, p) {
                            *x = clamp(*x, lo, hi);
                        }
                    }
                    _ => {
                        for x in slice_mut::<f64>(&mut b, p) {
                            *x = clamp(*x, -c, c);
                        }
                    }
                }
            }
            Some(simt) => {
                let n = p.numel();
                launch_1d(
                    simt,
                    OP,
                    "clip_f32",
                    n,
                    &[
                        Arg::ptr(ptr(OP, p)?),
                        Arg::val(n as i32),
                        f32_arg(-c),
                        f32_arg(c),
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// `x < lo ? lo : (x > hi ? hi : x)`, as the kernel.
fn clamp<T: PartialOrd>(x: T, lo: T, hi: T) -> T {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// The L2 norm of all the gradients of `params` together (params without a gradient count
/// as zero), accumulated in f64 on the host from per-tensor sums of squares.
pub fn grad_norm(params: &[Tensor]) -> Result<f64> {
    let _p = crate::profile::update("grad_norm");
    let mut total = 0.0f64;
    for p in params {
        let Some(g) = p.grad() else { continue };
        let sq = crate::autograd::no_grad(|| -> Result<f64> {
            if let Some(sq) = cpu_sum_of_squares(&g)? {
                return Ok(sq);
            }
            match g.dtype() {
                DType::F64 => Ok(pooled_lane_sum(&g.to_vec::<f64>()?, |v| v * v)),
                _ if g.device().is_cpu() => Ok(pooled_lane_sum(&g.to_f64_vec()?, |v| v * v)),
                _ => g.mul(&g)?.sum_all()?.item(),
            }
        })?;
        total += sq;
    }
    Ok(total.sqrt())
}

/// Σ v² in f64 by `pooled_lane_sum`, read in place from a contiguous f32/f64 cpu tensor
/// (without copying the gradient); None for anything else.
fn cpu_sum_of_squares(g: &Tensor) -> Result<Option<f64>> {
    use crate::device::cpu::CpuBuffer;
    if !g.device().is_cpu() || !g.is_contiguous() {
        return Ok(None);
    }
    let buf = g.cpu_buffer("grad_norm")?;
    let range = g.layout().offset..g.layout().offset + g.numel();
    Ok(match &*buf {
        CpuBuffer::F32(v) => Some(pooled_lane_sum(&v[range], |x| f64::from(x) * f64::from(x))),
        CpuBuffer::F64(v) => Some(pooled_lane_sum(&v[range], |x| x * x)),
        _ => None,
    })
}

/// Scale all gradients of `params` by `max_norm / (norm + 1e-6)` when their total L2 norm
/// exceeds `max_norm` (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
/// The scaled gradient replaces each leaf's `.grad` (a new tensor: gradients may share
/// storage with other tensors, so they are never scaled in place).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    if !non_negative(max_norm) {
        return Err(Error::invalid(format!(
            "clip_grad_norm: max_norm must be >= 0, got {max_norm}"
        )));
    }
    let norm = grad_norm(params)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            let Some(g) = p.grad() else { continue };
            let scaled = crate::autograd::no_grad(|| g.mul_scalar(coef))?;
            p.zero_grad();
            set_grad(p, scaled)?;
        }
    }
    Ok(norm)
}

/// Put `grad` in the (empty) `.grad` slot of leaf `p`, through the public backward path.
fn set_grad(p: &Tensor, grad: Tensor) -> Result<()> {
    p.backward_with(&grad)
}
