//! Parzen-window (Gaussian kernel density) log-likelihood, the estimate of Goodfellow et
//! al. 2014 (Table 1): fit an isotropic Gaussian KDE with bandwidth σ on samples, choose σ
//! by the mean log-likelihood of a validation set, report the mean log-likelihood of a
//! test set with its standard error.
//!
//! Caveat (Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative
//! models"): in 784 dimensions this estimate is far from the model's true log-likelihood
//! even with 10⁷ samples, can rank models wrongly, and a model that memorises k training
//! digits can beat real data; read it as a distance from the samples to held-out digits,
//! not as a likelihood.
//!
//! Points are rows of `d` values in [0, 1] (pixels/255, the scale the published MNIST
//! numbers use). Squared distances come from one f64 matmul: ‖x‖² + ‖c‖² − 2x·c.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// σ candidates: 0.05 … 0.5, 25 values evenly spaced in log σ.
pub fn sigma_grid() -> Vec<f64> {
    (0..25)
        .map(|i| 0.05 * 10f64.powf(i as f64 / 24.0))
        .collect()
}

/// The Parzen estimate: the chosen σ, the test set's mean log-likelihood (nats) and its
/// standard error (sample std / √m).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Parzen {
    pub sigma: f64,
    pub mean: f64,
    pub stderr: f64,
}

/// Squared Euclidean distances `[m, n]` between the rows of `x` and of `c` (row-major).
fn squared_distances(x: &[f64], c: &[f64], d: usize) -> Result<Vec<f64>> {
    let (m, n) = (x.len() / d, c.len() / d);
    let xt = Tensor::from_vec(x.to_vec(), [m, d], &Device::Cpu)?;
    let ct = Tensor::from_vec(c.to_vec(), [n, d], &Device::Cpu)?;
    let dot = xt.matmul(&ct.t()?)?.to_vec::<f64>()?;
    let norms = |v: &[f64]| -> Vec<f64> {
        v.chunks_exact(d)
            .map(|r| r.iter().map(|a| a * a).sum())
            .collect()
    };
    let (nx, nc) = (norms(x), norms(c));
    Ok((0..m * n)
        .map(|k| (nx[k / n] + nc[k % n] - 2.0 * dot[k]).max(0.0))
        .collect())
}

/// Log-likelihood of each row of a distance matrix `[m, n]` under the KDE of bandwidth σ in
/// `d` dimensions: logsumexp_i(−d²ᵢ/2σ²) − ln n − (d/2)·ln(2πσ²).
fn log_likelihoods(dist2: &[f64], n: usize, d: usize, sigma: f64) -> Vec<f64> {
    let s2 = 2.0 * sigma * sigma;
    let norm = (n as f64).ln() + 0.5 * d as f64 * (std::f64::consts::TAU * sigma * sigma).ln();
    dist2
        .chunks_exact(n)
        .map(|row| {
            let min = row.iter().cloned().fold(f64::INFINITY, f64::min);
            let sum: f64 = row.iter().map(|&r| (-(r - min) / s2).exp()).sum();
            -min / s2 + sum.ln() - norm
        })
        .collect()
}

fn mean_stderr(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Fit on `centres`, choose σ from [`sigma_grid`] on `validation`, score `test` (all rows
/// of `d` values).
pub fn parzen(centres: &[f64], validation: &[f64], test: &[f64], d: usize) -> Result<Parzen> {
    if d == 0 || centres.len() < d || validation.len() < d || test.len() < d {
        return Err(Error::invalid(
            "parzen: need at least one centre, one validation and one test point",
        ));
    }
    let n = centres.len() / d;
    let dv = squared_distances(validation, centres, d)?;
    let best = sigma_grid()
        .into_iter()
        .map(|s| (s, mean_stderr(&log_likelihoods(&dv, n, d, s)).0))
        .fold(
            (f64::NAN, f64::NEG_INFINITY),
            |b, x| if x.1 > b.1 { x } else { b },
        );
    let dt = squared_distances(test, centres, d)?;
    let (mean, stderr) = mean_stderr(&log_likelihoods(&dt, n, d, best.0));
    Ok(Parzen {
        sigma: best.0,
        mean,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_centre_is_the_gaussian_density() {
        // One centre at 0 in 2-D: log N(x; 0, σ²I) = −|x|²/2σ² − ln(2πσ²).
        let s = 0.3;
        let x = [0.1, -0.2];
        let d2 = squared_distances(&x, &[0.0, 0.0], 2).unwrap();
        let ll = log_likelihoods(&d2, 1, 2, s)[0];
        let want = -(0.01 + 0.04) / (2.0 * s * s) - (std::f64::consts::TAU * s * s).ln();
        assert!((ll - want).abs() < 1e-12, "{ll} vs {want}");
    }
}
