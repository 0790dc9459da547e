//! Parameter-free layers: activations, Dropout and Reshape.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Module;
use crate::error::{Error, Result};
use crate::ops::dropout::dropout;
use crate::tensor::Tensor;

/// `max(x, 0)`.
pub struct ReLU;
impl Module for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
    fn describe(&self) -> String {
        "ReLU()".into()
    }
}

/// `x` for `x ≥ 0`, `slope·x` otherwise (PyTorch's default slope is 0.01; DCGAN uses 0.2).
pub struct LeakyReLU(pub f64);
impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.leaky_relu(self.0)
    }
    fn describe(&self) -> String {
        format!("LeakyReLU(negative_slope={})", self.0)
    }
}

pub struct Tanh;
impl Module for Tanh {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.tanh()
    }
    fn describe(&self) -> String {
        "Tanh()".into()
    }
}

pub struct Sigmoid;
impl Module for Sigmoid {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.sigmoid()
    }
    fn describe(&self) -> String {
        "Sigmoid()".into()
    }
}

/// Inverted dropout with probability `p`. The mask of each call comes from the Philox
/// stream `seed` at the current offset, which then advances by the input's element count:
/// masks differ from step to step but a run is reproducible (and resumable: save
/// [`Dropout::offset`], restore it with [`Dropout::set_offset`]). Identity in eval mode.
pub struct Dropout {
    pub p: f64,
    pub seed: u64,
    offset: AtomicU64,
    training: bool,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Dropout {
        Dropout {
            p,
            seed,
            offset: AtomicU64::new(0),
            training: true,
        }
    }
    /// The Philox offset the next training-mode call will use.
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::SeqCst)
    }
    pub fn set_offset(&self, offset: u64) {
        self.offset.store(offset, Ordering::SeqCst)
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training {
            return dropout(x, self.p, self.seed, 0, false);
        }
        let n = x.numel() as u64;
        let off = self.offset.fetch_add(n, Ordering::SeqCst);
        dropout(x, self.p, self.seed, off, true)
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn is_training(&self) -> bool {
        self.training
    }
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

/// Reshape every sample to `shape`, keeping the batch axis: `[N, …] → [N, shape…]`
/// (PyTorch's `nn.Unflatten(1, shape)` after a flat layer, or a flatten with `shape = [k]`).
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Reshape {
    pub fn new(shape: Vec<usize>) -> Reshape {
        Reshape { shape }
    }
}

impl Module for Reshape {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 {
            return Err(Error::shape(
                "Reshape",
                "Reshape keeps the batch axis and needs an input of rank >= 1, got a scalar",
            ));
        }
        let mut dims = vec![x.dims()[0]];
        dims.extend_from_slice(&self.shape);
        x.reshape(dims)
    }
    fn describe(&self) -> String {
        format!("Reshape({:?})", self.shape)
    }
}

/// Mirror padding of `[N, C, H, W]` by the same amount on every side, without repeating
/// the edge (PyTorch's `nn.ReflectionPad2d(p)`, CycleGAN's ResNet generator).
pub struct ReflectionPad2d(pub usize);

impl Module for ReflectionPad2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.0;
        x.pad2d((p, p, p, p), crate::ops::pad::PadMode::Reflect)
    }
    fn describe(&self) -> String {
        format!("ReflectionPad2d(({0}, {0}, {0}, {0}))", self.0)
    }
}
