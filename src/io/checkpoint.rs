//! safetensors checkpoints, written and read by hand, with atomic writes.
//!
//! # Format
//! `u64` little-endian header length `N`, then `N` bytes of JSON
//! `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, …,
//! "__metadata__": {"key": "value"}}` (padded with spaces to a multiple of 8), then the raw
//! little-endian data; offsets are relative to the start of the data. The writer lays the
//! tensors out in the order given. The reader accepts any valid file and checks, before
//! touching the data: the header length fits the file, the header is UTF-8 JSON of the
//! right structure, every dtype is known (`F32`, `F64`, `F16`, `BF16`, `I64`), every
//! tensor's byte length equals `numel × dtype size`, offsets are in range, and the
//! tensors tile the data exactly (no overlap, no hole, nothing after the last). Every
//! failure is one [`Error::Io`] naming the file, with kind `InvalidData` and a message
//! saying what is wrong — never a panic.
//!
//! `I64` exists for PyTorch's `num_batches_tracked`: [`save_module`] writes every buffer
//! whose name ends in `num_batches_tracked` as `I64` (PyTorch's dtype), so
//! `safetensors.torch.load_file` + `load_state_dict(strict=True)` accepts a duel model
//! file. Reading an `I64` tensor gives an f64 tensor (an error beyond ±2^53).
//!
//! # Checksum
//! The writer stores the CRC-32 of the data section in the metadata
//! (`duel.data_crc32`, 8 hex digits); the reader verifies it when present (files from
//! other writers have none) and hides it from the metadata it returns, so a flipped
//! data byte is an error naming the file, not silently different weights.
//!
//! # Atomic writes
//! The file is written to a temporary file in the same directory
//! (`.<name>.tmp.<pid>.<n>`), fsynced, renamed over the final name, and the directory is
//! fsynced. A crash leaves either the old complete file or the new one under the final
//! name; on an error the temporary file is removed.
//!
//! # Training state
//! [`save_training_state`] / [`load_training_state`]: any named tensors (optimizer
//! moments, …) plus a JSON document (step, RNG offsets, config) stored in the metadata
//! under `duel.training_state`, with `format = duel-training-state-v1`. Bitwise round
//! trip on cpu.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use half::{bf16, f16};
use serde_json::{Map, Value};

use crate::device::cpu::CpuBuffer;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{load_state_dict, state_dict, Module};
use crate::tensor::{DType, Tensor};

pub use super::atomic::write_atomic;

/// Named tensors, in file (data) order.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The largest header accepted (as the reference implementation: 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Element types of a safetensors file that duel reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafeDType {
    F32,
    F64,
    F16,
    BF16,
    I64,
}

impl SafeDType {
    pub fn name(self) -> &'static str {
        match self {
            SafeDType::F32 => "F32",
            SafeDType::F64 => "F64",
            SafeDType::F16 => "F16",
            SafeDType::BF16 => "BF16",
            SafeDType::I64 => "I64",
        }
    }
    pub fn parse(s: &str) -> Option<SafeDType> {
        Some(match s {
            "F32" => SafeDType::F32,
            "F64" => SafeDType::F64,
            "F16" => SafeDType::F16,
            "BF16" => SafeDType::BF16,
            "I64" => SafeDType::I64,
            _ => return None,
        })
    }
    pub fn size(self) -> usize {
        match self {
            SafeDType::F32 => 4,
            SafeDType::F64 | SafeDType::I64 => 8,
            SafeDType::F16 | SafeDType::BF16 => 2,
        }
    }
    fn of(d: DType) -> SafeDType {
        match d {
            DType::F32 => SafeDType::F32,
            DType::F64 => SafeDType::F64,
            DType::F16 => SafeDType::F16,
            DType::BF16 => SafeDType::BF16,
        }
    }
}

/// One tensor as stored: dtype, shape and little-endian bytes.
struct Raw {
    name: String,
    dtype: SafeDType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn corrupt(path: &Path, msg: impl Into<String>) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a valid safetensors file: {}", msg.into()),
        ),
    )
}

fn to_raw(path: &Path, name: &str, t: &Tensor, as_i64: bool) -> Result<Raw> {
    let t = t.detach().to_device(&Device::Cpu)?.contiguous()?;
    let buf = t.cpu_buffer("save_safetensors")?;
    let shape = t.dims().to_vec();
    let (dtype, data) = if as_i64 {
        let vals = t.to_f64_vec()?;
        let mut out = Vec::with_capacity(vals.len() * 8);
        for v in vals {
            if v.fract() != 0.0 || v.abs() > 9.007_199_254_740_992e15 {
                return Err(Error::invalid(format!(
                    "{}: cannot write {name} as I64: value {v} is not an integer",
                    path.display()
                )));
            }
            out.extend_from_slice(&(v as i64).to_le_bytes());
        }
        (SafeDType::I64, out)
    } else {
        let data = match &*buf {
            CpuBuffer::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            CpuBuffer::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            CpuBuffer::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            CpuBuffer::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        (SafeDType::of(t.dtype()), data)
    };
    Ok(Raw {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

fn from_raw(path: &Path, r: &Raw) -> Result<Tensor> {
    let shape = r.shape.clone();
    let chunks = |n: usize| r.data.chunks_exact(n);
    let buf = match r.dtype {
        SafeDType::F32 => CpuBuffer::F32(
            chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        SafeDType::F64 => CpuBuffer::F64(
            chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        SafeDType::F16 => CpuBuffer::F16(
            chunks(2)
                .map(|c| f16::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        SafeDType::BF16 => CpuBuffer::BF16(
            chunks(2)
                .map(|c| bf16::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        SafeDType::I64 => {
            let mut v = Vec::with_capacity(r.data.len() / 8);
            for c in chunks(8) {
                let x = i64::from_le_bytes(c.try_into().unwrap());
                if x.unsigned_abs() > 1u64 << 53 {
                    return Err(corrupt(
                        path,
                        format!(
                            "tensor {}: I64 value {x} does not fit an f64 exactly",
                            r.name
                        ),
                    ));
                }
                v.push(x as f64);
            }
            CpuBuffer::F64(v)
        }
    };
    Tensor::from_cpu_buffer(buf, shape)
        .map_err(|e| corrupt(path, format!("tensor {}: {e}", r.name)))
}

/// The metadata key of the data section's CRC-32.
const CRC_KEY: &str = "duel.data_crc32";

fn data_crc(raws: &[Raw]) -> String {
    let mut h = crc32fast::Hasher::new();
    for r in raws {
        h.update(&r.data);
    }
    format!("{:08x}", h.finalize())
}

fn encode(raws: &[Raw], metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let mut header = Map::new();
    let mut mm: Map<String, Value> = metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    mm.insert(CRC_KEY.into(), Value::String(data_crc(raws)));
    header.insert("__metadata__".into(), Value::Object(mm));
    let mut offset = 0usize;
    for r in raws {
        if r.name == "__metadata__" {
            return Err(Error::invalid(
                "save_safetensors: a tensor cannot be named __metadata__",
            ));
        }
        if header.contains_key(&r.name) {
            return Err(Error::invalid(format!(
                "save_safetensors: the tensor name {} appears twice",
                r.name
            )));
        }
        let end = offset + r.data.len();
        header.insert(
            r.name.clone(),
            serde_json::json!({
                "dtype": r.dtype.name(),
                "shape": r.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut json = serde_json::to_string(&Value::Object(header))
        .map_err(|e| Error::invalid(format!("save_safetensors: header: {e}")))?
        .into_bytes();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for r in raws {
        out.extend_from_slice(&r.data);
    }
    Ok(out)
}

fn save_raw(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<&BTreeMap<String, String>>,
    as_i64: impl Fn(&str) -> bool,
) -> Result<()> {
    let raws = tensors
        .iter()
        .map(|(n, t)| to_raw(path, n, t, as_i64(n)))
        .collect::<Result<Vec<_>>>()?;
    let bytes = encode(&raws, metadata)?;
    write_atomic(path, &bytes)
}

/// Write `tensors` (any device; copied to the host) to `path` as safetensors, atomically,
/// with optional string `metadata`.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    save_raw(path.as_ref(), tensors, metadata, |_| false)
}

/// Parse the bytes of a safetensors file: the tensors (data order) and the metadata.
fn decode(path: &Path, bytes: &[u8]) -> Result<(Vec<Raw>, BTreeMap<String, String>)> {
    if bytes.len() < 8 {
        return Err(corrupt(
            path,
            format!(
                "the file is {} bytes, shorter than the 8-byte header length",
                bytes.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let avail = (bytes.len() - 8) as u64;
    if n > MAX_HEADER {
        return Err(corrupt(
            path,
            format!("header length {n} exceeds the limit of {MAX_HEADER} bytes"),
        ));
    }
    if n > avail {
        return Err(corrupt(
            path,
            format!(
                "header length {n} exceeds the {avail} bytes after the length (truncated file?)"
            ),
        ));
    }
    let n = n as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| corrupt(path, format!("the header is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(header)
        .map_err(|e| corrupt(path, format!("the header is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(corrupt(path, "the header is not a JSON object"));
    };
    let data = &bytes[8 + n..];
    let mut metadata = BTreeMap::new();
    let mut entries: Vec<(usize, usize, Raw)> = Vec::new();
    for (name, v) in &map {
        if name == "__metadata__" {
            let Value::Object(m) = v else {
                return Err(corrupt(path, "__metadata__ is not an object"));
            };
            for (k, val) in m {
                let Value::String(s) = val else {
                    return Err(corrupt(
                        path,
                        format!("__metadata__ value of {k} is not a string"),
                    ));
                };
                metadata.insert(k.clone(), s.clone());
            }
            continue;
        }
        let Value::Object(info) = v else {
            return Err(corrupt(
                path,
                format!("tensor {name}: entry is not an object"),
            ));
        };
        let dtype_s = info
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt(path, format!("tensor {name}: missing or non-string dtype")))?;
        let dtype = SafeDType::parse(dtype_s).ok_or_else(|| {
            corrupt(
                path,
                format!("tensor {name}: unknown dtype {dtype_s:?} (duel reads F32, F64, F16, BF16, I64)"),
            )
        })?;
        let shape_v = info
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| corrupt(path, format!("tensor {name}: missing or non-array shape")))?;
        let mut shape = Vec::with_capacity(shape_v.len());
        for d in shape_v {
            let d = d.as_u64().ok_or_else(|| {
                corrupt(
                    path,
                    format!("tensor {name}: shape entry {d} is not a non-negative integer"),
                )
            })?;
            shape.push(usize::try_from(d).map_err(|_| {
                corrupt(path, format!("tensor {name}: shape entry {d} is too large"))
            })?);
        }
        let offs = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!("tensor {name}: data_offsets is not a [begin, end] pair"),
                )
            })?;
        let (Some(b), Some(e)) = (offs[0].as_u64(), offs[1].as_u64()) else {
            return Err(corrupt(
                path,
                format!("tensor {name}: data_offsets are not non-negative integers"),
            ));
        };
        if b > e || e > data.len() as u64 {
            return Err(corrupt(
                path,
                format!(
                    "tensor {name}: data_offsets [{b}, {e}] out of range for {} data bytes (truncated file?)",
                    data.len()
                ),
            ));
        }
        let (b, e) = (b as usize, e as usize);
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size()));
        if numel != Some(e - b) {
            return Err(corrupt(
                path,
                format!(
                    "tensor {name}: shape {shape:?} of {} needs {} bytes but data_offsets [{b}, {e}] hold {}",
                    dtype.name(),
                    numel.map(|n| n.to_string()).unwrap_or_else(|| "too many".into()),
                    e - b
                ),
            ));
        }
        entries.push((
            b,
            e,
            Raw {
                name: name.clone(),
                dtype,
                shape,
                data: data[b..e].to_vec(),
            },
        ));
    }
    entries.sort_by_key(|(b, e, _)| (*b, *e));
    let mut pos = 0usize;
    for (b, e, r) in &entries {
        if *b < pos {
            return Err(corrupt(
                path,
                format!(
                    "tensor {}: data_offsets [{b}, {e}] overlap the previous tensor",
                    r.name
                ),
            ));
        }
        if *b > pos {
            return Err(corrupt(
                path,
                format!(
                    "tensor {}: a hole of {} bytes before its data at {b}",
                    r.name,
                    b - pos
                ),
            ));
        }
        pos = *e;
    }
    if pos != data.len() {
        return Err(corrupt(
            path,
            format!(
                "the tensors cover {pos} data bytes but the file holds {}",
                data.len()
            ),
        ));
    }
    let raws: Vec<Raw> = entries.into_iter().map(|(_, _, r)| r).collect();
    if let Some(stored) = metadata.remove(CRC_KEY) {
        let actual = data_crc(&raws);
        if stored != actual {
            return Err(corrupt(
                path,
                format!(
                    "the tensor data does not match its checksum ({CRC_KEY} {stored}, data \
                     {actual}): the file is damaged; use an earlier copy or retrain"
                ),
            ));
        }
    }
    Ok((raws, metadata))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Read every tensor of a safetensors file (cpu tensors, in data order) and its metadata.
pub fn load_safetensors_with_metadata(
    path: impl AsRef<Path>,
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let path = path.as_ref();
    parse_safetensors(&read_file(path)?, path)
}

/// Parse the bytes of a safetensors file (as [`load_safetensors_with_metadata`] reads it);
/// `path` only names the file in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let (raws, meta) = decode(path, bytes)?;
    let tensors = raws
        .iter()
        .map(|r| Ok((r.name.clone(), from_raw(path, r)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((tensors, meta))
}

/// Read every tensor of a safetensors file (cpu tensors, in data order).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    Ok(load_safetensors_with_metadata(path)?.0)
}

/// `(name, dtype, shape)` of every tensor of a file, in data order (header only checked
/// as fully as by [`load_safetensors`]).
pub fn read_header(path: impl AsRef<Path>) -> Result<Vec<(String, SafeDType, Vec<usize>)>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (raws, _) = decode(path, &bytes)?;
    Ok(raws
        .into_iter()
        .map(|r| (r.name, r.dtype, r.shape))
        .collect())
}

/// Save a module's `state_dict` (PyTorch names; `num_batches_tracked` as I64) with the
/// metadata `{"format": "pt"}` plus `metadata`, so `safetensors.torch.load_file` +
/// `load_state_dict(strict=True)` loads it into the equivalent PyTorch module.
pub fn save_module(
    path: impl AsRef<Path>,
    module: &dyn Module,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let mut meta = metadata.cloned().unwrap_or_default();
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    save_raw(path.as_ref(), &state_dict(module), Some(&meta), |n| {
        n.ends_with("num_batches_tracked")
    })
}

/// Load a file written by [`save_module`] (or by PyTorch) into `module`, strictly; errors
/// name the file.
pub fn load_module(path: impl AsRef<Path>, module: &dyn Module) -> Result<()> {
    let path = path.as_ref();
    let map = load_safetensors(path)?.into_iter().collect();
    load_state_dict(module, &map).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Tensors plus a JSON document: everything a trainer needs to resume exactly.
#[derive(Debug)]
pub struct TrainingState {
    pub tensors: Vec<(String, Tensor)>,
    /// JSON (step, RNG offsets, config, …), as given to [`save_training_state`].
    pub metadata_json: String,
}

const STATE_KEY: &str = "duel.training_state";
const STATE_FORMAT: &str = "duel-training-state-v1";

/// Write a training-state file: `tensors` (e.g. optimizer moments, named
/// `"g.adam.m.0.weight"`) and `metadata_json` (must be valid JSON), atomically.
pub fn save_training_state(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata_json: &str,
) -> Result<()> {
    let path = path.as_ref();
    serde_json::from_str::<Value>(metadata_json).map_err(|e| {
        Error::invalid(format!(
            "{}: the training-state metadata is not valid JSON: {e}",
            path.display()
        ))
    })?;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), STATE_FORMAT.to_string());
    meta.insert(STATE_KEY.to_string(), metadata_json.to_string());
    save_safetensors(path, tensors, Some(&meta))
}

/// Read a file written by [`save_training_state`].
pub fn load_training_state(path: impl AsRef<Path>) -> Result<TrainingState> {
    let path = path.as_ref();
    let (tensors, meta) = load_safetensors_with_metadata(path)?;
    if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(corrupt(
            path,
            format!("not a duel training-state file (metadata format is not {STATE_FORMAT})"),
        ));
    }
    let metadata_json = meta
        .get(STATE_KEY)
        .cloned()
        .ok_or_else(|| corrupt(path, format!("the metadata has no {STATE_KEY}")))?;
    Ok(TrainingState {
        tensors,
        metadata_json,
    })
}
