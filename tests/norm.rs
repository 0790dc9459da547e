//! batch_norm / instance_norm2d: hand-checked values, running-stat updates (unbiased
//! variance), eval mode, affine / not, errors, gradcheck (f64 cpu) and emu-vs-cpu parity
//! (forward and backward, f32) at odd sizes and the DCGAN shapes.
//!
//! Parity tolerance: emu computes in f32 with a different summation order than the cpu
//! reference (f64 sums); outputs and gradients agree within 2e-4·(1 + |value|)
//! (normalised values are O(1); 5e-4 for the per-channel weight/bias sums over many
//! elements, relative to the largest magnitude).

use duel::autograd::gradcheck;
use duel::ops::norm::{batch_norm, instance_norm2d};
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn cpu(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape.to_vec(), &Device::Cpu).unwrap()
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "element {i}: {x} vs {y} (tol {tol})"
        );
    }
}

#[test]
fn batch_norm_hand_checked_two_values() {
    // [[1],[3]]: mean 2, biased var 1 → [-1, 1]/sqrt(1 + eps)
    let eps = 1e-5;
    let x = cpu(&[1.0, 3.0], &[2, 1]);
    let y = batch_norm(&x, None, None, None, None, true, 0.1, eps).unwrap();
    let s = 1.0 / (1.0f64 + eps).sqrt();
    close(&v(&y), &[-s as f32, s as f32], 1e-7);
    // affine: γ = 2, β = 0.5
    let w = cpu(&[2.0], &[1]);
    let b = cpu(&[0.5], &[1]);
    let y = batch_norm(&x, None, None, Some(&w), Some(&b), true, 0.1, eps).unwrap();
    close(
        &v(&y),
        &[(0.5 - 2.0 * s) as f32, (0.5 + 2.0 * s) as f32],
        1e-7,
    );
}

#[test]
fn batch_norm_running_stats_update_with_unbiased_variance() {
    // channel 0: [1, 2, 3, 6] → mean 3, biased var (4+1+0+9)/4 = 3.5, unbiased 14/3
    // channel 1: [0, 0, 4, 4] → mean 2, biased var 4, unbiased 16/3
    // x is [N=2, C=2, L=2]
    let x = cpu(&[1.0, 2.0, 0.0, 0.0, 3.0, 6.0, 4.0, 4.0], &[2, 2, 2]);
    let rm = cpu(&[0.0, 1.0], &[2]);
    let rv = cpu(&[1.0, 2.0], &[2]);
    let y = batch_norm(&x, Some(&rm), Some(&rv), None, None, true, 0.1, 0.0).unwrap();
    close(
        &v(&rm),
        &[0.9 * 0.0 + 0.1 * 3.0, 0.9 * 1.0 + 0.1 * 2.0],
        1e-6,
    );
    close(
        &v(&rv),
        &[0.9 + 0.1 * 14.0 / 3.0, 0.9 * 2.0 + 0.1 * 16.0 / 3.0],
        1e-6,
    );
    // normalised with the biased variance
    let s0 = 1.0 / 3.5f32.sqrt();
    close(
        &v(&y),
        &[-2.0 * s0, -s0, -1.0, -1.0, 0.0, 3.0 * s0, 1.0, 1.0],
        1e-6,
    );
    // the same on emu: running buffers updated in place by the kernel
    let e = emu();
    let (xe, rme, rve) = (
        x.to_device(&e).unwrap(),
        cpu(&[0.0, 1.0], &[2]).to_device(&e).unwrap(),
        cpu(&[1.0, 2.0], &[2]).to_device(&e).unwrap(),
    );
    let ye = batch_norm(&xe, Some(&rme), Some(&rve), None, None, true, 0.1, 0.0).unwrap();
    close(&v(&ye), &v(&y), 1e-6);
    close(&v(&rme), &v(&rm), 1e-6);
    close(&v(&rve), &v(&rv), 1e-6);
}

#[test]
fn batch_norm_eval_uses_running_stats() {
    let x = cpu(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let rm = cpu(&[1.0, -1.0], &[2]);
    let rv = cpu(&[4.0, 0.25], &[2]);
    let w = cpu(&[2.0, 1.0], &[2]);
    let b = cpu(&[0.0, 1.0], &[2]);
    let y = batch_norm(
        &x,
        Some(&rm),
        Some(&rv),
        Some(&w),
        Some(&b),
        false,
        0.1,
        0.0,
    )
    .unwrap();
    // c0: (x-1)/2·2; c1: (x+1)/0.5 + 1
    close(&v(&y), &[0.0, 7.0, 2.0, 11.0], 1e-6);
    // running stats untouched in eval
    assert_eq!(v(&rm), vec![1.0, -1.0]);
    assert_eq!(v(&rv), vec![4.0, 0.25]);
    // gradient in eval: dx = w·invstd·dy, dw = Σ dy·x̂, db = Σ dy
    let xg = x.with_requires_grad();
    let wg = w.with_requires_grad();
    let bg = b.with_requires_grad();
    let y = batch_norm(
        &xg,
        Some(&rm),
        Some(&rv),
        Some(&wg),
        Some(&bg),
        false,
        0.1,
        0.0,
    )
    .unwrap();
    y.sum_all().unwrap().backward().unwrap();
    close(&v(&xg.grad().unwrap()), &[1.0, 2.0, 1.0, 2.0], 1e-6);
    // x̂: c0 = [0, 1], c1 = [6, 10]
    close(&v(&wg.grad().unwrap()), &[1.0, 16.0], 1e-6);
    close(&v(&bg.grad().unwrap()), &[2.0, 2.0], 1e-6);
    // the same on emu
    let e = emu();
    let to = |t: &Tensor| t.to_device(&e).unwrap();
    let (xe, we, be) = (
        to(&x).with_requires_grad(),
        to(&w).with_requires_grad(),
        to(&b).with_requires_grad(),
    );
    let ye = batch_norm(
        &xe,
        Some(&to(&rm)),
        Some(&to(&rv)),
        Some(&we),
        Some(&be),
        false,
        0.1,
        0.0,
    )
    .unwrap();
    close(&v(&ye), &[0.0, 7.0, 2.0, 11.0], 1e-6);
    ye.sum_all().unwrap().backward().unwrap();
    close(&v(&xe.grad().unwrap()), &[1.0, 2.0, 1.0, 2.0], 1e-6);
    close(&v(&we.grad().unwrap()), &[1.0, 16.0], 1e-6);
    close(&v(&be.grad().unwrap()), &[2.0, 2.0], 1e-6);
}

#[test]
fn batch_norm_training_backward_hand_checked() {
    // [[1],[3]], eps 0: x̂ = [-1, 1]; with loss Σ c·y, c = [1, 3], w = 2:
    // Σdy = 4·... dy = c·1 → Σdy = 4, Σdy·x̂ = 2; dx = (w/σ/M)(M·dy − Σdy − x̂Σdyx̂)
    // σ = 1, M = 2: dx0 = (2/2)(2 − 4 + 2) = 0, dx1 = (2/2)(6 − 4 − 2) = 0.
    // (y is affine in x̂, and the loss is linear in y with c ∝ x̂ + const → dx = 0.)
    let x = cpu(&[1.0, 3.0], &[2, 1]).with_requires_grad();
    let w = cpu(&[2.0], &[1]).with_requires_grad();
    let b = cpu(&[0.0], &[1]).with_requires_grad();
    let y = batch_norm(&x, None, None, Some(&w), Some(&b), true, 0.1, 0.0).unwrap();
    y.backward_with(&cpu(&[1.0, 3.0], &[2, 1])).unwrap();
    close(&v(&x.grad().unwrap()), &[0.0, 0.0], 1e-6);
    close(&v(&w.grad().unwrap()), &[2.0], 1e-6);
    close(&v(&b.grad().unwrap()), &[4.0], 1e-6);
    // x = [0, 1, 5]: M = 3, mean 2, var 14/3 = σ², x̂ = [-2, -1, 3]/σ; dy = [1, 0, 0], w = 1:
    // Σdy = 1, Σdy·x̂ = -2/σ → dx = (1/(3σ))(3·dy − 1 + 2x̂/σ) = (1/(3σ))·[8/7, -10/7, 2/7]
    let x = cpu(&[0.0, 1.0, 5.0], &[3, 1]).with_requires_grad();
    let y = batch_norm(&x, None, None, None, None, true, 0.1, 0.0).unwrap();
    y.backward_with(&cpu(&[1.0, 0.0, 0.0], &[3, 1])).unwrap();
    let k = 1.0 / (3.0 * (14.0f32 / 3.0).sqrt());
    close(
        &v(&x.grad().unwrap()),
        &[k * 8.0 / 7.0, -k * 10.0 / 7.0, k * 2.0 / 7.0],
        1e-6,
    );
}

#[test]
fn batch_norm_errors() {
    let x = cpu(&[1.0, 2.0, 3.0], &[1, 3]);
    let err = batch_norm(&x, None, None, None, None, true, 0.1, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 1 value per channel"), "{err}");
    // N=1 with H=W=1 as well
    let x4 = cpu(&[1.0, 2.0], &[1, 2, 1, 1]);
    assert!(batch_norm(&x4, None, None, None, None, true, 0.1, 1e-5).is_err());
    // but N=1 with H·W > 1 is fine
    let x4 = cpu(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    assert!(batch_norm(&x4, None, None, None, None, true, 0.1, 1e-5).is_ok());
    // eval mode without running stats
    let x = cpu(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let err = batch_norm(&x, None, None, None, None, false, 0.1, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("eval mode"), "{err}");
    // a wrong-size weight
    let w = cpu(&[1.0, 2.0, 3.0], &[3]);
    let err = batch_norm(&x, None, None, Some(&w), None, true, 0.1, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight must have shape [2]"), "{err}");
    // rank 1
    assert!(batch_norm(
        &cpu(&[1.0, 2.0], &[2]),
        None,
        None,
        None,
        None,
        true,
        0.1,
        1e-5
    )
    .is_err());
    // f64 running stats with an f32 input
    let rm = Tensor::zeros([2], DType::F64, &Device::Cpu).unwrap();
    let rv = Tensor::ones([2], DType::F64, &Device::Cpu).unwrap();
    assert!(batch_norm(&x, Some(&rm), Some(&rv), None, None, true, 0.1, 1e-5).is_err());
    // device mismatch
    let we = cpu(&[1.0, 1.0], &[2]).to_device(&emu()).unwrap();
    assert!(batch_norm(&x, None, None, Some(&we), None, true, 0.1, 1e-5).is_err());
}

#[test]
fn instance_norm2d_hand_checked_and_errors() {
    // one plane [1, 2, 3, 6] (mean 3, var 3.5), one plane [0, 0, 4, 4] (mean 2, var 4)
    let x = cpu(&[1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 4.0, 4.0], &[2, 1, 2, 2]);
    let y = instance_norm2d(&x, None, None, 0.0).unwrap();
    let s0 = 1.0 / 3.5f32.sqrt();
    close(
        &v(&y),
        &[-2.0 * s0, -s0, 0.0, 3.0 * s0, -1.0, -1.0, 1.0, 1.0],
        1e-6,
    );
    let w = cpu(&[3.0], &[1]);
    let b = cpu(&[-1.0], &[1]);
    let ya = instance_norm2d(&x, Some(&w), Some(&b), 0.0).unwrap();
    let expect: Vec<f32> = v(&y).iter().map(|a| 3.0 * a - 1.0).collect();
    close(&v(&ya), &expect, 1e-6);
    // errors: 1 spatial element, rank 3
    assert!(
        instance_norm2d(&cpu(&[1.0, 2.0], &[2, 1, 1, 1]), None, None, 1e-5)
            .unwrap_err()
            .to_string()
            .contains("more than 1 spatial element")
    );
    assert!(instance_norm2d(&cpu(&[1.0, 2.0], &[1, 1, 2]), None, None, 1e-5).is_err());
}

#[test]
fn batch_norm_gradcheck() {
    for case in duel::ops::norm::gradcheck_cases().unwrap() {
        for row in gradcheck::check(&case).unwrap() {
            assert!(
                row.passed,
                "{} ({}), input {}: max abs err {:e}, max rel err {:e}",
                row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
        }
    }
}

/// Deterministic inputs of a shape: a smooth pattern plus Philox noise, f32 on cpu.
fn pattern(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape.to_vec(), seed, 0, &Device::Cpu)
        .unwrap()
        .affine(1.5, 0.25)
        .unwrap()
}

/// Run `f` on cpu and emu with the same inputs (inputs require grad), backprop the same
/// weights, and compare outputs and every input gradient.
fn parity(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor, tol_out: f32, tol_grad: f32) {
    let e = emu();
    let run = |dev: &Device| {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.to_device(dev).unwrap().with_requires_grad())
            .collect();
        let y = f(&xs);
        let r = Tensor::randn(y.shape().clone(), 99, 0, dev).unwrap();
        y.backward_with(&r).unwrap();
        let grads: Vec<Vec<f32>> = xs.iter().map(|x| v(&x.grad().unwrap())).collect();
        (v(&y), grads)
    };
    let (yc, gc) = run(&Device::Cpu);
    let (ye, ge) = run(&e);
    close(&ye, &yc, tol_out);
    for (i, (a, b)) in ge.iter().zip(&gc).enumerate() {
        let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol_grad * scale,
                "grad of input {i}, element {j}: emu {x} vs cpu {y} (scale {scale})"
            );
        }
    }
}

#[test]
fn batch_norm_emu_parity_odd_sizes() {
    for (shape, seed) in [
        (vec![5usize, 3], 1u64),
        (vec![3, 5, 7], 2),
        (vec![3, 3, 5, 7], 3),
        (vec![1, 2, 3, 5], 4),   // batch 1 (spatial statistics)
        (vec![7, 1, 33, 11], 5), // M = 2541 > block size, many loop trips
    ] {
        let c = shape[1];
        let x = pattern(&shape, seed);
        let w = pattern(&[c], seed + 10);
        let b = pattern(&[c], seed + 20);
        parity(
            &[x.clone(), w, b],
            |t| batch_norm(&t[0], None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5).unwrap(),
            2e-4,
            5e-4,
        );
        // not affine
        parity(
            &[x],
            |t| batch_norm(&t[0], None, None, None, None, true, 0.1, 1e-5).unwrap(),
            2e-4,
            5e-4,
        );
    }
}

#[test]
fn batch_norm_emu_parity_eval_and_running_stats() {
    let e = emu();
    let x = pattern(&[4, 3, 5, 3], 40);
    let rm = pattern(&[3], 41);
    let rv = Tensor::rand([3], 42, 0, &Device::Cpu)
        .unwrap()
        .affine(1.0, 0.5)
        .unwrap();
    let w = pattern(&[3], 43);
    let b = pattern(&[3], 44);
    let (rm2, rv2) = (rm.clone(), rv.clone());
    parity(
        &[x.clone(), w.clone(), b.clone()],
        move |t| {
            let d = t[0].device().clone();
            batch_norm(
                &t[0],
                Some(&rm2.to_device(&d).unwrap()),
                Some(&rv2.to_device(&d).unwrap()),
                Some(&t[1]),
                Some(&t[2]),
                false,
                0.1,
                1e-5,
            )
            .unwrap()
        },
        2e-5,
        2e-5,
    );
    // running statistic updates agree
    let (rmc, rvc) = (rm.contiguous().unwrap(), rv.contiguous().unwrap());
    let (rmc, rvc) = (
        Tensor::from_vec(v(&rmc), [3], &Device::Cpu).unwrap(),
        Tensor::from_vec(v(&rvc), [3], &Device::Cpu).unwrap(),
    );
    let (rme, rve) = (rm.to_device(&e).unwrap(), rv.to_device(&e).unwrap());
    batch_norm(
        &x,
        Some(&rmc),
        Some(&rvc),
        Some(&w),
        Some(&b),
        true,
        0.3,
        1e-5,
    )
    .unwrap();
    batch_norm(
        &x.to_device(&e).unwrap(),
        Some(&rme),
        Some(&rve),
        Some(&w.to_device(&e).unwrap()),
        Some(&b.to_device(&e).unwrap()),
        true,
        0.3,
        1e-5,
    )
    .unwrap();
    close(&v(&rme), &v(&rmc), 1e-5);
    close(&v(&rve), &v(&rvc), 1e-5);
}

#[test]
fn batch_norm_emu_parity_dcgan_shapes() {
    for (shape, seed) in [(vec![2usize, 64, 14, 14], 50u64), (vec![3, 128, 7, 7], 51)] {
        let c = shape[1];
        parity(
            &[
                pattern(&shape, seed),
                pattern(&[c], seed + 1),
                pattern(&[c], seed + 2),
            ],
            |t| batch_norm(&t[0], None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5).unwrap(),
            2e-4,
            5e-4,
        );
    }
}

#[test]
fn instance_norm2d_emu_parity() {
    for (shape, seed) in [
        (vec![1usize, 3, 5, 7], 60u64),
        (vec![3, 2, 17, 19], 61),
        (vec![2, 5, 2, 1], 62),
    ] {
        let c = shape[1];
        let x = pattern(&shape, seed);
        parity(
            &[x.clone(), pattern(&[c], seed + 1), pattern(&[c], seed + 2)],
            |t| instance_norm2d(&t[0], Some(&t[1]), Some(&t[2]), 1e-5).unwrap(),
            2e-4,
            5e-4,
        );
        parity(
            &[x],
            |t| instance_norm2d(&t[0], None, None, 1e-5).unwrap(),
            2e-4,
            5e-4,
        );
    }
}

#[test]
fn batch_norm_strided_input_matches_contiguous() {
    let x = pattern(&[3, 4], 70);
    let xt = x.t().unwrap(); // [4, 3], strided
    let a = batch_norm(&xt, None, None, None, None, true, 0.1, 1e-5).unwrap();
    let b = batch_norm(
        &xt.contiguous().unwrap(),
        None,
        None,
        None,
        None,
        true,
        0.1,
        1e-5,
    )
    .unwrap();
    assert_eq!(v(&a), v(&b));
    let e = emu();
    let xe = x.to_device(&e).unwrap().t().unwrap();
    let c = batch_norm(&xe, None, None, None, None, true, 0.1, 1e-5).unwrap();
    close(&v(&c), &v(&b), 2e-4);
}

/// `[N, C]` batch norm (one group per column, the `columns` path of the cpu backend)
/// against its definition written out here in f64, in the order the cpu reference states
/// (src/ops/norm/cpu.rs): Σx over rows in order, mean = Σx/N, Σ(x − mean)² in order,
/// var = that/N, invstd = 1/√(var + ε); y = (x − mean)·invstd·w + b; Σdy and
/// Σdy·(x − mean)·invstd in row order (mean and invstd as stored in the tensor's dtype);
/// dx = w·invstd·(dy − Σdy/N − x̂·Σdy·x̂/N). Every operation is the same IEEE f64
/// operation, so the results must agree bit for bit (tolerance 0) in f64, where any other
/// order shows, and in f32, at a size the cpu backend runs in parallel and at a small one
/// it runs on one thread.
#[test]
fn batch_norm_columns_match_their_f64_definition_bitwise() {
    for dtype in [DType::F64, DType::F32] {
        // The dtype's rounding of an f64 value.
        let round = |v: f64| {
            if dtype == DType::F32 {
                v as f32 as f64
            } else {
                v
            }
        };
        for &(n, c) in &[(37usize, 1000usize), (5, 7)] {
            let eps = 1e-5;
            let xs: Vec<f64> = (0..n * c)
                .map(|i| ((i * 7919 % 1009) as f64 / 97.0 - 5.0) * (1.0 + (i % 13) as f64))
                .collect();
            let ws: Vec<f64> = (0..c).map(|j| 0.5 + (j % 11) as f64 / 7.0).collect();
            let bs: Vec<f64> = (0..c).map(|j| (j % 5) as f64 / 3.0 - 0.5).collect();
            let gs: Vec<f64> = (0..n * c)
                .map(|i| ((i * 31 % 101) as f64 - 50.0) / 23.0)
                .collect();
            let [xs, ws, bs, gs] =
                [xs, ws, bs, gs].map(|v| v.into_iter().map(round).collect::<Vec<_>>());
            let t = |v: &[f64], shape: &[usize]| {
                Tensor::from_slice(v, shape.to_vec(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            let x = t(&xs, &[n, c]).with_requires_grad();
            let w = t(&ws, &[c]).with_requires_grad();
            let b = t(&bs, &[c]).with_requires_grad();
            let y = batch_norm(&x, None, None, Some(&w), Some(&b), true, 0.1, eps).unwrap();
            y.mul(&t(&gs, &[n, c]))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();

            let at = |v: &[f64], i: usize, j: usize| v[i * c + j];
            let (mut want_y, mut want_dx) = (vec![0f64; n * c], vec![0f64; n * c]);
            let (mut want_dw, mut want_db) = (vec![0f64; c], vec![0f64; c]);
            for j in 0..c {
                let mut s = 0.0;
                (0..n).for_each(|i| s += at(&xs, i, j));
                let mean = s / n as f64;
                let mut q = 0.0;
                (0..n).for_each(|i| q += (at(&xs, i, j) - mean) * (at(&xs, i, j) - mean));
                let invstd = 1.0 / (q / n as f64 + eps).sqrt();
                let (wv, bv) = (ws[j], bs[j]);
                for i in 0..n {
                    want_y[i * c + j] = round((at(&xs, i, j) - mean) * invstd * wv + bv);
                }
                let (mean, invstd) = (round(mean), round(invstd));
                let (mut sdy, mut sdyx) = (0.0, 0.0);
                for i in 0..n {
                    let d = at(&gs, i, j);
                    sdy += d;
                    sdyx += d * (at(&xs, i, j) - mean) * invstd;
                }
                let k = wv * invstd;
                for i in 0..n {
                    let xhat = (at(&xs, i, j) - mean) * invstd;
                    let d = at(&gs, i, j);
                    want_dx[i * c + j] = round(k * (d - sdy / n as f64 - xhat * (sdyx / n as f64)));
                }
                want_dw[j] = round(sdyx);
                want_db[j] = round(sdy);
            }
            let bits = |t: &Tensor| {
                t.to_f64_vec()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            };
            let want = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let what = format!("{dtype} [{n}, {c}]");
            assert_eq!(bits(&y), want(&want_y), "{what}: y");
            assert_eq!(bits(&x.grad().unwrap()), want(&want_dx), "{what}: dx");
            assert_eq!(bits(&w.grad().unwrap()), want(&want_dw), "{what}: dw");
            assert_eq!(bits(&b.grad().unwrap()), want(&want_db), "{what}: db");
        }
    }
}
