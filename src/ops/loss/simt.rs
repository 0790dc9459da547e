//! Launch logic for kernels/loss.cu (f32 only).
//!
//! Forward: pass 1 `<kind>_forward_f32` on `min(⌈n/256⌉, MAX_BLOCKS)` blocks of 256
//! threads writes one partial sum per block; pass 2 `loss_finish_f32` (one block of 256)
//! sums the partials in double in a fixed order and scales them. No atomics: the result
//! depends only on `n`, so it is reproducible run to run.
//! Backward: `<kind>_backward_f32`, 1-D grid-stride, 256 threads per block.

use super::LossKind;
use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 1024;

fn ptr(t: &Tensor, op: &'static str) -> Result<u64> {
    Ok(t.device_ptr(op)? + (t.layout().offset * 4) as u64)
}

fn check(kind: LossKind, x: &Tensor, t: Option<&Tensor>) -> Result<i32> {
    let op = kind.name();
    for v in std::iter::once(x).chain(t) {
        if v.dtype() != DType::F32 {
            return Err(Error::dtype(
                op,
                format!("{op} on {} takes f32, got {}", v.device(), v.dtype()),
            ));
        }
    }
    let n = x.numel();
    if n > i32::MAX as usize {
        return Err(Error::shape(
            op,
            format!("{n} elements exceed the 2^31-1 limit of the CUDA kernels"),
        ));
    }
    Ok(n as i32)
}

fn blocks(n: usize) -> u32 {
    n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32
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
    let grid = blocks(n as usize);
    let partial = simt.alloc(grid as usize * 4)?;
    let xp = ptr(x, op)?;
    let tp = match t {
        Some(t) => ptr(t, op)?,
        None => xp,
    };
    simt.launch(
        &format!("{}_forward_f32", kind.kernel_stem()),
        &LaunchConfig {
            grid: (grid, 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: (THREADS / 32) * 4,
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
    let out = simt.alloc(4)?;
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
    let dx = simt.alloc(n as usize * 4)?;
    let dt = if want_dt {
        Some(simt.alloc(n as usize * 4)?)
    } else {
        None
    };
    let xp = ptr(x, op)?;
    let tp = match t {
        Some(t) => ptr(t, op)?,
        None => xp,
    };
    simt.launch(
        &format!("{}_backward_f32", kind.kernel_stem()),
        &LaunchConfig {
            grid: (blocks(n as usize), 1, 1),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &[
            Arg::ptr(xp),
            Arg::ptr(tp),
            Arg::val(t.is_some() as i32),
            Arg::val(ts as f32),
            Arg::ptr(ptr(&g, op)?),
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
