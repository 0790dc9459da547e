//! Every parser of untrusted files, fed malformed inputs: IDX (plain and gzipped),
//! safetensors (tensor table and metadata), the run configuration and network description
//! (JSON), and a checkpoint's training-state metadata. Each input must give `Ok` or one
//! error with a message — never a panic, never an allocation beyond what the input
//! holds. The inputs are mutations of valid files (bit flips, truncation, splices, fields
//! replaced by hostile values) drawn from fixed seeds, so a failure reproduces; an input
//! that once panicked is kept in `regressions`.
//!
//! Counts: 10,000 cases per parser (IDX, safetensors, config JSON, network JSON, training
//! state JSON), plus 1,000 gzipped IDX files and 500 full checkpoint loads (a file written
//! and a trainer built per case: the disk and the networks cost more than the parsing).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::TempDir;
use duel::data::idx::{encode_idx, parse_idx};
use duel::gan::arch::NetSpec;
use duel::gan::config::TrainConfig;
use duel::gan::trainer::SavedState;
use duel::gan::Trainer;
use duel::io::checkpoint::{load_safetensors_with_metadata, parse_safetensors, save_safetensors};
use serde_json::{json, Value};

const CASES: usize = 10_000;

/// splitmix64: a fixed, dependency-free stream of random words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A number a hostile file would hold: small, boundary, or huge.
    fn hostile(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(4) as u64,
            1 => self.below(100) as u64,
            2 => 1 << self.below(64),
            3 => u64::MAX - self.below(3) as u64,
            4 => u32::MAX as u64 + self.below(3) as u64 - 1,
            _ => self.next(),
        }
    }
}

/// Bit flips, byte overwrites, truncation, extension, splices of `base`.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let extra = rng.below(64);
                v.extend((0..extra).map(|_| rng.next() as u8));
            }
            4 if !v.is_empty() => {
                // Overwrite 4 or 8 bytes with a hostile number (a length, a dim, an offset).
                let i = rng.below(v.len());
                let bytes = rng.hostile().to_le_bytes();
                let w = if rng.below(2) == 0 { 4 } else { 8 };
                for (k, b) in bytes.iter().take(w).enumerate() {
                    if let Some(x) = v.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            _ if v.len() > 1 => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

/// Run `f` on case `i`; a panic fails the test naming the parser, case and input.
fn no_panic<T>(
    what: &str,
    i: usize,
    input: &dyn std::fmt::Debug,
    f: impl FnOnce() -> duel::Result<T>,
) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(
            !e.to_string().trim().is_empty(),
            "{what} case {i}: empty error"
        ),
        Err(_) => panic!("{what} case {i} panicked on input {input:?}"),
    }
}

fn idx_seeds() -> Vec<Vec<u8>> {
    vec![
        encode_idx(&[3, 4, 4], &[9u8; 48]).unwrap(),
        encode_idx(&[5], &[0, 1, 2, 3, 4]).unwrap(),
        encode_idx(&[1, 1, 1, 1], &[7]).unwrap(),
        std::fs::read(fixture("idx/tiny-labels-idx1-ubyte")).unwrap(),
    ]
}

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

#[test]
fn fuzz_idx() {
    let seeds = idx_seeds();
    let mut rng = Rng(0x1d5);
    let p = Path::new("fuzz.idx");
    for i in 0..CASES {
        let input = if i % 10 == 0 {
            // A header declaring hostile dims, with a little data.
            let ndim = rng.below(5);
            let mut v = vec![0, 0, 8, ndim as u8];
            for _ in 0..ndim {
                v.extend_from_slice(&(rng.hostile() as u32).to_be_bytes());
            }
            v.extend((0..rng.below(32)).map(|_| rng.next() as u8));
            v
        } else {
            mutate(&mut rng, &seeds[i % seeds.len()])
        };
        no_panic("IDX", i, &input, || parse_idx(&input, p));
    }
}

#[test]
fn fuzz_gzipped_idx_files() {
    use std::io::Write;
    let tmp = TempDir::new("fuzz-gz");
    let seeds = idx_seeds();
    let mut rng = Rng(0x62);
    let path = tmp.path("f-images-idx3-ubyte.gz");
    for i in 0..1000 {
        let inner = mutate(&mut rng, &seeds[i % seeds.len()]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&inner).unwrap();
        // Half of the streams are damaged too.
        let outer = gz.finish().unwrap();
        let outer = if i % 2 == 0 {
            mutate(&mut rng, &outer)
        } else {
            outer
        };
        std::fs::write(&path, &outer).unwrap();
        no_panic("gzip IDX", i, &inner, || duel::data::read_idx(&path));
    }
}

fn safetensors_seeds() -> Vec<Vec<u8>> {
    let tmp = TempDir::new("fuzz-st-seed");
    let p = tmp.path("s.safetensors");
    let dev = duel::Device::Cpu;
    let t = |v: Vec<f32>, s: Vec<usize>| duel::Tensor::from_vec(v, s, &dev).unwrap();
    save_safetensors(
        &p,
        &[
            ("a".into(), t(vec![1.0, 2.0, 3.0, 4.0], vec![2, 2])),
            ("b.c".into(), t(vec![5.0], vec![1])),
        ],
        None,
    )
    .unwrap();
    vec![
        std::fs::read(&p).unwrap(),
        std::fs::read(fixture("ring8/generator.safetensors")).unwrap(),
        std::fs::read(fixture("dcgan28/checkpoint.safetensors")).unwrap(),
    ]
}

/// `bytes` with its JSON header rewritten by `edit` (length prefix updated).
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut h: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut h);
    let h = h.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn hostile_json(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => json!(rng.hostile()),
        2 => json!(-(rng.below(1000) as i64)),
        3 => json!(f64::from_bits(rng.next())
            .is_finite()
            .then(|| f64::from_bits(rng.next()))),
        4 => json!(["F32", "I64", "U8", "", "F64"][rng.below(5)]),
        5 => json!([rng.hostile(), rng.hostile()]),
        6 => json!((0..rng.below(5)).map(|_| rng.hostile()).collect::<Vec<_>>()),
        7 => json!({ "k": rng.hostile() }),
        _ => json!(rng.next().is_multiple_of(2)),
    }
}

#[test]
fn fuzz_safetensors() {
    let seeds = safetensors_seeds();
    let mut rng = Rng(0x57);
    let p = Path::new("fuzz.safetensors");
    for i in 0..CASES {
        let seed = &seeds[i % seeds.len()];
        let input = if i % 2 == 0 {
            mutate(&mut rng, seed)
        } else {
            // A structurally valid header with one field hostile.
            let (field, value) = (rng.below(5), hostile_json(&mut rng));
            let pick = rng.next();
            with_header(seed, |h| {
                let obj = h.as_object_mut().unwrap();
                let names: Vec<String> = obj.keys().cloned().collect();
                let name = &names[pick as usize % names.len()];
                let entry = obj.get_mut(name).unwrap();
                match (name.as_str(), field) {
                    ("__metadata__", _) => *entry = json!({ "duel.net": value.to_string() }),
                    (_, 0) => entry["dtype"] = value,
                    (_, 1) => entry["shape"] = value,
                    (_, 2) => entry["data_offsets"] = value,
                    (_, 3) => *entry = value,
                    _ => {
                        obj.insert(format!("x{pick}"), value);
                    }
                }
            })
        };
        no_panic("safetensors", i, &input.len(), || {
            parse_safetensors(&input, p)
        });
    }
}

fn legacy_configs() -> Vec<Value> {
    ["ring8", "dcgan28", "idx"]
        .iter()
        .map(|r| {
            let t = std::fs::read_to_string(fixture(&format!("{r}/config.json"))).unwrap();
            serde_json::from_str(&t).unwrap()
        })
        .collect()
}

/// Replace, remove or add fields of the JSON object `v`.
fn mutate_json(rng: &mut Rng, v: &Value) -> Value {
    let mut v = v.clone();
    let obj = v.as_object_mut().unwrap();
    for _ in 0..1 + rng.below(3) {
        let keys: Vec<String> = obj.keys().cloned().collect();
        // An object emptied by earlier removals only grows.
        let k = keys.get(rng.below(keys.len())).cloned().unwrap_or_default();
        match rng.below(4) {
            0 if !k.is_empty() => {
                obj.remove(&k);
            }
            1 => {
                obj.insert(format!("extra{}", rng.below(3)), hostile_json(rng));
            }
            _ => {
                let value = match (k.as_str(), rng.below(3)) {
                    ("variant", 0) => json!(["gan", "nsgan", "lsgan", "wgan", "x"][rng.below(5)]),
                    ("data", 0) => {
                        json!(["digits", "ring8", "idx", "grid25", "mix1d", "?"][rng.below(6)])
                    }
                    ("ls_coding", 0) => {
                        json!(["01", "pm1", "1,1,1", "nan,0,1", "1,2"][rng.below(5)])
                    }
                    _ => hostile_json(rng),
                };
                obj.insert(k, value);
            }
        }
    }
    v
}

#[test]
fn fuzz_config_and_network_json() {
    let configs = legacy_configs();
    let nets: Vec<Value> = ["ring8", "dcgan28"]
        .iter()
        .map(|r| {
            let (_, m) =
                load_safetensors_with_metadata(fixture(&format!("{r}/generator.safetensors")))
                    .unwrap();
            serde_json::from_str(&m["duel.net"]).unwrap()
        })
        .collect();
    let mut rng = Rng(0xc0f);
    for i in 0..CASES {
        let c = mutate_json(&mut rng, &configs[i % configs.len()]);
        no_panic("config JSON", i, &c, || TrainConfig::from_json(&c, "fuzz"));
        let n = mutate_json(&mut rng, &nets[i % nets.len()]);
        no_panic("network JSON", i, &n, || {
            let spec = NetSpec::from_json(&n, "fuzz")?;
            // What a valid description leads to must build (small ones only: the fuzz
            // keeps to its time budget).
            if duel::gan::budget::parameter_count(&spec) < 1e5 {
                duel::gan::arch::build(&spec, 0, &duel::Device::Cpu)?;
            }
            Ok(())
        });
    }
}

#[test]
fn fuzz_training_state_json() {
    let (_, meta) =
        load_safetensors_with_metadata(fixture("ring8/checkpoint.safetensors")).unwrap();
    let state: Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    let mut rng = Rng(0x57a7e);
    for i in 0..CASES {
        let s = mutate_state(&mut rng, &state);
        let text = if i % 4 == 0 {
            String::from_utf8_lossy(&mutate(&mut rng, s.to_string().as_bytes())).into_owned()
        } else {
            s.to_string()
        };
        no_panic("training state JSON", i, &text, || {
            SavedState::parse(&text, "fuzz")
        });
    }
}

/// The training state with its top level, configuration or one part mutated.
fn mutate_state(rng: &mut Rng, state: &Value) -> Value {
    let mut s = state.clone();
    match rng.below(3) {
        0 => s = mutate_json(rng, &s),
        1 => s["config"] = mutate_json(rng, &s["config"]),
        _ => {
            let key = ["data", "opt_g", "opt_d", "net"][rng.below(4)];
            s[key] = mutate_json(rng, &s[key]);
        }
    }
    s
}

#[test]
fn fuzz_training_state_metadata() {
    let tmp = TempDir::new("fuzz-state");
    let (tensors, meta) =
        load_safetensors_with_metadata(fixture("ring8/checkpoint.safetensors")).unwrap();
    let state: Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    let mut rng = Rng(0x5a);
    let path = tmp.path("c.safetensors");
    for i in 0..500 {
        let s = mutate_state(&mut rng, &state);
        let mut m = meta.clone();
        m.insert("duel.training_state".into(), s.to_string());
        save_safetensors(&path, &tensors, Some(&m)).unwrap();
        no_panic("training state", i, &s, || {
            Trainer::load(&path, &duel::Device::Cpu, None)
        });
    }
}

/// `err` is an error whose message contains `needle`.
fn refused<T>(what: &str, r: duel::Result<T>, needle: &str) {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => assert!(e.to_string().contains(needle), "{what}: {e}"),
    }
}

/// Inputs that panicked or aborted before issue 16 (classes 0 divided by zero, nz 2^62
/// sliced out of range, huge shapes aborted on allocation, IDX dims overflowed or were
/// allocated before the data was seen), kept as regression cases: each is one clear error.
#[test]
fn regressions() {
    let net = |edit: fn(&mut Value)| {
        let mut v = json!({"arch":"mlp","classes":null,"nz":4,"sample_shape":[2],"width":8});
        edit(&mut v);
        NetSpec::from_json(&v, "crafted")
    };
    refused("classes 0", net(|v| v["classes"] = json!(0)), "classes");
    refused("nz 2^62", net(|v| v["nz"] = json!(1u64 << 62)), "memory");
    refused(
        "width 2^40",
        net(|v| v["width"] = json!(1u64 << 40)),
        "memory",
    );
    refused(
        "shape 2^61",
        net(|v| v["sample_shape"] = json!([1u64 << 61])),
        "memory",
    );
    refused(
        "shape [2, 2]",
        net(|v| v["sample_shape"] = json!([2, 2])),
        "shape",
    );
    let ring8 = &legacy_configs()[0];
    let mut c = ring8.clone();
    c["batch_size"] = json!(1u64 << 50);
    refused(
        "batch 2^50",
        TrainConfig::from_json(&c, "crafted"),
        "memory",
    );
    let p = Path::new("crafted.idx");
    // dims whose product overflows usize, and 4 GiB declared with 3 bytes present.
    let mut v = vec![0, 0, 8, 3];
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    refused("IDX dims overflow", parse_idx(&v, p), "crafted.idx");
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    v.extend_from_slice(&[1, 2, 3]);
    refused("IDX 4 GiB declared", parse_idx(&v, p), "truncated IDX data");
}
