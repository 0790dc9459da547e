//! conv2d and conv_transpose2d, forward and every gradient, under `Precision::Bf16` /
//! `Precision::F16` on `emu` (their GEMMs run on the tensor-core kernels of
//! kernels/matmul_mma.cu) in the forward and reverse thread orders, against the cpu in
//! f64 on the operands rounded to the precision (`Precision::round`).
//!
//! Tolerance: each product of two rounded values is exact in f32, and an output element
//! sums K of them in f32 (in the GEMM, and for the col2im-based outputs partly in the
//! col2im scatter: any summation order), so |got − exact| <= γ_K · Σ|products|, with u =
//! 2^-24, γ_K = K·u / (1 − K·u). Σ|products| is the same op on the absolute values of
//! the rounded operands. K per output: conv2d y Cin·kh·kw, dx Cout·kh·kw, dw N·Ho·Wo;
//! conv_transpose2d y Cin·kh·kw, dx Cout·kh·kw, dw N·H·W (upper bounds on the terms).
//! The upstream gradient is rounded too: the backward GEMMs round their operands.

use duel::device::emu::EmuOptions;
use duel::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
use duel::ops::precision::{with_precision, Precision};
use duel::{Device, Tensor};

mod common;
use common::{emu_schedules, gamma, lcg_data};

#[derive(Clone, Copy)]
enum Op {
    Conv(Conv2dParams),
    ConvT(ConvTranspose2dParams),
}

impl Op {
    fn run(&self, x: &Tensor, w: &Tensor) -> Tensor {
        match self {
            Op::Conv(p) => conv2d(x, w, None, p).unwrap(),
            Op::ConvT(p) => conv_transpose2d(x, w, None, p).unwrap(),
        }
    }
}

/// y, dx, dw of `op` with upstream gradient `g` (f32 data) on `dev`; `map` is applied to
/// every operand first (rounding, absolute values) and the tensors are f64 on cpu, f32
/// on emu.
fn y_dx_dw(
    op: Op,
    dev: &Device,
    (x, xs): (&[f32], [usize; 4]),
    (w, ws): (&[f32], [usize; 4]),
    g: &[f32],
    map: impl Fn(f32) -> f64,
) -> [Vec<f64>; 3] {
    let t = |v: &[f32], s: &[usize]| {
        let m: Vec<f64> = v.iter().map(|&a| map(a)).collect();
        if dev.is_cpu() {
            Tensor::from_slice(&m, s, dev).unwrap()
        } else {
            let f: Vec<f32> = m.iter().map(|&a| a as f32).collect();
            Tensor::from_slice(&f, s, dev).unwrap()
        }
    };
    let xt = t(x, &xs).with_requires_grad();
    let wt = t(w, &ws).with_requires_grad();
    let y = op.run(&xt, &wt);
    y.backward_with(&t(g, y.dims())).unwrap();
    let v = |t: Option<Tensor>| t.unwrap().to_f64_vec().unwrap();
    [y.to_f64_vec().unwrap(), v(xt.grad()), v(wt.grad())]
}

fn check(what: &str, got: &[f64], want: &[f64], abs: &[f64], k: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(want.iter().any(|&x| x != 0.0), "{what}: a non-trivial case");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(abs).enumerate() {
        let tol = gamma(k) * s;
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, expected {w} (|diff| {:e} > {tol:e})",
            (g - w).abs()
        );
    }
}

fn parity(op: Op, xs: [usize; 4], ws: [usize; 4], seed: u64) {
    let x = lcg_data(xs.iter().product(), seed);
    let w = lcg_data(ws.iter().product(), seed + 1);
    // The output shape (and so g's size) from one f32 cpu forward.
    let ys = {
        let xt = Tensor::from_slice(&x, xs, &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&w, ws, &Device::Cpu).unwrap();
        op.run(&xt, &wt).dims().to_vec()
    };
    let g = lcg_data(ys.iter().product(), seed + 2);
    let (n, hw, ohw) = (xs[0], xs[2] * xs[3], ys[2] * ys[3]);
    let kk = ws[2] * ws[3];
    let (name, ks) = match op {
        Op::Conv(_) => ("conv2d", [ws[1] * kk, ws[0] * kk, n * ohw]),
        Op::ConvT(_) => ("conv_transpose2d", [ws[0] * kk, ws[1] * kk, n * hw]),
    };
    for p in [Precision::Bf16, Precision::F16] {
        let r = |a: f32| p.round(a) as f64;
        let exact = y_dx_dw(op, &Device::Cpu, (&x, xs), (&w, ws), &g, r);
        let abs = y_dx_dw(op, &Device::Cpu, (&x, xs), (&w, ws), &g, |a| r(a).abs());
        for schedule in emu_schedules() {
            let dev = Device::emu_with(EmuOptions {
                schedule,
                ..EmuOptions::from_env()
            })
            .unwrap();
            // The emu side gets the unrounded data: the kernels round it.
            let got = with_precision(p, || {
                y_dx_dw(op, &dev, (&x, xs), (&w, ws), &g, |a| a as f64)
            });
            for (i, part) in ["y", "dx", "dw"].iter().enumerate() {
                let what = format!("{name} {p} {schedule:?} x {xs:?} w {ws:?} {part}");
                check(&what, &got[i], &exact[i], &abs[i], ks[i]);
            }
        }
    }
}

#[test]
fn conv2d_forward_and_gradients_in_bf16_and_f16() {
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (1, 1),
        dilation: (1, 1),
    };
    parity(Op::Conv(p), [2, 3, 7, 6], [5, 3, 3, 3], 1);
    parity(Op::Conv(p), [1, 3, 7, 6], [5, 3, 3, 3], 11); // batch 1
}

#[test]
fn conv_transpose2d_forward_and_gradients_in_bf16_and_f16() {
    let p = ConvTranspose2dParams {
        stride: (2, 2),
        padding: (1, 1),
        output_padding: (1, 0),
        dilation: (1, 1),
    };
    parity(Op::ConvT(p), [2, 4, 5, 4], [4, 3, 4, 4], 7);
    parity(Op::ConvT(p), [1, 4, 5, 4], [4, 3, 4, 4], 17); // batch 1
}

#[test]
fn the_rounding_reaches_conv() {
    // A 1x1 convolution of x = 1 + 2^-9 with w = 1: 1 in bf16, x in f16 and f32; the
    // same seen through the gradient dx = w · g with g = x.
    let v = 1.0 + 2f32.powi(-9);
    let dev = Device::emu().unwrap();
    for (p, want) in [
        (Precision::Bf16, 1.0),
        (Precision::F16, v),
        (Precision::F32, v),
    ] {
        let op = Op::Conv(Conv2dParams::default());
        let got = with_precision(p, || {
            y_dx_dw(
                op,
                &dev,
                (&[v], [1, 1, 1, 1]),
                (&[1.0], [1, 1, 1, 1]),
                &[v],
                |a| a as f64,
            )
        });
        assert_eq!(got[0], vec![want as f64], "{p} y");
        assert_eq!(got[1], vec![want as f64], "{p} dx");
    }
}
