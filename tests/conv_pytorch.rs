//! conv2d and conv_transpose2d against PyTorch, without PyTorch at test time: the cases,
//! inputs, outputs and gradients in tests/data/pytorch/conv.json were produced by
//! scripts/pytorch_reference/conv.py (F.conv2d / F.conv_transpose2d in float64, loss
//! `sum(y * r)`), so the weight layouts, output-size rules and gradients are proven equal
//! to PyTorch's.
//!
//! Tolerances
//! - cpu in f64: |duel − torch| <= 1e-10·(1 + max|torch|) per tensor (both sides are f64
//!   sums of at most a few hundred terms of magnitude <= 1; different orders differ by
//!   ~1e-15 relative).
//! - cpu and emu in f32 (inputs rounded to f32): |duel − torch| <= 2e-5·(1 + max|torch|)
//!   per tensor (the f32 rounding of inputs, ~6e-8 relative, plus the f32 sums of at most
//!   ~150 terms: 150·6e-8 ≈ 1e-5).

use duel::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
use duel::{DType, Device};
use serde_json::Value;

mod pytorch_fixture;
use pytorch_fixture::{check, dims, nums, pair, tensor};

fn run_case(case: &Value, dtype: DType, dev: &Device, rel: f64) {
    let op = case["op"].as_str().unwrap();
    let (xs, ws) = (dims(&case["x"]), dims(&case["w"]));
    let x = tensor(&nums(&case["x_data"]), &xs, dtype, dev).with_requires_grad();
    let w = tensor(&nums(&case["w_data"]), &ws, dtype, dev).with_requires_grad();
    let has_bias = case["bias"].as_bool().unwrap();
    let bias_data = nums(&case["bias_data"]);
    let b =
        has_bias.then(|| tensor(&bias_data, &[bias_data.len()], dtype, dev).with_requires_grad());
    let y = match op {
        "conv2d" => conv2d(
            &x,
            &w,
            b.as_ref(),
            &Conv2dParams {
                stride: pair(&case["stride"]),
                padding: pair(&case["padding"]),
                dilation: pair(&case["dilation"]),
            },
        ),
        "conv_transpose2d" => conv_transpose2d(
            &x,
            &w,
            b.as_ref(),
            &ConvTranspose2dParams {
                stride: pair(&case["stride"]),
                padding: pair(&case["padding"]),
                output_padding: pair(&case["output_padding"]),
                dilation: pair(&case["dilation"]),
            },
        ),
        other => panic!("unknown op {other} in conv.json"),
    }
    .unwrap();
    let name = format!("{op} x {xs:?} w {ws:?} on {dev} {dtype}");
    assert_eq!(
        y.dims(),
        dims(&case["y_shape"]).as_slice(),
        "{name}: output shape"
    );
    check(&format!("{name} y"), &y, &nums(&case["y"]), rel);
    let r = tensor(&nums(&case["r"]), y.dims(), dtype, dev);
    y.backward_with(&r).unwrap();
    check(
        &format!("{name} dx"),
        &x.grad().unwrap(),
        &nums(&case["dx"]),
        rel,
    );
    check(
        &format!("{name} dw"),
        &w.grad().unwrap(),
        &nums(&case["dw"]),
        rel,
    );
    if let Some(b) = b {
        check(
            &format!("{name} dbias"),
            &b.grad().unwrap(),
            &nums(&case["dbias"]),
            rel,
        );
    }
}

#[test]
fn conv2d_and_conv_transpose2d_match_pytorch_cpu_f64() {
    let cases = pytorch_fixture::load("conv.json");
    assert!(cases.len() >= 10);
    for case in &cases {
        run_case(case, DType::F64, &Device::Cpu, 1e-10);
    }
}

#[test]
fn conv2d_and_conv_transpose2d_match_pytorch_cpu_f32() {
    for case in &pytorch_fixture::load("conv.json") {
        run_case(case, DType::F32, &Device::Cpu, 2e-5);
    }
}

#[test]
fn conv2d_and_conv_transpose2d_match_pytorch_emu_f32() {
    let dev = Device::emu().expect("the emu device must be available");
    for case in &pytorch_fixture::load("conv.json") {
        run_case(case, DType::F32, &dev, 2e-5);
    }
}
