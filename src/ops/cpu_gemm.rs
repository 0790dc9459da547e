//! The one cpu GEMM that matmul and conv call, in the precision of `ops::precision`:
//! `dst (m x n, row-major) (+)= lhs · rhs`, operands by pointer and (row, col) strides.
//!
//! - f64, and f32 at `Precision::F32`: the `gemm` crate (runtime-dispatched AVX-512 /
//!   AVX2 / scalar microkernels).
//! - f32 at `Precision::Bf16`: [`gemm_bf16`](crate::ops::gemm_bf16) (AMX-BF16,
//!   AVX512-BF16 or portable, detected at run time), its rows split over the rayon pool
//!   when the caller asks for parallelism — bitwise the same for any split, because every
//!   element's sum is formed in an order fixed by (m, n, k) alone.
//! - f32 at `Precision::F16`: the operands are rounded to f16 (to nearest even; beyond
//!   ±65504 they become ±inf, as on a tensor core) into this thread's workspaces, then the
//!   f32 GEMM runs on them. A product of two f16 values is exact in f32 (11 + 11 bits),
//!   so this is f16 operands with f32 accumulation exactly; the cpu has no f16 matrix
//!   unit to do it faster.

use crate::ops::gemm_bf16::gemm_bf16;
use crate::ops::precision::Precision;
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

/// The element types of the cpu GEMM.
pub(crate) trait GemmElem: Copy + Default + Send + Sync + 'static {
    const ONE: Self;

    /// `dst (+)= lhs · rhs` in `precision` (see the module doc).
    ///
    /// # Safety
    /// As [`gemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_at(
        precision: Precision,
        m: usize,
        n: usize,
        k: usize,
        dst: &mut [Self],
        accumulate: bool,
        lhs: (*const Self, usize, usize),
        rhs: (*const Self, usize, usize),
        par: Parallelism,
    );
}

/// `dst (m x n, row stride n) (+)= lhs · rhs` in `precision`; `par` lets one product use
/// the rayon pool. `k = 0` gives zeros (or leaves `dst` when accumulating).
///
/// # Safety
/// `lhs` must be readable at every `i·rs + p·cs` (i < m, p < k), `rhs` at every
/// `p·rs + j·cs` (p < k, j < n), and `dst` must hold `m·n` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: GemmElem>(
    precision: Precision,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    debug_assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::default());
        }
        return;
    }
    T::gemm_at(precision, m, n, k, dst, accumulate, lhs, rhs, par)
}

/// The `gemm` crate on strided operands (f32 or f64 arithmetic).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_crate<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        par,
    )
}

impl GemmElem for f64 {
    const ONE: f64 = 1.0;
    unsafe fn gemm_at(
        _: Precision,
        m: usize,
        n: usize,
        k: usize,
        dst: &mut [f64],
        accumulate: bool,
        lhs: (*const f64, usize, usize),
        rhs: (*const f64, usize, usize),
        par: Parallelism,
    ) {
        gemm_crate(m, n, k, dst, accumulate, lhs, rhs, par)
    }
}

impl GemmElem for f32 {
    const ONE: f32 = 1.0;
    unsafe fn gemm_at(
        precision: Precision,
        m: usize,
        n: usize,
        k: usize,
        dst: &mut [f32],
        accumulate: bool,
        lhs: (*const f32, usize, usize),
        rhs: (*const f32, usize, usize),
        par: Parallelism,
    ) {
        match precision {
            Precision::F32 => gemm_crate(m, n, k, dst, accumulate, lhs, rhs, par),
            Precision::Bf16 => bf16_rows(m, n, k, dst, accumulate, lhs, rhs, par),
            Precision::F16 => F16_OPERANDS.with(|cell| match cell.try_borrow_mut() {
                Ok(mut ws) => {
                    let (a, b) = &mut *ws;
                    f16_rounded(m, n, k, dst, accumulate, lhs, rhs, par, a, b)
                }
                Err(_) => f16_rounded(
                    m,
                    n,
                    k,
                    dst,
                    accumulate,
                    lhs,
                    rhs,
                    par,
                    &mut Vec::new(),
                    &mut Vec::new(),
                ),
            }),
        }
    }
}

/// Raw pointers are not `Send`; the row ranges below are disjoint and the operands only
/// read.
#[derive(Clone, Copy)]
struct Shared(*const f32);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn get(self) -> *const f32 {
        self.0
    }
}

/// The bf16 GEMM, rows split into ranges of a multiple of 32 over the pool when `par`
/// allows (the split does not change a bit: see the module doc).
#[allow(clippy::too_many_arguments)]
unsafe fn bf16_rows(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    par: Parallelism,
) {
    let threads = match par {
        Parallelism::None => 1,
        _ => rayon::current_num_threads(),
    };
    if threads <= 1 || m <= 32 {
        return gemm_bf16(m, n, k, dst, accumulate, lhs, rhs);
    }
    let rows = m.div_ceil(threads).next_multiple_of(32);
    let (a, b) = (Shared(lhs.0), Shared(rhs.0));
    dst[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(t, part)| {
            let a = a.get().wrapping_add(t * rows * lhs.1);
            // SAFETY: rows t·rows .. t·rows + part/n of lhs are within the caller's bounds.
            unsafe {
                gemm_bf16(
                    part.len() / n,
                    n,
                    k,
                    part,
                    accumulate,
                    (a, lhs.1, lhs.2),
                    (b.get(), rhs.1, rhs.2),
                )
            }
        });
}

thread_local! {
    /// This thread's f16-rounded copies of the two operands.
    static F16_OPERANDS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `rows x cols` of a strided matrix, rounded to f16, into `to` (row-major).
unsafe fn round_f16_into(
    src: (*const f32, usize, usize),
    rows: usize,
    cols: usize,
    to: &mut Vec<f32>,
) {
    to.clear();
    to.reserve(rows * cols);
    for i in 0..rows {
        to.extend((0..cols).map(|j| {
            let x = *src.0.add(i * src.1 + j * src.2);
            Precision::F16.round(x)
        }));
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn f16_rounded(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    par: Parallelism,
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    round_f16_into(lhs, m, k, a);
    round_f16_into(rhs, k, n, b);
    gemm_crate(
        m,
        n,
        k,
        dst,
        accumulate,
        (a.as_ptr(), k, 1),
        (b.as_ptr(), n, 1),
        par,
    )
}
