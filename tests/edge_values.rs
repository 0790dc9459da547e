//! Forward values and gradients at the inputs where implementations disagree — NaN, ±inf,
//! exact zeros, values exactly at a clamp bound, ties of max — against PyTorch
//! (tests/data/pytorch/edge_values.json, written by scripts/pytorch_reference/edge_values.py),
//! on cpu and on emu (whose float4 kernels see 14 elements: a vector part and a tail).
//!
//! Tolerance: NaN must be NaN and infinities equal; finite values within
//! 1e-6·|torch| + 1e-37 (f32 on both sides, ~8 ulp for libm differences in exp/tanh and
//! the reduction order of means; 1e-37 for exp(−100), a denormal) — the sign of zero is
//! not compared. BCE-with-logits gradients, (σ(x) − t)/n, also get an absolute
//! f32::EPSILON/n: torch rounds σ(30) to 1 and reports 0 where duel's σ(−x) form keeps
//! −e^−30/n (a difference of O(1) terms is only good to their rounding, 2^−24 of 1).
//!
//! One departure from PyTorch, on purpose: the gradient of a max whose row holds NaN.
//! PyTorch's amax gives every entry of that row NaN (0/0: no entry equals the NaN
//! maximum); duel gives the NaN entries dy/count and the others 0 (ops::reduce::
//! max_backward). Both propagate NaN; those rows' gradients are not compared.

#[path = "pytorch_fixture/mod.rs"]
mod pytorch_fixture;

use duel::ops::loss;
use duel::optim::clip_weights;
use duel::{Device, Tensor};
use serde_json::Value;

fn devices() -> Vec<Device> {
    vec![
        Device::Cpu,
        Device::emu().expect("the emu device must be available"),
    ]
}

fn decode(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x.as_str() {
            Some("nan") => f32::NAN,
            Some("inf") => f32::INFINITY,
            Some("-inf") => f32::NEG_INFINITY,
            Some(other) => panic!("unknown value {other:?}"),
            None => x.as_f64().unwrap() as f32,
        })
        .collect()
}

fn same(name: &str, got: &[f32], want: &[f32], skip: &[bool], atol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if skip.get(i) == Some(&true) {
            continue;
        }
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= 1e-6 * w.abs() + 1e-37 + atol
        };
        assert!(
            ok,
            "{name}[{i}]: duel {g}, torch {w}\n duel  {got:?}\n torch {want:?}"
        );
    }
}

fn param(case: &Value, key: &str) -> f64 {
    case["params"][key].as_f64().unwrap()
}

/// y = f(x), then d(sum y)/dx, on `dev`.
fn run(
    dev: &Device,
    x: &[f32],
    shape: &[usize],
    f: impl Fn(&Tensor) -> Tensor,
) -> (Vec<f32>, Vec<f32>) {
    let t = Tensor::from_slice(x, shape, dev)
        .unwrap()
        .with_requires_grad();
    let y = f(&t);
    y.sum_all().unwrap().backward().unwrap();
    let dx = t
        .grad()
        .expect("x gets a gradient")
        .to_vec::<f32>()
        .unwrap();
    (y.to_vec::<f32>().unwrap(), dx)
}

#[test]
fn edge_values_match_pytorch() {
    let cases = pytorch_fixture::load("edge_values.json");
    assert!(cases.len() >= 17, "fixture has {} cases", cases.len());
    for dev in devices() {
        for case in &cases {
            let op = case["op"].as_str().unwrap();
            let name = format!("{op} {} on {}", case["params"], dev);
            let x = decode(&case["x"]);
            let want_y = decode(&case["y"]);
            let shape: Vec<usize> = match case.get("shape") {
                Some(s) => pytorch_fixture::dims(s),
                None => vec![x.len()],
            };
            if op == "clip_weights" {
                let p = Tensor::from_slice(&x, shape.as_slice(), &dev).unwrap();
                clip_weights(std::slice::from_ref(&p), param(case, "c")).unwrap();
                same(&name, &p.to_vec::<f32>().unwrap(), &want_y, &[], 0.0);
                continue;
            }
            let target = case.get("target").map(decode);
            let (y, dx) = run(&dev, &x, &shape, |t| {
                match op {
                    "relu" => t.relu(),
                    "leaky_relu" => t.leaky_relu(param(case, "slope")),
                    "sigmoid" => t.sigmoid(),
                    "tanh" => t.tanh(),
                    "abs" => t.abs(),
                    "neg" => t.neg(),
                    "exp" => t.exp(),
                    "clamp" => t.clamp(param(case, "min"), param(case, "max")),
                    "max_all" => t.max_all(),
                    "max_rows" => t.max(&[1], false),
                    "l1" | "mse" => {
                        let b = target.as_ref().unwrap();
                        let b = Tensor::from_slice(b, shape.as_slice(), &dev).unwrap();
                        if op == "l1" {
                            loss::l1(t, &b)
                        } else {
                            loss::mse(t, &b)
                        }
                    }
                    "bce_with_logits" => loss::bce_with_logits_scalar(t, param(case, "target")),
                    other => panic!("no duel op for fixture case {other}"),
                }
                .unwrap()
            });
            same(&format!("{name}: y"), &y, &want_y, &[], 0.0);
            // Rows whose maximum is NaN: see the module comment.
            let row = *shape.last().unwrap();
            let skip: Vec<bool> = (0..x.len())
                .map(|i| op.starts_with("max") && want_y[(i / row) % want_y.len()].is_nan())
                .collect();
            let atol = if op == "bce_with_logits" {
                f32::EPSILON / x.len() as f32
            } else {
                0.0
            };
            same(
                &format!("{name}: dx"),
                &dx,
                &decode(&case["dx"]),
                &skip,
                atol,
            );
        }
    }
}
