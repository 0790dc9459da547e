//! Data: the built-in digits (5,000 real MNIST digits, see `data/README.md`), any
//! MNIST / Fashion-MNIST IDX files by path, reproducible shuffled minibatches, and the toy
//! distributions of the mode-collapse experiments ([`toy`]).

pub mod idx;
pub mod image_folder;
pub mod split;
pub mod toy;
pub mod translation;

use std::path::{Path, PathBuf};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::rng::Philox;
use crate::tensor::Tensor;

pub use idx::{read_idx, read_images, read_labels, Idx};
pub use split::Split;

/// The built-in image file (gzipped IDX), resolved at compile time.
pub const BUILTIN_IMAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/digits-5k-images-idx3-ubyte.gz"
);
/// The built-in label file (gzipped IDX), resolved at compile time.
pub const BUILTIN_LABELS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/digits-5k-labels-idx1-ubyte.gz"
);

/// A labelled image set: `images` is f32 `[N, 1, H, W]` in [-1, 1] on the cpu.
#[derive(Clone, Debug)]
pub struct Digits {
    pub images: Tensor,
    pub labels: Vec<u8>,
    /// The raw pixels `[N, H, W]`, kept to assemble minibatches without touching `images`.
    pixels: Vec<u8>,
    height: usize,
    width: usize,
}

impl Digits {
    /// The 5,000 built-in MNIST digits (500 per class) from `data/`.
    pub fn builtin() -> Result<Digits> {
        for p in [BUILTIN_IMAGES, BUILTIN_LABELS] {
            if !Path::new(p).exists() {
                return Err(Error::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "built-in digits missing; regenerate them with `python3 scripts/convert-mnist-5k.py` (see data/README.md)",
                    ),
                ));
            }
        }
        Digits::from_paths(BUILTIN_IMAGES, BUILTIN_LABELS)
    }

    /// Any MNIST-style pair of IDX files (gzipped or not), e.g. full MNIST or Fashion-MNIST.
    pub fn from_paths(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Digits> {
        let (ip, lp) = (images.as_ref(), labels.as_ref());
        let img = read_images(ip)?;
        let labels = read_labels(lp)?;
        if labels.len() != img.dims[0] {
            return Err(Error::io(
                PathBuf::from(lp),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} labels but {} has {} images",
                        labels.len(),
                        ip.display(),
                        img.dims[0]
                    ),
                ),
            ));
        }
        let tensor = idx::images_to_tensor(&img, &Device::Cpu)?;
        Ok(Digits {
            images: tensor,
            labels,
            height: img.dims[1],
            width: img.dims[2],
            pixels: img.data,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// `(H, W)` of one image.
    pub fn image_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }
    /// The number of classes the labels imply (`max label + 1`), refusing labels that leave
    /// a class below the largest empty: a stray 255 among the digits 0..=9 would
    /// otherwise build a 256-class model. `labels` names the labels file in the error.
    pub fn classes(&self, labels: &str) -> Result<usize> {
        let counts = self.class_counts();
        if let Some(empty) = counts.iter().position(|&n| n == 0) {
            let max = counts.len() - 1;
            let at = self
                .labels
                .iter()
                .position(|&l| l as usize == max)
                .unwrap_or(0);
            return Err(Error::invalid(format!(
                "{labels}: label {max} (image {at}) implies {} classes, but class {empty} has \
                 no image; labels must be 0..K-1 with every class present (a stray or damaged \
                 label?)",
                max + 1
            )));
        }
        Ok(counts.len())
    }

    /// Number of images per label, for labels `0..=max label`.
    pub fn class_counts(&self) -> Vec<usize> {
        let k = self
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut c = vec![0; k];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// The examples at `indices`, in that order, as a set of their own.
    pub fn subset(&self, indices: &[usize]) -> Result<Digits> {
        let (images, labels) = self.batch(indices, &Device::Cpu)?;
        let hw = self.height * self.width;
        let pixels = indices
            .iter()
            .flat_map(|&i| self.pixels[i * hw..(i + 1) * hw].iter().copied())
            .collect();
        Ok(Digits {
            images,
            labels,
            pixels,
            height: self.height,
            width: self.width,
        })
    }

    /// The [`Split`] of this set (by its labels).
    pub fn split(&self) -> Split {
        Split::of_labels(&self.labels)
    }

    /// The `train` part of [`Digits::split`]: what GANs and the evaluation classifier see.
    pub fn train_split(&self) -> Result<Digits> {
        self.subset(&self.split().train)
    }

    /// The images at `indices` as f32 `[B, 1, H, W]` in [-1, 1] on `device`, and their labels.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<(Tensor, Vec<u8>)> {
        let hw = self.height * self.width;
        let mut v = Vec::with_capacity(indices.len() * hw);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(Error::invalid(format!(
                    "batch index {i} out of range for {} images",
                    self.len()
                )));
            }
            v.extend(
                self.pixels[i * hw..(i + 1) * hw]
                    .iter()
                    .map(|&p| idx::pixel_to_f32(p)),
            );
            labels.push(self.labels[i]);
        }
        let t = Tensor::from_vec(v, [indices.len(), 1, self.height, self.width], device)?;
        Ok((t, labels))
    }
}

/// What a data file was when a run started: its size and the CRC-32 of its bytes, so a
/// resume notices a changed file and accepts a moved one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileFingerprint {
    pub bytes: u64,
    pub crc32: String,
}

impl FileFingerprint {
    /// Read `path` once (streaming).
    pub fn of(path: &Path) -> Result<FileFingerprint> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FileFingerprint {
            bytes,
            crc32: format!("{:08x}", h.finalize()),
        })
    }
}

/// Where a [`Batches`] sampler is: enough to resume it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchState {
    pub seed: u64,
    pub epoch: u64,
    /// Index into the epoch's permutation of the next batch's first element.
    pub position: usize,
}

/// Reproducible shuffled minibatches of indices `0..n`.
///
/// Epoch `e` visits the permutation [`Batches::permutation`]`(n, seed, e)` in order, in
/// batches of exactly `batch_size`; a last partial batch is dropped (every batch has the
/// same size, as batch norm wants) and, since each epoch reshuffles, different indices are
/// dropped each epoch. The state is `(seed, epoch, position)`; [`Batches::resume`] from a
/// saved [`BatchState`] continues with exactly the batches the original would have given.
#[derive(Clone, Debug)]
pub struct Batches {
    n: usize,
    batch_size: usize,
    state: BatchState,
    perm: Vec<usize>,
}

impl Batches {
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Batches> {
        Batches::resume(
            n,
            batch_size,
            BatchState {
                seed,
                epoch: 0,
                position: 0,
            },
        )
    }

    pub fn resume(n: usize, batch_size: usize, state: BatchState) -> Result<Batches> {
        if batch_size == 0 || batch_size > n {
            return Err(Error::invalid(format!(
                "batch size {batch_size} must be in 1..={n} (the number of examples)"
            )));
        }
        if state.position > n {
            return Err(Error::invalid(format!(
                "sampler position {} is beyond the {n} examples of an epoch",
                state.position
            )));
        }
        Ok(Batches {
            n,
            batch_size,
            perm: Batches::permutation(n, state.seed, state.epoch),
            state,
        })
    }

    pub fn state(&self) -> BatchState {
        self.state
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Full batches per epoch (`n / batch_size`).
    pub fn batches_per_epoch(&self) -> usize {
        self.n / self.batch_size
    }

    /// The next batch of indices (advancing to the next epoch when this one is used up).
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.state.position + self.batch_size > self.n {
            self.state.epoch = self.state.epoch.wrapping_add(1);
            self.state.position = 0;
            self.perm = Batches::permutation(self.n, self.state.seed, self.state.epoch);
        }
        let p = self.state.position;
        self.state.position += self.batch_size;
        self.perm[p..p + self.batch_size].to_vec()
    }

    /// The shuffle of epoch `epoch`: Fisher–Yates over `0..n`, swap `i ↔ j` for
    /// `i = n−1 … 1` with `j` uniform in `0..=i` from the Philox stream of `seed` — draw `i`
    /// of epoch `e` uses words `2(e·n + i)` and `2(e·n + i) + 1` as one u64 `x`, and
    /// `j = ⌊x·(i+1) / 2^64⌋` (bias below `n / 2^64`).
    pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
        let rng = Philox::new(seed);
        let base = epoch.wrapping_mul(n as u64);
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let p = base.wrapping_add(i as u64).wrapping_mul(2);
            let x = ((rng.word(p) as u64) << 32) | rng.word(p.wrapping_add(1)) as u64;
            let j = ((x as u128 * (i as u128 + 1)) >> 64) as usize;
            perm.swap(i, j);
        }
        perm
    }
}
