//! The f32 forward product without a column matrix: `W [O, R] · im2col(x)` for a task's
//! images at once, `im2col(x)` packed by duel's engine straight from the image
//! ([`Windows`], an `sgemm::PanelSource`) — the weight packed once per call.
//!
//! Why: the blocked path (`cpu.rs`) writes each block of columns, then the GEMM copies it
//! into its panels. Here a panel of [`NR`] = 16 window positions is filled tap by tap,
//! each tap's 16 pixels in one masked gather (AVX-512; the positions' offsets and the
//! padding tests fixed once per panel), nothing else written. CPUs without AVX-512 run
//! the same loop a lane at a time (`Loops::Avx2` and `Portable`): it only copies values,
//! so every path gives the same bits, those of the engine on the materialised columns.

use super::Geom;
use crate::ops::cpu_gemm;
use crate::ops::precision::Precision;
use crate::ops::sgemm::{self, Loops, PanelSource, NR};

/// Window positions per image up to which a forward product takes this path. Measured
/// (`duel bench --threads 2`, this Xeon with AVX-512) against im2col and the GEMM's own
/// packing: faster at 49 positions (dcgan28's D.conv2 forward and G.convt1 input gradient
/// 3.35 → 3.05 ms) and 64 (dcgan64's G.convt3 input gradient 16.8 → 15.0), equal at 16,
/// slower at 256 (dcgan64's D.conv2 forward 15.5 → 17.1), where im2col's runs are long and
/// the gathers' strided reads are not.
const MAX_POSITIONS: usize = 128;

/// Whether a forward product takes this path (in f32, on a CPU with duel's engine): at
/// most [`MAX_POSITIONS`] per image, at least `sgemm::MIN_K` taps (below, the thin layers'
/// `R = 16`, the `gemm` crate's unpacked kernels stay faster), and offsets that fit the
/// gather's 32-bit indices.
pub(super) fn fits(g: &Geom) -> bool {
    let taps = g.rows() >= sgemm::MIN_K;
    let indices = g.n * g.image_len() < i32::MAX as usize;
    taps && indices && (1..=MAX_POSITIONS).contains(&g.cols())
}

/// `im2col(x)` of images `n0 ..` as a `k x n` operand: row `r = (c, i, t)` (a tap), column
/// `j = (n − n0)·L + oy·wo + ox` (a window position), value
/// `x[n, c, oy·sh − ph + i·dh, ox·sw − pw + t·dw]`, zero outside the image.
pub(super) struct Windows<'a> {
    pub img: &'a [f32],
    pub g: &'a Geom,
    pub n0: usize,
    pub loops: Loops,
    /// The values rounded to this (the f32 GEMM route of `cpu_gemm` at bf16 / f16).
    pub precision: Precision,
}

/// A panel's 16 positions: the offset of each one's window corner `x[n, 0, y0, x0]` (may
/// lie in the padding) and `y0`, `x0`, all as i32; lanes past the operand's columns have
/// `y0 = i32::MIN`, outside every image.
struct Lanes {
    base: [i32; NR],
    y0: [i32; NR],
    x0: [i32; NR],
}

impl Windows<'_> {
    fn lanes(&self, j0: usize, cols: usize) -> Lanes {
        let g = self.g;
        let l = g.cols();
        let mut lanes = Lanes {
            base: [0; NR],
            y0: [i32::MIN; NR],
            x0: [0; NR],
        };
        for lane in 0..cols.min(NR) {
            let j = j0 + lane;
            let (n, pos) = (self.n0 + j / l, j % l);
            let y0 = (pos / g.wo * g.sh) as i32 - g.ph as i32;
            let x0 = (pos % g.wo * g.sw) as i32 - g.pw as i32;
            lanes.base[lane] = (n * g.image_len()) as i32 + y0 * g.w as i32 + x0;
            (lanes.y0[lane], lanes.x0[lane]) = (y0, x0);
        }
        lanes
    }

    /// Taps `r0 .. r0 + kc` of one panel: per tap, its row and column offsets and its
    /// offset in the image, in order.
    fn taps(&self, r0: usize, kc: usize) -> impl Iterator<Item = (i32, i32, i32)> + '_ {
        let g = self.g;
        let kk = g.kh * g.kw;
        (r0..r0 + kc).map(move |r| {
            let (c, i, t) = (r / kk, r % kk / g.kw, r % g.kw);
            let (dy, dx) = ((i * g.dh) as i32, (t * g.dw) as i32);
            (dy, dx, (c * g.h * g.w) as i32 + dy * g.w as i32 + dx)
        })
    }

    /// One panel a lane at a time (the reference the gather must equal).
    fn panel_lanes(&self, lanes: &Lanes, (r0, kc): (usize, usize), out: &mut [f32]) {
        let (h, w) = (self.g.h as i32, self.g.w as i32);
        for ((dy, dx, off), row) in self.taps(r0, kc).zip(out.chunks_exact_mut(NR)) {
            for (lane, v) in row.iter_mut().enumerate() {
                let (y, x) = (lanes.y0[lane].saturating_add(dy), lanes.x0[lane] + dx);
                *v = match (0..h).contains(&y) && (0..w).contains(&x) {
                    true => self.img[(lanes.base[lane] + off) as usize],
                    false => 0.0,
                };
            }
        }
    }

    /// One panel by masked gathers.
    ///
    /// # Safety
    /// AVX-512F; `self.img` holds every image the lanes name ([`fits`] and the caller's
    /// operand).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn panel_gather(&self, lanes: &Lanes, (r0, kc): (usize, usize), out: &mut [f32]) {
        use std::arch::x86_64::*;
        let load = |v: &[i32; NR]| _mm512_loadu_si512(v.as_ptr().cast());
        let (base, y0, x0) = (load(&lanes.base), load(&lanes.y0), load(&lanes.x0));
        let (h, w) = (
            _mm512_set1_epi32(self.g.h as i32),
            _mm512_set1_epi32(self.g.w as i32),
        );
        let zero = _mm512_setzero_ps();
        for ((dy, dx, off), row) in self.taps(r0, kc).zip(out.chunks_exact_mut(NR)) {
            // Unsigned compares: a negative row or column is out of range too; y0 = MIN
            // (no position) stays negative after adding dy.
            let y = _mm512_add_epi32(y0, _mm512_set1_epi32(dy));
            let x = _mm512_add_epi32(x0, _mm512_set1_epi32(dx));
            let inside = _mm512_cmplt_epu32_mask(y, h) & _mm512_cmplt_epu32_mask(x, w);
            let index = _mm512_add_epi32(base, _mm512_set1_epi32(off));
            let v = _mm512_mask_i32gather_ps::<4>(zero, inside, index, self.img.as_ptr());
            _mm512_storeu_ps(row.as_mut_ptr(), v);
        }
    }
}

impl PanelSource for Windows<'_> {
    fn pack(&self, rows: (usize, usize), (j0, cols): (usize, usize), to: &mut [f32]) {
        let kc = rows.1;
        for (panel, out) in to
            .chunks_exact_mut(NR * kc)
            .take(cols.div_ceil(NR))
            .enumerate()
        {
            let first = j0 + panel * NR;
            let lanes = self.lanes(first, j0 + cols - first);
            match self.loops {
                // SAFETY: Loops::Avx512 runs only where AVX-512F is; the lanes name
                // positions of the operand's images.
                #[cfg(target_arch = "x86_64")]
                Loops::Avx512 => unsafe { self.panel_gather(&lanes, rows, out) },
                _ => self.panel_lanes(&lanes, rows, out),
            }
            cpu_gemm::round_in_place(self.precision, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `im2col(x)[r, j]` from its definition (see [`Windows`]).
    fn column(g: &Geom, x: &[f32], n0: usize, r: usize, j: usize) -> f32 {
        let (kk, l) = (g.kh * g.kw, g.cols());
        let (c, i, t) = (r / kk, r % kk / g.kw, r % g.kw);
        let (n, pos) = (n0 + j / l, j % l);
        let y = (pos / g.wo * g.sh + i * g.dh) as isize - g.ph as isize;
        let xx = (pos % g.wo * g.sw + t * g.dw) as isize - g.pw as isize;
        if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
            return 0.0;
        }
        x[((n * g.c + c) * g.h + y as usize) * g.w + xx as usize]
    }

    /// Distinct nonzero values (so a wrong pixel or a missed zero shows), most of them not
    /// bf16 or f16 values (so a missed rounding shows).
    fn values(len: usize) -> Vec<f32> {
        (0..len).map(|i| 1.0 + i as f32 * 1.001).collect()
    }

    /// Every loop version packs exactly the definition's values (rounded to bf16 or f16
    /// where the product runs at that precision) — padding on every side,
    /// strides, dilations, panels that cross images, a last panel narrower than 16 lanes,
    /// k-blocks that start mid-channel — zero past the operand's columns.
    #[test]
    fn panels_hold_the_columns_of_their_definition_on_every_loop_version() {
        let cases = [
            Geom::of((3, 4, 14, 14), (4, 4), (2, 2), (1, 1), (1, 1)).unwrap(),
            Geom::of((2, 3, 9, 7), (3, 3), (1, 1), (2, 1), (1, 1)).unwrap(),
            Geom::of((2, 2, 11, 13), (3, 2), (2, 3), (1, 2), (2, 3)).unwrap(),
            Geom::of((4, 5, 5, 5), (4, 4), (1, 1), (0, 0), (1, 1)).unwrap(),
        ];
        for (case, g) in cases.iter().enumerate() {
            let x = values(g.n * g.image_len());
            let all = Loops::ALL.into_iter().filter(|l| l.available());
            let precisions = [Precision::F32, Precision::Bf16, Precision::F16];
            for (loops, precision) in all.flat_map(|l| precisions.map(|p| (l, p))) {
                for n0 in [0, 1] {
                    let source = Windows {
                        img: &x,
                        g,
                        n0,
                        loops,
                        precision,
                    };
                    let what = format!("case {case} {loops:?} {precision:?} n0 {n0}");
                    let cols = (g.n - n0) * g.cols();
                    for (r0, kc) in [(0, g.rows()), (5, g.rows() - 7)] {
                        for j0 in [0, 16, cols - cols % 16] {
                            let width = cols - j0;
                            let mut to = vec![f32::NAN; width.div_ceil(NR) * NR * kc];
                            source.pack((r0, kc), (j0, width), &mut to);
                            for p in 0..width.div_ceil(NR) * NR {
                                for k in 0..kc {
                                    let got = to[p / NR * NR * kc + k * NR + p % NR];
                                    let want = match p < width {
                                        true => column(g, &x, n0, r0 + k, j0 + p),
                                        false => 0.0,
                                    };
                                    let want = precision.round(want);
                                    assert!(
                                        got == want,
                                        "{what} r0 {r0} j0 {j0}: column {p} tap {k}: {got} \
                                         against {want}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
