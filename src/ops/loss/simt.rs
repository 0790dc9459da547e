//! Launch logic for kernels/loss.cu (f32 only).
//!
//! Forward: pass 1 `<kind>_forward_f32` on `min(⌈n/256⌉, PARTIALS)` blocks of 256
//! threads writes one partial sum per block; pass 2 `loss_finish_f32` (one block of 256)
//! sums the partials in double in a fixed order and scales them. No atomics: the result
//! depends only on `n`, so it is reproducible run to run.
//! Backward: `<kind>_backward_f32`, 1-D grid-stride ([`LaunchConfig::grid_stride`]).

use super::LossKind;
use crate::device::simt::{kernel_count, Arg, LaunchConfig, SimtDevice, THREADS};
use crate::error::Result;
use crate::ops::check_compute_dtype;
use crate::tensor::{DType, Shape, Tensor};

/// Most partial sums of the forward's first pass. It fixes the order of the reduction,
/// so changing it changes results in the last bits.
const PARTIALS: usize = 1024;

/// The element count of `x`; `x` and `t` must be f32.
fn check(kind: LossKind, x: &Tensor, t: Option<&Tensor>) -> Result<i32> {
    for v in std::iter::once(x).chain(t) {
        check_compute_dtype(kind.name(), v)?;
    }
    kernel_count(kind.name(), x.shape())
}

/// The mean loss of contiguous `x` against contiguous `t` (same shape) or the scalar `ts`,
/// shape `[]`.
pub fn forward(
    simt: &SimtDevice,
    kind: LossKind,
    x: &Tensor,
    t: Option<&Tensor>,
    ts: f64,
) -> Result<Tensor> {
    let op = kind.name();
    let n = check(kind, x, t)?;
    let grid = (n as usize).div_ceil(THREADS as usize).clamp(1, PARTIALS) as u32;
    let partial = simt.alloc_elems(DType::F32, grid as usize)?;
    let xp = x.view_ptr(op)?;
    let tp = match t {
        Some(t) => t.view_ptr(op)?,
        None => xp,
    };
    simt.launch(
        &format!("{}_forward_f32", kind.kernel_stem()),
        &LaunchConfig {
            grid: (grid, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: (THREADS / 32) * DType::F32.size_in_bytes() as u32,
        },
        &[
            Arg::ptr(xp),
            Arg::ptr(tp),
            Arg::val(t.is_some() as i32),
            Arg::val(ts as f32),
            Arg::ptr(partial.ptr()),
            Arg::val(n),
        ],
    )?;
    let out = simt.alloc_elems(DType::F32, 1)?;
    simt.launch(
        "loss_finish_f32",
        &LaunchConfig {
            grid: (1, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: THREADS * 8,
        },
        &[
            Arg::ptr(partial.ptr()),
            Arg::val(grid as i32),
            Arg::val(kind.scale(n as usize) as f32),
            Arg::ptr(out.ptr()),
        ],
    )?;
    Ok(Tensor::from_device_buffer(
        out,
        Shape::scalar(),
        DType::F32,
        x.device(),
    ))
}

/// `(dx, dt)`: the gradients of the mean loss times the one-element `g`, for contiguous
/// `x` and `t` (or the scalar `ts`); `dt` only when `want_dt` (needs a tensor `t`).
pub fn backward(
    simt: &SimtDevice,
    kind: LossKind,
    x: &Tensor,
    t: Option<&Tensor>,
    ts: f64,
    g: &Tensor,
    want_dt: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let op = kind.name();
    let n = check(kind, x, t)?;
    let g = g.contiguous()?;
    check(kind, &g, None)?;
    let want_dt = want_dt && t.is_some();
    let dx = simt.alloc_elems(DType::F32, n as usize)?;
    let dt = if want_dt {
        Some(simt.alloc_elems(DType::F32, n as usize)?)
    } else {
        None
    };
    let xp = x.view_ptr(op)?;
    let tp = match t {
        Some(t) => t.view_ptr(op)?,
        None => xp,
    };
    simt.launch(
        &format!("{}_backward_f32", kind.kernel_stem()),
        &LaunchConfig::grid_stride(n as usize),
        &[
            Arg::ptr(xp),
            Arg::ptr(tp),
            Arg::val(t.is_some() as i32),
            Arg::val(ts as f32),
            Arg::ptr(g.view_ptr(op)?),
            Arg::val(kind.scale(n as usize) as f32),
            Arg::ptr(dx.ptr()),
            Arg::ptr(dt.as_ref().map_or(dx.ptr(), |d| d.ptr())),
            Arg::val(want_dt as i32),
            Arg::val(n),
        ],
    )?;
    let wrap = |b| Tensor::from_device_buffer(b, x.shape().clone(), DType::F32, x.device());
    Ok((wrap(dx), dt.map(wrap)))
}
