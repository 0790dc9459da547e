//! PNG output: sample grids of generator images (like torchvision's `make_grid`) and raw
//! 8-bit gray/RGB helpers. Every file is written atomically (temp file + rename).
//!
//! Pixel mapping: a value `v` (tanh output) is clamped to [-1, 1] and mapped to
//! `round((v + 1) / 2 * 255)`, so -1 -> 0, 0 -> 128, 1 -> 255; NaN -> 0.
//! Padding pixels (between and around the images, and empty cells of the last row) are
//! white (255).

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The value of padding pixels in a grid: white.
pub const GRID_PAD_VALUE: u8 = 255;

/// Map a tanh-range value to a byte: clamp to [-1, 1], -1 -> 0, 0 -> 128, 1 -> 255, NaN -> 0.
pub fn to_u8(v: f64) -> u8 {
    if v.is_nan() {
        return 0;
    }
    let c = v.clamp(-1.0, 1.0);
    ((c + 1.0) * 0.5 * 255.0).round() as u8
}

/// Write `bytes` to `path` atomically; an I/O error names `path` (not the temp file).
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "{}: an output path must name a file",
            path.display()
        )));
    }
    super::checkpoint::write_atomic(path, bytes).map_err(|e| match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    })
}

fn encode_png(path: &Path, w: usize, h: usize, color: png::ColorType, data: &[u8]) -> Result<()> {
    let channels = match color {
        png::ColorType::Grayscale => 1,
        _ => 3,
    };
    if w == 0 || h == 0 {
        return Err(Error::invalid(format!(
            "{}: cannot write a {w}x{h} PNG (width and height must be at least 1)",
            path.display()
        )));
    }
    let (w32, h32) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            return Err(Error::invalid(format!(
                "{}: PNG size {w}x{h} is too large",
                path.display()
            )))
        }
    };
    let expected = w * h * channels;
    if data.len() != expected {
        return Err(Error::invalid(format!(
            "{}: {w}x{h} PNG with {channels} channel(s) needs {expected} bytes, got {}",
            path.display(),
            data.len()
        )));
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w32, h32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::invalid(format!("{}: PNG encoding failed: {e}", path.display())))?;
        writer
            .write_image_data(data)
            .map_err(|e| Error::invalid(format!("{}: PNG encoding failed: {e}", path.display())))?;
        writer
            .finish()
            .map_err(|e| Error::invalid(format!("{}: PNG encoding failed: {e}", path.display())))?;
    }
    write_file_atomic(path, &out)
}

/// Write an 8-bit grayscale PNG of `w`x`h` pixels, row-major `data` (`w*h` bytes).
pub fn save_png_gray(path: impl AsRef<Path>, w: usize, h: usize, data: &[u8]) -> Result<()> {
    encode_png(path.as_ref(), w, h, png::ColorType::Grayscale, data)
}

/// Write an 8-bit RGB PNG of `w`x`h` pixels, row-major interleaved `data` (`w*h*3` bytes).
pub fn save_png_rgb(path: impl AsRef<Path>, w: usize, h: usize, data: &[u8]) -> Result<()> {
    encode_png(path.as_ref(), w, h, png::ColorType::Rgb, data)
}

/// The pixel layout of a grid: `(width, height)` of the whole image for `n` images of
/// `h`x`w`, `nrow` images per row (like torchvision: columns = min(nrow, n)).
pub fn grid_size(n: usize, h: usize, w: usize, nrow: usize, padding: usize) -> (usize, usize) {
    let cols = nrow.min(n).max(1);
    let rows = n.div_ceil(cols).max(1);
    (
        cols * (w + padding) + padding,
        rows * (h + padding) + padding,
    )
}

/// Lay out `images` (`[N, C, H, W]`, C = 1 or 3, values in [-1, 1]; any device and dtype)
/// as a grid with `nrow` images per row and `padding` white pixels between and around
/// them, and write it as an 8-bit PNG (gray for C = 1, RGB for C = 3).
pub fn save_grid(
    path: impl AsRef<Path>,
    images: &Tensor,
    nrow: usize,
    padding: usize,
) -> Result<()> {
    let path = path.as_ref();
    let dims = images.dims();
    if dims.len() != 4 {
        return Err(Error::shape(
            "save_grid",
            format!(
                "{}: images must be [N, C, H, W], got shape {:?}",
                path.display(),
                dims
            ),
        ));
    }
    let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    if c != 1 && c != 3 {
        return Err(Error::shape(
            "save_grid",
            format!(
                "{}: images must have 1 or 3 channels, got {c} (shape {:?})",
                path.display(),
                dims
            ),
        ));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::shape(
            "save_grid",
            format!("{}: no pixels to write (shape {:?})", path.display(), dims),
        ));
    }
    if nrow == 0 {
        return Err(Error::invalid(format!(
            "{}: nrow must be at least 1",
            path.display()
        )));
    }
    let values = images.to_f64_vec()?;
    let cols = nrow.min(n);
    let (gw, gh) = grid_size(n, h, w, nrow, padding);
    let mut buf = vec![GRID_PAD_VALUE; gw * gh * c];
    for k in 0..n {
        let x0 = padding + (k % cols) * (w + padding);
        let y0 = padding + (k / cols) * (h + padding);
        for ch in 0..c {
            let plane = &values[(k * c + ch) * h * w..(k * c + ch + 1) * h * w];
            for y in 0..h {
                for x in 0..w {
                    buf[((y0 + y) * gw + x0 + x) * c + ch] = to_u8(plane[y * w + x]);
                }
            }
        }
    }
    if c == 1 {
        save_png_gray(path, gw, gh, &buf)
    } else {
        save_png_rgb(path, gw, gh, &buf)
    }
}
