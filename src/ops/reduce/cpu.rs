//! Reference reductions on the cpu, for f32 and f64 inputs of any strides.
//!
//! Accuracy: sums accumulate in f64 (f32 inputs are widened), in the 8 independent lanes
//! of `cpu_shared::lane_sum` per contiguous run; the partials of fixed 64Ki-element segments are added in order.
//! Results therefore do not depend on the thread count.
//!
//! Two strategies over the permuted view (kept axes first, reduced axes last):
//! * rows: each output reduces its segment(s) of `k` elements, walking contiguous runs
//!   with a vectorisable loop (or a strided loop when the innermost reduced axis is
//!   strided). Parallel over (row, segment) tasks above `PARALLEL_THRESHOLD`.
//! * columns: when the innermost kept axis is contiguous and the reduced axes are outer
//!   (e.g. a sum over the batch axis), a block of adjacent outputs is accumulated
//!   together, one contiguous slice per reduced index. Parallel over blocks.

use super::{ReduceOp, ReducePlan};
use crate::device::cpu::{CpuBuffer, PARALLEL_THRESHOLD};
use crate::error::Result;
use crate::ops::cpu_shared::lane_sum;
use crate::tensor::{Element, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per segment of one output's reduction (the unit of parallel work).
const SEGMENT: usize = 1 << 16;
/// Adjacent outputs accumulated together in the column strategy.
const COLUMN_BLOCK: usize = 512;

/// Drop size-1 axes and merge axes that are contiguous with each other.
pub fn coalesce(dims: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut d: Vec<usize> = Vec::new();
    let mut s: Vec<usize> = Vec::new();
    for (&dim, &stride) in dims.iter().zip(strides) {
        if dim == 1 {
            continue;
        }
        if let (Some(ld), Some(ls)) = (d.last_mut(), s.last_mut()) {
            if *ls == stride * dim {
                *ld *= dim;
                *ls = stride;
                continue;
            }
        }
        d.push(dim);
        s.push(stride);
    }
    (d, s)
}

trait Reducer<T>: Sync {
    type Acc: Copy + Send + Sync;
    fn init(&self) -> Self::Acc;
    fn one(&self, acc: Self::Acc, v: T) -> Self::Acc;
    fn run(&self, acc: Self::Acc, s: &[T]) -> Self::Acc;
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn finish(&self, acc: Self::Acc, k: usize) -> T;
}

struct SumReducer {
    mean: bool,
}

impl<T: Element> Reducer<T> for SumReducer {
    type Acc = f64;
    fn init(&self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn one(&self, acc: f64, v: T) -> f64 {
        acc + v.to_f64()
    }
    #[inline(always)]
    fn run(&self, acc: f64, s: &[T]) -> f64 {
        acc + lane_sum(s, |v| v.to_f64())
    }
    fn merge(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn finish(&self, acc: f64, k: usize) -> T {
        T::from_f64(if self.mean { acc / k as f64 } else { acc })
    }
}

struct MaxReducer;

// `v != v` is the generic NaN test (Element has no is_nan); it vectorises.
#[allow(clippy::eq_op)]
impl<T: Element + PartialOrd> Reducer<T> for MaxReducer {
    /// The largest non-NaN value so far, and whether a NaN was seen.
    type Acc = (T, bool);
    fn init(&self) -> (T, bool) {
        (T::from_f64(f64::NEG_INFINITY), false)
    }
    #[inline(always)]
    fn one(&self, (m, nan): (T, bool), v: T) -> (T, bool) {
        (if v > m { v } else { m }, nan | (v != v))
    }
    #[inline(always)]
    fn run(&self, acc: (T, bool), s: &[T]) -> (T, bool) {
        let mut m = [acc.0; 8];
        let mut nan = [false; 8];
        let chunks = s.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..8 {
                let v = c[j];
                m[j] = if v > m[j] { v } else { m[j] };
                nan[j] |= v != v;
            }
        }
        let mut out = (acc.0, acc.1 | nan.iter().any(|&b| b));
        for v in m {
            out = self.one(out, v);
        }
        for &v in rest {
            out = self.one(out, v);
        }
        out
    }
    fn merge(&self, a: (T, bool), b: (T, bool)) -> (T, bool) {
        let (m, nan) = self.one(a, b.0);
        (m, nan | b.1)
    }
    fn finish(&self, (m, nan): (T, bool), _k: usize) -> T {
        if nan {
            T::from_f64(f64::NAN)
        } else {
            m
        }
    }
}

/// Storage offset of output row `r` over the kept (coalesced) axes.
#[inline]
fn row_offset(r: usize, dims: &[usize], strides: &[usize]) -> usize {
    let mut rem = r;
    let mut off = 0;
    for i in (0..dims.len()).rev() {
        off += (rem % dims[i]) * strides[i];
        rem /= dims[i];
    }
    off
}

/// Reduce reduced-linear positions `a..b` of the row starting at storage index `base`.
fn reduce_segment<T: Copy, R: Reducer<T>>(
    red: &R,
    data: &[T],
    base: usize,
    dims: &[usize],
    strides: &[usize],
    a: usize,
    b: usize,
) -> R::Acc {
    let mut acc = red.init();
    if a >= b {
        return acc;
    }
    let m = dims.len();
    if m == 0 {
        return red.one(acc, data[base]);
    }
    let (inner, sin) = (dims[m - 1], strides[m - 1]);
    let mut idx = vec![0usize; m];
    let mut rem = a;
    for i in (0..m).rev() {
        idx[i] = rem % dims[i];
        rem /= dims[i];
    }
    let mut pos = a;
    while pos < b {
        let run = (inner - idx[m - 1]).min(b - pos);
        let start = base + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        if sin == 1 {
            acc = red.run(acc, &data[start..start + run]);
        } else {
            for j in 0..run {
                acc = red.one(acc, data[start + j * sin]);
            }
        }
        pos += run;
        idx[m - 1] += run;
        let mut i = m - 1;
        while i > 0 && idx[i] == dims[i] {
            idx[i] = 0;
            i -= 1;
            idx[i] += 1;
        }
    }
    acc
}

fn reduce_typed<T: Element, R: Reducer<T>>(red: &R, data: &[T], plan: &ReducePlan) -> Vec<T> {
    let p = &plan.permuted;
    let (rows, k) = (plan.rows, plan.k);
    if rows == 0 {
        return Vec::new();
    }
    let (kd, ks) = coalesce(&p.shape.dims()[..plan.kept], &p.strides[..plan.kept]);
    let (rd, rs) = coalesce(&p.shape.dims()[plan.kept..], &p.strides[plan.kept..]);
    let parallel = rows * k.max(1) >= PARALLEL_THRESHOLD;

    // Column strategy: contiguous innermost kept axis, strided innermost reduced axis.
    let columns = ks.last() == Some(&1)
        && kd.last().is_some_and(|&c| c >= 16)
        && rs.last().is_some_and(|&s| s != 1)
        && k >= 2;
    if columns {
        let c = *kd.last().unwrap();
        let outer = rows / c;
        let blocks = c.div_ceil(COLUMN_BLOCK);
        let red_layout = Layout {
            shape: Shape::new(rd.clone()),
            strides: rs.clone(),
            offset: 0,
        };
        let task = |t: usize| -> Vec<T> {
            let (o, blk) = (t / blocks, t % blocks);
            let c0 = blk * COLUMN_BLOCK;
            let w = COLUMN_BLOCK.min(c - c0);
            let base = p.offset + row_offset(o, &kd[..kd.len() - 1], &ks[..ks.len() - 1]) + c0;
            let mut acc = vec![red.init(); w];
            for roff in red_layout.indices() {
                let src = &data[base + roff..base + roff + w];
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a = red.one(*a, v);
                }
            }
            acc.into_iter().map(|a| red.finish(a, k)).collect()
        };
        let parts: Vec<Vec<T>> = if parallel {
            (0..outer * blocks).into_par_iter().map(task).collect()
        } else {
            (0..outer * blocks).map(task).collect()
        };
        return parts.concat();
    }

    // Row strategy.
    let segs = k.div_ceil(SEGMENT).max(1);
    let task = |t: usize| {
        let (r, s) = (t / segs, t % segs);
        let base = p.offset + row_offset(r, &kd, &ks);
        reduce_segment(
            red,
            data,
            base,
            &rd,
            &rs,
            s * SEGMENT,
            ((s + 1) * SEGMENT).min(k),
        )
    };
    let tasks = rows * segs;
    let partials: Vec<R::Acc> = if parallel {
        let min_len = (16384 / k.clamp(1, SEGMENT)).max(1);
        (0..tasks)
            .into_par_iter()
            .with_min_len(min_len)
            .map(task)
            .collect()
    } else {
        (0..tasks).map(task).collect()
    };
    partials
        .chunks(segs)
        .map(|ps| {
            let acc = ps[1..].iter().fold(ps[0], |a, &b| red.merge(a, b));
            red.finish(acc, k)
        })
        .collect()
}

fn reduce_any<T: Element + PartialOrd>(data: &[T], op: ReduceOp, plan: &ReducePlan) -> Vec<T> {
    match op {
        ReduceOp::Sum => reduce_typed(&SumReducer { mean: false }, data, plan),
        ReduceOp::Mean => reduce_typed(&SumReducer { mean: true }, data, plan),
        ReduceOp::Max => reduce_typed(&MaxReducer, data, plan),
    }
}

pub fn reduce(x: &Tensor, op: ReduceOp, plan: &ReducePlan) -> Result<Tensor> {
    let out = {
        let buffer = x.cpu_buffer(op.name())?;
        match &*buffer {
            CpuBuffer::F32(v) => CpuBuffer::F32(reduce_any(v, op, plan)),
            CpuBuffer::F64(v) => CpuBuffer::F64(reduce_any(v, op, plan)),
            _ => unreachable!("dtype checked by reduce::reduce"),
        }
    };
    Tensor::from_cpu_buffer(out, plan.out_shape.clone())
}

// ---- backward of max ------------------------------------------------------------------

/// True when `v` is a maximum `m` of its row: equal, or both NaN.
#[allow(clippy::eq_op)]
#[inline]
fn is_max<T: Element + PartialOrd>(v: T, m: T) -> bool {
    v == m || (v != v && m != m)
}

/// `dx` in the permuted (kept-first) order: row `r` holds `dy[r] / c` at its `c` maxima
/// and 0 elsewhere. The quotient is rounded once to `T` (for f32, the f64 quotient of two
/// f32 values rounds to the f32 quotient, as the kernels compute it).
fn max_backward_typed<T: Element + PartialOrd>(
    x: &[T],
    y: &[T],
    dy: &[T],
    plan: &ReducePlan,
    dx_layout: &Layout,
) -> Vec<T> {
    let k = plan.k;
    let xs = crate::ops::cpu_shared::gather(x, &plan.permuted);
    let mut permuted: Vec<T> = bytemuck::zeroed_vec(plan.rows * k);
    let row = |r: usize, out: &mut [T]| {
        let (m, src) = (y[r], &xs[r * k..(r + 1) * k]);
        let count = src.iter().filter(|&&v| is_max(v, m)).count();
        let g = if count > 0 {
            T::from_f64(dy[r].to_f64() / count as f64)
        } else {
            T::from_f64(0.0)
        };
        for (o, &v) in out.iter_mut().zip(src) {
            *o = if is_max(v, m) { g } else { T::from_f64(0.0) };
        }
    };
    if k > 0 {
        if plan.rows * k >= PARALLEL_THRESHOLD {
            permuted
                .par_chunks_mut(k)
                .enumerate()
                .for_each(|(r, out)| row(r, out));
        } else {
            permuted
                .chunks_mut(k)
                .enumerate()
                .for_each(|(r, out)| row(r, out));
        }
    }
    // Scatter from the permuted order into dx's row-major storage.
    let mut dx: Vec<T> = bytemuck::zeroed_vec(dx_layout.numel());
    for (i, d) in dx_layout.indices().enumerate() {
        dx[d] = permuted[i];
    }
    dx
}

/// Reference backward of max (see `reduce::max_backward`); `y` and `dy` are contiguous.
pub fn max_backward(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    plan: &ReducePlan,
    dx_layout: &Layout,
) -> Result<Tensor> {
    let (xb, yb, db) = (
        x.cpu_buffer("max_backward")?,
        y.cpu_buffer("max_backward")?,
        dy.cpu_buffer("max_backward")?,
    );
    let rows = plan.rows;
    let (yo, dyo) = (y.layout().offset, dy.layout().offset);
    let out = match (&*xb, &*yb, &*db) {
        (CpuBuffer::F32(x), CpuBuffer::F32(y), CpuBuffer::F32(d)) => CpuBuffer::F32(
            max_backward_typed(x, &y[yo..yo + rows], &d[dyo..dyo + rows], plan, dx_layout),
        ),
        (CpuBuffer::F64(x), CpuBuffer::F64(y), CpuBuffer::F64(d)) => CpuBuffer::F64(
            max_backward_typed(x, &y[yo..yo + rows], &d[dyo..dyo + rows], plan, dx_layout),
        ),
        _ => {
            return Err(crate::error::Error::dtype(
                "max_backward",
                format!("max backward on cpu takes f32 or f64, got {}", x.dtype()),
            ))
        }
    };
    Tensor::from_cpu_buffer(out, x.shape().clone())
}
