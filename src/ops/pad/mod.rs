//! 2-D padding of `[N, C, H, W]` with PyTorch semantics (`F.pad(x, (left, right, top,
//! bottom), mode)`): [`PadMode::Zero`] fills with 0 (`mode="constant"`, value 0);
//! [`PadMode::Reflect`] mirrors without repeating the edge (`mode="reflect"`, CycleGAN's
//! ResNet generator), which requires each pad to be smaller than its dimension (an error
//! otherwise, as in PyTorch).
//!
//! Autodiff: one node "pad2d"; backward gathers, per input pixel, the output-gradient
//! entries that came from it (the direct one, plus up to two mirrored ones per axis in
//! reflect mode) and sums them in a fixed order: deterministic, no atomics (kernel
//! `pad2d_backward_f32` and its cpu reference).
//!
//! Backends: cpu f32/f64, cuda/emu f32 (kernels/pad.cu).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

use crate::error::{Error, Result};
use crate::ops::check_compute_dtype;
use crate::ops::grad_case::{input, GradCase};
use crate::tensor::tape::{record, Backward};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// Pad with zeros.
    Zero,
    /// Mirror the input, without repeating the edge (`[a b c]` padded by 2 on the left
    /// gives `[c b a b c]`).
    Reflect,
}

impl PadMode {
    /// The `mode` code of kernels/pad.cu.
    pub fn code(self) -> i32 {
        match self {
            PadMode::Zero => 0,
            PadMode::Reflect => 1,
        }
    }
}

/// `(left, right, top, bottom)` and the mode, with the input's H and W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadSpec {
    pub left: usize,
    pub right: usize,
    pub top: usize,
    pub bottom: usize,
    pub mode: PadMode,
}

/// The source index of output index `o` along an axis of size `d` padded by `before`
/// (None for a zero-padded position).
pub fn source(o: usize, d: usize, before: usize, mode: PadMode) -> Option<usize> {
    let i = o as isize - before as isize;
    let d = d as isize;
    if (0..d).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Zero => None,
        PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (d - 1) - i } as usize),
    }
}

/// The output indices along an axis whose source is input index `i` (1 to 3 of them, in
/// the order the kernel sums them).
pub fn candidates(i: usize, d: usize, before: usize, after: usize, mode: PadMode) -> Vec<usize> {
    let mut out = vec![i + before];
    if mode == PadMode::Reflect {
        if i >= 1 && i <= before {
            out.push(before - i);
        }
        if i + 2 <= d && i + 1 + after >= d {
            out.push(before + 2 * (d - 1) - i);
        }
    }
    out
}

/// The backward of [`pad2d`]: `dy` `[N, C, H+top+bottom, W+left+right]` → `dx` `[N, C, H, W]`.
pub fn pad2d_backward(dy: &Tensor, h: usize, w: usize, spec: PadSpec) -> Result<Tensor> {
    check_compute_dtype("pad2d_backward", dy)?;
    let d = dy.dims();
    if dy.rank() != 4 || d[2] != h + spec.top + spec.bottom || d[3] != w + spec.left + spec.right {
        return Err(Error::shape(
            "pad2d_backward",
            format!("dy {} is not a padding of {h}x{w} by {spec:?}", dy.shape()),
        ));
    }
    let dy = dy.contiguous()?;
    match dy.device().simt() {
        None => cpu::backward(&dy, h, w, spec),
        Some(simt) => simt::backward(simt, &dy, h, w, spec),
    }
}

struct PadBackward {
    h: usize,
    w: usize,
    spec: PadSpec,
}

impl Backward for PadBackward {
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(pad2d_backward(g, self.h, self.w, self.spec)?)])
    }
    fn saved_bytes(&self) -> usize {
        0
    }
}

/// Pad the last two axes of `x` `[N, C, H, W]` by `(left, right, top, bottom)`.
pub fn pad2d(x: &Tensor, pads: (usize, usize, usize, usize), mode: PadMode) -> Result<Tensor> {
    let _p = crate::profile::forward("pad2d");
    const OP: &str = "pad2d";
    check_compute_dtype(OP, x)?;
    if x.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!("pad2d takes [N, C, H, W], got shape {}", x.shape()),
        ));
    }
    let (left, right, top, bottom) = pads;
    let (h, w) = (x.dims()[2], x.dims()[3]);
    if mode == PadMode::Reflect && (left >= w || right >= w || top >= h || bottom >= h) {
        return Err(Error::shape(
            OP,
            format!(
                "reflect padding (left {left}, right {right}, top {top}, bottom {bottom}) must be \
                 smaller than the corresponding input dimension (H {h}, W {w}) of {}",
                x.shape()
            ),
        ));
    }
    let spec = PadSpec {
        left,
        right,
        top,
        bottom,
        mode,
    };
    let xc = x.contiguous()?;
    let y = match xc.device().simt() {
        None => cpu::forward(&xc, spec)?,
        Some(simt) => simt::forward(simt, &xc, spec)?,
    };
    Ok(record(OP, &[x], y, || PadBackward { h, w, spec }))
}

impl Tensor {
    /// [`pad2d`].
    pub fn pad2d(&self, pads: (usize, usize, usize, usize), mode: PadMode) -> Result<Tensor> {
        pad2d(self, pads, mode)
    }
}

/// Gradient-check cases: zero and reflect padding, asymmetric pads, pads equal to dim − 1
/// (every input pixel mirrored), zero-width pads.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<GradCase>> {
    let x = input([2, 2, 3, 4], 111, 0.0)?;
    let mut cases = Vec::new();
    for (mode, name) in [(PadMode::Zero, "zero"), (PadMode::Reflect, "reflect")] {
        cases.push(GradCase::new(
            "pad2d",
            format!("{name} (1,2,2,0) on [2,2,3,4]"),
            vec![x.clone()],
            move |t| pad2d(&t[0], (1, 2, 2, 0), mode),
        ));
        cases.push(GradCase::new(
            "pad2d",
            format!("{name} (3,3,2,2) on [2,2,3,4] (pad = dim - 1)"),
            vec![x.clone()],
            move |t| pad2d(&t[0], (3, 3, 2, 2), mode),
        ));
    }
    Ok(cases)
}
