//! cpu conv2d / conv_transpose2d (f32 and f64): im2col / col2im around the `gemm` crate.
//!
//! Both ops and their backward passes are made of three primitives over the column
//! geometry [`Geom`] (image `[N, C, h, w]`, columns `[R = C·kh·kw, L = ho·wo]`, the other
//! side of the weight `O` channels, weight `W` as `[O, R]` row-major):
//! - [`im2col_products`]: per image `col = im2col(img[n])`, then optionally
//!   `out[n] = W·col` (conv2d forward, convT input gradient) and/or
//!   `dW += a[n]·colᵀ` (the weight gradient of both ops).
//! - [`col2im_product`]: per image `img[n] = col2im(Wᵀ·a[n])` (convT forward, conv2d
//!   input gradient).
//! - [`bias_grad`]: `db[c] = Σ_{n, l} dy[n, c, l]`.
//!
//! Batching: images are processed in blocks of `B = ceil(512 / L)` whose column matrices
//! sit side by side (`[R, B·L]`), so every GEMM has at least ~512 columns even where one
//! image has few window positions (the 7x7 grid of the DCGAN's second layer) or a thin
//! `R` (the 1-channel layers, `R = kh·kw = 16`). Outputs are copied from the block
//! product to each image, and the `a` operand of the weight gradient is gathered likewise.
//!
//! Threading: images are split into one contiguous chunk per rayon thread (each runs its
//! GEMMs single-threaded, and the weight gradient is accumulated per chunk then summed in
//! chunk order, so results do not depend on scheduling). With fewer images than threads,
//! the images run in order and each GEMM is split across the pool instead.
//!
//! Workspaces: the column matrix and the block product of each thread live in a
//! thread-local `Vec` that grows to the largest size seen and is reused by every later
//! call (rayon's threads persist).
//!
//! 1-channel layers: a direct loop (each output row accumulating `kh·kw` shifted input
//! rows) was measured against this path on the DCGAN's first layer (batch 64, 1→64,
//! 4x4/2/1): 17–19 ms against 0.65 ms for im2col + blocked GEMM, so the thin layers
//! take the GEMM path too; blocking the batch is what makes their GEMM wide.

use super::{Geom, Grads, Kind, Plan};
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::{Add, AddAssign, Mul};

/// The element types of the cpu convolution.
pub(crate) trait Elem:
    Copy
    + Default
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Mul<Output = Self>
    + AddAssign
    + PartialEq
{
    const ZERO: Self;
    const ONE: Self;
    /// Run `f` on this thread's workspace of at least `len` elements (contents unspecified).
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
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
    const ONE: Self = 1.0;
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        with_ws_in(&WS_F32, len, f)
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn with_ws<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        with_ws_in(&WS_F64, len, f)
    }
}

/// Multiply-adds of one GEMM from which it is split across threads (when the batch is not).
const PARALLEL_FLOPS: usize = 1 << 18;

/// `dst (m x n, row-major) (+)= lhs · rhs`, operands given by pointer and (row, col)
/// strides in elements.
///
/// # Safety
/// `lhs` must be readable at every `i·lhs_rs + p·lhs_cs` (i < m, p < k), `rhs` at every
/// `p·rhs_rs + j·rhs_cs` (p < k, j < n), and `dst` must hold `m·n` elements.
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    debug_assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        par,
    )
}

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

/// `col [R, L] = im2col(img [C, h, w])`, rows `ld` elements apart.
fn im2col<T: Elem>(img: &[T], g: &Geom, col: &mut [T], ld: usize) {
    let l = g.cols();
    for c in 0..g.c {
        let plane = &img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
            for j in 0..g.kw {
                let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
                let row = &mut col[((c * g.kh + i) * g.kw + j) * ld..][..l];
                row[..oh_lo * g.wo].fill(T::ZERO);
                row[oh_hi * g.wo..].fill(T::ZERO);
                for oh in oh_lo..oh_hi {
                    let ih = (oh * g.sh) as isize + hoff;
                    let src = &plane[ih as usize * g.w..][..g.w];
                    let dst = &mut row[oh * g.wo..][..g.wo];
                    dst[..ow_lo].fill(T::ZERO);
                    dst[ow_hi..].fill(T::ZERO);
                    if ow_hi > ow_lo {
                        let start = (ow_lo * g.sw) as isize + woff;
                        if g.sw == 1 {
                            dst[ow_lo..ow_hi].copy_from_slice(
                                &src[start as usize..start as usize + (ow_hi - ow_lo)],
                            );
                        } else {
                            for (k, d) in dst[ow_lo..ow_hi].iter_mut().enumerate() {
                                *d = src[start as usize + k * g.sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `img [C, h, w] = col2im(col [R, L])` (rows `ld` elements apart): every column entry
/// added to its pixel.
fn col2im<T: Elem>(col: &[T], g: &Geom, img: &mut [T], ld: usize) {
    let l = g.cols();
    img.fill(T::ZERO);
    for c in 0..g.c {
        let plane = &mut img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            let (oh_lo, oh_hi, hoff) = valid_range(g.h, g.ho, g.sh, g.ph, g.dh, i);
            for j in 0..g.kw {
                let (ow_lo, ow_hi, woff) = valid_range(g.w, g.wo, g.sw, g.pw, g.dw, j);
                if ow_hi <= ow_lo {
                    continue;
                }
                let row = &col[((c * g.kh + i) * g.kw + j) * ld..][..l];
                for oh in oh_lo..oh_hi {
                    let ih = (oh * g.sh) as isize + hoff;
                    let dst = &mut plane[ih as usize * g.w..][..g.w];
                    let src = &row[oh * g.wo + ow_lo..oh * g.wo + ow_hi];
                    let start = ((ow_lo * g.sw) as isize + woff) as usize;
                    if g.sw == 1 {
                        for (d, &s) in dst[start..start + src.len()].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (k, &s) in src.iter().enumerate() {
                            dst[start + k * g.sw] += s;
                        }
                    }
                }
            }
        }
    }
}

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

/// Split `n` images into chunks for the pool: `(chunks, GEMM parallelism inside)`.
fn schedule(n: usize, flops_per_image: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if n >= threads && threads > 1 {
        (threads, Parallelism::None)
    } else if threads > 1 && flops_per_image >= PARALLEL_FLOPS {
        (1, Parallelism::Rayon(0))
    } else if threads > 1 && n > 1 {
        (n.min(threads), Parallelism::None)
    } else {
        (1, Parallelism::None)
    }
}

/// Run `f(first, count)` for contiguous chunks of images `[0, n)`, in parallel when
/// `chunks > 1`, returning the results in chunk order.
fn for_chunks<R: Send>(n: usize, chunks: usize, f: impl Fn(usize, usize) -> R + Sync) -> Vec<R> {
    let chunks = chunks.clamp(1, n.max(1));
    let per = n.div_ceil(chunks).max(1);
    let ranges: Vec<(usize, usize)> = (0..n).step_by(per).map(|s| (s, per.min(n - s))).collect();
    if ranges.len() <= 1 {
        ranges.into_iter().map(|(s, c)| f(s, c)).collect()
    } else {
        ranges.into_par_iter().map(|(s, c)| f(s, c)).collect()
    }
}

/// Columns per GEMM: images are processed in blocks of `B` whose column matrices sit side
/// by side (`[R, B·L]`), so one GEMM covers `B·L >= BLOCK_COLS` columns even when a single
/// image has few window positions (the 7x7 grids of the DCGAN).
const BLOCK_COLS: usize = 512;

fn block_images(l: usize, count: usize) -> usize {
    BLOCK_COLS.div_ceil(l.max(1)).clamp(1, count.max(1))
}

/// Per block of images `col = [im2col(img[n]) …]` (`[R, B·L]`); then `out[n] = W·col (+
/// bias)` when `w` is given (`out` is `[N, O, L]`), and `dW = Σ a[n]·colᵀ` when `a` is
/// given (returned, `[O, R]`).
#[allow(clippy::too_many_arguments)]
fn im2col_products<T: Elem>(
    g: &Geom,
    o: usize,
    img: &[T],
    w: Option<&[T]>,
    bias: Option<&[T]>,
    out: Option<&mut [T]>,
    a: Option<&[T]>,
) -> Option<Vec<T>> {
    let (r, l) = (g.rows(), g.cols());
    let flops = o * r * l * (w.is_some() as usize + a.is_some() as usize);
    let (chunks, par) = schedule(g.n, flops);
    let out_ptr = out.map(|s| SendPtr(s.as_mut_ptr()));
    let il = g.image_len();
    let partials = for_chunks(g.n, chunks, |first, count| {
        let mut dw = a.map(|_| vec![T::ZERO; o * r]);
        let b = block_images(l, count);
        let ld = b * l;
        // Workspace: the columns [R, B·L], then the products / gathered a [O, B·L].
        T::with_ws(r * ld + o * ld, |ws| {
            let (col, tmp) = ws.split_at_mut(r * ld);
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let cols = nb * l;
                for k in 0..nb {
                    im2col(&img[(n0 + k) * il..][..il], g, &mut col[k * l..], ld);
                }
                if let (Some(w), Some(out)) = (w, out_ptr) {
                    // tmp [O, B·L] = W [O, R] · col [R, B·L]
                    unsafe {
                        mm(
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
                                None => row.copy_from_slice(src),
                            }
                        }
                    }
                }
                if let (Some(a), Some(dw)) = (a, dw.as_mut()) {
                    // Gather a [O, B·L] from the images, then dW [O, R] += a · colᵀ.
                    for k in 0..nb {
                        let an = &a[(n0 + k) * o * l..][..o * l];
                        for (co, src) in an.chunks_exact(l).enumerate() {
                            tmp[co * cols + k * l..][..l].copy_from_slice(src);
                        }
                    }
                    unsafe {
                        mm(
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
fn col2im_product<T: Elem>(
    g: &Geom,
    o: usize,
    a: &[T],
    w: &[T],
    bias: Option<&[T]>,
    img: &mut [T],
) {
    let (r, l) = (g.rows(), g.cols());
    let (chunks, par) = schedule(g.n, o * r * l);
    let img_ptr = SendPtr(img.as_mut_ptr());
    let il = g.image_len();
    for_chunks(g.n, chunks, |first, count| {
        let b = block_images(l, count);
        let ld = b * l;
        T::with_ws(r * ld + o * ld, |ws| {
            let (col, tmp) = ws.split_at_mut(r * ld);
            for n0 in (first..first + count).step_by(b) {
                let nb = b.min(first + count - n0);
                let cols = nb * l;
                for k in 0..nb {
                    let an = &a[(n0 + k) * o * l..][..o * l];
                    for (co, src) in an.chunks_exact(l).enumerate() {
                        tmp[co * cols + k * l..][..l].copy_from_slice(src);
                    }
                }
                // col [R, B·L] = Wᵀ [R, O] · a [O, B·L]
                unsafe {
                    mm(
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
                    col2im(&col[k * l..], g, dst, cols);
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
fn bias_grad<T: Elem>(dy: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
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

fn fwd<T: Elem>(kind: Kind, plan: &Plan, x: &[T], w: &[T], b: Option<&[T]>, out: &mut [T]) {
    let (g, o) = (&plan.geom, plan.other);
    match kind {
        Kind::Conv => {
            im2col_products(g, o, x, Some(w), b, Some(out), None);
        }
        Kind::ConvT => col2im_product(g, o, x, w, b, out),
    }
}

/// The slice of a contiguous, offset-0 cpu tensor's buffer.
macro_rules! with_slices {
    ($op:expr, [$($t:ident),*], $f32:expr, $f64:expr) => {{
        $(let $t = $t.cpu_buffer($op)?;)*
        match ($(&*$t,)*) {
            ($(CpuBuffer::F32($t),)*) => { $f32 }
            _ => match ($(&*$t,)*) {
                ($(CpuBuffer::F64($t),)*) => { $f64 }
                _ => return Err(Error::dtype($op, "operands must all be f32 or all be f64")),
            },
        }
    }};
}

pub(super) fn forward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    shape: Shape,
) -> Result<Tensor> {
    let op = kind.name();
    let numel = shape.numel();
    let bias_guard = bias.map(|b| b.cpu_buffer(op)).transpose()?;
    let buffer = with_slices!(
        op,
        [x, w],
        {
            let b = match bias_guard.as_deref() {
                Some(CpuBuffer::F32(b)) => Some(&b[..]),
                Some(_) => return Err(Error::dtype(op, "the bias dtype differs")),
                None => None,
            };
            let mut out = vec![0f32; numel];
            fwd(kind, plan, &x[..], &w[..], b, &mut out);
            CpuBuffer::F32(out)
        },
        {
            let b = match bias_guard.as_deref() {
                Some(CpuBuffer::F64(b)) => Some(&b[..]),
                Some(_) => return Err(Error::dtype(op, "the bias dtype differs")),
                None => None,
            };
            let mut out = vec![0f64; numel];
            fwd(kind, plan, &x[..], &w[..], b, &mut out);
            CpuBuffer::F64(out)
        }
    );
    Tensor::from_cpu_buffer(buffer, shape)
}

/// `(dx, dw, db)` as flat vectors, each when wanted.
type Flat<T> = (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>);

fn bwd<T: Elem>(kind: Kind, plan: &Plan, x: &[T], w: &[T], dy: &[T], want: [bool; 3]) -> Flat<T> {
    let (g, o) = (&plan.geom, plan.other);
    let l = g.cols();
    match kind {
        Kind::Conv => {
            // image = x, a = dy [N, O, L]
            let dx = want[0].then(|| {
                let mut dx = vec![T::ZERO; g.n * g.image_len()];
                col2im_product(g, o, dy, w, None, &mut dx);
                dx
            });
            let dw = if want[1] {
                im2col_products(g, o, x, None, None, None, Some(dy))
            } else {
                None
            };
            let db = want[2].then(|| bias_grad(dy, g.n, o, l));
            (dx, dw, db)
        }
        Kind::ConvT => {
            // image = dy, a = x [N, O, L]; dx = W·im2col(dy), dW = Σ x·im2col(dy)ᵀ
            let mut dx = want[0].then(|| vec![T::ZERO; g.n * o * l]);
            let dw = if want[0] || want[1] {
                let a = want[1].then_some(x);
                let wv = want[0].then_some(w);
                im2col_products(g, o, dy, wv, None, dx.as_deref_mut(), a)
            } else {
                None
            };
            let db = want[2].then(|| bias_grad(dy, g.n, g.c, g.h * g.w));
            (dx, dw, db)
        }
    }
}

pub(super) fn backward(
    kind: Kind,
    plan: &Plan,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    want: [bool; 3],
) -> Result<Grads> {
    let op = kind.name();
    let (xs, ws) = (x.shape().clone(), w.shape().clone());
    let bs = Shape::new([match kind {
        Kind::Conv => plan.other,
        Kind::ConvT => plan.geom.c,
    }]);
    let wrap = |v: Option<CpuBuffer>, s: &Shape| {
        v.map(|b| Tensor::from_cpu_buffer(b, s.clone())).transpose()
    };
    let (dx, dw, db) = with_slices!(
        op,
        [x, w, dy],
        {
            let (a, b, c) = bwd(kind, plan, &x[..], &w[..], &dy[..], want);
            (
                a.map(CpuBuffer::F32),
                b.map(CpuBuffer::F32),
                c.map(CpuBuffer::F32),
            )
        },
        {
            let (a, b, c) = bwd(kind, plan, &x[..], &w[..], &dy[..], want);
            (
                a.map(CpuBuffer::F64),
                b.map(CpuBuffer::F64),
                c.map(CpuBuffer::F64),
            )
        }
    );
    Ok(Grads {
        x: wrap(dx, &xs)?,
        w: wrap(dw, &ws)?,
        bias: wrap(db, &bs)?,
    })
}
