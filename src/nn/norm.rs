//! BatchNorm1d / BatchNorm2d (affine, running statistics, PyTorch defaults momentum 0.1,
//! eps 1e-5) and InstanceNorm2d (no running statistics, affine optional, default off as
//! in PyTorch).

use super::{rename_leaf, Module};
use crate::device::cpu::CpuBuffer;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::norm::{batch_norm, instance_norm2d};
use crate::tensor::{DType, Tensor};

/// The shared state of BatchNorm1d and BatchNorm2d.
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// cpu f64 scalar: training-mode forwards so far (PyTorch's int64 buffer).
    pub num_batches_tracked: Tensor,
    pub momentum: f64,
    pub eps: f64,
    training: bool,
    prefix: String,
    kind: &'static str,
    ranks: &'static [usize],
}

impl BatchNorm {
    fn new(kind: &'static str, ranks: &'static [usize], c: usize, device: &Device) -> Result<Self> {
        let mut bn = BatchNorm {
            weight: Tensor::ones(vec![c], DType::F32, device)?,
            bias: Tensor::zeros(vec![c], DType::F32, device)?,
            running_mean: Tensor::zeros(vec![c], DType::F32, device)?,
            running_var: Tensor::ones(vec![c], DType::F32, device)?,
            num_batches_tracked: Tensor::zeros(Vec::<usize>::new(), DType::F64, &Device::Cpu)?,
            momentum: 0.1,
            eps: 1e-5,
            training: true,
            prefix: String::new(),
            kind,
            ranks,
        };
        bn.set_prefix("");
        Ok(bn)
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.ranks.contains(&x.rank()) {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "{} expects an input of rank {:?}, got shape {}",
                    self.kind,
                    self.ranks,
                    x.shape()
                ),
            ));
        }
        let y = batch_norm(
            x,
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            self.training,
            self.momentum,
            self.eps,
        )?;
        if self.training {
            let mut buf = self
                .num_batches_tracked
                .cpu_buffer_mut("num_batches_tracked")?;
            if let CpuBuffer::F64(v) = &mut *buf {
                v[0] += 1.0;
            }
        }
        Ok(y)
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        self.weight = rename_leaf(&self.weight, format!("{prefix}weight"));
        self.bias = rename_leaf(&self.bias, format!("{prefix}bias"));
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            (format!("{}weight", self.prefix), self.weight.clone()),
            (format!("{}bias", self.prefix), self.bias.clone()),
        ]
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            (
                format!("{}running_mean", self.prefix),
                self.running_mean.clone(),
            ),
            (
                format!("{}running_var", self.prefix),
                self.running_var.clone(),
            ),
            (
                format!("{}num_batches_tracked", self.prefix),
                self.num_batches_tracked.clone(),
            ),
        ]
    }
    /// Training-mode forwards so far.
    pub fn batches_tracked(&self) -> u64 {
        self.num_batches_tracked
            .item()
            .map(|v| v as u64)
            .unwrap_or(0)
    }
    fn describe(&self) -> String {
        format!(
            "{}({}, eps={}, momentum={}, affine=True, track_running_stats=True)",
            self.kind,
            self.weight.dims()[0],
            self.eps,
            self.momentum
        )
    }
}

macro_rules! batch_norm_layer {
    ($name:ident, $ranks:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(pub BatchNorm);

        impl $name {
            /// `channels` features; γ = 1, β = 0, running mean 0, running var 1.
            pub fn new(channels: usize, device: &Device) -> Result<$name> {
                Ok($name(BatchNorm::new(
                    stringify!($name),
                    $ranks,
                    channels,
                    device,
                )?))
            }
        }

        impl std::ops::Deref for $name {
            type Target = BatchNorm;
            fn deref(&self) -> &BatchNorm {
                &self.0
            }
        }
        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut BatchNorm {
                &mut self.0
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                self.0.forward(x)
            }
            fn parameters(&self) -> Vec<(String, Tensor)> {
                self.0.parameters()
            }
            fn buffers(&self) -> Vec<(String, Tensor)> {
                self.0.buffers()
            }
            fn set_training(&mut self, training: bool) {
                self.0.training = training;
            }
            fn is_training(&self) -> bool {
                self.0.training
            }
            fn set_prefix(&mut self, prefix: &str) {
                self.0.set_prefix(prefix)
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
        }
    };
}

batch_norm_layer!(
    BatchNorm1d,
    &[2, 3],
    "Batch norm over `[N, C]` or `[N, C, L]` (PyTorch's `BatchNorm1d`)."
);
batch_norm_layer!(
    BatchNorm2d,
    &[4],
    "Batch norm over `[N, C, H, W]` (PyTorch's `BatchNorm2d`)."
);

/// Instance norm over `[N, C, H, W]`: statistics per sample and channel, in training and
/// eval alike (PyTorch's default `track_running_stats=False`); optional affine γ/β.
pub struct InstanceNorm2d {
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub eps: f64,
    channels: usize,
    prefix: String,
}

impl InstanceNorm2d {
    pub fn new(channels: usize, affine: bool, device: &Device) -> Result<InstanceNorm2d> {
        let (weight, bias) = if affine {
            (
                Some(Tensor::ones(vec![channels], DType::F32, device)?),
                Some(Tensor::zeros(vec![channels], DType::F32, device)?),
            )
        } else {
            (None, None)
        };
        let mut m = InstanceNorm2d {
            weight,
            bias,
            eps: 1e-5,
            channels,
            prefix: String::new(),
        };
        m.set_prefix("");
        Ok(m)
    }
}

impl Module for InstanceNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        instance_norm2d(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(w) = &self.weight {
            v.push((format!("{}weight", self.prefix), w.clone()));
        }
        if let Some(b) = &self.bias {
            v.push((format!("{}bias", self.prefix), b.clone()));
        }
        v
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        self.weight = self
            .weight
            .as_ref()
            .map(|w| rename_leaf(w, format!("{prefix}weight")));
        self.bias = self
            .bias
            .as_ref()
            .map(|b| rename_leaf(b, format!("{prefix}bias")));
    }
    fn describe(&self) -> String {
        format!(
            "InstanceNorm2d({}, eps={}, affine={})",
            self.channels,
            self.eps,
            self.weight.is_some()
        )
    }
}
