//! The training loop of Goodfellow et al.'s Algorithm 1: per iteration, k discriminator
//! steps (each on a fresh minibatch of real data and of noise), then one generator step on
//! fresh noise. G and D have separate optimizers and optimizer state.
//!
//! **Who touches what.** The D step makes its fakes under `no_grad`, so backward never
//! reaches G, and only D's optimizer steps (then, for WGAN, only D's weights are clipped).
//! The G step freezes D's parameters ([`crate::autograd::freeze`]), so backward flows
//! through D to G's leaves but computes and stores no gradient for D, and only G's
//! optimizer steps. Both networks stay in training mode throughout (batch statistics, as
//! the DCGAN reference does), so a forward pass advances that network's batch-norm running
//! statistics; those are buffers, not parameters, and are only used for sampling.
//!
//! **Reproducibility.** Every random draw is a counter-based Philox stream addressed by
//! (seed, position): noise and fake labels at `noise_offset`, real batches by the
//! [`Batches`] state (images) or `toy_offset` (toy sets). The counters, both networks'
//! parameters and buffers, and both optimizers' state are the whole training state: a
//! checkpoint holds them all, so resuming continues bit for bit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::arch::{self, Net, NetSpec};
use super::config::{DataSpec, OptimizerKind, TrainConfig};
use super::objective::Objective;
use super::source::{open_source, resize, Source};
use crate::autograd::{freeze, no_grad};
use crate::data::toy::Mixture;
use crate::data::{BatchState, Batches, FileFingerprint};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::checkpoint::{load_training_state, save_training_state};
use crate::nn::{load_state_dict, Module};
use crate::ops::precision::{with_precision, Precision};
use crate::ops::rng::Philox;
use crate::optim::{
    clip_weights, grad_norm, scaled_backward, unscale_for_step, Adam, AdamConfig, LossScaler,
    LossScalers, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};
use crate::tensor::Tensor;

/// Seeds of the independent streams derived from the run's seed.
const NOISE_STREAM: u64 = 0x6e6f_6973_6500_0001;
const FIXED_STREAM: u64 = 0x6669_7865_6400_0002;
pub(super) const DATA_STREAM: u64 = 0x6461_7461_0000_0003;
/// Noise rows of the fixed sample grid (an 8×8 grid of images).
pub const GRID_SAMPLES: usize = 64;
/// Noise rows of the fixed samples of a toy run (a scatter plot).
pub const TOY_SAMPLES: usize = 1000;

/// One iteration's numbers (the D values are from the last of the k D steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMetrics {
    /// Generator steps done, this one included.
    pub step: u64,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on the real batch (a probability for gan/nsgan, a raw score otherwise).
    pub d_real: f64,
    /// Mean D(G(z)) on the fake batch of the D step.
    pub d_fake: f64,
    /// L2 norm of all of D's gradients in its last step, before clipping (NaN when an f16
    /// step was skipped because a scaled gradient overflowed).
    pub d_grad_norm: f64,
    /// L2 norm of all of G's gradients in its step (NaN when an f16 step was skipped).
    pub g_grad_norm: f64,
    /// f16 runs: the loss scales of D and G after this iteration (None otherwise).
    pub loss_scales: Option<(f64, f64)>,
}

impl StepMetrics {
    /// Named fields, as logged.
    pub fn fields(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("step", self.step as f64),
            ("d_loss", self.d_loss),
            ("g_loss", self.g_loss),
            ("d_real", self.d_real),
            ("d_fake", self.d_fake),
            ("d_grad_norm", self.d_grad_norm),
            ("g_grad_norm", self.g_grad_norm),
        ];
        if let Some((d, g)) = self.loss_scales {
            v.extend([("d_loss_scale", d), ("g_loss_scale", g)]);
        }
        v
    }
}

/// A GAN in training: networks, optimizers, objective, data and counters.
pub struct Trainer {
    pub config: TrainConfig,
    pub spec: NetSpec,
    pub g: Net,
    pub d: Net,
    pub opt_g: Box<dyn Optimizer>,
    pub opt_d: Box<dyn Optimizer>,
    objective: Box<dyn Objective>,
    source: Source,
    device: Device,
    /// Generator steps done.
    pub step: u64,
    noise_offset: u64,
    fixed_noise: Tensor,
    fixed_labels: Option<Vec<u8>>,
    /// Size and CRC-32 of the IDX files trained on (empty for built-in and toy data).
    data_files: Vec<FileFingerprint>,
    /// The cpu thread count of the process that wrote the checkpoint this trainer was
    /// loaded from (None for a fresh trainer, or a checkpoint that did not record it).
    pub saved_cpu_threads: Option<usize>,
    /// f16 runs: the dynamic loss scaling of D's and G's losses (None otherwise).
    pub loss_scalers: Option<LossScalers>,
}

impl Trainer {
    /// A fresh run of `config` on `device` (networks initialised from the seed).
    pub fn new(config: TrainConfig, device: &Device) -> Result<Trainer> {
        config.validate()?;
        let (source, sample_shape, classes) = open_source(&config)?;
        let data_files = match &config.data {
            DataSpec::Idx { images, labels } => std::iter::once(images)
                .chain(labels)
                .map(|p| FileFingerprint::of(p))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let spec = config.net_spec(sample_shape, classes);
        let (g, d) = arch::build(&spec, config.seed, device)?;
        let opt_g = make_optimizer(&config, config.lr_g, g.parameters())?;
        let opt_d = make_optimizer(&config, config.lr_d, d.parameters())?;
        let fixed_seed = config.seed ^ FIXED_STREAM;
        let fixed_n = if config.data.is_images() {
            GRID_SAMPLES
        } else {
            TOY_SAMPLES
        };
        let fixed_noise = Tensor::randn([fixed_n, config.nz], fixed_seed, 0, device)?;
        // Conditional grids: row r (8 per row) of the 8×8 grid shows class r mod k.
        let fixed_labels = spec
            .classes
            .map(|k| (0..GRID_SAMPLES).map(|i| ((i / 8) % k) as u8).collect());
        let loss_scalers = (config.precision == Precision::F16).then(LossScalers::default);
        Ok(Trainer {
            objective: Box::new(config.variant),
            config,
            spec,
            g,
            d,
            opt_g,
            opt_d,
            source,
            device: device.clone(),
            step: 0,
            noise_offset: 0,
            fixed_noise,
            fixed_labels,
            data_files,
            saved_cpu_threads: None,
            loss_scalers,
        })
    }

    /// Train with another objective (tests use this to show a broken loss is caught).
    pub fn with_objective(mut self, objective: Box<dyn Objective>) -> Trainer {
        self.objective = objective;
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The toy mixture being learned (None for images).
    pub fn mixture(&self) -> Option<&Mixture> {
        match &self.source {
            Source::Toy { mixture, .. } => Some(mixture),
            Source::Images { .. } => None,
        }
    }

    /// The next real minibatch and its labels (when conditional).
    fn real_batch(&mut self) -> Result<(Tensor, Option<Vec<u8>>)> {
        let b = self.config.batch_size;
        match &mut self.source {
            Source::Images {
                digits,
                batches,
                size,
            } => {
                let idx = batches.next_batch();
                let (x, labels) = digits.batch(&idx, &self.device)?;
                let x = resize(&x, *size)?;
                Ok((x, self.spec.classes.map(|_| labels)))
            }
            Source::Toy { mixture, offset } => {
                let x = mixture.sample(b, self.config.seed ^ DATA_STREAM, *offset)?;
                *offset += b as u64;
                Ok((x.to_device(&self.device)?, None))
            }
        }
    }

    /// `n` noise rows (and uniformly drawn class labels, when conditional) at the next
    /// position of the noise stream.
    pub fn noise(&mut self, n: usize) -> Result<(Tensor, Option<Vec<u8>>)> {
        let seed = self.config.seed ^ NOISE_STREAM;
        let len = (n * self.config.nz) as u64;
        let z = Tensor::randn([n, self.config.nz], seed, self.noise_offset, &self.device)?;
        // A normal value uses a pair of words (2⌊p/2⌋, 2⌊p/2⌋ + 1), so every draw starts
        // at an even position: then no word is used twice.
        let after_noise = (self.noise_offset + len).next_multiple_of(2);
        let labels: Option<Vec<u8>> = self.spec.classes.map(|k| {
            let rng = Philox::new(seed);
            (0..n as u64)
                .map(|i| ((rng.word(after_noise + i) as u64 * k as u64) >> 32) as u8)
                .collect()
        });
        let used = if labels.is_some() { n as u64 } else { 0 };
        self.noise_offset = (after_noise + used).next_multiple_of(2);
        Ok((z, labels))
    }

    /// One discriminator (critic) step. Returns (loss, mean D(x), mean D(G(z)), grad norm).
    pub fn d_step(&mut self) -> Result<(f64, f64, f64, f64)> {
        let (x, real_labels) = self.real_batch()?;
        let (z, fake_labels) = self.noise(self.config.batch_size)?;
        let fake = no_grad(|| self.g.forward(&z, fake_labels.as_deref()))?;
        self.opt_d.zero_grad();
        let real_out = self.d.forward(&x, real_labels.as_deref())?;
        let fake_out = self.d.forward(&fake, fake_labels.as_deref())?;
        let loss = self.objective.d_loss(&real_out, &fake_out)?;
        let scaler = self.loss_scalers.as_mut().map(|s| &mut s.d);
        let norm = match backward_scaled(&loss, scaler, self.opt_d.params())? {
            true => {
                let norm = grad_norm(self.opt_d.params())?;
                self.opt_d.step()?;
                if let Some(c) = self.config.variant.weight_clip() {
                    clip_weights(self.opt_d.params(), c)?;
                }
                norm
            }
            false => f64::NAN,
        };
        Ok((
            loss.item()?,
            self.objective.mean_d(&real_out)?,
            self.objective.mean_d(&fake_out)?,
            norm,
        ))
    }

    /// One generator step with D frozen. Returns (loss, grad norm).
    pub fn g_step(&mut self) -> Result<(f64, f64)> {
        let (z, labels) = self.noise(self.config.batch_size)?;
        self.opt_g.zero_grad();
        let (loss, norm) = {
            let _frozen = freeze(self.opt_d.params());
            let fake = self.g.forward(&z, labels.as_deref())?;
            let out = self.d.forward(&fake, labels.as_deref())?;
            let loss = self.objective.g_loss(&out)?;
            let scaler = self.loss_scalers.as_mut().map(|s| &mut s.g);
            let norm = match backward_scaled(&loss, scaler, self.opt_g.params())? {
                true => {
                    let norm = grad_norm(self.opt_g.params())?;
                    self.opt_g.step()?;
                    norm
                }
                false => f64::NAN,
            };
            (loss, norm)
        };
        Ok((loss.item()?, norm))
    }

    /// One iteration of Algorithm 1: `d_steps` D steps, then one G step, in the run's
    /// precision.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        with_precision(self.config.precision, || self.train_step_here())
    }

    fn train_step_here(&mut self) -> Result<StepMetrics> {
        let mut d = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..self.config.d_steps {
            d = self.d_step()?;
        }
        let (g_loss, g_norm) = self.g_step()?;
        self.step += 1;
        Ok(StepMetrics {
            step: self.step,
            d_loss: d.0,
            g_loss,
            d_real: d.1,
            d_fake: d.2,
            d_grad_norm: d.3,
            g_grad_norm: g_norm,
            loss_scales: self.loss_scalers.map(|s| (s.d.scale, s.g.scale)),
        })
    }

    /// G's samples from the fixed noise (the progress grid), with G in eval mode (running
    /// statistics), so drawing them changes nothing. Images `[64, C, H, W]` or toy points
    /// `[1000, d]`, on the cpu.
    pub fn fixed_samples(&mut self) -> Result<Tensor> {
        let z = self.fixed_noise.clone();
        let labels = self.fixed_labels.clone();
        self.generate(&z, labels.as_deref())
    }

    /// G(z) in eval mode without recording, on the cpu.
    pub fn generate(&mut self, z: &Tensor, labels: Option<&[u8]>) -> Result<Tensor> {
        self.g.set_training(false);
        let precision = self.config.precision;
        let out = no_grad(|| with_precision(precision, || self.g.forward(z, labels)));
        self.g.set_training(true);
        out?.to_device(&Device::Cpu)
    }

    /// `n` fresh samples (eval mode) from the noise stream of `seed`, independent of
    /// training's streams; with `label`, every sample is of that class.
    pub fn sample(&mut self, n: usize, seed: u64, label: Option<u8>) -> Result<Tensor> {
        let z = Tensor::randn([n, self.config.nz], seed, 0, &self.device)?;
        let labels = label.map(|l| vec![l; n]);
        self.generate(&z, labels.as_deref())
    }

    /// Every tensor of the training state: G's and D's `state_dict` (`g.*`, `d.*`) and
    /// both optimizers' state (`opt_g.*`, `opt_d.*`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (p, m) in [("g", &self.g.body), ("d", &self.d.body)] {
            v.extend(
                m.state_entries()
                    .into_iter()
                    .map(|(n, t)| (format!("{p}.{n}"), t)),
            );
        }
        for (p, o) in [("opt_g", &self.opt_g), ("opt_d", &self.opt_d)] {
            v.extend(o.state().into_iter().map(|(n, t)| (format!("{p}.{n}"), t)));
        }
        v
    }

    /// The counters and configuration, as stored beside the tensors ([`SavedState`]).
    pub fn state_json(&self) -> Result<Value> {
        let data = match &self.source {
            Source::Images { batches, .. } => SourceState::Images(batches.state()),
            Source::Toy { offset, .. } => SourceState::Toy { offset: *offset },
        };
        let counters = |o: &dyn Optimizer| OptimizerCounters {
            steps: o.steps(),
            param_steps: o.param_steps(),
        };
        let state = SavedState {
            config: self.config.clone(),
            net: self.spec.clone(),
            step: self.step,
            noise_offset: self.noise_offset,
            data,
            opt_g: counters(self.opt_g.as_ref()),
            opt_d: counters(self.opt_d.as_ref()),
            data_files: self.data_files.clone(),
            cpu_threads: matches!(self.device, Device::Cpu).then(rayon::current_num_threads),
            loss_scalers: self.loss_scalers,
        };
        serde_json::to_value(&state).map_err(|e| {
            Error::invalid(format!(
                "cannot record the training state: {e}; give --data a path in UTF-8"
            ))
        })
    }

    /// Write the whole training state to `path` (atomically).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        save_training_state(path, &self.state_tensors(), &self.state_json()?.to_string())
    }

    /// Rebuild a trainer from a file written by [`Trainer::save`], on `device`. With
    /// `steps`, the run's total is changed (to train further than first planned).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        device: &Device,
        steps: Option<u64>,
    ) -> Result<Trainer> {
        Trainer::load_changed(path, device, |c| {
            if let Some(s) = steps {
                c.steps = s;
            }
            Ok(())
        })
    }

    /// [`Trainer::load`], with `change` applied to the stored configuration first (a
    /// resume that trains further, lowers a learning rate, or points at moved data). The
    /// changed configuration is validated; IDX data must be the files the run started
    /// with (same size and CRC-32), wherever they are now.
    pub fn load_changed(
        path: impl AsRef<std::path::Path>,
        device: &Device,
        change: impl FnOnce(&mut TrainConfig) -> Result<()>,
    ) -> Result<Trainer> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let state = load_training_state(path)?;
        let meta = SavedState::parse(&state.metadata_json, &what)?;
        let mut config = meta.config;
        change(&mut config)?;
        config.validate()?;
        if let DataSpec::Idx { images, .. } = &config.data {
            if !images.is_file() {
                return Err(Error::invalid(format!(
                    "{what}: the run's data {} is not there any more; if it moved, give its \
                     new place with --resume … --data NEW_PATH (accepted when the file is \
                     the same: size and CRC-32)",
                    images.display()
                )));
            }
        }
        let mut t = Trainer::new(config, device)?;
        if !meta.data_files.is_empty() && meta.data_files != t.data_files {
            let DataSpec::Idx { images, .. } = &t.config.data else {
                return Err(Error::invalid(format!(
                    "{what}: the run was trained on IDX files, not on {}",
                    t.config.data.name()
                )));
            };
            let show = |v: &[FileFingerprint]| {
                v.iter()
                    .map(|f| format!("{} bytes, crc32 {}", f.bytes, f.crc32))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            return Err(Error::invalid(format!(
                "{what}: the data changed since the run started: {} (with its labels) is now \
                 {}, the run was trained on {}; give the original files (--data PATH with \
                 --resume if they moved)",
                images.display(),
                show(&t.data_files),
                show(&meta.data_files)
            )));
        }
        t.saved_cpu_threads = meta.cpu_threads;
        if t.loss_scalers.is_some() {
            t.loss_scalers = Some(meta.loss_scalers.ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: an f16 run's checkpoint without its loss scalers; the checkpoint \
                     is damaged"
                ))
            })?);
        }
        t.step = meta.step;
        t.noise_offset = meta.noise_offset;
        match (&mut t.source, meta.data) {
            (
                Source::Images {
                    digits, batches, ..
                },
                SourceState::Images(s),
            ) => {
                *batches = Batches::resume(digits.len(), t.config.batch_size, s)
                    .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
            }
            (Source::Toy { offset, .. }, SourceState::Toy { offset: o }) => *offset = o,
            _ => {
                return Err(Error::invalid(format!(
                    "{what}: the training state's data position does not fit its data set; \
                     the checkpoint is damaged"
                )))
            }
        }
        let mut groups: [(&str, Vec<(String, Tensor)>); 4] = [
            ("g.", vec![]),
            ("d.", vec![]),
            ("opt_g.", vec![]),
            ("opt_d.", vec![]),
        ];
        for (name, tensor) in state.tensors {
            let slot = groups
                .iter_mut()
                .find(|(p, _)| name.starts_with(p))
                .ok_or_else(|| Error::invalid(format!("{what}: unexpected tensor '{name}'")))?;
            slot.1.push((name[slot.0.len()..].to_string(), tensor));
        }
        let [(_, g), (_, d), (_, og), (_, od)] = groups;
        for (net, entries) in [(&t.g.body, g), (&t.d.body, d)] {
            load_state_dict(net, &entries.into_iter().collect())
                .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        }
        for (counters, opt, entries) in [
            (meta.opt_g, &mut t.opt_g, og),
            (meta.opt_d, &mut t.opt_d, od),
        ] {
            opt.load_state(&entries, &counters.param_steps, counters.steps)
                .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        }
        Ok(t)
    }
}

/// The counters and configuration of a training state, stored as JSON in a checkpoint's
/// metadata (`duel.training_state`).
#[derive(Serialize, Deserialize)]
pub struct SavedState {
    pub config: TrainConfig,
    pub net: NetSpec,
    /// Generator steps done.
    pub step: u64,
    /// Position of the next draw in the noise stream.
    pub noise_offset: u64,
    pub data: SourceState,
    pub opt_g: OptimizerCounters,
    pub opt_d: OptimizerCounters,
    /// Size and CRC-32 of the IDX images and labels files (absent before it was stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_files: Vec<FileFingerprint>,
    /// The cpu thread count when written on the cpu (for the record: results do not
    /// depend on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<usize>,
    /// f16 runs: both loss scalers (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scalers: Option<LossScalers>,
}

impl SavedState {
    /// Read the JSON of a checkpoint's `duel.training_state`, its configuration validated;
    /// `what` names the checkpoint in errors.
    pub fn parse(json: &str, what: &str) -> Result<SavedState> {
        let s: SavedState = serde_json::from_str(json).map_err(|e| {
            Error::invalid(format!(
                "{what}: the training state is not valid: {e}; the checkpoint is damaged"
            ))
        })?;
        s.config
            .validate()
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        Ok(s)
    }
}

/// Where the next real batch starts: the image batches' shuffle state, or the toy
/// stream's position.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum SourceState {
    Images(BatchState),
    Toy { offset: u64 },
}

/// An optimizer's step counters (its tensors are stored beside them).
#[derive(Serialize, Deserialize)]
pub struct OptimizerCounters {
    pub steps: u64,
    pub param_steps: Vec<Option<u64>>,
}

/// Backpropagate `loss` (scaled, and the gradients of `params` unscaled, when `scaler` is
/// given) and say whether the optimizer may step: false when a scaled gradient overflowed
/// (the gradients are then dropped and the scale backs off).
fn backward_scaled(
    loss: &Tensor,
    scaler: Option<&mut LossScaler>,
    params: &[Tensor],
) -> Result<bool> {
    scaled_backward(loss, scaler.as_deref())?;
    unscale_for_step(scaler, params)
}

fn make_optimizer(c: &TrainConfig, lr: f64, params: Vec<Tensor>) -> Result<Box<dyn Optimizer>> {
    Ok(match c.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(
            params,
            AdamConfig::new(lr).betas(c.beta1, c.beta2),
        )?),
        OptimizerKind::RmsProp => Box::new(RmsProp::new(
            params,
            RmsPropConfig::new(lr).alpha(c.beta2).momentum(c.beta1),
        )?),
        OptimizerKind::Sgd => Box::new(Sgd::new(params, SgdConfig::new(lr).momentum(c.beta1))?),
    })
}
