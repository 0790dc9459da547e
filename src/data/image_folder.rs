//! The user's own image-to-image data: a directory of PNG files.
//!
//! * **Unpaired**: `DIR/A/*.png` and `DIR/B/*.png` (any counts).
//! * **Paired**: `DIR/*.png`, each image the A and B versions side by side (A left, B
//!   right, as the pix2pix datasets are stored), so its width is twice the translated width.
//!
//! Files are taken in name order; the held-out part of each folder (never trained on) is
//! chosen by [`super::split::Split`] — the same rule as for the digits, with every image in
//! one class: the first 80% train, the last 10% are held out. All images of a domain must have one size; gray, gray+alpha,
//! RGB, RGBA, palette and 16-bit PNGs are read (alpha dropped, 16 bits cut to 8); a domain
//! with any colour image is read as RGB. Anything else is one error naming the file.

use std::path::{Path, PathBuf};

use super::split::Split;
use super::translation::{ImageSet, TranslationData};
use crate::error::{Error, Result};

/// Most pixels (all images of one domain, all channels) read into memory: 1 GiB of f32.
pub const MAX_VALUES: usize = 1 << 28;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: {msg}", path.display()))
}

/// The `.png` files directly in `dir`, by name.
pub fn png_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let is_png = p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png"));
        if is_png && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// One decoded PNG: 8-bit samples, `channels` (1 or 3) per pixel, row-major.
pub struct Png {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub samples: Vec<u8>,
}

/// Decode the PNG at `path` to gray or RGB (see the module docs).
pub fn read_png(path: &Path) -> Result<Png> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(path, format!("not a readable PNG ({e})")))?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    if w == 0 || h == 0 || w * h > (1 << 26) {
        return Err(bad(
            path,
            format!("a {w}×{h} image is outside the 1 to 2^26 pixels duel reads"),
        ));
    }
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(path, format!("damaged PNG data ({e})")))?;
    let in_ch = frame.color_type.samples();
    let channels = if in_ch >= 3 { 3 } else { 1 };
    let mut samples = Vec::with_capacity(w * h * channels);
    for y in 0..h {
        let row = &buf[y * frame.line_size..y * frame.line_size + w * in_ch];
        for px in row.chunks(in_ch) {
            samples.extend_from_slice(&px[..channels]);
        }
    }
    Ok(Png {
        width: w,
        height: h,
        channels,
        samples,
    })
}

/// Append the region `x0..x0+w` of `png` to `set` (as `set.c` channels, in [-1, 1]).
fn push_region(set: &mut ImageSet, png: &Png, x0: usize) {
    let (c, h, w) = (set.c, set.h, set.w);
    let mut v = vec![0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let src =
                    png.samples[(y * png.width + x0 + x) * png.channels + ch.min(png.channels - 1)];
                v[(ch * h + y) * w + x] = super::idx::pixel_to_f32(src);
            }
        }
    }
    set.push(&v);
}

/// Read every PNG of `files`, which must share one size; `halves` splits each into its
/// left and right half (paired data). Returns one set, or two for `halves`.
fn read_domain(dir: &Path, files: &[PathBuf], halves: bool) -> Result<Vec<ImageSet>> {
    if files.is_empty() {
        return Err(bad(
            dir,
            "no PNG images here; put .png files in it (see duel train pix2pix --help)",
        ));
    }
    let pngs: Vec<Png> = files.iter().map(|f| read_png(f)).collect::<Result<_>>()?;
    let (w0, h0) = (pngs[0].width, pngs[0].height);
    for (f, p) in files.iter().zip(&pngs) {
        if (p.width, p.height) != (w0, h0) {
            return Err(bad(
                f,
                format!(
                    "is {}×{} but {} is {w0}×{h0}; every image of a folder must have the same size",
                    p.width,
                    p.height,
                    files[0].display()
                ),
            ));
        }
    }
    if halves && w0 % 2 != 0 {
        return Err(bad(
            &files[0],
            format!(
                "is {w0} pixels wide; a paired image holds A and B side by side, so its width must \
                 be even (or use A/ and B/ subfolders for unpaired data)"
            ),
        ));
    }
    let c = pngs.iter().map(|p| p.channels).max().unwrap_or(1);
    let w = if halves { w0 / 2 } else { w0 };
    if pngs.len().saturating_mul(c * h0 * w0) > MAX_VALUES {
        return Err(bad(
            dir,
            format!(
                "{} images of {w0}×{h0}×{c} are more than duel holds in memory ({MAX_VALUES} values); \
                 use fewer or smaller images",
                pngs.len()
            ),
        ));
    }
    let mut sets = vec![ImageSet::empty(c, h0, w); if halves { 2 } else { 1 }];
    for p in &pngs {
        for (k, set) in sets.iter_mut().enumerate() {
            push_region(set, p, k * w);
        }
    }
    Ok(sets)
}

/// Train and held-out parts of one domain (the shared split rule).
fn split(set: &ImageSet) -> (ImageSet, ImageSet) {
    let s = Split::of_labels(&vec![0; set.len()]);
    (set.subset(&s.train), set.subset(&s.heldout))
}

/// Open `dir` as paired or unpaired data (see the module docs).
pub fn open(dir: &Path) -> Result<TranslationData> {
    let (a_dir, b_dir) = (dir.join("A"), dir.join("B"));
    let name = dir.display().to_string();
    if a_dir.is_dir() || b_dir.is_dir() {
        for d in [&a_dir, &b_dir] {
            if !d.is_dir() {
                return Err(bad(
                    d,
                    "is missing: unpaired data needs both A/ and B/ subfolders of PNG images",
                ));
            }
        }
        let a = read_domain(&a_dir, &png_files(&a_dir)?, false)?.remove(0);
        let b = read_domain(&b_dir, &png_files(&b_dir)?, false)?.remove(0);
        if (a.h, a.w) != (b.h, b.w) {
            return Err(bad(
                dir,
                format!(
                    "A/ holds {}×{} images but B/ holds {}×{}; both domains must have the same size",
                    a.w, a.h, b.w, b.h
                ),
            ));
        }
        let ((train_a, test_a), (train_b, test_b)) = (split(&a), split(&b));
        return Ok(TranslationData {
            name,
            paired: false,
            train_a,
            train_b,
            test_a,
            test_b,
            test_aligned: false,
        });
    }
    let mut sets = read_domain(dir, &png_files(dir)?, true)?;
    let b = sets.remove(1);
    let a = sets.remove(0);
    let ((train_a, test_a), (train_b, test_b)) = (split(&a), split(&b));
    Ok(TranslationData {
        name,
        paired: true,
        train_a,
        train_b,
        test_a,
        test_b,
        test_aligned: true,
    })
}
