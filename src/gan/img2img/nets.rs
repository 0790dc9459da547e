//! The image-to-image networks, with the `state_dict` names of the reference
//! implementation (junyanz/pytorch-CycleGAN-and-pix2pix), checked against PyTorch twins
//! built by `scripts/pytorch_reference/img2img_nets.py` (tests/img2img_nets.rs):
//!
//! * [`unet`] — pix2pix's U-Net: nested skip blocks, each `model` = down (LeakyReLU 0.2,
//!   4×4 stride-2 conv, norm), the inner levels, up (ReLU, 4×4 stride-2 transposed conv,
//!   norm, dropout 0.5 in the inner decoder blocks), output `cat(x, up)`; the outermost level
//!   ends in tanh. Level `i` (0 = outermost) has `ngf·min(2^i, max_mult)` channels and
//!   halves the side, so `num_downs` levels take a side divisible by 2^num_downs (32 for
//!   5). Dropout sits in the non-innermost levels whose input and output both have
//!   `ngf·max_mult` channels; with the reference's `max_mult = 8` and `num_downs ≥ 5` this is
//!   exactly the reference network (its `num_downs − 5` dropout blocks). Smaller
//!   `max_mult` keeps a 32×32 network small *and* gives it dropout blocks (the reference at
//!   `num_downs = 5` has none).
//! * [`resnet`] — CycleGAN's generator: reflection pad 3, 7×7 conv, two 3×3 stride-2
//!   convs, `n_blocks` residual blocks (reflection pad 1, 3×3 conv, norm, ReLU, [dropout],
//!   reflection pad 1, 3×3 conv, norm), two stride-2 transposed convs (output padding 1),
//!   reflection pad 3, 7×7 conv, tanh. Any side divisible by 4 (28 and 32 both work).
//! * [`patchgan`] — the N-layer PatchGAN: 4×4 convs, stride 2 for the first `n_layers`,
//!   then two stride-1 ones; receptive field 16, 34, 70 pixels for `n_layers` 1, 2, 3.
//!
//! A layer followed by batch norm has no bias; with instance norm (no affine, no running
//! statistics: no entries in the state_dict) the convolutions keep theirs, as the reference.
//! Weights are initialised N(0, 0.02), norm γ N(1, 0.02), biases 0 (the reference's
//! `init_type='normal'`).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{
    init, BatchNorm2d, Conv2d, ConvTranspose2d, InstanceNorm2d, LeakyReLU, Module, ParamRng, ReLU,
    ReflectionPad2d, Sequential, Tanh,
};
use crate::ops::conv::{Conv2dParams, ConvTranspose2dParams};
use crate::ops::dropout::dropout;
use crate::tensor::Tensor;

/// Which normalisation the networks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// BatchNorm2d (pix2pix's default).
    Batch,
    /// InstanceNorm2d without affine or running statistics (CycleGAN's default).
    Instance,
}

impl Norm {
    pub fn parse(s: &str) -> Result<Norm> {
        match s {
            "batch" => Ok(Norm::Batch),
            "instance" => Ok(Norm::Instance),
            o => Err(Error::invalid(format!(
                "--norm '{o}': choose batch or instance"
            ))),
        }
    }
    fn layer(self, c: usize, dev: &Device) -> Result<Box<dyn Module>> {
        Ok(match self {
            Norm::Batch => Box::new(BatchNorm2d::new(c, dev)?),
            Norm::Instance => Box::new(InstanceNorm2d::new(c, false, dev)?),
        })
    }
    /// Convolutions followed by this norm carry a bias (batch norm would cancel it).
    fn conv_bias(self) -> bool {
        self == Norm::Instance
    }
}

/// The random stream of every dropout layer of one network: (seed, next position). Each
/// training-mode dropout call takes the next `numel` positions, so the masks differ from
/// call to call and a run resumes exactly from the saved position.
#[derive(Clone, Debug)]
pub struct DropoutStream(Arc<Mutex<(u64, u64)>>);

impl DropoutStream {
    pub fn new(seed: u64) -> DropoutStream {
        DropoutStream(Arc::new(Mutex::new((seed, 0))))
    }
    /// `(seed, position)`.
    pub fn get(&self) -> (u64, u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn set(&self, seed: u64, position: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (seed, position);
    }
    fn take(&self, n: u64) -> (u64, u64) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = *g;
        g.1 = g.1.wrapping_add(n);
        at
    }
}

/// `nn.Dropout(p)` drawing its masks from a [`DropoutStream`] shared by the network.
struct StreamDropout {
    p: f64,
    stream: DropoutStream,
    training: bool,
}

impl Module for StreamDropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training {
            return Ok(x.clone());
        }
        let (seed, at) = self.stream.take(x.numel() as u64);
        dropout(x, self.p, seed, at, true)
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

/// A child held under an attribute name (`model`, `conv_block`): its entries are
/// `"<name>.<entry>"`, as a PyTorch module attribute.
struct Named {
    name: &'static str,
    inner: Box<dyn Module>,
}

impl Module for Named {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.inner.parameters()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.inner.buffers()
    }
    fn state_entries(&self) -> Vec<(String, Tensor)> {
        self.inner.state_entries()
    }
    fn set_training(&mut self, training: bool) {
        self.inner.set_training(training)
    }
    fn is_training(&self) -> bool {
        self.inner.is_training()
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.inner.set_prefix(&format!("{prefix}{}.", self.name))
    }
    fn describe(&self) -> String {
        format!("({}): {}", self.name, self.inner.describe())
    }
}

fn named(name: &'static str, inner: Box<dyn Module>) -> Box<dyn Module> {
    let mut m = Named { name, inner };
    m.set_prefix("");
    Box::new(m)
}

/// How a block combines its input with its body's output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// `body(x)` (the outermost U-Net level, whole networks).
    Body,
    /// `cat(x, body(x))` along the channels (a U-Net skip connection).
    Concat,
    /// `x + body(x)` (a residual block).
    Add,
}

struct Block {
    body: Named,
    combine: Combine,
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.body.forward(x)?;
        match self.combine {
            Combine::Body => Ok(y),
            Combine::Concat => Tensor::concat(&[x, &y], 1),
            Combine::Add => x.add(&y),
        }
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.body.parameters()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.body.buffers()
    }
    fn state_entries(&self) -> Vec<(String, Tensor)> {
        self.body.state_entries()
    }
    fn set_training(&mut self, training: bool) {
        self.body.set_training(training)
    }
    fn is_training(&self) -> bool {
        self.body.is_training()
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.body.set_prefix(prefix)
    }
    fn describe(&self) -> String {
        self.body.describe()
    }
}

fn block(name: &'static str, layers: Vec<Box<dyn Module>>, combine: Combine) -> Box<dyn Module> {
    let mut b = Block {
        body: Named {
            name,
            inner: Box::new(Sequential::new(layers)),
        },
        combine,
    };
    b.set_prefix("");
    Box::new(b)
}

const DOWN4: Conv2dParams = Conv2dParams {
    stride: (2, 2),
    padding: (1, 1),
    dilation: (1, 1),
};

fn up4() -> ConvTranspose2dParams {
    ConvTranspose2dParams {
        stride: (2, 2),
        padding: (1, 1),
        ..Default::default()
    }
}

/// The shapes of a U-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnetSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub num_downs: usize,
    pub ngf: usize,
    /// Channel cap as a multiple of `ngf` (a power of two; the reference's 8).
    pub max_mult: usize,
    pub norm: Norm,
    pub dropout: bool,
}

/// A network and the stream its dropout layers draw from.
pub struct Network {
    pub module: Box<dyn Module>,
    pub dropout: DropoutStream,
}

fn check_side(what: &str, side: (usize, usize), divisor: usize) -> Result<()> {
    if !side.0.is_multiple_of(divisor)
        || !side.1.is_multiple_of(divisor)
        || side.0 == 0
        || side.1 == 0
    {
        return Err(Error::invalid(format!(
            "{what} takes images whose height and width are multiples of {divisor}, got {}×{}; \
             resize the images or change the network (--num-downs for the U-Net)",
            side.0, side.1
        )));
    }
    Ok(())
}

/// The U-Net of `spec` for images of `side` (an error unless both are multiples of
/// 2^num_downs), initialised from `rng`.
pub fn unet(
    spec: &UnetSpec,
    side: (usize, usize),
    dropout_seed: u64,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Network> {
    let n = spec.num_downs;
    if !(1..=10).contains(&n) || !spec.max_mult.is_power_of_two() || spec.ngf == 0 {
        return Err(Error::invalid(format!(
            "U-Net: --num-downs must be 1..=10 (got {n}), --max-mult a power of two (got {}), \
             --ngf at least 1 (got {})",
            spec.max_mult, spec.ngf
        )));
    }
    check_side("the U-Net", side, 1 << n)?;
    let stream = DropoutStream::new(dropout_seed);
    let ch = |i: usize| spec.ngf * (1usize << i).min(spec.max_mult);
    let (norm, bias) = (spec.norm, spec.norm.conv_bias());
    // Built from the innermost level out; level i maps ch(i−1) (out_ch at i = 0) channels to
    // ch(i) and back.
    let mut inner: Option<Box<dyn Module>> = None;
    for i in (0..n).rev() {
        let outer = if i == 0 { spec.out_ch } else { ch(i - 1) };
        let input = if i == 0 { spec.in_ch } else { outer };
        let c = ch(i);
        let down = Box::new(
            Conv2d::options(input, c, 4)
                .params(DOWN4)
                .bias(bias)
                .build(rng, dev)?,
        );
        let up_in = if inner.is_some() { 2 * c } else { c };
        let layers: Vec<Box<dyn Module>> = match inner.take() {
            // The outermost level (also innermost when n == 1).
            sub if i == 0 => {
                let up = Box::new(
                    ConvTranspose2d::options(up_in, outer, 4)
                        .params(up4())
                        .build(rng, dev)?,
                );
                let mut v: Vec<Box<dyn Module>> = vec![down];
                v.extend(sub);
                v.extend([Box::new(ReLU) as Box<dyn Module>, up, Box::new(Tanh)]);
                v
            }
            None => vec![
                Box::new(LeakyReLU(0.2)),
                down,
                Box::new(ReLU),
                Box::new(
                    ConvTranspose2d::options(up_in, outer, 4)
                        .params(up4())
                        .bias(bias)
                        .build(rng, dev)?,
                ),
                norm.layer(outer, dev)?,
            ],
            Some(sub) => {
                let mut v: Vec<Box<dyn Module>> = vec![
                    Box::new(LeakyReLU(0.2)),
                    down,
                    norm.layer(c, dev)?,
                    sub,
                    Box::new(ReLU),
                    Box::new(
                        ConvTranspose2d::options(up_in, outer, 4)
                            .params(up4())
                            .bias(bias)
                            .build(rng, dev)?,
                    ),
                    norm.layer(outer, dev)?,
                ];
                if spec.dropout && outer == c && c == spec.ngf * spec.max_mult {
                    v.push(Box::new(StreamDropout {
                        p: 0.5,
                        stream: stream.clone(),
                        training: true,
                    }));
                }
                v
            }
        };
        let combine = if i == 0 {
            Combine::Body
        } else {
            Combine::Concat
        };
        inner = Some(block("model", layers, combine));
    }
    let top = inner.ok_or_else(|| Error::invalid("U-Net without levels"))?;
    let module = named("model", top);
    init::dcgan_init(module.as_ref(), rng)?;
    Ok(Network {
        module,
        dropout: stream,
    })
}

/// The shapes of a ResNet generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResnetSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub ngf: usize,
    pub n_blocks: usize,
    pub norm: Norm,
    pub dropout: bool,
}

/// The ResNet generator of `spec` for images of `side` (multiples of 4).
pub fn resnet(
    spec: &ResnetSpec,
    side: (usize, usize),
    dropout_seed: u64,
    rng: &mut ParamRng,
    dev: &Device,
) -> Result<Network> {
    check_side("the ResNet generator", side, 4)?;
    if spec.ngf == 0 || spec.n_blocks > 64 {
        return Err(Error::invalid(format!(
            "ResNet generator: --ngf must be at least 1 (got {}) and --n-blocks at most 64 (got {})",
            spec.ngf, spec.n_blocks
        )));
    }
    if side.0 <= 3 * 4 || side.1 <= 3 * 4 {
        return Err(Error::invalid(format!(
            "the ResNet generator's reflection padding needs images larger than 12×12, got {}×{}",
            side.0, side.1
        )));
    }
    let stream = DropoutStream::new(dropout_seed);
    let (norm, bias, g) = (spec.norm, spec.norm.conv_bias(), spec.ngf);
    let conv = |i, o, k, stride, pad, b, rng: &mut ParamRng| -> Result<Box<dyn Module>> {
        let p = Conv2dParams {
            stride: (stride, stride),
            padding: (pad, pad),
            dilation: (1, 1),
        };
        Ok(Box::new(
            Conv2d::options(i, o, k).params(p).bias(b).build(rng, dev)?,
        ))
    };
    let mut layers: Vec<Box<dyn Module>> = vec![
        Box::new(ReflectionPad2d(3)),
        conv(spec.in_ch, g, 7, 1, 0, bias, rng)?,
        norm.layer(g, dev)?,
        Box::new(ReLU),
    ];
    for m in [1, 2] {
        layers.push(conv(g * m, g * m * 2, 3, 2, 1, bias, rng)?);
        layers.push(norm.layer(g * m * 2, dev)?);
        layers.push(Box::new(ReLU));
    }
    let dim = 4 * g;
    for _ in 0..spec.n_blocks {
        let mut body: Vec<Box<dyn Module>> = vec![
            Box::new(ReflectionPad2d(1)),
            conv(dim, dim, 3, 1, 0, bias, rng)?,
            norm.layer(dim, dev)?,
            Box::new(ReLU),
        ];
        if spec.dropout {
            body.push(Box::new(StreamDropout {
                p: 0.5,
                stream: stream.clone(),
                training: true,
            }));
        }
        body.extend([
            Box::new(ReflectionPad2d(1)) as Box<dyn Module>,
            conv(dim, dim, 3, 1, 0, bias, rng)?,
            norm.layer(dim, dev)?,
        ]);
        layers.push(block("conv_block", body, Combine::Add));
    }
    for m in [4, 2] {
        let p = ConvTranspose2dParams {
            stride: (2, 2),
            padding: (1, 1),
            output_padding: (1, 1),
            dilation: (1, 1),
        };
        layers.push(Box::new(
            ConvTranspose2d::options(g * m, g * m / 2, 3)
                .params(p)
                .bias(bias)
                .build(rng, dev)?,
        ));
        layers.push(norm.layer(g * m / 2, dev)?);
        layers.push(Box::new(ReLU));
    }
    layers.push(Box::new(ReflectionPad2d(3)));
    layers.push(conv(g, spec.out_ch, 7, 1, 0, true, rng)?);
    layers.push(Box::new(Tanh));
    let module = named("model", Box::new(Sequential::new(layers)));
    init::dcgan_init(module.as_ref(), rng)?;
    Ok(Network {
        module,
        dropout: stream,
    })
}

/// The shapes of a PatchGAN discriminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSpec {
    pub in_ch: usize,
    pub ndf: usize,
    pub n_layers: usize,
    pub norm: Norm,
}

impl PatchSpec {
    /// The side of the input patch one output sees: 16, 34, 70 for 1, 2, 3 layers.
    pub fn receptive_field(&self) -> usize {
        // Backwards from one output: the two stride-1 4×4 convs add 3 each, then every
        // stride-2 4×4 conv maps r to 2r + 2.
        (0..self.n_layers).fold(1 + 3 + 3, |r, _| 2 * r + 2)
    }
}

/// The PatchGAN of `spec` (one raw score per patch, `[N, 1, h, w]`).
pub fn patchgan(spec: &PatchSpec, rng: &mut ParamRng, dev: &Device) -> Result<Box<dyn Module>> {
    if !(1..=6).contains(&spec.n_layers) || spec.ndf == 0 {
        return Err(Error::invalid(format!(
            "PatchGAN: --n-layers-d must be 1..=6 (got {}) and --ndf at least 1 (got {})",
            spec.n_layers, spec.ndf
        )));
    }
    let bias = spec.norm.conv_bias();
    let p = |s: usize| Conv2dParams {
        stride: (s, s),
        padding: (1, 1),
        dilation: (1, 1),
    };
    let mut layers: Vec<Box<dyn Module>> = vec![
        Box::new(
            Conv2d::options(spec.in_ch, spec.ndf, 4)
                .params(p(2))
                .build(rng, dev)?,
        ),
        Box::new(LeakyReLU(0.2)),
    ];
    let mut mult = 1;
    for n in 1..=spec.n_layers {
        let prev = mult;
        mult = (1usize << n).min(8);
        let stride = if n < spec.n_layers { 2 } else { 1 };
        layers.push(Box::new(
            Conv2d::options(spec.ndf * prev, spec.ndf * mult, 4)
                .params(p(stride))
                .bias(bias)
                .build(rng, dev)?,
        ));
        layers.push(spec.norm.layer(spec.ndf * mult, dev)?);
        layers.push(Box::new(LeakyReLU(0.2)));
    }
    layers.push(Box::new(
        Conv2d::options(spec.ndf * mult, 1, 4)
            .params(p(1))
            .build(rng, dev)?,
    ));
    let module = named("model", Box::new(Sequential::new(layers)));
    init::dcgan_init(module.as_ref(), rng)?;
    Ok(module)
}
