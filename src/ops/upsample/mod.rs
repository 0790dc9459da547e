//! Nearest-neighbour 2-D upsampling by an integer factor (`F.interpolate(x,
//! scale_factor=s, mode="nearest")` for integer `s`): `y[n,c,h,w] = x[n,c,h/s,w/s]`,
//! `[N, C, H, W]` → `[N, C, H·s, W·s]`. Generators use `s = 2`.
//!
//! Autodiff: one node "upsample_nearest2d"; backward sums each s×s block of the output
//! gradient into its input pixel (a gather, deterministic: kernel
//! `upsample_nearest2d_backward_f32` and its cpu reference).
//!
//! Backends: cpu f32/f64, cuda/emu f32 (kernels/upsample.cu).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::ops::grad_case::{input, GradCase};
use crate::tensor::tape::{record, Backward};
use crate::tensor::{Shape, Tensor};

/// Forward on `x` `[N, C, H, W]` (made contiguous), no recording.
fn forward(x: &Tensor, s: usize) -> Result<Tensor> {
    let x = x.contiguous()?;
    match x.device().simt() {
        None => cpu::forward(&x, s),
        Some(simt) => simt::forward(simt, &x, s),
    }
}

/// The backward: `dx[n,c,h,w] = Σ dy[n,c, h·s + a, w·s + b]` over `a, b < s`; `dy` is
/// `[N, C, H·s, W·s]`.
pub fn upsample_nearest2d_backward(dy: &Tensor, s: usize) -> Result<Tensor> {
    check_compute_dtype("upsample_nearest2d_backward", dy)?;
    let d = dy.dims();
    if dy.rank() != 4 || s == 0 || !d[2].is_multiple_of(s) || !d[3].is_multiple_of(s) {
        return Err(Error::shape(
            "upsample_nearest2d_backward",
            format!(
                "dy {} is not an upsampling by {s} of an [N, C, H, W] input",
                dy.shape()
            ),
        ));
    }
    let dy = dy.contiguous()?;
    match dy.device().simt() {
        None => cpu::backward(&dy, s),
        Some(simt) => simt::backward(simt, &dy, s),
    }
}

struct UpsampleBackward {
    s: usize,
}

impl Backward for UpsampleBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(upsample_nearest2d_backward(g, self.s)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// Nearest-neighbour upsampling of `x` `[N, C, H, W]` by `scale` (≥ 1) on both spatial axes.
pub fn upsample_nearest2d(x: &Tensor, scale: usize) -> Result<Tensor> {
    let _p = crate::profile::forward("upsample_nearest2d");
    const OP: &str = "upsample_nearest2d";
    check_compute_dtype(OP, x)?;
    if x.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!(
                "upsample_nearest2d takes [N, C, H, W], got shape {}",
                x.shape()
            ),
        ));
    }
    if scale == 0 {
        return Err(Error::invalid(
            "upsample_nearest2d: scale must be at least 1",
        ));
    }
    let d = x.dims();
    let out = Shape::new(vec![d[0], d[1], d[2] * scale, d[3] * scale]);
    if out.numel() / scale / scale != x.numel() {
        return Err(Error::shape(
            OP,
            format!("upsampling {} by {scale} overflows", x.shape()),
        ));
    }
    let y = forward(x, scale)?;
    Ok(record(OP, &[x], y, || UpsampleBackward { s: scale }))
}

impl Tensor {
    /// [`upsample_nearest2d`].
    pub fn upsample_nearest2d(&self, scale: usize) -> Result<Tensor> {
        upsample_nearest2d(self, scale)
    }
}

/// Gradient-check cases: 2× on an odd non-square input, 3×, 1× (identity).
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x = input([2, 3, 3, 2], 101, 0.0)?;
    let y = input([1, 2, 2, 3], 102, 0.0)?;
    Ok(vec![
        GradCase::new("upsample_nearest2d", "2x [2,3,3,2]", vec![x.clone()], |t| {
            upsample_nearest2d(&t[0], 2)
        }),
        GradCase::new("upsample_nearest2d", "3x [1,2,2,3]", vec![y], |t| {
            upsample_nearest2d(&t[0], 3)
        }),
        GradCase::new("upsample_nearest2d", "1x (identity)", vec![x], |t| {
            upsample_nearest2d(&t[0], 1)
        }),
    ])
}
