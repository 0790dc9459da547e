//! The f32 weight gradient without a column matrix: `dW [O, R] = a · im2col(x)ᵀ` over the
//! whole batch, one product of depth `k = N·L` per channel group, its right operand
//! `im2col(x)ᵀ` packed by duel's engine straight from the image ([`Patches`], an
//! `sgemm::PanelSource`) and its left operand `a` packed once for all the groups.
//!
//! Why: the blocked path (`cpu.rs`) writes each block of columns, then the GEMM reads it
//! back transposed into its panels, and every channel group gathers and packs `a` again.
//! Here a panel of [`NR`] = 16 taps is one channel's `kh x kw` window (the geometries
//! [`fits`] takes: every DCGAN layer's 4x4), so each window position is `kh` runs of
//! `kw` adjacent pixels copied into one 64-byte row of the panel — the image is read once
//! per k-block, nothing else is written.
//!
//! Bits: each element is the engine's chain over k-blocks of `KC` window positions in
//! order, fixed by `(N, L)`; the groups come from `blocking::partition(C)` and each runs
//! on one thread (or, with fewer groups than threads, splits its tiles, which the engine
//! keeps bitwise), so the result is the same for any thread count.

use super::blocking::{partition, SendPtr};
use super::elem::Elem;
use super::Geom;
use crate::ops::cpu_gemm;
use crate::ops::cpu_shared::written_vec;
use crate::ops::precision::Precision;
use crate::ops::sgemm::{self, Loops, PanelSource, NR};
use rayon::prelude::*;

/// Whether a weight gradient takes this path (in f32, on a CPU with duel's engine): a
/// window of exactly [`NR`] taps whose rows are runs of adjacent pixels (`kh·kw = 16`,
/// `dw = 1`), at least one position.
pub(super) fn fits(g: &Geom) -> bool {
    g.kh * g.kw == NR && g.dw == 1 && g.cols() > 0 && g.n > 0
}

/// `im2col(x)ᵀ` of channels `c0 ..` of the batch, as a `k x n` operand: row `p = n·L + l`
/// (window position `l = oy·wo + ox` of image `n`), column `j = (c − c0)·kh·kw + i·kw + t`
/// (tap `(i, t)` of channel `c`), value `x[n, c, oy·sh − ph + i·dh, ox·sw − pw + t]`, zero
/// outside the image.
struct Patches<'a> {
    img: &'a [f32],
    g: &'a Geom,
    c0: usize,
    /// The values rounded to this (the f32 GEMM route of `cpu_gemm` at bf16 / f16).
    precision: Precision,
}

impl PanelSource for Patches<'_> {
    fn pack(&self, (p0, kc): (usize, usize), (j0, cols): (usize, usize), to: &mut [f32]) {
        let (g, kk) = (self.g, self.g.kh * self.g.kw);
        debug_assert!(j0.is_multiple_of(NR) && cols.is_multiple_of(NR) && kk == NR);
        for (panel, out) in to.chunks_exact_mut(NR * kc).take(cols / NR).enumerate() {
            let channel = self.c0 + (j0 + panel * NR) / kk;
            match g.kw {
                4 => self.panel::<4, 4>(channel, p0, out),
                2 => self.panel::<8, 2>(channel, p0, out),
                8 => self.panel::<2, 8>(channel, p0, out),
                1 => self.panel::<16, 1>(channel, p0, out),
                _ => self.panel::<1, 16>(channel, p0, out),
            }
            cpu_gemm::round_in_place(self.precision, out);
        }
    }
}

impl Patches<'_> {
    /// One channel's panel: per window position from `p0` on, its `KH` rows of `KW`
    /// pixels (`KH·KW = NR`, `kh = KH`, `kw = KW`) in tap order. Positions go by output
    /// row: the `KH` input lines of a row are found once, and only its border positions
    /// (the first and last, under padding) copy pixel by pixel.
    fn panel<const KH: usize, const KW: usize>(&self, c: usize, p0: usize, out: &mut [f32]) {
        let g = self.g;
        let (l, plane, w) = (g.cols(), g.h * g.w, g.w);
        let (mut p, end) = (p0, p0 + out.len() / NR);
        let mut rows = out.chunks_exact_mut(NR);
        while p < end {
            let (n, rest) = (p / l, p % l);
            let (oy, ox0) = (rest / g.wo, rest % g.wo);
            let ox1 = g.wo.min(ox0 + end - p);
            let image = &self.img[(n * g.c + c) * plane..][..plane];
            let lines: [Option<&[f32]>; KH] = std::array::from_fn(|i| {
                let y = (oy * g.sh + i * g.dh).checked_sub(g.ph)?;
                (y < g.h).then(|| &image[y * w..][..w])
            });
            for ox in ox0..ox1 {
                let row = rows.next().expect("a panel row per position");
                let x0 = (ox * g.sw) as isize - g.pw as isize;
                let inside = x0 >= 0 && x0 as usize + KW <= w;
                for (dst, line) in row.chunks_exact_mut(KW).zip(lines) {
                    match line {
                        None => dst.fill(0.0),
                        Some(line) if inside => {
                            let run: &[f32; KW] = line[x0 as usize..][..KW].try_into().unwrap();
                            dst.copy_from_slice(run)
                        }
                        Some(line) => {
                            for (t, d) in dst.iter_mut().enumerate() {
                                let x = usize::try_from(x0 + t as isize).ok();
                                *d = x.and_then(|x| line.get(x)).copied().unwrap_or(0.0);
                            }
                        }
                    }
                }
            }
            p += ox1 - ox0;
        }
    }
}

/// `dW [O, R] = Σ_n a[n] · im2col(img[n])ᵀ` for `a` `[N, O, L]` and `img` `[N, C, h, w]`
/// (see the module doc), on the engine's `loops`, both operands rounded to `precision`
/// (where `cpu_gemm::f32_route` says the GEMM would round them).
pub(super) fn weight_grad(
    g: &Geom,
    o: usize,
    (img, a): (&[f32], &[f32]),
    loops: Loops,
    precision: Precision,
) -> Vec<f32> {
    let (l, r, k) = (g.cols(), g.rows(), g.n * g.cols());
    assert!(img.len() >= g.n * g.image_len() && a.len() >= g.n * o * l);
    // a as [O, N·L]: the images' runs side by side, then packed once for every group.
    let packed = f32::with_ws(o * k, |at| {
        at.par_chunks_mut(k).enumerate().for_each(|(co, row)| {
            for (dst, n) in row.chunks_exact_mut(l).zip(0..) {
                dst.copy_from_slice(&a[(n * o + co) * l..][..l]);
            }
            cpu_gemm::round_in_place(precision, row);
        });
        // SAFETY: `at` is o x k, row-major.
        unsafe { sgemm::PackedA::new(loops, (at.as_ptr(), k, 1), o, k) }
    });
    let rows = packed.rows(0, o).expect("all the rows of the packed a");
    let groups = partition(g.c);
    let threads = rayon::current_num_threads().div_ceil(groups.len()).max(1);
    let kk = g.kh * g.kw;
    // SAFETY: the groups' columns c0·kk .. (c0 + cn)·kk cover every row of dW, and an
    // overwriting product stores every element of its first k-block (k = N·L ≥ 1).
    unsafe {
        written_vec(o * r, |dw| {
            let out = SendPtr(dw.as_mut_ptr().cast::<f32>());
            groups.into_par_iter().for_each(|(c0, cn)| {
                let source = Patches {
                    img,
                    g,
                    c0,
                    precision,
                };
                // The group writes its own columns of every row; the source packs rows < k
                // and columns < cn·kk of its operand.
                let c = (out.get().add(c0 * kk), r);
                sgemm::sgemm_sourced(rows, cn * kk, c, false, &source, threads)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The geometry of a window with column dilation 1.
    fn geom(
        dims: (usize, usize, usize, usize),
        window: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dh: usize,
    ) -> Geom {
        Geom::of(dims, window, stride, padding, (dh, 1)).expect("the window fits")
    }

    /// Values in [-1, 1) from a fixed LCG: exact in f32, different at every index.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The definition in f64: `dW[o, (c, i, t)] = Σ_{n, oy, ox} a[n, o, oy, ox] ·
    /// x[n, c, oy·sh − ph + i·dh, ox·sw − pw + t]`, and the same sum of `|a·x|`.
    fn reference(g: &Geom, o: usize, x: &[f32], a: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (r, l) = (g.rows(), g.cols());
        let (mut dw, mut mag) = (vec![0.0; o * r], vec![0.0; o * r]);
        for n in 0..g.n {
            for co in 0..o {
                for c in 0..g.c {
                    for i in 0..g.kh {
                        for t in 0..g.kw {
                            let j = (c * g.kh + i) * g.kw + t;
                            for oy in 0..g.ho {
                                for ox in 0..g.wo {
                                    let y = (oy * g.sh + i * g.dh) as isize - g.ph as isize;
                                    let xx = (ox * g.sw + t) as isize - g.pw as isize;
                                    if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * g.c + c) * g.h + y as usize) * g.w + xx as usize];
                                    let av = a[(n * o + co) * l + oy * g.wo + ox];
                                    let term = xv as f64 * av as f64;
                                    dw[co * r + j] += term;
                                    mag[co * r + j] += term.abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, mag)
    }

    /// Every window shape of 16 taps, strides, padding past the window's reach, a row
    /// dilation, `O` not a multiple of the tile rows, more and fewer channels than groups,
    /// operands rounded to bf16 and f16: the patch path matches the f64 definition (on the
    /// rounded operands: their products are exact in f32) within the engine's error bound,
    /// and is bitwise the same on every loop version this CPU runs and on 1, 2 and 3
    /// threads.
    ///
    /// Bound: each element is a chain of FMAs over k-blocks of at most `KC` = 256 terms,
    /// the blocks' sums then added in turn; every rounding is at most `u = 2⁻²⁴` of the
    /// magnitudes it has summed, so `|got − exact| ≤ (min(k, KC) + ⌈k / KC⌉)·u·Σ|a·x|`
    /// to first order (1% added for the second).
    #[test]
    fn weight_grad_matches_its_f64_definition_bitwise_across_loops_and_threads() {
        let cases = [
            geom((3, 5, 14, 14), (4, 4), (2, 2), (1, 1), 1),
            geom((2, 4, 9, 11), (4, 4), (1, 1), (3, 2), 1),
            geom((2, 6, 12, 10), (4, 4), (1, 2), (2, 0), 2),
            geom((2, 4, 7, 20), (2, 8), (1, 2), (1, 3), 1),
            geom((2, 4, 19, 6), (8, 2), (2, 1), (0, 1), 1),
            geom((1, 9, 18, 5), (16, 1), (1, 1), (0, 0), 1),
            geom((2, 4, 3, 40), (1, 16), (1, 3), (0, 2), 1),
            geom((300, 4, 4, 4), (4, 4), (1, 1), (0, 0), 1),
        ];
        let loops: Vec<Loops> = Loops::ALL.into_iter().filter(|l| l.available()).collect();
        let precisions = [Precision::F32, Precision::Bf16, Precision::F16];
        for (case, g) in cases.iter().enumerate() {
            for (o, precision) in [5, 13].into_iter().flat_map(|o| precisions.map(|p| (o, p))) {
                let what = format!("case {case} o {o} {precision:?}");
                let x = values(g.n * g.image_len(), 2 * case as u64 + 1);
                let a = values(g.n * o * g.cols(), 2 * case as u64 + 2);
                let round =
                    |v: &[f32]| -> Vec<f32> { v.iter().map(|&e| precision.round(e)).collect() };
                let (exact, mag) = reference(g, o, &round(&x), &round(&a));
                let k = g.n * g.cols();
                let kc = sgemm::KC;
                let bound = (k.min(kc) + k.div_ceil(kc)) as f64 * 2f64.powi(-24) * 1.01;
                let first = weight_grad(g, o, (&x, &a), loops[0], precision);
                for (j, (&got, (&e, &m))) in first.iter().zip(exact.iter().zip(&mag)).enumerate() {
                    let err = (got as f64 - e).abs();
                    assert!(
                        err <= bound * m,
                        "{what} element {j}: {got} against {e}, error {err:e} > {:e}",
                        bound * m
                    );
                }
                for &l in &loops {
                    for threads in [1, 2, 3] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads);
                        let pool = pool.build().unwrap();
                        let got = pool.install(|| weight_grad(g, o, (&x, &a), l, precision));
                        assert!(got == first, "{what}: {l:?} on {threads} threads differs");
                    }
                }
            }
        }
    }
}
