//! The geometry of the flat column loops, shared by their AVX-512 and AVX2 versions.
//!
//! With `h % sh == 0`, `w % sw == 0` and `w / sw == wo` (every DCGAN layer, and stride-1
//! "same" convolutions), split the image into `sh·sw` phase planes `[h / sh, w / sw]` per
//! channel. Tap `(i, j)` of window `(oh, ow)` reads plane `(qh, qw)` at row `oh + sy`,
//! column `ow + sx` (`qh, sy` the remainder and quotient of `i·dh − ph` by `sh`; likewise
//! along the width). The plane's rows are as wide as the grid's, so the whole tap is one
//! run: column-matrix entry `idx = oh·wo + ow` pairs with plane element `idx + sy·wo + sx`,
//! the lanes of invalid windows masked off. One 16-lane mask word covers 16 of a channel's
//! `L` values (the AVX2 loops take it as two 8-lane halves), where a loop over grid rows
//! would move one row (7 values on dcgan28's 7x7 grid) per step.

use super::super::Geom;
use super::{gather, scatter_add, valid_range};

/// The bits of the first `n` of 16 lanes (`n` up to 16).
#[inline(always)]
pub(super) fn first(n: usize) -> u16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// The bits of lanes `lo..hi` of a 16-lane step (empty when `hi <= lo`).
#[inline(always)]
pub(super) fn lanes(lo: usize, hi: usize) -> u16 {
    if hi <= lo {
        0
    } else {
        first(hi) & !first(lo)
    }
}

/// Whether the flat loops apply (see above).
pub(crate) fn flat_taps(g: &Geom) -> bool {
    g.sh > 0
        && g.sw > 0
        && g.h.is_multiple_of(g.sh)
        && g.w.is_multiple_of(g.sw)
        && g.w / g.sw == g.wo
}

/// One tap of the flat loops: its phase plane (`qh·sw + qw`) and the offset in it of
/// column entry 0 (`sy·wo + sx`).
struct FlatTap {
    plane: usize,
    offset: isize,
}

/// The flat form of tap `(i, j)`, writing its 16-lane mask words into `masks`
/// (`ceil(L / 16)` of them; bit `b` of word `t`: entry `16·t + b` is a valid window).
fn flat_tap(g: &Geom, i: usize, j: usize, masks: &mut [u16]) -> FlatTap {
    let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
    let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
    let (sh, sw) = (g.sh as isize, g.sw as isize);
    let (qh, sy) = (hoff.rem_euclid(sh) as usize, hoff.div_euclid(sh));
    let (qw, sx) = (woff.rem_euclid(sw) as usize, woff.div_euclid(sw));
    // The valid entries are the runs [oh·wo + ow_lo, oh·wo + ow_hi) of the valid rows: a
    // few mask words per row (this runs per image and tap, for 1-channel layers too).
    masks.fill(0);
    if ow_lo < ow_hi {
        for oh in oh_lo..oh_hi {
            let (mut a, b) = (oh * g.wo + ow_lo, oh * g.wo + ow_hi);
            while a < b {
                let t = a / 16;
                let end = b.min(16 * t + 16);
                masks[t] |= lanes(a - 16 * t, end - 16 * t);
                a = end;
            }
        }
    }
    FlatTap {
        plane: qh * g.sw + qw,
        offset: sy * g.wo as isize + sx,
    }
}

/// Mask words kept on the stack (grids up to 64x64); the loops run per image, where a
/// fresh `Vec` each call was 1,280 allocations of a dcgan28 step.
const MASKS_ON_STACK: usize = 256;

/// The `ceil(L / 16)` mask words of the flat loops: in `stack` when they fit, else `heap`.
fn mask_words<'a>(
    l: usize,
    stack: &'a mut [u16; MASKS_ON_STACK],
    heap: &'a mut Vec<u16>,
) -> &'a mut [u16] {
    let words = l.div_ceil(16);
    if words <= MASKS_ON_STACK {
        &mut stack[..words]
    } else {
        heap.resize(words, 0);
        heap
    }
}

/// Elements of one phase plane of one channel.
fn flat_plane_len(g: &Geom) -> usize {
    (g.h / g.sh) * (g.w / g.sw)
}

/// `planes[((qh·sw + qw)·C + c)][y][x] = img[c][y·sh + qh][x·sw + qw]`; `gather2(dst, src)`
/// writes `dst[k] = src[2k]` (the vector loop's own; other strides take [`gather`]).
#[inline(always)]
fn split_phases(img: &[f32], g: &Geom, planes: &mut [f32], gather2: impl Fn(&mut [f32], &[f32])) {
    let (ph, pw, pl) = (g.h / g.sh, g.w / g.sw, flat_plane_len(g));
    for c in 0..g.c {
        for qh in 0..g.sh {
            for y in 0..ph {
                let row = &img[(c * g.h + y * g.sh + qh) * g.w..][..g.w];
                for qw in 0..g.sw {
                    let dst = &mut planes[((qh * g.sw + qw) * g.c + c) * pl + y * pw..][..pw];
                    match g.sw {
                        2 => gather2(dst, &row[qw..]),
                        _ => gather(dst, &row[qw..], g.sw),
                    }
                }
            }
        }
    }
}

/// The inverse of [`split_phases`]: every pixel its plane's value (an exact copy);
/// `interleave2(row, p0, p1)` writes `row[2t] = p0[t]`, `row[2t + 1] = p1[t]`.
#[inline(always)]
pub(super) fn merge_phases(
    planes: &[f32],
    g: &Geom,
    img: &mut [f32],
    interleave2: impl Fn(&mut [f32], &[f32], &[f32]),
) {
    let (ph, pw, pl) = (g.h / g.sh, g.w / g.sw, flat_plane_len(g));
    for c in 0..g.c {
        for qh in 0..g.sh {
            for y in 0..ph {
                let row = &mut img[(c * g.h + y * g.sh + qh) * g.w..][..g.w];
                let plane_row =
                    |qw: usize| &planes[((qh * g.sw + qw) * g.c + c) * pl + y * pw..][..pw];
                match g.sw {
                    1 => row.copy_from_slice(plane_row(0)),
                    2 => interleave2(row, plane_row(0), plane_row(1)),
                    _ => {
                        // Adding each value to a zero is exact (a sum that starts at +0 is
                        // never −0): equal to a copy, bitwise.
                        row.fill(0.0);
                        for qw in 0..g.sw {
                            scatter_add(&mut row[qw..], plane_row(qw), g.sw);
                        }
                    }
                }
            }
        }
    }
}

/// The planes [`for_each_run`]'s im2col reads, after the callers' size checks: the phase
/// planes of `img` split into `scratch`, or the image itself when nothing is strided.
#[inline(always)]
pub(super) fn source_planes<'a>(
    img: &'a [f32],
    g: &Geom,
    col: &[f32],
    ld: usize,
    scratch: &'a mut [f32],
    gather2: impl Fn(&mut [f32], &[f32]),
) -> &'a [f32] {
    let (l, il) = (g.cols(), g.image_len());
    assert!(img.len() >= il && col.len() >= (g.rows().max(1) - 1) * ld + l);
    if g.sh * g.sw > 1 {
        assert!(scratch.len() >= il, "im2col_flat: scratch holds one image");
        split_phases(img, g, &mut scratch[..il], gather2);
        &scratch[..il]
    } else {
        &img[..il]
    }
}

/// The planes [`for_each_run`]'s col2im adds into, zeroed, after the size checks: phase
/// planes in `scratch` (then [`merge_phases`] them into `img`: true), or `img` itself.
#[inline(always)]
pub(super) fn target_planes<'a>(
    col: &[f32],
    g: &Geom,
    img: &'a mut [f32],
    ld: usize,
    scratch: &'a mut [f32],
) -> (&'a mut [f32], bool) {
    let (l, il) = (g.cols(), g.image_len());
    assert!(img.len() >= il && col.len() >= (g.rows().max(1) - 1) * ld + l);
    let split = g.sh * g.sw > 1;
    let planes = if split {
        assert!(scratch.len() >= il, "col2im_flat: scratch holds one image");
        &mut scratch[..il]
    } else {
        &mut img[..il]
    };
    planes.fill(0.0);
    (planes, split)
}

/// The loop nest of the flat loops: for every tap `(i, j)` and channel `c`, `run(masks,
/// row, at)` with the tap's mask words, the column-matrix row `(c·kh + i)·kw + j` and the
/// plane offset `at` of column entry 0 (entry `idx` pairs with plane element `at + idx`,
/// inside the planes for every valid `idx`; `at` itself may be negative).
#[inline(always)]
pub(super) fn for_each_run(g: &Geom, mut run: impl FnMut(&[u16], usize, isize)) {
    let pl = flat_plane_len(g);
    let (mut stack, mut heap) = ([0u16; MASKS_ON_STACK], Vec::new());
    let masks = mask_words(g.cols(), &mut stack, &mut heap);
    for i in 0..g.kh {
        for j in 0..g.kw {
            let tap = flat_tap(g, i, j, masks);
            for c in 0..g.c {
                let at = ((tap.plane * g.c + c) * pl) as isize + tap.offset;
                run(masks, (c * g.kh + i) * g.kw + j, at);
            }
        }
    }
}
