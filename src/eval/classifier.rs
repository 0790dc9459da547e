//! The evaluation classifier of the digits: a small CNN built and trained by duel itself
//! on the `train` split ([`crate::data::split`]), so no download and no Inception network.
//!
//! ```text
//! x [N,1,28,28] in [-1,1]
//! 0 Conv2d(1, 8, 5, stride 2, pad 2)  → [N,8,14,14]   1 ReLU
//! 2 Conv2d(8, 16, 5, stride 2, pad 2) → [N,16,7,7]    3 ReLU
//! 4 flatten → [N,784]   5 Linear(784, 64)   6 ReLU    ← the feature space (64-d)
//! 7 Linear(64, 10) → class logits
//! ```
//!
//! The features of `duel eval`'s Fréchet distance are the outputs of child 6 (the
//! penultimate layer). The shipped weights, `data/digits-classifier.safetensors`, are what
//! `duel eval --train-classifier` writes (Adam 1e-3, batch 64, [`EPOCHS`] epochs, seed
//! [`SEED`]; cpu results are bitwise reproducible, so the command rewrites the same file);
//! their validation and held-out accuracies are in the file's metadata.

use std::collections::BTreeMap;
use std::path::Path;

use crate::autograd::no_grad;
use crate::data::{Batches, Digits};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::checkpoint::{load_safetensors_with_metadata, save_module};
use crate::nn::{load_state_dict, Conv2d, Linear, Module, ParamRng, ReLU, Reshape, Sequential};
use crate::ops::conv::Conv2dParams;
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::tensor::Tensor;

/// The shipped classifier, resolved at compile time like the built-in digits.
pub const CLASSIFIER_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/digits-classifier.safetensors"
);
pub const CLASSES: usize = 10;
/// Width of the feature space.
pub const FEATURES: usize = 64;
pub const EPOCHS: usize = 8;
pub const SEED: u64 = 15;
const BATCH: usize = 64;
const LR: f64 = 1e-3;
/// Children before the head: the output of child `FEATURE_CHILDREN - 1` is the features.
const FEATURE_CHILDREN: usize = 7;

/// The trained network and what its file says about it.
pub struct Classifier {
    net: Sequential,
    /// Accuracy on the validation and held-out splits when it was trained.
    pub validation_accuracy: f64,
    pub heldout_accuracy: f64,
}

/// What the classifier says about a set of images.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// `[n, FEATURES]` row-major penultimate-layer activations.
    pub features: Vec<f64>,
    /// `[n, CLASSES]` row-major softmax probabilities.
    pub probs: Vec<f64>,
}

impl Outputs {
    pub fn len(&self) -> usize {
        self.probs.len() / CLASSES
    }
    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }
    /// The most probable class of each image (ties to the lower class).
    pub fn predictions(&self) -> Vec<usize> {
        self.probs
            .chunks_exact(CLASSES)
            .map(|p| (0..CLASSES).fold(0, |best, k| if p[k] > p[best] { k } else { best }))
            .collect()
    }
}

fn network(seed: u64) -> Result<Sequential> {
    let dev = Device::Cpu;
    let mut rng = ParamRng::new(seed);
    let down = Conv2dParams {
        stride: (2, 2),
        padding: (2, 2),
        ..Default::default()
    };
    Ok(Sequential::new(vec![
        Box::new(
            Conv2d::options(1, 8, 5)
                .params(down)
                .build(&mut rng, &dev)?,
        ),
        Box::new(ReLU),
        Box::new(
            Conv2d::options(8, 16, 5)
                .params(down)
                .build(&mut rng, &dev)?,
        ),
        Box::new(ReLU),
        Box::new(Reshape::new(vec![16 * 7 * 7])),
        Box::new(Linear::options(16 * 7 * 7, FEATURES).build(&mut rng, &dev)?),
        Box::new(ReLU),
        Box::new(Linear::options(FEATURES, CLASSES).build(&mut rng, &dev)?),
    ]))
}

/// Mean cross-entropy of `logits [B, K]` against `labels`, recorded on the tape:
/// −mean_b(log softmax(logits)_b\[label_b\]), with the row maximum (a constant) subtracted
/// before exp so no logit overflows.
pub fn cross_entropy(logits: &Tensor, labels: &[u8]) -> Result<Tensor> {
    let (b, k) = (logits.dims()[0], logits.dims()[1]);
    let shifted = logits.sub(&logits.detach().max(&[1], true)?)?;
    let log_z = shifted.exp()?.sum(&[1], true)?.log()?;
    let log_p = shifted.sub(&log_z)?;
    let mut onehot = vec![0f32; b * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l as usize] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, [b, k], logits.device())?;
    log_p.mul(&onehot)?.sum_all()?.mul_scalar(-1.0 / b as f64)
}

impl Classifier {
    /// Train a classifier on `digits.train_split()` (see the module docs), reporting each
    /// epoch's mean loss and validation accuracy through `progress`.
    pub fn train(digits: &Digits, mut progress: impl FnMut(usize, f64, f64)) -> Result<Classifier> {
        let split = digits.split();
        let train = digits.subset(&split.train)?;
        let validation = digits.subset(&split.validation)?;
        let heldout = digits.subset(&split.heldout)?;
        let net = network(SEED)?;
        let params: Vec<Tensor> = net.parameters().into_iter().map(|(_, t)| t).collect();
        let mut opt = Adam::new(params, AdamConfig::new(LR))?;
        let mut batches = Batches::new(train.len(), BATCH, SEED)?;
        let mut c = Classifier {
            net,
            validation_accuracy: 0.0,
            heldout_accuracy: 0.0,
        };
        for epoch in 0..EPOCHS {
            let mut total = 0.0;
            let steps = batches.batches_per_epoch();
            for _ in 0..steps {
                let (x, y) = train.batch(&batches.next_batch(), &Device::Cpu)?;
                opt.zero_grad();
                let loss = cross_entropy(&c.net.forward(&x)?, &y)?;
                loss.backward()?;
                opt.step()?;
                total += loss.item()?;
            }
            c.validation_accuracy = c.accuracy(&validation)?;
            progress(epoch + 1, total / steps as f64, c.validation_accuracy);
        }
        c.heldout_accuracy = c.accuracy(&heldout)?;
        Ok(c)
    }

    /// Fraction of `digits` classified as their label.
    pub fn accuracy(&self, digits: &Digits) -> Result<f64> {
        let pred = self.outputs(&digits.images)?.predictions();
        let right = pred
            .iter()
            .zip(&digits.labels)
            .filter(|(p, &l)| **p == l as usize)
            .count();
        Ok(right as f64 / digits.len().max(1) as f64)
    }

    /// Features and class probabilities of `images` (`[N, 1, 28, 28]` in [−1, 1], any
    /// device; computed on the cpu in batches of 500).
    pub fn outputs(&self, images: &Tensor) -> Result<Outputs> {
        let d = images.dims();
        if d.len() != 4 || d[1..] != [1, 28, 28] {
            return Err(Error::shape(
                "classifier",
                format!(
                    "images have shape {}; the digits classifier takes [N, 1, 28, 28]",
                    images.shape()
                ),
            ));
        }
        let all = images
            .to_dtype(crate::tensor::DType::F32)?
            .to_vec::<f32>()?;
        let (mut features, mut probs) = (Vec::new(), Vec::new());
        for chunk in all.chunks(500 * 784) {
            let x = Tensor::from_vec(chunk.to_vec(), [chunk.len() / 784, 1, 28, 28], &Device::Cpu)?;
            let (f, logits) = no_grad(|| -> Result<(Tensor, Tensor)> {
                let mut h = x;
                for child in &self.net.children()[..FEATURE_CHILDREN] {
                    h = child.forward(&h)?;
                }
                let logits = self.net.children()[FEATURE_CHILDREN].forward(&h)?;
                Ok((h, logits))
            })?;
            features.extend(f.to_f64_vec()?);
            for row in logits.to_f64_vec()?.chunks_exact(CLASSES) {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|l| (l - m).exp()).sum();
                probs.extend(row.iter().map(|l| (l - m).exp() / z));
            }
        }
        Ok(Outputs { features, probs })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = BTreeMap::from([
            ("duel.classifier".to_string(), "digits-cnn-v1".to_string()),
            (
                "validation_accuracy".to_string(),
                format!("{}", self.validation_accuracy),
            ),
            (
                "heldout_accuracy".to_string(),
                format!("{}", self.heldout_accuracy),
            ),
            (
                "trained".to_string(),
                format!("duel eval --train-classifier (Adam {LR}, batch {BATCH}, {EPOCHS} epochs, seed {SEED}, train split)"),
            ),
        ]);
        save_module(path, &self.net, Some(&meta))
    }

    /// The classifier in `path` (the shipped one: [`CLASSIFIER_PATH`]).
    pub fn load(path: &Path) -> Result<Classifier> {
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "evaluation classifier {} not found; make it with `duel eval --train-classifier` \
                 (under a minute)",
                path.display()
            )));
        }
        let (tensors, meta) = load_safetensors_with_metadata(path)?;
        if meta.get("duel.classifier").map(String::as_str) != Some("digits-cnn-v1") {
            return Err(Error::invalid(format!(
                "{}: not a duel digits classifier (no duel.classifier = digits-cnn-v1 in its \
                 metadata); remake it with `duel eval --train-classifier`",
                path.display()
            )));
        }
        let net = network(SEED)?;
        load_state_dict(&net, &tensors.into_iter().collect())
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let acc = |k: &str| meta.get(k).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        Ok(Classifier {
            net,
            validation_accuracy: acc("validation_accuracy"),
            heldout_accuracy: acc("heldout_accuracy"),
        })
    }
}
