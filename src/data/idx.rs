//! The IDX file format of MNIST / Fashion-MNIST (<https://yann.lecun.com/exdb/mnist/>),
//! gzipped or not (detected from the gzip magic `1f 8b`, not from the file name).
//!
//! Header: two zero bytes, a dtype code (only `0x08` = u8 is supported — it is what every
//! MNIST-style file uses), the number of dimensions, then each dimension as a big-endian
//! u32; then the data, row-major. Every error names the file.

use std::io::Read;
use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A decoded IDX file of u8 elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The IDX dtype code of unsigned bytes.
pub const IDX_U8: u8 = 0x08;

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into()),
    )
}

/// Read the raw (decompressed) bytes of `path`.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parse IDX bytes (already decompressed). `path` only names the file in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<Idx> {
    if bytes.len() < 4 {
        return Err(bad(
            path,
            format!(
                "not an IDX file: {} bytes, shorter than the 4-byte magic",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            path,
            format!(
                "not an IDX file: bad magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 <dtype> <ndim>)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let dtype = bytes[2];
    if dtype != IDX_U8 {
        return Err(bad(
            path,
            format!("IDX dtype code 0x{dtype:02x} is not supported (only 0x08 = unsigned byte)"),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(bad(path, "IDX header declares 0 dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad(
            path,
            format!(
                "truncated IDX header: {ndim} dimensions need {header} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("IDX dims {dims:?} overflow")))?;
    let got = bytes.len() - header;
    if got < expected {
        return Err(bad(
            path,
            format!(
                "truncated IDX data: dims {dims:?} need {expected} bytes after the header, the file has {got}"
            ),
        ));
    }
    if got > expected {
        return Err(bad(
            path,
            format!(
                "IDX dims {dims:?} do not match the data: {expected} bytes expected after the header, the file has {got}"
            ),
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Read an IDX file (gzipped or not).
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    parse_idx(&read_bytes(path)?, path)
}

/// Encode `dims` + u8 `data` as IDX bytes (uncompressed). Used by tests and tools.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(Error::invalid(format!(
            "IDX needs 1..=255 dimensions, got {}",
            dims.len()
        )));
    }
    if dims.iter().product::<usize>() != data.len() || dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(Error::invalid(format!(
            "IDX dims {dims:?} do not match {} data bytes",
            data.len()
        )));
    }
    let mut out = vec![0, 0, IDX_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Read an image file: 3 dimensions `[N, H, W]` of u8 pixels.
pub fn read_images(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let idx = read_idx(path)?;
    if idx.dims.len() != 3 {
        return Err(bad(
            path,
            format!(
                "expected an IDX image file with 3 dimensions [N, H, W] (magic 0x00000803), found dims {:?}",
                idx.dims
            ),
        ));
    }
    Ok(idx)
}

/// Read a label file: 1 dimension `[N]` of u8 labels.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let idx = read_idx(path)?;
    if idx.dims.len() != 1 {
        return Err(bad(
            path,
            format!(
                "expected an IDX label file with 1 dimension [N] (magic 0x00000801), found dims {:?}",
                idx.dims
            ),
        ));
    }
    Ok(idx.data)
}

/// u8 pixels → f32 in [-1, 1]: `p / 127.5 − 1` (the DCGAN convention for a tanh output).
#[inline]
pub fn pixel_to_f32(p: u8) -> f32 {
    p as f32 / 127.5 - 1.0
}

/// `[N, H, W]` u8 pixels → f32 tensor `[N, 1, H, W]` in [-1, 1] on `device`.
pub fn images_to_tensor(idx: &Idx, device: &Device) -> Result<Tensor> {
    if idx.dims.len() != 3 {
        return Err(Error::shape(
            "images_to_tensor",
            format!("expected dims [N, H, W], got {:?}", idx.dims),
        ));
    }
    let v: Vec<f32> = idx.data.iter().map(|&p| pixel_to_f32(p)).collect();
    Tensor::from_vec(v, [idx.dims[0], 1, idx.dims[1], idx.dims[2]], device)
}
