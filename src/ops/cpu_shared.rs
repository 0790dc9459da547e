//! The cpu helpers that more than one op family's `cpu.rs` uses: reading a strided layout
//! in row-major order, the one dispatch of the kernels that read one real tensor and
//! write another, the one order of the f64 sums of a run ([`lane_sum`]), and running a
//! loop compiled for the CPU's widest vectors ([`lanes`]), and a thread's pair of reusable workspaces
//! ([`with_pair`]).

use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::tensor::{Layout, Tensor};
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// The elements of `layout` over `data` in row-major order (borrowed when contiguous).
pub(crate) fn gather<'a, T: Copy>(data: &'a [T], layout: &Layout) -> Cow<'a, [T]> {
    if layout.is_contiguous() {
        Cow::Borrowed(&data[layout.offset..layout.offset + layout.numel()])
    } else {
        Cow::Owned(layout.indices().map(|i| data[i]).collect())
    }
}

/// Map the contiguous f32 or f64 elements of the cpu tensor `t` through `f32f` or `f64f`
/// into a new tensor of shape `out_dims` (the one dispatch of the cpu reference kernels
/// that read one real tensor and write another); other dtypes are refused, naming `op`.
pub(crate) fn map_real(
    op: &'static str,
    t: &Tensor,
    out_dims: &[usize],
    f32f: impl FnOnce(&[f32]) -> Vec<f32>,
    f64f: impl FnOnce(&[f64]) -> Vec<f64>,
) -> Result<Tensor> {
    let off = t.layout().offset;
    let n = t.numel();
    let out = {
        let b = t.cpu_buffer(op)?;
        match &*b {
            CpuBuffer::F32(v) => CpuBuffer::F32(f32f(&v[off..off + n])),
            CpuBuffer::F64(v) => CpuBuffer::F64(f64f(&v[off..off + n])),
            _ => {
                return Err(Error::dtype(
                    op,
                    format!("{op} on cpu takes f32 or f64, got {}", t.dtype()),
                ))
            }
        }
    };
    Tensor::from_cpu_buffer(out, out_dims.to_vec())
}

// The run loops below are each written once (`*_body`, always inlined) and compiled three
// times: for the crate's baseline x86-64 target (SSE2: 4 f32 / 2 f64 lanes) and, in twins
// (`#[target_feature]`, the small closure inlined into them), for AVX2's 256-bit and
// AVX-512's 512-bit vectors; [`lanes`] picks one. The twins run the same IEEE operations in
// the same order (Rust never contracts `a·b + c` into an FMA), so all three give bitwise
// the same results.

/// The vector registers the run loops of the cpu ops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lanes {
    /// 512-bit (AVX-512F).
    Avx512,
    /// 256-bit (AVX2; Zen parts and VMs that hide AVX-512).
    Avx2,
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
}

/// The widest [`Lanes`] this CPU runs, after `DUEL_CPU_ISA` (detected once): the one
/// choice of every twin below and of the elementwise rows.
#[inline(always)]
pub(crate) fn lanes() -> Lanes {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::device::cpu::isa::isa();
        if isa.avx512f {
            return Lanes::Avx512;
        }
        if isa.avx2 {
            return Lanes::Avx2;
        }
    }
    Lanes::Baseline
}

/// Σ f(v) over `s` in f64, in 8 interleaved lanes (lane j adds elements j, j + 8, …), the
/// lanes added in a fixed tree, then the tail in order: one fixed order, so the same sum
/// for any thread count, with 8 independent chains of adds. A plain fold is one chain,
/// bound by the latency of each add instead of the adders' throughput.
#[inline]
pub(crate) fn lane_sum<T: Copy>(s: &[T], f: impl Fn(T) -> f64) -> f64 {
    match lanes() {
        // SAFETY: the twins' features were detected.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx512 => unsafe { lane_sum_avx512(s, f) },
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => unsafe { lane_sum_avx2(s, f) },
        _ => lane_sum_body(s, f),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sum_avx2<T: Copy>(s: &[T], f: impl Fn(T) -> f64) -> f64 {
    lane_sum_body(s, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sum_avx512<T: Copy>(s: &[T], f: impl Fn(T) -> f64) -> f64 {
    lane_sum_body(s, f)
}

#[inline(always)]
fn lane_sum_body<T: Copy>(s: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            lanes[j] += f(c[j]);
        }
    }
    let mut total = tree(lanes);
    for &v in rest {
        total += f(v);
    }
    total
}

/// Values per chunk of [`pooled_lane_sum`].
const POOLED_CHUNK: usize = 1 << 16;

/// Σ f(v) over `s` in f64 on the rayon pool: `s` cut into fixed chunks of
/// [`POOLED_CHUNK`] values, each summed by [`lane_sum`], the chunks' sums added in order.
/// The chunks depend on the length alone, so the sum is the same for any thread count (a
/// serial `lane_sum` of the gradients, the norm of the metrics, was 1.5% of a dcgan28 step
/// with the other thread idle).
pub(crate) fn pooled_lane_sum<T: Copy + Sync>(s: &[T], f: impl Fn(T) -> f64 + Sync) -> f64 {
    use rayon::prelude::*;
    let sums: Vec<f64> = s
        .par_chunks(POOLED_CHUNK)
        .map(|chunk| lane_sum(chunk, &f))
        .collect();
    sums.into_iter().fold(0.0, |total, part| total + part)
}

/// The lanes of [`lane_sum`] added: ((0 + 4) + (1 + 5)) + ((2 + 6) + (3 + 7)).
#[inline(always)]
fn tree(l: [f64; 8]) -> f64 {
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// The two sums `(Σ f(a_i, b_i).0, Σ f(a_i, b_i).1)` over equal-length `a` and `b`, each
/// in the order of [`lane_sum`].
#[inline]
pub(crate) fn lane_sum2<T: Copy>(a: &[T], b: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "lane_sum2 takes equal lengths");
    match lanes() {
        // SAFETY: the twins' features were detected.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx512 => unsafe { lane_sum2_avx512(a, b, f) },
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => unsafe { lane_sum2_avx2(a, b, f) },
        _ => lane_sum2_body(a, b, f),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sum2_avx2<T: Copy>(a: &[T], b: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    lane_sum2_body(a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sum2_avx512<T: Copy>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> (f64, f64),
) -> (f64, f64) {
    lane_sum2_body(a, b, f)
}

#[inline(always)]
fn lane_sum2_body<T: Copy>(a: &[T], b: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    let (mut l0, mut l1) = ([0f64; 8], [0f64; 8]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            let (u, v) = f(x[j], y[j]);
            l0[j] += u;
            l1[j] += v;
        }
    }
    let (mut s0, mut s1) = (tree(l0), tree(l1));
    for (&x, &y) in ra.iter().zip(rb) {
        let (u, v) = f(x, y);
        s0 += u;
        s1 += v;
    }
    (s0, s1)
}

/// A vector of `n` values written by `fill`, not zero-filled first: the outputs an op
/// writes whole (elementwise maps, batch norm) were memset for nothing (~2% of a step).
///
/// # Safety
/// `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written_vec<T>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's `fill` wrote elements 0..n (a panic in it leaves v empty).
    v.set_len(n);
    v
}

/// `s` with every element set to `v`, as the initialised slice it then is.
pub(crate) fn filled<T: Copy>(s: &mut [MaybeUninit<T>], v: T) -> &mut [T] {
    s.fill(MaybeUninit::new(v));
    // SAFETY: every element was just written, and `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(s as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `out[i] = f(a[i], b[i])` over equal-length runs (`b` may be another type: parameters
/// per element); `out` is written, never read.
#[inline]
pub(crate) fn map_run<T: Copy, U: Copy>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[U],
    f: impl Fn(T, U) -> T,
) {
    assert!(
        a.len() == out.len() && b.len() == out.len(),
        "map_run takes equal lengths"
    );
    match lanes() {
        // SAFETY: the twins' features were detected.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx512 => unsafe { map_run_avx512(out, a, b, f) },
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => unsafe { map_run_avx2(out, a, b, f) },
        _ => map_run_body(out, a, b, f),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_run_avx2<T: Copy, U: Copy>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[U],
    f: impl Fn(T, U) -> T,
) {
    map_run_body(out, a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_run_avx512<T: Copy, U: Copy>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[U],
    f: impl Fn(T, U) -> T,
) {
    map_run_body(out, a, b, f)
}

#[inline(always)]
fn map_run_body<T: Copy, U: Copy>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[U],
    f: impl Fn(T, U) -> T,
) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}

/// A thread's pair of workspaces that grow to the largest size seen and are reused.
pub(crate) type PairCell<T> = std::cell::RefCell<(Vec<T>, Vec<T>)>;

/// Run `f` on this thread's pair in `cell`, or on a fresh pair when `f` is re-entered
/// while the thread's pair is in use (a nested call: rayon may run another task on this
/// thread while one waits).
pub(crate) fn with_pair<T, R>(
    cell: &'static std::thread::LocalKey<PairCell<T>>,
    f: impl FnOnce(&mut Vec<T>, &mut Vec<T>) -> R,
) -> R {
    let mut f = Some(f);
    let done = cell.with(|c| match c.try_borrow_mut() {
        Ok(mut ws) => {
            let (a, b) = &mut *ws;
            Some((f.take().expect("called once"))(a, b))
        }
        Err(_) => None,
    });
    done.unwrap_or_else(|| (f.take().expect("called once"))(&mut Vec::new(), &mut Vec::new()))
}

/// A raw pointer tasks share, each writing its own disjoint part (raw pointers are not
/// `Send`).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane order written out: lane j sums elements j, j + 8, … in order, the lanes
    /// meet in the tree ((0+4)+(1+5))+((2+6)+(3+7)), then the tail is added in order. Values
    /// of mixed magnitude make another order round differently (checked: a plain fold
    /// differs on these inputs).
    #[test]
    fn lane_sums_follow_their_stated_order() {
        let xs: Vec<f64> = (0..203)
            .map(|i| ((i * 7919 % 1013) as f64 - 500.0) * 10f64.powi(i % 9 - 4))
            .collect();
        let want = |s: &[f64]| {
            let body = s.len() / 8 * 8;
            let lane = |j: usize| (j..body).step_by(8).fold(0.0, |a, i| a + s[i]);
            let mut t = ((lane(0) + lane(4)) + (lane(1) + lane(5)))
                + ((lane(2) + lane(6)) + (lane(3) + lane(7)));
            for &v in &s[body..] {
                t += v;
            }
            t
        };
        for n in [0, 1, 7, 8, 9, 64, 203] {
            let s = &xs[..n];
            assert_eq!(lane_sum(s, |v| v).to_bits(), want(s).to_bits(), "n = {n}");
            let sq: Vec<f64> = s.iter().map(|v| v * 3.0).collect();
            let (a, b) = lane_sum2(s, s, |u, v| (u, v * 3.0));
            assert_eq!(
                (a.to_bits(), b.to_bits()),
                (want(s).to_bits(), want(&sq).to_bits())
            );
        }
        let plain = xs.iter().fold(0.0, |a, v| a + v);
        assert_ne!(
            plain.to_bits(),
            lane_sum(&xs, |v| v).to_bits(),
            "inputs too tame to tell orders apart"
        );
    }

    /// The pooled sum is the chunks' `lane_sum`s (whose order the test above pins) added
    /// in chunk order, whatever the pool: 1 and 3 threads give the same bits, and the
    /// chunked order is not the whole run's (so the test tells them apart).
    #[test]
    fn pooled_sums_add_fixed_chunks_in_order_on_any_pool() {
        let n = 3 * POOLED_CHUNK + 1234;
        let xs: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 % 1013) as f64 - 500.0) * 10f64.powi((i % 9) as i32 - 4))
            .collect();
        let want = xs
            .chunks(POOLED_CHUNK)
            .map(|c| lane_sum(c, |v| v))
            .fold(0.0, |t, p| t + p);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let got = pool.install(|| pooled_lane_sum(&xs, |v| v));
            assert_eq!(got.to_bits(), want.to_bits(), "{threads} threads");
        }
        assert_ne!(
            want.to_bits(),
            lane_sum(&xs, |v| v).to_bits(),
            "orders alike"
        );
    }
}
