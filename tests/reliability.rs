//! Damage the library notices (issue 16): a flipped byte in a checkpoint, non-finite
//! state before a checkpoint, a stray label in IDX data.

mod common;

use std::collections::HashMap;

use common::TempDir;
use duel::data::idx::encode_idx;
use duel::gan::config::{DataSpec, TrainConfig};
use duel::gan::{run, Arch, Trainer, Variant};
use duel::io::checkpoint::{load_safetensors, save_safetensors};
use duel::nn::Module;
use duel::{Device, Tensor};

#[test]
fn a_flipped_data_byte_in_a_checkpoint_is_an_error() {
    let tmp = TempDir::new("rel-crc");
    let path = tmp.path("t.safetensors");
    let t = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], [4], &Device::Cpu).unwrap();
    save_safetensors(&path, &[("a".into(), t)], None).unwrap();
    assert_eq!(load_safetensors(&path).unwrap().len(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let err = load_safetensors(&path).unwrap_err().to_string();
    assert!(
        err.contains("t.safetensors") && err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn a_non_finite_state_is_not_checkpointed() {
    let tmp = TempDir::new("rel-inf");
    let dir = tmp.path("run");
    let mut c = TrainConfig::defaults(Variant::NsGan, Arch::Mlp, DataSpec::Ring8);
    c.width = 8;
    c.batch_size = 16;
    c.steps = 2;
    let mut trainer = Trainer::new(c, &Device::Cpu).unwrap();
    run::start(&dir).unwrap();
    trainer.train_step().unwrap();
    run::save_checkpoint(&trainer, &dir).unwrap();
    let good = std::fs::read(dir.join(run::CHECKPOINT)).unwrap();
    trainer.train_step().unwrap();
    // An inf in one of G's weights.
    let mut state: HashMap<String, Tensor> = trainer.g.body.state_entries().into_iter().collect();
    let (name, w) = state
        .iter()
        .next()
        .map(|(n, t)| (n.clone(), t.clone()))
        .unwrap();
    let mut v = w.to_vec::<f32>().unwrap();
    v[0] = f32::INFINITY;
    state.insert(
        name,
        Tensor::from_vec(v, w.dims().to_vec(), &Device::Cpu).unwrap(),
    );
    duel::nn::load_state_dict(&trainer.g.body, &state).unwrap();
    let err = run::save_checkpoint(&trainer, &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 2") && err.contains("non-finite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join(run::CHECKPOINT)).unwrap(),
        good,
        "kept"
    );
}

#[test]
fn a_stray_label_is_refused_for_a_conditional_model() {
    let tmp = TempDir::new("rel-label");
    let n = 16;
    let images = encode_idx(&[n, 28, 28], &vec![7u8; n * 28 * 28]).unwrap();
    let mut labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    labels[11] = 255;
    let labels = encode_idx(&[n], &labels).unwrap();
    std::fs::write(tmp.path("x-images-idx3-ubyte"), images).unwrap();
    std::fs::write(tmp.path("x-labels-idx1-ubyte"), labels).unwrap();
    let data = DataSpec::parse(&tmp.arg("x-images-idx3-ubyte"), None).unwrap();
    let mut c = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan28, data);
    c.width = 2;
    c.batch_size = 4;
    c.conditional = true;
    let err = Trainer::new(c.clone(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("label 255 (image 11)") && err.contains("class 3 has no image"),
        "{err}"
    );
    // Unconditional training does not use the labels.
    c.conditional = false;
    assert!(Trainer::new(c, &Device::Cpu).is_ok());
}

/// Peak resident memory of this process so far (Linux), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_small_gzip_idx_file_that_inflates_to_gigabytes_is_rejected_in_bounded_memory() {
    use std::io::Write;
    let tmp = TempDir::new("rel-bomb");
    let path = tmp.path("bomb-images-idx3-ubyte.gz");
    // The header declares 16 bytes of data; the stream inflates to 512 MiB more.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&encode_idx(&[1, 4, 4], &[0u8; 16]).unwrap())
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        gz.write_all(&zeros).unwrap();
    }
    let bytes = gz.finish().unwrap();
    assert!(bytes.len() < 4 << 20, "{} bytes", bytes.len());
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let before = peak_rss();
    let err = duel::data::read_idx(&path).unwrap_err().to_string();
    let grown = peak_rss().saturating_sub(before);
    assert!(err.contains("do not match the data"), "{err}");
    assert!(grown < 64 << 20, "peak memory grew by {} MiB", grown >> 20);
}

#[test]
fn a_tensor_too_large_to_allocate_is_an_error_not_an_abort() {
    use duel::tensor::DType;
    let cpu = Device::Cpu;
    // 2^60 bytes: more than any address space, so no system grants it (with any
    // overcommit setting); and a shape whose element count overflows usize.
    for dims in [vec![1usize << 58], vec![1 << 40, 1 << 40]] {
        let err = Tensor::zeros(dims.clone(), DType::F32, &cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("full") && err.contains("smaller sizes"),
            "{dims:?}: {err}"
        );
        let err = Tensor::rand(dims.clone(), 1, 0, &cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rng"), "{dims:?}: {err}");
    }
}
