//! Packing: copies of a block of `A` or `B` into the k-major micro-panels the tiles read
//! (`A`: `kc x MR` per panel, `B`: `kc x NR`), zero past the matrix's edge so an edge
//! tile runs the same loop (its extra rows and columns are never stored). Packing only
//! copies values, so which routine packs changes no result.
//!
//! The fast cases are the layouts conv and matmul pass: `A` with unit column stride (the
//! weights, row-major) or unit row stride (`Wᵀ`, copied six at a time), `B` with unit
//! column stride (im2col's columns: sixteen at a time) or unit row stride (`colᵀ` in the
//! weight gradient: 8 x 8 transposes with AVX2).

use super::{MR, NR};

/// A strided matrix: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(super) struct Strided {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

impl From<(*const f32, usize, usize)> for Strided {
    /// (pointer, row stride, column stride), as `cpu_gemm` passes operands.
    fn from((ptr, rs, cs): (*const f32, usize, usize)) -> Strided {
        Strided { ptr, rs, cs }
    }
}

unsafe impl Send for Strided {}
unsafe impl Sync for Strided {}

impl Strided {
    #[inline]
    pub unsafe fn at(self, i: usize, j: usize) -> *const f32 {
        self.ptr.add(i * self.rs + j * self.cs)
    }
}

/// Packs rows `i0..i0+mb` x columns `p0..p0+kc` of `a` into `ceil(mb/MR)` panels.
///
/// # Safety
/// `a` readable over that block; `to` holds `ceil(mb/MR)·MR·kc` values.
pub(super) unsafe fn pack_a(
    a: Strided,
    (i0, mb): (usize, usize),
    (p0, kc): (usize, usize),
    to: &mut [f32],
    avx2: bool,
) {
    let panels = mb.div_ceil(MR);
    if a.rs == 1 {
        // A transposed view (`Wᵀ`): each k is a contiguous run of the rows. Sixteen k at a
        // time, panel by panel: the sixteen runs are read forward (each line used by the
        // panels it holds while it is in L1) and each panel's 16·MR values are written in
        // one piece. (One k at a time over all panels writes a panel-size stride apart
        // into two L1 sets; one panel at a time reads runs a row stride apart.)
        const KB: usize = 16;
        for pb in (0..kc).step_by(KB) {
            for panel in 0..panels {
                let (r0, out) = (i0 + panel * MR, &mut to[panel * MR * kc..][..MR * kc]);
                let rows = MR.min(i0 + mb - r0);
                for p in pb..kc.min(pb + KB) {
                    let (dst, src) = (&mut out[p * MR..][..MR], a.at(r0, p0 + p));
                    if rows == MR {
                        dst.copy_from_slice(std::slice::from_raw_parts(src, MR));
                    } else {
                        for (r, d) in dst.iter_mut().enumerate() {
                            *d = if r < rows { *src.add(r) } else { 0.0 };
                        }
                    }
                }
            }
        }
        return;
    }
    for (panel, out) in to.chunks_exact_mut(MR * kc).take(panels).enumerate() {
        let r0 = i0 + panel * MR;
        let rows = MR.min(i0 + mb - r0);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if avx2 && a.cs == 1 && rows == MR {
            done = pack_rows_avx2(a.at(r0, p0), a.rs, kc, out);
        }
        pack_lanes(out, (MR, rows), (done, kc), a.cs, |r| a.at(r0 + r, p0));
    }
}

/// The general case of a panel `width` lanes wide from k = `from` on: lane l < `valid`
/// reads `first(l) + q·step` at each k q, the other lanes are zero.
///
/// # Safety
/// Those reads inside the matrix; `out` holds `kc·width` values.
unsafe fn pack_lanes(
    out: &mut [f32],
    (width, valid): (usize, usize),
    (from, kc): (usize, usize),
    step: usize,
    first: impl Fn(usize) -> *const f32,
) {
    for l in 0..width {
        if l < valid {
            let src = first(l);
            for q in from..kc {
                out[q * width + l] = *src.add(q * step);
            }
        } else {
            (from..kc).for_each(|q| out[q * width + l] = 0.0);
        }
    }
}

/// One full `A` panel from six row-major runs: eight k at a time, the 6 x 8 block (two
/// zero rows added) transposed and each k's six values stored as eight lanes whose last
/// two the next store overwrites (the panel's last k by 4 + 2). Returns the k packed (a
/// multiple of 8); the caller packs the rest.
///
/// # Safety
/// Row r (< 6) readable at `from + r·rs + p` (p < kc); `out` is the panel (`kc·MR`); AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_rows_avx2(from: *const f32, rs: usize, kc: usize, out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    debug_assert_eq!(out.len(), kc * MR);
    let mut p = 0;
    while p + 8 <= kc {
        let mut r = [_mm256_setzero_ps(); 8];
        for (i, v) in r.iter_mut().enumerate().take(MR) {
            *v = _mm256_loadu_ps(from.add(i * rs + p));
        }
        let t = transpose_8x8(r);
        for (q, v) in t.iter().enumerate() {
            let at = out.as_mut_ptr().add((p + q) * MR);
            if p + q + 1 < kc {
                _mm256_storeu_ps(at, *v);
            } else {
                _mm_storeu_ps(at, _mm256_castps256_ps128(*v));
                _mm_storel_epi64(
                    at.add(4) as *mut __m128i,
                    _mm_castps_si128(_mm256_extractf128_ps::<1>(*v)),
                );
            }
        }
        p += 8;
    }
    p
}

/// Packs rows `p0..p0+kc` x columns `j0..j0+nb` of `b` into `ceil(nb/NR)` panels;
/// `avx2` allows the 8 x 8 transposes for a unit row stride.
///
/// # Safety
/// `b` readable over that block; `to` holds `ceil(nb/NR)·NR·kc` values; `avx2` only on a
/// CPU with AVX2.
pub(super) unsafe fn pack_b(
    b: Strided,
    (p0, kc): (usize, usize),
    (j0, nb): (usize, usize),
    to: &mut [f32],
    avx2: bool,
) {
    for (panel, out) in to
        .chunks_exact_mut(NR * kc)
        .take(nb.div_ceil(NR))
        .enumerate()
    {
        let c0 = j0 + panel * NR;
        let cols = NR.min(j0 + nb - c0);
        if b.cs == 1 && cols == NR {
            for (p, dst) in out.chunks_exact_mut(NR).enumerate() {
                dst.copy_from_slice(std::slice::from_raw_parts(b.at(p0 + p, c0), NR));
            }
            continue;
        }
        let mut p = 0;
        #[cfg(target_arch = "x86_64")]
        if avx2 && b.rs == 1 && cols == NR {
            while p + 8 <= kc {
                transpose_8x16_avx2(b.at(p0 + p, c0), b.cs, out.as_mut_ptr().add(p * NR));
                p += 8;
            }
        }
        let _ = avx2;
        pack_lanes(out, (NR, cols), (p, kc), b.rs, |j| b.at(p0, c0 + j));
    }
}

/// `to[q·16 + j] = from[j·stride + q]` for q < 8, j < 16: sixteen runs of 8 (the
/// columns of `B` in a transposed view) into 8 panel rows, as two 8 x 8 transposes.
///
/// # Safety
/// `from` readable at `j·stride + q`; `to` writable for 128 values; AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x16_avx2(from: *const f32, stride: usize, to: *mut f32) {
    use std::arch::x86_64::*;
    for half in 0..2 {
        let mut r = [_mm256_setzero_ps(); 8];
        for (j, v) in r.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(from.add((8 * half + j) * stride));
        }
        for (q, row) in transpose_8x8(r).iter().enumerate() {
            _mm256_storeu_ps(to.add(q * NR + 8 * half), *row);
        }
    }
}

/// The 8 x 8 transpose: row q of the result holds `r[0][q] .. r[7][q]` (pairs, then quads,
/// then the 128-bit halves).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}
