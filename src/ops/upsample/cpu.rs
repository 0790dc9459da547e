//! Reference nearest upsampling on the cpu (f32, f64), parallel over planes above
//! `PARALLEL_THRESHOLD`.

use crate::device::cpu::PARALLEL_THRESHOLD;
use crate::error::Result;
use crate::ops::cpu_shared::map_real;
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;

fn planes_map<T: Element>(
    src: &[T],
    out_plane: usize,
    planes: usize,
    f: impl Fn(&[T], &mut [T]) + Sync,
) -> Vec<T> {
    let in_plane = src.len() / planes.max(1);
    let mut out: Vec<T> = bytemuck::zeroed_vec(out_plane * planes);
    if out_plane == 0 {
        return out;
    }
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(out_plane)
            .zip(src.par_chunks(in_plane.max(1)))
            .for_each(|(o, s)| f(s, o));
    } else {
        out.chunks_mut(out_plane)
            .zip(src.chunks(in_plane.max(1)))
            .for_each(|(o, s)| f(s, o));
    }
    out
}

fn up<T: Element>(x: &[T], planes: usize, h: usize, w: usize, s: usize) -> Vec<T> {
    let ow = w * s;
    planes_map(x, h * s * ow, planes, |src, o| {
        for (oy, row) in o.chunks_mut(ow).enumerate() {
            let srow = &src[(oy / s) * w..(oy / s + 1) * w];
            for (ox, v) in row.iter_mut().enumerate() {
                *v = srow[ox / s];
            }
        }
    })
}

fn down<T: Element>(dy: &[T], planes: usize, h: usize, w: usize, s: usize) -> Vec<T> {
    let ow = w * s;
    planes_map(dy, h * w, planes, |src, o| {
        for (i, v) in o.iter_mut().enumerate() {
            let (iy, ix) = (i / w, i % w);
            let mut acc = 0.0f64;
            for a in 0..s {
                let row = &src[(iy * s + a) * ow + ix * s..(iy * s + a) * ow + ix * s + s];
                for &r in row {
                    acc += r.to_f64();
                }
            }
            *v = T::from_f64(acc);
        }
    })
}

/// `x` contiguous `[N, C, H, W]`.
pub fn forward(x: &Tensor, s: usize) -> Result<Tensor> {
    let d = x.dims();
    let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
    map_real(
        "upsample_nearest2d",
        x,
        &[d[0], d[1], h * s, w * s],
        |v| up(v, planes, h, w, s),
        |v| up(v, planes, h, w, s),
    )
}

/// `dy` contiguous `[N, C, H·s, W·s]`.
pub fn backward(dy: &Tensor, s: usize) -> Result<Tensor> {
    let d = dy.dims();
    let (planes, h, w) = (d[0] * d[1], d[2] / s, d[3] / s);
    map_real(
        "upsample_nearest2d",
        dy,
        &[d[0], d[1], h, w],
        |v| down(v, planes, h, w, s),
        |v| down(v, planes, h, w, s),
    )
}
