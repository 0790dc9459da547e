//! conv2d and conv_transpose2d: hand-computed cases, a plain f64 reference loop (the
//! definition written out directly, independent of im2col), the adjoint identity between
//! the two ops, PyTorch's output-size rules and error cases, the gradcheck cases (f64
//! cpu), and emu-vs-cpu parity of the forward pass and every gradient (f32) on odd sizes,
//! batch 1, non-square shapes, stride 2 + padding 1 + output_padding 1, dilation 2 and the
//! exact layer shapes of the 28x28 DCGAN.
//!
//! Tolerances
//! - Hand-computed cases of small integers: exact (every partial sum is an integer below
//!   2^24, so f32 is exact whatever the summation order).
//! - cpu (f64) vs the f64 reference loop: |got − expected| <= 1e-12·(1 + K·max|x|·max|w|).
//! - cpu (f32) and emu (f32) vs the f64 reference, and emu vs cpu: per element
//!   |got − expected| <= 2·K·ε·max|a|·max|b| + 1e-6, ε = f32::EPSILON, K the number of
//!   products summed into one element (conv2d forward Cin·kh·kw; its dx Cout·kh·kw; dW
//!   N·Ho·Wo; db N·Ho·Wo with |b| = 1) — the rounding bound of a K-term f32 sum whose
//!   terms are bounded by max|a|·max|b|, for each side compared.
//! - gradcheck (f64, cpu): the harness's own |analytic − numeric| <= 1e-7 + 1e-6·|numeric|.

use duel::ops::conv::{
    conv2d, conv2d_output_size, conv_transpose2d, conv_transpose2d_output_size, Conv2dParams,
    ConvTranspose2dParams,
};
use duel::{DType, Device, Tensor};

mod common;
use common::lcg_data;

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for the parity tests")
}

/// The shared test data as f64 (every value is exact in both).
fn data(n: usize, seed: u64) -> Vec<f64> {
    lcg_data(n, seed).into_iter().map(f64::from).collect()
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn t32(v: &[f64], shape: &[usize], dev: &Device) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(&f, shape, dev).unwrap()
}

fn cp(stride: usize, padding: usize, dilation: usize) -> Conv2dParams {
    Conv2dParams {
        stride: (stride, stride),
        padding: (padding, padding),
        dilation: (dilation, dilation),
    }
}

fn ctp(
    stride: usize,
    padding: usize,
    output_padding: usize,
    dilation: usize,
) -> ConvTranspose2dParams {
    ConvTranspose2dParams {
        stride: (stride, stride),
        padding: (padding, padding),
        output_padding: (output_padding, output_padding),
        dilation: (dilation, dilation),
    }
}

/// The definition of conv2d as loops, in f64: x [N,C,H,W], w [O,C,kh,kw].
fn ref_conv2d(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    p: &Conv2dParams,
) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, wd] = xs;
    let [o, _, kh, kw] = ws;
    let ho = (h + 2 * p.padding.0 - p.dilation.0 * (kh - 1) - 1) / p.stride.0 + 1;
    let wo = (wd + 2 * p.padding.1 - p.dilation.1 * (kw - 1) - 1) / p.stride.1 + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    for ni in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[oc]);
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * p.stride.0 + i * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                acc += x[((ni * c + ci) * h + ih as usize) * wd + iw as usize]
                                    * w[((oc * c + ci) * kh + i) * kw + j];
                            }
                        }
                    }
                    y[((ni * o + oc) * ho + oh) * wo + ow] = acc;
                }
            }
        }
    }
    (y, [n, o, ho, wo])
}

/// The definition of conv_transpose2d as a scatter, in f64: x [N,Ci,H,W], w [Ci,Co,kh,kw].
fn ref_conv_transpose2d(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    p: &ConvTranspose2dParams,
) -> (Vec<f64>, [usize; 4]) {
    let [n, ci, h, wd] = xs;
    let [_, co, kh, kw] = ws;
    let ho =
        (h - 1) * p.stride.0 + p.dilation.0 * (kh - 1) + p.output_padding.0 + 1 - 2 * p.padding.0;
    let wo =
        (wd - 1) * p.stride.1 + p.dilation.1 * (kw - 1) + p.output_padding.1 + 1 - 2 * p.padding.1;
    let mut y = vec![0.0; n * co * ho * wo];
    for ni in 0..n {
        for oc in 0..co {
            let bv = b.map_or(0.0, |b| b[oc]);
            for v in &mut y[(ni * co + oc) * ho * wo..][..ho * wo] {
                *v = bv;
            }
        }
        for ic in 0..ci {
            for ih in 0..h {
                for iw in 0..wd {
                    let xv = x[((ni * ci + ic) * h + ih) * wd + iw];
                    for oc in 0..co {
                        for i in 0..kh {
                            for j in 0..kw {
                                let oh = (ih * p.stride.0 + i * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ow = (iw * p.stride.1 + j * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if oh < 0 || ow < 0 || oh >= ho as isize || ow >= wo as isize {
                                    continue;
                                }
                                y[((ni * co + oc) * ho + oh as usize) * wo + ow as usize] +=
                                    xv * w[((ic * co + oc) * kh + i) * kw + j];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, [n, co, ho, wo])
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max(x.abs()))
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, expected {w} (|diff| {:e} > tol {tol:e})",
            (g - w).abs()
        );
    }
}

fn f32_tol(k: usize, a: f64, b: f64) -> f64 {
    2.0 * k as f64 * f32::EPSILON as f64 * a * b + 1e-6
}

#[test]
fn conv2d_hand_3x3_input_2x2_kernel() {
    let x = Tensor::from_slice(
        &[1f32, 2., 3., 4., 5., 6., 7., 8., 9.],
        [1, 1, 3, 3],
        &Device::Cpu,
    )
    .unwrap();
    let w = Tensor::from_slice(&[1f32, 2., 3., 4.], [1, 1, 2, 2], &Device::Cpu).unwrap();
    let b = Tensor::from_slice(&[0.5f32], [1], &Device::Cpu).unwrap();
    let y = conv2d(&x, &w, None, &Conv2dParams::default()).unwrap();
    assert_eq!(y.dims(), [1, 1, 2, 2]);
    // [1 2; 4 5]·[1 2; 3 4] = 1+4+12+20 = 37, then 47, 67, 77.
    assert_eq!(y.to_vec::<f32>().unwrap(), [37., 47., 67., 77.]);
    let y = conv2d(&x, &w, Some(&b), &Conv2dParams::default()).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [37.5, 47.5, 67.5, 77.5]);
    // Padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
    let y = conv2d(&x, &w, None, &cp(2, 1, 1)).unwrap();
    assert_eq!(y.dims(), [1, 1, 2, 2]);
    // (-1,-1): only x[0,0]·w[1,1] = 4; (-1,1): x[0,1]·3 + x[0,2]·4 = 6+12 = 18;
    // (1,-1): x[1,0]·2 + x[2,0]·4 = 8+28 = 36; (1,1): 5+12+24+36 = 77.
    assert_eq!(y.to_vec::<f32>().unwrap(), [4., 18., 36., 77.]);
    // Dilation 2 with a 2x2 kernel on 3x3: one window of the corners: 1+6+21+36 = 64.
    let y = conv2d(&x, &w, None, &cp(1, 0, 2)).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [64.]);
    // The same on emu.
    let dev = emu();
    let y = conv2d(
        &x.to_device(&dev).unwrap(),
        &w.to_device(&dev).unwrap(),
        Some(&b.to_device(&dev).unwrap()),
        &Conv2dParams::default(),
    )
    .unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [37.5, 47.5, 67.5, 77.5]);
}

#[test]
fn conv_transpose2d_hand_2x2_input_2x2_kernel() {
    let x = Tensor::from_slice(&[1f32, 2., 3., 4.], [1, 1, 2, 2], &Device::Cpu).unwrap();
    let w = Tensor::from_slice(&[1f32, 2., 3., 4.], [1, 1, 2, 2], &Device::Cpu).unwrap();
    let y = conv_transpose2d(&x, &w, None, &ConvTranspose2dParams::default()).unwrap();
    assert_eq!(y.dims(), [1, 1, 3, 3]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        [1., 4., 4., 6., 20., 16., 9., 24., 16.]
    );
    // Stride 2: the four scaled copies of w tile a 4x4 output without overlap.
    let y = conv_transpose2d(&x, &w, None, &ctp(2, 0, 0, 1)).unwrap();
    assert_eq!(y.dims(), [1, 1, 4, 4]);
    #[rustfmt::skip]
    let want = [1., 2., 2., 4.,  3., 4., 6., 8.,  3., 6., 4., 8.,  9., 12., 12., 16.];
    assert_eq!(y.to_vec::<f32>().unwrap(), want);
    // Stride 2, padding 1, output_padding 1: rows/cols 1..=4 of the 5x5 full output, the
    // last row and column being the extra (zero) output padding.
    let y = conv_transpose2d(&x, &w, None, &ctp(2, 1, 1, 1)).unwrap();
    assert_eq!(y.dims(), [1, 1, 3, 3]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        [4., 6., 8., 6., 4., 8., 12., 12., 16.]
    );
    let dev = emu();
    let y = conv_transpose2d(
        &x.to_device(&dev).unwrap(),
        &w.to_device(&dev).unwrap(),
        None,
        &ctp(2, 1, 1, 1),
    )
    .unwrap();
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        [4., 6., 8., 6., 4., 8., 12., 12., 16.]
    );
}

/// (x shape, w shape, params) of conv2d configurations covering the parameter space.
fn conv_configs() -> Vec<([usize; 4], [usize; 4], Conv2dParams)> {
    let p = |s: (usize, usize), pd: (usize, usize), d: (usize, usize)| Conv2dParams {
        stride: s,
        padding: pd,
        dilation: d,
    };
    vec![
        ([2, 2, 5, 6], [3, 2, 3, 2], p((1, 1), (0, 0), (1, 1))),
        ([2, 2, 5, 6], [3, 2, 3, 2], p((2, 2), (1, 1), (1, 1))),
        ([2, 2, 5, 6], [3, 2, 3, 2], p((1, 1), (1, 1), (2, 2))),
        ([1, 3, 7, 5], [2, 3, 2, 3], p((2, 1), (0, 2), (1, 2))),
        ([3, 1, 9, 8], [4, 1, 4, 4], p((2, 2), (1, 1), (1, 1))),
        ([2, 4, 7, 7], [1, 4, 4, 4], p((2, 2), (1, 1), (1, 1))),
        ([1, 5, 3, 11], [6, 5, 3, 1], p((3, 2), (2, 0), (1, 1))),
        ([2, 1, 6, 6], [2, 1, 1, 1], p((1, 1), (0, 0), (1, 1))),
        // One window over the whole image (the dense path), at stride 1 and 2.
        ([3, 5, 4, 4], [2, 5, 4, 4], p((1, 1), (0, 0), (1, 1))),
        ([2, 3, 3, 2], [4, 3, 3, 2], p((2, 2), (0, 0), (1, 1))),
    ]
}

fn convt_configs() -> Vec<([usize; 4], [usize; 4], ConvTranspose2dParams)> {
    let p = |s: (usize, usize), pd: (usize, usize), op: (usize, usize), d: (usize, usize)| {
        ConvTranspose2dParams {
            stride: s,
            padding: pd,
            output_padding: op,
            dilation: d,
        }
    };
    vec![
        (
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            p((1, 1), (0, 0), (0, 0), (1, 1)),
        ),
        (
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            p((2, 2), (1, 1), (1, 1), (1, 1)),
        ),
        (
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            p((1, 1), (1, 1), (0, 0), (2, 2)),
        ),
        (
            [2, 2, 3, 4],
            [2, 3, 3, 3],
            p((1, 1), (1, 1), (1, 1), (2, 2)),
        ),
        (
            [1, 2, 3, 2],
            [2, 3, 2, 3],
            p((1, 3), (1, 0), (0, 2), (1, 1)),
        ),
        (
            [2, 3, 4, 4],
            [3, 1, 4, 4],
            p((2, 2), (1, 1), (0, 0), (1, 1)),
        ),
        (
            [1, 4, 5, 3],
            [4, 2, 3, 4],
            p((3, 2), (2, 1), (2, 1), (1, 2)),
        ),
        (
            [3, 2, 2, 2],
            [2, 5, 1, 1],
            p((2, 2), (0, 0), (1, 1), (1, 1)),
        ),
        // A 1x1 input under a kernel the output's size (the dense path).
        (
            [3, 5, 1, 1],
            [5, 2, 4, 3],
            p((1, 1), (0, 0), (0, 0), (1, 1)),
        ),
    ]
}

#[test]
fn conv2d_cpu_matches_reference_loops() {
    for (seed, (xs, ws, p)) in conv_configs().into_iter().enumerate() {
        let seed = seed as u64 * 10;
        let (x, w, b) = (
            data(xs.iter().product(), seed + 1),
            data(ws.iter().product(), seed + 2),
            data(ws[0], seed + 3),
        );
        let (want, ys) = ref_conv2d(&x, xs, &w, ws, Some(&b), &p);
        let k = ws[1] * ws[2] * ws[3];
        let y = conv2d(&t64(&x, &xs), &t64(&w, &ws), Some(&t64(&b, &[ws[0]])), &p).unwrap();
        assert_eq!(y.dims(), ys, "{xs:?} {ws:?} {p:?}");
        assert_close(
            &format!("f64 {xs:?} {ws:?} {p:?}"),
            &y.to_f64_vec().unwrap(),
            &want,
            1e-12 * (1.0 + k as f64 * 4.0),
        );
        let d = Device::Cpu;
        let y = conv2d(
            &t32(&x, &xs, &d),
            &t32(&w, &ws, &d),
            Some(&t32(&b, &[ws[0]], &d)),
            &p,
        )
        .unwrap();
        assert_close(
            &format!("f32 {xs:?} {ws:?} {p:?}"),
            &y.to_f64_vec().unwrap(),
            &want,
            f32_tol(k + 1, 2.0, 2.0),
        );
    }
}

#[test]
fn conv_transpose2d_cpu_matches_reference_loops() {
    for (seed, (xs, ws, p)) in convt_configs().into_iter().enumerate() {
        let seed = seed as u64 * 10 + 500;
        let (x, w, b) = (
            data(xs.iter().product(), seed + 1),
            data(ws.iter().product(), seed + 2),
            data(ws[1], seed + 3),
        );
        let (want, ys) = ref_conv_transpose2d(&x, xs, &w, ws, Some(&b), &p);
        let k = ws[0] * ws[2] * ws[3];
        let y =
            conv_transpose2d(&t64(&x, &xs), &t64(&w, &ws), Some(&t64(&b, &[ws[1]])), &p).unwrap();
        assert_eq!(y.dims(), ys, "{xs:?} {ws:?} {p:?}");
        assert_close(
            &format!("f64 {xs:?} {ws:?} {p:?}"),
            &y.to_f64_vec().unwrap(),
            &want,
            1e-12 * (1.0 + k as f64 * 4.0),
        );
        let d = Device::Cpu;
        let y = conv_transpose2d(
            &t32(&x, &xs, &d),
            &t32(&w, &ws, &d),
            Some(&t32(&b, &[ws[1]], &d)),
            &p,
        )
        .unwrap();
        assert_close(
            &format!("f32 {xs:?} {ws:?} {p:?}"),
            &y.to_f64_vec().unwrap(),
            &want,
            f32_tol(k + 1, 2.0, 2.0),
        );
    }
}

/// conv_transpose2d is the adjoint of conv2d with the same weight tensor:
/// <conv2d(a, w), y> = <a, conv_transpose2d(y, w)> whenever the sizes correspond (the
/// output_padding picks which conv input size the transposed conv produces).
#[test]
fn conv_transpose2d_is_the_adjoint_of_conv2d() {
    for (seed, (xs, ws, p)) in convt_configs().into_iter().enumerate() {
        let seed = seed as u64 * 10 + 900;
        // conv2d weight [O, C, kh, kw] = convT weight [Cin, Cout, ...]: conv maps Cout -> Cin.
        let y = t64(&data(xs.iter().product(), seed), &xs);
        let w = t64(&data(ws.iter().product(), seed + 1), &ws);
        let ct = conv_transpose2d(&y, &w, None, &p).unwrap();
        let a = t64(&data(ct.numel(), seed + 2), ct.dims());
        let cparams = Conv2dParams {
            stride: p.stride,
            padding: p.padding,
            dilation: p.dilation,
        };
        let c = conv2d(&a, &w, None, &cparams).unwrap();
        if p.output_padding.0 >= p.stride.0 || p.output_padding.1 >= p.stride.1 {
            // output_padding >= stride (allowed when < dilation): the conv of the larger
            // output has more positions than the input; no adjoint pairing.
            continue;
        }
        assert_eq!(
            c.dims(),
            y.dims(),
            "conv2d of the convT output size must give back the input size ({p:?})"
        );
        let lhs: f64 = c
            .to_f64_vec()
            .unwrap()
            .iter()
            .zip(y.to_f64_vec().unwrap())
            .map(|(p, q)| p * q)
            .sum();
        let rhs: f64 = a
            .to_f64_vec()
            .unwrap()
            .iter()
            .zip(ct.to_f64_vec().unwrap())
            .map(|(p, q)| p * q)
            .sum();
        assert!(
            (lhs - rhs).abs() <= 1e-10 * (1.0 + lhs.abs()),
            "{p:?}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn conv2d_output_size_rules_match_pytorch() {
    // PyTorch: floor((H + 2p - d(k-1) - 1)/s) + 1.
    for h in 1..12usize {
        for k in 1..5usize {
            for s in 1..4usize {
                for pd in 0..3usize {
                    for d in 1..3usize {
                        let num = h as isize + 2 * pd as isize - (d * (k - 1)) as isize - 1;
                        let want = if num < 0 {
                            None
                        } else {
                            Some(num as usize / s + 1)
                        };
                        assert_eq!(
                            conv2d_output_size(h, k, s, pd, d),
                            want,
                            "h {h} k {k} s {s} p {pd} d {d}"
                        );
                        let x = Tensor::zeros([1, 1, h, h + 1], DType::F32, &Device::Cpu).unwrap();
                        let w = Tensor::zeros([1, 1, k, k], DType::F32, &Device::Cpu).unwrap();
                        let r = conv2d(&x, &w, None, &cp(s, pd, d));
                        match want {
                            Some(o) => {
                                let ow = conv2d_output_size(h + 1, k, s, pd, d).unwrap();
                                assert_eq!(r.unwrap().dims(), [1, 1, o, ow]);
                            }
                            None => {
                                let e = r.unwrap_err().to_string();
                                assert!(e.contains("conv2d") && e.contains("kernel"), "{e}");
                            }
                        }
                    }
                }
            }
        }
    }
    // The DCGAN discriminator: 28 -> 14 -> 7 with 4x4/2/1.
    assert_eq!(conv2d_output_size(28, 4, 2, 1, 1), Some(14));
    assert_eq!(conv2d_output_size(14, 4, 2, 1, 1), Some(7));
}

#[test]
fn conv_transpose2d_output_size_rules_match_pytorch() {
    // PyTorch: (H-1)s - 2p + d(k-1) + output_padding + 1, output_padding < max(s, d).
    for h in 1..8usize {
        for k in 1..5usize {
            for s in 1..4usize {
                for pd in 0..3usize {
                    for d in 1..3usize {
                        for op in 0..3usize {
                            let size = (h as isize - 1) * s as isize - 2 * pd as isize
                                + (d * (k - 1)) as isize
                                + op as isize
                                + 1;
                            let want = if size < 1 { None } else { Some(size as usize) };
                            assert_eq!(conv_transpose2d_output_size(h, k, s, pd, op, d), want);
                            let x = Tensor::zeros([1, 1, h, h], DType::F32, &Device::Cpu).unwrap();
                            let w = Tensor::zeros([1, 2, k, k], DType::F32, &Device::Cpu).unwrap();
                            let r = conv_transpose2d(&x, &w, None, &ctp(s, pd, op, d));
                            if op >= s.max(d) {
                                let e = r.unwrap_err().to_string();
                                assert!(
                                    e.contains("output_padding") && e.contains("stride"),
                                    "{e}"
                                );
                            } else if let Some(o) = want {
                                assert_eq!(r.unwrap().dims(), [1, 2, o, o]);
                            } else {
                                let e = r.unwrap_err().to_string();
                                assert!(
                                    e.contains("conv_transpose2d") && e.contains("output size"),
                                    "{e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    // The DCGAN generator: 7 -> 14 -> 28 with 4x4/2/1.
    assert_eq!(conv_transpose2d_output_size(7, 4, 2, 1, 0, 1), Some(14));
    assert_eq!(conv_transpose2d_output_size(14, 4, 2, 1, 0, 1), Some(28));
}

#[test]
fn conv2d_bad_inputs_are_errors_naming_shapes() {
    let d = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &d).unwrap();
    let e = conv2d(
        &z(&[1, 3, 5, 5]),
        &z(&[2, 4, 3, 3]),
        None,
        &Conv2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[1, 3, 5, 5]") && e.contains("[2, 4, 3, 3]"),
        "{e}"
    );
    let e = conv2d(
        &z(&[3, 5, 5]),
        &z(&[2, 3, 3, 3]),
        None,
        &Conv2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rank 4"), "{e}");
    let e = conv2d(
        &z(&[1, 3, 5, 5]),
        &z(&[2, 3, 3, 3]),
        Some(&z(&[3])),
        &Conv2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bias") && e.contains("[2]"), "{e}");
    let e = conv2d(&z(&[1, 3, 5, 5]), &z(&[2, 3, 3, 3]), None, &cp(0, 0, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("stride"), "{e}");
    let e = conv2d(&z(&[1, 3, 5, 5]), &z(&[2, 3, 3, 3]), None, &cp(1, 0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dilation"), "{e}");
    let w64 = Tensor::zeros([2, 3, 3, 3], DType::F64, &d).unwrap();
    let e = conv2d(&z(&[1, 3, 5, 5]), &w64, None, &Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("f64") && e.contains("f32"), "{e}");
    let dev = emu();
    let e = conv2d(
        &z(&[1, 3, 5, 5]).to_device(&dev).unwrap(),
        &z(&[2, 3, 3, 3]),
        None,
        &Conv2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(!e.is_empty());
}

#[test]
fn conv_transpose2d_bad_inputs_are_errors_naming_shapes() {
    let d = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &d).unwrap();
    let e = conv_transpose2d(
        &z(&[1, 3, 5, 5]),
        &z(&[2, 3, 3, 3]),
        None,
        &ConvTranspose2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[1, 3, 5, 5]") && e.contains("[2, 3, 3, 3]") && e.contains("Cin, Cout"),
        "{e}"
    );
    let e = conv_transpose2d(
        &z(&[1, 3, 5, 5]),
        &z(&[3, 2, 3, 3]),
        Some(&z(&[3])),
        &ConvTranspose2dParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bias") && e.contains("[2]"), "{e}");
    let e = conv_transpose2d(&z(&[1, 3, 5, 5]), &z(&[3, 2, 3, 3]), None, &ctp(2, 1, 2, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("output_padding") && e.contains("(2, 2)"), "{e}");
    // output_padding < dilation is allowed even with stride 1 (PyTorch's rule).
    let y = conv_transpose2d(&z(&[1, 3, 5, 5]), &z(&[3, 2, 3, 3]), None, &ctp(1, 0, 1, 2)).unwrap();
    assert_eq!(y.dims(), [1, 2, 10, 10]);
}

#[test]
fn conv2d_and_conv_transpose2d_gradcheck_f64() {
    let cases = duel::ops::conv::gradcheck_cases().unwrap();
    assert!(cases.iter().any(|c| c.op == "conv2d"));
    assert!(cases.iter().any(|c| c.op == "conv_transpose2d"));
    for case in &cases {
        for row in duel::autograd::gradcheck::check(case).unwrap() {
            assert!(
                row.passed,
                "gradcheck failed: {} ({}) input {}: max abs {:e}, max rel {:e}",
                row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
        }
    }
}

#[test]
fn conv2d_records_one_node_and_no_grad_records_none() {
    let d = Device::Cpu;
    let x = t32(&data(2 * 2 * 5 * 6, 1), &[2, 2, 5, 6], &d).with_requires_grad();
    let w = t32(&data(3 * 2 * 3 * 2, 2), &[3, 2, 3, 2], &d).with_requires_grad();
    let y = conv2d(&x, &w, None, &cp(2, 1, 1)).unwrap();
    let tape = duel::autograd::tape(&y);
    assert_eq!(tape.len(), 1);
    assert_eq!(tape[0].op, "conv2d");
    let y = duel::autograd::no_grad(|| conv2d(&x, &w, None, &cp(2, 1, 1)).unwrap());
    assert!(!y.requires_grad());
    // A weight not requiring grad gets none; the input still does.
    let w0 = w.detach();
    let y = conv_transpose2d(
        &x,
        &t32(&data(2 * 3 * 3 * 2, 3), &[2, 3, 3, 2], &d),
        None,
        &ctp(2, 1, 1, 1),
    )
    .unwrap();
    assert_eq!(duel::autograd::tape(&y)[0].op, "conv_transpose2d");
    let y = conv2d(&x, &w0, None, &Conv2dParams::default()).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    assert!(x.grad().is_some());
    assert!(w0.grad().is_none());
}

/// Forward and all three gradients on cpu and emu (f32), with a fixed upstream gradient.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn run_both(
    convt: bool,
    xs: [usize; 4],
    ws: [usize; 4],
    sp: (usize, usize),
    pd: (usize, usize),
    op: (usize, usize),
    dl: (usize, usize),
    seed: u64,
) {
    let dev = emu();
    let x = data(xs.iter().product(), seed);
    let w = data(ws.iter().product(), seed + 1);
    let nb = if convt { ws[1] } else { ws[0] };
    let b = data(nb, seed + 2);
    let run = |d: &Device| -> (Vec<Vec<f64>>, Vec<usize>) {
        let xt = t32(&x, &xs, d).with_requires_grad();
        let wt = t32(&w, &ws, d).with_requires_grad();
        let bt = t32(&b, &[nb], d).with_requires_grad();
        let y = if convt {
            conv_transpose2d(
                &xt,
                &wt,
                Some(&bt),
                &ConvTranspose2dParams {
                    stride: sp,
                    padding: pd,
                    output_padding: op,
                    dilation: dl,
                },
            )
            .unwrap()
        } else {
            conv2d(
                &xt,
                &wt,
                Some(&bt),
                &Conv2dParams {
                    stride: sp,
                    padding: pd,
                    dilation: dl,
                },
            )
            .unwrap()
        };
        let g = t32(&data(y.numel(), seed + 3), y.dims(), d);
        y.backward_with(&g).unwrap();
        let v = |t: Option<Tensor>| t.unwrap().to_f64_vec().unwrap();
        (
            vec![
                y.to_f64_vec().unwrap(),
                v(xt.grad()),
                v(wt.grad()),
                v(bt.grad()),
            ],
            y.dims().to_vec(),
        )
    };
    let (c, cdims) = run(&Device::Cpu);
    let (e, edims) = run(&dev);
    assert_eq!(cdims, edims);
    let (n, l) = (cdims[0], cdims[2] * cdims[3]);
    let kk = ws[2] * ws[3];
    // Terms per element: forward; dx; dw; db (for convT the input spatial size plays L's
    // role in dw and the output's in db).
    let lx = xs[2] * xs[3];
    let ks = if convt {
        [ws[0] * kk + 1, ws[1] * kk, n * lx, n * l]
    } else {
        [ws[1] * kk + 1, ws[0] * kk, n * l, n * l]
    };
    let mags = [(2.0, 2.0), (2.0, 2.0), (2.0, 2.0), (2.0, 1.0)];
    for (i, name) in ["y", "dx", "dw", "db"].iter().enumerate() {
        let tol = 2.0 * f32_tol(ks[i], mags[i].0, mags[i].1);
        assert_close(
            &format!(
                "{} {name} x {xs:?} w {ws:?} s {sp:?} p {pd:?} op {op:?} d {dl:?}",
                if convt { "convT" } else { "conv" }
            ),
            &e[i],
            &c[i],
            tol,
        );
        assert!(max_abs(&c[i]) > 0.0 || c[i].is_empty());
    }
}

#[test]
fn conv2d_emu_matches_cpu_odd_sizes_and_params() {
    run_both(
        false,
        [2, 3, 7, 5],
        [4, 3, 3, 2],
        (1, 1),
        (0, 0),
        (0, 0),
        (1, 1),
        1,
    );
    run_both(
        false,
        [1, 2, 9, 7],
        [3, 2, 3, 3],
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        2,
    );
    run_both(
        false,
        [2, 2, 8, 9],
        [3, 2, 3, 2],
        (1, 1),
        (1, 1),
        (0, 0),
        (2, 2),
        3,
    );
    run_both(
        false,
        [1, 3, 11, 6],
        [2, 3, 2, 3],
        (3, 1),
        (2, 0),
        (0, 0),
        (1, 2),
        4,
    );
    run_both(
        false,
        [3, 1, 5, 5],
        [1, 1, 1, 1],
        (1, 1),
        (0, 0),
        (0, 0),
        (1, 1),
        5,
    );
}

#[test]
fn conv_transpose2d_emu_matches_cpu_odd_sizes_and_params() {
    run_both(
        true,
        [2, 3, 4, 5],
        [3, 2, 3, 2],
        (1, 1),
        (0, 0),
        (0, 0),
        (1, 1),
        11,
    );
    run_both(
        true,
        [1, 2, 5, 3],
        [2, 3, 3, 3],
        (2, 2),
        (1, 1),
        (1, 1),
        (1, 1),
        12,
    );
    run_both(
        true,
        [2, 2, 3, 4],
        [2, 3, 3, 2],
        (1, 1),
        (1, 1),
        (1, 1),
        (2, 2),
        13,
    );
    run_both(
        true,
        [1, 3, 3, 2],
        [3, 2, 2, 3],
        (1, 3),
        (1, 0),
        (0, 2),
        (1, 1),
        14,
    );
    run_both(
        true,
        [2, 1, 4, 3],
        [1, 1, 1, 1],
        (2, 2),
        (0, 0),
        (1, 1),
        (1, 1),
        15,
    );
}

#[test]
fn conv2d_emu_matches_cpu_dcgan_layers() {
    // Discriminator: 1 -> 64 on 28x28, then 64 -> 128 on 14x14, both 4x4/2/1.
    run_both(
        false,
        [2, 1, 28, 28],
        [64, 1, 4, 4],
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        21,
    );
    run_both(
        false,
        [1, 64, 14, 14],
        [128, 64, 4, 4],
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        22,
    );
}

/// Layers whose one window covers the whole image (dcgan64's D.conv5, 512 -> 1 on 4x4,
/// and G.convt1, 100 -> 512 from 1x1, here with fewer channels) run as dense GEMMs on
/// cpu (`conv/dense.rs`); the emulator runs the ordinary kernels. A batch of 40 and depths
/// of 50 and 1024 put every product on the cpu's full GEMM path (k >= 32).
#[test]
fn conv_layers_covering_the_image_match_emu() {
    let (none, one) = ((0, 0), (1, 1));
    run_both(
        false,
        [40, 64, 4, 4],
        [1, 64, 4, 4],
        one,
        none,
        none,
        one,
        41,
    );
    run_both(
        true,
        [40, 50, 1, 1],
        [50, 8, 4, 4],
        one,
        none,
        none,
        one,
        42,
    );
}

#[test]
fn conv_transpose2d_emu_matches_cpu_dcgan_layers() {
    // Generator: 128 -> 64 on 7x7, then 64 -> 1 on 14x14, both 4x4/2/1.
    run_both(
        true,
        [1, 128, 7, 7],
        [128, 64, 4, 4],
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        31,
    );
    run_both(
        true,
        [2, 64, 14, 14],
        [64, 1, 4, 4],
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        32,
    );
}

#[test]
fn conv2d_cpu_dcgan_layers_batch_64_match_reference_loops() {
    // The direct Cin = 1 path and the multi-threaded batch split at the training batch size.
    let (xs, ws, p) = ([64, 1, 28, 28], [64, 1, 4, 4], cp(2, 2 / 2, 1));
    let (x, w) = (data(xs.iter().product(), 41), data(ws.iter().product(), 42));
    let (want, _) = ref_conv2d(&x, xs, &w, ws, None, &p);
    let y = conv2d(&t64(&x, &xs), &t64(&w, &ws), None, &p).unwrap();
    assert_close("dcgan conv1 f64", &y.to_f64_vec().unwrap(), &want, 1e-11);
}

/// Forward and gradients of a batch equal those of its images run one at a time (summed
/// for the weight and bias): checks the cpu batch chunking across threads and the blocks
/// of images sharing one GEMM (here L = 256 gives blocks of 3 or 4 images, with a partial
/// last block). `c` is the channel count of the image the weight gradient's columns come
/// from: 2 takes the per-batch-task path, 6 the split by channel groups (1, 1, 2, 2
/// channels). f64, tolerance 1e-11 (sums of < 600 terms of magnitude <= 4 in another
/// order: 600·4·2^-53 ≈ 3e-13, with margin) and 1e-10 for the sums over the batch.
#[test]
fn conv2d_and_conv_transpose2d_cpu_batch_equals_per_image() {
    for (convt, c) in [(false, 2), (false, 6), (true, 2), (true, 6)] {
        let n = 9;
        let (xs, ws) = if convt {
            ([n, 3, 16, 16], [3, c, 3, 3])
        } else {
            ([n, c, 16, 16], [3, c, 3, 3])
        };
        let x = data(xs.iter().product(), 71);
        let w = t64(&data(ws.iter().product(), 72), &ws);
        let nb = if convt { ws[1] } else { ws[0] };
        let b = t64(&data(nb, 73), &[nb]);
        let run = |xv: &[f64], xs: [usize; 4]| {
            let xt = t64(xv, &xs).with_requires_grad();
            let (wt, bt) = (
                w.detach().with_requires_grad(),
                b.detach().with_requires_grad(),
            );
            let y = if convt {
                conv_transpose2d(&xt, &wt, Some(&bt), &ctp(1, 1, 0, 1)).unwrap()
            } else {
                conv2d(&xt, &wt, Some(&bt), &cp(1, 1, 1)).unwrap()
            };
            let g = t64(&data(y.numel(), 74 + xs[0] as u64), y.dims());
            y.backward_with(&g).unwrap();
            let v = |t: Option<Tensor>| t.unwrap().to_f64_vec().unwrap();
            (
                y.to_f64_vec().unwrap(),
                v(xt.grad()),
                v(wt.grad()),
                v(bt.grad()),
                g.to_f64_vec().unwrap(),
            )
        };
        // The whole batch, with the upstream gradient made of the per-image ones.
        let per = xs[1] * xs[2] * xs[3];
        let mut ys = Vec::new();
        let mut dxs = Vec::new();
        let mut dw = vec![0.0; ws.iter().product()];
        let mut db = vec![0.0; nb];
        let mut gs = Vec::new();
        for i in 0..n {
            let (y, dx, dwi, dbi, g) = run(&x[i * per..][..per], [1, xs[1], xs[2], xs[3]]);
            ys.extend(y);
            dxs.extend(dx);
            gs.extend(g);
            dw.iter_mut().zip(dwi).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(dbi).for_each(|(a, b)| *a += b);
        }
        let xt = t64(&x, &xs).with_requires_grad();
        let (wt, bt) = (
            w.detach().with_requires_grad(),
            b.detach().with_requires_grad(),
        );
        let y = if convt {
            conv_transpose2d(&xt, &wt, Some(&bt), &ctp(1, 1, 0, 1)).unwrap()
        } else {
            conv2d(&xt, &wt, Some(&bt), &cp(1, 1, 1)).unwrap()
        };
        y.backward_with(&t64(&gs, y.dims())).unwrap();
        let name = if convt {
            format!("convT c={c}")
        } else {
            format!("conv c={c}")
        };
        assert_close(&format!("{name} y"), &y.to_f64_vec().unwrap(), &ys, 1e-11);
        assert_close(
            &format!("{name} dx"),
            &xt.grad().unwrap().to_f64_vec().unwrap(),
            &dxs,
            1e-11,
        );
        assert_close(
            &format!("{name} dw"),
            &wt.grad().unwrap().to_f64_vec().unwrap(),
            &dw,
            1e-10,
        );
        assert_close(
            &format!("{name} db"),
            &bt.grad().unwrap().to_f64_vec().unwrap(),
            &db,
            1e-10,
        );
    }
}

/// A transposed conv whose column matrix is tall (R = 301·4·4 = 4816 rows) runs its
/// GEMM + col2im in tiles of output channels (`conv::cpu::col2im_channels`; the same code
/// gives conv2d's input gradient). Each output channel depends only on its own rows, in
/// the same order, so it must equal, bit for bit, the product for that channel alone (16
/// rows: one tile) — the channels checked sit on both sides of the tile boundaries.
#[test]
fn col2im_channel_tiles_give_the_bits_of_each_channel_alone() {
    let (n, ci, co, h, ho) = (2, 64, 301, 8, 16);
    let d = Device::Cpu;
    let (x, w) = (data(n * ci * h * h, 11), data(ci * co * 16, 12));
    let xt = t32(&x, &[n, ci, h, h], &d);
    let p = ctp(2, 1, 0, 1);
    let y = conv_transpose2d(&xt, &t32(&w, &[ci, co, 4, 4], &d), None, &p)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let plane = ho * ho;
    for c in [0, 99, 100, 101, 150, 151, 202, 203, 300] {
        let wc: Vec<f64> = (0..ci)
            .flat_map(|i| w[(i * co + c) * 16..][..16].to_vec())
            .collect();
        let alone = conv_transpose2d(&xt, &t32(&wc, &[ci, 1, 4, 4], &d), None, &p)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        for img in 0..n {
            let got = &y[(img * co + c) * plane..][..plane];
            let want = &alone[img * plane..][..plane];
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "output channel {c} of image {img} differs from its product alone"
            );
        }
    }
}
