//! The one cpu GEMM that matmul and conv call, in the precision of `ops::precision`:
//! `dst (m x n, row-major) (+)= lhs · rhs`, operands by pointer and (row, col) strides.
//!
//! - f64: the `gemm` crate (runtime-dispatched AVX-512 / AVX2 / scalar microkernels).
//! - f32 at `Precision::F32`: duel's own engine ([`sgemm`]) for `k ≥ sgemm::MIN_K` on
//!   CPUs with AVX2 and FMA but no AVX-512 — there it beats the crate on the big conv
//!   layers at 2 threads (dcgan28 D.conv2 input / weight gradient ~25% faster, see
//!   `ops::sgemm`) — and the `gemm` crate elsewhere; the choice is the hardware's and the
//!   shape's, never `DUEL_CPU_ISA`'s or the thread count's.
//! - f32 at `Precision::Bf16` on a CPU with bf16 units, for shapes that fill their blocks
//!   of 32 (at most 50% padding): [`gemm_bf16`](crate::ops::gemm_bf16)
//!   (AMX-BF16 or AVX512-BF16, detected at run time; col2im's transposed weight packed
//!   once per conv call, [`Prepacked`]), its rows (or, when there are fewer
//!   rows than columns, its columns) split over the rayon pool when the caller asks for
//!   parallelism — bitwise the same for any split, because every
//!   element's sum is formed in an order fixed by (m, n, k) alone.
//! - f32 at `Precision::F16`, and at `Precision::Bf16` without bf16 units or for thin
//!   shapes: the operands
//!   are rounded (to nearest even; f16 beyond ±65504 becomes ±inf, as on a tensor core)
//!   into this thread's workspaces, then the f32 GEMM runs on them. A product of two f16
//!   (11 + 11 bits) or bf16 (8 + 8) values is exact in f32, so this is reduced-precision
//!   operands with f32 accumulation exactly, at the f32 GEMM's speed — the clean fallback
//!   (`gemm_bf16`'s portable loops are ~20x slower). It keeps bf16 subnormals, which the
//!   bf16 units flush to zero (irrelevant unless data live near 1e-38).

use crate::ops::cpu_shared::{with_pair, PairCell, SendPtr};
use crate::ops::gemm_bf16::{gemm_bf16_ptr, Bf16Path, Lhs, PackedLhs};
use crate::ops::precision::Precision;
use crate::ops::sgemm;
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

/// The row stride of a GEMM operand stored as runs of `len` values: padded to an odd
/// number of 64-byte lines, so that the GEMM's reads down consecutive runs (a transposed
/// operand, as the weight gradient's `colᵀ`) do not all fall in one cache set, as they do
/// when a run is a multiple of 4 KiB (`B·L = 1024` on dcgan64's 16x16 layers). Used for
/// conv's column blocks and the rounded copies below.
pub(crate) fn padded_stride(len: usize) -> usize {
    let lines = len.div_ceil(16);
    (lines | 1) * 16
}

/// The element types of the cpu GEMM.
pub(crate) trait GemmElem: Copy + Default + Send + Sync + 'static {
    const ONE: Self;

    /// `p` as an f32 pointer when `Self` is f32 (the packed route is f32's alone).
    fn f32_ptr(_p: *const Self) -> Option<*const f32> {
        None
    }

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
        dst: (&mut [Self], usize),
        accumulate: bool,
        lhs: (*const Self, usize, usize),
        rhs: (*const Self, usize, usize),
        par: Parallelism,
    );
}

/// `dst (m x n, row stride ldd ≥ n) (+)= lhs · rhs` in `precision`; `par` lets one
/// product use the rayon pool. `k = 0` gives zeros (or leaves `dst` when accumulating).
/// A padded `ldd` keeps the rows of a product whose width is a multiple of 4 KiB out of
/// one cache set (see [`padded_stride`]).
///
/// # Safety
/// `lhs` must be readable at every `i·rs + p·cs` (i < m, p < k), `rhs` at every
/// `p·rs + j·cs` (p < k, j < n), and `dst` must hold `(m − 1)·ldd + n` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: GemmElem>(
    precision: Precision,
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [T], usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    check_dst(m, n, ldd, dst.len());
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(ldd)
                .take(m)
                .for_each(|row| row[..n].fill(T::default()));
        }
        return;
    }
    T::gemm_at(precision, m, n, k, (dst, ldd), accumulate, lhs, rhs, par)
}

/// The left operand of several products packed once (a conv weight against every block
/// of images), where [`gemm`] would pack it itself: for duel's f32 engine (f32 at
/// `Precision::F32`, a depth the engine takes) or for the bf16 units (`Precision::Bf16`
/// on a CPU with them, a transposed operand whose rows and depth fill their blocks).
pub(crate) enum Prepacked {
    F32(sgemm::PackedA),
    Bf16(PackedLhs),
}

/// The packed left operand where one serves (see [`Prepacked`]); `None` elsewhere, where
/// the plain operand serves ([`gemm_packed`] takes either).
///
/// # Safety
/// `lhs` readable at every `i·rs + p·cs` (i < m, p < k).
pub(crate) unsafe fn prepack<T: GemmElem>(
    precision: Precision,
    m: usize,
    k: usize,
    lhs: (*const T, usize, usize),
) -> Option<Prepacked> {
    let ptr = T::f32_ptr(lhs.0)?;
    match precision {
        Precision::F32 => {
            let loops = sgemm::engine_for(k)?;
            Some(Prepacked::F32(sgemm::PackedA::new(
                loops,
                (ptr, lhs.1, lhs.2),
                m,
                k,
            )))
        }
        // n = 32 pads nothing: whether a product pays is checked again with its n. Only a
        // transposed operand (col2im's `Wᵀ`): its packing is a 16x16 transpose per chunk,
        // which packing once saves (dcgan28 G.convt1 forward 2.95 → 2.72 ms, D.conv2 input
        // gradient 2.89 → 2.77); a row-major weight packs in streaming copies, and packed
        // once per call measured no faster (D.conv2 forward 2.78 → 2.84).
        Precision::Bf16 if lhs.1 == 1 && lhs.2 != 1 && bf16_units_pay(m, 32, k) => {
            Some(Prepacked::Bf16(PackedLhs::new(m, k, (ptr, lhs.1, lhs.2))))
        }
        _ => None,
    }
}

/// [`gemm`], reading rows `i0 .. i0 + m` of the left operand from `packed` (made by
/// [`prepack`] from the matrix whose rows from `i0` on `lhs` points at) where it has
/// them; the bits are those of [`gemm`] on `lhs` either way.
///
/// # Safety
/// As [`gemm`]; `packed`, when given, made from the matrix `lhs` is a part of.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed<T: GemmElem>(
    packed: Option<(&Prepacked, usize)>,
    precision: Precision,
    (m, n, k): (usize, usize, usize),
    (dst, ldd): (&mut [T], usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    let f32s = T::f32_ptr(dst.as_ptr()).zip(T::f32_ptr(rhs.0));
    match (packed, f32s) {
        (Some((Prepacked::F32(p), i0)), Some((c, b))) if precision == Precision::F32 => {
            if let Some(rows) = p.rows(i0, m).filter(|_| p.k() == k && m > 0 && n > 0) {
                check_dst(m, n, ldd, dst.len());
                let c = (c.cast_mut(), ldd);
                return sgemm::sgemm_packed(
                    rows,
                    n,
                    c,
                    accumulate,
                    (b, rhs.1, rhs.2),
                    threads_of(par),
                );
            }
        }
        (Some((Prepacked::Bf16(p), i0)), Some((c, b)))
            if precision == Precision::Bf16 && p.covers(i0, m, k) && bf16_units_pay(m, n, k) =>
        {
            if m == 0 || n == 0 {
                return;
            }
            check_dst(m, n, ldd, dst.len());
            let dst = std::slice::from_raw_parts_mut(c.cast_mut(), dst.len());
            let rhs = (b, rhs.1, rhs.2);
            return bf16_rows(
                m,
                n,
                k,
                (dst, ldd),
                accumulate,
                Lhs::Packed(p, i0),
                rhs,
                par,
            );
        }
        _ => {}
    }
    gemm(precision, m, n, k, (dst, ldd), accumulate, lhs, rhs, par)
}

/// Multiply-adds (m·n·k) from which one product is worth splitting across threads.
pub(crate) const PARALLEL_MACS: usize = 1 << 18;

/// How a product of `macs` multiply-adds runs when nothing else splits the work: over the
/// pool from [`PARALLEL_MACS`] on (and with more than one thread), else on this thread.
pub(crate) fn parallelism_for(macs: usize) -> Parallelism {
    match macs >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
        true => Parallelism::Rayon(0),
        false => Parallelism::None,
    }
}

/// Panics unless `dst` holds an `m x n` product at row stride `ldd` (`m, n > 0`).
fn check_dst(m: usize, n: usize, ldd: usize, len: usize) {
    assert!(
        ldd >= n && len >= (m - 1) * ldd + n,
        "cpu_gemm: dst too short"
    );
}

/// The threads a product may use: one, the whole pool (`Rayon(0)`), or the count given.
pub(crate) fn threads_of(par: Parallelism) -> usize {
    match par {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(t) => t,
    }
}

/// The f32 GEMM: duel's own engine where this CPU runs it ([`sgemm::engine`]), else the
/// `gemm` crate.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [f32], usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    par: Parallelism,
) {
    match sgemm::engine_for(k) {
        Some(loops) => {
            let c = (dst.as_mut_ptr(), ldd);
            let threads = threads_of(par);
            sgemm::sgemm(loops, (m, n, k), c, accumulate, lhs, rhs, threads)
        }
        None => gemm_crate(m, n, k, (dst, ldd), accumulate, lhs, rhs, par),
    }
}

/// The `gemm` crate on strided operands (f32 or f64 arithmetic).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_crate<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [T], usize),
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
        ldd as isize,
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
        (dst, ldd): (&mut [f64], usize),
        accumulate: bool,
        lhs: (*const f64, usize, usize),
        rhs: (*const f64, usize, usize),
        par: Parallelism,
    ) {
        gemm_crate(m, n, k, (dst, ldd), accumulate, lhs, rhs, par)
    }
}

impl GemmElem for f32 {
    const ONE: f32 = 1.0;
    fn f32_ptr(p: *const f32) -> Option<*const f32> {
        Some(p)
    }
    unsafe fn gemm_at(
        precision: Precision,
        m: usize,
        n: usize,
        k: usize,
        (dst, ldd): (&mut [f32], usize),
        accumulate: bool,
        lhs: (*const f32, usize, usize),
        rhs: (*const f32, usize, usize),
        par: Parallelism,
    ) {
        match precision {
            Precision::F32 => gemm_f32(m, n, k, (dst, ldd), accumulate, lhs, rhs, par),
            Precision::Bf16 if bf16_units_pay(m, n, k) => {
                bf16_rows(m, n, k, (dst, ldd), accumulate, Lhs::Matrix(lhs), rhs, par)
            }
            p => with_pair(&ROUNDED_OPERANDS, |a, b| {
                rounded(p, m, n, k, (dst, ldd), accumulate, lhs, rhs, par, a, b)
            }),
        }
    }
}

/// Whether the bf16 units are worth it for this shape: the CPU has them, and padding m, n
/// and k to the units' blocks of 32 adds at most 50% work — the units run ~2x the f32
/// FMA rate (`vdpbf16ps`, 16 chains: ~540 GFLOP/s on one Zen 5 thread against ~270 for
/// f32 FMA), so such a shape still wins, and it skips the rounded copies of the f32
/// route (dcgan28's Linear layer, k = 100 → 128, is one). Thin products (a 1-channel
/// layer's k = 16, a Linear layer to one output, n = 1: 32× the work) take the rounded f32
/// route instead — the same arithmetic, a different summation order (the choice depends on
/// the shape only, never on the thread count).
fn bf16_units_pay(m: usize, n: usize, k: usize) -> bool {
    let padded = |x: usize| x.next_multiple_of(32) as f64 / x as f64;
    Bf16Path::detected() != Bf16Path::Portable && padded(m) * padded(n) * padded(k) <= 1.5
}

/// Whether [`gemm`] runs an f32 product of this shape in `precision` as the f32 GEMM on
/// operands rounded to it (always but for bf16 on the bf16 units): then a caller that
/// packs its own operands (conv's `patches` and `windows`) may round them itself with
/// [`round_in_place`], the same values, and run duel's engine.
pub(crate) fn f32_route(precision: Precision, (m, n, k): (usize, usize, usize)) -> bool {
    precision != Precision::Bf16 || !bf16_units_pay(m, n, k)
}

/// `v` rounded in place as [`gemm`]'s f32 route rounds its operands (nothing at f32).
pub(crate) fn round_in_place(precision: Precision, v: &mut [f32]) {
    if precision == Precision::F32 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::device::cpu::isa::isa();
        if isa.avx512f || isa.avx2 {
            const CHUNK: usize = 256;
            let mut from = [0f32; CHUNK];
            for run in v.chunks_mut(CHUNK) {
                let from = &mut from[..run.len()];
                from.copy_from_slice(run);
                // SAFETY: the features were detected.
                unsafe {
                    match isa.avx512f {
                        true => round_run_avx512(precision, from, run),
                        false => round_run_avx2(precision, from, run),
                    }
                }
            }
            return;
        }
    }
    v.iter_mut().for_each(|x| *x = precision.round(*x));
}

/// The bf16 GEMM split over the pool when `par` allows: into ranges of rows (multiples of
/// 32), or of columns when there are fewer rows than columns — each part packs only its
/// own share of the larger operand, and the split does not change a bit (see the module
/// doc).
#[allow(clippy::too_many_arguments)]
unsafe fn bf16_rows(
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [f32], usize),
    accumulate: bool,
    lhs: Lhs,
    rhs: (*const f32, usize, usize),
    par: Parallelism,
) {
    let threads = threads_of(par);
    let by_columns = n > m;
    let (along, _) = if by_columns { (n, m) } else { (m, n) };
    if threads <= 1 || along <= 32 {
        return gemm_bf16_ptr(m, n, k, (dst.as_mut_ptr(), ldd), accumulate, lhs, rhs);
    }
    let span = along.div_ceil(threads).next_multiple_of(32);
    let parts = along.div_ceil(span);
    let (a, b, c) = (
        SharedLhs(lhs),
        SendPtr(rhs.0.cast_mut()),
        SendPtr(dst.as_mut_ptr()),
    );
    (0..parts).into_par_iter().for_each(|t| {
        let (from, count) = (t * span, span.min(along - t * span));
        // SAFETY: part t writes only rows (or columns) from..from+count of dst, which no
        // other part touches, and reads operand rows/columns inside the caller's bounds;
        // `dst` holds (m − 1)·ldd + n elements (checked by `gemm`).
        unsafe {
            let (c, b) = (c.get(), b.get().cast_const());
            if by_columns {
                let rhs = (b.wrapping_add(from * rhs.2), rhs.1, rhs.2);
                gemm_bf16_ptr(m, count, k, (c.add(from), ldd), accumulate, a.get(), rhs)
            } else {
                let lhs = a.get().skip_rows(from);
                let rhs = (b, rhs.1, rhs.2);
                gemm_bf16_ptr(count, n, k, (c.add(from * ldd), ldd), accumulate, lhs, rhs)
            }
        }
    });
}

/// A left operand shared by the parts of a split product (only read; its pointer is not
/// `Send`).
#[derive(Clone, Copy)]
struct SharedLhs<'a>(Lhs<'a>);
unsafe impl Send for SharedLhs<'_> {}
unsafe impl Sync for SharedLhs<'_> {}

impl<'a> SharedLhs<'a> {
    fn get(self) -> Lhs<'a> {
        self.0
    }
}

thread_local! {
    /// This thread's rounded copies of the two operands.
    static ROUNDED_OPERANDS: PairCell<f32> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `rows x cols` of a strided matrix, rounded to `p`, into `to`; returns the copy's
/// (row, col) strides: row-major, or column-major when the source's columns are the
/// contiguous runs (a transposed view), so the copy always reads runs. Runs convert 16 at
/// a time with AVX-512F, 8 with AVX2 and F16C (the same values as [`Precision::round`]).
unsafe fn round_into(
    p: Precision,
    src: (*const f32, usize, usize),
    rows: usize,
    cols: usize,
    to: &mut Vec<f32>,
) -> (usize, usize) {
    // Runs of `len` values at stride `step`, `count` of them `gap` apart.
    let column_major = src.1 == 1 && src.2 != 1;
    let (count, len, gap, step) = match column_major {
        true => (cols, rows, src.2, 1),
        false => (rows, cols, src.1, src.2),
    };
    let lead = padded_stride(len.max(1));
    // Every run is written before the GEMM reads it; the padding is never read, so the
    // workspace only grows (no zero-fill per call).
    if to.len() < count * lead {
        to.resize(count * lead, 0.0);
    }
    for (r, run) in to.chunks_exact_mut(lead).enumerate().take(count) {
        let run = &mut run[..len];
        let from = src.0.add(r * gap);
        #[cfg(target_arch = "x86_64")]
        if step == 1 {
            let (isa, from) = (
                crate::device::cpu::isa::isa(),
                std::slice::from_raw_parts(from, len),
            );
            if isa.avx512f {
                round_run_avx512(p, from, run);
                continue;
            }
            if isa.avx2 {
                round_run_avx2(p, from, run);
                continue;
            }
        }
        for (j, d) in run.iter_mut().enumerate() {
            *d = p.round(*from.add(j * step));
        }
    }
    match column_major {
        true => (1, lead),
        false => (lead, 1),
    }
}

/// f16: `vcvtps2ph` / `vcvtph2ps` with round to nearest even. bf16: the nearest-even
/// rounding of the upper 16 bits, `(x + 0x7fff + bit16) & 0xffff0000`, with NaN kept
/// NaN by setting its quiet bit (the add could carry a NaN's payload into infinity).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn round_run_avx512(p: Precision, from: &[f32], to: &mut [f32]) {
    use std::arch::x86_64::*;
    const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let n = from.len();
    let mut j = 0;
    while j < n {
        let mask: __mmask16 = if n - j >= 16 {
            !0
        } else {
            (1u16 << (n - j)) - 1
        };
        let v = _mm512_maskz_loadu_ps(mask, from.as_ptr().add(j));
        let r = match p {
            Precision::F16 => _mm512_cvtph_ps(_mm512_cvtps_ph::<RNE>(v)),
            Precision::Bf16 => {
                let bits = _mm512_castps_si512(v);
                let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
                let up = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
                let kept = _mm512_and_si512(up, _mm512_set1_epi32(0xffff_0000u32 as i32));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let quiet = _mm512_or_si512(bits, _mm512_set1_epi32(0x0040_0000));
                let quiet = _mm512_and_si512(quiet, _mm512_set1_epi32(0xffff_0000u32 as i32));
                _mm512_castsi512_ps(_mm512_mask_mov_epi32(kept, nan, quiet))
            }
            Precision::F32 => v,
        };
        _mm512_mask_storeu_ps(to.as_mut_ptr().add(j), mask, r);
        j += 16;
    }
}

/// [`round_run_avx512`] in 8 lanes: `vcvtps2ph` / `vcvtph2ps` (F16C) for f16, the same
/// integer rounding for bf16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_run_avx2(p: Precision, from: &[f32], to: &mut [f32]) {
    use std::arch::x86_64::*;
    // `vcvtps2ph`'s 3-bit rounding field: 0 is to nearest even.
    const RNE: i32 = _MM_FROUND_TO_NEAREST_INT;
    assert_eq!(from.len(), to.len(), "round_run_avx2 takes equal lengths");
    let (mut src, mut dst) = (from.chunks_exact(8), to.chunks_exact_mut(8));
    let round = |v: __m256| match p {
        Precision::F16 => _mm256_cvtph_ps(_mm256_cvtps_ph::<RNE>(v)),
        Precision::Bf16 => {
            let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
            let bits = _mm256_castps_si256(v);
            let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
            let up = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd);
            let quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x0040_0000));
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            _mm256_castsi256_ps(_mm256_and_si256(_mm256_blendv_epi8(up, quiet, nan), high))
        }
        Precision::F32 => v,
    };
    for (s, d) in (&mut src).zip(&mut dst) {
        _mm256_storeu_ps(d.as_mut_ptr(), round(_mm256_loadu_ps(s.as_ptr())));
    }
    // The last few through a zero-padded lane set (a masked store is slow on some CPUs).
    let (s, d) = (src.remainder(), dst.into_remainder());
    if !s.is_empty() {
        let mut lanes = [0f32; 8];
        lanes[..s.len()].copy_from_slice(s);
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), round(_mm256_loadu_ps(lanes.as_ptr())));
        d.copy_from_slice(&out[..s.len()]);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn rounded(
    p: Precision,
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [f32], usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    par: Parallelism,
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    let (ars, acs) = round_into(p, lhs, m, k, a);
    let (brs, bcs) = round_into(p, rhs, k, n, b);
    gemm_f32(
        m,
        n,
        k,
        (dst, ldd),
        accumulate,
        (a.as_ptr(), ars, acs),
        (b.as_ptr(), brs, bcs),
        par,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector rounding gives `Precision::round`'s values, NaN for NaN, on every class
    /// of input: ties both ways, the largest values, infinities, subnormals, NaNs.
    #[test]
    fn vector_rounding_matches_the_scalar_rule() {
        let isa = crate::device::cpu::isa::isa();
        assert!(
            isa.avx2 || isa.avx512f,
            "this test checks the vector rounding and needs a CPU with AVX2 (F16C) or AVX-512F"
        );
        let mut v: Vec<f32> = vec![
            1.0 + 2f32.powi(-8),       // bf16 tie, rounds to even (down)
            1.0 + 3.0 * 2f32.powi(-8), // bf16 tie, rounds up
            1.0 + 2f32.powi(-11),      // f16 tie
            65504.0,
            65520.0, // f16 rounds to inf
            f32::MAX,
            -f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -1e-45,
            6e-8,
            0.0,
            -0.0,
            f32::NAN,
            f32::from_bits(0x7f80_0001), // signalling NaN whose payload is in the low bits
            f32::from_bits(0xffff_ffff),
        ];
        let mut s = 0x2545_f491u32;
        for _ in 0..500 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push(f32::from_bits(s));
        }
        type Run = unsafe fn(Precision, &[f32], &mut [f32]);
        let mut runs: Vec<(&str, Run)> = Vec::new();
        if isa.avx512f {
            runs.push(("avx512", round_run_avx512));
        }
        if isa.avx2 {
            runs.push(("avx2", round_run_avx2));
        }
        for (name, run) in runs {
            for p in [Precision::Bf16, Precision::F16] {
                // Every tail length: the vector loops' last partial step.
                for len in [v.len(), v.len() - 1, 7, 3, 1, 0] {
                    let mut out = vec![0.0; len];
                    // SAFETY: the instruction set checked above.
                    unsafe { run(p, &v[..len], &mut out) };
                    for (x, r) in v.iter().zip(&out) {
                        let want = p.round(*x);
                        assert!(
                            (want.is_nan() && r.is_nan()) || want.to_bits() == r.to_bits(),
                            "{name} {p}: {x:e} ({:#x}) -> {r:e}, want {want:e}",
                            x.to_bits()
                        );
                    }
                }
            }
        }
    }

    /// A transposed weight packed once for the bf16 units (col2im's `Wᵀ`): every product
    /// from it — rows from strips at odd and even offsets (channel tiles of 16 rows), two
    /// blocks of k (k > KC), split over rows or columns of 2 threads, accumulating — has the
    /// bits of the product on the plain operand, and both lie within the summation bound of
    /// `gemm_bf16` (`γ_k·Σ|ρ(a)ρ(b)|` against an f64 sum of the rounded operands).
    #[test]
    fn a_prepacked_transposed_weight_gives_the_plain_products_bits() {
        use crate::ops::gemm_bf16::pack::{bf16_to_f32, round_bf16};
        let (r, o) = (80, 600); // Wᵀ: m = r rows, k = o (three blocks of KC = 256)
        let w: Vec<f32> = (0..o * r)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let lhs = (w.as_ptr(), 1, r);
        // SAFETY: Wᵀ [r, o] of w [o, r] is in bounds.
        let packed = unsafe { prepack(Precision::Bf16, r, o, lhs) };
        let Some(packed) = packed else {
            assert_eq!(
                Bf16Path::detected(),
                Bf16Path::Portable,
                "prepack declined a transposed weight on a CPU with bf16 units"
            );
            return; // no bf16 units: gemm_packed is gemm (this CPU tests nothing more)
        };
        assert!(matches!(packed, Prepacked::Bf16(_)));
        let rho = |x: f32| bf16_to_f32(round_bf16(x)) as f64;
        for n in [70, 20] {
            let b: Vec<f32> = (0..o * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0)
                .collect();
            for (i0, m) in [(0, 80), (16, 32), (48, 32), (16, 16), (64, 16)] {
                for accumulate in [false, true] {
                    let start: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 - 3.0).collect();
                    let sub = (w.as_ptr().wrapping_add(i0), 1, r);
                    let rhs = (b.as_ptr(), n, 1);
                    let mut plain = start.clone();
                    // SAFETY: rows i0 .. i0 + m of Wᵀ, b [o, n], dst m x n: all in bounds.
                    unsafe {
                        gemm(
                            Precision::Bf16,
                            m,
                            n,
                            o,
                            (&mut plain, n),
                            accumulate,
                            sub,
                            rhs,
                            Parallelism::None,
                        )
                    };
                    for par in [Parallelism::None, Parallelism::Rayon(2)] {
                        let mut got = start.clone();
                        // SAFETY: as above (2 parts: rows or columns split in multiples of 32).
                        unsafe {
                            let dst = (&mut got[..], n);
                            let p = Some((&packed, i0));
                            gemm_packed(
                                p,
                                Precision::Bf16,
                                (m, n, o),
                                dst,
                                accumulate,
                                sub,
                                rhs,
                                par,
                            )
                        }
                        let what = format!(
                            "n {n} rows {i0}..{} accumulate {accumulate} {par:?}",
                            i0 + m
                        );
                        assert!(
                            got.iter()
                                .zip(&plain)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{what}: the packed weight's product differs from the plain one"
                        );
                    }
                    let gamma = o as f64 * 2f64.powi(-24) / (1.0 - o as f64 * 2f64.powi(-24));
                    for (e, got) in plain.iter().enumerate() {
                        let (i, j) = (e / n, e % n);
                        let terms = (0..o).map(|p| rho(w[p * r + i0 + i]) * rho(b[p * n + j]));
                        let c0 = if accumulate { start[e] as f64 } else { 0.0 };
                        let (sum, abs) =
                            terms.fold((c0, c0.abs()), |(s, a), t| (s + t, a + t.abs()));
                        assert!(
                            (*got as f64 - sum).abs() <= gamma * abs + o as f64 * 2f64.powi(-126),
                            "n {n} rows {i0}.. ({i}, {j}): {got} against {sum}"
                        );
                    }
                }
            }
        }
    }
}
