//! Image-to-image translation: pix2pix (Isola et al., 2017) on paired data and CycleGAN
//! (Zhu et al., 2017) on unpaired data, as the reference implementation
//! (junyanz/pytorch-CycleGAN-and-pix2pix) trains them, sized for 32×32 images.
//!
//! * [`nets`] — U-Net, ResNet generator, PatchGAN, with the reference's state_dict names.
//! * [`pool`] — CycleGAN's history of generated images.
//! * [`trainer`] — both training steps, the LR schedule, exact save/resume, evaluation.
//! * [`run`] — the run directory (`duel train pix2pix|cyclegan`) and `duel translate`.
//!
//! The run's description is [`Img2ImgConfig`]; its defaults per model are in
//! [`Img2ImgConfig::defaults`], which says where they depart from the reference and why.

pub mod nets;
pub mod pool;
pub mod run;
pub mod trainer;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::precision::Precision;
pub use nets::Norm;
pub use trainer::Img2ImgTrainer;

/// Which system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Conditional GAN on paired data: G(x) ≈ y, D judges (x, y) pairs; GAN + λ·L1.
    Pix2pix,
    /// Two generators and two discriminators on unpaired data; GAN + cycle + identity.
    Cyclegan,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Pix2pix => "pix2pix",
            Model::Cyclegan => "cyclegan",
        }
    }
}

/// The generator architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    Unet,
    Resnet,
}

impl GeneratorKind {
    pub fn parse(s: &str) -> Result<GeneratorKind> {
        match s {
            "unet" => Ok(GeneratorKind::Unet),
            "resnet" => Ok(GeneratorKind::Resnet),
            o => Err(Error::invalid(format!(
                "--generator '{o}': choose unet or resnet"
            ))),
        }
    }
}

/// The adversarial term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanLoss {
    /// Sigmoid cross-entropy on D's logits, targets 1 (real) and 0 (fake).
    Vanilla,
    /// Least squares mean((D − t)²), t = 1 real, 0 fake (the reference's `lsgan`).
    Lsgan,
}

impl GanLoss {
    pub fn parse(s: &str) -> Result<GanLoss> {
        match s {
            "vanilla" => Ok(GanLoss::Vanilla),
            "lsgan" => Ok(GanLoss::Lsgan),
            o => Err(Error::invalid(format!(
                "--gan-loss '{o}': choose vanilla or lsgan"
            ))),
        }
    }
}

/// How the generator runs when it translates after training (grids, evaluation,
/// `duel translate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestMode {
    /// Eval mode: batch norm uses its running statistics, dropout is off. Deterministic,
    /// and an image's translation does not depend on the other images of its batch.
    Eval,
    /// As the pix2pix paper: dropout on and batch norm on the statistics of the test batch
    /// (the network exactly as in training). Masks come from a fixed stream, so the
    /// output is still reproducible, but it changes with the batch's composition.
    Paper,
}

impl TestMode {
    pub fn parse(s: &str) -> Result<TestMode> {
        match s {
            "eval" => Ok(TestMode::Eval),
            "paper" => Ok(TestMode::Paper),
            o => Err(Error::invalid(format!(
                "--test-mode '{o}': choose eval or paper"
            ))),
        }
    }
}

/// Everything that describes an image-to-image run (config.json, checkpoint metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Img2ImgConfig {
    pub model: Model,
    /// A built-in task (`edges2digits`, `thicken`, `thicken-unpaired`) or a folder.
    pub data: String,
    pub generator: GeneratorKind,
    /// Generator base channels.
    pub ngf: usize,
    /// Discriminator base channels.
    pub ndf: usize,
    /// U-Net levels (each halves the side).
    pub num_downs: usize,
    /// U-Net channel cap as a multiple of ngf (the reference's 8).
    pub max_mult: usize,
    /// ResNet generator residual blocks.
    pub n_blocks: usize,
    /// PatchGAN stride-2 layers (1 → 16×16 patches, 2 → 34×34, 3 → 70×70).
    pub n_layers_d: usize,
    pub norm: Norm,
    /// Dropout 0.5 in the generator (U-Net: inner decoder blocks; ResNet: residual blocks).
    pub dropout: bool,
    pub gan_loss: GanLoss,
    /// pix2pix: weight of L1(G(x), y).
    pub lambda_l1: f64,
    /// CycleGAN: weight of each cycle-consistency L1.
    pub lambda_cycle: f64,
    /// CycleGAN: identity weight as a fraction of lambda_cycle (the reference's 0.5).
    pub lambda_identity: f64,
    /// CycleGAN: generated images each discriminator's history holds (0 = no history).
    pub pool_size: usize,
    pub batch_size: usize,
    /// Steps in all; the last `decay_steps` of them decay the learning rate linearly to 0.
    pub steps: u64,
    pub decay_steps: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    pub test_mode: TestMode,
    /// The operand precision of the networks' convolutions (`ops::precision`; absent in
    /// files before it was stored: f32); f16 runs scale their losses.
    #[serde(default)]
    pub precision: Precision,
}

impl Img2ImgConfig {
    /// The defaults of `model`: the reference's losses, weights, optimizer and schedule
    /// shape, with networks and batch sized for 32×32 digits on 2 cpu cores:
    ///
    /// * pix2pix: U-Net with 5 levels (32 → 1), ngf 16 with channels capped at 4·ngf (so one
    ///   inner decoder block has dropout; the reference's cap of 8 has none at 5 levels),
    ///   batch norm, PatchGAN with 1 layer (16×16 patches: half the image side, about the
    ///   reference's 70 of 256 relative to what a patch should judge, stroke texture),
    ///   vanilla GAN loss, λ = 100, batch 16 (the reference's 1 is slow on a cpu; batch norm
    ///   then has real batch statistics).
    /// * CycleGAN: ResNet generator with ngf 8 and 3 blocks (the reference's 64 and 9 are for
    ///   256×256; it runs six generator passes a step, so it is kept smaller than pix2pix's),
    ///   instance norm, PatchGAN with 1 layer, LSGAN, λ_cycle = 10, identity 0.5, pools of
    ///   50, batch 4, 3000 steps (pix2pix: 2000).
    /// * Both: Adam lr 2e-4, β = (0.5, 0.999); constant for the first half of the steps, then
    ///   linear decay to 0 (the reference's 100 + 100 epochs).
    pub fn defaults(model: Model) -> Img2ImgConfig {
        let pix = model == Model::Pix2pix;
        Img2ImgConfig {
            model,
            data: if pix {
                "edges2digits"
            } else {
                "thicken-unpaired"
            }
            .into(),
            generator: if pix {
                GeneratorKind::Unet
            } else {
                GeneratorKind::Resnet
            },
            ngf: if pix { 16 } else { 8 },
            ndf: 16,
            num_downs: 5,
            max_mult: 4,
            n_blocks: 3,
            n_layers_d: 1,
            norm: if pix { Norm::Batch } else { Norm::Instance },
            dropout: pix,
            gan_loss: if pix {
                GanLoss::Vanilla
            } else {
                GanLoss::Lsgan
            },
            lambda_l1: 100.0,
            lambda_cycle: 10.0,
            lambda_identity: 0.5,
            pool_size: 50,
            batch_size: if pix { 16 } else { 4 },
            steps: if pix { 2000 } else { 3000 },
            decay_steps: if pix { 1000 } else { 1500 },
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            seed: 1,
            test_mode: TestMode::Eval,
            precision: Precision::F32,
        }
    }

    /// One clear error for the first value out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if self.decay_steps > self.steps {
            return bad(format!(
                "--decay-steps {} is more than --steps {}; the decay is the last part of the run",
                self.decay_steps, self.steps
            ));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad(format!("--batch-size {}: use 1 to 4096", self.batch_size));
        }
        for (flag, v) in [
            ("--lr", self.lr),
            ("--lambda-l1", self.lambda_l1),
            ("--lambda-cycle", self.lambda_cycle),
            ("--lambda-identity", self.lambda_identity),
        ] {
            if !(v.is_finite() && v >= 0.0) || (flag == "--lr" && v == 0.0) {
                return bad(format!(
                    "{flag} {v}: must be a finite number, at least 0 (the learning rate above 0)"
                ));
            }
        }
        for (flag, v) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{flag} {v}: must be in [0, 1)"));
            }
        }
        if self.pool_size > 10_000 {
            return bad(format!(
                "--pool-size {}: use at most 10000 images",
                self.pool_size
            ));
        }
        if self.ngf > 1024 || self.ndf > 1024 {
            return bad("--ngf and --ndf must be at most 1024".into());
        }
        Ok(())
    }

    /// The learning-rate factor for the update of step `step` (0-based): 1 for the first
    /// `steps − decay_steps` updates, then `(steps − step) / decay_steps`, falling linearly
    /// to `1 / decay_steps` at the last update (and to 0 where the run ends).
    pub fn lr_factor(&self, step: u64) -> f64 {
        if self.decay_steps == 0 {
            return 1.0;
        }
        let left = self.steps.saturating_sub(step) as f64;
        (left / self.decay_steps as f64).min(1.0)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Read what [`Img2ImgConfig::to_json`] wrote; `what` names the file in errors.
    pub fn from_json(v: &serde_json::Value, what: &str) -> Result<Img2ImgConfig> {
        serde_json::from_value(v.clone()).map_err(|e| {
            Error::invalid(format!(
                "{what}: not a valid image-to-image configuration ({e})"
            ))
        })
    }
}
