//! Elementwise ops: unary maps (`neg`, `exp`, `log`, `sqrt`, `abs`, `relu`,
//! `leaky_relu`, `sigmoid`, `tanh`, `clamp`, `powf`, `affine` and the strided copy behind
//! [`Tensor::contiguous`]) and binary maps with NumPy/PyTorch broadcasting (`add`, `sub`,
//! `mul`, `div`, `pow`, `maximum`, `minimum`).
//!
//! Every op returns a fresh contiguous tensor on the input's device. Compute dtypes are
//! f32 everywhere and f64 on the cpu backend; f16/bf16 are storage-only (only the copy
//! accepts them). Semantics follow PyTorch: NaN propagates through `relu`, `clamp`,
//! `maximum`, `minimum`; `sigmoid` never overflows; `log(0) = -inf`, `log(-1) = NaN`,
//! `pow(0, 0) = 1`.
//!
//! Backends: `cpu.rs` (Rust kernels, vectorisable row loops, rayon above
//! `PARALLEL_THRESHOLD`) and `simt.rs` (the launch logic for `kernels/elementwise.cu`,
//! shared by `cuda` and `emu`). The op codes below are the contract with the .cu file.
//!
//! **Autodiff.** [`unary`] and [`binary`] (and so every `Tensor` method built on them,
//! including the copy behind `contiguous()`) record themselves on the tape under the op's
//! [`UnaryOp::name`] / [`BinaryOp::name`], saving (detached) only what their hand-written
//! backward rule reads: exp, sqrt, relu, sigmoid, tanh save the output; log, abs,
//! leaky_relu, clamp, powf save the input; copy, neg, affine, add, sub save nothing; mul
//! saves the operand the *other* gradient needs; div saves b (and a when b needs a
//! gradient); pow, maximum, minimum save both. The rules run as kernels
//! (`unary_backward_f32`, `binary_backward_f32` in kernels/elementwise.cu, and their cpu
//! counterparts), never as compositions of differentiable ops. A binary rule computes
//! each partial at the output shape, then [`sum_to_shape`] reduces it to its operand's
//! shape (the backward of broadcasting).
//!
//! Derivative conventions (PyTorch's):
//! * `relu'` is 0 where the output is <= 0, else 1 (0 at 0; 1 for NaN, as PyTorch);
//! * `abs'(x) = sign(x)`: 0 at 0 and for NaN (PyTorch's sgn);
//! * `leaky_relu'(x)` is 1 for x > 0, else `slope` (so `slope` at 0);
//! * `clamp` passes the gradient where `min < x < max`, else 0 (0 at a bound, as PyTorch 2.15);
//! * `powf` with exponent 0 has gradient 0 everywhere; otherwise `e·x^(e−1)`;
//! * `sigmoid' = y(1−y)`, `tanh' = 1−y²`, `sqrt' = 1/(2y)`, `exp' = y`, `log' = 1/x`;
//! * `div`: `da = dy/b`, `db = −dy·a/(b·b)`;
//! * `pow(a, b)`: `da = dy·b·a^(b−1)` (0 where b = 0), `db = dy·a^b·ln a` (0 where
//!   a = 0 and b >= 0; NaN for a < 0, as ln a is);
//! * `maximum`/`minimum`: the winning operand gets dy, the other 0; a tie gives each
//!   dy/2; NaN in either operand gives both dy.

mod cpu;
mod gradcheck;
mod simt;

#[doc(hidden)]
pub use gradcheck::gradcheck_cases;

use crate::error::{Error, Result};
use crate::ops::check_compute;
use crate::ops::reduce::sum_to_shape;
use crate::tensor::tape::{self, Backward};
use crate::tensor::{Shape, Tensor};

/// A unary elementwise map. Parameters are f64 here and rounded to the compute dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// Identity: a strided → contiguous copy (any dtype, including f16/bf16).
    Copy,
    Neg,
    Exp,
    /// Natural logarithm.
    Log,
    Sqrt,
    Abs,
    Relu,
    /// `x` for `x >= 0`, `slope * x` for `x < 0`.
    LeakyRelu {
        slope: f64,
    },
    Sigmoid,
    Tanh,
    /// `min(max(x, min), max)` in PyTorch's order (so `min > max` gives `max`).
    Clamp {
        min: f64,
        max: f64,
    },
    /// `x` raised to a scalar exponent.
    Powf {
        exponent: f64,
    },
    /// `x * mul + add` (one rounding on the simt backends and for f32 on cpu).
    Affine {
        mul: f64,
        add: f64,
    },
}

/// Op codes of the unary kernels: `op` parameter of `unary_*_f32` in
/// kernels/elementwise.cu (`EW_*` constants there).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryCode {
    Copy = 0,
    Neg = 1,
    Exp = 2,
    Log = 3,
    Sqrt = 4,
    Abs = 5,
    Relu = 6,
    LeakyRelu = 7,
    Sigmoid = 8,
    Tanh = 9,
    Clamp = 10,
    Powf = 11,
    Affine = 12,
}

impl UnaryOp {
    /// The op's name in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Copy => "copy",
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Clamp { .. } => "clamp",
            UnaryOp::Powf { .. } => "powf",
            UnaryOp::Affine { .. } => "affine",
        }
    }
    /// The kernel op code and its two scalar parameters (`p0`, `p1`; unused ones are 0).
    pub fn code(&self) -> (UnaryCode, f64, f64) {
        match *self {
            UnaryOp::Copy => (UnaryCode::Copy, 0.0, 0.0),
            UnaryOp::Neg => (UnaryCode::Neg, 0.0, 0.0),
            UnaryOp::Exp => (UnaryCode::Exp, 0.0, 0.0),
            UnaryOp::Log => (UnaryCode::Log, 0.0, 0.0),
            UnaryOp::Sqrt => (UnaryCode::Sqrt, 0.0, 0.0),
            UnaryOp::Abs => (UnaryCode::Abs, 0.0, 0.0),
            UnaryOp::Relu => (UnaryCode::Relu, 0.0, 0.0),
            UnaryOp::LeakyRelu { slope } => (UnaryCode::LeakyRelu, slope, 0.0),
            UnaryOp::Sigmoid => (UnaryCode::Sigmoid, 0.0, 0.0),
            UnaryOp::Tanh => (UnaryCode::Tanh, 0.0, 0.0),
            UnaryOp::Clamp { min, max } => (UnaryCode::Clamp, min, max),
            UnaryOp::Powf { exponent } => (UnaryCode::Powf, exponent, 0.0),
            UnaryOp::Affine { mul, add } => (UnaryCode::Affine, mul, add),
        }
    }
    /// Which tensor the op's backward rule reads (and so what it saves).
    pub fn backward_reads(&self) -> Reads {
        match self {
            UnaryOp::Copy | UnaryOp::Neg | UnaryOp::Affine { .. } => Reads::Nothing,
            UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Relu | UnaryOp::Sigmoid | UnaryOp::Tanh => {
                Reads::Output
            }
            UnaryOp::Log
            | UnaryOp::Abs
            | UnaryOp::LeakyRelu { .. }
            | UnaryOp::Clamp { .. }
            | UnaryOp::Powf { .. } => Reads::Input,
        }
    }
}

/// What a unary op's backward rule reads besides the output gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    Nothing,
    /// The op's input x.
    Input,
    /// The op's output y.
    Output,
}

/// A binary elementwise map with broadcasting. The discriminant is the kernel op code:
/// `op` parameter of `binary_*_f32` in kernels/elementwise.cu.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    /// `a` raised to `b`, elementwise.
    Pow = 4,
    /// Elementwise maximum; NaN if either operand is NaN.
    Maximum = 5,
    /// Elementwise minimum; NaN if either operand is NaN.
    Minimum = 6,
}

impl BinaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
    pub fn code(&self) -> i32 {
        *self as i32
    }
}

/// Apply `op` to every element of `x`; the result is a new contiguous tensor.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let _p = crate::profile::forward(op.name());
    if op != UnaryOp::Copy {
        check_compute(op.name(), "the input", x.dtype(), x.device())?;
    }
    let y = match x.device().simt() {
        None => cpu::unary(x, op),
        Some(simt) => simt::unary(simt, x, op),
    }?;
    Ok(tape::record(op.name(), &[x], y.clone(), || {
        let saved = match op.backward_reads() {
            Reads::Nothing => None,
            Reads::Input => Some(tape::save(x)),
            Reads::Output => Some(tape::save(&y)),
        };
        UnaryBackward { op, saved }
    }))
}

/// Apply `op` to `a` and `b` broadcast to a common shape (NumPy/PyTorch rules).
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let _p = crate::profile::forward(op.name());
    let name = op.name();
    a.device().check_same(name, b.device())?;
    if a.dtype() != b.dtype() {
        return Err(Error::dtype(
            name,
            format!(
                "lhs is {}, rhs is {}; cast one with .to_dtype(..) so both match",
                a.dtype(),
                b.dtype()
            ),
        ));
    }
    check_compute(name, "lhs", a.dtype(), a.device())?;
    let shape = Shape::broadcast(name, a.shape(), b.shape())?;
    let y = match a.device().simt() {
        None => cpu::binary(a, b, &shape, op),
        Some(simt) => simt::binary(simt, a, b, &shape, op),
    }?;
    Ok(tape::record(name, &[a, b], y, || {
        let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
        // What each partial reads: dA of mul needs b, dB needs a; div's dA needs b, its
        // dB both; pow, maximum and minimum read both for either partial.
        let (save_a, save_b) = match op {
            BinaryOp::Add | BinaryOp::Sub => (false, false),
            BinaryOp::Mul => (need_b, need_a),
            BinaryOp::Div => (need_b, true),
            BinaryOp::Pow | BinaryOp::Maximum | BinaryOp::Minimum => (true, true),
        };
        BinaryBackward {
            op,
            a: save_a.then(|| tape::save(a)),
            b: save_b.then(|| tape::save(b)),
            a_shape: a.shape().clone(),
            b_shape: b.shape().clone(),
            need_a,
            need_b,
        }
    }))
}

fn bytes_of(t: &Option<Tensor>) -> usize {
    t.as_ref()
        .map_or(0, |t| t.numel() * t.dtype().size_in_bytes())
}

/// The backward rule of a unary op: `dx = dy · f'(x)`, from the saved x or y.
struct UnaryBackward {
    op: UnaryOp,
    /// The input or the output, as `op.backward_reads()` says (None when it reads neither).
    saved: Option<Tensor>,
}

impl Backward for UnaryBackward {
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(unary_backward(
            self.op,
            self.saved.as_ref(),
            grad_output,
        )?)])
    }
    fn saved_bytes(&self) -> usize {
        bytes_of(&self.saved)
    }
}

/// The backward rule of a binary op: both partials at the output shape, each summed
/// down to its operand's shape.
struct BinaryBackward {
    op: BinaryOp,
    a: Option<Tensor>,
    b: Option<Tensor>,
    a_shape: Shape,
    b_shape: Shape,
    need_a: bool,
    need_b: bool,
}

impl Backward for BinaryBackward {
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = self.op;
        // Identity partials need no kernel: add's both, sub's dA.
        let identity_a = matches!(op, BinaryOp::Add | BinaryOp::Sub);
        let identity_b = op == BinaryOp::Add;
        let (ka, kb) = binary_backward(
            op,
            self.a.as_ref(),
            self.b.as_ref(),
            grad_output,
            self.need_a && !identity_a,
            self.need_b && !identity_b,
        )?;
        let finish = |need: bool, identity: bool, k: Option<Tensor>, shape: &Shape| {
            if !need {
                return Ok(None);
            }
            let full = if identity {
                grad_output.clone()
            } else {
                k.expect("the kernel computed the wanted partial")
            };
            sum_to_shape(&full, shape).map(Some)
        };
        Ok(vec![
            finish(self.need_a, identity_a, ka, &self.a_shape)?,
            finish(self.need_b, identity_b, kb, &self.b_shape)?,
        ])
    }
    fn saved_bytes(&self) -> usize {
        bytes_of(&self.a) + bytes_of(&self.b)
    }
}

/// `dx = dy · f'(x)` for the unary op `op`, by hand (no tape): `saved` is the input x or
/// the output y as `op.backward_reads()` says (None for ops that read neither), `dy` the
/// gradient of the output. The result is contiguous with `dy`'s shape.
pub fn unary_backward(op: UnaryOp, saved: Option<&Tensor>, dy: &Tensor) -> Result<Tensor> {
    let name = op.name();
    if op == UnaryOp::Copy {
        return Ok(dy.detach()); // the identity: a copy's gradient is the output's
    }
    check_compute(name, "the output gradient", dy.dtype(), dy.device())?;
    let reads = op.backward_reads();
    match (reads, saved) {
        (Reads::Nothing, _) => {}
        (_, Some(s)) => {
            s.device().check_same(name, dy.device())?;
            if s.shape() != dy.shape() || s.dtype() != dy.dtype() {
                return Err(Error::shape(
                    name,
                    format!(
                        "backward: the saved tensor is {} {} but the gradient is {} {}",
                        s.shape(),
                        s.dtype(),
                        dy.shape(),
                        dy.dtype()
                    ),
                ));
            }
        }
        (_, None) => {
            return Err(Error::invalid(format!(
                "backward of {name} needs its saved {} (got none)",
                if reads == Reads::Input {
                    "input"
                } else {
                    "output"
                }
            )))
        }
    }
    let saved = if reads == Reads::Nothing { None } else { saved };
    match dy.device().simt() {
        None => cpu::unary_backward(op, saved, dy),
        Some(simt) => simt::unary_backward(simt, op, saved, dy),
    }
}

/// The partials of the binary op `op` times `dy`, at the output shape (`dy`'s), by hand
/// (no tape): `(dy·∂g/∂a, dy·∂g/∂b)`, each computed only when wanted. `a` and `b` are the
/// operands (broadcastable to `dy`'s shape); an operand the wanted partials do not read
/// may be None (add/sub read neither, mul's dA reads only b and its dB only a). Sum the
/// results to the operands' shapes with [`sum_to_shape`].
pub fn binary_backward(
    op: BinaryOp,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    dy: &Tensor,
    want_a: bool,
    want_b: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    if !want_a && !want_b {
        return Ok((None, None));
    }
    let name = op.name();
    check_compute(name, "the output gradient", dy.dtype(), dy.device())?;
    let (read_a, read_b) = match op {
        BinaryOp::Add | BinaryOp::Sub => (false, false),
        BinaryOp::Mul => (want_b, want_a),
        BinaryOp::Div => (want_b, true),
        BinaryOp::Pow | BinaryOp::Maximum | BinaryOp::Minimum => (true, true),
    };
    let pick = |t: Option<&Tensor>, read: bool, which: &str| -> Result<Option<Tensor>> {
        if !read {
            return Ok(None);
        }
        let t = t.ok_or_else(|| {
            Error::invalid(format!(
                "backward of {name} needs operand {which} (got none)"
            ))
        })?;
        t.device().check_same(name, dy.device())?;
        if t.dtype() != dy.dtype() {
            return Err(Error::dtype(
                name,
                format!(
                    "backward: operand {which} is {} but the gradient is {}",
                    t.dtype(),
                    dy.dtype()
                ),
            ));
        }
        Ok(Some(t.clone()))
    };
    let (a, b) = (pick(a, read_a, "a")?, pick(b, read_b, "b")?);
    let shape = dy.shape().clone();
    match dy.device().simt() {
        None => cpu::binary_backward(op, a.as_ref(), b.as_ref(), dy, &shape, want_a, want_b),
        Some(simt) => {
            simt::binary_backward(simt, op, a.as_ref(), b.as_ref(), dy, &shape, want_a, want_b)
        }
    }
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// `self * other`, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// `self / other`, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }
    /// `self ** other` elementwise, broadcasting.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Pow)
    }
    /// Elementwise maximum, broadcasting; NaN if either side is NaN.
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Maximum)
    }
    /// Elementwise minimum, broadcasting; NaN if either side is NaN.
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Minimum)
    }
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    pub fn relu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Relu)
    }
    /// `x` for `x >= 0`, `slope * x` below.
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        unary(self, UnaryOp::LeakyRelu { slope })
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    /// Clamp into `[min, max]` (PyTorch order: `min > max` yields `max`); NaN stays NaN.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Clamp { min, max })
    }
    /// `self ** exponent` for a scalar exponent.
    pub fn powf(&self, exponent: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Powf { exponent })
    }
    /// `self * mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Affine { mul, add })
    }
    /// `self + value`.
    pub fn add_scalar(&self, value: f64) -> Result<Tensor> {
        self.affine(1.0, value)
    }
    /// `self * value`.
    pub fn mul_scalar(&self, value: f64) -> Result<Tensor> {
        self.affine(value, 0.0)
    }
}

/// The contiguous copy.
impl Tensor {
    /// A tensor with contiguous row-major storage (self when already so).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.layout().offset == 0 {
            return Ok(self.clone());
        }
        unary(self, UnaryOp::Copy)
    }
}
