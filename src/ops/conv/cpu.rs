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
//! are bitwise the same for any number of threads. In f32 on CPUs that run duel's engine,
//! a weight gradient of 16-tap windows (every DCGAN layer's 4x4) from `TASKS` channels on
//! skips the column matrix altogether (`patches.rs`: 3.7 → 3.15 ms on dcgan28's D.conv2),
//! and so does a forward product of at most 128 window positions per image (`windows.rs`:
//! 3.33 → 3.04 ms there), at bf16 / f16 too where `cpu_gemm` would round the operands.
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

use super::blocking::{
    block_images, col2im_channels, for_tasks, partition, product_images, strip_images, SendPtr,
    TASKS,
};
use super::cols::{col2im, im2col, scratch_len};
use super::dense;
use super::elem::Elem;
use super::patches;
use super::windows;
use super::{Columns, Geom, Plan};
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::ops::cpu_gemm::{self, padded_stride};
use crate::ops::cpu_shared::{filled, lane_sum, written_vec};
use crate::ops::precision::Precision;
use crate::ops::sgemm;
use crate::tensor::{DType, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::RwLockReadGuard;

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

/// `out[n] (+ bias per channel) = tmp[:, k·L ..][..L]` for the block's images `n0 + k`:
/// the block product `tmp [O, nb·L]` (row stride `ld`) back into `[N, O, L]`.
///
/// # Safety
/// `out` writable at images `n0 .. n0 + nb` (`O·L` each), which no one else writes.
unsafe fn scatter_block<T: Elem>(
    tmp: &[T],
    ld: usize,
    (n0, nb): (usize, usize),
    (o, l): (usize, usize),
    bias: Option<&[T]>,
    out: SendPtr<MaybeUninit<T>>,
) {
    for k in 0..nb {
        let dst = std::slice::from_raw_parts_mut(out.get().add((n0 + k) * o * l), o * l);
        for (co, row) in dst.chunks_exact_mut(l).enumerate() {
            let src = &tmp[co * ld + k * l..][..l];
            let pairs = row.iter_mut().zip(src);
            match bias {
                Some(bv) => {
                    let b = bv[co];
                    pairs.for_each(|(d, &s)| {
                        d.write(s + b);
                    })
                }
                None => pairs.for_each(|(d, &s)| {
                    d.write(s);
                }),
            }
        }
    }
}

/// `out[n] = W·im2col(img[n]) (+ bias)` with the columns packed straight from the image
/// (`windows.rs`): per task of [`partition`] one product over all its images, the weight
/// packed once for the call.
fn forward_windows(
    g: &Geom,
    o: usize,
    (img, w, bias): (&[f32], &[f32], Option<&[f32]>),
    out: &mut [MaybeUninit<f32>],
    (loops, precision): (sgemm::Loops, Precision),
) {
    let (r, l) = (g.rows(), g.cols());
    assert!(img.len() >= g.n * g.image_len() && w.len() >= o * r && out.len() >= g.n * o * l);
    let out = SendPtr(out.as_mut_ptr());
    // SAFETY: w is [O, R], row-major (and so is its rounded copy).
    let packed = match precision {
        Precision::F32 => unsafe { sgemm::PackedA::new(loops, (w.as_ptr(), r, 1), o, r) },
        _ => f32::with_ws(o * r, |rounded| {
            rounded.copy_from_slice(&w[..o * r]);
            cpu_gemm::round_in_place(precision, rounded);
            unsafe { sgemm::PackedA::new(loops, (rounded.as_ptr(), r, 1), o, r) }
        }),
    };
    let rows = packed
        .rows(0, o)
        .expect("all the rows of the packed weight");
    for_tasks(g.n, g.n * o * r * l, |first, count, par| {
        let b = product_images(l, count);
        let ld = padded_stride(b * l);
        f32::with_ws(o * ld, |tmp| {
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let source = windows::Windows {
                    img,
                    g,
                    n0,
                    loops,
                    precision,
                };
                let threads = cpu_gemm::threads_of(par);
                // SAFETY: tmp holds O rows of ld ≥ nb·L; the source packs the block's images.
                unsafe {
                    let c = (tmp.as_mut_ptr(), ld);
                    sgemm::sgemm_sourced(rows, nb * l, c, false, &source, threads);
                    scatter_block(tmp, ld, (n0, nb), (o, l), bias, out)
                }
            }
        })
    });
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
/// bias)` when `w` is given (`out` is `[N, O, L]`, every element written, none read), and
/// `dW = Σ a[n]·colᵀ` when `a` is given (returned, `[O, R]`).
#[allow(clippy::too_many_arguments)]
fn im2col_products<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    img: &[T],
    w: Option<&[T]>,
    bias: Option<&[T]>,
    out: Option<&mut [MaybeUninit<T>]>,
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
                    // SAFETY: the task owns its images' outputs.
                    unsafe { scatter_block(tmp, ld, (n0, nb), (o, l), bias, out) };
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

/// Per image `img[n] = col2im(Wᵀ·a[n]) (+ bias per image channel)`; `a` is `[N, O, L]`,
/// `w` is `[O, R]`, `img` is `[N, C, h, w]` (every element written, none read). Blocks
/// of images share one GEMM as above. Each channel tile of an image is zeroed just before
/// col2im adds into it, while it is in cache: zero-filling the whole output first (on the
/// pool) was 0.7% of a dcgan28 step, a pass over memory of its own.
fn col2im_into<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    a: &[T],
    w: &[T],
    bias: Option<&[T]>,
    img: &mut [MaybeUninit<T>],
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
                        col2im(&col[k * l..], &sub, filled(dst, T::ZERO), ld, scratch);
                    }
                }
                if let Some(bv) = bias {
                    for k in 0..nb {
                        // SAFETY: as above, the whole image, every tile of which col2im
                        // has written.
                        let dst = unsafe {
                            let at = img_ptr.get().add((n0 + k) * il);
                            std::slice::from_raw_parts_mut(at as *mut T, il)
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

/// `db[c] = Σ_{n, s} dy[n, c, s]` for `dy` of `[N, C, S]`: per channel each image's run
/// summed by `lane_sum` (in f64, 8 lanes), the images' sums added in order — one fixed
/// order, so the same bits for any thread count — and the channels in parallel. (A single
/// chain of adds per channel, on one thread, was 0.75% of a dcgan28 step.)
fn bias_grad_of<T: Elem>(dy: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let runs = (0..n).map(|i| lane_sum(&dy[(i * c + ch) * s..][..s], Into::into));
            T::from_f64(runs.fold(0.0, |total, run| total + run))
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
    let img_s = img_g.elems::<T>()?;
    let covering = dense::covers_image(g);
    // duel's engine on operands packed from the image itself (patches.rs, windows.rs),
    // rounded as the f32 GEMM route would round them
    let prec = plan.precision;
    let (r, positions) = (g.rows(), g.n * g.cols());
    let f32_engine = |shape| {
        (img.dtype() == DType::F32 && cpu_gemm::f32_route(prec, shape))
            .then(sgemm::engine)
            .flatten()
    };
    if let (None, Some(a_g), Some(loops)) = (w, &a_g, f32_engine((o, r, positions))) {
        if g.c >= TASKS && !covering && patches::fits(g) {
            let operands = (img_g.elems()?, a_g.elems()?);
            let dw = patches::weight_grad(g, o, operands, loops, prec);
            return Ok(Columns {
                product: None,
                weight_grad: Some(Tensor::from_cpu_buffer(f32::wrap(dw), [o, g.rows()])?),
            });
        }
    }
    let window_path =
        f32_engine((o, positions, r)).filter(|_| windows::fits(g) && !covering && a.is_none());
    if let (Some(w_g), Some(loops)) = (&w_g, window_path) {
        let (w_f, img_f) = (w_g.elems::<f32>()?, img_g.elems::<f32>()?);
        let b_f = b_g.as_ref().map(Operand::elems::<f32>).transpose()?;
        // SAFETY: forward_windows writes every element of `out`.
        let out = unsafe {
            written_vec(g.n * o * g.cols(), |out| {
                forward_windows(g, o, (img_f, w_f, b_f), out, (loops, prec))
            })
        };
        return Ok(Columns {
            product: Some(Tensor::from_cpu_buffer(f32::wrap(out), [g.n, o, g.cols()])?),
            weight_grad: None,
        });
    }
    let products = match covering {
        true => dense::column_products,
        false => im2col_products,
    };
    let mut dw = None;
    let out = match (w_s, a_s) {
        (None, Some(a)) if g.c >= TASKS && !covering => {
            dw = Some(weight_grad_by_channels(g, plan.precision, o, img_s, a));
            None
        }
        (None, _) => {
            dw = products(g, plan.precision, o, img_s, None, b_s, None, a_s);
            None
        }
        // SAFETY: given `w`, the products write every element of `out`.
        (Some(_), _) => Some(unsafe {
            written_vec(g.n * o * g.cols(), |out| {
                dw = products(g, plan.precision, o, img_s, w_s, b_s, Some(out), a_s);
            })
        }),
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
    let (a_s, w_s) = (a_g.elems::<T>()?, w_g.elems::<T>()?);
    let into = match dense::covers_image(g) {
        true => dense::col2im_into,
        false => col2im_into,
    };
    // SAFETY: both `into`s write every element of the image.
    let img = unsafe {
        written_vec(g.n * g.image_len(), |img| {
            into(g, plan.precision, plan.other, a_s, w_s, b_s, img)
        })
    };
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
