//! Counter-based random numbers: Philox4x32-10 (Salmon et al. 2011, "Parallel random
//! numbers: as easy as 1, 2, 3").
//!
//! The stream of a seed is an infinite sequence of u32 words: word `p` is word `p % 4`
//! of `philox4x32_10(counter = [p/4 lo, p/4 hi, 0, 0], key = [seed lo, seed hi])`.
//! A draw of `n` elements at `offset` uses positions `offset .. offset + n`, so a draw at
//! offset `k` equals elements `k..` of a draw at offset 0, on every backend.
//!
//! * uniform: `(w >> 8) · 2^-24` in [0, 1) (exact in f32).
//! * normal: Box–Muller on word pairs `(2⌊p/2⌋, 2⌊p/2⌋+1)`: `u1 = ((w0 >> 8) + 1)·2^-24`
//!   in (0, 1], `u2 = (w1 >> 8)·2^-24`, `r = √(−2 ln u1)`; even `p` → `r cos 2πu2`,
//!   odd `p` → `r sin 2πu2`.
//!
//! `ln` and `sincos` are our own ([`logf`], [`sincos_2pi`]) built from +, −, ×, fma and
//! √ only, mirrored operation for operation in kernels/rng.cu, so `cpu` and `emu` agree
//! bitwise and a GPU agrees bitwise as long as its fma/sqrt are IEEE (they are).

#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod simt;

pub use cpu::{
    box_muller, logf, normal_at, philox4x32_10, philox_block, sincos_2pi, uniform_at,
    uniform_from_word, Philox,
};

use crate::device::cpu::CpuBuffer;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Uniform in [0, 1).
    Uniform,
    /// Standard normal (mean 0, variance 1).
    Normal,
}

/// Uniform [0, 1) values from the stream (`seed`, `offset`), generated in f32 and
/// converted to `dtype` when it is not f32.
pub fn uniform(
    shape: &Shape,
    seed: u64,
    offset: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    sample(Distribution::Uniform, shape, seed, offset, dtype, device)
}

/// Standard normal values from the stream (`seed`, `offset`), generated in f32 and
/// converted to `dtype` when it is not f32.
pub fn normal(
    shape: &Shape,
    seed: u64,
    offset: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    sample(Distribution::Normal, shape, seed, offset, dtype, device)
}

pub fn sample(
    dist: Distribution,
    shape: &Shape,
    seed: u64,
    offset: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let _p = crate::profile::forward("rng");
    let n = shape.checked_numel().ok_or_else(|| {
        Error::invalid(format!(
            "rng: shape {shape} has more elements than a usize holds"
        ))
    })?;
    if offset.checked_add(n as u64).is_none() {
        return Err(Error::invalid(format!(
            "rng: offset {offset} + {n} elements (shape {shape}) overflows the 2^64 positions of a Philox stream"
        )));
    }
    crate::ops::check_storage_dtype("rng", dtype, device)?;
    let out = match device.simt() {
        None => {
            let mut v = crate::device::cpu::try_filled("rng", shape, 0f32)?;
            match dist {
                Distribution::Uniform => cpu::uniform_f32(&mut v, seed, offset),
                Distribution::Normal => cpu::normal_f32(&mut v, seed, offset),
            }
            Tensor::from_cpu_buffer(CpuBuffer::F32(v), shape.clone())?
        }
        Some(simt) => simt::sample_f32(simt, device, dist, shape, seed, offset)?,
    };
    out.to_dtype(dtype)
}

/// The random-tensor constructors.
impl Tensor {
    /// Uniform in [0, 1) from the Philox stream (`seed`, `offset`): same numbers on every backend.
    pub fn rand(
        shape: impl Into<Shape>,
        seed: u64,
        offset: u64,
        device: &Device,
    ) -> Result<Tensor> {
        uniform(&shape.into(), seed, offset, DType::F32, device)
    }
    /// Standard normal from the Philox stream (`seed`, `offset`): same numbers on every backend.
    pub fn randn(
        shape: impl Into<Shape>,
        seed: u64,
        offset: u64,
        device: &Device,
    ) -> Result<Tensor> {
        normal(&shape.into(), seed, offset, DType::F32, device)
    }
}
