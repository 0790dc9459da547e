//! Reference batch / instance norm on the cpu for f32 and f64: per-group sums in f64
//! (two-pass variance; each row summed in the lanes of `cpu_shared::lane_sum`), parallel
//! over ranges of groups for the statistics and over runs of whole rows for the
//! elementwise parts (above `PARALLEL_THRESHOLD`).

use super::{columns, NormForward, NormGeom, Stats};
use crate::device::cpu::{CpuBuffer, PARALLEL_THRESHOLD};
use crate::error::{Error, Result};
use crate::ops::cpu_shared::{lane_sum, lane_sum2, map_run, written_vec};
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Groups per task of [`fold_groups`]: about 8 tasks, whatever the shape.
fn groups_per_task(geom: NormGeom) -> usize {
    geom.groups.div_ceil(8).max(1)
}

/// Fold every group's elements in order (rows `o = 0..outer`, then `i = 0..inner`).
/// Tasks own contiguous ranges of groups; for every `o` a task's rows `(o, g0..g0 + k)`
/// are one contiguous block of `k·inner` elements, which `visit(accs, g0, block)` folds
/// into the task's accumulators `accs` (`k` of them). So a task reads memory in order even
/// when `inner` is 1 (`[N, C]` batch norm), and every group is folded by one task in a
/// fixed order: the result does not depend on the threads.
fn fold_groups<R: Send + Clone>(
    geom: NormGeom,
    init: R,
    visit: impl Fn(&mut [R], usize, Range<usize>) + Sync,
) -> Vec<R> {
    let visit = |_, accs: &mut [R], g0, block| visit(accs, g0, block);
    fold_groups_passes(geom, init, 1, visit, |_| {})
}

/// [`fold_groups`] with `passes` folds in a row, `visit(pass, accs, g0, block)`, and
/// `between(acc)` on each of a task's accumulators after each pass but the last: each task
/// makes all of them over its own groups, so a later pass reads the task's elements while
/// the earlier one left them in cache (a second parallel fold over the whole tensor read
/// them from memory again, on either thread).
fn fold_groups_passes<R: Send + Clone>(
    geom: NormGeom,
    init: R,
    passes: usize,
    visit: impl Fn(usize, &mut [R], usize, Range<usize>) + Sync,
    between: impl Fn(&mut R) + Sync,
) -> Vec<R> {
    let mut acc = vec![init; geom.groups];
    let (inner, groups, chunk) = (geom.inner, geom.groups, groups_per_task(geom));
    let task = |(t, accs): (usize, &mut [R])| {
        let g0 = t * chunk;
        for pass in 0..passes {
            for o in 0..geom.outer {
                let start = (o * groups + g0) * inner;
                visit(pass, accs, g0, start..start + accs.len() * inner);
            }
            if pass + 1 < passes {
                accs.iter_mut().for_each(&between);
            }
        }
    };
    if geom.numel() >= PARALLEL_THRESHOLD {
        acc.par_chunks_mut(chunk).enumerate().for_each(task);
    } else {
        acc.chunks_mut(chunk).enumerate().for_each(task);
    }
    acc
}

/// Add `f(row)` of every row of `block` (`accs.len()` rows of `inner` elements) to its
/// accumulator, with `inner == 1` as a plain element loop (that LLVM vectorises).
#[inline(always)]
fn fold_rows<T: Copy, R>(
    accs: &mut [R],
    block: &[T],
    inner: usize,
    one: impl Fn(&mut R, T, usize),
    row: impl Fn(&mut R, &[T], usize),
) {
    if inner == 1 {
        for (k, (a, &v)) in accs.iter_mut().zip(block).enumerate() {
            one(a, v, k);
        }
    } else {
        for (k, (a, r)) in accs.iter_mut().zip(block.chunks_exact(inner)).enumerate() {
            row(a, r, k);
        }
    }
}

/// Fill `out` (contiguous `[outer, G, inner]`) by `f(run, g0, same_group)` over runs of
/// elements, in tasks of about `ELEMENTS_PER_TASK` elements: when `inner == 1` a run holds
/// consecutive groups `g0, g0 + 1, …` (one element each), otherwise it is one row, all of
/// group `g0`.
fn for_runs<T: Send>(
    geom: NormGeom,
    out: &mut [T],
    f: impl Fn(&mut [T], Range<usize>, usize, bool) + Sync,
) {
    const ELEMENTS_PER_TASK: usize = 1 << 14;
    let (g, inner) = (geom.groups, geom.inner);
    if inner == 0 || g == 0 {
        return;
    }
    let rows_per_task = ELEMENTS_PER_TASK.div_ceil(inner);
    let task = |(t, chunk): (usize, &mut [T])| {
        let first = t * rows_per_task * inner;
        if inner == 1 {
            let mut done = 0;
            while done < chunk.len() {
                let g0 = (first + done) % g;
                let len = (g - g0).min(chunk.len() - done);
                let span = first + done..first + done + len;
                f(&mut chunk[done..done + len], span, g0, false);
                done += len;
            }
        } else {
            for (k, row) in chunk.chunks_mut(inner).enumerate() {
                let start = first + k * inner;
                f(row, start..start + inner, (start / inner) % g, true);
            }
        }
    };
    if geom.numel() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(task);
    } else {
        out.chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(task);
    }
}

/// Batch mean and biased variance of every group (two passes, f64, one task making both
/// over its groups): each row's sum is formed first and the row sums are added in row
/// order; the second pass sums `(x − mean)²` likewise.
fn batch_stats<T: Element>(x: &[T], geom: NormGeom) -> Vec<(f64, f64)> {
    if geom.inner == 1 {
        let shape = (geom.outer, geom.groups);
        return columns::stats(x, shape, groups_per_task(geom));
    }
    let m = geom.m() as f64;
    let inner = geom.inner;
    // (Σ x, then the mean Σ x / M; Σ (x − mean)²) per group.
    let visit = |pass, accs: &mut [(f64, f64)], _, block: Range<usize>| {
        let x = &x[block];
        if pass == 0 {
            return fold_rows(
                accs,
                x,
                inner,
                |a, v, _| a.0 += v.to_f64(),
                |a, r, _| a.0 += lane_sum(r, |v| v.to_f64()),
            );
        }
        fold_rows(
            accs,
            x,
            inner,
            |a, v, _| {
                let d = v.to_f64() - a.0;
                a.1 += d * d
            },
            |a, r, _| {
                let mu = a.0;
                a.1 += lane_sum(r, |v| {
                    let d = v.to_f64() - mu;
                    d * d
                })
            },
        )
    };
    let to_mean = |a: &mut (f64, f64)| a.0 /= m;
    let stats = fold_groups_passes(geom, (0.0f64, 0.0f64), 2, visit, to_mean);
    stats.into_iter().map(|(mu, q)| (mu, q / m)).collect()
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
    // y = ((x − mean)·invstd)·w + b per group, in f64.
    let c = geom.channels;
    let wv = |g: usize| w.as_ref().map_or(1.0, |w| w[g % c].to_f64());
    let bv = |g: usize| b.as_ref().map_or(0.0, |b| b[g % c].to_f64());
    if geom.inner == 1 {
        let a = columns::Affine {
            mean: &mean,
            invstd: &invstd,
            weight: (0..geom.groups).map(wv).collect(),
            bias: (0..geom.groups).map(bv).collect(),
        };
        let xb = x.cpu_buffer(op)?;
        let xs = slice::<T>(&xb, x);
        // SAFETY: `columns::affine` writes every element of every row.
        let y = unsafe { written_vec(geom.numel(), |y| columns::affine(xs, y, geom.groups, &a)) };
        return finish_forward(x, geom, y, &mean, &invstd);
    }
    let affine: Vec<(f64, f64, f64, f64)> = (0..geom.groups)
        .map(|g| (mean[g], invstd[g], wv(g), bv(g)))
        .collect();
    let y_of = |v: T, &(mu, is, wv, bv): &(f64, f64, f64, f64)| {
        T::from_f64((v.to_f64() - mu) * is * wv + bv)
    };
    let y: Vec<T> = {
        let xb = x.cpu_buffer(op)?;
        let xs = slice::<T>(&xb, x);
        let fill = |y: &mut [MaybeUninit<T>]| {
            for_runs(geom, y, |out, span, g0, one_group| {
                let src = &xs[span];
                if one_group {
                    let p = affine[g0];
                    map_run(out, src, src, |v, _| y_of(v, &p));
                } else {
                    map_run(out, src, &affine[g0..g0 + out.len()], |v, p| y_of(v, &p));
                }
            })
        };
        // SAFETY: for_runs hands each element to one run, and every run is written whole.
        unsafe { written_vec(geom.numel(), fill) }
    };
    finish_forward(x, geom, y, &mean, &invstd)
}

/// The forward's tensors: `y`, and the per-group mean and invstd stored in `T`.
fn finish_forward<T: Element>(
    x: &Tensor,
    geom: NormGeom,
    y: Vec<T>,
    mean: &[f64],
    invstd: &[f64],
) -> Result<NormForward> {
    let g = geom.groups;
    let to_t = |v: &[f64]| v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>();
    Ok(NormForward {
        y: Tensor::from_vec(y, x.shape().clone(), &x.device().clone())?,
        mean: Tensor::from_vec(to_t(mean), [g], x.device())?,
        invstd: Tensor::from_vec(to_t(invstd), [g], x.device())?,
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
    let inner = geom.inner;
    let shape = (geom.outer, geom.groups);
    let sums: Vec<(f64, f64)> = match inner {
        1 => columns::grad_sums((xs, ds), shape, (&mean, &invstd), groups_per_task(geom)),
        _ => row_grad_sums((xs, ds), geom, (&mean, &invstd)),
    };
    // dx = k·(dy − Σdy/M − x̂·Σdy·x̂/M) with k = w·invstd (training), k·dy (eval).
    let m = geom.m() as f64;
    let c = geom.channels;
    let coef: Vec<(f64, f64, f64, f64, f64)> = (0..geom.groups)
        .map(|g| {
            let is = invstd[g].to_f64();
            let k = w.as_ref().map_or(1.0, |w| w[g % c].to_f64()) * is;
            let (sdy, sdyx) = sums[g];
            (mean[g].to_f64(), is, k, sdy / m, sdyx / m)
        })
        .collect();
    let dx: Vec<T> = match inner {
        1 => {
            let cf = columns::GradCoefs {
                mean: coef.iter().map(|p| p.0).collect(),
                invstd: coef.iter().map(|p| p.1).collect(),
                k: coef.iter().map(|p| p.2).collect(),
                mean_dy: coef.iter().map(|p| p.3).collect(),
                mean_dyx: coef.iter().map(|p| p.4).collect(),
            };
            let fill = |dx: &mut [MaybeUninit<T>]| {
                columns::input_grad((xs, ds), dx, geom.groups, &cf, training)
            };
            // SAFETY: `columns::input_grad` writes every element of every row.
            unsafe { written_vec(geom.numel(), fill) }
        }
        _ => row_input_grad((xs, ds), geom, &coef, training),
    };
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

/// (Σ dy, Σ dy·x̂) per group for `inner > 1` (each row by `lane_sum2`, rows in order).
fn row_grad_sums<T: Element>(
    (xs, ds): (&[T], &[T]),
    geom: NormGeom,
    (mean, invstd): (&[T], &[T]),
) -> Vec<(f64, f64)> {
    let inner = geom.inner;
    fold_groups(geom, (0.0, 0.0), |accs, g0, block| {
        let (mean, invstd) = (&mean[g0..], &invstd[g0..]);
        let one = |(a, b): &mut (f64, f64), xv: T, d: T, k: usize| {
            let d = d.to_f64();
            *a += d;
            *b += d * (xv.to_f64() - mean[k].to_f64()) * invstd[k].to_f64();
        };
        let ds = &ds[block.clone()];
        let xs = &xs[block];
        if inner == 1 {
            for (k, (acc, (&xv, &d))) in accs.iter_mut().zip(xs.iter().zip(ds)).enumerate() {
                one(acc, xv, d, k);
            }
        } else {
            for (k, (acc, (xr, dr))) in accs
                .iter_mut()
                .zip(xs.chunks_exact(inner).zip(ds.chunks_exact(inner)))
                .enumerate()
            {
                let (mu, is) = (mean[k].to_f64(), invstd[k].to_f64());
                let (sdy, sdyx) = lane_sum2(xr, dr, |xv, d| {
                    let d = d.to_f64();
                    (d, d * (xv.to_f64() - mu) * is)
                });
                acc.0 += sdy;
                acc.1 += sdyx;
            }
        }
    })
}

/// The input gradient for `inner > 1` (see `backward_typed`), run by run.
fn row_input_grad<T: Element>(
    (xs, ds): (&[T], &[T]),
    geom: NormGeom,
    coef: &[(f64, f64, f64, f64, f64)],
    training: bool,
) -> Vec<T> {
    let dx_of = |xv: T, d: T, &(mu, is, k, mdy, mdyx): &(f64, f64, f64, f64, f64)| {
        let d = d.to_f64();
        T::from_f64(if training {
            let xhat = (xv.to_f64() - mu) * is;
            k * (d - mdy - xhat * mdyx)
        } else {
            k * d
        })
    };
    let fill = |dx: &mut [MaybeUninit<T>]| {
        for_runs(geom, dx, |out, span, g0, one_group| {
            let (xr, dr) = (&xs[span.clone()], &ds[span]);
            if one_group {
                let p = coef[g0];
                map_run(out, xr, dr, |xv, d| dx_of(xv, d, &p));
            } else {
                let ps = &coef[g0..g0 + out.len()];
                for ((o, (&xv, &d)), p) in out.iter_mut().zip(xr.iter().zip(dr)).zip(ps) {
                    o.write(dx_of(xv, d, p));
                }
            }
        })
    };
    // SAFETY: as in the forward, every element is written by its run.
    unsafe { written_vec(geom.numel(), fill) }
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
