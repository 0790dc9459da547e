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

/// The most data an IDX file may declare (4 GiB; full MNIST is 47 MB): a header that
/// claims more is refused before anything is allocated for it.
pub const MAX_IDX_DATA: usize = 1 << 32;

/// Parse IDX bytes (already decompressed). `path` only names the file in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<Idx> {
    parse_idx_stream(&mut &bytes[..], path)
}

/// Read an IDX file (gzipped or not). The header is read first; then at most the size it
/// declares (plus one byte, to tell a longer file), so a small gzip file that inflates to
/// gigabytes is rejected after reading what its header promised.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = std::io::BufReader::new(file);
    let magic = std::io::BufRead::fill_buf(&mut r).map_err(|e| Error::io(path, e))?;
    if magic.len() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
        parse_idx_stream(&mut flate2::bufread::MultiGzDecoder::new(r), path)
    } else {
        parse_idx_stream(&mut r, path)
    }
}

/// Read up to `buf.len()` bytes; returns how many (fewer only at the end of the stream).
fn read_full(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(path, e)),
        }
    }
    Ok(n)
}

fn stream_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidInput
        | std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::UnexpectedEof => {
            bad(path, format!("corrupt or truncated gzip stream: {e}"))
        }
        _ => Error::io(path, e),
    }
}

fn parse_idx_stream(r: &mut impl Read, path: &Path) -> Result<Idx> {
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic, path)?;
    if got < 4 {
        return Err(bad(
            path,
            format!("not an IDX file: {got} bytes, shorter than the 4-byte magic"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(
            path,
            format!(
                "not an IDX file: bad magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 <dtype> <ndim>)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    let dtype = magic[2];
    if dtype != IDX_U8 {
        return Err(bad(
            path,
            format!("IDX dtype code 0x{dtype:02x} is not supported (only 0x08 = unsigned byte)"),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(bad(path, "IDX header declares 0 dimensions"));
    }
    let header = 4 + 4 * ndim;
    let mut dims_bytes = vec![0u8; 4 * ndim];
    let got = read_full(r, &mut dims_bytes, path)?;
    if got < dims_bytes.len() {
        return Err(bad(
            path,
            format!(
                "truncated IDX header: {ndim} dimensions need {header} bytes, the file has {}",
                4 + got
            ),
        ));
    }
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_DATA)
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "IDX dims {dims:?} declare more than {MAX_IDX_DATA} bytes of data; the \
                     header is damaged (or the file is not IDX)"
                ),
            )
        })?;
    // Grown as the data arrives: a header cannot make us allocate what the file lacks.
    let mut data = Vec::with_capacity(expected.min(1 << 20));
    r.take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| stream_error(path, e))?;
    let got = data.len();
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
                "IDX dims {dims:?} do not match the data: {expected} bytes expected after the header, the file has more"
            ),
        ));
    }
    Ok(Idx { dims, data })
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
