//! The element types of the cpu convolution (f32 and f64): their arithmetic, their
//! thread-local workspaces, and the vector loops of `cols` where the CPU has them.

#[cfg(target_arch = "x86_64")]
use super::cols::{avx2, avx512, flat};
use super::Geom;
use crate::device::cpu::isa::isa;
use crate::device::cpu::CpuBuffer;
use crate::ops::cpu_gemm::GemmElem;
use std::cell::RefCell;
use std::ops::{Add, AddAssign, Mul};

/// The element types of the cpu convolution.
pub(crate) trait Elem:
    GemmElem + Add<Output = Self> + Mul<Output = Self> + AddAssign + PartialEq + Into<f64>
{
    const ZERO: Self;
    /// `v` rounded to this type.
    fn from_f64(v: f64) -> Self;
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
    fn from_f64(v: f64) -> Self {
        v as f32
    }
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
        let (isa, flat) = (isa(), flat::flat_taps(g));
        // SAFETY: the instruction set detected, each loop's geometry checked; sizes
        // asserted inside.
        if isa.avx512f && flat {
            unsafe { avx512::im2col_flat(img, g, col, ld, s) }
        } else if isa.avx512f && avx512::contiguous_taps(g) {
            unsafe { avx512::im2col(img, g, col, ld, s) }
        } else if isa.avx2 && flat {
            unsafe { avx2::im2col_flat(img, g, col, ld, s) }
        } else {
            return false;
        }
        true
    }
    #[cfg(target_arch = "x86_64")]
    fn col2im_fast(col: &[Self], g: &Geom, img: &mut [Self], ld: usize, s: &mut [Self]) -> bool {
        let (isa, flat) = (isa(), flat::flat_taps(g));
        // SAFETY: as `im2col_fast`.
        if isa.avx512f && flat {
            unsafe { avx512::col2im_flat(col, g, img, ld, s) }
        } else if isa.avx512f && avx512::contiguous_taps(g) {
            unsafe { avx512::col2im(col, g, img, ld, s) }
        } else if isa.avx2 && flat {
            unsafe { avx2::col2im_flat(col, g, img, ld, s) }
        } else {
            return false;
        }
        true
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    fn from_f64(v: f64) -> Self {
        v
    }
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
