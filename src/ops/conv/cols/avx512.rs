//! The AVX-512 loops of the cpu column transforms (f32): the stride-2 gather and
//! scatter-add of strided runs, short-run copies, whole-image [`im2col`] / [`col2im`]
//! for geometries whose taps read contiguous runs (stride 1 along the width, or phase
//! planes; see `phased` in the parent module), and the flat [`im2col_flat`] /
//! [`col2im_flat`], one run per tap and channel, where the phase planes of both axes are
//! as wide as the grid (every DCGAN layer; taken first, see "flat loops" below).
//!
//! The whole-image loops fix each tap's geometry (valid rows and columns, phase plane,
//! shift) once and reuse it for every channel, and move one output row of `wo` values per
//! masked load and store (16 lanes a step; the lanes outside the valid columns are masked
//! off, so they are neither read nor, in `im2col`, anything but zero). DCGAN rows are 4 to
//! 32 values long, where a per-row slice, bounds check and `memcpy` call cost more than
//! the copy. They compute exactly what the portable loops do: `im2col` only moves values,
//! and `col2im` adds each pixel's terms in tap order `(i, j)` for every channel, as the
//! portable loop does, so the results are bitwise the same (tests below).

use super::super::Geom;
use super::flat::{self, first, lanes};
use super::{gather, phase_of, scatter_add, valid_range};
use std::arch::x86_64::*;

/// Lanes `[0, 2, …, 30]` of the pair (lo, hi): the even elements of 32.
const EVENS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
/// Element k of a 16-vector to lane 2k (low half: k < 8; `+ 8` for the high half).
const SPREAD_LO: [i32; 16] = [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0];
const SPREAD_HI: [i32; 16] = [8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15, 0];

/// `dst[k] = src[2k]`.
///
/// # Safety
/// AVX-512F must be present; `src.len() >= 2·dst.len() − 1`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gather2(dst: &mut [f32], src: &[f32]) {
    debug_assert!(dst.is_empty() || src.len() > 2 * (dst.len() - 1));
    let evens = _mm512_loadu_si512(EVENS.as_ptr().cast());
    let (n, have) = (dst.len(), src.len());
    let mut k = 0;
    while k < n {
        let m = (n - k).min(16);
        // The 2m − 1 source elements of this step, never read past `src`.
        let avail = have - 2 * k;
        let (sp, dp) = (src.as_ptr().add(2 * k), dst.as_mut_ptr().add(k));
        let lo = _mm512_maskz_loadu_ps(first(avail), sp);
        let hi = _mm512_maskz_loadu_ps(first(avail.saturating_sub(16)), sp.add(16));
        let v = _mm512_permutex2var_ps(lo, evens, hi);
        _mm512_mask_storeu_ps(dp, first(m), v);
        k += m;
    }
}

/// `dst = src` for a short run (one masked load and store per 16; `memcpy` is a call).
///
/// # Safety
/// AVX-512F must be present; `dst.len() == src.len()`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn copy_run(dst: &mut [f32], src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len());
    let mut k = 0;
    while k < dst.len() {
        let m = first(dst.len() - k);
        let v = _mm512_maskz_loadu_ps(m, src.as_ptr().add(k));
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(k), m, v);
        k += 16;
    }
}

/// `dst[2k] += src[k]`.
///
/// # Safety
/// AVX-512F must be present; `dst.len() >= 2·src.len() − 1`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn scatter_add2(dst: &mut [f32], src: &[f32]) {
    debug_assert!(src.is_empty() || dst.len() > 2 * (src.len() - 1));
    let lo_idx = _mm512_loadu_si512(SPREAD_LO.as_ptr().cast());
    let hi_idx = _mm512_loadu_si512(SPREAD_HI.as_ptr().cast());
    const EVEN_LANES: __mmask16 = 0x5555;
    let (n, have) = (src.len(), dst.len());
    let mut k = 0;
    while k < n {
        let m = (n - k).min(16);
        let avail = (have - 2 * k).min(2 * m - 1);
        let (sp, dp) = (src.as_ptr().add(k), dst.as_mut_ptr().add(2 * k));
        let s = _mm512_maskz_loadu_ps(first(m), sp);
        let (mlo, mhi) = (first(avail), first(avail.saturating_sub(16)));
        let dlo = _mm512_maskz_loadu_ps(mlo, dp);
        let dhi = _mm512_maskz_loadu_ps(mhi, dp.add(16));
        // Add on the even lanes only: the odd ones are stored back untouched.
        let dlo = _mm512_mask_add_ps(dlo, EVEN_LANES, dlo, _mm512_permutexvar_ps(lo_idx, s));
        let dhi = _mm512_mask_add_ps(dhi, EVEN_LANES, dhi, _mm512_permutexvar_ps(hi_idx, s));
        _mm512_mask_storeu_ps(dp, mlo, dlo);
        _mm512_mask_storeu_ps(dp.add(16), mhi, dhi);
        k += m;
    }
}

/// The source planes of the whole-image loops and their width: phase planes `[sw][C][h][w
/// / sw]` in `scratch` when the width is strided, the image itself (`[1][C][h][w]`) at
/// stride 1.
fn planes_width(g: &Geom) -> usize {
    if g.sw > 1 {
        g.w / g.sw
    } else {
        g.w
    }
}

/// Whether [`im2col`] and [`col2im`] apply: every tap reads contiguous runs of one plane.
pub(crate) fn contiguous_taps(g: &Geom) -> bool {
    g.sw == 1 || super::phased(g)
}

/// `col [R, L] = im2col(img [C, h, w])` (rows `ld` apart), as the portable loop.
///
/// # Safety
/// AVX-512F must be present and [`contiguous_taps`] hold; `img` holds one image, `col`
/// `(R − 1)·ld + L` elements, `scratch` the parent's `scratch_len(g)`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn im2col(
    img: &[f32],
    g: &Geom,
    col: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    let (l, il, pw) = (g.cols(), g.image_len(), planes_width(g));
    assert!(img.len() >= il && col.len() >= (g.rows().max(1) - 1) * ld + l);
    let planes: &[f32] = if g.sw > 1 {
        for (q, plane) in scratch[..il].chunks_exact_mut(il / g.sw).enumerate() {
            gather(plane, &img[q..], g.sw);
        }
        &scratch[..il]
    } else {
        &img[..il]
    };
    let plane_len = g.h * pw;
    for i in 0..g.kh {
        let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
        for j in 0..g.kw {
            let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
            let (q, shift) = phase_of(g, woff);
            for c in 0..g.c {
                let row = col.as_mut_ptr().add(((c * g.kh + i) * g.kw + j) * ld);
                let plane = planes.as_ptr().add((q * g.c + c) * plane_len);
                for oh in 0..g.ho {
                    let dst = row.add(oh * g.wo);
                    let valid = oh >= oh_lo && oh < oh_hi;
                    // The row the valid lanes read; lane ow reads src[ow] (ow + shift in
                    // the plane row, inside it for every valid ow by valid_range).
                    let src = match valid {
                        true => plane
                            .add(((oh * g.sh) as isize + hoff) as usize * pw)
                            .wrapping_offset(shift),
                        false => plane,
                    };
                    let mut ow0 = 0;
                    while ow0 < g.wo {
                        let n = (g.wo - ow0).min(16);
                        let m = match valid {
                            true => {
                                lanes(ow_lo.saturating_sub(ow0), ow_hi.saturating_sub(ow0).min(n))
                            }
                            false => 0,
                        };
                        let v = _mm512_maskz_loadu_ps(m, src.wrapping_add(ow0));
                        _mm512_mask_storeu_ps(dst.add(ow0), first(n), v);
                        ow0 += 16;
                    }
                }
            }
        }
    }
}

/// `img [C, h, w] = col2im(col [R, L])` (rows `ld` apart), as the portable loop.
///
/// # Safety
/// As [`im2col`], with `img` holding one image.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn col2im(
    col: &[f32],
    g: &Geom,
    img: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    let (l, il, pw) = (g.cols(), g.image_len(), planes_width(g));
    assert!(img.len() >= il && col.len() >= (g.rows().max(1) - 1) * ld + l);
    let planes: &mut [f32] = if g.sw > 1 {
        &mut scratch[..il]
    } else {
        &mut img[..il]
    };
    planes.fill(0.0);
    let plane_len = g.h * pw;
    for i in 0..g.kh {
        let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
        for j in 0..g.kw {
            let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
            if ow_hi <= ow_lo {
                continue;
            }
            let (q, shift) = phase_of(g, woff);
            for c in 0..g.c {
                let row = col.as_ptr().add(((c * g.kh + i) * g.kw + j) * ld);
                let plane = planes.as_mut_ptr().add((q * g.c + c) * plane_len);
                for oh in oh_lo..oh_hi {
                    let src = row.add(oh * g.wo);
                    let dst = plane
                        .add(((oh * g.sh) as isize + hoff) as usize * pw)
                        .wrapping_offset(shift);
                    let mut ow0 = ow_lo & !15;
                    while ow0 < ow_hi {
                        let m = lanes(ow_lo.saturating_sub(ow0), (ow_hi - ow0).min(16));
                        let d = _mm512_maskz_loadu_ps(m, dst.wrapping_add(ow0));
                        let s = _mm512_maskz_loadu_ps(m, src.add(ow0));
                        _mm512_mask_storeu_ps(dst.wrapping_add(ow0), m, _mm512_add_ps(d, s));
                        ow0 += 16;
                    }
                }
            }
        }
    }
    if g.sw > 1 {
        // Each pixel is its phase sum: a sum that starts at +0 is never −0, so storing it
        // equals adding it to a zeroed image, bitwise (what the portable loop does).
        if g.sw == 2 {
            interleave2(&mut img[..il], &scratch[..il]);
        } else {
            img[..il].fill(0.0);
            for (q, plane) in scratch[..il].chunks_exact(il / g.sw).enumerate() {
                scatter_add(&mut img[q..il], plane, g.sw);
            }
        }
    }
}

/// `dst[2t + q] = src[q·len/2 + t]`: two planes interleaved (`dst.len() == src.len()`, even).
#[target_feature(enable = "avx512f")]
unsafe fn interleave2(dst: &mut [f32], src: &[f32]) {
    assert!(dst.len() == src.len() && dst.len().is_multiple_of(2));
    let (p0, p1) = src.split_at(src.len() / 2);
    interleave2_rows(dst, p0, p1)
}

/// `dst[2t] = p0[t]`, `dst[2t + 1] = p1[t]` (`dst.len() == 2·p0.len() == 2·p1.len()`).
#[target_feature(enable = "avx512f")]
unsafe fn interleave2_rows(dst: &mut [f32], p0: &[f32], p1: &[f32]) {
    const LO: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const HI: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];
    let half = p0.len();
    assert!(p1.len() == half && dst.len() == 2 * half);
    let (lo, hi) = (
        _mm512_loadu_si512(LO.as_ptr().cast()),
        _mm512_loadu_si512(HI.as_ptr().cast()),
    );
    let mut t = 0;
    while t < half {
        let n = (half - t).min(16);
        let a = _mm512_maskz_loadu_ps(first(n), p0.as_ptr().add(t));
        let b = _mm512_maskz_loadu_ps(first(n), p1.as_ptr().add(t));
        let d = dst.as_mut_ptr().add(2 * t);
        _mm512_mask_storeu_ps(d, first(2 * n), _mm512_permutex2var_ps(a, lo, b));
        _mm512_mask_storeu_ps(
            d.add(16),
            first((2 * n).saturating_sub(16)),
            _mm512_permutex2var_ps(a, hi, b),
        );
        t += 16;
    }
}

// ---- flat loops: phase planes in both axes, one run per tap and channel (see `flat`) ---

/// `planes` of [`flat::split_phases`]'s layout back into `img`, exactly.
#[target_feature(enable = "avx512f")]
unsafe fn merge_phases(planes: &[f32], g: &Geom, img: &mut [f32]) {
    // SAFETY (of the closure's call): AVX-512F is enabled in this function.
    flat::merge_phases(planes, g, img, |row, p0, p1| unsafe {
        interleave2_rows(row, p0, p1)
    })
}

/// `col [R, L] = im2col(img [C, h, w])` (rows `ld` apart) by the flat loops; the same
/// values as the portable loop.
///
/// # Safety
/// AVX-512F must be present and [`flat::flat_taps`] hold; `img` holds one image, `col`
/// `(R − 1)·ld + L` elements, `scratch` the parent's `scratch_len(g)` (one image).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn im2col_flat(
    img: &[f32],
    g: &Geom,
    col: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    // SAFETY (of the closure's call): AVX-512F is enabled in this function.
    let gather = |d: &mut [f32], s: &[f32]| unsafe { gather2(d, s) };
    let planes = flat::source_planes(img, g, col, ld, scratch, gather);
    let l = g.cols();
    flat::for_each_run(g, |masks, r, at| {
        let row = col.as_mut_ptr().add(r * ld);
        let src = planes.as_ptr().wrapping_offset(at);
        for (t, &m) in masks.iter().enumerate() {
            let v = _mm512_maskz_loadu_ps(m, src.wrapping_add(16 * t));
            _mm512_mask_storeu_ps(row.add(16 * t), first(l - 16 * t), v);
        }
    });
}

/// `img [C, h, w] = col2im(col [R, L])` (rows `ld` apart) by the flat loops; each pixel's
/// terms in tap order, as the portable loop, so bitwise its result.
///
/// # Safety
/// As [`im2col_flat`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn col2im_flat(
    col: &[f32],
    g: &Geom,
    img: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    let (planes, split) = flat::target_planes(col, g, img, ld, scratch);
    let base = planes.as_mut_ptr();
    flat::for_each_run(g, |masks, r, at| {
        let src = col.as_ptr().add(r * ld);
        let dst = base.wrapping_offset(at);
        for (t, &m) in masks.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let d = _mm512_maskz_loadu_ps(m, dst.wrapping_add(16 * t));
            let s = _mm512_maskz_loadu_ps(m, src.add(16 * t));
            _mm512_mask_storeu_ps(dst.wrapping_add(16 * t), m, _mm512_add_ps(d, s));
        }
    });
    if split {
        let il = g.image_len();
        merge_phases(&scratch[..il], g, &mut img[..il]);
    }
}
