//! cpu conv2d / conv_transpose2d where the one window covers the whole image (a 4x4
//! kernel over a 4x4 image without padding: dcgan64's last discriminator layer, and its
//! generator's first layer read backwards). The column matrix of an image is then the
//! image itself, `[R, 1]`, so the op is a dense layer over the batch and runs as one GEMM
//! on the batch tensors, with no im2col or col2im at all:
//! - forward `out [N, O] = img [N, R] · Wᵀ (+ bias)`,
//! - weight gradient `dW [O, R] = aᵀ [O, N] · img [N, R]`,
//! - col2im side `img [N, R] = a [N, O] · W [O, R] (+ bias per channel)`.
//!
//! The im2col path formed these per image (`L = 1`): one strided run of one value per tap
//! and channel, 8192 of them per image on dcgan64's `D.conv5` — 7.8 ms for its 1 MFLOP
//! forward at batch 64, against PyTorch's 0.8 ms. Each element is the same dot product
//! over `R` (or `O`, or the batch) as a GEMM of that depth, so the results stay
//! independent of the thread count (the GEMMs split over output tiles only).

use super::elem::Elem;
use super::Geom;
use crate::ops::cpu_gemm;
use crate::ops::cpu_shared::filled;
use crate::ops::precision::Precision;
use std::mem::MaybeUninit;

/// Whether `g`'s only window position sees the whole image, unpadded and undilated: its
/// column matrix is the image as one column.
pub(super) fn covers_image(g: &Geom) -> bool {
    let undilated = |k: usize, d: usize| k == 1 || d == 1;
    (g.ho, g.wo, g.ph, g.pw) == (1, 1, 0, 0)
        && (g.kh, g.kw) == (g.h, g.w)
        && undilated(g.kh, g.dh)
        && undilated(g.kw, g.dw)
}

/// The im2col side for a covering `g`: `out [N, O] = img · Wᵀ (+ bias)` when `w` is
/// given, and `dW = aᵀ · img` (returned) when `a` (`[N, O]`) is.
#[allow(clippy::too_many_arguments)]
pub(super) fn column_products<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    img: &[T],
    w: Option<&[T]>,
    bias: Option<&[T]>,
    out: Option<&mut [MaybeUninit<T>]>,
    a: Option<&[T]>,
) -> Option<Vec<T>> {
    debug_assert!(covers_image(g));
    let (n, r) = (g.n, g.rows());
    if let (Some(w), Some(out)) = (w, out) {
        let out = filled(out, T::ZERO);
        // SAFETY: img is [N, R], w is [O, R] read as Wᵀ [R, O], out holds N·O.
        unsafe {
            cpu_gemm::gemm(
                prec,
                n,
                o,
                r,
                (&mut *out, o),
                false,
                (img.as_ptr(), r, 1),
                (w.as_ptr(), 1, r),
                cpu_gemm::parallelism_for(n * o * r),
            )
        };
        if let Some(b) = bias {
            for row in out.chunks_exact_mut(o.max(1)) {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
        }
    }
    let a = a?;
    let mut dw = vec![T::ZERO; o * r];
    // SAFETY: a is [N, O] read as aᵀ [O, N], img is [N, R], dw holds O·R.
    unsafe {
        cpu_gemm::gemm(
            prec,
            o,
            r,
            n,
            (&mut dw, r),
            false,
            (a.as_ptr(), 1, o),
            (img.as_ptr(), r, 1),
            cpu_gemm::parallelism_for(n * o * r),
        )
    };
    Some(dw)
}

/// The col2im side for a covering `g`: `img [N, R] = a [N, O] · W [O, R]`, then `bias`
/// added over each image channel's `kh·kw` values.
pub(super) fn col2im_into<T: Elem>(
    g: &Geom,
    prec: Precision,
    o: usize,
    a: &[T],
    w: &[T],
    bias: Option<&[T]>,
    img: &mut [MaybeUninit<T>],
) {
    debug_assert!(covers_image(g));
    let img = filled(img, T::ZERO);
    let (n, r) = (g.n, g.rows());
    // SAFETY: a is [N, O], w is [O, R], img holds N·R.
    unsafe {
        cpu_gemm::gemm(
            prec,
            n,
            r,
            o,
            (&mut *img, r),
            false,
            (a.as_ptr(), o, 1),
            (w.as_ptr(), r, 1),
            cpu_gemm::parallelism_for(n * o * r),
        )
    };
    if let Some(b) = bias {
        let plane = g.h * g.w;
        for image in img.chunks_exact_mut(r.max(1)) {
            for (values, &b) in image.chunks_exact_mut(plane).zip(b) {
                values.iter_mut().for_each(|v| *v += b);
            }
        }
    }
}
