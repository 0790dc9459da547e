//! Toy distributions of the mode-collapse experiments: isotropic Gaussian mixtures with
//! equal weights — a ring of 8 (radius 2, std 0.02, as in the unrolled-GAN and VEEGAN
//! setups), a 5 × 5 grid (centres −4, −2, 0, 2, 4, std 0.05) and 1-D mixtures.
//!
//! Sampling is a pure function of `(seed, index)` on the Philox stream: sample `i` uses
//! the four words of Philox block `i` — word 0 picks the mode
//! (`⌊w·K / 2^32⌋`), words 2 and 3 give (Box–Muller) the normal noise of coordinates 0 and 1.
//! So `sample(n, seed, k)` equals rows `k..k+n` of `sample(k+n, seed, 0)`.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::rng::Philox;
use crate::tensor::Tensor;

/// An equal-weight mixture of isotropic Gaussians with a common standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixture {
    modes: Vec<Vec<f64>>,
    std: f64,
}

impl Mixture {
    /// Any mixture of 1-D or 2-D modes (all of the same dimension) with a common `std`.
    pub fn new(modes: Vec<Vec<f64>>, std: f64) -> Result<Mixture> {
        let d = modes.first().map_or(0, |m| m.len());
        if modes.is_empty() || !(1..=2).contains(&d) || modes.iter().any(|m| m.len() != d) {
            return Err(Error::invalid(
                "a toy mixture needs at least one mode, all of dimension 1 or all of dimension 2",
            ));
        }
        if !(std.is_finite() && std >= 0.0) {
            return Err(Error::invalid(format!(
                "toy mixture std must be finite and >= 0, got {std}"
            )));
        }
        Ok(Mixture { modes, std })
    }

    /// `k` modes evenly spaced on a circle of `radius` (mode `i` at angle `2πi/k`).
    pub fn ring(k: usize, radius: f64, std: f64) -> Result<Mixture> {
        let modes = (0..k)
            .map(|i| {
                let a = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
                vec![radius * a.cos(), radius * a.sin()]
            })
            .collect();
        Mixture::new(modes, std)
    }

    /// The standard ring: 8 modes, radius 2, std 0.02.
    pub fn ring8() -> Mixture {
        Mixture::ring(8, 2.0, 0.02).expect("valid ring")
    }

    /// A `side × side` grid with centres `spacing·(i − (side−1)/2)` per axis.
    pub fn grid(side: usize, spacing: f64, std: f64) -> Result<Mixture> {
        let c = |i: usize| spacing * (i as f64 - (side as f64 - 1.0) / 2.0);
        let modes = (0..side)
            .flat_map(|i| (0..side).map(move |j| vec![c(i), c(j)]))
            .collect();
        Mixture::new(modes, std)
    }

    /// The standard grid: 5 × 5, centres at −4, −2, 0, 2, 4, std 0.05.
    pub fn grid25() -> Mixture {
        Mixture::grid(5, 2.0, 0.05).expect("valid grid")
    }

    /// A 1-D mixture with the given centres.
    pub fn mixture_1d(centres: &[f64], std: f64) -> Result<Mixture> {
        Mixture::new(centres.iter().map(|&c| vec![c]).collect(), std)
    }

    /// The mode centres.
    pub fn modes(&self) -> &[Vec<f64>] {
        &self.modes
    }
    pub fn std(&self) -> f64 {
        self.std
    }
    /// 1 or 2.
    pub fn dim(&self) -> usize {
        self.modes[0].len()
    }

    /// Sample `i` of the stream of `seed` (as f64) and the index of its mode.
    pub fn sample_one(&self, seed: u64, i: u64) -> (Vec<f64>, usize) {
        let rng = Philox::new(seed);
        let base = i.wrapping_mul(4);
        let k = ((rng.word(base) as u64 * self.modes.len() as u64) >> 32) as usize;
        let x = self.modes[k]
            .iter()
            .enumerate()
            .map(|(c, &m)| m + self.std * rng.normal(base.wrapping_add(2 + c as u64)) as f64)
            .collect();
        (x, k)
    }

    /// `n` samples (rows `offset..offset+n` of the stream of `seed`) as f32 `[n, dim]` on cpu.
    pub fn sample(&self, n: usize, seed: u64, offset: u64) -> Result<Tensor> {
        let d = self.dim();
        let mut v = Vec::with_capacity(n * d);
        for i in 0..n as u64 {
            let (x, _) = self.sample_one(seed, offset.wrapping_add(i));
            v.extend(x.into_iter().map(|x| x as f32));
        }
        Tensor::from_vec(v, [n, d], &Device::Cpu)
    }
}
