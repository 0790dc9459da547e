//! Mode coverage of toy samples. [`mode_coverage`] implements THEORY.md "Mode collapse and how it
//! is measured" for samples of a toy mixture ([`crate::data::toy::Mixture`]).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The mode-coverage measures of a set of samples against known mode centres.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeCoverage {
    /// Fraction of all samples within 3 std (Euclidean distance ≤ 3·std) of their nearest
    /// mode centre.
    pub high_quality_fraction: f64,
    /// Number of modes that are the nearest mode of at least one high-quality sample.
    pub modes_captured: usize,
    /// KL(p ‖ uniform) = Σ_k p_k ln(p_k·K), where p is the histogram of the high-quality
    /// samples over the K modes normalised to sum to 1 (over high-quality samples only).
    /// Empty bins contribute 0 (0·ln 0 = 0), so the value lies in [0, ln K]: 0 for a
    /// perfectly even spread, ln K when all high-quality samples are at one mode.
    /// With no high-quality sample at all the histogram is undefined and the value is
    /// ln K (as bad as total collapse); `high_quality_fraction == 0` tells the cases apart.
    pub kl_to_uniform: f64,
    /// High-quality samples per mode (the histogram before normalisation).
    pub counts: Vec<usize>,
    /// Total number of samples.
    pub n_samples: usize,
}

/// Mode coverage of `samples` (`[n, d]`, or `[n]` for d = 1; any dtype, any device) against
/// `modes` (K centres of dimension d) with per-mode standard deviation `std`.
/// Nearest mode = smallest Euclidean distance, ties to the lower index.
pub fn mode_coverage(samples: &Tensor, modes: &[Vec<f64>], std: f64) -> Result<ModeCoverage> {
    let d = modes.first().map_or(0, |m| m.len());
    if modes.is_empty() || d == 0 || modes.iter().any(|m| m.len() != d) {
        return Err(Error::invalid(
            "mode_coverage: need at least one mode, all of the same non-zero dimension",
        ));
    }
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::invalid(format!(
            "mode_coverage: std must be finite and > 0, got {std}"
        )));
    }
    let dims = samples.dims();
    let n = match dims {
        [n] if d == 1 => *n,
        [n, dd] if *dd == d => *n,
        _ => {
            return Err(Error::shape(
                "mode_coverage",
                format!(
                    "samples have shape {}, expected [n, {d}] to match the modes",
                    samples.shape()
                ),
            ))
        }
    };
    let x = samples.to_f64_vec()?;
    let k = modes.len();
    let mut counts = vec![0usize; k];
    let mut high = 0usize;
    let limit2 = (3.0 * std) * (3.0 * std);
    for row in x.chunks_exact(d) {
        let mut best = (f64::INFINITY, 0usize);
        for (m, c) in modes.iter().enumerate() {
            let d2: f64 = row.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            if d2 < best.0 {
                best = (d2, m);
            }
        }
        // NaN samples are never high quality (the comparison is false).
        if best.0 <= limit2 {
            high += 1;
            counts[best.1] += 1;
        }
    }
    let kf = k as f64;
    let kl = if high == 0 {
        kf.ln()
    } else {
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / high as f64;
                p * (p * kf).ln()
            })
            .sum::<f64>()
            .max(0.0)
    };
    Ok(ModeCoverage {
        high_quality_fraction: if n == 0 { 0.0 } else { high as f64 / n as f64 },
        modes_captured: counts.iter().filter(|&&c| c > 0).count(),
        kl_to_uniform: kl,
        counts,
        n_samples: n,
    })
}
