//! The AVX2 loops of the cpu column transforms (f32): the flat [`im2col_flat`] /
//! [`col2im_flat`] of `flat`, for CPUs with AVX2 but no AVX-512 (most AMD Zen parts).
//!
//! Each 16-lane mask word of `flat::flat_tap` is taken as two 8-lane halves. `vmaskmovps`
//! is slow on Zen (its stores most), so where the 8 lanes lie inside the buffer they are
//! read by a plain load and the masked-off lanes cleared by an AND, and `col2im` stores all
//! 8 back (its masked-off lanes add +0, which leaves a plane value's bits as they are); only
//! at the buffers' edges do masked loads and stores run. The row tail of `im2col` is the
//! 8-lane step ending at `L`. The values are those of the portable loops, bitwise: `im2col`
//! only moves values, and `col2im` adds each pixel's terms in tap order `(i, j)` (tests in
//! the parent).

use super::super::Geom;
use super::flat::{self, first};
use std::arch::x86_64::*;

/// The `vmaskmovps` lane mask of the 8 bits `bits` (lane `k` all ones when bit `k` is set).
#[inline(always)]
unsafe fn lane_mask(bits: u16) -> __m256i {
    let each = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let b = _mm256_and_si256(_mm256_set1_epi32(i32::from(bits & 0xFF)), each);
    _mm256_cmpeq_epi32(b, each)
}

/// The addresses `[start, end)` of a slice.
fn span(s: &[f32]) -> (usize, usize) {
    let r = s.as_ptr_range();
    (r.start as usize, r.end as usize)
}

/// Whether the 8 values at `p` lie inside `span` (then a plain load or store of them is
/// in bounds, and of initialised values).
#[inline(always)]
fn within(p: *const f32, (lo, hi): (usize, usize)) -> bool {
    let a = p as usize;
    a >= lo && a.checked_add(32).is_some_and(|end| end <= hi)
}

/// The 8 mask bits of entries `at..at + 8` (any `at`, not only multiples of 8).
#[inline(always)]
fn bits_at(masks: &[u16], at: usize) -> u16 {
    let (t, o) = (at / 16, at % 16);
    let word = u32::from(masks[t]) | masks.get(t + 1).map_or(0, |&w| u32::from(w) << 16);
    ((word >> o) & 0xFF) as u16
}

/// The 8 values at `p` with the lanes whose bit is clear in `bits` +0: a plain load (then
/// an AND) where all 8 lie inside the slice `span`, else a masked one (it reads no lane
/// outside; `vmaskmovps` does not fault on masked-off lanes, and is slow on Zen).
#[inline(always)]
unsafe fn load8(p: *const f32, bits: u16, span: (usize, usize)) -> __m256 {
    match bits & 0xFF {
        0 => _mm256_setzero_ps(),
        0xFF => _mm256_loadu_ps(p),
        b if within(p, span) => {
            _mm256_and_ps(_mm256_loadu_ps(p), _mm256_castsi256_ps(lane_mask(b)))
        }
        b => _mm256_maskload_ps(p, lane_mask(b)),
    }
}

/// The lane mask of the first `n` of 8 lanes.
#[inline(always)]
unsafe fn first8(n: usize) -> __m256i {
    lane_mask(first(n.min(8)))
}

/// `dst[k] = src[2k]` (`src.len() >= 2·dst.len() − 1`): 16 loaded, the even 8 kept, while
/// 16 are there; the last few one by one (masked loads and stores cost more than that on
/// Zen, and DCGAN's phase rows are 7 long).
///
/// # Safety
/// AVX2 must be present.
#[inline(always)]
pub(super) unsafe fn gather2(dst: &mut [f32], src: &[f32]) {
    let (n, have) = (dst.len(), src.len());
    assert!(n == 0 || have > 2 * (n - 1), "gather2: source too short");
    let mut k = 0;
    while k + 8 <= n && 2 * k + 16 <= have {
        let sp = src.as_ptr().add(2 * k);
        let (a, b) = (_mm256_loadu_ps(sp), _mm256_loadu_ps(sp.add(8)));
        // [a0 a2 b0 b2 | a4 a6 b4 b6], then its 64-bit pairs in the order 0, 2, 1, 3.
        let evens = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let v = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(evens));
        _mm256_storeu_ps(dst.as_mut_ptr().add(k), _mm256_castpd_ps(v));
        k += 8;
    }
    for (d, s) in dst[k..].iter_mut().zip(src[2 * k..].iter().step_by(2)) {
        *d = *s;
    }
}

/// `row[2t] = p0[t]`, `row[2t + 1] = p1[t]` (`row.len() == 2·p0.len() == 2·p1.len()`): 8
/// pairs a step, the last few one by one (as in [`gather2`]).
///
/// # Safety
/// AVX2 must be present.
#[inline(always)]
pub(super) unsafe fn interleave2_rows(row: &mut [f32], p0: &[f32], p1: &[f32]) {
    let half = p0.len();
    assert!(
        p1.len() == half && row.len() == 2 * half,
        "interleave2_rows: lengths"
    );
    let mut t = 0;
    while t + 8 <= half {
        let (a, b) = (
            _mm256_loadu_ps(p0.as_ptr().add(t)),
            _mm256_loadu_ps(p1.as_ptr().add(t)),
        );
        // [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7], halves regrouped.
        let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
        let d = row.as_mut_ptr().add(2 * t);
        _mm256_storeu_ps(d, _mm256_permute2f128_ps::<0x20>(lo, hi));
        _mm256_storeu_ps(d.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
        t += 8;
    }
    for ((pair, &a), &b) in row[2 * t..].chunks_exact_mut(2).zip(&p0[t..]).zip(&p1[t..]) {
        pair[0] = a;
        pair[1] = b;
    }
}

/// `col [R, L] = im2col(img [C, h, w])` (rows `ld` apart) by the flat loops; the same
/// values as the portable loop.
///
/// # Safety
/// AVX2 must be present and [`flat::flat_taps`] hold; `img` holds one image, `col`
/// `(R − 1)·ld + L` elements, `scratch` the parent's `scratch_len(g)` (one image).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn im2col_flat(
    img: &[f32],
    g: &Geom,
    col: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    // SAFETY (of the closure's call): AVX2 is enabled in this function.
    let gather = |d: &mut [f32], s: &[f32]| unsafe { gather2(d, s) };
    let planes = flat::source_planes(img, g, col, ld, scratch, gather);
    let (l, inside) = (g.cols(), span(planes));
    flat::for_each_run(g, |masks, r, at| {
        let row = col.as_mut_ptr().add(r * ld);
        let src = planes.as_ptr().wrapping_offset(at);
        // Full 8-lane steps, then the last `l % 8` as the step ending at `l` (rewriting a
        // few entries with the same values): no masked store.
        let mut at = 0;
        while at + 8 <= l {
            let v = load8(src.wrapping_add(at), bits_at(masks, at), inside);
            _mm256_storeu_ps(row.add(at), v);
            at += 8;
        }
        if at < l && l >= 8 {
            let at = l - 8;
            let v = load8(src.wrapping_add(at), bits_at(masks, at), inside);
            _mm256_storeu_ps(row.add(at), v);
        } else if at < l {
            let v = load8(src, bits_at(masks, 0), inside);
            _mm256_maskstore_ps(row, first8(l), v);
        }
    });
}

/// `img [C, h, w] = col2im(col [R, L])` (rows `ld` apart) by the flat loops; each pixel's
/// terms in tap order, as the portable loop, so bitwise its result.
///
/// # Safety
/// As [`im2col_flat`].
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn col2im_flat(
    col: &[f32],
    g: &Geom,
    img: &mut [f32],
    ld: usize,
    scratch: &mut [f32],
) {
    let (planes, split) = flat::target_planes(col, g, img, ld, scratch);
    let (inside, col_span, base) = (span(planes), span(col), planes.as_mut_ptr());
    flat::for_each_run(g, |masks, r, at| {
        let src = col.as_ptr().add(r * ld);
        let dst = base.wrapping_offset(at);
        for (t, &m) in masks.iter().enumerate() {
            for half in 0..2 {
                let at = 16 * t + 8 * half;
                let bits = (m >> (8 * half)) & 0xFF;
                let (d, s) = (dst.wrapping_add(at), src.add(at));
                if bits == 0xFF {
                    let sum = _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(s));
                    _mm256_storeu_ps(d, sum);
                } else if bits != 0 {
                    let s = load8(s, bits, col_span);
                    if within(d, inside) {
                        // The clear lanes add the +0 `load8` put there: a plane value is +0
                        // or a sum (never −0, never a signalling NaN), so adding +0 leaves
                        // its bits as they are.
                        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), s));
                    } else {
                        let k = lane_mask(bits);
                        let sum = _mm256_add_ps(_mm256_maskload_ps(d, k), s);
                        _mm256_maskstore_ps(d, k, sum);
                    }
                }
            }
        }
    });
    if split {
        let il = g.image_len();
        // SAFETY (of the closure's call): AVX2 is enabled in this function.
        flat::merge_phases(&scratch[..il], g, &mut img[..il], |r, a, b| unsafe {
            interleave2_rows(r, a, b)
        });
    }
}
