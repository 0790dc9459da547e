//! PyTorch loadability of a duel DCGAN generator checkpoint, checked without PyTorch:
//! the names, shapes and dtypes of the safetensors file duel writes for
//! `gan::arch::dcgan_generator_28` must equal those of PyTorch's `state_dict()` of the twin
//! module, recorded in tests/data/pytorch/dcgan_generator_state_dict.json by
//! scripts/pytorch_reference/dcgan_checkpoint.py. That script also loaded a duel-written
//! file with `safetensors.torch.load_file` + `load_state_dict(strict=True)` and compared
//! the eval-mode outputs; the JSON records the result.
//!
//! To regenerate the file the script loads:
//! `DUEL_PYTORCH_EXPORT=/tmp/duel_dcgan_g.safetensors cargo test --release --test checkpoint_pytorch`
//! (also writes `/tmp/duel_dcgan_g.safetensors.io.safetensors`: an input `z` and the
//! eval-mode output `y` of the duel generator).

use std::collections::BTreeMap;

use duel::gan::arch::dcgan_generator_28;
use duel::io::checkpoint::{read_header, save_module, save_safetensors};
use duel::nn::Module;
use duel::{Device, Tensor};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pytorch/dcgan_generator_state_dict.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn checkpoint_pytorch_dcgan_generator_names_shapes_dtypes() {
    let mut g = dcgan_generator_28(100, 1, &Device::Cpu).unwrap();
    // one training step so the running statistics and the counter are not the defaults
    let z = Tensor::randn([16, 100], 2, 0, &Device::Cpu).unwrap();
    g.forward(&z).unwrap();
    if let Ok(export) = std::env::var("DUEL_PYTORCH_EXPORT") {
        save_module(&export, &g, None).unwrap();
        g.set_training(false);
        let z = Tensor::randn([4, 100], 3, 0, &Device::Cpu).unwrap();
        let y = g.forward(&z).unwrap();
        let mut meta = BTreeMap::new();
        meta.insert(
            "what".to_string(),
            "duel eval-mode input z and output y".to_string(),
        );
        save_safetensors(
            format!("{export}.io.safetensors"),
            &[("z".to_string(), z), ("y".to_string(), y)],
            Some(&meta),
        )
        .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("duel_ckpt_pt_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("generator.safetensors");
    save_module(&path, &g, None).unwrap();
    let header = read_header(&path).unwrap();
    let mut got: Vec<(String, String, Vec<usize>)> = header
        .into_iter()
        .map(|(n, d, s)| (n, d.name().to_string(), s))
        .collect();
    got.sort();

    let r = reference();
    assert_eq!(r["loaded_with_torch"], serde_json::Value::Bool(true));
    assert_eq!(r["strict"], serde_json::Value::Bool(true));
    let mut want: Vec<(String, String, Vec<usize>)> = r["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["dtype"].as_str().unwrap().to_string(),
                e["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    // duel's state_dict order is PyTorch's order
    let order: Vec<String> = duel::nn::state_dict(&g)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let want_order: Vec<String> = want.iter().map(|e| e.0.clone()).collect();
    assert_eq!(order, want_order);
    want.sort();
    assert_eq!(got, want);

    std::fs::remove_dir_all(&dir).unwrap();
}
