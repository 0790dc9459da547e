//! The networks: an MLP pair for toy data, DCGAN pairs for 28×28 and 64×64 images, and
//! their conditional forms.
//!
//! **Conditioning.** A conditional network gets the class as a one-hot vector: G sees
//! `[z, onehot(y)]`, D sees its input with `onehot(y)` appended along the channel axis
//! (broadcast over the pixels, so a 28×28 image gains 10 constant planes). A one-hot
//! vector times the first layer's weights is a learned embedding of the class (an
//! embedding table is exactly `onehot · W`), so this *is* "label embedded and
//! concatenated", with the table folded into the first layer.
//!
//! The DCGAN layers follow Radford et al.: strided (transposed) 4×4 convolutions, batch
//! norm in G and in D except D's first layer, ReLU in G, LeakyReLU 0.2 in D, tanh output,
//! weights N(0, 0.02), and no bias in a layer followed by batch norm (its gradient is
//! exactly zero, since the norm subtracts the mean; Adam would turn the rounding noise
//! there into a random walk). D ends without a sigmoid (the losses take logits, or raw scores for
//! LSGAN and WGAN).

use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{
    init, BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, LeakyReLU, Linear, Module, ParamRng,
    ReLU, Reshape, Sequential, Tanh,
};
use crate::ops::conv::{Conv2dParams, ConvTranspose2dParams};
use crate::tensor::Tensor;

/// Which pair of networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Three-layer MLPs for 1-D and 2-D toy data.
    Mlp,
    /// DCGAN for 28×28 images (G: linear → 7×7 → 14×14 → 28×28).
    Dcgan28,
    /// DCGAN for 64×64 images (G: 1×1 → 4×4 → … → 64×64, five transposed convolutions).
    Dcgan64,
}

impl Arch {
    pub const NAMES: [&'static str; 3] = ["mlp", "dcgan28", "dcgan64"];

    pub fn parse(s: &str) -> Result<Arch> {
        match s {
            "mlp" => Ok(Arch::Mlp),
            "dcgan28" => Ok(Arch::Dcgan28),
            "dcgan64" => Ok(Arch::Dcgan64),
            other => Err(Error::invalid(format!(
                "--arch '{other}': unknown architecture; choose one of {}",
                Arch::NAMES.join(", ")
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Dcgan28 => "dcgan28",
            Arch::Dcgan64 => "dcgan64",
        }
    }
    /// The image side this architecture makes (None for the MLP).
    pub fn image_size(self) -> Option<usize> {
        match self {
            Arch::Mlp => None,
            Arch::Dcgan28 => Some(28),
            Arch::Dcgan64 => Some(64),
        }
    }
}

/// Everything that fixes the shapes of both networks; stored by field name
/// (`{"arch", "nz", "width", "sample_shape", "classes"}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub arch: Arch,
    /// Noise dimension.
    pub nz: usize,
    /// DCGAN: G's last hidden channel count (D's first); the paper's 64.
    /// MLP: the hidden width.
    pub width: usize,
    /// One sample's shape: `[dim]` for the MLP, `[C, H, W]` for images.
    pub sample_shape: Vec<usize>,
    /// Number of classes for a conditional pair, None for an unconditional one.
    pub classes: Option<usize>,
}

impl NetSpec {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a NetSpec is numbers and names")
    }

    /// Read what [`NetSpec::to_json`] wrote, checking every field ([`NetSpec::validate`]);
    /// `what` names the file in errors.
    pub fn from_json(v: &serde_json::Value, what: &str) -> Result<NetSpec> {
        let spec = NetSpec::deserialize(v).map_err(|e| {
            Error::invalid(format!(
                "{what}: the network description is not valid: {e} (was it written by duel?)"
            ))
        })?;
        spec.validate().map_err(|e| {
            Error::invalid(format!("{what}: the network description is not valid: {e}"))
        })?;
        Ok(spec)
    }

    /// Every field in range, the sample shape the architecture's, and the networks small
    /// enough for this machine's memory ([`super::budget`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.nz == 0 || self.width == 0 {
            return bad(format!(
                "nz {} and width {} must be at least 1",
                self.nz, self.width
            ));
        }
        if let Some(k) = self.classes {
            if !(1..=256).contains(&k) {
                return bad(format!(
                    "{k} classes: a conditional network has 1 to 256 classes (labels are bytes)"
                ));
            }
        }
        let shape_ok = match (self.arch.image_size(), &self.sample_shape[..]) {
            (None, [dim]) => *dim >= 1,
            (Some(side), [c, h, w]) => *c >= 1 && *h == side && *w == side,
            _ => false,
        };
        if !shape_ok {
            let want = match self.arch.image_size() {
                None => "[dim] with dim >= 1".to_string(),
                Some(s) => format!("[C, {s}, {s}] with C >= 1"),
            };
            return bad(format!(
                "sample shape {:?} does not fit {}, which makes samples of shape {want}",
                self.sample_shape,
                self.arch.name()
            ));
        }
        super::budget::check_fits(
            super::budget::training_bytes(self, 1),
            &format!(
                "{} with nz {} and width {}",
                self.arch.name(),
                self.nz,
                self.width
            ),
            "the file's network description is damaged, or it was made on a larger machine",
        )
    }
}

/// A network plus how its class condition enters.
pub struct Net {
    pub body: Sequential,
    /// Number of classes when conditional.
    pub classes: Option<usize>,
}

impl Net {
    /// Run the network on `x` (`[N, …]`), appending the one-hot class along axis 1 when
    /// conditional. `labels` must be given (one per row, each below `classes`) exactly when
    /// the network is conditional.
    pub fn forward(&self, x: &Tensor, labels: Option<&[u8]>) -> Result<Tensor> {
        match (self.classes, labels) {
            (None, None) => self.body.forward(x),
            (Some(k), Some(labels)) => {
                let cond = one_hot_like(labels, k, x)?;
                self.body.forward(&Tensor::concat(&[x, &cond], 1)?)
            }
            (None, Some(_)) => Err(Error::invalid(
                "class labels were given to an unconditional network; train with --conditional \
                 to use them",
            )),
            (Some(k), None) => Err(Error::invalid(format!(
                "this network is conditional on {k} classes and needs a label per sample \
                 (e.g. --label 3)"
            ))),
        }
    }
    pub fn parameters(&self) -> Vec<Tensor> {
        self.body.parameters().into_iter().map(|(_, p)| p).collect()
    }
    pub fn set_training(&mut self, training: bool) {
        self.body.set_training(training);
    }
}

/// `onehot(labels)` shaped `[N, k, 1…]` and broadcast to `x`'s trailing dims, on `x`'s device.
fn one_hot_like(labels: &[u8], k: usize, x: &Tensor) -> Result<Tensor> {
    let n = x.dims()[0];
    if labels.len() != n {
        return Err(Error::invalid(format!(
            "{} labels for a batch of {n}",
            labels.len()
        )));
    }
    let mut v = vec![0f32; n * k];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= k {
            return Err(Error::invalid(format!(
                "label {l} is out of range for {k} classes (use 0..={})",
                k - 1
            )));
        }
        v[i * k + l as usize] = 1.0;
    }
    let mut shape = vec![n, k];
    shape.extend(std::iter::repeat_n(1, x.rank() - 2));
    let t = Tensor::from_vec(v, shape, x.device())?;
    let mut full = x.dims().to_vec();
    full[1] = k;
    t.broadcast_to(full)
}

/// Build G and D for `spec` on `device`, initialised from `seed` (DCGAN: N(0, 0.02);
/// MLP: PyTorch's default).
pub fn build(spec: &NetSpec, seed: u64, device: &Device) -> Result<(Net, Net)> {
    let k = spec.classes.unwrap_or(0);
    let mut rng = ParamRng::new(seed);
    let (g, d) = match spec.arch {
        Arch::Mlp => {
            let [dim] = spec.sample_shape[..] else {
                return Err(Error::invalid(format!(
                    "the MLP makes vectors, not samples of shape {:?}",
                    spec.sample_shape
                )));
            };
            mlp_pair(spec.nz + k, spec.width, dim, k, &mut rng, device)?
        }
        Arch::Dcgan28 | Arch::Dcgan64 => {
            let side = spec.arch.image_size().unwrap_or(0);
            let [c, h, w] = spec.sample_shape[..] else {
                return Err(image_shape_error(spec));
            };
            if h != side || w != side {
                return Err(image_shape_error(spec));
            }
            let (g, d) = if spec.arch == Arch::Dcgan28 {
                (
                    dcgan28_generator(spec.nz + k, spec.width, c, &mut rng, device)?,
                    dcgan28_discriminator(c + k, spec.width, &mut rng, device)?,
                )
            } else {
                (
                    dcgan64_generator(spec.nz + k, spec.width, c, &mut rng, device)?,
                    dcgan64_discriminator(c + k, spec.width, &mut rng, device)?,
                )
            };
            init::dcgan_init(&g, &mut rng)?;
            init::dcgan_init(&d, &mut rng)?;
            (g, d)
        }
    };
    Ok((
        Net {
            body: g,
            classes: spec.classes,
        },
        Net {
            body: d,
            classes: spec.classes,
        },
    ))
}

fn image_shape_error(spec: &NetSpec) -> Error {
    let s = spec.arch.image_size().unwrap_or(0);
    Error::invalid(format!(
        "{} makes [C, {s}, {s}] images, but the data's samples have shape {:?}; pick the \
         architecture that matches the data (--arch dcgan28 or dcgan64)",
        spec.arch.name(),
        spec.sample_shape
    ))
}

fn mlp_pair(
    nz_in: usize,
    h: usize,
    dim: usize,
    k: usize,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<(Sequential, Sequential)> {
    let g = Sequential::new(vec![
        Box::new(Linear::options(nz_in, h).build(rng, dev)?),
        Box::new(ReLU),
        Box::new(Linear::options(h, h).build(rng, dev)?),
        Box::new(ReLU),
        Box::new(Linear::options(h, dim).build(rng, dev)?),
    ]);
    let d = Sequential::new(vec![
        Box::new(Linear::options(dim + k, h).build(rng, dev)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(h, h).build(rng, dev)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(h, 1).build(rng, dev)?),
    ]);
    Ok((g, d))
}

const DOWN: Conv2dParams = Conv2dParams {
    stride: (2, 2),
    padding: (1, 1),
    dilation: (1, 1),
};

fn up() -> ConvTranspose2dParams {
    ConvTranspose2dParams {
        stride: (2, 2),
        padding: (1, 1),
        ..Default::default()
    }
}

/// The DCGAN generator for 28×28 single-channel images (MNIST), as PyTorch's
/// `nn.Sequential(Linear(nz, 128*7*7, bias=False), BatchNorm1d(6272), ReLU(),
/// Unflatten(1, (128, 7, 7)), ConvTranspose2d(128, 64, 4, 2, 1, bias=False), BatchNorm2d(64), ReLU(),
/// ConvTranspose2d(64, 1, 4, 2, 1), Tanh())` (children 0..=8), DCGAN-initialised from
/// `seed`. Input `[N, nz]`, output `[N, 1, 28, 28]` in (−1, 1): the generator of
/// [`dcgan28_generator`] at width 64.
/// scripts/pytorch_reference/dcgan_checkpoint.py builds the PyTorch twin.
pub fn dcgan_generator_28(nz: usize, seed: u64, device: &Device) -> Result<Sequential> {
    let mut rng = ParamRng::new(seed);
    let g = dcgan28_generator(nz, 64, 1, &mut rng, device)?;
    init::dcgan_init(&g, &mut rng)?;
    Ok(g)
}

/// G for 28×28: `Linear(nz_in, 2w·7·7, bias=False)`, BN, ReLU, unflatten,
/// `ConvT(2w, w, 4, 2, 1, bias=False)`, BN, ReLU, `ConvT(w, c, 4, 2, 1)`, tanh (children 0..=8; with w = 64, c = 1 this is
/// [`dcgan_generator_28`]).
pub fn dcgan28_generator(
    nz_in: usize,
    w: usize,
    c: usize,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Sequential> {
    Ok(Sequential::new(vec![
        Box::new(
            Linear::options(nz_in, 2 * w * 7 * 7)
                .bias(false)
                .build(rng, dev)?,
        ),
        Box::new(BatchNorm1d::new(2 * w * 7 * 7, dev)?),
        Box::new(ReLU),
        Box::new(Reshape::new(vec![2 * w, 7, 7])),
        Box::new(
            ConvTranspose2d::options(2 * w, w, 4)
                .params(up())
                .bias(false)
                .build(rng, dev)?,
        ),
        Box::new(BatchNorm2d::new(w, dev)?),
        Box::new(ReLU),
        Box::new(
            ConvTranspose2d::options(w, c, 4)
                .params(up())
                .build(rng, dev)?,
        ),
        Box::new(Tanh),
    ]))
}

/// D for 28×28: `Conv(c_in, w, 4, 2, 1)`, LeakyReLU, `Conv(w, 2w, 4, 2, 1, bias=False)`, BN,
/// LeakyReLU, flatten, `Linear(2w·7·7, 1)`.
pub fn dcgan28_discriminator(
    c_in: usize,
    w: usize,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Sequential> {
    Ok(Sequential::new(vec![
        Box::new(Conv2d::options(c_in, w, 4).params(DOWN).build(rng, dev)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(
            Conv2d::options(w, 2 * w, 4)
                .params(DOWN)
                .bias(false)
                .build(rng, dev)?,
        ),
        Box::new(BatchNorm2d::new(2 * w, dev)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(Reshape::new(vec![2 * w * 7 * 7])),
        Box::new(Linear::options(2 * w * 7 * 7, 1).build(rng, dev)?),
    ]))
}

/// G for 64×64 (Radford et al.'s): `[nz_in] → [nz_in,1,1]`, `ConvT(nz_in, 8w, 4, 1, 0)`,
/// then `ConvT(·, ·/2, 4, 2, 1)` to 8, 16, 32 (BN, ReLU after each), `ConvT(w, c, 4, 2, 1)`,
/// tanh.
pub fn dcgan64_generator(
    nz_in: usize,
    w: usize,
    c: usize,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Sequential> {
    let first = ConvTranspose2dParams::default();
    let mut layers: Vec<Box<dyn Module>> = vec![
        Box::new(Reshape::new(vec![nz_in, 1, 1])),
        Box::new(
            ConvTranspose2d::options(nz_in, 8 * w, 4)
                .params(first)
                .bias(false)
                .build(rng, dev)?,
        ),
        Box::new(BatchNorm2d::new(8 * w, dev)?),
        Box::new(ReLU),
    ];
    for m in [8, 4, 2] {
        layers.push(Box::new(
            ConvTranspose2d::options(m * w, m * w / 2, 4)
                .params(up())
                .bias(false)
                .build(rng, dev)?,
        ));
        layers.push(Box::new(BatchNorm2d::new(m * w / 2, dev)?));
        layers.push(Box::new(ReLU));
    }
    layers.push(Box::new(
        ConvTranspose2d::options(w, c, 4)
            .params(up())
            .bias(false)
            .build(rng, dev)?,
    ));
    layers.push(Box::new(Tanh));
    Ok(Sequential::new(layers))
}

/// D for 64×64: `Conv(c_in, w, 4, 2, 1)`, LeakyReLU, then `Conv(·, 2·, 4, 2, 1)` to 16, 8, 4
/// (BN, LeakyReLU after each), `Conv(8w, 1, 4, 1, 0)`, flatten to `[N, 1]`.
pub fn dcgan64_discriminator(
    c_in: usize,
    w: usize,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Sequential> {
    let mut layers: Vec<Box<dyn Module>> = vec![
        Box::new(
            Conv2d::options(c_in, w, 4)
                .params(DOWN)
                .bias(false)
                .build(rng, dev)?,
        ),
        Box::new(LeakyReLU(0.2)),
    ];
    for m in [1, 2, 4] {
        layers.push(Box::new(
            Conv2d::options(m * w, 2 * m * w, 4)
                .params(DOWN)
                .bias(false)
                .build(rng, dev)?,
        ));
        layers.push(Box::new(BatchNorm2d::new(2 * m * w, dev)?));
        layers.push(Box::new(LeakyReLU(0.2)));
    }
    layers.push(Box::new(
        Conv2d::options(8 * w, 1, 4).bias(false).build(rng, dev)?,
    ));
    layers.push(Box::new(Reshape::new(vec![1])));
    Ok(Sequential::new(layers))
}
