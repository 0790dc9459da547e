//! batch_norm, instance_norm2d, upsample_nearest2d and pad2d against PyTorch, without
//! PyTorch at test time: tests/data/pytorch/norm.json was produced by
//! scripts/pytorch_reference/norm.py (F.batch_norm, F.instance_norm, F.interpolate
//! nearest, F.pad constant/reflect, in float64; loss `sum(y * r)`), so outputs, gradients
//! and running-statistic updates (unbiased variance, momentum) are proven equal to
//! PyTorch's.
//!
//! Tolerances
//! - cpu in f64: |duel − torch| <= 1e-10·(1 + max|torch|) per tensor (f64 sums of at most
//!   ~50 terms on both sides; orders differ, ~1e-15 relative).
//! - emu in f32 (inputs rounded to f32): |duel − torch| <= 1e-4·(1 + max|torch|) per
//!   tensor (f32 rounding of the inputs and of the statistics; normalisation divides by
//!   standard deviations down to ~0.3, amplifying the rounding a few times).

use duel::ops::norm::{batch_norm, instance_norm2d};
use duel::ops::pad::{pad2d, PadMode};
use duel::ops::upsample::upsample_nearest2d;
use duel::{DType, Device};

mod pytorch_fixture;
use pytorch_fixture::{check, dims, nums, tensor};

/// Run every case on `dev` in `dtype` and compare with PyTorch within `rel`.
fn run_all(dtype: DType, dev: &Device, rel: f64) -> usize {
    let mut count = 0;
    for (k, c) in pytorch_fixture::load("norm.json").iter().enumerate() {
        let op = c["op"].as_str().unwrap();
        let name = format!("case {k} ({op} {})", c["x_shape"]);
        let xs = dims(&c["x_shape"]);
        let x = tensor(&nums(&c["x"]), &xs, dtype, dev).with_requires_grad();
        let ch = xs[1];
        let affine = c["affine"].as_bool().unwrap_or(false);
        let (w, b) = if affine {
            (
                Some(tensor(&nums(&c["weight"]), &[ch], dtype, dev).with_requires_grad()),
                Some(tensor(&nums(&c["bias"]), &[ch], dtype, dev).with_requires_grad()),
            )
        } else {
            (None, None)
        };
        let mut running = None;
        let y = match op {
            "batch_norm" => {
                if c["running"].as_bool().unwrap() {
                    running = Some((
                        tensor(&nums(&c["running_mean_in"]), &[ch], dtype, dev),
                        tensor(&nums(&c["running_var_in"]), &[ch], dtype, dev),
                    ));
                }
                batch_norm(
                    &x,
                    running.as_ref().map(|r| &r.0),
                    running.as_ref().map(|r| &r.1),
                    w.as_ref(),
                    b.as_ref(),
                    c["training"].as_bool().unwrap(),
                    c["momentum"].as_f64().unwrap(),
                    c["eps"].as_f64().unwrap(),
                )
                .unwrap()
            }
            "instance_norm2d" => {
                instance_norm2d(&x, w.as_ref(), b.as_ref(), c["eps"].as_f64().unwrap()).unwrap()
            }
            "upsample_nearest2d" => {
                upsample_nearest2d(&x, c["scale"].as_u64().unwrap() as usize).unwrap()
            }
            "pad2d" => {
                let p = dims(&c["pads"]);
                let mode = match c["mode"].as_str().unwrap() {
                    "zero" => PadMode::Zero,
                    "reflect" => PadMode::Reflect,
                    m => panic!("unknown mode {m}"),
                };
                pad2d(&x, (p[0], p[1], p[2], p[3]), mode).unwrap()
            }
            other => panic!("unknown op {other}"),
        };
        assert_eq!(y.dims(), dims(&c["y_shape"]).as_slice(), "{name}: y shape");
        check(&format!("{name} y"), &y, &nums(&c["y"]), rel);
        let r = tensor(&nums(&c["r"]), y.dims(), dtype, dev);
        y.backward_with(&r).unwrap();
        check(
            &format!("{name} dx"),
            &x.grad().unwrap(),
            &nums(&c["dx"]),
            rel,
        );
        if let (Some(w), Some(b)) = (&w, &b) {
            check(
                &format!("{name} dweight"),
                &w.grad().unwrap(),
                &nums(&c["dweight"]),
                rel,
            );
            check(
                &format!("{name} dbias"),
                &b.grad().unwrap(),
                &nums(&c["dbias"]),
                rel,
            );
        }
        if let Some((rm, rv)) = &running {
            check(
                &format!("{name} running_mean"),
                rm,
                &nums(&c["running_mean_out"]),
                rel,
            );
            check(
                &format!("{name} running_var"),
                rv,
                &nums(&c["running_var_out"]),
                rel,
            );
        }
        count += 1;
    }
    count
}

#[test]
fn norm_pytorch_cpu_f64() {
    assert_eq!(run_all(DType::F64, &Device::Cpu, 1e-10), 13);
}

#[test]
fn norm_pytorch_cpu_f32() {
    run_all(DType::F32, &Device::Cpu, 1e-4);
}

#[test]
fn norm_pytorch_emu_f32() {
    let e = Device::emu().expect("the emu device must be available");
    run_all(DType::F32, &e, 1e-4);
}
