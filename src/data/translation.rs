//! Image-to-image data: the built-in tasks derived from the digits, with exact ground
//! truth, and the user's own image folders ([`super::image_folder`]).
//!
//! **Built-in tasks.** Every digit is padded from 28×28 to 32×32 with 2 background pixels
//! on each side (padded, not resized: no pixel is interpolated, and 32 = 2^5 is what a
//! five-level U-Net halves down to 1×1). Morphology works on the 8-bit pixels with a 3×3
//! square: dilation = max, erosion = min.
//!
//! | task | A → B | pairing |
//! |---|---|---|
//! | `edges2digits` | outline (dilation − erosion) → digit | paired |
//! | `thicken` | digit → dilated digit | paired |
//! | `thicken-unpaired` | digit → dilated digit | unpaired: A are the even and B the odd training digits, so no digit appears in both domains |
//!
//! Training uses the `train` part of [`super::split::Split`] only; evaluation uses
//! `heldout` (never trained on), where both versions of each digit are known, so G(A) is
//! scored against its exact B (and, for the unpaired task, G_B(B) against its exact A).

use std::path::Path;

use super::split::Split;
use super::{read_images, read_labels, BUILTIN_IMAGES, BUILTIN_LABELS};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The built-in task names.
pub const TASKS: [&str; 3] = ["edges2digits", "thicken", "thicken-unpaired"];
/// Side of the built-in task images (the 28×28 digits padded by 2).
pub const TASK_SIDE: usize = 32;

/// `n` images `[C, H, W]` in [-1, 1], on the cpu.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub data: Vec<f32>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl ImageSet {
    pub fn empty(c: usize, h: usize, w: usize) -> ImageSet {
        ImageSet {
            data: Vec::new(),
            n: 0,
            c,
            h,
            w,
        }
    }
    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn push(&mut self, image: &[f32]) {
        debug_assert_eq!(image.len(), self.image_len());
        self.data.extend_from_slice(image);
        self.n += 1;
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// The images at `indices` as `[B, C, H, W]` on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let len = self.image_len();
        let mut v = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            if i >= self.n {
                return Err(Error::invalid(format!(
                    "image index {i} out of range for {} images",
                    self.n
                )));
            }
            v.extend_from_slice(&self.data[i * len..(i + 1) * len]);
        }
        Tensor::from_vec(v, [indices.len(), self.c, self.h, self.w], device)
    }
    /// The images at `indices` as a set of their own.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let len = self.image_len();
        let mut s = ImageSet::empty(self.c, self.h, self.w);
        for &i in indices {
            s.push(&self.data[i * len..(i + 1) * len]);
        }
        s
    }
}

/// What an image-to-image trainer learns from and is evaluated on.
#[derive(Clone, Debug)]
pub struct TranslationData {
    /// The task name or the folder.
    pub name: String,
    /// True when `train_a[i]` and `train_b[i]` are the two versions of one image.
    pub paired: bool,
    pub train_a: ImageSet,
    pub train_b: ImageSet,
    /// Held-out images of each domain (never trained on).
    pub test_a: ImageSet,
    pub test_b: ImageSet,
    /// True when `test_b[i]` is the exact translation of `test_a[i]` (ground truth).
    pub test_aligned: bool,
}

impl TranslationData {
    /// `[C, H, W]` of domain A and of domain B.
    pub fn shapes(&self) -> ([usize; 3], [usize; 3]) {
        let s = |x: &ImageSet| [x.c, x.h, x.w];
        (s(&self.train_a), s(&self.train_b))
    }

    /// A built-in task (see the module docs) or, for any other name, an image folder.
    pub fn open(spec: &str) -> Result<TranslationData> {
        if TASKS.contains(&spec) {
            return builtin(spec);
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return super::image_folder::open(path);
        }
        Err(Error::invalid(format!(
            "--data '{spec}': not a built-in task ({}) and not a directory of PNG images \
             (A/ and B/ subfolders for unpaired data, side-by-side A|B images for paired)",
            TASKS.join(", ")
        )))
    }
}

/// 3×3 max (`dilate`) or min filter of one `side`×`side` 8-bit image; pixels outside
/// count as background (0) for the max and are ignored for the min.
fn morph(p: &[u8], side: usize, dilate: bool) -> Vec<u8> {
    let mut out = vec![0u8; p.len()];
    for y in 0..side {
        for x in 0..side {
            let mut v = if dilate { 0u8 } else { 255u8 };
            for yy in y.saturating_sub(1)..(y + 2).min(side) {
                for xx in x.saturating_sub(1)..(x + 2).min(side) {
                    let q = p[yy * side + xx];
                    v = if dilate { v.max(q) } else { v.min(q) };
                }
            }
            out[y * side + x] = v;
        }
    }
    out
}

/// A 28×28 digit padded to [`TASK_SIDE`] with background, as f32 in [-1, 1].
fn pad_to_f32(p: &[u8], side: usize) -> Vec<f32> {
    let m = (TASK_SIDE - side) / 2;
    let mut v = vec![-1f32; TASK_SIDE * TASK_SIDE];
    for y in 0..side {
        for x in 0..side {
            v[(y + m) * TASK_SIDE + x + m] = super::idx::pixel_to_f32(p[y * side + x]);
        }
    }
    v
}

/// The (A, B) versions of one digit for `task`, at 32×32.
pub fn task_pair(task: &str, digit: &[u8], side: usize) -> (Vec<f32>, Vec<f32>) {
    let thick = morph(digit, side, true);
    match task {
        "edges2digits" => {
            let thin = morph(digit, side, false);
            let edges: Vec<u8> = thick.iter().zip(&thin).map(|(a, b)| a - b).collect();
            (pad_to_f32(&edges, side), pad_to_f32(digit, side))
        }
        _ => (pad_to_f32(digit, side), pad_to_f32(&thick, side)),
    }
}

fn builtin(task: &str) -> Result<TranslationData> {
    for p in [BUILTIN_IMAGES, BUILTIN_LABELS] {
        if !Path::new(p).exists() {
            return Err(Error::invalid(format!(
                "{p}: the built-in digits are missing; regenerate them with \
                 `python3 scripts/convert-mnist-5k.py` (see data/README.md)"
            )));
        }
    }
    let images = read_images(BUILTIN_IMAGES)?;
    let labels = read_labels(BUILTIN_LABELS)?;
    let side = images.dims[1];
    if images.dims[2] != side || side > TASK_SIDE {
        return Err(Error::invalid(format!(
            "{BUILTIN_IMAGES}: expected square digits of at most {TASK_SIDE} pixels, got {:?}",
            &images.dims[1..]
        )));
    }
    let hw = side * side;
    let split = Split::of_labels(&labels);
    let (mut all_a, mut all_b) = (
        ImageSet::empty(1, TASK_SIDE, TASK_SIDE),
        ImageSet::empty(1, TASK_SIDE, TASK_SIDE),
    );
    for i in 0..labels.len() {
        let (a, b) = task_pair(task, &images.data[i * hw..(i + 1) * hw], side);
        all_a.push(&a);
        all_b.push(&b);
    }
    let paired = task != "thicken-unpaired";
    let (train_a, train_b) = if paired {
        (all_a.subset(&split.train), all_b.subset(&split.train))
    } else {
        let even: Vec<usize> = split.train.iter().copied().step_by(2).collect();
        let odd: Vec<usize> = split.train.iter().copied().skip(1).step_by(2).collect();
        (all_a.subset(&even), all_b.subset(&odd))
    };
    Ok(TranslationData {
        name: task.to_string(),
        paired,
        train_a,
        train_b,
        test_a: all_a.subset(&split.heldout),
        test_b: all_b.subset(&split.heldout),
        test_aligned: true,
    })
}
