//! cpu conv2d / conv_transpose2d (f32 and f64): im2col / col2im around the `gemm` crate.
//!
//! The three primitives of `mod.rs` over the column geometry [`Geom`] (image
//! `[N, C, h, w]`, columns `[R = C·kh·kw, L = ho·wo]`, the other side of the weight `O`
//! channels, weight `W` as `[O, R]` row-major):
//! - [`column_products`] ([`im2col_products`]): per image `col = im2col(img[n])`, then
//!   `out[n] = W·col` when a weight is given and/or `dW += a[n]·colᵀ` when `a` is.
//! - [`col2im_product`]: per image `img[n] = col2im(Wᵀ·a[n])`.
//! - [`bias_grad`]: `db[c] = Σ_{n, l} dy[n, c, l]`.
//!
//! Batching: images are processed in blocks of `B = ceil(512 / L)` whose column matrices
//! sit side by side (`[R, B·L]`), so every GEMM has at least ~512 columns even where one
//! image has few window positions (the 7x7 grid of the DCGAN's second layer) or a thin
//! `R` (the 1-channel layers, `R = kh·kw = 16`). Outputs are copied from the block
//! product to each image, and the `a` operand of the weight gradient is gathered likewise.
//!
//! Threading: the batch is split by [`partition`] into tasks of whole blocks, a partition
//! fixed by the geometry and never by the thread count; each task runs its GEMMs on one
//! thread and the weight gradient is accumulated per task, then summed in task order, so
//! results are bitwise the same for any number of threads.
//!
//! Workspaces: the column matrix and the block product of each thread live in a
//! thread-local `Vec` that grows to the largest size seen and is reused by every later
//! call (rayon's threads persist).
//!
//! 1-channel layers: a direct loop (each output row accumulating `kh·kw` shifted input
//! rows) was measured against this path on the DCGAN's first layer (batch 64, 1→64,
//! 4x4/2/1): 17–19 ms against 0.65 ms for im2col + blocked GEMM, so the thin layers
//! take the GEMM path too; blocking the batch is what makes their GEMM wide.

#[cfg(target_arch = "x86_64")]
use super::cols::avx512;
use super::cols::{col2im, im2col, scratch_len};
use super::{Columns, Geom, Plan};
use crate::device::cpu::isa::isa;
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::ops::cpu_gemm::{self, GemmElem};
use crate::ops::precision::Precision;
use crate::tensor::{DType, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::{Add, AddAssign, Mul};
use std::sync::RwLockReadGuard;

/// The element types of the cpu convolution.
pub(crate) trait Elem:
    GemmElem + Add<Output = Self> + Mul<Output = Self> + AddAssign + PartialEq
{
    const ZERO: Self;
    /// Run `f` on this thread's workspace of at least `len` elements (contents unspecified).
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
    /// The elements of a buffer of this type (None for another dtype).
    fn slice(b: &CpuBuffer) -> Option<&[Self]>;
    fn wrap(v: Vec<Self>) -> CpuBuffer;
    /// `dst = src` for a short run (the lengths are equal).
    fn copy_run(dst: &mut [Self], src: &[Self]) {
        dst.copy_from_slice(src)
    }
    /// `dst[k] += src[k]` for a short run (the lengths are equal).
    fn add_run(dst: &mut [Self], src: &[Self]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s)
    }
    /// `dst[k] = src[k·stride]` by a vector loop where there is one; false: none ran.
    fn gather_fast(_dst: &mut [Self], _src: &[Self], _stride: usize) -> bool {
        false
    }
    /// `dst[k·stride] += src[k]` by a vector loop where there is one; false: none ran.
    fn scatter_add_fast(_dst: &mut [Self], _src: &[Self], _stride: usize) -> bool {
        false
    }
    /// `cols::im2col` by a whole-image vector loop where there is one; false: none ran.
    fn im2col_fast(
        _img: &[Self],
        _g: &Geom,
        _col: &mut [Self],
        _ld: usize,
        _s: &mut [Self],
    ) -> bool {
        false
    }
    /// `cols::col2im` by a whole-image vector loop where there is one; false: none ran.
    fn col2im_fast(
        _col: &[Self],
        _g: &Geom,
        _img: &mut [Self],
        _ld: usize,
        _s: &mut [Self],
    ) -> bool {
        false
    }
}

thread_local! {
    static WS_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static WS_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Borrow the thread-local workspace, or fall back to a fresh buffer when it is already
/// borrowed (a rayon thread that picked up another image while waiting inside a GEMM).
fn with_ws_in<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut ws) => {
            if ws.len() < len {
                ws.resize(len, T::default());
            }
            f(&mut ws[..len])
        }
        Err(_) => f(&mut vec![T::default(); len]),
    })
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        with_ws_in(&WS_F32, len, f)
    }
    fn slice(b: &CpuBuffer) -> Option<&[Self]> {
        match b {
            CpuBuffer::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<Self>) -> CpuBuffer {
        CpuBuffer::F32(v)
    }
    #[cfg(target_arch = "x86_64")]
    fn copy_run(dst: &mut [Self], src: &[Self]) {
        assert_eq!(dst.len(), src.len(), "copy_run takes equal lengths");
        if isa().avx512f {
            // SAFETY: AVX-512F detected; the lengths are equal (checked above).
            unsafe { avx512::copy_run(dst, src) }
        } else {
            dst.copy_from_slice(src)
        }
    }
    #[cfg(target_arch = "x86_64")]
    fn gather_fast(dst: &mut [Self], src: &[Self], stride: usize) -> bool {
        let fast = stride == 2 && isa().avx512f;
        // SAFETY: AVX-512F detected; `cols::gather` cut `src` to 2·(len − 1) + 1 elements.
        if fast {
            unsafe { avx512::gather2(dst, src) }
        }
        fast
    }
    #[cfg(target_arch = "x86_64")]
    fn scatter_add_fast(dst: &mut [Self], src: &[Self], stride: usize) -> bool {
        let fast = stride == 2 && isa().avx512f;
        // SAFETY: AVX-512F detected; `cols::scatter_add` cut `dst` to 2·(len − 1) + 1.
        if fast {
            unsafe { avx512::scatter_add2(dst, src) }
        }
        fast
    }
    #[cfg(target_arch = "x86_64")]
    fn im2col_fast(img: &[Self], g: &Geom, col: &mut [Self], ld: usize, s: &mut [Self]) -> bool {
        if !isa().avx512f {
            return false;
        }
        // SAFETY: AVX-512F detected, each loop's geometry checked; sizes asserted inside.
        if avx512::flat_taps(g) {
            unsafe { avx512::im2col_flat(img, g, col, ld, s) }
        } else if avx512::contiguous_taps(g) {
            unsafe { avx512::im2col(img, g, col, ld, s) }
        } else {
            return false;
        }
        true
    }
    #[cfg(target_arch = "x86_64")]
    fn col2im_fast(col: &[Self], g: &Geom, img: &mut [Self], ld: usize, s: &mut [Self]) -> bool {
        if !isa().avx512f {
            return false;
        }
        // SAFETY: as `im2col_fast`.
        if avx512::flat_taps(g) {
            unsafe { avx512::col2im_flat(col, g, img, ld, s) }
        } else if avx512::contiguous_taps(g) {
            unsafe { avx512::col2im(col, g, img, ld, s) }
        } else {
            return false;
        }
        true
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        with_ws_in(&WS_F64, len, f)
    }
    fn slice(b: &CpuBuffer) -> Option<&[Self]> {
        match b {
            CpuBuffer::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<Self>) -> CpuBuffer {
        CpuBuffer::F64(v)
    }
}

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

const BLOCK_COLS: usize = 1024;

/// Images per block of a task of `count` images: the task cut into equal blocks of at
/// most about [`BLOCK_COLS`] columns (one block when a whole task fits).
fn block_images(l: usize, count: usize) -> usize {
    let blocks = (count * l).div_ceil(BLOCK_COLS).max(1);
    count.div_ceil(blocks).max(1)
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
    let partials = for_tasks(g.n, flops, |first, count, par| {
        let mut dw = a.map(|_| vec![T::ZERO; o * r]);
        let b = block_images(l, count);
        let ld = b * l;
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
                        cpu_gemm::gemm(
                            prec,
                            o,
                            cols,
                            r,
                            tmp,
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
                            let src = &tmp[co * cols + k * l..][..l];
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
                    // Gather a [O, B·L] from the images, then dW [O, R] += a · colᵀ.
                    for k in 0..nb {
                        let an = &a[(n0 + k) * o * l..][..o * l];
                        for (co, src) in an.chunks_exact(l).enumerate() {
                            T::copy_run(&mut tmp[co * cols + k * l..][..l], src);
                        }
                    }
                    unsafe {
                        cpu_gemm::gemm(
                            prec,
                            o,
                            r,
                            cols,
                            dw,
                            true,
                            (tmp.as_ptr(), cols, 1),
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
    for_tasks(g.n, g.n * o * r * l, |first, count, par| {
        let b = block_images(l, count);
        let ld = b * l;
        T::with_ws(r * ld + o * ld + scratch_len(g), |ws| {
            let (col, rest) = ws.split_at_mut(r * ld);
            let (tmp, scratch) = rest.split_at_mut(o * ld);
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let cols = nb * l;
                for k in 0..nb {
                    let an = &a[(n0 + k) * o * l..][..o * l];
                    for (co, src) in an.chunks_exact(l).enumerate() {
                        T::copy_run(&mut tmp[co * cols + k * l..][..l], src);
                    }
                }
                // col [R, B·L] = Wᵀ [R, O] · a [O, B·L]
                unsafe {
                    cpu_gemm::gemm(
                        prec,
                        r,
                        cols,
                        o,
                        col,
                        false,
                        (w.as_ptr(), 1, r),
                        (tmp.as_ptr(), cols, 1),
                        par,
                    )
                };
                for k in 0..nb {
                    // SAFETY: image n owns img[n·il .. (n+1)·il]; chunks are disjoint.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(img_ptr.get().add((n0 + k) * il), il)
                    };
                    col2im(&col[k * l..], g, dst, cols, scratch);
                    if let Some(bv) = bias {
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
    let dw = im2col_products(
        g,
        plan.precision,
        o,
        img_g.elems::<T>()?,
        w_s,
        b_s,
        out.as_deref_mut(),
        a_s,
    );
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
    col2im_into(
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
