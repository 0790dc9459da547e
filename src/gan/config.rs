//! What a training run is: the variant, the networks, the data, the optimizers, the
//! schedule and the seed. Stored as `config.json` in the run directory and inside every
//! checkpoint, so `--resume` and `duel sample` rebuild exactly the same thing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::arch::{Arch, NetSpec};
use super::objective::Variant;
use crate::data::toy::Mixture;
use crate::error::{Error, Result};
use crate::ops::precision::Precision;

/// Where real samples come from. Stored as `"data": "<name>"` (`"idx"` with `"images"`
/// and `"labels"` paths) among the run configuration's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "data", rename_all = "lowercase")]
pub enum DataSpec {
    /// The 5,000 built-in digits.
    Digits,
    /// MNIST-style IDX files by path (labels optional unless conditional).
    Idx {
        images: PathBuf,
        labels: Option<PathBuf>,
    },
    /// Ring of 8 Gaussians (radius 2, std 0.02).
    Ring8,
    /// 5×5 grid of Gaussians (spacing 2, std 0.05).
    Grid25,
    /// 1-D mixture of three Gaussians at −2, 0, 2 (std 0.1).
    Mix1d,
}

impl DataSpec {
    pub const TOY: [&'static str; 3] = ["ring8", "grid25", "mix1d"];

    /// `digits`, `ring8`, `grid25`, `mix1d`, or a path to an IDX images file.
    pub fn parse(s: &str, labels: Option<PathBuf>) -> Result<DataSpec> {
        let named = match s {
            "digits" => Some(DataSpec::Digits),
            "ring8" => Some(DataSpec::Ring8),
            "grid25" => Some(DataSpec::Grid25),
            "mix1d" => Some(DataSpec::Mix1d),
            _ => None,
        };
        if let Some(d) = named {
            if labels.is_some() {
                return Err(Error::invalid(format!(
                    "--labels is for IDX image files given by path, not for --data {s}"
                )));
            }
            return Ok(d);
        }
        let images = PathBuf::from(s);
        if !images.is_file() {
            return Err(Error::invalid(format!(
                "--data '{s}': no such file; use digits (built in), ring8, grid25, mix1d, or \
                 the path of an IDX images file such as train-images-idx3-ubyte.gz"
            )));
        }
        let labels = labels.or_else(|| {
            let guess = labels_beside(&images);
            (guess != images && guess.is_file()).then_some(guess)
        });
        // Stored absolute, so a resume from another directory finds the same files.
        let absolute = |p: PathBuf| std::path::absolute(&p).map_err(|e| Error::io(&p, e));
        Ok(DataSpec::Idx {
            images: absolute(images)?,
            labels: labels.map(absolute).transpose()?,
        })
    }

    pub fn name(&self) -> String {
        match self {
            DataSpec::Digits => "digits".into(),
            DataSpec::Idx { images, .. } => images.display().to_string(),
            DataSpec::Ring8 => "ring8".into(),
            DataSpec::Grid25 => "grid25".into(),
            DataSpec::Mix1d => "mix1d".into(),
        }
    }

    /// The toy mixture (None for images).
    pub fn mixture(&self) -> Option<Mixture> {
        match self {
            DataSpec::Ring8 => Some(Mixture::ring8()),
            DataSpec::Grid25 => Some(Mixture::grid25()),
            DataSpec::Mix1d => Mixture::mixture_1d(&[-2.0, 0.0, 2.0], 0.1).ok(),
            DataSpec::Digits | DataSpec::Idx { .. } => None,
        }
    }

    /// True for the images (digits or IDX files).
    pub fn is_images(&self) -> bool {
        matches!(self, DataSpec::Digits | DataSpec::Idx { .. })
    }
}

/// MNIST's naming: `…images-idx3-ubyte[.gz]` has its labels in `…labels-idx1-ubyte[.gz]`.
pub fn labels_beside(images: &std::path::Path) -> PathBuf {
    let name = images
        .file_name()
        .map(|n| n.to_string_lossy().replace("images-idx3", "labels-idx1"))
        .unwrap_or_default();
    images.with_file_name(name)
}

/// Which optimizer both networks use (each gets its own instance and state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    RmsProp,
    Sgd,
}

impl OptimizerKind {
    pub fn parse(s: &str) -> Result<OptimizerKind> {
        match s {
            "adam" => Ok(OptimizerKind::Adam),
            "rmsprop" => Ok(OptimizerKind::RmsProp),
            "sgd" => Ok(OptimizerKind::Sgd),
            other => Err(Error::invalid(format!(
                "--optimizer '{other}': unknown optimizer; choose adam, rmsprop or sgd"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::RmsProp => "rmsprop",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

/// Which images of an image set a GAN trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageRows {
    /// The `train` part of [`crate::data::split`]: validation and held-out images stay
    /// unseen, so `duel eval` and the image-to-image scores measure generalisation.
    Train,
    /// Every image: how runs were made before the split existed. Their config.json has no
    /// `image_rows` field and reads as `all`, so they resume bitwise.
    All,
}

impl ImageRows {
    fn before_the_split() -> ImageRows {
        ImageRows::All
    }
}

/// A training run's full description. Its JSON form (`config.json`) is one flat object:
/// the fields below by name, with the variant's (`variant`, `ls_coding`, `clip`) and the
/// data's (`data`, `images`, `labels`) among them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub variant: Variant,
    /// Discriminator (critic) steps per generator step: Algorithm 1's k, WGAN's n_critic.
    pub d_steps: usize,
    pub arch: Arch,
    pub conditional: bool,
    pub nz: usize,
    pub width: usize,
    #[serde(flatten)]
    pub data: DataSpec,
    pub batch_size: usize,
    /// Total generator steps of the run.
    pub steps: u64,
    pub optimizer: OptimizerKind,
    pub lr_g: f64,
    pub lr_d: f64,
    /// Adam's β1, β2; SGD uses `beta1` as its momentum; RMSProp uses `beta2` as alpha.
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    /// A sample picture every this many steps (absent in files before it was stored: 250).
    #[serde(default = "default_sample_every")]
    pub sample_every: u64,
    /// A checkpoint every this many steps (absent in files before it was stored: 500).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Which images of the data set are trained on (toy data ignores it).
    #[serde(default = "ImageRows::before_the_split")]
    pub image_rows: ImageRows,
    /// The operand precision of the networks' matmuls and convolutions (`ops::precision`;
    /// absent in files before it was stored: f32). f16 runs scale their losses
    /// (`optim::LossScaler`).
    #[serde(default)]
    pub precision: Precision,
}

fn default_sample_every() -> u64 {
    250
}

fn default_checkpoint_every() -> u64 {
    500
}

impl TrainConfig {
    /// The defaults for `variant` on `data` with `arch`: Adam 2e-4, β = (0.5, 0.999) for
    /// the DCGANs (Radford et al.), Adam 1e-3 (0.5, 0.999) for the toy MLP (5e-4 for
    /// LSGAN), and WGAN's RMSProp 5e-5 with n_critic 5 (Arjovsky et al.; 2e-4 on toy data).
    pub fn defaults(variant: Variant, arch: Arch, data: DataSpec) -> TrainConfig {
        let toy = arch == Arch::Mlp;
        let wgan = matches!(variant, Variant::WGan { .. });
        let lsgan = matches!(variant, Variant::LsGan(_));
        // The toy values were measured on ring8 (tests/gan_toy.rs) to land on the modes
        // within seconds. WGAN's toy lr is 4× the paper's 5e-5, which was tuned for images
        // over ~10^5 generator steps: with clip 0.01 and n_critic 5 on the ring, 5e-5 and
        // 1e-4 are still a blob around the origin after 2000 steps; 2e-4 was the best of
        // 1e-4..1e-3 (a faster critic, up to 2e-3, is worse; faster G is noisier). LSGAN's
        // unbounded quadratic scores make Adam 1e-3 oscillate (clusters drift, modes are
        // dropped and re-found); 5e-4 settles.
        let (optimizer, lr) = match (wgan, toy) {
            (true, true) => (OptimizerKind::RmsProp, 2e-4),
            (true, false) => (OptimizerKind::RmsProp, 5e-5),
            (false, true) if lsgan => (OptimizerKind::Adam, 5e-4),
            (false, true) => (OptimizerKind::Adam, 1e-3),
            (false, false) => (OptimizerKind::Adam, 2e-4),
        };
        TrainConfig {
            variant,
            d_steps: if wgan { 5 } else { 1 },
            arch,
            conditional: false,
            nz: if toy { 16 } else { 100 },
            width: if toy { 128 } else { 64 },
            data,
            // Toy WGAN: the paper's batch 64, so its 5 critic steps per G step buy 6000
            // G steps in ~20 s.
            batch_size: match (toy, wgan) {
                (true, false) => 256,
                _ => 64,
            },
            steps: match (toy, wgan) {
                (true, false) => 3000,
                (true, true) => 6000,
                (false, _) => 3000,
            },
            optimizer,
            lr_g: lr,
            lr_d: lr,
            beta1: if wgan { 0.0 } else { 0.5 },
            beta2: if wgan { 0.99 } else { 0.999 },
            seed: 1,
            sample_every: default_sample_every(),
            checkpoint_every: default_checkpoint_every(),
            image_rows: ImageRows::Train,
            precision: Precision::F32,
        }
    }

    /// Check the combination; every problem names the flag to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.d_steps == 0 {
            return bad("--d-steps must be at least 1".into());
        }
        if self.nz == 0 || self.width == 0 {
            return bad("--nz and --width must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "--batch-size {}: batch norm needs at least 2 samples per batch",
                self.batch_size
            ));
        }
        for (flag, v) in [("--lr-g", self.lr_g), ("--lr-d", self.lr_d)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{flag} {v}: the learning rate must be positive"));
            }
        }
        for (flag, v) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{flag} {v}: must be in [0, 1)"));
            }
        }
        match (self.arch, self.data.is_images()) {
            (Arch::Mlp, true) => {
                return bad(format!(
                    "--arch mlp is for the toy sets ({}); images need --arch dcgan28 or dcgan64",
                    DataSpec::TOY.join(", ")
                ))
            }
            (Arch::Dcgan28 | Arch::Dcgan64, false) => {
                return bad(format!(
                    "--arch {} makes images; the toy set {} needs --arch mlp",
                    self.arch.name(),
                    self.data.name()
                ))
            }
            _ => {}
        }
        if self.conditional && !self.data.is_images() {
            return bad(
                "--conditional needs labelled images (the digits or IDX files with --labels)"
                    .into(),
            );
        }
        if self.sample_every == 0 || self.checkpoint_every == 0 {
            return bad("--sample-every and --checkpoint-every must be at least 1".into());
        }
        self.check_memory()
    }

    /// Refuse sizes this machine cannot train ([`super::budget`]), before anything is
    /// allocated; the classes of a conditional run are estimated as the digits' 10.
    fn check_memory(&self) -> Result<()> {
        let sample_shape = match self.data.mixture() {
            Some(m) => vec![m.dim()],
            None => vec![1, self.image_size(), self.image_size()],
        };
        let spec = self.net_spec(sample_shape, Some(10));
        super::budget::check_fits(
            super::budget::training_bytes(&spec, self.batch_size),
            &format!(
                "--batch-size {} with --width {} and --nz {}",
                self.batch_size, self.width, self.nz
            ),
            "lower --batch-size, --width or --nz",
        )
    }

    /// Side of the images fed to the networks: 28, or 64 for dcgan64 (the digits scaled ×2
    /// and padded).
    pub fn image_size(&self) -> usize {
        self.arch.image_size().unwrap_or(28)
    }

    /// The networks' shapes for samples of `sample_shape` and `classes` (when conditional).
    pub fn net_spec(&self, sample_shape: Vec<usize>, classes: Option<usize>) -> NetSpec {
        NetSpec {
            arch: self.arch,
            nz: self.nz,
            width: self.width,
            sample_shape,
            classes: if self.conditional { classes } else { None },
        }
    }

    /// The configuration as JSON (`config.json`, and inside every checkpoint). Fails only
    /// for a data path that is not UTF-8.
    pub fn to_json(&self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| {
            Error::invalid(format!(
                "cannot record the run configuration: {e}; give --data a path in UTF-8"
            ))
        })
    }

    /// Read what [`TrainConfig::to_json`] wrote (also files written before the derive:
    /// same field names, `null` for the fields a variant or data set does not use);
    /// `what` names the file in errors.
    pub fn from_json(v: &Value, what: &str) -> Result<TrainConfig> {
        let c = TrainConfig::deserialize(v).map_err(|e| {
            Error::invalid(format!(
                "{what}: the run configuration is not valid: {e} (was it written by duel?)"
            ))
        })?;
        c.validate()?;
        Ok(c)
    }
}
