//! cpu im2col / col2im: an image `[C, h, w]` to and from its column matrix `[R = C·kh·kw,
//! L = ho·wo]` (see [`Geom`]).
//!
//! Every row of the column matrix is, per output row `oh`, a strided run of one input row:
//! `col[(c, i, j), (oh, ow)] = img[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]` (zero outside
//! the image). Strided runs are copied by [`gather`] and added back by [`scatter_add`],
//! with AVX-512 loops for f32 at stride 2 (every DCGAN layer is stride 2) and plain loops
//! otherwise; where the width is a multiple of the stride the image is first split into
//! phase planes (see [`phased`]) so that every run is contiguous. For f32 on AVX-512 such
//! geometries (and stride-1 ones) take whole-image loops instead (`avx512::im2col`,
//! `avx512::col2im`): one masked load and store per output row, the tap geometry fixed once
//! for all channels; and where the phase planes of both axes are as wide as the grid, flat
//! loops (`avx512::im2col_flat`, `col2im_flat`; geometry in `flat`): one masked run of `L`
//! values per tap and channel. CPUs with AVX2 but no AVX-512 take the flat loops' 8-lane
//! twins (`avx2`) and the plain loops elsewhere. Every path only moves values or adds them
//! in the same order as the plain loop, so the results are bitwise the same on all of them.

use super::elem::Elem;
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

/// Scratch elements [`im2col`] and [`col2im`] need: the phase planes of one image (along
/// the width, or along both axes on the AVX-512 flat path).
pub(crate) fn scratch_len(g: &Geom) -> usize {
    if g.sw > 1 || g.sh > 1 {
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
/// [`scratch_len`] elements (contents unspecified). The whole-image vector loop where the
/// element type has one for this geometry, else [`im2col_portable`].
pub(crate) fn im2col<T: Elem>(img: &[T], g: &Geom, col: &mut [T], ld: usize, scratch: &mut [T]) {
    if !T::im2col_fast(img, g, col, ld, scratch) {
        im2col_portable(img, g, col, ld, scratch)
    }
}

/// [`im2col`] by strided runs, one per tap, channel and output row (the definition).
pub(crate) fn im2col_portable<T: Elem>(
    img: &[T],
    g: &Geom,
    col: &mut [T],
    ld: usize,
    scratch: &mut [T],
) {
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
/// at most one term per tap); `scratch` holds [`scratch_len`] elements. The whole-image
/// vector loop where there is one, else [`col2im_portable`].
pub(crate) fn col2im<T: Elem>(col: &[T], g: &Geom, img: &mut [T], ld: usize, scratch: &mut [T]) {
    if !T::col2im_fast(col, g, img, ld, scratch) {
        col2im_portable(col, g, img, ld, scratch)
    }
}

/// [`col2im`] by strided runs (the definition).
pub(crate) fn col2im_portable<T: Elem>(
    col: &[T],
    g: &Geom,
    img: &mut [T],
    ld: usize,
    scratch: &mut [T],
) {
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

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod flat;

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

    /// The AVX2 stride-2 gather and the two-plane interleave at every length 0..40, with
    /// sources cut to the exact length (a read past the end would show in the values or
    /// fault), bitwise against the definition; the lanes after the run keep their values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_gather_and_interleave_match_the_definition_at_every_length() {
        assert!(
            crate::device::cpu::isa::isa().avx2,
            "this test checks the AVX2 loops and needs a CPU with AVX2 (FMA, F16C)"
        );
        for n in 0..40usize {
            let need = if n == 0 { 0 } else { 2 * n - 1 };
            let src: Vec<f32> = (0..need).map(|i| i as f32 * 0.5 - 7.25).collect();
            let (mut got, mut want) = (vec![f32::NAN; n + 3], vec![f32::NAN; n + 3]);
            // SAFETY: AVX2 checked above.
            unsafe { avx2::gather2(&mut got[..n], &src) };
            gather_ref(&mut want[..n], &src, 2);
            assert_eq!(bits(&got), bits(&want), "gather2 n={n}");

            let p0: Vec<f32> = (0..n).map(|i| i as f32 + 0.25).collect();
            let p1: Vec<f32> = (0..n).map(|i| -(i as f32) - 0.5).collect();
            let mut got = vec![9.0f32; 2 * n + 3];
            // SAFETY: AVX2 checked above.
            unsafe { avx2::interleave2_rows(&mut got[..2 * n], &p0, &p1) };
            let mut want: Vec<f32> = p0.iter().zip(&p1).flat_map(|(&a, &b)| [a, b]).collect();
            want.extend([9.0; 3]);
            assert_eq!(bits(&got), bits(&want), "interleave2_rows n={n}");
        }
    }

    /// Geometries around the DCGAN ones: strides 1–3 (with widths divisible by the stride,
    /// so the phased path runs), paddings up to the kernel, dilation 2, rows shorter and
    /// longer than 16 lanes, channels 1 and 3.
    fn geometries() -> Vec<Geom> {
        let mut out = Vec::new();
        for (kh, kw, s, p, d) in [
            (4, 4, 2, 1, 1),
            (3, 3, 1, 1, 1),
            (4, 4, 1, 0, 1),
            (1, 1, 1, 0, 1),
            (3, 2, 2, 2, 1),
            (3, 3, 3, 1, 1),
            (3, 3, 1, 2, 2),
            (5, 5, 2, 4, 1),
        ] {
            for (h, w) in [(7, 6), (14, 14), (9, 36), (5, 40)] {
                for c in [1, 3] {
                    let g = Geom::of((1, c, h, w), (kh, kw), (s, s), (p, p), (d, d));
                    out.extend(g);
                }
            }
        }
        out
    }

    /// A vector loop pair: `im2col` and `col2im` with the signature of the portable ones.
    type Loops = (
        unsafe fn(&[f32], &Geom, &mut [f32], usize, &mut [f32]),
        unsafe fn(&[f32], &Geom, &mut [f32], usize, &mut [f32]),
    );

    /// `loops` against the portable ones, bitwise, on every geometry `takes` accepts
    /// (values with mixed signs and magnitudes, so a term added out of tap order would
    /// round differently), with column rows padded (`ld > L`) and padding kept; returns
    /// how many geometries ran.
    ///
    /// # Safety
    /// The CPU runs `loops`, which accept every geometry `takes` does.
    unsafe fn match_portable(name: &str, takes: fn(&Geom) -> bool, loops: Loops) -> usize {
        let mut checked = 0;
        for g in geometries().into_iter().filter(takes) {
            let (r, l, il) = (g.rows(), g.cols(), g.image_len());
            let ld = l + 5;
            let img: Vec<f32> = (0..il)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3)
                .collect();
            let mut scratch = vec![f32::NAN; scratch_len(&g)];
            let (mut want, mut got) = (vec![9.0f32; r * ld], vec![9.0f32; r * ld]);
            im2col_portable(&img, &g, &mut want, ld, &mut scratch);
            scratch.fill(f32::NAN);
            (loops.0)(&img, &g, &mut got, ld, &mut scratch);
            assert_eq!(bits(&got), bits(&want), "{name} im2col {g:?}");

            let col: Vec<f32> = (0..r * ld)
                .map(|i| ((i * 104729 % 977) as f32 - 488.0) * 3.1e-2)
                .collect();
            let (mut want, mut got) = (vec![f32::NAN; il], vec![f32::NAN; il]);
            col2im_portable(&col, &g, &mut want, ld, &mut scratch);
            scratch.fill(f32::NAN);
            (loops.1)(&col, &g, &mut got, ld, &mut scratch);
            assert_eq!(bits(&got), bits(&want), "{name} col2im {g:?}");
            checked += 1;
        }
        checked
    }

    /// The AVX-512 whole-image loops (contiguous taps) against the portable ones. Only
    /// AVX-512 CPUs dispatch to them; elsewhere the test says so and checks nothing else
    /// (the loops such a CPU does run are checked by the other tests here).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn whole_image_vector_loops_match_the_portable_ones_bitwise() {
        if !crate::device::cpu::isa::isa().avx512f {
            eprintln!(
                "no AVX-512F on this CPU: its whole-image loops cannot run here, nor are they used"
            );
            return;
        }
        // SAFETY: AVX-512F checked above; the loops take every contiguous-taps geometry.
        let checked = unsafe {
            match_portable(
                "avx512",
                avx512::contiguous_taps,
                (avx512::im2col, avx512::col2im),
            )
        };
        assert!(
            checked >= 40,
            "only {checked} geometries took the vector loops"
        );
    }

    /// The flat loops (phase planes in both axes) against the portable ones, on every
    /// geometry they take: all four DCGAN-like 4x4/2/1 layers, the stride-1 "same" ones,
    /// stride 3. Every version this CPU runs (AVX-512, AVX2); an x86-64 CPU with neither
    /// fails the test, naming what it lacks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn flat_vector_loops_match_the_portable_ones_bitwise() {
        let isa = crate::device::cpu::isa::isa();
        let mut versions: Vec<(&str, Loops)> = Vec::new();
        if isa.avx512f {
            versions.push(("avx512", (avx512::im2col_flat, avx512::col2im_flat)));
        }
        if isa.avx2 {
            versions.push(("avx2", (avx2::im2col_flat, avx2::col2im_flat)));
        }
        assert!(
            !versions.is_empty(),
            "this test checks the flat vector loops and needs a CPU with AVX2 (FMA, F16C) or AVX-512F"
        );
        for (name, loops) in versions {
            // SAFETY: the instruction set checked above; the loops take every flat geometry.
            let checked = unsafe { match_portable(name, flat::flat_taps, loops) };
            assert!(
                checked >= 16,
                "{name}: only {checked} geometries took the flat loops"
            );
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
