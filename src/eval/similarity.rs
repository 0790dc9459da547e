//! Image similarity against ground truth, for the image-to-image tasks: mean L1, PSNR and
//! SSIM. Images are `[N, C, H, W]` in [-1, 1] (tanh range) and are mapped to [0, 1] first,
//! so L1 is a fraction of the pixel range, PSNR = 10·log10(1 / MSE) per image (capped at
//! [`PSNR_CAP`] dB for identical images), and SSIM is Wang et al.'s (2004): an 11×11
//! Gaussian window with σ = 1.5 over the positions where it fits, C1 = 0.01², C2 = 0.03²,
//! averaged over positions, channels and images (the window shrinks to the largest odd side
//! that fits for images under 11 pixels).

use crate::error::{Error, Result};

/// PSNR of an exact match (MSE = 0).
pub const PSNR_CAP: f64 = 100.0;

/// Mean scores over a set of images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub l1: f64,
    pub psnr: f64,
    pub ssim: f64,
}

/// [`Similarity`] of `x` against `target`, both `[n, c, h, w]` as flat f32 in [-1, 1].
pub fn similarity(x: &[f32], target: &[f32], dims: [usize; 4]) -> Result<Similarity> {
    let [n, c, h, w] = dims;
    if x.len() != n * c * h * w || target.len() != x.len() || n == 0 {
        return Err(Error::invalid(format!(
            "similarity: {} and {} values for {n}×{c}×{h}×{w} images (need equal, nonzero)",
            x.len(),
            target.len()
        )));
    }
    let unit = |v: f32| (v as f64 + 1.0) * 0.5;
    let per = c * h * w;
    let (mut l1, mut psnr, mut ssim) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (&x[i * per..(i + 1) * per], &target[i * per..(i + 1) * per]);
        let (mut abs, mut sq) = (0.0, 0.0);
        for (&p, &q) in a.iter().zip(b) {
            let d = unit(p) - unit(q);
            abs += d.abs();
            sq += d * d;
        }
        l1 += abs / per as f64;
        let mse = sq / per as f64;
        psnr += if mse > 0.0 {
            (10.0 * (1.0 / mse).log10()).min(PSNR_CAP)
        } else {
            PSNR_CAP
        };
        for ch in 0..c {
            let plane = |s: &[f32]| -> Vec<f64> {
                s[ch * h * w..(ch + 1) * h * w]
                    .iter()
                    .map(|&v| unit(v))
                    .collect()
            };
            ssim += ssim_plane(&plane(a), &plane(b), h, w) / c as f64;
        }
    }
    let n = n as f64;
    Ok(Similarity {
        l1: l1 / n,
        psnr: psnr / n,
        ssim: ssim / n,
    })
}

/// The normalised 1-D Gaussian of `size` taps, σ = 1.5.
fn gaussian(size: usize) -> Vec<f64> {
    let mid = (size / 2) as f64;
    let g: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - mid).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    g.into_iter().map(|v| v / s).collect()
}

/// Mean SSIM of two `h`×`w` planes in [0, 1].
pub fn ssim_plane(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let mut size = 11.min(h).min(w);
    if size % 2 == 0 {
        size -= 1;
    }
    let g = gaussian(size);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let positions = (h - size + 1) * (w - size + 1);
    for y in 0..=h - size {
        for x in 0..=w - size {
            let (mut ma, mut mb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (dy, gy) in g.iter().enumerate() {
                for (dx, gx) in g.iter().enumerate() {
                    let k = gy * gx;
                    let (p, q) = (a[(y + dy) * w + x + dx], b[(y + dy) * w + x + dx]);
                    ma += k * p;
                    mb += k * q;
                    saa += k * p * p;
                    sbb += k * q * q;
                    sab += k * p * q;
                }
            }
            let (va, vb, cov) = (saa - ma * ma, sbb - mb * mb, sab - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        }
    }
    total / positions as f64
}
