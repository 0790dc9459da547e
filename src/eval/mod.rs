//! Evaluation: what a GAN learned.
//!
//! * [`coverage`]: the mode-collapse protocol on toy mixtures (THEORY.md "Mode collapse
//!   and how it is measured");
//! * [`classifier`], [`digits`]: sample quality on the digits through duel's own
//!   evaluation classifier (Fréchet distance, IS-like score, class histogram, Parzen);
//! * [`linalg`]: means, covariances, symmetric eigendecomposition, PSD square roots;
//! * [`parzen`]: the Parzen-window log-likelihood estimate;
//! * [`theory`]: densities, the optimal discriminator, JSD and χ² estimates on toy data.

pub mod classifier;
pub mod coverage;
pub mod digits;
pub mod linalg;
pub mod parzen;
pub mod similarity;
pub mod theory;

pub use coverage::{mode_coverage, ModeCoverage};
