//! Optimizers and weight clipping (src/optim, kernels/optim.cu).
//!
//! Expected values are written out by hand below (the arithmetic is in the comments; the
//! decimals were evaluated in f64 with the textbook formulas, e.g. Adam's m̂/(√v̂ + eps),
//! not with the code under test). Tolerances: cpu f64 within 1e-12 of the hand values, cpu
//! f32 within 1e-6 (a few f32 ulps of values ≈ 1 after 3 steps). emu vs cpu f32: **bitwise**
//! — the kernels perform the same IEEE f32 operations in the same order as the cpu
//! reference (no FMA contraction: `__f*_rn` intrinsics, `-ffp-contract=off` in the
//! emulator; sqrt and division are correctly rounded in both).

use duel::optim::{
    clip_grad_norm, clip_weights, grad_norm, Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig,
    Sgd, SgdConfig,
};
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

/// A named f32/f64 parameter leaf on `dev`.
fn param(data: &[f64], dtype: DType, dev: &Device, name: &str) -> Tensor {
    let t = Tensor::from_slice(data, [data.len()], &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap();
    t.with_requires_grad_named(name)
}

/// Replace the gradient of leaf `p` with `g`.
fn set_grad(p: &Tensor, g: &[f64]) {
    p.zero_grad();
    let g = Tensor::from_slice(g, p.shape().clone(), &Device::Cpu)
        .unwrap()
        .to_dtype(p.dtype())
        .unwrap()
        .to_device(p.device())
        .unwrap();
    p.backward_with(&g).unwrap();
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-6
    }
}

/// Run `steps` (grads per step) through an optimizer built by `make` on cpu f64, cpu f32 and
/// emu f32; check each against `want` (parameter after each step) and emu == cpu f32 bitwise.
fn run_case(
    p0: &[f64],
    grads: &[&[f64]],
    want: &[&[f64]],
    make: &dyn Fn(Vec<Tensor>) -> Box<dyn Optimizer>,
) {
    let mut f32_results: Vec<Vec<Vec<f32>>> = Vec::new();
    for (dtype, dev) in [
        (DType::F64, Device::Cpu),
        (DType::F32, Device::Cpu),
        (DType::F32, emu()),
    ] {
        let p = param(p0, dtype, &dev, "w");
        let mut opt = make(vec![p.clone()]);
        let mut traj = Vec::new();
        for (s, (g, w)) in grads.iter().zip(want).enumerate() {
            set_grad(&p, g);
            opt.step().unwrap();
            assert_close(
                &vals(&p),
                w,
                tol(dtype),
                &format!("{dtype} {dev} step {}", s + 1),
            );
            if dtype == DType::F32 {
                traj.push(f32s(&p));
            }
        }
        assert_eq!(opt.steps(), grads.len() as u64);
        if dtype == DType::F32 {
            f32_results.push(traj);
        }
    }
    assert_eq!(
        f32_results[0], f32_results[1],
        "emu must match cpu f32 bitwise"
    );
}

#[test]
fn optim_sgd_momentum_hand_checked() {
    // lr 0.1, momentum 0.9, p0 = [1, -2], g = [0.5, 1] every step.
    // step 1: buf = g = [0.5, 1];                         p = [1 - 0.05, -2 - 0.1]      = [0.95, -2.1]
    // step 2: buf = 0.9·buf + g = [0.95, 1.9];            p = [0.95 - 0.095, -2.1 - 0.19] = [0.855, -2.29]
    // step 3: buf = [0.9·0.95 + 0.5, 0.9·1.9 + 1] = [1.355, 2.71]; p = [0.855 - 0.1355, -2.29 - 0.271] = [0.7195, -2.561]
    let g: &[f64] = &[0.5, 1.0];
    run_case(
        &[1.0, -2.0],
        &[g, g, g],
        &[&[0.95, -2.1], &[0.855, -2.29], &[0.7195, -2.561]],
        &|ps| Box::new(Sgd::new(ps, SgdConfig::new(0.1).momentum(0.9)).unwrap()),
    );
    // dampening 0.5: step 1 buf = g (PyTorch: no dampening on the first step) → p = 0.95;
    // step 2: buf = 0.9·0.5 + 0.5·0.5 = 0.7 → p = 0.95 - 0.07 = 0.88
    run_case(&[1.0], &[&[0.5], &[0.5]], &[&[0.95], &[0.88]], &|ps| {
        Box::new(Sgd::new(ps, SgdConfig::new(0.1).momentum(0.9).dampening(0.5)).unwrap())
    });
}

#[test]
fn optim_sgd_weight_decay_and_nesterov() {
    // plain SGD, lr 0.1, weight decay 0.1, p0 = [1, -2], g = [0.5, 1]:
    // step 1: d = g + 0.1·p = [0.6, 0.8];          p = [1 - 0.06, -2 - 0.08]       = [0.94, -2.08]
    // step 2: d = [0.5 + 0.094, 1 - 0.208] = [0.594, 0.792]; p = [0.94 - 0.0594, -2.08 - 0.0792] = [0.8806, -2.1592]
    let g: &[f64] = &[0.5, 1.0];
    run_case(
        &[1.0, -2.0],
        &[g, g],
        &[&[0.94, -2.08], &[0.8806, -2.1592]],
        &|ps| Box::new(Sgd::new(ps, SgdConfig::new(0.1).weight_decay(0.1)).unwrap()),
    );
    // nesterov, lr 0.1, momentum 0.9, p0 = 1, g = 0.5:
    // step 1: buf = 0.5, d = 0.5 + 0.9·0.5 = 0.95, p = 1 - 0.095 = 0.905
    // step 2: buf = 0.9·0.5 + 0.5 = 0.95, d = 0.5 + 0.9·0.95 = 1.355, p = 0.905 - 0.1355 = 0.7695
    run_case(&[1.0], &[&[0.5], &[0.5]], &[&[0.905], &[0.7695]], &|ps| {
        Box::new(Sgd::new(ps, SgdConfig::new(0.1).momentum(0.9).nesterov(true)).unwrap())
    });
}

#[test]
fn optim_adam_three_steps_bias_correction() {
    // lr 0.1, β = (0.9, 0.999), eps 1e-8, p0 = [1, -1]; grads g1 = [0.5, -2], g2 = [0.1, 1],
    // g3 = [-0.3, 0]. m̂ = m/(1 - 0.9^t), v̂ = v/(1 - 0.999^t), p -= 0.1·m̂/(√v̂ + 1e-8).
    // element 0:
    //  t=1: m = 0.1·0.5 = 0.05, v = 0.001·0.25 = 0.00025; m̂ = 0.05/0.1 = 0.5, v̂ = 0.00025/0.001 = 0.25
    //       p = 1 - 0.1·0.5/(0.5 + 1e-8) = 0.900000002
    //  t=2: m = 0.9·0.05 + 0.1·0.1 = 0.055, v = 0.999·0.00025 + 0.001·0.01 = 0.00025975
    //       m̂ = 0.055/0.19 = 0.289473684…, v̂ = 0.00025975/0.001999 = 0.129939969…
    //       p = 0.900000002 - 0.1·0.289473684/0.360471870 = 0.819695906…
    //  t=3: m = 0.9·0.055 - 0.03 = 0.0195, v = 0.999·0.00025975 + 0.001·0.09 = 0.00034949025
    //       m̂ = 0.0195/0.271 = 0.071955720…, v̂ = 0.00034949025/0.002997001 = 0.116613324…
    //       p = 0.819695906 - 0.1·0.071955720/0.341486931 = 0.798624612…
    // element 1:
    //  t=1: m = -0.2, v = 0.004; m̂ = -2, v̂ = 4; p = -1 + 0.1·2/(2 + 1e-8) = -0.9000000005
    //  t=2: m = -0.18 + 0.1 = -0.08, v = 0.003996 + 0.001 = 0.004996
    //       m̂ = -0.421052632…, v̂ = 2.499249625…; p = -0.9 + 0.1·0.421052632/1.580901522 = -0.873366297…
    //  t=3: m = -0.072, v = 0.004991004; m̂ = -0.265682657…, v̂ = 1.665332778…
    //       p = -0.873366297 + 0.1·0.265682657/1.290477771 = -0.852778367…
    run_case(
        &[1.0, -1.0],
        &[&[0.5, -2.0], &[0.1, 1.0], &[-0.3, 0.0]],
        &[
            &[0.900000002, -0.9000000005],
            &[0.8196959063846518, -0.8733662967024315],
            &[0.7986246117635081, -0.8527783665034415],
        ],
        &|ps| Box::new(Adam::new(ps, AdamConfig::new(0.1)).unwrap()),
    );
}

#[test]
fn optim_adam_weight_decay() {
    // lr 0.1, β = (0.5, 0.25), eps 0, weight decay 0.5, p0 = 2, g = 1 each step.
    //  t=1: d = 1 + 0.5·2 = 2; m = 0.5·2 = 1, v = 0.75·4 = 3; m̂ = 1/0.5 = 2, v̂ = 3/0.75 = 4
    //       p = 2 - 0.1·2/2 = 1.9
    //  t=2: d = 1 + 0.95 = 1.95; m = 0.5 + 0.975 = 1.475, v = 0.75 + 0.75·3.8025 = 3.601875
    //       m̂ = 1.475/0.75 = 1.966666…, v̂ = 3.601875/0.9375 = 3.842, √v̂ = 1.960102038…
    //       p = 1.9 - 0.1·1.966666667/1.960102038 = 1.799665091…
    run_case(
        &[2.0],
        &[&[1.0], &[1.0]],
        &[&[1.9], &[1.9 - 0.1 * (1.475 / 0.75) / (3.842f64).sqrt()]],
        &|ps| {
            Box::new(
                Adam::new(
                    ps,
                    AdamConfig::new(0.1)
                        .betas(0.5, 0.25)
                        .eps(0.0)
                        .weight_decay(0.5),
                )
                .unwrap(),
            )
        },
    );
}

#[test]
fn optim_rmsprop_hand_checked() {
    // lr 0.01, alpha 0.99, eps 1e-8, p0 = [1, -1]; grads [0.5, -2], [0.1, 1], [-0.3, 0].
    // element 0:
    //  t=1: sq = 0.01·0.25 = 0.0025, √sq = 0.05; p = 1 - 0.01·0.5/(0.05 + 1e-8) = 0.90000002
    //  t=2: sq = 0.99·0.0025 + 0.01·0.01 = 0.002575, √ = 0.050744458; p = 0.90000002 - 0.001/0.050744468 = 0.880293438…
    //  t=3: sq = 0.99·0.002575 + 0.01·0.09 = 0.00344925, √ = 0.058730316; p = 0.880293438 + 0.003/0.058730326 = 0.931374374…
    // element 1:
    //  t=1: sq = 0.04, √ = 0.2; p = -1 + 0.02/0.20000001 = -0.900000005
    //  t=2: sq = 0.0396 + 0.01 = 0.0496, √ = 0.222710575; p = -0.900000005 - 0.01/0.222710585 = -0.944901328…
    //  t=3: g = 0: sq = 0.049104, p unchanged
    run_case(
        &[1.0, -1.0],
        &[&[0.5, -2.0], &[0.1, 1.0], &[-0.3, 0.0]],
        &[
            &[0.900000019999996, -0.9000000049999998],
            &[0.8802934383202046, -0.9449013284905645],
            &[0.9313743740465428, -0.9449013284905645],
        ],
        &|ps| Box::new(RmsProp::new(ps, RmsPropConfig::new(0.01)).unwrap()),
    );
}

#[test]
fn optim_rmsprop_momentum_and_weight_decay() {
    // lr 0.1, alpha 0.75, eps 0, momentum 0.5, weight decay 1, p0 = 1, g = 1:
    //  t=1: d = 1 + 1 = 2; sq = 0.25·4 = 1, a = 1; buf = 0 + 2 = 2; p = 1 - 0.2 = 0.8
    //  t=2: d = 1.8; sq = 0.75 + 0.25·3.24 = 1.56, a = √1.56 = 1.249 (1.2489995996…)
    //       buf = 0.5·2 + 1.8/1.2489996 = 1 + 1.441153384… = 2.441153384…; p = 0.8 - 0.2441153384 = 0.555884661…
    run_case(
        &[1.0],
        &[&[1.0], &[1.0]],
        &[&[0.8], &[0.8 - 0.1 * (1.0 + 1.8 / (1.56f64).sqrt())]],
        &|ps| {
            Box::new(
                RmsProp::new(
                    ps,
                    RmsPropConfig::new(0.1)
                        .alpha(0.75)
                        .eps(0.0)
                        .momentum(0.5)
                        .weight_decay(1.0),
                )
                .unwrap(),
            )
        },
    );
}

fn all_optimizers(ps: Vec<Tensor>) -> Vec<Box<dyn Optimizer>> {
    vec![
        Box::new(Sgd::new(ps.clone(), SgdConfig::new(0.1).momentum(0.9)).unwrap()),
        Box::new(Adam::new(ps.clone(), AdamConfig::new(0.1)).unwrap()),
        Box::new(RmsProp::new(ps, RmsPropConfig::new(0.1)).unwrap()),
    ]
}

#[test]
fn optim_params_without_grad_untouched() {
    for dev in [Device::Cpu, emu()] {
        for make in 0..3 {
            let a = param(&[1.0, 2.0], DType::F32, &dev, "a");
            let b = param(&[3.0, 4.0, 5.0], DType::F32, &dev, "b");
            let mut opt = all_optimizers(vec![a.clone(), b.clone()]).remove(make);
            set_grad(&a, &[1.0, 1.0]);
            opt.step().unwrap();
            assert_eq!(vals(&b), vec![3.0, 4.0, 5.0], "{dev} optimizer {make}");
            assert_ne!(vals(&a), vec![1.0, 2.0]);
            assert_eq!(opt.param_steps(), vec![Some(1), None]);
            // no state was created for b
            assert!(opt.state().iter().all(|(k, _)| k.starts_with("0.")));
        }
    }
}

#[test]
fn optim_step_is_in_place() {
    for dev in [Device::Cpu, emu()] {
        for make in 0..3 {
            let p = param(&[1.0, -1.0, 0.5], DType::F32, &dev, "w");
            let before = p.clone();
            let detached = p.detach();
            let mut opt = all_optimizers(vec![p.clone()]).remove(make);
            set_grad(&p, &[1.0, 1.0, 1.0]);
            opt.step().unwrap();
            assert!(before.shares_storage(&opt.params()[0]));
            assert_eq!(vals(&before), vals(&opt.params()[0]));
            assert_eq!(vals(&detached), vals(&p));
            assert_ne!(
                vals(&before),
                vec![1.0, -1.0, 0.5],
                "{dev} optimizer {make}"
            );
        }
    }
}

#[test]
fn optim_disjoint_groups_are_independent() {
    for dev in [Device::Cpu, emu()] {
        // G and D: separate instances, separate state.
        let g_w = param(&[1.0, 1.0], DType::F32, &dev, "G.w");
        let d_w = param(&[2.0, 2.0, 2.0], DType::F32, &dev, "D.w");
        let mut opt_g = Adam::new(vec![g_w.clone()], AdamConfig::new(0.1)).unwrap();
        let mut opt_d = RmsProp::new(vec![d_w.clone()], RmsPropConfig::new(0.1)).unwrap();
        set_grad(&g_w, &[1.0, 1.0]);
        set_grad(&d_w, &[1.0, 1.0, 1.0]);
        opt_d.step().unwrap();
        assert_eq!(vals(&g_w), vec![1.0, 1.0], "D's step touched G");
        assert!(g_w.grad().is_some());
        opt_d.zero_grad();
        assert!(d_w.grad().is_none());
        assert!(g_w.grad().is_some(), "D's zero_grad cleared G's grad");
        let d_after = vals(&d_w);
        opt_g.step().unwrap();
        assert_eq!(vals(&d_w), d_after, "G's step touched D");
        assert_eq!(opt_g.param_steps(), vec![Some(1)]);
        assert_eq!(opt_d.param_steps(), vec![Some(1)]);
        let names: Vec<String> = opt_g.state().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["0.exp_avg", "0.exp_avg_sq"]);
        let names: Vec<String> = opt_d.state().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["0.square_avg"]);
        // the state lives on the parameter's device
        assert!(opt_g.state()[0].1.device().same(&dev));
    }
}

#[test]
fn optim_clip_weights_only_its_group_exactly() {
    for dev in [Device::Cpu, emu()] {
        let c = 0.01;
        let data = [0.5, -0.5, 0.01, -0.01, 0.005, -0.02, 0.0, 1e-9];
        let a = param(&data, DType::F32, &dev, "D.w");
        let b = param(&data, DType::F32, &dev, "D.b");
        let outside = param(&data, DType::F32, &dev, "G.w");
        clip_weights(&[a.clone(), b.clone()], c).unwrap();
        let c32 = 0.01f32;
        let want: Vec<f32> = vec![c32, -c32, c32, -c32, 0.005, -c32, 0.0, 1e-9];
        assert_eq!(f32s(&a), want, "{dev}");
        assert_eq!(f32s(&b), want, "{dev}");
        let orig: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        assert_eq!(
            f32s(&outside),
            orig,
            "{dev}: a tensor outside the group was clipped"
        );
        assert!(f32s(&a).iter().all(|v| v.abs() <= c32));
    }
    // f64 on cpu clamps at exactly ±c
    let p = param(&[3.0, -3.0, 0.001], DType::F64, &Device::Cpu, "w");
    clip_weights(std::slice::from_ref(&p), 0.01).unwrap();
    assert_eq!(vals(&p), vec![0.01, -0.01, 0.001]);
    assert!(clip_weights(&[p], -1.0).is_err());
}

#[test]
fn optim_grad_norm_and_clip_grad_norm() {
    for dev in [Device::Cpu, emu()] {
        let a = param(&[0.0, 0.0], DType::F32, &dev, "a");
        let b = param(&[0.0], DType::F32, &dev, "b");
        let c = param(&[0.0], DType::F32, &dev, "no grad");
        set_grad(&a, &[3.0, 0.0]);
        set_grad(&b, &[4.0]);
        let ps = vec![a.clone(), b.clone(), c.clone()];
        assert!((grad_norm(&ps).unwrap() - 5.0).abs() < 1e-6);
        // below the limit: untouched
        assert!((clip_grad_norm(&ps, 10.0).unwrap() - 5.0).abs() < 1e-6);
        assert_eq!(vals(&a.grad().unwrap()), vec![3.0, 0.0]);
        // above: scaled by 1/(5 + 1e-6)
        assert!((clip_grad_norm(&ps, 1.0).unwrap() - 5.0).abs() < 1e-6);
        assert_close(&vals(&a.grad().unwrap()), &[0.6, 0.0], 1e-6, "a.grad");
        assert_close(&vals(&b.grad().unwrap()), &[0.8], 1e-6, "b.grad");
        assert!(c.grad().is_none());
        assert!((grad_norm(&ps).unwrap() - 1.0).abs() < 1e-6);
    }
}

#[test]
fn optim_refuses_bad_params() {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], [2, 2], &Device::Cpu).unwrap();
    // not a leaf
    let err = Sgd::new(vec![x.clone()], SgdConfig::new(0.1))
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a leaf"), "{err}");
    // not contiguous
    let t = x.t().unwrap().with_requires_grad_named("wt");
    let err = Adam::new(vec![t], AdamConfig::new(0.1)).err().unwrap();
    assert!(err.to_string().contains("not contiguous"), "{err}");
    assert!(err.to_string().contains("'wt'"), "{err}");
    // f16 is not updated
    let h = x.to_dtype(DType::F16).unwrap().with_requires_grad();
    assert!(RmsProp::new(vec![h], RmsPropConfig::new(0.1)).is_err());
    // bad hyper-parameters
    let p = x.with_requires_grad();
    assert!(Sgd::new(vec![p.clone()], SgdConfig::new(-1.0)).is_err());
    assert!(Sgd::new(vec![p.clone()], SgdConfig::new(0.1).nesterov(true)).is_err());
    assert!(Adam::new(vec![p], AdamConfig::new(0.1).betas(1.0, 0.9)).is_err());
}

#[test]
fn optim_odd_sizes_emu_matches_cpu_bitwise() {
    // Every kernel (sgd_f32 with and without momentum/nesterov/weight decay, adam_f32,
    // rmsprop_f32 with and without momentum, clip_f32) at sizes 1, 7 and 4099 (17 blocks of
    // 256, a partial last block), three steps with changing random gradients.
    let emu = emu();
    for n in [1usize, 7, 4099] {
        let p0 = Tensor::randn([n], 1, 0, &Device::Cpu)
            .unwrap()
            .to_f64_vec()
            .unwrap();
        let grads: Vec<Vec<f64>> = (0..3)
            .map(|s| {
                Tensor::randn([n], 2, (s * n) as u64, &Device::Cpu)
                    .unwrap()
                    .to_f64_vec()
                    .unwrap()
            })
            .collect();
        type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
        let makers: [(&str, Make); 6] = [
            ("sgd", |ps| {
                Box::new(Sgd::new(ps, SgdConfig::new(0.05)).unwrap())
            }),
            ("sgd momentum wd", |ps| {
                Box::new(
                    Sgd::new(
                        ps,
                        SgdConfig::new(0.05)
                            .momentum(0.9)
                            .dampening(0.1)
                            .weight_decay(1e-2),
                    )
                    .unwrap(),
                )
            }),
            ("sgd nesterov", |ps| {
                Box::new(Sgd::new(ps, SgdConfig::new(0.05).momentum(0.5).nesterov(true)).unwrap())
            }),
            ("adam wd", |ps| {
                Box::new(
                    Adam::new(
                        ps,
                        AdamConfig::new(2e-4).betas(0.5, 0.999).weight_decay(1e-3),
                    )
                    .unwrap(),
                )
            }),
            ("rmsprop", |ps| {
                Box::new(RmsProp::new(ps, RmsPropConfig::new(5e-5)).unwrap())
            }),
            ("rmsprop momentum wd", |ps| {
                Box::new(
                    RmsProp::new(
                        ps,
                        RmsPropConfig::new(1e-3).momentum(0.9).weight_decay(1e-2),
                    )
                    .unwrap(),
                )
            }),
        ];
        for (name, make) in makers {
            let mut results = Vec::new();
            let mut states = Vec::new();
            for dev in [Device::Cpu, emu.clone()] {
                let p = param(&p0, DType::F32, &dev, "w");
                let mut opt = make(vec![p.clone()]);
                for g in &grads {
                    set_grad(&p, g);
                    opt.step().unwrap();
                }
                clip_weights(std::slice::from_ref(&p), 0.5).unwrap();
                results.push(f32s(&p));
                states.push(
                    opt.state()
                        .iter()
                        .map(|(k, t)| (k.clone(), f32s(t)))
                        .collect::<Vec<_>>(),
                );
            }
            assert_eq!(
                results[0], results[1],
                "{name} n={n}: emu vs cpu parameters"
            );
            assert_eq!(states[0], states[1], "{name} n={n}: emu vs cpu state");
            assert!(results[0].iter().all(|v| v.abs() <= 0.5));
        }
    }
}

#[test]
fn optim_load_state_resumes_exactly() {
    for dev in [Device::Cpu, emu()] {
        type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
        let makers: [Make; 3] = [
            |ps| Box::new(Sgd::new(ps, SgdConfig::new(0.1).momentum(0.9)).unwrap()),
            |ps| Box::new(Adam::new(ps, AdamConfig::new(0.1)).unwrap()),
            |ps| Box::new(RmsProp::new(ps, RmsPropConfig::new(0.1).momentum(0.5)).unwrap()),
        ];
        for make in makers {
            let data = [1.0, -0.5, 0.25];
            let a = param(&data, DType::F32, &dev, "a");
            let unused = param(&[7.0], DType::F32, &dev, "unused");
            let mut opt = make(vec![a.clone(), unused.clone()]);
            for g in [[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]] {
                set_grad(&a, &g);
                opt.step().unwrap();
            }
            // "checkpoint": parameter values, state (copied to the cpu) and step counts
            let saved: Vec<(String, Tensor)> = opt
                .state()
                .into_iter()
                .map(|(k, t)| (k, t.to_device(&Device::Cpu).unwrap()))
                .collect();
            let b = param(&vals(&a), DType::F32, &dev, "a");
            let unused2 = param(&[7.0], DType::F32, &dev, "unused");
            let mut resumed = make(vec![b.clone(), unused2]);
            resumed
                .load_state(&saved, &opt.param_steps(), opt.steps())
                .unwrap();
            assert_eq!(resumed.steps(), 2);
            for g in [[-0.7, 0.3, 0.9], [0.4, 0.4, 0.4]] {
                set_grad(&a, &g);
                set_grad(&b, &g);
                opt.step().unwrap();
                resumed.step().unwrap();
                assert_eq!(f32s(&a), f32s(&b), "{dev}: resumed run diverged");
            }
            // the loaded tensors were copied, not shared
            for ((_, s), (_, r)) in saved.iter().zip(resumed.state()) {
                assert!(!s.shares_storage(&r));
            }
            // errors: shape mismatch names the tensor and both shapes; unknown names
            let mut bad = saved.clone();
            bad[0].1 = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
            let mut fresh = make(vec![param(&data, DType::F32, &dev, "a")]);
            let err = fresh
                .load_state(&bad, &[Some(2)], 2)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&bad[0].0) && err.contains("[2]"), "{err}");
            let err = fresh
                .load_state(&[("0.bogus".into(), bad[0].1.clone())], &[None], 0)
                .unwrap_err()
                .to_string();
            assert!(err.contains("0.bogus"), "{err}");
            // step counts for the wrong number of parameters
            assert!(fresh.load_state(&saved, &[Some(2), None], 2).is_err());
            // a 1-parameter group takes the state of parameter 0
            fresh.load_state(&saved, &[Some(2)], 2).unwrap();
        }
    }
}
