//! The pix2pix and CycleGAN training steps (the reference's `optimize_parameters`), the
//! LR schedule, translation in either test mode, evaluation on the held-out images, and
//! exact save/resume.
//!
//! **pix2pix**, per step: `fake = G(x)`; D step on `cat(x, fake.detach())` (target 0) and
//! `cat(x, y)` (target 1), D loss halved; G step with D frozen: GAN(D(cat(x, fake)), 1)
//! plus λ·L1(fake, y).
//!
//! **CycleGAN**, per step: `fake_B = G_A(a)`, `rec_A = G_B(fake_B)`, `fake_A = G_B(b)`,
//! `rec_B = G_A(fake_A)`; G step with both D frozen on the sum of GAN(D_A(fake_B), 1),
//! GAN(D_B(fake_A), 1), λ·(L1(rec_A, a) + L1(rec_B, b)) and λ·λ_id·(L1(G_A(b), b) +
//! L1(G_B(a), a)); then D_A on b (1) and pool_B(fake_B) (0), D_B on a (1) and
//! pool_A(fake_A) (0), each halved. One Adam over both generators, one over both
//! discriminators.
//!
//! Before each step both learning rates are set to lr · [`Img2ImgConfig::lr_factor`].
//!
//! **State.** Networks (parameters and batch-norm buffers), both optimizers, both pools
//! (images and stream position), the data samplers, every dropout stream's position and the
//! step: the checkpoint holds them all, so a resumed run continues bit for bit on the cpu.
//! The schedule is a function of (config, step), both in the checkpoint.

mod state;

use super::nets::{self, Network, PatchSpec, ResnetSpec, UnetSpec};
use super::pool::ImagePool;
use super::{GanLoss, GeneratorKind, Img2ImgConfig, Model, TestMode};
use crate::autograd::{freeze, no_grad};
use crate::data::translation::{ImageSet, TranslationData};
use crate::data::Batches;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::similarity::{similarity, Similarity};
use crate::nn::{init, Module, ParamRng};
use crate::ops::loss::{bce_with_logits_scalar, l1, least_squares};
use crate::ops::precision::{with_precision, Precision};
use crate::optim::{scaled_backward, unscale_for_step, Adam, AdamConfig, LossScalers, Optimizer};
use crate::tensor::Tensor;

const A_STREAM: u64 = 0x696d_6761_0000_0001;
const B_STREAM: u64 = 0x696d_6762_0000_0002;
const POOL_A_STREAM: u64 = 0x706f_6f6c_0000_0003;
const POOL_B_STREAM: u64 = 0x706f_6f6c_0000_0004;
const DROPOUT_STREAM: u64 = 0x6472_6f70_0000_0005;
/// The dropout stream of paper-mode translation (never the training stream).
const TEST_DROPOUT_STREAM: u64 = 0x7465_7374_0000_0006;

/// One step's named numbers (every loss term, and the learning rate used).
pub type StepLog = Vec<(&'static str, f64)>;

/// The GAN term against target 1 (`real`) or 0.
pub fn gan_loss(kind: GanLoss, pred: &Tensor, real: bool) -> Result<Tensor> {
    let t = if real { 1.0 } else { 0.0 };
    match kind {
        GanLoss::Vanilla => bce_with_logits_scalar(pred, t),
        // least_squares is ½·mean((d − t)²); the reference's MSELoss has no ½.
        GanLoss::Lsgan => least_squares(pred, t)?.mul_scalar(2.0),
    }
}

/// One evaluation line: the model's score and the output = input baseline's.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRow {
    pub what: String,
    pub model: Similarity,
    pub baseline: Option<Similarity>,
}

pub struct Img2ImgTrainer {
    pub config: Img2ImgConfig,
    pub data: TranslationData,
    device: Device,
    /// pix2pix's G; CycleGAN's G_A (A → B).
    pub g_a: Network,
    /// CycleGAN's G_B (B → A).
    pub g_b: Option<Network>,
    /// pix2pix's D (on (A, B) pairs); CycleGAN's D_A (judges domain B).
    pub d_a: Box<dyn Module>,
    /// CycleGAN's D_B (judges domain A).
    pub d_b: Option<Box<dyn Module>>,
    pub opt_g: Adam,
    pub opt_d: Adam,
    /// CycleGAN: generated A images (for D_B) and generated B images (for D_A).
    pub pool_a: ImagePool,
    pub pool_b: ImagePool,
    batches_a: Batches,
    batches_b: Batches,
    pub step: u64,
    /// f16 runs: the loss scaling of the D and G optimizers' losses (None otherwise).
    pub loss_scalers: Option<LossScalers>,
}

fn params(m: &dyn Module) -> Vec<Tensor> {
    m.parameters().into_iter().map(|(_, p)| p).collect()
}

impl Img2ImgTrainer {
    /// A fresh run of `config` on `device`, with its data opened from `config.data`.
    pub fn new(config: Img2ImgConfig, device: &Device) -> Result<Img2ImgTrainer> {
        let data = TranslationData::open(&config.data)?;
        Img2ImgTrainer::with_data(config, data, device)
    }

    /// A fresh run of `config` on already opened `data`.
    pub fn with_data(
        config: Img2ImgConfig,
        data: TranslationData,
        device: &Device,
    ) -> Result<Img2ImgTrainer> {
        config.validate()?;
        let c = &config;
        let cyc = c.model == Model::Cyclegan;
        if !cyc && !data.paired {
            return Err(Error::invalid(format!(
                "pix2pix needs paired data, and {} is unpaired; train CycleGAN on it \
                 (duel train cyclegan) or give paired data (side-by-side A|B images)",
                data.name
            )));
        }
        let ([ca, h, w], [cb, hb, wb]) = data.shapes();
        if (h, w) != (hb, wb) {
            return Err(Error::invalid(format!(
                "{}: A images are {w}×{h} and B images {wb}×{hb}; both must have one size",
                data.name
            )));
        }
        if cyc && c.lambda_identity > 0.0 && ca != cb {
            return Err(Error::invalid(format!(
                "{}: the identity loss feeds B images to G_A, which takes A images, so both \
                 need the same channels (A has {ca}, B has {cb}); use --lambda-identity 0",
                data.name
            )));
        }
        for (what, set) in [("A", &data.train_a), ("B", &data.train_b)] {
            if set.len() < c.batch_size {
                return Err(Error::invalid(format!(
                    "{}: {} training images in domain {what}, fewer than --batch-size {}",
                    data.name,
                    set.len(),
                    c.batch_size
                )));
            }
        }
        let mut rng = ParamRng::new(c.seed);
        let generator = |i, o, salt: u64, rng: &mut ParamRng| -> Result<Network> {
            let seed = c.seed ^ DROPOUT_STREAM ^ salt;
            match c.generator {
                GeneratorKind::Unet => nets::unet(
                    &UnetSpec {
                        in_ch: i,
                        out_ch: o,
                        num_downs: c.num_downs,
                        ngf: c.ngf,
                        max_mult: c.max_mult,
                        norm: c.norm,
                        dropout: c.dropout,
                    },
                    (h, w),
                    seed,
                    rng,
                    device,
                ),
                GeneratorKind::Resnet => nets::resnet(
                    &ResnetSpec {
                        in_ch: i,
                        out_ch: o,
                        ngf: c.ngf,
                        n_blocks: c.n_blocks,
                        norm: c.norm,
                        dropout: c.dropout,
                    },
                    (h, w),
                    seed,
                    rng,
                    device,
                ),
            }
        };
        let patch = |i, rng: &mut ParamRng| {
            nets::patchgan(
                &PatchSpec {
                    in_ch: i,
                    ndf: c.ndf,
                    n_layers: c.n_layers_d,
                    norm: c.norm,
                },
                rng,
                device,
            )
        };
        let g_a = generator(ca, cb, 0, &mut rng)?;
        let g_b = if cyc {
            Some(generator(cb, ca, 1, &mut rng)?)
        } else {
            None
        };
        let d_a = patch(if cyc { cb } else { ca + cb }, &mut rng)?;
        let d_b = if cyc {
            Some(patch(ca, &mut rng)?)
        } else {
            None
        };
        let adam = |p: Vec<Tensor>| Adam::new(p, AdamConfig::new(c.lr).betas(c.beta1, c.beta2));
        let mut gp = params(g_a.module.as_ref());
        gp.extend(g_b.iter().flat_map(|g| params(g.module.as_ref())));
        let mut dp = params(d_a.as_ref());
        dp.extend(d_b.iter().flat_map(|d| params(d.as_ref())));
        let (opt_g, opt_d) = (adam(gp)?, adam(dp)?);
        let batches_a = Batches::new(data.train_a.len(), c.batch_size, c.seed ^ A_STREAM)?;
        let batches_b = Batches::new(data.train_b.len(), c.batch_size, c.seed ^ B_STREAM)?;
        let loss_scalers = (c.precision == Precision::F16).then(LossScalers::default);
        Ok(Img2ImgTrainer {
            pool_a: ImagePool::new(c.pool_size, c.seed ^ POOL_A_STREAM),
            pool_b: ImagePool::new(c.pool_size, c.seed ^ POOL_B_STREAM),
            config,
            data,
            device: device.clone(),
            g_a,
            g_b,
            d_a,
            d_b,
            opt_g,
            opt_d,
            batches_a,
            batches_b,
            step: 0,
            loss_scalers,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The learning rate of the next update.
    pub fn current_lr(&self) -> f64 {
        self.config.lr * self.config.lr_factor(self.step)
    }

    /// One training step of the configured model; returns its loss terms and lr.
    pub fn train_step(&mut self) -> Result<StepLog> {
        let lr = self.current_lr();
        self.opt_g.set_lr(lr);
        self.opt_d.set_lr(lr);
        let mut log = with_precision(self.config.precision, || match self.config.model {
            Model::Pix2pix => self.pix2pix_step(),
            Model::Cyclegan => self.cyclegan_step(),
        })?;
        if let Some(s) = self.loss_scalers {
            log.extend([("d_loss_scale", s.d.scale), ("g_loss_scale", s.g.scale)]);
        }
        self.step += 1;
        log.push(("lr", lr));
        Ok(log)
    }

    fn pix2pix_step(&mut self) -> Result<StepLog> {
        let kind = self.config.gan_loss;
        let idx = self.batches_a.next_batch();
        let x = self.data.train_a.batch(&idx, &self.device)?;
        let y = self.data.train_b.batch(&idx, &self.device)?;
        let fake = self.g_a.module.forward(&x)?;
        self.opt_d.zero_grad();
        let pred_fake = self
            .d_a
            .forward(&Tensor::concat(&[&x, &fake.detach()], 1)?)?;
        let pred_real = self.d_a.forward(&Tensor::concat(&[&x, &y], 1)?)?;
        let d_fake = gan_loss(kind, &pred_fake, false)?;
        let d_real = gan_loss(kind, &pred_real, true)?;
        let d_loss = d_fake.add(&d_real)?.mul_scalar(0.5)?;
        scaled_backward(&d_loss, self.loss_scalers.as_ref().map(|s| &s.d))?;
        if unscale_for_step(
            self.loss_scalers.as_mut().map(|s| &mut s.d),
            self.opt_d.params(),
        )? {
            self.opt_d.step()?;
        }
        self.opt_g.zero_grad();
        let (g_gan, g_l1, g_loss) = {
            let _frozen = freeze(self.opt_d.params());
            let pred = self.d_a.forward(&Tensor::concat(&[&x, &fake], 1)?)?;
            let g_gan = gan_loss(kind, &pred, true)?;
            let g_l1 = l1(&fake, &y)?.mul_scalar(self.config.lambda_l1)?;
            let g_loss = g_gan.add(&g_l1)?;
            scaled_backward(&g_loss, self.loss_scalers.as_ref().map(|s| &s.g))?;
            (g_gan, g_l1, g_loss)
        };
        if unscale_for_step(
            self.loss_scalers.as_mut().map(|s| &mut s.g),
            self.opt_g.params(),
        )? {
            self.opt_g.step()?;
        }
        Ok(vec![
            ("d_loss", d_loss.item()?),
            ("d_real", d_real.item()?),
            ("d_fake", d_fake.item()?),
            ("g_loss", g_loss.item()?),
            ("g_gan", g_gan.item()?),
            ("g_l1", g_l1.item()?),
        ])
    }

    fn cyclegan_step(&mut self) -> Result<StepLog> {
        let c = self.config.clone();
        let (kind, lam) = (c.gan_loss, c.lambda_cycle);
        let a = self
            .data
            .train_a
            .batch(&self.batches_a.next_batch(), &self.device)?;
        let b = self
            .data
            .train_b
            .batch(&self.batches_b.next_batch(), &self.device)?;
        let g_b = self.g_b.as_ref().ok_or_else(|| Error::invalid("no G_B"))?;
        let d_b = self.d_b.as_ref().ok_or_else(|| Error::invalid("no D_B"))?;
        let g_a = &self.g_a.module;
        let fake_b = g_a.forward(&a)?;
        let rec_a = g_b.module.forward(&fake_b)?;
        let fake_a = g_b.module.forward(&b)?;
        let rec_b = g_a.forward(&fake_a)?;
        self.opt_g.zero_grad();
        let terms = {
            let _frozen = freeze(self.opt_d.params());
            let (idt_a, idt_b) = if c.lambda_identity > 0.0 {
                let w = lam * c.lambda_identity;
                (
                    l1(&g_a.forward(&b)?, &b)?.mul_scalar(w)?,
                    l1(&g_b.module.forward(&a)?, &a)?.mul_scalar(w)?,
                )
            } else {
                let z = Tensor::scalar(0.0, &self.device)?;
                (z.clone(), z)
            };
            let gan_a = gan_loss(kind, &self.d_a.forward(&fake_b)?, true)?;
            let gan_b = gan_loss(kind, &d_b.forward(&fake_a)?, true)?;
            let cyc_a = l1(&rec_a, &a)?.mul_scalar(lam)?;
            let cyc_b = l1(&rec_b, &b)?.mul_scalar(lam)?;
            let total = gan_a
                .add(&gan_b)?
                .add(&cyc_a)?
                .add(&cyc_b)?
                .add(&idt_a)?
                .add(&idt_b)?;
            scaled_backward(&total, self.loss_scalers.as_ref().map(|s| &s.g))?;
            [total, gan_a, gan_b, cyc_a, cyc_b, idt_a, idt_b]
        };
        if unscale_for_step(
            self.loss_scalers.as_mut().map(|s| &mut s.g),
            self.opt_g.params(),
        )? {
            self.opt_g.step()?;
        }
        self.opt_d.zero_grad();
        let shown_b = self.pool_b.query(&fake_b)?;
        let d_a_loss = gan_loss(kind, &self.d_a.forward(&b)?, true)?
            .add(&gan_loss(kind, &self.d_a.forward(&shown_b)?, false)?)?
            .mul_scalar(0.5)?;
        let d_scaler = self.loss_scalers.map(|s| s.d);
        scaled_backward(&d_a_loss, d_scaler.as_ref())?;
        let shown_a = self.pool_a.query(&fake_a)?;
        let d_b_loss = gan_loss(kind, &d_b.forward(&a)?, true)?
            .add(&gan_loss(kind, &d_b.forward(&shown_a)?, false)?)?
            .mul_scalar(0.5)?;
        scaled_backward(&d_b_loss, d_scaler.as_ref())?;
        if unscale_for_step(
            self.loss_scalers.as_mut().map(|s| &mut s.d),
            self.opt_d.params(),
        )? {
            self.opt_d.step()?;
        }
        let mut log = vec![("d_a", d_a_loss.item()?), ("d_b", d_b_loss.item()?)];
        let names = [
            "g_loss", "g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b",
        ];
        for (n, t) in names.into_iter().zip(terms) {
            log.push((n, t.item()?));
        }
        Ok(log)
    }

    /// Translate `x` (`[N, C, H, W]`, any device) A → B (`forward`) or B → A in the run's test mode, in
    /// chunks of the batch size, without changing any training state, in the run's
    /// precision; on the cpu.
    pub fn translate(&mut self, forward: bool, x: &Tensor) -> Result<Tensor> {
        let (mode, bs) = (self.config.test_mode, self.config.batch_size);
        let precision = self.config.precision;
        let net = if forward {
            &mut self.g_a
        } else {
            self.g_b.as_mut().ok_or_else(|| {
                Error::invalid("pix2pix translates A → B only (it has one generator)")
            })?
        };
        with_precision(precision, || translate(net, x, mode, bs, &self.device))
    }

    /// Scores on the held-out images (see [`EvalRow`]): each direction against the ground
    /// truth (when known) beside the output = input baseline, and the cycle
    /// reconstructions; for a pix2pix run also in the other test mode.
    pub fn evaluate(&mut self) -> Result<Vec<EvalRow>> {
        let d = self.data.clone();
        if d.test_a.is_empty() || d.test_b.is_empty() {
            return Ok(Vec::new());
        }
        let all = |s: &ImageSet| s.batch(&(0..s.len()).collect::<Vec<_>>(), &self.device);
        let (ta, tb) = (all(&d.test_a)?, all(&d.test_b)?);
        let score = |out: &Tensor, target: &ImageSet| -> Result<Similarity> {
            let v: Vec<f32> = out.to_vec()?;
            similarity(&v, &target.data, [target.n, target.c, target.h, target.w])
        };
        let baseline = |input: &ImageSet, target: &ImageSet| -> Result<Option<Similarity>> {
            if input.c != target.c {
                return Ok(None);
            }
            similarity(
                &input.data,
                &target.data,
                [target.n, target.c, target.h, target.w],
            )
            .map(Some)
        };
        let mut rows = Vec::new();
        let fwd = self.translate(true, &ta)?;
        if d.test_aligned {
            rows.push(EvalRow {
                what: "A → B".into(),
                model: score(&fwd, &d.test_b)?,
                baseline: baseline(&d.test_a, &d.test_b)?,
            });
        }
        if self.g_b.is_none() {
            let other = match self.config.test_mode {
                TestMode::Eval => TestMode::Paper,
                TestMode::Paper => TestMode::Eval,
            };
            let bs = self.config.batch_size;
            let out = translate(&mut self.g_a, &ta, other, bs, &self.device)?;
            if d.test_aligned {
                rows.push(EvalRow {
                    what: format!("A → B, {} mode", test_mode_name(other)),
                    model: score(&out, &d.test_b)?,
                    baseline: baseline(&d.test_a, &d.test_b)?,
                });
            }
            return Ok(rows);
        }
        let back = self.translate(false, &tb)?;
        if d.test_aligned {
            rows.push(EvalRow {
                what: "B → A".into(),
                model: score(&back, &d.test_a)?,
                baseline: baseline(&d.test_b, &d.test_a)?,
            });
        }
        let rec_a = self.translate(false, &fwd)?;
        let rec_b = self.translate(true, &back)?;
        rows.push(EvalRow {
            what: "cycle A → B → A".into(),
            model: score(&rec_a, &d.test_a)?,
            baseline: None,
        });
        rows.push(EvalRow {
            what: "cycle B → A → B".into(),
            model: score(&rec_b, &d.test_b)?,
            baseline: None,
        });
        Ok(rows)
    }
}

pub fn test_mode_name(m: TestMode) -> &'static str {
    match m {
        TestMode::Eval => "eval",
        TestMode::Paper => "paper",
    }
}

/// Translate `x` with `net` in test mode `mode`, in chunks of `chunk`, on `device`; the
/// network's state (batch-norm statistics, dropout position) is left as it was.
pub fn translate(
    net: &mut Network,
    x: &Tensor,
    mode: TestMode,
    chunk: usize,
    device: &Device,
) -> Result<Tensor> {
    let n = x.dims()[0];
    let x = x.to_device(device)?;
    // Paper mode runs the network as in training: keep the buffers and the dropout stream
    // to put them back afterwards.
    let saved: Vec<(Tensor, Tensor)> = match mode {
        TestMode::Eval => Vec::new(),
        TestMode::Paper => net
            .module
            .buffers()
            .into_iter()
            .map(|(_, b)| {
                let copy = Tensor::zeros(b.dims().to_vec(), b.dtype(), b.device())?;
                init::assign(&copy, &b)?;
                Ok((b, copy))
            })
            .collect::<Result<_>>()?,
    };
    let stream = net.dropout.get();
    net.dropout.set(stream.0 ^ TEST_DROPOUT_STREAM, 0);
    let was_training = net.module.is_training();
    net.module.set_training(mode == TestMode::Paper);
    let m = &net.module;
    let mut outs = Vec::new();
    let result = (|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let len = chunk.min(n - i);
            let part = x.narrow(0, i, len)?.contiguous()?;
            outs.push(no_grad(|| m.forward(&part))?.to_device(&Device::Cpu)?);
            i += len;
        }
        Ok(())
    })();
    net.module.set_training(was_training);
    net.dropout.set(stream.0, stream.1);
    for (b, copy) in &saved {
        init::assign(b, copy)?;
    }
    result?;
    let refs: Vec<&Tensor> = outs.iter().collect();
    Tensor::concat(&refs, 0)
}
