//! cpu kernels for the elementwise family, generic over f32/f64 (and any element type
//! for the copy).
//!
//! Every op is planned the same way: each input's layout is broadcast to the output
//! shape, size-1 dims are dropped and adjacent dims that are contiguous with each other
//! in every operand are merged. Contiguous inputs (and a scalar broadcast against a
//! contiguous one) collapse to a single row, so the hot case is one tight slice loop the
//! compiler auto-vectorises; other layouts become rows whose inner stride is 1, 0 or
//! fixed. The output is split into chunks processed in parallel with rayon above
//! [`PARALLEL_THRESHOLD`](crate::device::cpu::PARALLEL_THRESHOLD); within a chunk the rows are walked with an odometer, so no
//! per-element index arithmetic remains.

mod math;
mod plan;

use super::{BinaryOp, UnaryOp};
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::tensor::{Element, Layout, Shape, Tensor};
use math::{exp_f32, tanh_f32};
use plan::{map1, map2, map3};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The float types the cpu backend computes in.
pub(crate) trait Float:
    Element
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn tanh(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
    /// `self * a + b`. For f32 it is computed in f64 (the product is exact there), which
    /// matches the kernels' `fmaf` except for rare double-rounding ties.
    fn affine(self, a: Self, b: Self) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn exp(self) -> Self {
        exp_f32(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn tanh(self) -> Self {
        tanh_f32(self)
    }
    fn powf(self, e: Self) -> Self {
        f32::powf(self, e)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn affine(self, a: Self, b: Self) -> Self {
        (self as f64 * a as f64 + b as f64) as f32
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn powf(self, e: Self) -> Self {
        f64::powf(self, e)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn affine(self, a: Self, b: Self) -> Self {
        self * a + b
    }
}

// ---- scalar semantics (shared by the f32 and f64 paths) --------------------------------

#[inline(always)]
fn relu<T: Float>(x: T) -> T {
    // False for NaN: NaN passes through.
    if x < T::ZERO {
        T::ZERO
    } else {
        x
    }
}

/// The overflow-free two-branch form, `1/(1 + e^-x)` for x >= 0 and `e^x/(1 + e^x)`
/// otherwise, written as one `e = e^-|x|` and a select so the row loop vectorises (both
/// branches' values, bitwise; NaN gives NaN either way).
#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    let e = (-x.abs()).exp();
    let d = T::ONE + e;
    let (pos, neg) = (T::ONE / d, e / d);
    if x >= T::ZERO {
        pos
    } else {
        neg
    }
}

#[inline(always)]
fn clamp<T: Float>(x: T, lo: T, hi: T) -> T {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

#[inline(always)]
fn maximum<T: Float>(a: T, b: T) -> T {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

#[inline(always)]
fn minimum<T: Float>(a: T, b: T) -> T {
    if a < b || a.is_nan() {
        a
    } else {
        b
    }
}

// ---- entry points ----------------------------------------------------------------------

pub(super) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let name = op.name();
    let buffer = x.cpu_buffer(name)?;
    let layout = x.layout();
    let out = match (&*buffer, op) {
        (CpuBuffer::F32(v), _) => CpuBuffer::F32(unary_typed(v, layout, op)),
        (CpuBuffer::F64(v), _) => CpuBuffer::F64(unary_typed(v, layout, op)),
        (CpuBuffer::F16(v), UnaryOp::Copy) => CpuBuffer::F16(map1(v, layout, |v| v)),
        (CpuBuffer::BF16(v), UnaryOp::Copy) => CpuBuffer::BF16(map1(v, layout, |v| v)),
        (other, _) => {
            return Err(Error::dtype(
                name,
                format!(
                    "{} is a storage-only dtype; cast with .to_dtype(DType::F32) first",
                    other.dtype()
                ),
            ))
        }
    };
    drop(buffer);
    Tensor::from_cpu_buffer(out, x.shape().clone())
}

pub(super) fn binary(a: &Tensor, b: &Tensor, shape: &Shape, op: BinaryOp) -> Result<Tensor> {
    let name = op.name();
    let al = a.layout().broadcast_to(name, shape)?;
    let bl = b.layout().broadcast_to(name, shape)?;
    let a_buf = a.cpu_buffer(name)?;
    // `a + a`: one read guard for both (a second read lock on the same RwLock from this
    // thread could deadlock behind a waiting writer).
    let b_buf_own;
    let b_buf = if a.shares_storage(b) {
        &*a_buf
    } else {
        b_buf_own = b.cpu_buffer(name)?;
        &*b_buf_own
    };
    let out = match (&*a_buf, b_buf) {
        (CpuBuffer::F32(x), CpuBuffer::F32(y)) => {
            CpuBuffer::F32(binary_typed(x, &al, y, &bl, shape, op))
        }
        (CpuBuffer::F64(x), CpuBuffer::F64(y)) => {
            CpuBuffer::F64(binary_typed(x, &al, y, &bl, shape, op))
        }
        (x, y) => {
            return Err(Error::dtype(
                name,
                format!(
                    "lhs is {}, rhs is {}: the cpu backend computes in f32 or f64 with both \
                     operands of one dtype; cast with .to_dtype(..)",
                    x.dtype(),
                    y.dtype()
                ),
            ))
        }
    };
    Tensor::from_cpu_buffer(out, shape.clone())
}

fn unary_typed<T: Float>(x: &[T], layout: &Layout, op: UnaryOp) -> Vec<T> {
    let p = T::from_f64;
    match op {
        UnaryOp::Copy => map1(x, layout, |v| v),
        UnaryOp::Neg => map1(x, layout, |v: T| -v),
        UnaryOp::Exp => map1(x, layout, T::exp),
        UnaryOp::Log => map1(x, layout, T::ln),
        UnaryOp::Sqrt => map1(x, layout, T::sqrt),
        UnaryOp::Abs => map1(x, layout, T::abs),
        UnaryOp::Relu => map1(x, layout, relu),
        UnaryOp::LeakyRelu { slope } => {
            let s = p(slope);
            map1(x, layout, move |v| if v < T::ZERO { v * s } else { v })
        }
        UnaryOp::Sigmoid => map1(x, layout, sigmoid),
        UnaryOp::Tanh => map1(x, layout, T::tanh),
        UnaryOp::Clamp { min, max } => {
            let (lo, hi) = (p(min), p(max));
            map1(x, layout, move |v| clamp(v, lo, hi))
        }
        UnaryOp::Powf { exponent } => {
            let e = p(exponent);
            map1(x, layout, move |v: T| v.powf(e))
        }
        UnaryOp::Affine { mul, add } => {
            let (m, c) = (p(mul), p(add));
            map1(x, layout, move |v: T| v.affine(m, c))
        }
    }
}

fn binary_typed<T: Float>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
    shape: &Shape,
    op: BinaryOp,
) -> Vec<T> {
    match op {
        BinaryOp::Add => map2(a, al, b, bl, shape, |x: T, y: T| x + y),
        BinaryOp::Sub => map2(a, al, b, bl, shape, |x: T, y: T| x - y),
        BinaryOp::Mul => map2(a, al, b, bl, shape, |x: T, y: T| x * y),
        BinaryOp::Div => map2(a, al, b, bl, shape, |x: T, y: T| x / y),
        BinaryOp::Pow => map2(a, al, b, bl, shape, T::powf),
        BinaryOp::Maximum => map2(a, al, b, bl, shape, maximum),
        BinaryOp::Minimum => map2(a, al, b, bl, shape, minimum),
    }
}

// ---- backward --------------------------------------------------------------------------
//
// The reference for `unary_backward_f32` / `binary_backward_f32` in kernels/elementwise.cu:
// the same formulas in the same operation order (conventions in the module doc of
// `super`), so f32 results agree with the emulator to the ulp or so of the libm calls.

/// `dx = dy · f'(·)` from `saved` (x or y, as `op.backward_reads()` says; None when the
/// op reads neither). `saved` and `dy` have the same shape; the result is contiguous.
pub(super) fn unary_backward(op: UnaryOp, saved: Option<&Tensor>, dy: &Tensor) -> Result<Tensor> {
    let name = op.name();
    let g_buf = dy.cpu_buffer(name)?;
    let s_own;
    let s_buf = match saved {
        // `y` saved from `x.exp()` never shares dy's storage, but a user-built call may:
        // one read guard for both (see `binary`).
        Some(s) if !s.shares_storage(dy) => {
            s_own = s.cpu_buffer(name)?;
            Some(&*s_own)
        }
        Some(_) => Some(&*g_buf),
        None => None,
    };
    let gl = dy.layout();
    let sl = saved.map_or(gl, |s| s.layout());
    let out = match (&*g_buf, s_buf) {
        (CpuBuffer::F32(g), None) => CpuBuffer::F32(unary_backward_typed(op, g, gl, g, gl)),
        (CpuBuffer::F32(g), Some(CpuBuffer::F32(v))) => {
            CpuBuffer::F32(unary_backward_typed(op, v, sl, g, gl))
        }
        (CpuBuffer::F64(g), None) => CpuBuffer::F64(unary_backward_typed(op, g, gl, g, gl)),
        (CpuBuffer::F64(g), Some(CpuBuffer::F64(v))) => {
            CpuBuffer::F64(unary_backward_typed(op, v, sl, g, gl))
        }
        (g, s) => {
            return Err(Error::dtype(
                name,
                format!(
                    "backward: the gradient is {}{}; the cpu backend computes in f32 or f64 \
                     with one dtype throughout",
                    g.dtype(),
                    s.map(|s| format!(", the saved tensor {}", s.dtype()))
                        .unwrap_or_default()
                ),
            ))
        }
    };
    Tensor::from_cpu_buffer(out, dy.shape().clone())
}

/// `s` is what the op reads (x or y; `g` itself when it reads neither), `g` = dy.
fn unary_backward_typed<T: Float>(
    op: UnaryOp,
    s: &[T],
    sl: &Layout,
    g: &[T],
    gl: &Layout,
) -> Vec<T> {
    let p = T::from_f64;
    let two = T::ONE + T::ONE;
    let shape = &gl.shape;
    match op {
        UnaryOp::Copy => map1(g, gl, |g| g),
        UnaryOp::Neg => map1(g, gl, |g: T| -g),
        UnaryOp::Exp => map2(s, sl, g, gl, shape, |y, g| g * y),
        UnaryOp::Log => map2(s, sl, g, gl, shape, |x, g| g / x),
        UnaryOp::Sqrt => map2(s, sl, g, gl, shape, move |y, g| g / (two * y)),
        // sign(x)·g with sign(0) = sign(NaN) = 0, as PyTorch.
        UnaryOp::Abs => map2(s, sl, g, gl, shape, |x, g| {
            if x > T::ZERO {
                g
            } else if x < T::ZERO {
                -g
            } else {
                T::ZERO
            }
        }),
        // PyTorch's threshold_backward: the gradient passes unless y <= 0 (NaN passes it).
        UnaryOp::Relu => map2(
            s,
            sl,
            g,
            gl,
            shape,
            |y, g| if y <= T::ZERO { T::ZERO } else { g },
        ),
        UnaryOp::LeakyRelu { slope } => {
            let k = p(slope);
            map2(
                s,
                sl,
                g,
                gl,
                shape,
                move |x, g| if x > T::ZERO { g } else { g * k },
            )
        }
        UnaryOp::Sigmoid => map2(s, sl, g, gl, shape, |y, g| g * ((T::ONE - y) * y)),
        UnaryOp::Tanh => map2(s, sl, g, gl, shape, |y, g| g * (T::ONE - y * y)),
        UnaryOp::Clamp { min, max } => {
            let (lo, hi) = (p(min), p(max));
            map2(s, sl, g, gl, shape, move |x, g| {
                // Strictly inside: PyTorch (2.15) gives 0 at a bound, as hardtanh.
                if x > lo && x < hi {
                    g
                } else {
                    T::ZERO
                }
            })
        }
        UnaryOp::Powf { exponent } => {
            let e = p(exponent);
            let e1 = p(exponent - 1.0);
            if e == T::ZERO {
                map1(g, gl, |_| T::ZERO)
            } else {
                map2(s, sl, g, gl, shape, move |x: T, g| g * (e * x.powf(e1)))
            }
        }
        UnaryOp::Affine { mul, .. } => {
            let m = p(mul);
            map1(g, gl, move |g| g * m)
        }
    }
}

/// The partials of `op` times `dy` at the output shape `shape` (= dy's), each only when
/// wanted; `a`/`b` may be None when the wanted partials do not read them.
pub(super) fn binary_backward(
    op: BinaryOp,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    dy: &Tensor,
    shape: &Shape,
    want_a: bool,
    want_b: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let name = op.name();
    let gl = dy.layout();
    // Unread operands are stood in for by dy (same shape, never read).
    let al = match a {
        Some(a) => a.layout().broadcast_to(name, shape)?,
        None => gl.clone(),
    };
    let bl = match b {
        Some(b) => b.layout().broadcast_to(name, shape)?,
        None => gl.clone(),
    };
    // One read guard per distinct storage (`x * x` saves one tensor twice).
    let g_buf = dy.cpu_buffer(name)?;
    let a_own;
    let a_buf = match a {
        Some(a) if !a.shares_storage(dy) => {
            a_own = a.cpu_buffer(name)?;
            &*a_own
        }
        _ => &*g_buf,
    };
    let b_own;
    let b_buf = match (a, b) {
        (_, Some(b)) if b.shares_storage(dy) => &*g_buf,
        (Some(a), Some(b)) if b.shares_storage(a) => a_buf,
        (_, Some(b)) => {
            b_own = b.cpu_buffer(name)?;
            &*b_own
        }
        (_, None) => &*g_buf,
    };
    let wrap = |v: Option<CpuBuffer>| -> Result<Option<Tensor>> {
        v.map(|v| Tensor::from_cpu_buffer(v, shape.clone()))
            .transpose()
    };
    match (a_buf, b_buf, &*g_buf) {
        (CpuBuffer::F32(x), CpuBuffer::F32(y), CpuBuffer::F32(g)) => {
            let (da, db) = binary_backward_typed(op, x, &al, y, &bl, g, gl, want_a, want_b);
            Ok((wrap(da.map(CpuBuffer::F32))?, wrap(db.map(CpuBuffer::F32))?))
        }
        (CpuBuffer::F64(x), CpuBuffer::F64(y), CpuBuffer::F64(g)) => {
            let (da, db) = binary_backward_typed(op, x, &al, y, &bl, g, gl, want_a, want_b);
            Ok((wrap(da.map(CpuBuffer::F64))?, wrap(db.map(CpuBuffer::F64))?))
        }
        (x, y, g) => Err(Error::dtype(
            name,
            format!(
                "backward: operands {} and {}, gradient {}; the cpu backend computes in f32 \
                 or f64 with one dtype throughout",
                x.dtype(),
                y.dtype(),
                g.dtype()
            ),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn binary_backward_typed<T: Float>(
    op: BinaryOp,
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
    g: &[T],
    gl: &Layout,
    want_a: bool,
    want_b: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let half = T::from_f64(0.5);
    // A macro, not a closure, so each rule is its own monomorphised (inlinable) loop.
    macro_rules! run {
        ($f:expr) => {
            map3(a, al, b, bl, g, gl, &$f)
        };
    }
    let da = want_a.then(|| match op {
        BinaryOp::Add | BinaryOp::Sub => run!(|_, _, g| g),
        BinaryOp::Mul => run!(|_, b, g| g * b),
        BinaryOp::Div => run!(|_, b, g| g / b),
        BinaryOp::Pow => run!(|a: T, b: T, g| {
            if b == T::ZERO {
                T::ZERO
            } else {
                g * (b * a.powf(b - T::ONE))
            }
        }),
        BinaryOp::Maximum => run!(move |a, b, g| {
            if a < b {
                T::ZERO
            } else if a == b {
                g * half
            } else {
                g
            }
        }),
        BinaryOp::Minimum => run!(move |a, b, g| {
            if a > b {
                T::ZERO
            } else if a == b {
                g * half
            } else {
                g
            }
        }),
    });
    let db = want_b.then(|| match op {
        BinaryOp::Add => run!(|_, _, g| g),
        BinaryOp::Sub => run!(|_, _, g: T| -g),
        BinaryOp::Mul => run!(|a, _, g| g * a),
        BinaryOp::Div => run!(|a, b, g: T| (-g * a) / (b * b)),
        BinaryOp::Pow => run!(|a: T, b: T, g| {
            if a == T::ZERO && b >= T::ZERO {
                T::ZERO
            } else {
                g * (a.powf(b) * a.ln())
            }
        }),
        BinaryOp::Maximum => run!(move |a, b, g| {
            if a > b {
                T::ZERO
            } else if a == b {
                g * half
            } else {
                g
            }
        }),
        BinaryOp::Minimum => run!(move |a, b, g| {
            if a < b {
                T::ZERO
            } else if a == b {
                g * half
            } else {
                g
            }
        }),
    });
    (da, db)
}
