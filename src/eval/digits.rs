//! `duel eval`'s figures for digit samples, against the built-in digits' splits
//! ([`crate::data::split`]) and through the evaluation [`Classifier`]:
//!
//! * **FD**: Fréchet distance between the classifier features of the samples and of the
//!   `train` split (4,000 digits; what the GAN was shown),
//!   [`crate::eval::linalg::frechet_distance`].
//!   It is biased upwards for small n (the covariance estimate is noisier), so compare
//!   runs at equal n.
//! * **IS-like**: exp(E_x KL(p(y|x) ‖ p(y))), p(y) the mean of p(y|x) over the samples;
//!   1 (every sample looks alike or undecided) … 10 (confident and evenly spread).
//! * **class histogram** of the predicted classes, its KL to uniform (0 … ln 10 = 2.303)
//!   and the number of classes with at least 5% of the samples;
//! * **confidence**: mean of max_y p(y|x);
//! * **Parzen**: [`parzen`] with the samples as centres, σ chosen on the `validation` split,
//!   scored on the `heldout` split;
//! * conditional runs: the fraction of samples asked for label y that the classifier calls y.
//!
//! The real ceiling ([`DigitsEval::real`]) gives the same figures for the 500 held-out
//! digits as the "samples" (Parzen: the `train` digits as centres).

use super::classifier::{Classifier, Outputs, CLASSES, FEATURES};
use super::linalg::{frechet_distance, mean_cov, Matrix};
use super::parzen::{parzen, Parzen};
use crate::data::Digits;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Share of the samples a class needs to count in [`Scores::classes_at_5pct`].
pub const CLASS_SHARE: f64 = 0.05;

/// Every figure of one set of images.
#[derive(Clone, Debug)]
pub struct Scores {
    pub n: usize,
    pub fd: f64,
    pub is_like: f64,
    pub class_histogram: Vec<f64>,
    pub kl_to_uniform: f64,
    pub classes_at_5pct: usize,
    pub mean_confidence: f64,
    pub parzen: Option<Parzen>,
    /// Conditional samples: per requested label, the fraction classified as it.
    pub per_class_accuracy: Option<Vec<f64>>,
}

impl Scores {
    /// The figures as metrics.jsonl fields (`eval_*`).
    pub fn fields(&self) -> Vec<(&'static str, f64)> {
        let mut f = vec![
            ("eval_fd", self.fd),
            ("eval_is", self.is_like),
            ("eval_kl_uniform", self.kl_to_uniform),
            ("eval_classes_5pct", self.classes_at_5pct as f64),
            ("eval_confidence", self.mean_confidence),
        ];
        if let Some(p) = self.parzen {
            f.push(("eval_parzen", p.mean));
            f.push(("eval_parzen_se", p.stderr));
        }
        if let Some(acc) = &self.per_class_accuracy {
            f.push((
                "eval_label_accuracy",
                acc.iter().sum::<f64>() / acc.len() as f64,
            ));
        }
        f
    }
}

/// The classifier with the real digits' statistics, ready to score samples.
pub struct DigitsEval {
    pub classifier: Classifier,
    ref_mean: Vec<f64>,
    ref_cov: Matrix,
    train_pixels: Vec<f64>,
    validation_pixels: Vec<f64>,
    heldout: Digits,
    heldout_pixels: Vec<f64>,
}

/// Images in [−1, 1] as rows of 784 values in [0, 1].
fn unit_pixels(images: &Tensor) -> Result<Vec<f64>> {
    Ok(images
        .to_dtype(DType::F64)?
        .to_vec::<f64>()?
        .into_iter()
        .map(|v| (v + 1.0) * 0.5)
        .collect())
}

impl DigitsEval {
    /// Statistics of `digits` (the built-in set, or any labelled 28×28 set with ten
    /// classes) through `classifier`.
    pub fn new(classifier: Classifier, digits: &Digits) -> Result<DigitsEval> {
        if digits.image_size() != (28, 28) || digits.class_counts().len() != CLASSES {
            return Err(Error::invalid(
                "duel eval scores 28×28 images of ten classes (the digits classifier's input)",
            ));
        }
        let split = digits.split();
        let train = digits.subset(&split.train)?;
        let validation = digits.subset(&split.validation)?;
        let heldout = digits.subset(&split.heldout)?;
        let (ref_mean, ref_cov) = mean_cov(&classifier.outputs(&train.images)?.features, FEATURES);
        Ok(DigitsEval {
            classifier,
            ref_mean,
            ref_cov,
            train_pixels: unit_pixels(&train.images)?,
            validation_pixels: unit_pixels(&validation.images)?,
            heldout_pixels: unit_pixels(&heldout.images)?,
            heldout,
        })
    }

    /// The held-out digits.
    pub fn heldout(&self) -> &Digits {
        &self.heldout
    }

    /// Score generated `images` (`[n, 1, 28, 28]` in [−1, 1]); `labels` are the labels a
    /// conditional generator was asked for; `with_parzen` adds the (slower) Parzen figure.
    pub fn score(
        &self,
        images: &Tensor,
        labels: Option<&[u8]>,
        with_parzen: bool,
    ) -> Result<Scores> {
        let out = self.classifier.outputs(images)?;
        let parzen = if with_parzen {
            Some(parzen(
                &unit_pixels(images)?,
                &self.validation_pixels,
                &self.heldout_pixels,
                784,
            )?)
        } else {
            None
        };
        self.scores(&out, labels, parzen)
    }

    /// The ceiling: the held-out digits scored as if they were samples.
    pub fn real(&self) -> Result<Scores> {
        let out = self.classifier.outputs(&self.heldout.images)?;
        let p = parzen(
            &self.train_pixels,
            &self.validation_pixels,
            &self.heldout_pixels,
            784,
        )?;
        self.scores(&out, Some(&self.heldout.labels), Some(p))
    }

    fn scores(
        &self,
        out: &Outputs,
        labels: Option<&[u8]>,
        parzen: Option<Parzen>,
    ) -> Result<Scores> {
        let n = out.len();
        if n < 2 {
            return Err(Error::invalid("duel eval needs at least 2 samples"));
        }
        let (mean, cov) = mean_cov(&out.features, FEATURES);
        let fd = frechet_distance(&mean, &cov, &self.ref_mean, &self.ref_cov);
        let mut marginal = vec![0.0; CLASSES];
        for p in out.probs.chunks_exact(CLASSES) {
            marginal
                .iter_mut()
                .zip(p)
                .for_each(|(m, q)| *m += q / n as f64);
        }
        let kl = |p: &[f64], q: &[f64]| -> f64 {
            p.iter()
                .zip(q)
                .filter(|(a, _)| **a > 0.0)
                .map(|(a, b)| a * (a / b).ln())
                .sum()
        };
        let mean_kl = out
            .probs
            .chunks_exact(CLASSES)
            .map(|p| kl(p, &marginal))
            .sum::<f64>()
            / n as f64;
        let pred = out.predictions();
        let mut hist = vec![0.0; CLASSES];
        for &c in &pred {
            hist[c] += 1.0 / n as f64;
        }
        let uniform = vec![1.0 / CLASSES as f64; CLASSES];
        let per_class_accuracy = labels.map(|labels| {
            let mut right = [0usize; CLASSES];
            let mut asked = [0usize; CLASSES];
            for (&l, &p) in labels.iter().zip(&pred) {
                asked[l as usize % CLASSES] += 1;
                right[l as usize % CLASSES] += usize::from(p == l as usize);
            }
            (0..CLASSES)
                .map(|k| right[k] as f64 / asked[k].max(1) as f64)
                .collect()
        });
        Ok(Scores {
            n,
            fd,
            is_like: mean_kl.exp(),
            kl_to_uniform: kl(&hist, &uniform),
            classes_at_5pct: hist.iter().filter(|&&h| h >= CLASS_SHARE).count(),
            class_histogram: hist,
            mean_confidence: out
                .probs
                .chunks_exact(CLASSES)
                .map(|p| p.iter().cloned().fold(0.0, f64::max))
                .sum::<f64>()
                / n as f64,
            parzen,
            per_class_accuracy,
        })
    }
}
