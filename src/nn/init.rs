//! Parameter initialisers, all drawn from the Philox stream ([`crate::ops::rng`]) with an
//! explicit seed, so a model initialises to the same numbers on every backend.
//!
//! * [`ParamRng`] — a (seed, offset) cursor: each draw uses the next positions of the
//!   stream (rounded up to a multiple of 4, one Philox block), so successive layers get
//!   disjoint, reproducible numbers.
//! * PyTorch's defaults: [`kaiming_uniform`] with `a = √5` for Linear/Conv weights, which is
//!   `U(−1/√fan_in, 1/√fan_in)`, and the bias `U(−1/√fan_in, 1/√fan_in)` ([`default_bias`]).
//! * [`xavier_uniform`]: `U(−b, b)`, `b = gain·√(6/(fan_in + fan_out))`;
//!   [`xavier_normal`] and [`kaiming_normal`] (fan-in mode) likewise.
//! * DCGAN (Radford et al.): [`dcgan_init`] — every weight of rank ≥ 2 (Linear, Conv,
//!   ConvTranspose) `N(0, 0.02)`, every weight of rank 1 (BatchNorm/InstanceNorm γ)
//!   `N(1, 0.02)`, every bias 0.
//!
//! Fans follow PyTorch's `_calculate_fan_in_and_fan_out`: for a weight `[d0, d1, k…]`,
//! `fan_in = d1·Πk`, `fan_out = d0·Πk` (so for ConvTranspose2d `[Cin, Cout, kh, kw]` the
//! fan-in is `Cout·kh·kw`, as in PyTorch).

use crate::autograd::no_grad;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::view::copy_into;
use crate::tensor::{Shape, Tensor};

use super::Module;

/// A reproducible cursor into one Philox stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamRng {
    pub seed: u64,
    pub offset: u64,
}

impl ParamRng {
    pub fn new(seed: u64) -> Self {
        ParamRng { seed, offset: 0 }
    }

    fn advance(&mut self, n: usize) -> u64 {
        let start = self.offset;
        let n = (n as u64).div_ceil(4) * 4;
        self.offset = self.offset.wrapping_add(n);
        start
    }

    /// `U(lo, hi)` f32 values of `shape` on `device`.
    pub fn uniform(
        &mut self,
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let off = self.advance(shape.numel());
        no_grad(|| Tensor::rand(shape, self.seed, off, device)?.affine(hi - lo, lo))
    }

    /// `N(mean, std²)` f32 values of `shape` on `device`.
    pub fn normal(
        &mut self,
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let off = self.advance(shape.numel());
        no_grad(|| Tensor::randn(shape, self.seed, off, device)?.affine(std, mean))
    }
}

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::invalid(format!(
            "init: fan in/out need a weight of rank >= 2, got shape {shape:?}"
        )));
    }
    let field: usize = shape[2..].iter().product();
    Ok((shape[1] * field, shape[0] * field))
}

/// Kaiming (He) uniform with leaky-ReLU slope `a` (fan-in mode):
/// `U(−b, b)`, `b = √(2/(1 + a²))·√(3/fan_in)`. With `a = √5` (PyTorch's default for
/// Linear and Conv) `b = 1/√fan_in`.
pub fn kaiming_uniform(
    rng: &mut ParamRng,
    shape: &[usize],
    a: f64,
    device: &Device,
) -> Result<Tensor> {
    let (fan_in, _) = fans(shape)?;
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let bound = gain * (3.0 / fan_in.max(1) as f64).sqrt();
    rng.uniform(shape.to_vec(), -bound, bound, device)
}

/// Xavier (Glorot) uniform: `U(−b, b)`, `b = gain·√(6/(fan_in + fan_out))`.
pub fn xavier_uniform(
    rng: &mut ParamRng,
    shape: &[usize],
    gain: f64,
    device: &Device,
) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let bound = gain * (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    rng.uniform(shape.to_vec(), -bound, bound, device)
}

/// Kaiming (He) normal, fan-in mode: `N(0, σ²)`, `σ = √(2/(1 + a²))/√fan_in`.
pub fn kaiming_normal(
    rng: &mut ParamRng,
    shape: &[usize],
    a: f64,
    device: &Device,
) -> Result<Tensor> {
    let (fan_in, _) = fans(shape)?;
    let std = (2.0 / (1.0 + a * a)).sqrt() / (fan_in.max(1) as f64).sqrt();
    rng.normal(shape.to_vec(), 0.0, std, device)
}

/// Xavier (Glorot) normal: `N(0, σ²)`, `σ = gain·√(2/(fan_in + fan_out))`.
pub fn xavier_normal(
    rng: &mut ParamRng,
    shape: &[usize],
    gain: f64,
    device: &Device,
) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let std = gain * (2.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    rng.normal(shape.to_vec(), 0.0, std, device)
}

/// PyTorch's default bias of a Linear/Conv layer: `U(−1/√fan_in, 1/√fan_in)`.
pub fn default_bias(
    rng: &mut ParamRng,
    len: usize,
    fan_in: usize,
    device: &Device,
) -> Result<Tensor> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    rng.uniform(vec![len], -bound, bound, device)
}

/// Overwrite `dst` in place (its storage, so every tensor sharing it — the parameter leaf
/// an optimizer holds — sees the new values) with `src`.
pub fn assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    no_grad(|| {
        let src = src
            .to_dtype(dst.dtype())?
            .to_device(dst.device())?
            .contiguous()?;
        copy_into(&src, dst)
    })
}

/// DCGAN initialisation of every parameter of `module`, in place: weights of rank ≥ 2
/// `N(0, 0.02)`, weights of rank 1 (norm γ) `N(1, 0.02)`, biases 0.
pub fn dcgan_init(module: &dyn Module, rng: &mut ParamRng) -> Result<()> {
    for (name, p) in module.parameters() {
        let leaf = name.rsplit('.').next().unwrap_or(&name);
        let dims = p.dims().to_vec();
        let value = if leaf == "bias" {
            Tensor::zeros(dims, p.dtype(), p.device())?
        } else if dims.len() >= 2 {
            rng.normal(dims, 0.0, 0.02, p.device())?
        } else {
            rng.normal(dims, 1.0, 0.02, p.device())?
        };
        assign(&p, &value)?;
    }
    Ok(())
}
