//! What a pair of networks costs in memory, estimated from its description before
//! anything is allocated: so a `--batch-size`, `--width` or `--nz` too large for this
//! machine (given on the command line, or read from a checkpoint or generator file) is one
//! clear error, not an allocation abort or a "capacity overflow" panic.
//!
//! The estimate counts every parameter four times (weights, gradients, two optimizer
//! moments) and every activation four times per sample (the forward value kept for
//! backward, its gradient, and room for the convolutions' unfolded inputs and other
//! temporaries), in f32. It is meant to be within a small factor of the truth and to err
//! on the large side; it is compared with the machine's memory (`/proc/meminfo`), and
//! skipped where that cannot be read. Arithmetic is in f64, so no size overflows.

use super::arch::{Arch, NetSpec};
use crate::error::{Error, Result};

/// Parameters (weights and biases; batch-norm affine and running statistics) of G and D.
pub fn parameter_count(spec: &NetSpec) -> f64 {
    let f = |x: usize| x as f64;
    let (nz, w, k) = (f(spec.nz), f(spec.width), f(spec.classes.unwrap_or(0)));
    let c = f(spec.sample_shape.first().copied().unwrap_or(1));
    let nz_in = nz + k;
    let bn = |ch: f64| 4.0 * ch;
    match spec.arch {
        Arch::Mlp => {
            let (g, d) = (
                (nz_in + 1.0) * w + (w + 1.0) * w + (w + 1.0) * c,
                (c + k + 1.0) * w + (w + 1.0) * w + w + 1.0,
            );
            g + d
        }
        Arch::Dcgan28 => {
            let g = nz_in * 2.0 * w * 49.0
                + bn(2.0 * w * 49.0)
                + 2.0 * w * w * 16.0
                + bn(w)
                + w * c * 16.0
                + c;
            let d =
                (c + k) * w * 16.0 + w + w * 2.0 * w * 16.0 + bn(2.0 * w) + 2.0 * w * 49.0 + 1.0;
            g + d
        }
        Arch::Dcgan64 => {
            let g = nz_in * 8.0 * w * 16.0
                + (32.0 + 8.0 + 2.0) * w * w * 16.0
                + bn(8.0 * w + 4.0 * w + 2.0 * w + w)
                + w * c * 16.0;
            let d = (c + k) * w * 16.0
                + (2.0 + 8.0 + 32.0) * w * w * 16.0
                + bn(2.0 * w + 4.0 * w + 8.0 * w)
                + 8.0 * w * 16.0;
            g + d
        }
    }
}

/// Activation values of one sample through G and D.
pub fn activations_per_sample(spec: &NetSpec) -> f64 {
    let f = |x: usize| x as f64;
    let (w, k) = (f(spec.width), f(spec.classes.unwrap_or(0)));
    let c = f(spec.sample_shape.first().copied().unwrap_or(1));
    let nz_in = f(spec.nz) + k;
    match spec.arch {
        Arch::Mlp => nz_in + 8.0 * w + 2.0 * c + k,
        Arch::Dcgan28 => {
            let g = nz_in + 3.0 * 2.0 * w * 49.0 + 3.0 * w * 196.0 + 2.0 * c * 784.0;
            let d = (c + k) * 784.0 + 2.0 * w * 196.0 + 3.0 * 2.0 * w * 49.0 + 1.0;
            g + d
        }
        Arch::Dcgan64 => {
            let g = nz_in
                + 3.0 * (8.0 * w * 16.0 + 4.0 * w * 64.0 + 2.0 * w * 256.0 + w * 1024.0)
                + 2.0 * c * 4096.0;
            let d = (c + k) * 4096.0
                + 2.0 * w * 1024.0
                + 3.0 * (2.0 * w * 256.0 + 4.0 * w * 64.0 + 8.0 * w * 16.0)
                + 1.0;
            g + d
        }
    }
}

/// Estimated bytes to train `spec` with minibatches of `batch` (the D step holds a real
/// and a fake batch).
pub fn training_bytes(spec: &NetSpec, batch: usize) -> f64 {
    4.0 * (4.0 * parameter_count(spec) + 4.0 * 2.0 * batch as f64 * activations_per_sample(spec))
}

/// Total memory of this machine in bytes (None where it cannot be read).
pub fn machine_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Refuse `bytes` when it is more than this machine's memory; `what` says what needs it
/// and `fix` which flags to lower.
pub fn check_fits(bytes: f64, what: &str, fix: &str) -> Result<()> {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    // Where the machine's memory is unknown, still refuse what no machine has (1 PiB):
    // such sizes only come from typos or damaged files, and overflow shape arithmetic.
    let limit = machine_memory().unwrap_or(f64::from(1u32 << 20) * f64::from(1u32 << 30));
    if bytes.is_nan() || bytes > limit {
        return Err(Error::invalid(format!(
            "{what} would need about {:.1} GiB of memory (estimated), more than this \
             machine's {:.1} GiB; {fix}",
            gib(bytes),
            gib(limit)
        )));
    }
    Ok(())
}
