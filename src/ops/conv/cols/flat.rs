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
pub(super) struct FlatTap {
    pub plane: usize,
    pub offset: isize,
}

/// The flat form of tap `(i, j)`, writing its 16-lane mask words into `masks`
/// (`ceil(L / 16)` of them; bit `b` of word `t`: entry `16·t + b` is a valid window).
pub(super) fn flat_tap(g: &Geom, i: usize, j: usize, masks: &mut [u16]) -> FlatTap {
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
pub(super) const MASKS_ON_STACK: usize = 256;

/// The `ceil(L / 16)` mask words of the flat loops: in `stack` when they fit, else `heap`.
pub(super) fn mask_words<'a>(
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
pub(super) fn flat_plane_len(g: &Geom) -> usize {
    (g.h / g.sh) * (g.w / g.sw)
}

/// `planes[((qh·sw + qw)·C + c)][y][x] = img[c][y·sh + qh][x·sw + qw]`; `gather2(dst, src)`
/// writes `dst[k] = src[2k]` (the vector loop's own; other strides take [`gather`]).
#[inline(always)]
pub(super) fn split_phases(
    img: &[f32],
    g: &Geom,
    planes: &mut [f32],
    gather2: impl Fn(&mut [f32], &[f32]),
) {
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
