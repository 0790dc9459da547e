//! Reading the PyTorch reference cases in tests/data/pytorch/*.json (written by
//! scripts/pytorch_reference/*.py) and comparing duel's results with them.

#![allow(dead_code)] // each test file uses the helpers it needs

use duel::{DType, Device, Tensor};
use serde_json::Value;

/// The `cases` array of tests/data/pytorch/`file`.
pub fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/pytorch/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    doc["cases"].as_array().unwrap().clone()
}

pub fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn dims(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

pub fn pair(v: &Value) -> (usize, usize) {
    let d = dims(v);
    (d[0], d[1])
}

/// f64 reference data as a tensor of `dtype` on `dev`.
pub fn tensor(data: &[f64], shape: &[usize], dtype: DType, dev: &Device) -> Tensor {
    let t = Tensor::from_slice(data, shape, &Device::Cpu).unwrap();
    t.to_dtype(dtype).unwrap().to_device(dev).unwrap()
}

/// Every element within `rel`·(1 + max|torch|) of PyTorch's value.
pub fn check(name: &str, got: &Tensor, want: &[f64], rel: f64) {
    let got = got.to_f64_vec().unwrap();
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{name}[{i}]: duel {g}, torch {w} (|diff| {:e} > {:e})",
            (g - w).abs(),
            rel * scale
        );
    }
}
