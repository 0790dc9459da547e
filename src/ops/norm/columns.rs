//! Batch norm of `[N, C]` on the cpu (`inner == 1`: every group is one column): the
//! arithmetic of `cpu.rs`, operation for operation and in the same order, so the same
//! bits, with each per-group value in its own array (structure of arrays) so that the
//! loop along a row runs across the vector lanes. `cpu.rs` keeps a tuple per group, which
//! the lanes cannot load in one piece: this shape (dcgan28's G.bn1, `[64, 6272]`) ran at
//! 2–2.5x PyTorch's time there.
//!
//! Statistics: tasks own ranges of columns and walk the rows in order (each column's sums
//! are the sums of `cpu.rs`); the elementwise passes: tasks own ranges of whole rows. Each
//! loop is written once (`*_body`, always inlined) and compiled as the twins of
//! `cpu_shared` (baseline, AVX2, AVX-512F; the same IEEE operations in the same order).

use crate::device::cpu::PARALLEL_THRESHOLD;
use crate::ops::cpu_shared::{lanes, Lanes};
use crate::tensor::Element;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// About this many elements per task of the elementwise passes.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `fn $name<T>(args)`: `$body(args)` compiled for the widest lanes of this CPU.
macro_rules! lane_twins {
    ($name:ident => $body:ident ($($arg:ident: $ty:ty),* $(,)?)) => {
        fn $name<T: Element>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512<T: Element>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<T: Element>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match lanes() {
                    // SAFETY: the twins' features were detected.
                    Lanes::Avx512 => return unsafe { avx512($($arg),*) },
                    Lanes::Avx2 => return unsafe { avx2($($arg),*) },
                    Lanes::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// `f(columns)` for ranges of `chunk` columns of `[rows, cols]`, in parallel when the
/// tensor is large; the results in column order.
fn per_columns<R: Send>(
    (rows, cols): (usize, usize),
    chunk: usize,
    f: impl Fn(Range<usize>) -> R + Sync,
) -> Vec<R> {
    let chunk = chunk.max(1);
    let ranges: Vec<Range<usize>> = (0..cols)
        .step_by(chunk)
        .map(|c0| c0..cols.min(c0 + chunk))
        .collect();
    match rows * cols >= PARALLEL_THRESHOLD {
        true => ranges.into_par_iter().map(&f).collect(),
        false => ranges.into_iter().map(f).collect(),
    }
}

/// `f(rows, first element)` over tasks of whole rows of `out` (`[rows, cols]`).
fn per_rows<T: Send>(
    out: &mut [MaybeUninit<T>],
    cols: usize,
    f: impl Fn(&mut [MaybeUninit<T>], usize) + Sync,
) {
    if cols == 0 {
        return;
    }
    let span = ELEMENTS_PER_TASK.div_ceil(cols) * cols;
    let task = |(t, chunk): (usize, &mut [MaybeUninit<T>])| f(chunk, t * span);
    match out.len() >= PARALLEL_THRESHOLD {
        true => out.par_chunks_mut(span).enumerate().for_each(task),
        false => out.chunks_mut(span).enumerate().for_each(task),
    }
}

/// (mean, biased variance) of every column of `x` (`[rows, cols]`): Σ x in row order,
/// mean = Σ / M, then Σ (x − mean)² in row order, variance = that / M (M = rows).
pub(super) fn stats<T: Element>(
    x: &[T],
    (rows, cols): (usize, usize),
    chunk: usize,
) -> Vec<(f64, f64)> {
    let m = rows as f64;
    let parts = per_columns((rows, cols), chunk, |c: Range<usize>| {
        let (mut mean, mut q) = (vec![0f64; c.len()], vec![0f64; c.len()]);
        column_stats(x, (cols, c.start), &mut mean, &mut q, m);
        mean.into_iter().zip(q).map(move |(mu, q)| (mu, q / m))
    });
    parts.into_iter().flatten().collect()
}

lane_twins!(column_stats => column_stats_body(
    x: &[T],
    cols: (usize, usize),
    mean: &mut [f64],
    q: &mut [f64],
    m: f64,
));

#[inline(always)]
fn column_stats_body<T: Element>(
    x: &[T],
    (cols, c0): (usize, usize),
    mean: &mut [f64],
    q: &mut [f64],
    m: f64,
) {
    for row in x.chunks_exact(cols) {
        for (s, &v) in mean.iter_mut().zip(&row[c0..]) {
            *s += v.to_f64();
        }
    }
    mean.iter_mut().for_each(|s| *s /= m);
    for row in x.chunks_exact(cols) {
        for ((q, &mu), &v) in q.iter_mut().zip(&*mean).zip(&row[c0..]) {
            let d = v.to_f64() - mu;
            *q += d * d;
        }
    }
}

/// The per-column values of the forward's output pass.
pub(super) struct Affine<'a> {
    pub mean: &'a [f64],
    pub invstd: &'a [f64],
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
}

/// `y = from_f64((x − mean)·invstd·w + b)` into `out` (`[rows, cols]`, every element).
pub(super) fn affine<T: Element>(x: &[T], out: &mut [MaybeUninit<T>], cols: usize, a: &Affine<'_>) {
    per_rows(out, cols, |rows, first| {
        affine_rows(&x[first..first + rows.len()], rows, a)
    })
}

lane_twins!(affine_rows => affine_rows_body(x: &[T], out: &mut [MaybeUninit<T>], a: &Affine<'_>));

#[inline(always)]
fn affine_rows_body<T: Element>(x: &[T], out: &mut [MaybeUninit<T>], a: &Affine<'_>) {
    let cols = a.mean.len();
    for (row, xr) in out.chunks_mut(cols).zip(x.chunks(cols)) {
        let params = a
            .mean
            .iter()
            .zip(a.invstd)
            .zip(a.weight.iter().zip(&a.bias));
        for ((o, &v), ((&mu, &is), (&wv, &bv))) in row.iter_mut().zip(xr).zip(params) {
            o.write(T::from_f64((v.to_f64() - mu) * is * wv + bv));
        }
    }
}

/// (Σ dy, Σ dy·(x − mean)·invstd) of every column, rows in order; `mean` and `invstd`
/// as the forward stored them (in `T`).
pub(super) fn grad_sums<T: Element>(
    (x, dy): (&[T], &[T]),
    (rows, cols): (usize, usize),
    (mean, invstd): (&[T], &[T]),
    chunk: usize,
) -> Vec<(f64, f64)> {
    let parts = per_columns((rows, cols), chunk, |c: Range<usize>| {
        let mu: Vec<f64> = mean[c.clone()].iter().map(|v| v.to_f64()).collect();
        let is: Vec<f64> = invstd[c.clone()].iter().map(|v| v.to_f64()).collect();
        let (mut sdy, mut sdyx) = (vec![0f64; c.len()], vec![0f64; c.len()]);
        column_grad_sums((x, dy), (cols, c.start), (&mu, &is), (&mut sdy, &mut sdyx));
        sdy.into_iter().zip(sdyx)
    });
    parts.into_iter().flatten().collect()
}

lane_twins!(column_grad_sums => column_grad_sums_body(
    xdy: (&[T], &[T]),
    cols: (usize, usize),
    stats: (&[f64], &[f64]),
    sums: (&mut [f64], &mut [f64]),
));

#[inline(always)]
fn column_grad_sums_body<T: Element>(
    (x, dy): (&[T], &[T]),
    (cols, c0): (usize, usize),
    (mu, is): (&[f64], &[f64]),
    (sdy, sdyx): (&mut [f64], &mut [f64]),
) {
    for (xr, dr) in x.chunks_exact(cols).zip(dy.chunks_exact(cols)) {
        let sums = sdy.iter_mut().zip(sdyx.iter_mut());
        let stats = mu.iter().zip(is);
        for ((((a, b), &xv), &d), (&mu, &is)) in sums.zip(&xr[c0..]).zip(&dr[c0..]).zip(stats) {
            let d = d.to_f64();
            *a += d;
            *b += d * (xv.to_f64() - mu) * is;
        }
    }
}

/// The per-column values of the input gradient: mean, invstd, k = w·invstd, Σdy / M and
/// Σdy·x̂ / M.
pub(super) struct GradCoefs {
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
    pub k: Vec<f64>,
    pub mean_dy: Vec<f64>,
    pub mean_dyx: Vec<f64>,
}

/// dx = k·(dy − Σdy/M − x̂·Σdy·x̂/M), x̂ = (x − mean)·invstd (training), else k·dy.
pub(super) fn input_grad<T: Element>(
    (x, dy): (&[T], &[T]),
    out: &mut [MaybeUninit<T>],
    cols: usize,
    c: &GradCoefs,
    training: bool,
) {
    per_rows(out, cols, |rows, first| {
        let span = first..first + rows.len();
        input_grad_rows((&x[span.clone()], &dy[span]), rows, c, training)
    })
}

lane_twins!(input_grad_rows => input_grad_rows_body(
    xdy: (&[T], &[T]),
    out: &mut [MaybeUninit<T>],
    c: &GradCoefs,
    training: bool,
));

#[inline(always)]
fn input_grad_rows_body<T: Element>(
    (x, dy): (&[T], &[T]),
    out: &mut [MaybeUninit<T>],
    c: &GradCoefs,
    training: bool,
) {
    let cols = c.mean.len();
    for (row, (xr, dr)) in out
        .chunks_mut(cols)
        .zip(x.chunks(cols).zip(dy.chunks(cols)))
    {
        let per = c.mean.iter().zip(&c.invstd).zip(&c.k);
        let means = c.mean_dy.iter().zip(&c.mean_dyx);
        for (((o, (&xv, &d)), ((&mu, &is), &k)), (&mdy, &mdyx)) in
            row.iter_mut().zip(xr.iter().zip(dr)).zip(per).zip(means)
        {
            let d = d.to_f64();
            o.write(T::from_f64(if training {
                let xhat = (xv.to_f64() - mu) * is;
                k * (d - mdy - xhat * mdyx)
            } else {
                k * d
            }));
        }
    }
}
