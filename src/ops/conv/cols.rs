//! cpu im2col / col2im: an image `[C, h, w]` to and from its column matrix `[R = C·kh·kw,
//! L = ho·wo]` (see [`Geom`]).
//!
//! Every row of the column matrix is, per output row `oh`, a strided run of one input row:
//! `col[(c, i, j), (oh, ow)] = img[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]` (zero outside
//! the image). Strided runs are copied by [`gather`] and added back by [`scatter_add`],
//! with AVX-512 loops for f32 at stride 2 (every DCGAN layer is stride 2) and plain loops
//! otherwise; where the width is a multiple of the stride the image is first split into
//! phase planes (see [`phased`]) so that every run is contiguous. Every path only moves
//! values or adds them in the same order as the plain loop, so the results are bitwise the
//! same on all of them.

use super::cpu::Elem;
use super::Geom;

/// The valid window positions along one axis for kernel tap `t`: the range of output
/// positions `o` with `0 <= o·s − p + t·d < size`, and the input offset `t·d − p`.
#[inline]
fn valid_range(
    size: usize,
    out: usize,
    s: usize,
    p: usize,
    d: usize,
    t: usize,
) -> (usize, usize, isize) {
    let off = (t * d) as isize - p as isize;
    // o·s + off >= 0  <=>  o >= ceil(-off / s)
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(s)
    };
    // o·s + off < size  <=>  o < ceil((size - off) / s)
    let hi = if (size as isize) <= off {
        0
    } else {
        ((size as isize - off) as usize).div_ceil(s)
    };
    (lo.min(out), hi.min(out).max(lo.min(out)), off)
}

/// `dst[k] = src[k·stride]` for every `k < dst.len()`.
///
/// # Panics
/// If `src` is shorter than `(dst.len() − 1)·stride + 1` (a caller bug, checked once).
#[inline]
pub(crate) fn gather<T: Elem>(dst: &mut [T], src: &[T], stride: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    let src = &src[..last * stride + 1];
    if stride == 1 {
        dst.copy_from_slice(src);
    } else if !T::gather_fast(dst, src, stride) {
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *d = *s;
        }
    }
}

/// `dst[k·stride] += src[k]` for every `k < src.len()`.
///
/// # Panics
/// If `dst` is shorter than `(src.len() − 1)·stride + 1` (a caller bug, checked once).
#[inline]
pub(crate) fn scatter_add<T: Elem>(dst: &mut [T], src: &[T], stride: usize) {
    let Some(last) = src.len().checked_sub(1) else {
        return;
    };
    let dst = &mut dst[..last * stride + 1];
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
    } else if !T::scatter_add_fast(dst, src, stride) {
        for (d, &s) in dst.iter_mut().step_by(stride).zip(src) {
            *d += s;
        }
    }
}

/// Phase planes make every strided run contiguous: with `w % sw == 0`, phase `q` of an
/// image holds its columns `iw ≡ q (mod sw)`, `phase[q][c, ih, k] = img[c, ih, sw·k + q]`,
/// and tap `j` of output column `ow` reads `iw = sw·ow + off` (`off = j·dw − pw`), that is
/// phase `off mod sw` at `k = ow + ⌊off / sw⌋`: a plain copy of `ow_hi − ow_lo` values.
/// Making the phases is one long strided pass over the image instead of one short strided
/// run per tap (16 per pixel row for a 4x4 kernel).
fn phased(g: &Geom) -> bool {
    g.sw > 1 && g.w.is_multiple_of(g.sw)
}

/// Scratch elements [`im2col`] and [`col2im`] need: the phase planes of one image.
pub(crate) fn scratch_len(g: &Geom) -> usize {
    if phased(g) {
        g.image_len()
    } else {
        0
    }
}

/// For tap offset `off` along the width, the phase plane and the shift `⌊off / sw⌋`.
#[inline]
fn phase_of(g: &Geom, off: isize) -> (usize, isize) {
    let s = g.sw as isize;
    (off.rem_euclid(s) as usize, off.div_euclid(s))
}

/// `col [R, L] = im2col(img [C, h, w])`, rows `ld` elements apart; `scratch` holds
/// [`scratch_len`] elements (contents unspecified).
pub(crate) fn im2col<T: Elem>(img: &[T], g: &Geom, col: &mut [T], ld: usize, scratch: &mut [T]) {
    let (l, il) = (g.cols(), g.image_len());
    let phases = if phased(g) {
        let per = il / g.sw;
        for (q, plane) in scratch[..il].chunks_exact_mut(per).enumerate() {
            gather(plane, &img[q..], g.sw);
        }
        Some(&scratch[..il])
    } else {
        None
    };
    for c in 0..g.c {
        for i in 0..g.kh {
            let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
            for j in 0..g.kw {
                let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
                let row = &mut col[((c * g.kh + i) * g.kw + j) * ld..][..l];
                row[..oh_lo * g.wo].fill(T::ZERO);
                row[oh_hi * g.wo..].fill(T::ZERO);
                for oh in oh_lo..oh_hi {
                    let ih = ((oh * g.sh) as isize + hoff) as usize;
                    let dst = &mut row[oh * g.wo..][..g.wo];
                    dst[..ow_lo].fill(T::ZERO);
                    dst[ow_hi..].fill(T::ZERO);
                    if ow_hi <= ow_lo {
                        continue;
                    }
                    let run = &mut dst[ow_lo..ow_hi];
                    match phases {
                        Some(ph) => {
                            let (q, shift) = phase_of(g, woff);
                            let pw = g.w / g.sw;
                            let at = ((q * g.c + c) * g.h + ih) * pw;
                            let k0 = (ow_lo as isize + shift) as usize;
                            T::copy_run(run, &ph[at + k0..][..run.len()]);
                        }
                        None => {
                            let src = &img[(c * g.h + ih) * g.w..][..g.w];
                            let start = ((ow_lo * g.sw) as isize + woff) as usize;
                            gather(run, &src[start..], g.sw);
                        }
                    }
                }
            }
        }
    }
}

/// `img [C, h, w] = col2im(col [R, L])` (rows `ld` elements apart): every column entry
/// added to its pixel, each pixel's terms in tap order `(i, j)` on every path (a pixel gets
/// at most one term per tap); `scratch` holds [`scratch_len`] elements.
pub(crate) fn col2im<T: Elem>(col: &[T], g: &Geom, img: &mut [T], ld: usize, scratch: &mut [T]) {
    let (l, il) = (g.cols(), g.image_len());
    img.fill(T::ZERO);
    let pw = g.w / g.sw;
    let mut phases = if phased(g) {
        scratch[..il].fill(T::ZERO);
        Some(&mut scratch[..il])
    } else {
        None
    };
    for c in 0..g.c {
        for i in 0..g.kh {
            let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
            for j in 0..g.kw {
                let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
                if ow_hi <= ow_lo {
                    continue;
                }
                let row = &col[((c * g.kh + i) * g.kw + j) * ld..][..l];
                for oh in oh_lo..oh_hi {
                    let ih = ((oh * g.sh) as isize + hoff) as usize;
                    let src = &row[oh * g.wo + ow_lo..oh * g.wo + ow_hi];
                    match phases.as_deref_mut() {
                        Some(ph) => {
                            let (q, shift) = phase_of(g, woff);
                            let at = ((q * g.c + c) * g.h + ih) * pw;
                            let k0 = (ow_lo as isize + shift) as usize;
                            T::add_run(&mut ph[at + k0..][..src.len()], src);
                        }
                        None => {
                            let dst = &mut img[(c * g.h + ih) * g.w..][..g.w];
                            let start = ((ow_lo * g.sw) as isize + woff) as usize;
                            scatter_add(&mut dst[start..], src, g.sw);
                        }
                    }
                }
            }
        }
    }
    // Interleave the phases back: adding each sum to a zero is exact (a sum that starts at
    // +0 is never −0), so this equals a copy, bitwise.
    if let Some(ph) = phases {
        for (q, plane) in ph.chunks_exact(il / g.sw).enumerate() {
            scatter_add(&mut img[q..], plane, g.sw);
        }
    }
}

/// The AVX-512 stride-2 loops for f32 (16 outputs a step, masked at the ends).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// Lanes `[0, 2, …, 30]` of the pair (lo, hi): the even elements of 32.
    const EVENS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    /// Element k of a 16-vector to lane 2k (low half: k < 8; `+ 8` for the high half).
    const SPREAD_LO: [i32; 16] = [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0];
    const SPREAD_HI: [i32; 16] = [8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15, 0];

    /// The mask of the first `n` of 16 lanes (`n` up to 16).
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain loops, written out as the definition.
    fn gather_ref(dst: &mut [f32], src: &[f32], stride: usize) {
        for (k, d) in dst.iter_mut().enumerate() {
            *d = src[k * stride];
        }
    }
    fn scatter_ref(dst: &mut [f32], src: &[f32], stride: usize) {
        for (k, &s) in src.iter().enumerate() {
            dst[k * stride] += s;
        }
    }

    /// Every length 0..70 at strides 1..4, with sources cut to the exact length needed (a
    /// read past the end would panic in the slice checks or show in the values), compared
    /// bitwise with the definition; the odd lanes the AVX-512 scatter skips keep their values.
    #[test]
    fn strided_runs_match_the_definition_at_every_length() {
        for stride in 1..=4 {
            for n in 0..70usize {
                let need = if n == 0 { 0 } else { (n - 1) * stride + 1 };
                let src: Vec<f32> = (0..need).map(|i| i as f32 * 0.5 - 7.25).collect();
                let (mut got, mut want) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                gather(&mut got, &src, stride);
                gather_ref(&mut want, &src, stride);
                assert_eq!(bits(&got), bits(&want), "gather n={n} stride={stride}");

                let add: Vec<f32> = (0..n).map(|i| (i as f32).sin()).collect();
                let base: Vec<f32> = (0..need).map(|i| -(i as f32) * 0.125).collect();
                let (mut got, mut want) = (base.clone(), base);
                scatter_add(&mut got, &add, stride);
                scatter_ref(&mut want, &add, stride);
                assert_eq!(bits(&got), bits(&want), "scatter_add n={n} stride={stride}");
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
