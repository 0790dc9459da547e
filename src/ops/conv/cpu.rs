//! cpu conv2d / conv_transpose2d (f32 and f64): im2col / col2im around the cpu GEMM
//! (`ops::cpu_gemm`: duel's own `ops::sgemm` on AVX2-only CPUs, the `gemm` crate elsewhere).
//!
//! The three primitives of `mod.rs` over the column geometry [`Geom`] (image
//! `[N, C, h, w]`, columns `[R = C·kh·kw, L = ho·wo]`, the other side of the weight `O`
//! channels, weight `W` as `[O, R]` row-major):
//! - [`column_products`] ([`im2col_products`]): per image `col = im2col(img[n])`, then
//!   `out[n] = W·col` when a weight is given and/or `dW += a[n]·colᵀ` when `a` is.
//! - [`col2im_product`]: per image `img[n] = col2im(Wᵀ·a[n])`.
//! - [`bias_grad`]: `db[c] = Σ_{n, l} dy[n, c, l]`.
//!
//! Batching: images are processed in blocks (see [`block_images`]) whose column matrices
//! sit side by side (`[R, B·L]`, rows padded by [`padded_stride`]), so every GEMM has
//! hundreds of columns even where one image has few window positions (the 7x7 grid of
//! the DCGAN's second layer) or a thin `R` (the 1-channel layers, `R = kh·kw = 16`), and
//! a block stays about the size of a core's L2. Outputs are copied from the block product
//! to each image, and the `a` operand of the weight gradient is gathered likewise.
//!
//! Threading: the batch is split by [`partition`] into tasks of whole blocks, a partition
//! fixed by the geometry and never by the thread count; each task runs its GEMMs on one
//! thread. The weight gradient alone is split by input channels instead
//! ([`weight_grad_by_channels`]: each task owns columns of `dW`, so none repeats another's
//! im2col and nothing is summed across tasks); layers with fewer channels than tasks
//! accumulate it per batch task and sum the partials in task order. Either way results
//! are bitwise the same for any number of threads.
//!
//! Workspaces: the column matrix and the block product of each thread live in a
//! thread-local `Vec` that grows to the largest size seen and is reused by every later
//! call (rayon's threads persist).
//!
//! Layers whose one window covers the whole image (`L = 1`, no padding) skip all of this:
//! their column matrix is the image itself, and `dense.rs` runs them as one GEMM over the
//! batch.
//!
//! 1-channel layers: a direct loop (each output row accumulating `kh·kw` shifted input
//! rows) was measured against this path on the DCGAN's first layer (batch 64, 1→64,
//! 4x4/2/1): 17–19 ms against 0.65 ms for im2col + blocked GEMM, so the thin layers
//! take the GEMM path too; blocking the batch is what makes their GEMM wide.

use super::cols::{col2im, im2col, scratch_len};
use super::dense;
use super::elem::Elem;
use super::{Columns, Geom, Plan};
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::ops::cpu_gemm::{self, padded_stride};
use crate::ops::precision::Precision;
use crate::ops::sgemm;
use crate::tensor::{DType, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::RwLockReadGuard;

/// Multiply-adds of one GEMM from which it is split across threads (when the batch is not).
const PARALLEL_FLOPS: usize = 1 << 18;

/// Raw pointers are not `Send`; every chunk below writes disjoint output ranges.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Tasks a batch is split into: four of near-equal image counts, so 1, 2 or 4 threads
/// get equal work (whole GEMM blocks per task used to leave a short last task: 6 tasks of
/// 11, 11, 11, 11, 11, 9 images on dcgan28's 7x7 layers). Few tasks also keep the GEMMs
/// wide and the weight-gradient partials few.
const TASKS: usize = 4;

/// The fixed partition of `n` images into tasks `(first, count)`, sizes differing by at
/// most one. It depends on `n` only, never on the thread count, so every sum is formed in
/// the same order on any machine.
fn partition(n: usize) -> Vec<(usize, usize)> {
    let t = TASKS.min(n).max(1);
    (0..t)
        .map(|i| (i * n / t, (i + 1) * n / t - i * n / t))
        .collect()
}

/// Run `f(first, count, par)` for every task of [`partition`], in parallel, returning the
/// results in task order. A lone task splits its GEMMs across the pool instead (gemm
/// splits over output tiles only, so that is thread-count independent too).
fn for_tasks<R: Send>(
    n: usize,
    flops: usize,
    f: impl Fn(usize, usize, Parallelism) -> R + Sync,
) -> Vec<R> {
    let tasks = partition(n);
    if tasks.len() == 1 {
        let par = if flops >= PARALLEL_FLOPS && rayon::current_num_threads() > 1 {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        tasks.into_iter().map(|(s, c)| f(s, c, par)).collect()
    } else {
        tasks
            .into_par_iter()
            .map(|(s, c)| f(s, c, Parallelism::None))
            .collect()
    }
}

/// Columns of one block: at most [`BLOCK_COLS`], and fewer where the column matrix is
/// tall, so that a block of `R x cols` values stays near [`BLOCK_ELEMS`] (1 MiB of f32,
/// a core's L2 here) while im2col writes it and the GEMM reads it — or the GEMM writes
/// it and col2im reads it. Measured on dcgan64's 16x16 and 8x8 layers (`R` = 2048, 4096):
/// the input gradient of D.conv4 22 → 15 ms. Never below 256 columns, so the GEMMs stay
/// wide.
const BLOCK_COLS: usize = 1024;
const BLOCK_ELEMS: usize = 1 << 18;

/// The target width of a block whose column matrix has `r` rows (see above).
fn block_width(r: usize) -> usize {
    (BLOCK_ELEMS / r.max(1)).clamp(256, BLOCK_COLS)
}

/// Images per block of a task of `count` images with `r` rows of columns: the task cut
/// into equal blocks of at most about [`block_width`] (one block when a whole task fits).
fn block_images(l: usize, count: usize, r: usize) -> usize {
    let target = block_width(r);
    let blocks = (count * l).div_ceil(target).max(1);
    count.div_ceil(blocks).max(1)
}

/// Columns the f32 GEMM's main microkernel covers at once: the `gemm` crate's AVX-512
/// kernel holds 4 vectors of 16 along the block's columns, and the columns past the last
/// full strip run on its narrow edge kernels (on dcgan28's 7x7 layers in blocks of 4
/// images, 196 = 3·64 + 4 columns, the edge kernel `x1x6` took 5.5% of a training step
/// beside 43.5% for the full `x4x6`). [`strip_images`] counts a partial strip as a
/// full one: a simplification, which measured 5–8% faster on those layers' products.
const GEMM_STRIP: usize = 64;
/// A GEMM call's fixed cost (packing the weight) in columns of work, for [`strip_images`].
const CALL_COLS: usize = 32;

/// Images per block where the block's columns are the GEMM's `n`: the count, at most the
/// L2 width of [`block_images`] (or one more image where that fits the target), that
/// wastes the fewest columns in partial [`GEMM_STRIP`]s, counting [`CALL_COLS`] per call.
fn strip_images(l: usize, count: usize, r: usize) -> usize {
    let widest = block_images(l, count, r)
        .max(block_width(r) / l.max(1))
        .min(count);
    let cost = |b: usize| {
        let (full, rest) = (count / b, count % b);
        let strips = |imgs: usize| (imgs * l).div_ceil(GEMM_STRIP) * GEMM_STRIP + CALL_COLS;
        full * strips(b) + if rest > 0 { strips(rest) } else { 0 }
    };
    (1..=widest.max(1))
        .rev()
        .min_by_key(|&b| cost(b))
        .unwrap_or(1)
}

/// `tmp [O, nb·L]` (row stride `ld`, like the columns) = images `n0 .. n0 + nb` of `a`
/// (`[N, O, L]`) side by side: the block operand of a GEMM against the column block.
fn gather_block<T: Elem>(
    a: &[T],
    n0: usize,
    nb: usize,
    o: usize,
    l: usize,
    tmp: &mut [T],
    ld: usize,
) {
    for k in 0..nb {
        let an = &a[(n0 + k) * o * l..][..o * l];
        for (co, src) in an.chunks_exact(l).enumerate() {
            T::copy_run(&mut tmp[co * ld + k * l..][..l], src);
        }
    }
}

/// `dW [O, R] = Σ_n a[n]·im2col(img[n])ᵀ` split by input channels: [`partition`] cuts the
/// `C` channels into fixed groups, and each group (one task) forms its rows
/// `c·kh·kw ..` of the columns for the whole batch, block by block, accumulating
/// `dW[:, its rows] += a_blk · col_blkᵀ` in block order. Unlike splitting the batch, no
/// task repeats another's im2col, there are no per-task partials to add, and every GEMM
/// runs over ~1024 window positions at once; the groups are fixed by `C`, so the sums are
/// the same for any thread count. Needs `C ≥ TASKS` (thin layers split the batch).
fn weight_grad_by_channels<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    img: &[T],
    a: &[T],
) -> Vec<T> {
    let (r, l) = (g.rows(), g.cols());
    let (il, plane) = (g.image_len(), g.h * g.w);
    let b = block_images(l, g.n, r.div_ceil(TASKS));
    let ld = padded_stride(b * l);
    let parts: Vec<Vec<T>> = partition(g.c)
        .into_par_iter()
        .map(|(c0, cn)| {
            let sub = Geom { c: cn, ..*g };
            let rp = sub.rows();
            let mut part = vec![T::ZERO; o * rp];
            T::with_ws(rp * ld + o * ld + scratch_len(&sub), |ws| {
                let (col, rest) = ws.split_at_mut(rp * ld);
                let (tmp, scratch) = rest.split_at_mut(o * ld);
                for n0 in (0..g.n).step_by(b) {
                    let nb = b.min(g.n - n0);
                    for k in 0..nb {
                        let channels = &img[(n0 + k) * il + c0 * plane..][..cn * plane];
                        im2col(channels, &sub, &mut col[k * l..], ld, scratch);
                    }
                    gather_block(a, n0, nb, o, l, tmp, ld);
                    // part [O, rp] += a_blk [O, nb·L] · col_blkᵀ [nb·L, rp]
                    unsafe {
                        cpu_gemm::gemm(
                            prec,
                            o,
                            rp,
                            nb * l,
                            (&mut part, rp),
                            n0 > 0,
                            (tmp.as_ptr(), ld, 1),
                            (col.as_ptr(), 1, ld),
                            Parallelism::None,
                        )
                    };
                }
            });
            part
        })
        .collect();
    let mut dw = vec![T::ZERO; o * r];
    let mut c0 = 0;
    for part in &parts {
        let rp = part.len() / o.max(1);
        for (row, src) in dw.chunks_exact_mut(r).zip(part.chunks_exact(rp.max(1))) {
            row[c0..c0 + rp].copy_from_slice(src);
        }
        c0 += rp;
    }
    debug_assert_eq!(c0, r);
    dw
}

/// Per block of images `col = [im2col(img[n]) …]` (`[R, B·L]`); then `out[n] = W·col (+
/// bias)` when `w` is given (`out` is `[N, O, L]`), and `dW = Σ a[n]·colᵀ` when `a` is
/// given (returned, `[O, R]`).
#[allow(clippy::too_many_arguments)]
fn im2col_products<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    img: &[T],
    w: Option<&[T]>,
    bias: Option<&[T]>,
    out: Option<&mut [T]>,
    a: Option<&[T]>,
) -> Option<Vec<T>> {
    let (r, l) = (g.rows(), g.cols());
    let flops = g.n * o * r * l * (w.is_some() as usize + a.is_some() as usize);
    let out_ptr = out.map(|s| SendPtr(s.as_mut_ptr()));
    let il = g.image_len();
    // SAFETY: w is [O, R].
    let packed_w = w.and_then(|w| unsafe { cpu_gemm::prepack(prec, o, r, (w.as_ptr(), r, 1)) });
    let partials = for_tasks(g.n, flops, |first, count, par| {
        let mut dw = a.map(|_| vec![T::ZERO; o * r]);
        let b = strip_images(l, count, r);
        let ld = padded_stride(b * l);
        // Workspace: the columns [R, B·L], the products / gathered a [O, B·L], the phases.
        T::with_ws(r * ld + o * ld + scratch_len(g), |ws| {
            let (col, rest) = ws.split_at_mut(r * ld);
            let (tmp, scratch) = rest.split_at_mut(o * ld);
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let cols = nb * l;
                for k in 0..nb {
                    im2col(
                        &img[(n0 + k) * il..][..il],
                        g,
                        &mut col[k * l..],
                        ld,
                        scratch,
                    );
                }
                if let (Some(w), Some(out)) = (w, out_ptr) {
                    // tmp [O, B·L] = W [O, R] · col [R, B·L]
                    unsafe {
                        cpu_gemm::gemm_packed(
                            packed_w.as_ref().map(|p| (p, 0)),
                            prec,
                            (o, cols, r),
                            (tmp, ld),
                            false,
                            (w.as_ptr(), r, 1),
                            (col.as_ptr(), ld, 1),
                            par,
                        )
                    };
                    for k in 0..nb {
                        // SAFETY: image n owns out[n·O·L .. (n+1)·O·L]; chunks are disjoint.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add((n0 + k) * o * l), o * l)
                        };
                        for (co, row) in dst.chunks_exact_mut(l).enumerate() {
                            let src = &tmp[co * ld + k * l..][..l];
                            match bias {
                                Some(bv) => {
                                    let bv = bv[co];
                                    row.iter_mut().zip(src).for_each(|(d, &s)| *d = s + bv);
                                }
                                None => T::copy_run(row, src),
                            }
                        }
                    }
                }
                if let (Some(a), Some(dw)) = (a, dw.as_mut()) {
                    // Gather a [O, B·L] (row stride `ld`, like col) from the images,
                    // then dW [O, R] += a · colᵀ.
                    gather_block(a, n0, nb, o, l, tmp, ld);
                    unsafe {
                        cpu_gemm::gemm(
                            prec,
                            o,
                            r,
                            cols,
                            (dw, r),
                            true,
                            (tmp.as_ptr(), ld, 1),
                            (col.as_ptr(), 1, ld),
                            par,
                        )
                    };
                }
            }
        });
        dw
    });
    a?;
    let mut iter = partials.into_iter().flatten();
    let mut total = iter.next().unwrap_or_else(|| vec![T::ZERO; o * r]);
    for p in iter {
        total.iter_mut().zip(&p).for_each(|(t, &v)| *t += v);
    }
    Some(total)
}

/// Channels per tile of a col2im block: the GEMM writes the tile's `channels·kh·kw` rows
/// of the block and col2im adds them into those channels while they are still in L2
/// (tiles of about [`BLOCK_ELEMS`], a quarter more allowed before a block is cut, cut into
/// equal tiles), instead of the whole block going out to L3 and back (`R` = 4096 on
/// dcgan64's 8x8 and 4x4 layers: 4 MiB; its D.conv4 input gradient 21 → 12 ms). Each
/// pixel's terms come from its own channel's rows, in the same order, so the tiling
/// changes no bit of col2im; the GEMM's elements are the same dot products (`ops::sgemm` and the
/// `gemm` crate block k by k alone, `gemm_bf16` by fixed blocks of 32). A tile's rows
/// are rounded to whole panels of the engine's packed `Wᵀ` ([`sgemm::MR`] rows), so every
/// tile reads its rows from the one packing of the call.
fn col2im_channels(g: &Geom, ld: usize) -> usize {
    let kk = (g.kh * g.kw).max(1);
    let per_channel = kk * ld.max(1);
    let tiles = (g.c * per_channel)
        .div_ceil(BLOCK_ELEMS + BLOCK_ELEMS / 4)
        .max(1);
    let whole_panels = sgemm::MR / gcd(kk, sgemm::MR);
    g.c.div_ceil(tiles)
        .next_multiple_of(whole_panels)
        .min(g.c)
        .max(1)
}

fn gcd(a: usize, b: usize) -> usize {
    match b {
        0 => a,
        _ => gcd(b, a % b),
    }
}

/// Per image `img[n] = col2im(Wᵀ·a[n]) (+ bias per image channel)`; `a` is `[N, O, L]`,
/// `w` is `[O, R]`, `img` is `[N, C, h, w]`. Blocks of images share one GEMM as above.
fn col2im_into<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    a: &[T],
    w: &[T],
    bias: Option<&[T]>,
    img: &mut [T],
) {
    let (r, l) = (g.rows(), g.cols());
    let img_ptr = SendPtr(img.as_mut_ptr());
    let il = g.image_len();
    // SAFETY: w is [O, R], read as Wᵀ [R, O].
    let packed_wt = unsafe { cpu_gemm::prepack(prec, r, o, (w.as_ptr(), 1, r)) };
    for_tasks(g.n, g.n * o * r * l, |first, count, par| {
        let b = strip_images(l, count, r);
        let ld = padded_stride(b * l);
        let (kk, tile) = (g.kh * g.kw, col2im_channels(g, ld));
        let tile_rows = tile * kk;
        T::with_ws(tile_rows * ld + o * ld + scratch_len(g), |ws| {
            let (col, rest) = ws.split_at_mut(tile_rows * ld);
            let (tmp, scratch) = rest.split_at_mut(o * ld);
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let cols = nb * l;
                gather_block(a, n0, nb, o, l, tmp, ld);
                for c0 in (0..g.c).step_by(tile) {
                    let sub = Geom {
                        c: tile.min(g.c - c0),
                        ..*g
                    };
                    // col [R', B·L] = Wᵀ [R', O] · a [O, B·L] for the tile's rows R' (its
                    // channels' taps), both at row stride `ld`
                    unsafe {
                        cpu_gemm::gemm_packed(
                            packed_wt.as_ref().map(|p| (p, c0 * kk)),
                            prec,
                            (sub.rows(), cols, o),
                            (col, ld),
                            false,
                            (w.as_ptr().add(c0 * kk), 1, r),
                            (tmp.as_ptr(), ld, 1),
                            par,
                        )
                    };
                    for k in 0..nb {
                        // SAFETY: image n owns img[n·il .. (n+1)·il], its channels from c0
                        // the tile's part of it; chunks are disjoint.
                        let dst = unsafe {
                            let at = (n0 + k) * il + c0 * g.h * g.w;
                            std::slice::from_raw_parts_mut(img_ptr.get().add(at), sub.image_len())
                        };
                        col2im(&col[k * l..], &sub, dst, ld, scratch);
                    }
                }
                if let Some(bv) = bias {
                    for k in 0..nb {
                        // SAFETY: as above, the whole image.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(img_ptr.get().add((n0 + k) * il), il)
                        };
                        let hw = g.h * g.w;
                        for (plane, &b) in dst.chunks_exact_mut(hw).zip(bv) {
                            plane.iter_mut().for_each(|v| *v += b);
                        }
                    }
                }
            }
        })
    });
}

/// `db[c] = Σ_{n, s} dy[n, c, s]` for `dy` of `[N, C, S]`.
fn bias_grad_of<T: Elem>(dy: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
    (0..c)
        .map(|ch| {
            let mut acc = T::ZERO;
            for i in 0..n {
                for &v in &dy[(i * c + ch) * s..][..s] {
                    acc += v;
                }
            }
            acc
        })
        .collect()
}

// ---- the primitives of `mod.rs` on cpu tensors --------------------------------------

const OP: &str = "conv";

/// A read guard on a contiguous, offset-0 cpu operand (as `mod.rs` passes them).
struct Operand<'a> {
    buffer: RwLockReadGuard<'a, CpuBuffer>,
    len: usize,
}

fn operand(t: &Tensor) -> Result<Operand<'_>> {
    Ok(Operand {
        buffer: t.cpu_buffer(OP)?,
        len: t.numel(),
    })
}

impl Operand<'_> {
    fn elems<T: Elem>(&self) -> Result<&[T]> {
        T::slice(&self.buffer)
            .map(|v| &v[..self.len])
            .ok_or_else(|| {
                Error::dtype(OP, "operands of one call differ in dtype (internal error)")
            })
    }
}

/// Run the f32 or f64 instance of a primitive by the dtype of `t`.
macro_rules! by_dtype {
    ($t:expr, $f:ident($($arg:expr),*)) => {
        match $t.dtype() {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            d => Err(Error::dtype(OP, format!("the cpu convolution computes in f32 or f64, not {d}"))),
        }
    };
}

pub(super) fn column_products(
    plan: &Plan,
    img: &Tensor,
    w: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: Option<&Tensor>,
) -> Result<Columns> {
    by_dtype!(img, column_products_of(plan, img, w, bias, a))
}

fn column_products_of<T: Elem>(
    plan: &Plan,
    img: &Tensor,
    w: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: Option<&Tensor>,
) -> Result<Columns> {
    let (g, o) = (&plan.geom, plan.other);
    let img_g = operand(img)?;
    let w_g = w.map(operand).transpose()?;
    let b_g = bias.map(operand).transpose()?;
    let a_g = a.map(operand).transpose()?;
    let w_s = w_g.as_ref().map(Operand::elems::<T>).transpose()?;
    let b_s = b_g.as_ref().map(Operand::elems::<T>).transpose()?;
    let a_s = a_g.as_ref().map(Operand::elems::<T>).transpose()?;
    let mut out = w_s.map(|_| vec![T::ZERO; g.n * o * g.cols()]);
    let dw = match (w_s, a_s) {
        _ if dense::covers_image(g) => dense::column_products(
            g,
            plan.precision,
            o,
            img_g.elems::<T>()?,
            w_s,
            b_s,
            out.as_deref_mut(),
            a_s,
        ),
        (None, Some(a)) if g.c >= TASKS => Some(weight_grad_by_channels(
            g,
            plan.precision,
            o,
            img_g.elems::<T>()?,
            a,
        )),
        _ => im2col_products(
            g,
            plan.precision,
            o,
            img_g.elems::<T>()?,
            w_s,
            b_s,
            out.as_deref_mut(),
            a_s,
        ),
    };
    Ok(Columns {
        product: out
            .map(|v| Tensor::from_cpu_buffer(T::wrap(v), [g.n, o, g.cols()]))
            .transpose()?,
        weight_grad: dw
            .map(|v| Tensor::from_cpu_buffer(T::wrap(v), [o, g.rows()]))
            .transpose()?,
    })
}

pub(super) fn col2im_product(
    plan: &Plan,
    a: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    by_dtype!(a, col2im_product_of(plan, a, w, bias))
}

fn col2im_product_of<T: Elem>(
    plan: &Plan,
    a: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let g = &plan.geom;
    let (a_g, w_g) = (operand(a)?, operand(w)?);
    let b_g = bias.map(operand).transpose()?;
    let b_s = b_g.as_ref().map(Operand::elems::<T>).transpose()?;
    let mut img = vec![T::ZERO; g.n * g.image_len()];
    let into = match dense::covers_image(g) {
        true => dense::col2im_into,
        false => col2im_into,
    };
    into(
        g,
        plan.precision,
        plan.other,
        a_g.elems::<T>()?,
        w_g.elems::<T>()?,
        b_s,
        &mut img,
    );
    Tensor::from_cpu_buffer(T::wrap(img), [g.n, g.c, g.h, g.w])
}

pub(super) fn bias_grad(dy: &Tensor, channels: usize) -> Result<Tensor> {
    by_dtype!(dy, bias_grad_t(dy, channels))
}

fn bias_grad_t<T: Elem>(dy: &Tensor, channels: usize) -> Result<Tensor> {
    let n = dy.dims()[0];
    let s = dy.numel().checked_div(n * channels).unwrap_or(0);
    let db = bias_grad_of(operand(dy)?.elems::<T>()?, n, channels, s);
    Tensor::from_cpu_buffer(T::wrap(db), [channels])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns the GEMMs of a task compute, partial strips padded out.
    fn padded_cols(l: usize, count: usize, b: usize) -> usize {
        (0..count)
            .step_by(b)
            .map(|n0| (b.min(count - n0) * l).next_multiple_of(GEMM_STRIP))
            .sum()
    }

    /// The strip-aware block never pads more than the L2-sized one it replaces, stays
    /// within the L2 width, and on dcgan28's 7x7 layers (16 images a task, R = 1024) cuts
    /// the padding of blocks of 4 images (4·196 columns in 4·256) to 13 strips (832).
    #[test]
    fn strip_blocks_pad_no_more_than_l2_blocks() {
        for l in [1, 4, 16, 49, 64, 196, 256, 784, 1024] {
            for count in [1, 3, 15, 16, 17, 64] {
                for r in [16, 100, 1024, 2048, 4096] {
                    let (old, new) = (block_images(l, count, r), strip_images(l, count, r));
                    assert!(
                        (1..=count).contains(&new),
                        "l {l} count {count} r {r}: {new}"
                    );
                    let width = block_width(r).max(old * l);
                    assert!(new * l <= width.max(l), "l {l} count {count} r {r}: {new}");
                    let (po, pn) = (padded_cols(l, count, old), padded_cols(l, count, new));
                    let calls = |b: usize| count.div_ceil(b) * CALL_COLS;
                    assert!(
                        pn + calls(new) <= po + calls(old),
                        "l {l} count {count} r {r}: {new} pads {pn}, {old} pads {po}"
                    );
                }
            }
        }
        assert_eq!(block_images(49, 16, 1024), 4);
        assert_eq!(padded_cols(49, 16, 4), 1024);
        assert_eq!(padded_cols(49, 16, strip_images(49, 16, 1024)), 832);
    }
}
