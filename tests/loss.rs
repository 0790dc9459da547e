//! Losses: hand-computed values (BCE on logits incl. ±100, the LSGAN codings, L1, MSE,
//! WGAN means, the vanilla GAN helpers and the generator's saturation), one tape node per
//! fused loss, errors, gradcheck, and emu-vs-cpu parity of every kernel.
//!
//! Parity tolerances (emu f32 kernels vs the cpu's f64-accumulated reference on the same
//! f32 inputs): forward |emu − cpu| ≤ 1e-5·(1 + |cpu|) (f32 per-thread sums of up to a few
//! thousand terms); backward per element |emu − cpu| ≤ 1e-6·(|cpu| + |g|/n) (f32
//! elementwise rounding, where σ(x) − t may cancel to ~1 ulp of 1).

use duel::autograd::{gradcheck, tape};
use duel::ops::loss::{
    bce_with_logits, bce_with_logits_scalar, discriminator_loss, l1, least_squares, loss_backward,
    loss_forward, lsgan_d_loss, lsgan_g_loss, minimax_generator_loss, mse,
    nonsaturating_generator_loss, wgan_critic_loss, wgan_generator_loss, LossKind, LsCoding,
};
use duel::{Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), &Device::Cpu).unwrap()
}

fn t32(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), dev).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tol {tol:e})");
}

fn close_all(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        close(*x, *y, tol, &format!("{what}[{i}]"));
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn loss_bce_with_logits_hand_values() {
    let xs = [0.0, 2.0, -1.0, 0.5];
    let ts = [1.0, 0.0, 0.5, 0.25];
    // naive −[t log σ(x) + (1 − t) log(1 − σ(x))], fine at these moderate logits
    let per: Vec<f64> = xs
        .iter()
        .zip(&ts)
        .map(|(&x, &t)| -(t * sigmoid(x).ln() + (1.0 - t) * (1.0 - sigmoid(x)).ln()))
        .collect();
    let expect = per.iter().sum::<f64>() / 4.0;
    let x = t64(&xs, &[4]).with_requires_grad();
    let t = t64(&ts, &[4]).with_requires_grad();
    let loss = bce_with_logits(&x, &t).unwrap();
    assert_eq!(loss.dims(), &[] as &[usize]);
    close(loss.item().unwrap(), expect, 1e-14, "bce value");
    // one fused node on the tape
    let entries = tape(&loss);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].op, "bce_with_logits");
    loss.backward().unwrap();
    let dx: Vec<f64> = xs
        .iter()
        .zip(&ts)
        .map(|(&x, &t)| (sigmoid(x) - t) / 4.0)
        .collect();
    let dt: Vec<f64> = xs.iter().map(|&x| -x / 4.0).collect();
    close_all(&f64s(&x.grad().unwrap()), &dx, 1e-15, "bce dx");
    close_all(&f64s(&t.grad().unwrap()), &dt, 1e-15, "bce dt");
    // the scalar form equals a full target; f32 on cpu agrees to f32 rounding
    let s = bce_with_logits_scalar(&t64(&xs, &[2, 2]), 0.25).unwrap();
    let full = bce_with_logits(&t64(&xs, &[2, 2]), &t64(&[0.25; 4], &[2, 2])).unwrap();
    close(
        s.item().unwrap(),
        full.item().unwrap(),
        1e-15,
        "scalar target",
    );
    let xs32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
    let ts32: Vec<f32> = ts.iter().map(|&v| v as f32).collect();
    let l32 = bce_with_logits(
        &t32(&xs32, &[4], &Device::Cpu),
        &t32(&ts32, &[4], &Device::Cpu),
    )
    .unwrap();
    close(l32.item().unwrap(), expect, 1e-6, "bce f32");
    // a target that does not require grad gets none; a broadcast target sums its gradient
    let x = t64(&xs, &[2, 2]).with_requires_grad();
    let row = t64(&[1.0, 0.0], &[2]).with_requires_grad();
    bce_with_logits(&x, &row).unwrap().backward().unwrap();
    // dt[j] = −Σ_i x[i, j] / 4 over the broadcast rows
    close_all(
        &f64s(&row.grad().unwrap()),
        &[-(0.0 - 1.0) / 4.0, -(2.0 + 0.5) / 4.0],
        1e-15,
        "broadcast dt",
    );
}

#[test]
fn loss_bce_with_logits_extreme_logits_finite() {
    // per element: x=100,t=1 → 0; x=−100,t=0 → 0; x=100,t=0 → 100; x=−100,t=1 → 100
    let xs = [100.0, -100.0, 100.0, -100.0];
    let ts = [1.0, 0.0, 0.0, 1.0];
    let expect_dx = [0.0, 0.0, 0.25, -0.25];
    for dev in [Device::Cpu, emu()] {
        for f64_in in [false, true] {
            if f64_in && !dev.is_cpu() {
                continue;
            }
            let mk = |v: &[f64]| {
                if f64_in {
                    t64(v, &[4])
                } else {
                    let v32: Vec<f32> = v.iter().map(|&a| a as f32).collect();
                    t32(&v32, &[4], &dev)
                }
            };
            let what = format!("{dev} f64={f64_in}");
            let x = mk(&xs).with_requires_grad();
            let t = mk(&ts).with_requires_grad();
            let loss = bce_with_logits(&x, &t).unwrap();
            let v = loss.item().unwrap();
            assert!(v.is_finite(), "{what}");
            close(v, 50.0, 1e-5, &what);
            loss.backward().unwrap();
            let dx = f64s(&x.grad().unwrap());
            let dt = f64s(&t.grad().unwrap());
            assert!(dx.iter().chain(&dt).all(|g| g.is_finite()), "{what}");
            close_all(&dx, &expect_dx, 1e-7, &format!("{what} dx"));
            close_all(
                &dt,
                &[-25.0, 25.0, -25.0, 25.0],
                1e-5,
                &format!("{what} dt"),
            );
            // loss at x = 100, t = 1 alone ≈ 0, and at x = −100, t = 0
            let one = bce_with_logits_scalar(&mk(&[100.0; 4]), 1.0).unwrap();
            close(one.item().unwrap(), 0.0, 1e-30, &what);
            let zero = bce_with_logits_scalar(&mk(&[-100.0; 4]), 0.0).unwrap();
            close(zero.item().unwrap(), 0.0, 1e-30, &what);
        }
    }
}

#[test]
fn loss_least_squares_lsgan_codings() {
    let dr = [0.8, 1.2, 0.5];
    let df = [0.1, -0.3];
    for dev in [Device::Cpu, emu()] {
        let (real, fake) = if dev.is_cpu() {
            (t64(&dr, &[3]), t64(&df, &[2, 1]))
        } else {
            (
                t32(&[0.8, 1.2, 0.5], &[3], &dev),
                t32(&[0.1, -0.3], &[2, 1], &dev),
            )
        };
        let tol = if dev.is_cpu() { 1e-15 } else { 1e-6 };
        // binary (0, 1, 1): D = ½·mean(0.04, 0.04, 0.25) + ½·mean(0.01, 0.09) = 0.055 + 0.025
        let d = lsgan_d_loss(&real, &fake, LsCoding::BINARY).unwrap();
        close(d.item().unwrap(), 0.08, tol, "binary D");
        // G = ½·mean(0.81, 1.69)
        let g = lsgan_g_loss(&fake, LsCoding::BINARY).unwrap();
        close(g.item().unwrap(), 0.625, tol, "binary G");
        // Pearson (−1, 1, 0): D = 0.055 + ½·mean(1.21, 0.49), G = ½·mean(0.01, 0.09)
        let d = lsgan_d_loss(&real, &fake, LsCoding::PEARSON).unwrap();
        close(d.item().unwrap(), 0.48, tol, "pearson D");
        let g = lsgan_g_loss(&fake, LsCoding::PEARSON).unwrap();
        close(g.item().unwrap(), 0.025, tol, "pearson G");
        // a custom code: ½·mean((0.1 − 0.5)², (−0.3 − 0.5)²) = ½·mean(0.16, 0.64)
        let c = LsCoding {
            a: 0.2,
            b: 0.9,
            c: 0.5,
        };
        close(
            lsgan_g_loss(&fake, c).unwrap().item().unwrap(),
            0.2,
            tol,
            "custom G",
        );
        // gradient of the binary G loss: (D − c)/n
        let f = fake.with_requires_grad();
        lsgan_g_loss(&f, LsCoding::BINARY)
            .unwrap()
            .backward()
            .unwrap();
        close_all(
            &f64s(&f.grad().unwrap()),
            &[-0.45, -0.65],
            tol,
            "binary G grad",
        );
    }
    assert_eq!(
        (LsCoding::BINARY.a, LsCoding::BINARY.b, LsCoding::BINARY.c),
        (0.0, 1.0, 1.0)
    );
    assert_eq!(
        (
            LsCoding::PEARSON.a,
            LsCoding::PEARSON.b,
            LsCoding::PEARSON.c
        ),
        (-1.0, 1.0, 0.0)
    );
    let e = tape(&least_squares(&t64(&dr, &[3]).with_requires_grad(), 1.0).unwrap());
    assert_eq!(
        e.iter().map(|e| e.op).collect::<Vec<_>>(),
        vec!["least_squares"]
    );
}

#[test]
fn loss_l1_mse_hand_values() {
    for dev in [Device::Cpu, emu()] {
        let x = t32(&[1.0, 2.0, 3.0], &[3], &dev).with_requires_grad();
        let y = t32(&[0.5, 2.5, 5.0], &[3], &dev).with_requires_grad();
        let a = l1(&x, &y).unwrap();
        close(a.item().unwrap(), 1.0, 1e-6, "l1");
        assert_eq!(tape(&a)[0].op, "l1");
        a.backward().unwrap();
        let third = 1.0 / 3.0;
        close_all(
            &f64s(&x.grad().unwrap()),
            &[third, -third, -third],
            1e-7,
            "l1 dx",
        );
        close_all(
            &f64s(&y.grad().unwrap()),
            &[-third, third, third],
            1e-7,
            "l1 dy",
        );
        x.zero_grad();
        y.zero_grad();
        let m = mse(&x, &y).unwrap();
        close(m.item().unwrap(), 1.5, 1e-6, "mse");
        assert_eq!(tape(&m).len(), 1);
        m.backward().unwrap();
        close_all(
            &f64s(&x.grad().unwrap()),
            &[third, -third, -4.0 * third],
            1e-6,
            "mse dx",
        );
        close_all(
            &f64s(&y.grad().unwrap()),
            &[-third, third, 4.0 * third],
            1e-6,
            "mse dy",
        );
        // the gradient of |·| at 0 is 0
        let z = t32(&[1.0, 2.0], &[2], &dev).with_requires_grad();
        l1(&z, &t32(&[1.0, 3.0], &[2], &dev))
            .unwrap()
            .backward()
            .unwrap();
        close_all(&f64s(&z.grad().unwrap()), &[0.0, -0.5], 0.0, "l1 kink");
    }
}

#[test]
fn loss_wgan_means() {
    let real = t64(&[1.0, 2.0, 3.0], &[3, 1]).with_requires_grad();
    let fake = t64(&[0.5, -1.5], &[2, 1]).with_requires_grad();
    let c = wgan_critic_loss(&real, &fake).unwrap();
    close(c.item().unwrap(), -0.5 - 2.0, 1e-15, "critic");
    c.backward().unwrap();
    close_all(
        &f64s(&real.grad().unwrap()),
        &[-1.0 / 3.0; 3],
        1e-15,
        "critic real",
    );
    close_all(
        &f64s(&fake.grad().unwrap()),
        &[0.5; 2],
        1e-15,
        "critic fake",
    );
    fake.zero_grad();
    let g = wgan_generator_loss(&fake).unwrap();
    close(g.item().unwrap(), 0.5, 1e-15, "generator");
    g.backward().unwrap();
    close_all(
        &f64s(&fake.grad().unwrap()),
        &[-0.5; 2],
        1e-15,
        "generator grad",
    );
}

#[test]
fn loss_generator_saturation() {
    let n = 4.0;
    for dev in [Device::Cpu, emu()] {
        // f32 inputs on both devices: values to f32 rounding
        let f = t32(&[-10.0; 4], &[4], &dev).with_requires_grad();
        let minimax = minimax_generator_loss(&f).unwrap();
        // mean(log(1 − σ(−10))) = −log1p(e^−10)
        close(
            minimax.item().unwrap(),
            -(-10.0f64).exp().ln_1p(),
            1e-6 * 4.6e-5,
            "minimax value",
        );
        minimax.backward().unwrap();
        let g_sat = f64s(&f.grad().unwrap());
        f.zero_grad();
        let ns = nonsaturating_generator_loss(&f).unwrap();
        // −mean(log σ(−10)) = 10 + log1p(e^−10)
        close(
            ns.item().unwrap(),
            10.0 + (-10.0f64).exp().ln_1p(),
            1e-6 * 10.0,
            "ns value",
        );
        ns.backward().unwrap();
        let g_ns = f64s(&f.grad().unwrap());
        for (s, ns) in g_sat.iter().zip(&g_ns) {
            close(
                *s,
                -sigmoid(-10.0) / n,
                1e-3 * sigmoid(-10.0) / n,
                "saturating grad",
            );
            close(
                *ns,
                -(1.0 - sigmoid(-10.0)) / n,
                1e-6,
                "non-saturating grad",
            );
            // the saturating gradient is ~2·10⁴ times weaker than the non-saturating one
            assert!(s.abs() < 5e-5 / n && ns.abs() > 0.99 / n && ns / s > 2e4);
        }
    }
    // the discriminator's loss bce(real, 1) + bce(fake, 0)
    let real = t64(&[2.0, 0.0], &[2]);
    let fake = t64(&[-1.0, 3.0], &[2]);
    let sp = |x: f64| x.exp().ln_1p(); // softplus
    let expect = (sp(-2.0) + sp(0.0)) / 2.0 + (sp(-1.0) + sp(3.0)) / 2.0;
    close(
        discriminator_loss(&real, &fake).unwrap().item().unwrap(),
        expect,
        1e-14,
        "discriminator",
    );
}

#[test]
fn loss_errors() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]);
    let empty = t64(&[], &[0]);
    assert!(bce_with_logits_scalar(&empty, 1.0).is_err());
    assert!(least_squares(&empty, 1.0).is_err());
    assert!(mse(&empty, &empty).is_err());
    assert!(least_squares(&x, f64::NAN).is_err());
    assert!(
        l1(&x, &t64(&[1.0, 2.0], &[2])).is_err(),
        "shapes do not broadcast"
    );
    let x32 = t32(&[1.0, 2.0, 3.0], &[3], &Device::Cpu);
    assert!(mse(&x, &x32).is_err(), "mixed dtypes");
    let xe = x32.to_device(&emu()).unwrap();
    assert!(mse(&x32, &xe).is_err(), "mixed devices");
    assert!(bce_with_logits(&xe.to_device(&Device::Cpu).unwrap(), &xe).is_err());
}

#[test]
fn loss_gradcheck() {
    let cases = duel::ops::loss::gradcheck_cases().unwrap();
    let ops: std::collections::BTreeSet<_> = cases.iter().map(|c| c.op).collect();
    assert_eq!(ops.len(), 4, "{ops:?}");
    for case in cases {
        for row in gradcheck::check(&case).unwrap() {
            assert!(
                row.passed,
                "{} ({}) input {}: abs {:e} rel {:e}",
                row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
        }
    }
}

/// Random f32 values of `n` elements: logits in [−8, 8) (plus ±100 and 0 sprinkled in for
/// BCE), probabilities in [0, 1) for BCE targets, normals otherwise.
fn data(kind: LossKind, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let r = Tensor::rand([n], seed, 0, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let z = Tensor::randn([n], seed + 1, 0, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    match kind {
        LossKind::BceWithLogits => {
            let mut x: Vec<f32> = z.iter().map(|v| 4.0 * v).collect();
            for (i, v) in x.iter_mut().enumerate() {
                match i % 97 {
                    3 => *v = 100.0,
                    5 => *v = -100.0,
                    7 => *v = 0.0,
                    _ => {}
                }
            }
            (x, r)
        }
        _ => (z, r.iter().map(|v| 2.0 * v - 1.0).collect()),
    }
}

#[test]
fn loss_emu_parity() {
    let e = emu();
    let kinds = [
        LossKind::BceWithLogits,
        LossKind::LeastSquares,
        LossKind::L1,
        LossKind::Mse,
    ];
    for kind in kinds {
        for n in [1usize, 7, 1000, 4099, 300_001] {
            let (xv, tv) = data(kind, n, 40 + n as u64);
            let g = 0.75f32;
            for tensor_target in [true, false] {
                let ts = 0.3;
                let what = format!("{kind:?} n={n} tensor_target={tensor_target}");
                let run = |dev: &Device| {
                    let x = t32(&xv, &[n], dev);
                    let t = t32(&tv, &[n], dev);
                    let t = tensor_target.then_some(&t);
                    let y = loss_forward(kind, &x, t, ts).unwrap();
                    let gt = Tensor::scalar(g, dev).unwrap();
                    let (dx, dt) = loss_backward(kind, &x, t, ts, &gt, true).unwrap();
                    assert_eq!(dt.is_some(), tensor_target);
                    (y.item().unwrap(), f64s(&dx), dt.map(|d| f64s(&d)))
                };
                let (yc, dxc, dtc) = run(&Device::Cpu);
                let (ye, dxe, dte) = run(&e);
                assert!(ye.is_finite(), "{what}");
                close(ye, yc, 1e-5 * (1.0 + yc.abs()), &format!("{what} forward"));
                let go = g as f64 / n as f64;
                let check = |a: &[f64], b: &[f64], part: &str| {
                    assert_eq!(a.len(), b.len());
                    for (i, (p, q)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (p - q).abs() <= 1e-6 * (q.abs() + go),
                            "{what} {part}[{i}]: {p} vs {q}"
                        );
                    }
                };
                check(&dxe, &dxc, "dx");
                if let (Some(a), Some(b)) = (dte, dtc) {
                    check(&a, &b, "dt");
                }
                // reproducible: the same launch gives the same bits
                if n == 4099 {
                    assert_eq!(run(&e).0.to_bits(), ye.to_bits(), "{what}");
                }
            }
        }
    }
}

#[test]
fn loss_emu_parity_autograd() {
    // Through the public ops and the tape: broadcast targets and strided inputs on emu
    // match the cpu.
    let e = emu();
    let x = Tensor::randn([5, 7], 11, 0, &Device::Cpu).unwrap();
    let t = Tensor::rand([7], 12, 0, &Device::Cpu).unwrap();
    let run = |dev: &Device, f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
        let xl = x.to_device(dev).unwrap().with_requires_grad();
        let tl = t.to_device(dev).unwrap().with_requires_grad();
        let loss = f(&xl.transpose(0, 1).unwrap(), &tl.reshape([7, 1]).unwrap());
        loss.backward().unwrap();
        (
            loss.item().unwrap(),
            f64s(&xl.grad().unwrap()),
            f64s(&tl.grad().unwrap()),
        )
    };
    type Loss = fn(&Tensor, &Tensor) -> duel::Result<Tensor>;
    let losses: [Loss; 3] = [bce_with_logits, l1, mse];
    let fs = losses.map(|loss| move |a: &Tensor, b: &Tensor| loss(a, b).unwrap());
    for (k, f) in fs.iter().enumerate() {
        let (yc, gxc, gtc) = run(&Device::Cpu, f);
        let (ye, gxe, gte) = run(&e, f);
        close(ye, yc, 1e-5 * (1.0 + yc.abs()), &format!("loss {k}"));
        close_all(&gxe, &gxc, 1e-6, &format!("dx {k}"));
        close_all(&gte, &gtc, 1e-5, &format!("dt {k}"));
    }
}
