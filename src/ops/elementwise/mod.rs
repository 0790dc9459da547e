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

mod cpu;
mod simt;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

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

/// Refuse storage-only dtypes, and f64 on devices whose kernels are f32-only.
fn check_compute(op: &'static str, what: &str, dtype: DType, device: &Device) -> Result<()> {
    if !dtype.is_compute() {
        return Err(Error::dtype(
            op,
            format!(
                "{what} is {dtype}, a storage-only dtype; cast with .to_dtype(DType::F32) first"
            ),
        ));
    }
    if dtype != DType::F32 && !device.is_cpu() {
        return Err(Error::dtype(
            op,
            format!(
                "{what} is {dtype}, but the kernels on {device} compute in f32 only \
                 ({dtype} is cpu-only); cast with .to_dtype(DType::F32) first"
            ),
        ));
    }
    Ok(())
}

/// Apply `op` to every element of `x`; the result is a new contiguous tensor.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    if op != UnaryOp::Copy {
        check_compute(op.name(), "the input", x.dtype(), x.device())?;
    }
    match x.device() {
        Device::Cpu => cpu::unary(x, op),
        Device::Cuda(..) | Device::Emu(..) => simt::unary(x, op),
    }
}

/// Apply `op` to `a` and `b` broadcast to a common shape (NumPy/PyTorch rules).
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
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
    match a.device() {
        Device::Cpu => cpu::binary(a, b, &shape, op),
        Device::Cuda(..) | Device::Emu(..) => simt::binary(a, b, &shape, op),
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

/// Gradient-check cases for this family (see `autograd::gradcheck`).
pub fn gradcheck_cases() -> Result<Vec<crate::autograd::gradcheck::GradCase>> {
    Ok(Vec::new())
}
