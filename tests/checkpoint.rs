//! safetensors checkpoints (src/io/checkpoint.rs): bitwise round trips (all dtypes,
//! metadata, modules, training state), atomic writes (a process killed mid-save never
//! leaves a half-written file under the final name; no temp files leak on success), and
//! corrupt files (truncation at every length, flipped header bytes, bad header length,
//! invalid JSON, offsets out of range / overlapping / leaving holes, unknown dtype, data
//! length not matching the shape): always one clear error naming the file, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use duel::gan::arch::dcgan_generator_28;
use duel::io::checkpoint::{
    load_module, load_safetensors, load_safetensors_with_metadata, load_training_state,
    read_header, save_module, save_safetensors, save_training_state, SafeDType,
};
use duel::nn::{state_dict, BatchNorm1d, Linear, Module, ParamRng, Sequential};
use duel::{DType, Device, Tensor};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("duel_ckpt_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bits(t: &Tensor) -> (DType, Vec<usize>, Vec<u8>) {
    let b = t.cpu_buffer("test").unwrap();
    (t.dtype(), t.dims().to_vec(), b.as_bytes().to_vec())
}

fn sample_tensors() -> Vec<(String, Tensor)> {
    let r = Tensor::randn([3, 5], 1, 0, &Device::Cpu).unwrap();
    vec![
        ("a.f32".to_string(), r.clone()),
        ("b.f64".to_string(), r.to_dtype(DType::F64).unwrap()),
        ("c.f16".to_string(), r.to_dtype(DType::F16).unwrap()),
        ("d.bf16".to_string(), r.to_dtype(DType::BF16).unwrap()),
        (
            "e.scalar".to_string(),
            Tensor::from_vec(vec![f32::NAN], Vec::<usize>::new(), &Device::Cpu).unwrap(),
        ),
        (
            "f.special".to_string(),
            Tensor::from_vec(
                vec![-0.0f32, f32::INFINITY, f32::MIN_POSITIVE / 2.0, 1e38],
                [2, 2],
                &Device::Cpu,
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn checkpoint_round_trip_is_bitwise() {
    let dir = tmpdir("rt");
    let path = dir.join("t.safetensors");
    let ts = sample_tensors();
    let mut meta = BTreeMap::new();
    meta.insert("step".to_string(), "12".to_string());
    save_safetensors(&path, &ts, Some(&meta)).unwrap();
    let (back, m) = load_safetensors_with_metadata(&path).unwrap();
    assert_eq!(m, meta);
    assert_eq!(back.len(), ts.len());
    for ((n, a), (nb, b)) in ts.iter().zip(&back) {
        assert_eq!(n, nb);
        assert_eq!(bits(a), bits(b), "{n}");
    }
    // header: 8-byte aligned data start, data in the order given
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
    let h = read_header(&path).unwrap();
    assert_eq!(h[0], ("a.f32".to_string(), SafeDType::F32, vec![3, 5]));
    assert_eq!(h[3].1, SafeDType::BF16);
    // tensors on another device are copied to the host
    if let Ok(emu) = Device::emu() {
        let t = ts[0].1.to_device(&emu).unwrap();
        save_safetensors(&path, &[("x".to_string(), t)], None).unwrap();
        assert_eq!(bits(&load_safetensors(&path).unwrap()[0].1), bits(&ts[0].1));
    }
    // duplicate names and the reserved name are refused
    let dup = vec![ts[0].clone(), ts[0].clone()];
    assert!(save_safetensors(&path, &dup, None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn mlp(seed: u64) -> Sequential {
    let mut rng = ParamRng::new(seed);
    Sequential::new(vec![
        Box::new(Linear::options(3, 4).build(&mut rng, &Device::Cpu).unwrap()),
        Box::new(BatchNorm1d::new(4, &Device::Cpu).unwrap()),
    ])
}

#[test]
fn checkpoint_module_round_trip_and_shape_mismatch() {
    let dir = tmpdir("mod");
    let path = dir.join("g.safetensors");
    let g = dcgan_generator_28(100, 5, &Device::Cpu).unwrap();
    g.forward(&Tensor::randn([4, 100], 1, 0, &Device::Cpu).unwrap())
        .unwrap();
    g.forward(&Tensor::randn([4, 100], 1, 400, &Device::Cpu).unwrap())
        .unwrap();
    save_module(&path, &g, None).unwrap();
    let h = read_header(&path).unwrap();
    let nbt = h.iter().find(|e| e.0 == "1.num_batches_tracked").unwrap();
    assert_eq!((nbt.1, nbt.2.clone()), (SafeDType::I64, vec![]));
    let g2 = dcgan_generator_28(100, 6, &Device::Cpu).unwrap();
    load_module(&path, &g2).unwrap();
    for ((n, a), (_, b)) in state_dict(&g).iter().zip(state_dict(&g2).iter()) {
        assert_eq!(bits(a), bits(b), "{n}");
    }
    let nbt = state_dict(&g2)
        .into_iter()
        .find(|(n, _)| n == "1.num_batches_tracked")
        .unwrap();
    assert_eq!(nbt.1.item().unwrap(), 2.0);

    // a model of another shape: the error names the file, the tensor and both shapes
    let small = dir.join("small.safetensors");
    let m = mlp(1);
    save_module(&small, &m, None).unwrap();
    let mut rng = ParamRng::new(2);
    let other = Sequential::new(vec![
        Box::new(Linear::options(3, 5).build(&mut rng, &Device::Cpu).unwrap()),
        Box::new(BatchNorm1d::new(4, &Device::Cpu).unwrap()),
    ]);
    let e = load_module(&small, &other).unwrap_err().to_string();
    assert!(e.contains("small.safetensors"), "{e}");
    assert!(
        e.contains("0.weight") && e.contains("[4, 3]") && e.contains("[5, 3]"),
        "{e}"
    );
    let e = load_module(&path, &m).unwrap_err().to_string();
    assert!(
        e.contains("unexpected keys") && e.contains("4.weight"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_training_state_round_trip() {
    let dir = tmpdir("ts");
    let path = dir.join("train_state.safetensors");
    let ts = sample_tensors();
    let meta =
        r#"{"step": 1234, "rng": {"seed": 7, "offset": 123456789012}, "config": {"lr": 0.0002}}"#;
    save_training_state(&path, &ts, meta).unwrap();
    let st = load_training_state(&path).unwrap();
    assert_eq!(st.metadata_json, meta);
    for ((n, a), (nb, b)) in ts.iter().zip(&st.tensors) {
        assert_eq!(n, nb);
        assert_eq!(bits(a), bits(b), "{n}");
    }
    // invalid JSON is refused before anything is written
    let e = save_training_state(dir.join("x.safetensors"), &ts, "{not json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON"), "{e}");
    assert!(!dir.join("x.safetensors").exists());
    // a plain safetensors file is not a training state
    let plain = dir.join("plain.safetensors");
    save_safetensors(&plain, &ts, None).unwrap();
    let e = load_training_state(&plain).unwrap_err().to_string();
    assert!(
        e.contains("plain.safetensors") && e.contains("training-state"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn entries_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn checkpoint_atomic_write_no_temp_leak_and_old_file_survives() {
    let dir = tmpdir("atomic");
    let path = dir.join("model.safetensors");
    let ts = sample_tensors();
    for _ in 0..5 {
        save_safetensors(&path, &ts, None).unwrap();
    }
    assert_eq!(entries_in(&dir), ["model.safetensors"]);
    // a crash after writing (part of) the temp file but before the rename: the final name
    // still holds the old complete file
    let tmp = dir.join(format!(".model.safetensors.tmp.{}.99", std::process::id()));
    std::fs::write(&tmp, &std::fs::read(&path).unwrap()[..100]).unwrap();
    let back = load_safetensors(&path).unwrap();
    assert_eq!(bits(&back[0].1), bits(&ts[0].1));
    // a failing write (directory missing) leaves nothing behind and names the path
    let e = save_safetensors(dir.join("nope/x.safetensors"), &ts, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Child side of the kill test: saves forever (run only by the parent, via env var).
#[test]
#[ignore]
fn checkpoint_kill_child() {
    let Ok(path) = std::env::var("DUEL_KILL_CHILD_PATH") else {
        return;
    };
    let mut i = 0u32;
    loop {
        i += 1;
        let t = Tensor::full([1 << 21], i as f64, DType::F32, &Device::Cpu).unwrap();
        save_safetensors(&path, &[("x".to_string(), t)], None).unwrap();
    }
}

#[test]
fn checkpoint_kill_during_save_never_leaves_half_file() {
    let dir = tmpdir("kill");
    let path = dir.join("live.safetensors");
    let t = Tensor::full([1 << 21], 0.0, DType::F32, &Device::Cpu).unwrap();
    save_safetensors(&path, &[("x".to_string(), t)], None).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..6u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "checkpoint_kill_child",
                "--ignored",
                "--nocapture",
            ])
            .env("DUEL_KILL_CHILD_PATH", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // wait until the child has completed a save (every read must be complete), then
        // let it run into the middle of further saves and kill it
        let prev = load_safetensors(&path).unwrap()[0]
            .1
            .to_vec::<f32>()
            .unwrap()[0];
        let start = std::time::Instant::now();
        loop {
            let v = load_safetensors(&path).expect("a complete file while the child saves")[0]
                .1
                .to_vec::<f32>()
                .unwrap();
            assert!(v.iter().all(|x| *x == v[0]), "mixed contents");
            if v[0] != prev || start.elapsed().as_secs() > 60 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(7 + 13 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let back = load_safetensors(&path).expect("the final name must hold a complete file");
        let v = back[0].1.to_vec::<f32>().unwrap();
        assert_eq!(v.len(), 1 << 21);
        assert!(v.iter().all(|x| *x == v[0]), "mixed contents");
        seen.insert(v[0] as u64);
    }
    // the child really was saving (its files replaced the initial one)
    assert!(
        seen.iter().any(|&s| s > 0),
        "the child never completed a save"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- corruption ------------------------------------------------------------------------

fn assert_clear_err(path: &Path, what: &str) -> String {
    let r = std::panic::catch_unwind(|| load_safetensors(path));
    let r = r.unwrap_or_else(|_| panic!("{what}: load panicked"));
    let e = match r {
        Ok(_) => panic!("{what}: a corrupt file loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&path.display().to_string()),
        "{what}: the error does not name the file: {e}"
    );
    e
}

fn good_file(dir: &Path) -> Vec<u8> {
    let p = dir.join("good.safetensors");
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), "v".to_string());
    save_safetensors(&p, &sample_tensors(), Some(&meta)).unwrap();
    std::fs::read(p).unwrap()
}

#[test]
fn checkpoint_truncated_at_every_length_is_an_error() {
    let dir = tmpdir("trunc");
    let good = good_file(&dir);
    let p = dir.join("bad.safetensors");
    for len in 0..good.len() {
        std::fs::write(&p, &good[..len]).unwrap();
        assert_clear_err(&p, &format!("truncated at {len}"));
    }
    // trailing garbage is an error too
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 4]);
    std::fs::write(&p, &longer).unwrap();
    let e = assert_clear_err(&p, "trailing bytes");
    assert!(e.contains("cover"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_flipped_header_bytes_never_panic() {
    let dir = tmpdir("flip");
    let good = good_file(&dir);
    let p = dir.join("bad.safetensors");
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut errors = 0;
    for i in 0..8 + n {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] ^= mask;
            std::fs::write(&p, &b).unwrap();
            let r = std::panic::catch_unwind(|| load_safetensors(&p));
            match r.unwrap_or_else(|_| panic!("byte {i} ^ {mask:#x}: panicked")) {
                Err(e) => {
                    assert!(e.to_string().contains("bad.safetensors"), "{e}");
                    errors += 1;
                }
                // a flip inside a name or a metadata value can give another valid file;
                // that is not corruption the format can see
                Ok(t) => assert_eq!(t.len(), sample_tensors().len()),
            }
        }
    }
    assert!(errors > (8 + n) * 2, "only {errors} flips were detected");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn file_with_header(json: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn checkpoint_specific_corruptions_have_specific_messages() {
    let dir = tmpdir("spec");
    let p = dir.join("bad.safetensors");
    let data = [0u8; 16];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "short",
            vec![1, 2, 3],
            "shorter than the 8-byte header length",
        ),
        (
            "huge header length",
            {
                let mut b = u64::MAX.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "header length",
        ),
        (
            "header past end",
            {
                let mut b = 100u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "exceeds the 2 bytes",
        ),
        (
            "invalid json",
            file_with_header("{\"a\": ", &data),
            "not valid JSON",
        ),
        (
            "not an object",
            file_with_header("[1, 2]", &data),
            "not a JSON object",
        ),
        (
            "unknown dtype",
            file_with_header(
                r#"{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "unknown dtype \"Q7\"",
        ),
        (
            "wrong dtype for length",
            file_with_header(
                r#"{"a":{"dtype":"F64","shape":[4],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "needs 32 bytes",
        ),
        (
            "shape vs length",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "needs 12 bytes",
        ),
        (
            "out of range",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#,
                &data,
            ),
            "out of range",
        ),
        (
            "reversed offsets",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}"#,
                &data,
            ),
            "out of range",
        ),
        (
            "overlap",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                &data,
            ),
            "overlap",
        ),
        (
            "hole",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                &data,
            ),
            "hole",
        ),
        (
            "negative dim",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "non-negative",
        ),
        (
            "overflowing shape",
            file_with_header(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "too many",
        ),
        (
            "missing offsets",
            file_with_header(r#"{"a":{"dtype":"F32","shape":[4]}}"#, &data),
            "data_offsets",
        ),
        (
            "bad metadata",
            file_with_header(
                r#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                &data,
            ),
            "not a string",
        ),
        (
            "I64 beyond 2^53",
            file_with_header(
                r#"{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#,
                &i64::MAX.to_le_bytes(),
            ),
            "does not fit",
        ),
    ];
    for (what, bytes, needle) in cases {
        std::fs::write(&p, &bytes).unwrap();
        let e = assert_clear_err(&p, what);
        assert!(e.contains(needle), "{what}: {e}");
    }
    // a missing file names the path
    let e = load_safetensors(dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
    // load_module on a corrupt file names it too
    std::fs::write(&p, [0u8; 3]).unwrap();
    let e = load_module(&p, &mlp(1)).unwrap_err().to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
