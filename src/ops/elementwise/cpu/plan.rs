//! The iteration plan of the cpu elementwise kernels (see the module doc of `super`):
//! broadcast layouts with size-1 dims dropped and contiguous dims merged, walked in
//! parallel chunks of rows.

use crate::device::cpu::PARALLEL_THRESHOLD;
use crate::ops::cpu_shared::{lanes, map_run, written_vec, Lanes};
use crate::tensor::{Element, Layout, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The output shape with size-1 dims removed and mergeable dims merged, and for each of
/// the `N` inputs its offset and strides over those dims. Rank is at least 1.
struct Plan<const N: usize> {
    dims: Vec<usize>,
    strides: Vec<[usize; N]>,
    offsets: [usize; N],
}

impl<const N: usize> Plan<N> {
    /// `layouts` must all have the output's shape (already broadcast).
    fn new(layouts: [&Layout; N]) -> Self {
        let shape = layouts[0].shape.dims();
        let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
        let mut strides: Vec<[usize; N]> = Vec::with_capacity(shape.len());
        for (axis, &d) in shape.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|k| layouts[k].strides[axis]);
            if let (Some(last_d), Some(last_s)) = (dims.last_mut(), strides.last_mut()) {
                // Merge into the previous (outer) dim when it steps over exactly this one.
                if (0..N).all(|k| last_s[k] == s[k] * d) {
                    *last_d *= d;
                    *last_s = s;
                    continue;
                }
            }
            dims.push(d);
            strides.push(s);
        }
        if dims.is_empty() {
            dims.push(1);
            strides.push([0; N]);
        }
        Plan {
            dims,
            strides,
            offsets: std::array::from_fn(|k| layouts[k].offset),
        }
    }

    fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Call `row(pos, len, bases, inner_strides)` for each run of output positions
    /// `pos..pos+len` inside `start..end` that lies in one innermost row; `bases` are the
    /// storage indices of the run's first element in each input.
    fn for_rows(
        &self,
        start: usize,
        end: usize,
        mut row: impl FnMut(usize, usize, [usize; N], [usize; N]),
    ) {
        let rank = self.dims.len();
        let inner = self.dims[rank - 1];
        let inner_strides = self.strides[rank - 1];
        let mut idx = vec![0usize; rank];
        let mut rem = start;
        for axis in (0..rank).rev() {
            idx[axis] = rem % self.dims[axis];
            rem /= self.dims[axis];
        }
        let mut bases = self.offsets;
        for (axis, &i) in idx.iter().enumerate() {
            for (b, &s) in bases.iter_mut().zip(&self.strides[axis]) {
                *b += i * s;
            }
        }
        let mut pos = start;
        while pos < end {
            let col = idx[rank - 1];
            let len = (inner - col).min(end - pos);
            row(pos, len, bases, inner_strides);
            pos += len;
            if pos >= end {
                break;
            }
            // Next row: rewind the inner index, then carry into the outer dims.
            for (b, &s) in bases.iter_mut().zip(&inner_strides) {
                *b -= col * s;
            }
            idx[rank - 1] = 0;
            for axis in (0..rank - 1).rev() {
                idx[axis] += 1;
                for (b, &s) in bases.iter_mut().zip(&self.strides[axis]) {
                    *b += s;
                }
                if idx[axis] < self.dims[axis] {
                    break;
                }
                for (b, &s) in bases.iter_mut().zip(&self.strides[axis]) {
                    *b -= idx[axis] * s;
                }
                idx[axis] = 0;
            }
        }
    }
}

/// Run `chunk(start, out_chunk)` over the output, in parallel for large outputs.
fn run_chunks<T: Send>(out: &mut [T], chunk: impl Fn(usize, &mut [T]) + Sync) {
    let n = out.len();
    if n < PARALLEL_THRESHOLD {
        chunk(0, out);
        return;
    }
    let size = n
        .div_ceil(rayon::current_num_threads() * 4)
        .max(PARALLEL_THRESHOLD / 4);
    out.par_chunks_mut(size)
        .enumerate()
        .for_each(|(i, o)| chunk(i * size, o));
}

/// The `n` output values over `layouts` (all of the output's shape), each row written by
/// `row(dst, bases, strides)` in parallel chunks, with no zero-fill first; `len` of a row
/// is `dst.len()`.
///
/// # Safety
/// `row` must write every element of its `dst`.
unsafe fn write_rows<T: Send, const N: usize>(
    n: usize,
    layouts: [&Layout; N],
    row: impl Fn(&mut [MaybeUninit<T>], [usize; N], [usize; N]) + Sync,
) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let plan = Plan::new(layouts);
    assert_eq!(plan.numel(), n, "the plan covers the output");
    let fill = |out: &mut [MaybeUninit<T>]| {
        run_chunks(out, |start, o| {
            plan.for_rows(start, start + o.len(), |pos, len, bases, strides| {
                row(&mut o[pos - start..pos - start + len], bases, strides)
            })
        })
    };
    // SAFETY: the plan's rows cover positions 0..n once each, and `row` writes each whole
    // (the caller's contract).
    written_vec(n, fill)
}

/// `out[i] = f(x at logical position i)` for the layout `xl`.
pub(super) fn map1<T: Element, F: Fn(T) -> T + Sync>(x: &[T], xl: &Layout, f: F) -> Vec<T> {
    let row = |dst: &mut [MaybeUninit<T>], [bx]: [usize; 1], [sx]: [usize; 1]| {
        let len = dst.len();
        match sx {
            1 => contiguous_row(dst, &x[bx..bx + len], &f),
            0 => dst.fill(MaybeUninit::new(f(x[bx]))),
            _ => {
                for (j, d) in dst.iter_mut().enumerate() {
                    d.write(f(x[bx + j * sx]));
                }
            }
        }
    };
    // SAFETY: every arm writes all of `dst`.
    unsafe { write_rows(xl.numel(), [xl], row) }
}

/// `dst[i] = f(src[i])`, the hot row of every unary op, compiled for the CPU's widest
/// vectors (`cpu_shared::lanes`): the branch-free `f`s (exp, tanh, sigmoid, …) vectorise
/// 16 lanes wide on AVX-512 and 8 on AVX2 instead of the baseline's 4. All run the same
/// IEEE operations per element (Rust never fuses `a * b + c` into an FMA), so the results
/// are bitwise equal.
#[inline(always)]
fn contiguous_row<T: Copy, F: Fn(T) -> T>(dst: &mut [MaybeUninit<T>], src: &[T], f: &F) {
    match lanes() {
        // SAFETY: the twins' features were detected.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx512 => unsafe { contiguous_row_avx512(dst, src, f) },
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => unsafe { contiguous_row_avx2(dst, src, f) },
        _ => contiguous_row_body(dst, src, f),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn contiguous_row_avx512<T: Copy, F: Fn(T) -> T>(
    dst: &mut [MaybeUninit<T>],
    src: &[T],
    f: &F,
) {
    contiguous_row_body(dst, src, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn contiguous_row_avx2<T: Copy, F: Fn(T) -> T>(
    dst: &mut [MaybeUninit<T>],
    src: &[T],
    f: &F,
) {
    contiguous_row_body(dst, src, f)
}

#[inline(always)]
fn contiguous_row_body<T: Copy, F: Fn(T) -> T>(dst: &mut [MaybeUninit<T>], src: &[T], f: &F) {
    for (d, &v) in dst.iter_mut().zip(src) {
        d.write(f(v));
    }
}

/// `out[i] = f(a[i], b[i])` with `al`, `bl` already broadcast to `shape`.
pub(super) fn map2<T: Element, F: Fn(T, T) -> T + Sync>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
    shape: &Shape,
    f: F,
) -> Vec<T> {
    let row = |dst: &mut [MaybeUninit<T>], [ba, bb]: [usize; 2], [sa, sb]: [usize; 2]| {
        let len = dst.len();
        match (sa, sb) {
            (1, 1) => map_run(dst, &a[ba..ba + len], &b[bb..bb + len], &f),
            (1, 0) => {
                let v = b[bb];
                contiguous_row(dst, &a[ba..ba + len], &|u| f(u, v))
            }
            (0, 1) => {
                let u = a[ba];
                contiguous_row(dst, &b[bb..bb + len], &|v| f(u, v))
            }
            _ => {
                for (j, d) in dst.iter_mut().enumerate() {
                    d.write(f(a[ba + j * sa], b[bb + j * sb]));
                }
            }
        }
    };
    // SAFETY: every arm writes all of `dst` (the slices zipped with it have its length).
    unsafe { write_rows(shape.numel(), [al, bl], row) }
}

/// `out[i] = f(a[i], b[i], c[i])` with `al`, `bl`, `cl` all of the output's shape
/// (already broadcast).
pub(super) fn map3<T: Element, F: Fn(T, T, T) -> T + Sync>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
    c: &[T],
    cl: &Layout,
    f: &F,
) -> Vec<T> {
    let row = |dst: &mut [MaybeUninit<T>], [ba, bb, bc]: [usize; 3], [sa, sb, sc]: [usize; 3]| {
        let len = dst.len();
        if (sa, sb, sc) == (1, 1, 1) {
            let (x, y, z) = (&a[ba..ba + len], &b[bb..bb + len], &c[bc..bc + len]);
            for (((d, &u), &v), &w) in dst.iter_mut().zip(x).zip(y).zip(z) {
                d.write(f(u, v, w));
            }
        } else {
            for (j, d) in dst.iter_mut().enumerate() {
                d.write(f(a[ba + j * sa], b[bb + j * sb], c[bc + j * sc]));
            }
        }
    };
    // SAFETY: both branches write all of `dst`.
    unsafe { write_rows(cl.numel(), [al, bl, cl], row) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_merges_contiguous_and_broadcast_dims() {
        let l = Layout::contiguous([2, 3, 4]);
        let p = Plan::new([&l]);
        assert_eq!(p.dims, vec![24]);
        let t = Layout::contiguous([3, 4]).transpose(0, 1);
        let p = Plan::new([&t]);
        assert_eq!(p.dims, vec![4, 3]);
        let s = Layout::contiguous([1])
            .broadcast_to("t", &Shape::new([5, 6]))
            .unwrap();
        let c = Layout::contiguous([5, 6]);
        let p = Plan::new([&c, &s]);
        assert_eq!(p.dims, vec![30]);
        assert_eq!(p.strides, vec![[1, 0]]);
    }

    #[test]
    fn rows_cover_a_chunk_that_starts_mid_row() {
        let l = Layout::contiguous([4, 5]).narrow("t", 1, 1, 3).unwrap();
        let p = Plan::new([&l]);
        let mut seen = Vec::new();
        p.for_rows(2, 8, |_, len, [b], [s]| {
            for j in 0..len {
                seen.push(b + j * s);
            }
        });
        // Logical positions 2..8 of rows [1,2,3],[6,7,8],[11,12,13],[16,17,18].
        assert_eq!(seen, vec![3, 6, 7, 8, 11, 12]);
    }
}
