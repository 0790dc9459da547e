//! Reference 2-D padding on the cpu (f32, f64), parallel over planes above
//! `PARALLEL_THRESHOLD`. The backward sums each input pixel's sources in the kernel's
//! order (candidates along y, then along x), accumulating in f64.

use super::{candidates, source, PadSpec};
use crate::device::cpu::PARALLEL_THRESHOLD;
use crate::error::Result;
use crate::ops::cpu_shared::map_real;
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;

fn per_plane<T: Element>(
    src: &[T],
    planes: usize,
    out_plane: usize,
    f: impl Fn(&[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = bytemuck::zeroed_vec(out_plane * planes);
    if out_plane == 0 || planes == 0 {
        return out;
    }
    let in_plane = (src.len() / planes).max(1);
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(out_plane)
            .zip(src.par_chunks(in_plane))
            .for_each(|(o, s)| f(s, o));
    } else {
        out.chunks_mut(out_plane)
            .zip(src.chunks(in_plane))
            .for_each(|(o, s)| f(s, o));
    }
    out
}

fn fwd<T: Element>(x: &[T], planes: usize, h: usize, w: usize, p: PadSpec) -> Vec<T> {
    let (oh, ow) = (h + p.top + p.bottom, w + p.left + p.right);
    let sx: Vec<Option<usize>> = (0..ow).map(|o| source(o, w, p.left, p.mode)).collect();
    let sy: Vec<Option<usize>> = (0..oh).map(|o| source(o, h, p.top, p.mode)).collect();
    per_plane(x, planes, oh * ow, |s, o| {
        for (oy, row) in o.chunks_mut(ow).enumerate() {
            if let Some(y) = sy[oy] {
                for (v, sx) in row.iter_mut().zip(&sx) {
                    *v = sx.map_or(T::from_f64(0.0), |x| s[y * w + x]);
                }
            }
        }
    })
}

fn bwd<T: Element>(dy: &[T], planes: usize, h: usize, w: usize, p: PadSpec) -> Vec<T> {
    let ow = w + p.left + p.right;
    let cy: Vec<Vec<usize>> = (0..h)
        .map(|i| candidates(i, h, p.top, p.bottom, p.mode))
        .collect();
    let cx: Vec<Vec<usize>> = (0..w)
        .map(|i| candidates(i, w, p.left, p.right, p.mode))
        .collect();
    per_plane(dy, planes, h * w, |s, o| {
        for (i, v) in o.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for &y in &cy[i / w] {
                for &x in &cx[i % w] {
                    acc += s[y * ow + x].to_f64();
                }
            }
            *v = T::from_f64(acc);
        }
    })
}

/// `x` contiguous `[N, C, H, W]`.
pub fn forward(x: &Tensor, p: PadSpec) -> Result<Tensor> {
    let d = x.dims();
    let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
    map_real(
        "pad2d",
        x,
        &[d[0], d[1], h + p.top + p.bottom, w + p.left + p.right],
        |v| fwd(v, planes, h, w, p),
        |v| fwd(v, planes, h, w, p),
    )
}

/// `dy` contiguous `[N, C, H+top+bottom, W+left+right]`.
pub fn backward(dy: &Tensor, h: usize, w: usize, p: PadSpec) -> Result<Tensor> {
    let d = dy.dims();
    let planes = d[0] * d[1];
    map_real(
        "pad2d",
        dy,
        &[d[0], d[1], h, w],
        |v| bwd(v, planes, h, w, p),
        |v| bwd(v, planes, h, w, p),
    )
}
