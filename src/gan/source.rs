//! Where a GAN's real samples come from: the digits (built-in or IDX files, resized for the
//! 64×64 architecture) or a toy mixture, opened from the run's configuration.

use super::config::{DataSpec, ImageRows, TrainConfig};
use super::trainer::DATA_STREAM;
use crate::data::toy::Mixture;
use crate::data::{Batches, Digits};
use crate::error::{Error, Result};
use crate::ops::pad::PadMode;
use crate::tensor::Tensor;

/// Where real samples come from, with the position of the next batch.
pub(super) enum Source {
    Images {
        digits: Digits,
        batches: Batches,
        size: usize,
    },
    Toy {
        mixture: Mixture,
        offset: u64,
    },
}

/// Load the data of `config`: the source, one sample's shape, and the class count.
pub(super) fn open_source(config: &TrainConfig) -> Result<(Source, Vec<usize>, Option<usize>)> {
    if let Some(mixture) = config.data.mixture() {
        let shape = vec![mixture.dim()];
        return Ok((Source::Toy { mixture, offset: 0 }, shape, None));
    }
    let digits = match &config.data {
        DataSpec::Idx { images, labels } => {
            let labels = labels.clone().ok_or_else(|| {
                Error::invalid(format!(
                    "no labels file for {} (looked for {}); give it with --labels",
                    images.display(),
                    super::config::labels_beside(images).display()
                ))
            })?;
            Digits::from_paths(images, labels)?
        }
        _ => Digits::builtin()?,
    };
    // Validation and held-out digits stay unseen by new runs (data::split).
    let digits = match config.image_rows {
        ImageRows::Train => digits.train_split()?,
        ImageRows::All => digits,
    };
    let (h, w) = digits.image_size();
    if (h, w) != (28, 28) {
        return Err(Error::invalid(format!(
            "the images are {h}×{w}; the DCGAN architectures take 28×28 images (MNIST, Fashion-MNIST)"
        )));
    }
    let classes = match (&config.data, config.conditional) {
        (
            DataSpec::Idx {
                labels: Some(l), ..
            },
            true,
        ) => digits.classes(&l.display().to_string())?,
        (_, true) => digits.classes("the built-in digit labels")?,
        (_, false) => digits.class_counts().len(),
    };
    let batches = Batches::new(digits.len(), config.batch_size, config.seed ^ DATA_STREAM)?;
    let size = config.image_size();
    Ok((
        Source::Images {
            digits,
            batches,
            size,
        },
        vec![1, size, size],
        Some(classes),
    ))
}

/// 28×28 images to `size`: unchanged for 28; for 64, ×2 nearest upsampling to 56 and a
/// border of 4 background pixels (−1).
pub(super) fn resize(x: &Tensor, size: usize) -> Result<Tensor> {
    if size == 28 {
        return Ok(x.clone());
    }
    // Pad with zeros around x + 1, then shift back: the border is −1 (background).
    crate::ops::pad::pad2d(
        &x.upsample_nearest2d(2)?.add_scalar(1.0)?,
        (4, 4, 4, 4),
        PadMode::Zero,
    )?
    .add_scalar(-1.0)
}
