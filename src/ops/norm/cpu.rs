//! Reference batch / instance norm on the cpu for f32 and f64: per-group sums in f64
//! (two-pass variance), parallel over groups for the statistics and over contiguous rows
//! of `inner` elements for the elementwise parts (above `PARALLEL_THRESHOLD`).

use super::{NormForward, NormGeom, Stats};
use crate::device::cpu::{CpuBuffer, PARALLEL_THRESHOLD};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;

/// `f(g)` for every group, in parallel when the work is large.
fn per_group<R: Send>(geom: NormGeom, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if geom.numel() >= PARALLEL_THRESHOLD {
        (0..geom.groups).into_par_iter().map(f).collect()
    } else {
        (0..geom.groups).map(f).collect()
    }
}

/// Fill `out` (contiguous `[outer, G, inner]`) row by row: `f(g, row_index, row)`.
fn per_row<T: Send>(geom: NormGeom, out: &mut [T], f: impl Fn(usize, usize, &mut [T]) + Sync) {
    if geom.inner == 0 {
        return;
    }
    let g = geom.groups;
    if geom.numel() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(geom.inner)
            .enumerate()
            .for_each(|(r, row)| f(r % g, r, row));
    } else {
        out.chunks_mut(geom.inner)
            .enumerate()
            .for_each(|(r, row)| f(r % g, r, row));
    }
}

/// The rows `(o·G + g)` of group `g`, `inner` elements each.
fn group_rows<T>(x: &[T], geom: NormGeom, g: usize) -> impl Iterator<Item = &[T]> {
    (0..geom.outer).map(move |o| {
        let start = (o * geom.groups + g) * geom.inner;
        &x[start..start + geom.inner]
    })
}

/// Batch mean and biased variance of every group (two passes, f64).
fn batch_stats<T: Element>(x: &[T], geom: NormGeom) -> Vec<(f64, f64)> {
    let m = geom.m() as f64;
    per_group(geom, |g| {
        let sum: f64 = group_rows(x, geom, g)
            .map(|r| r.iter().map(|v| v.to_f64()).sum::<f64>())
            .sum();
        let mean = sum / m;
        let sq: f64 = group_rows(x, geom, g)
            .map(|r| {
                r.iter()
                    .map(|v| {
                        let d = v.to_f64() - mean;
                        d * d
                    })
                    .sum::<f64>()
            })
            .sum();
        (mean, sq / m)
    })
}

fn slice<'a, T: Element>(buf: &'a CpuBuffer, t: &Tensor) -> &'a [T] {
    let data: &[T] = match buf {
        CpuBuffer::F32(v) => bytemuck::cast_slice(v),
        CpuBuffer::F64(v) => bytemuck::cast_slice(v),
        CpuBuffer::F16(v) => bytemuck::cast_slice(v),
        CpuBuffer::BF16(v) => bytemuck::cast_slice(v),
    };
    let off = t.layout().offset;
    &data[off..off + t.numel()]
}

fn read<T: Element>(t: &Tensor, op: &'static str) -> Result<Vec<T>> {
    let b = t.cpu_buffer(op)?;
    Ok(slice::<T>(&b, t).to_vec())
}

fn forward_typed<T: Element>(
    op: &'static str,
    x: &Tensor,
    geom: NormGeom,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: &Stats<'_>,
    eps: f64,
) -> Result<NormForward> {
    let w: Option<Vec<T>> = weight.map(|w| read(w, op)).transpose()?;
    let b: Option<Vec<T>> = bias.map(|b| read(b, op)).transpose()?;
    // (mean, invstd) per group
    let (mean, invstd): (Vec<f64>, Vec<f64>) = match stats {
        Stats::Batch { running, momentum } => {
            let st = {
                let xb = x.cpu_buffer(op)?;
                batch_stats(slice::<T>(&xb, x), geom)
            };
            if let Some((rm, rv)) = running {
                let m = geom.m() as f64;
                let mom = *momentum;
                for (t, unbiased) in [(*rm, false), (*rv, true)] {
                    let mut buf = t.cpu_buffer_mut(op)?;
                    let off = t.layout().offset;
                    let data: &mut [T] = match &mut *buf {
                        CpuBuffer::F32(v) => bytemuck::cast_slice_mut(v),
                        CpuBuffer::F64(v) => bytemuck::cast_slice_mut(v),
                        _ => unreachable!("dtype checked by batch_norm"),
                    };
                    for (g, &(mu, var)) in st.iter().enumerate() {
                        let stat = if unbiased { var * m / (m - 1.0) } else { mu };
                        let r = &mut data[off + g];
                        *r = T::from_f64((1.0 - mom) * r.to_f64() + mom * stat);
                    }
                }
            }
            st.iter()
                .map(|&(mu, var)| (mu, 1.0 / (var + eps).sqrt()))
                .unzip()
        }
        Stats::Running(rm, rv) => {
            let rm: Vec<T> = read(rm, op)?;
            let rv: Vec<T> = read(rv, op)?;
            rm.iter()
                .zip(&rv)
                .map(|(m, v)| (m.to_f64(), 1.0 / (v.to_f64() + eps).sqrt()))
                .unzip()
        }
    };
    let mut y: Vec<T> = bytemuck::zeroed_vec(geom.numel());
    {
        let xb = x.cpu_buffer(op)?;
        let xs = slice::<T>(&xb, x);
        let c = geom.channels;
        per_row(geom, &mut y, |g, r, row| {
            let (mu, is) = (mean[g], invstd[g]);
            let wv = w.as_ref().map_or(1.0, |w| w[g % c].to_f64());
            let bv = b.as_ref().map_or(0.0, |b| b[g % c].to_f64());
            let src = &xs[r * geom.inner..(r + 1) * geom.inner];
            for (o, v) in row.iter_mut().zip(src) {
                *o = T::from_f64((v.to_f64() - mu) * is * wv + bv);
            }
        });
    }
    let g = geom.groups;
    let to_t = |v: &[f64]| v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>();
    Ok(NormForward {
        y: Tensor::from_vec(y, x.shape().clone(), &x.device().clone())?,
        mean: Tensor::from_vec(to_t(&mean), [g], x.device())?,
        invstd: Tensor::from_vec(to_t(&invstd), [g], x.device())?,
    })
}

/// Forward on contiguous `x` (see `norm::norm_forward`).
pub fn forward(
    op: &'static str,
    x: &Tensor,
    geom: NormGeom,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: &Stats<'_>,
    eps: f64,
) -> Result<NormForward> {
    match x.dtype() {
        crate::tensor::DType::F32 => forward_typed::<f32>(op, x, geom, weight, bias, stats, eps),
        crate::tensor::DType::F64 => forward_typed::<f64>(op, x, geom, weight, bias, stats, eps),
        other => Err(Error::dtype(
            op,
            format!("{op} on cpu takes f32 or f64, got {other}"),
        )),
    }
}

fn backward_typed<T: Element>(
    x: &Tensor,
    dy: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    geom: NormGeom,
    training: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "norm_backward";
    let mean: Vec<T> = read(mean, OP)?;
    let invstd: Vec<T> = read(invstd, OP)?;
    let w: Option<Vec<T>> = weight.map(|w| read(w, OP)).transpose()?;
    let xb = x.cpu_buffer(OP)?;
    let db = dy.cpu_buffer(OP)?;
    let (xs, ds) = (slice::<T>(&xb, x), slice::<T>(&db, dy));
    let sums: Vec<(f64, f64)> = per_group(geom, |g| {
        let (mu, is) = (mean[g].to_f64(), invstd[g].to_f64());
        group_rows(xs, geom, g)
            .zip(group_rows(ds, geom, g))
            .fold((0.0, 0.0), |(a, b), (xr, dr)| {
                xr.iter().zip(dr).fold((a, b), |(a, b), (xv, dv)| {
                    let d = dv.to_f64();
                    (a + d, b + d * (xv.to_f64() - mu) * is)
                })
            })
    });
    let m = geom.m() as f64;
    let c = geom.channels;
    let mut dx: Vec<T> = bytemuck::zeroed_vec(geom.numel());
    per_row(geom, &mut dx, |g, r, row| {
        let (mu, is) = (mean[g].to_f64(), invstd[g].to_f64());
        let k = w.as_ref().map_or(1.0, |w| w[g % c].to_f64()) * is;
        let (sdy, sdyx) = sums[g];
        let range = r * geom.inner..(r + 1) * geom.inner;
        for ((o, xv), dv) in row.iter_mut().zip(&xs[range.clone()]).zip(&ds[range]) {
            let d = dv.to_f64();
            *o = T::from_f64(if training {
                let xhat = (xv.to_f64() - mu) * is;
                k * (d - sdy / m - xhat * (sdyx / m))
            } else {
                k * d
            });
        }
    });
    let dev = x.device();
    let g = geom.groups;
    let sum_dy: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).collect();
    let sum_dyx: Vec<T> = sums.iter().map(|s| T::from_f64(s.1)).collect();
    Ok((
        Tensor::from_vec(dx, x.shape().clone(), dev)?,
        Tensor::from_vec(sum_dy, [g], dev)?,
        Tensor::from_vec(sum_dyx, [g], dev)?,
    ))
}

/// Fused backward on contiguous `x` and `dy` (see `norm::norm_backward`).
pub fn backward(
    x: &Tensor,
    dy: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    geom: NormGeom,
    training: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    if dy.dtype() != x.dtype() {
        return Err(Error::dtype(
            "norm_backward",
            format!("dy is {} but x is {}", dy.dtype(), x.dtype()),
        ));
    }
    match x.dtype() {
        crate::tensor::DType::F32 => {
            backward_typed::<f32>(x, dy, mean, invstd, weight, geom, training)
        }
        crate::tensor::DType::F64 => {
            backward_typed::<f64>(x, dy, mean, invstd, weight, geom, training)
        }
        other => Err(Error::dtype(
            "norm_backward",
            format!("norm backward on cpu takes f32 or f64, got {other}"),
        )),
    }
}
