//! Layers (src/nn): Linear against a hand computation, PyTorch state_dict naming in a
//! Sequential, BatchNorm train vs eval, gradients to every parameter, load_state_dict
//! errors, Dropout masks per step, initialiser moments and reproducibility.

use std::collections::HashMap;

use duel::gan::arch::dcgan_generator_28;
use duel::nn::init::{self, ParamRng};
use duel::nn::{
    load_state_dict, state_dict, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, InstanceNorm2d,
    LeakyReLU, Linear, Module, ReLU, Reshape, Sequential, Sigmoid, Tanh,
};
use duel::{Device, Tensor};

fn cpu(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape.to_vec(), &Device::Cpu).unwrap()
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn names(entries: &[(String, Tensor)]) -> Vec<String> {
    entries.iter().map(|(n, _)| n.clone()).collect()
}

#[test]
fn nn_linear_forward_matches_hand_computation() {
    let w = cpu(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3]);
    let b = cpu(&[0.5, -2.0], &[2]);
    let lin = Linear::from_tensors(w, Some(b));
    let x = cpu(&[1.0, 1.0, 1.0, 2.0, 0.0, -1.0], &[2, 3]);
    let y = lin.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 2]);
    // row 0: [1+2+3+0.5, -1+0.5+0-2] ; row 1: [2-3+0.5, -2+0+0-2]
    assert_eq!(v(&y), vec![6.5, -2.5, -0.5, -4.0]);
    // rank-1 input
    let y1 = lin.forward(&cpu(&[1.0, 1.0, 1.0], &[3])).unwrap();
    assert_eq!(v(&y1), vec![6.5, -2.5]);
    // wrong in_features is an error naming the shapes
    let e = lin
        .forward(&cpu(&[1.0; 4], &[1, 4]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("in_features = 3"), "{e}");
}

fn small_mlp() -> Sequential {
    let mut rng = ParamRng::new(7);
    let d = Device::Cpu;
    Sequential::new(vec![
        Box::new(Linear::options(4, 8).build(&mut rng, &d).unwrap()),
        Box::new(BatchNorm1d::new(8, &d).unwrap()),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(8, 1).build(&mut rng, &d).unwrap()),
        Box::new(Sigmoid),
    ])
}

#[test]
fn nn_sequential_state_dict_names_match_pytorch() {
    let m = small_mlp();
    assert_eq!(
        names(&state_dict(&m)),
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "3.weight",
            "3.bias"
        ]
    );
    assert_eq!(
        names(&m.parameters()),
        ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    );
    let sd = state_dict(&m);
    assert_eq!(sd[0].1.dims(), &[8, 4]);
    assert_eq!(sd[6].1.dims(), &[] as &[usize]);
    // nested Sequential composes prefixes
    let outer = Sequential::new(vec![Box::new(ReLU), Box::new(small_mlp())]);
    assert_eq!(names(&state_dict(&outer))[0], "1.0.weight");
    // the DCGAN generator
    let g = dcgan_generator_28(100, 1, &Device::Cpu).unwrap();
    let sd = state_dict(&g);
    let got: Vec<(String, Vec<usize>)> = sd
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect();
    assert_eq!(got[0], ("0.weight".to_string(), vec![6272, 100]));
    // no bias before a batch norm (DCGAN's bias=False)
    assert_eq!(got[1], ("1.weight".to_string(), vec![6272]));
    assert_eq!(got[6], ("4.weight".to_string(), vec![128, 64, 4, 4]));
    assert_eq!(got.len(), 14);
}

#[test]
fn nn_batchnorm_train_uses_batch_stats_and_eval_uses_running() {
    let mut bn = BatchNorm1d::new(2, &Device::Cpu).unwrap();
    let x = cpu(&[1.0, 10.0, 3.0, 20.0], &[2, 2]);
    let y = bn.forward(&x).unwrap();
    // batch stats: ch0 mean 2 var 1 ; ch1 mean 15 var 25 → ±1/√(1+eps)
    for (a, b) in v(&y).iter().zip([-1.0, -1.0, 1.0, 1.0]) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // running: 0.9·0 + 0.1·mean ; 0.9·1 + 0.1·unbiased var (2, 50)
    let rm = v(&bn.running_mean);
    let rv = v(&bn.running_var);
    assert!(
        (rm[0] - 0.2).abs() < 1e-6 && (rm[1] - 1.5).abs() < 1e-6,
        "{rm:?}"
    );
    assert!(
        (rv[0] - 1.1).abs() < 1e-6 && (rv[1] - 5.9).abs() < 1e-5,
        "{rv:?}"
    );
    assert_eq!(bn.batches_tracked(), 1);
    bn.set_training(false);
    let ye = bn.forward(&x).unwrap();
    let expect: Vec<f32> = [1.0f32, 10.0, 3.0, 20.0]
        .iter()
        .enumerate()
        .map(|(i, &xv)| (xv - rm[i % 2]) / (rv[i % 2] + 1e-5).sqrt())
        .collect();
    for (a, b) in v(&ye).iter().zip(&expect) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // eval does not touch the running statistics nor the counter
    assert_eq!(v(&bn.running_mean), rm);
    assert_eq!(bn.batches_tracked(), 1);
    // BatchNorm2d refuses a 2-D input
    let bn2 = BatchNorm2d::new(2, &Device::Cpu).unwrap();
    assert!(bn2.forward(&x).is_err());
}

#[test]
fn nn_gradients_reach_every_parameter() {
    let m = small_mlp();
    let x = Tensor::randn([6, 4], 3, 0, &Device::Cpu).unwrap();
    let loss = m.forward(&x).unwrap().mean_all().unwrap();
    loss.backward().unwrap();
    for (name, p) in m.parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name} got no gradient"));
        assert_eq!(g.dims(), p.dims(), "{name}");
        assert!(
            v(&g).iter().any(|x| *x != 0.0),
            "{name}: gradient is all zero"
        );
    }
    // conv + instance norm + tanh path
    let mut rng = ParamRng::new(2);
    let conv = Sequential::new(vec![
        Box::new(
            Conv2d::options(2, 3, 3)
                .build(&mut rng, &Device::Cpu)
                .unwrap(),
        ),
        Box::new(InstanceNorm2d::new(3, true, &Device::Cpu).unwrap()),
        Box::new(Tanh),
        Box::new(Reshape::new(vec![27])),
        Box::new(
            Linear::options(27, 1)
                .build(&mut rng, &Device::Cpu)
                .unwrap(),
        ),
    ]);
    let x = Tensor::randn([2, 2, 5, 5], 4, 0, &Device::Cpu).unwrap();
    conv.forward(&x)
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(conv.parameters().len(), 6);
    for (name, p) in conv.parameters() {
        assert!(p.grad().is_some(), "{name} got no gradient");
    }
}

#[test]
fn nn_generator_forward_and_grads() {
    let g = dcgan_generator_28(100, 1, &Device::Cpu).unwrap();
    let z = Tensor::randn([3, 100], 9, 0, &Device::Cpu).unwrap();
    let y = g.forward(&z).unwrap();
    assert_eq!(y.dims(), &[3, 1, 28, 28]);
    assert!(v(&y).iter().all(|x| x.abs() < 1.0));
    y.mean_all().unwrap().backward().unwrap();
    for (name, p) in g.parameters() {
        assert!(p.grad().is_some(), "{name} got no gradient");
    }
}

#[test]
fn nn_load_state_dict_round_trip_and_errors() {
    let a = small_mlp();
    let mut rng = ParamRng::new(99);
    let b = Sequential::new(vec![
        Box::new(Linear::options(4, 8).build(&mut rng, &Device::Cpu).unwrap()),
        Box::new(BatchNorm1d::new(8, &Device::Cpu).unwrap()),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(8, 1).build(&mut rng, &Device::Cpu).unwrap()),
        Box::new(Sigmoid),
    ]);
    // a training step on a changes its running stats and counter
    a.forward(&Tensor::randn([5, 4], 1, 0, &Device::Cpu).unwrap())
        .unwrap();
    let map: HashMap<String, Tensor> = state_dict(&a).into_iter().collect();
    load_state_dict(&b, &map).unwrap();
    for ((n, x), (_, y)) in state_dict(&a).iter().zip(state_dict(&b).iter()) {
        assert_eq!(x.to_f64_vec().unwrap(), y.to_f64_vec().unwrap(), "{n}");
    }
    // the parameter leaves of b see the new values (in place)
    assert_eq!(v(&b.parameters()[0].1), v(&a.parameters()[0].1));

    let mut bad = map.clone();
    bad.remove("1.running_var");
    bad.insert("9.weight".into(), cpu(&[1.0], &[1]));
    bad.insert("0.bias".into(), cpu(&[0.0; 3], &[3]));
    let e = load_state_dict(&b, &bad).unwrap_err().to_string();
    assert!(e.contains("missing keys: 1.running_var"), "{e}");
    assert!(e.contains("unexpected keys: 9.weight"), "{e}");
    assert!(
        e.contains("0.bias") && e.contains("[3]") && e.contains("[8]"),
        "{e}"
    );
}

#[test]
fn nn_dropout_masks_differ_per_step_and_reproduce() {
    let x = Tensor::ones([1000], duel::DType::F32, &Device::Cpu).unwrap();
    let d = Dropout::new(0.5, 42);
    let m1 = v(&d.forward(&x).unwrap());
    let m2 = v(&d.forward(&x).unwrap());
    assert_ne!(m1, m2);
    assert_eq!(d.offset(), 2000);
    let d2 = Dropout::new(0.5, 42);
    assert_eq!(v(&d2.forward(&x).unwrap()), m1);
    let kept = m1.iter().filter(|x| **x != 0.0).count();
    assert!((400..600).contains(&kept), "{kept}");
    let mut d3 = Dropout::new(0.5, 42);
    d3.set_training(false);
    assert_eq!(v(&d3.forward(&x).unwrap()), vec![1.0; 1000]);
}

fn moments(t: &Tensor) -> (f64, f64, f64, f64) {
    let x = t.to_f64_vec().unwrap();
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / n;
    let lo = x.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), lo, hi)
}

#[test]
fn nn_init_moments_and_reproducibility() {
    let d = Device::Cpu;
    // N = 256·256 = 65536 samples: the sample mean of N(μ, σ) is within 4σ/√N = σ/64.
    let mut rng = ParamRng::new(5);
    let w = rng.normal(vec![256, 256], 0.0, 0.02, &d).unwrap();
    let (m, s, _, _) = moments(&w);
    assert!(m.abs() < 0.02 / 64.0, "mean {m}");
    assert!((s - 0.02).abs() < 0.02 * 0.02, "std {s}");
    // kaiming(a=√5) = U(−1/√fan_in, 1/√fan_in): fan_in 64 → bound 1/8, std bound/√3
    let k = init::kaiming_uniform(&mut rng, &[1024, 16, 2, 2], 5f64.sqrt(), &d).unwrap();
    let (m, s, lo, hi) = moments(&k);
    let b = 0.125;
    assert!(
        lo >= -b && hi < b && hi > 0.99 * b && lo < -0.99 * b,
        "{lo} {hi}"
    );
    assert!(m.abs() < b / 64.0, "mean {m}");
    assert!((s - b / 3f64.sqrt()).abs() < 0.01 * b, "std {s}");
    // xavier: fan_in 128 + fan_out 128 → bound √(6/256)
    let x = init::xavier_uniform(&mut rng, &[128, 128], 1.0, &d).unwrap();
    let (_, s, lo, hi) = moments(&x);
    let b = (6.0f64 / 256.0).sqrt();
    assert!(lo >= -b && hi < b);
    assert!((s - b / 3f64.sqrt()).abs() < 0.01 * b, "std {s}");
    // normal variants: kaiming(a=0) std √(2/fan_in) = √(2/64); xavier std √(2/256)
    let k = init::kaiming_normal(&mut rng, &[1024, 16, 2, 2], 0.0, &d).unwrap();
    let (m, s, _, _) = moments(&k);
    let sd = (2.0f64 / 64.0).sqrt();
    assert!(m.abs() < sd / 64.0 && (s - sd).abs() < 0.02 * sd, "{m} {s}");
    let x = init::xavier_normal(&mut rng, &[256, 256], 1.0, &d).unwrap();
    let (m, s, _, _) = moments(&x);
    let sd = (2.0f64 / 512.0).sqrt();
    assert!(m.abs() < sd / 64.0 && (s - sd).abs() < 0.02 * sd, "{m} {s}");
    // DCGAN init of the generator: Linear/ConvT weights N(0, .02), BN γ N(1, .02), biases 0
    let g = dcgan_generator_28(100, 11, &d).unwrap();
    for (name, p) in g.parameters() {
        let (m, s, lo, hi) = moments(&p);
        if name.ends_with("bias") {
            assert_eq!((lo, hi), (0.0, 0.0), "{name}");
        } else if p.rank() == 1 {
            assert!(
                (m - 1.0).abs() < 0.01 && (s - 0.02).abs() < 0.006,
                "{name} {m} {s}"
            );
        } else {
            assert!(
                m.abs() < 0.002 && (s - 0.02).abs() < 0.002,
                "{name} {m} {s}"
            );
        }
    }
    // same seed → same numbers, different seed → different
    let g2 = dcgan_generator_28(100, 11, &d).unwrap();
    let g3 = dcgan_generator_28(100, 12, &d).unwrap();
    for (((n, a), (_, b)), (_, c)) in g
        .parameters()
        .iter()
        .zip(g2.parameters())
        .zip(g3.parameters())
    {
        assert_eq!(v(a), v(&b), "{n}");
        if !n.ends_with("bias") {
            assert_ne!(v(a), v(&c), "{n}");
        }
    }
}

#[test]
fn nn_init_same_on_emu() {
    let Ok(emu) = Device::emu() else { return };
    let a = dcgan_generator_28(100, 3, &Device::Cpu).unwrap();
    let b = dcgan_generator_28(100, 3, &emu).unwrap();
    for ((n, x), (_, y)) in a.parameters().iter().zip(b.parameters()) {
        let y = y.to_device(&Device::Cpu).unwrap();
        assert_eq!(v(x), v(&y), "{n}");
    }
}

#[test]
fn nn_generator_emu_matches_cpu_train_and_eval() {
    let Ok(emu) = Device::emu() else { return };
    let mut a = dcgan_generator_28(100, 3, &Device::Cpu).unwrap();
    let mut b = dcgan_generator_28(100, 3, &emu).unwrap();
    let z = Tensor::randn([4, 100], 8, 0, &Device::Cpu).unwrap();
    let close = |x: &Tensor, y: &Tensor, what: &str| {
        let (x, y) = (v(x), v(&y.to_device(&Device::Cpu).unwrap()));
        for (p, q) in x.iter().zip(&y) {
            assert!(
                (p - q).abs() <= 2e-4 * (1.0 + q.abs()),
                "{what}: {p} vs {q}"
            );
        }
    };
    let ya = a.forward(&z).unwrap();
    let yb = b.forward(&z.to_device(&emu).unwrap()).unwrap();
    close(&ya, &yb, "train output");
    for ((n, x), (_, y)) in state_dict(&a).iter().zip(state_dict(&b).iter()) {
        let (x, y) = (
            x.to_dtype(duel::DType::F32).unwrap(),
            y.to_dtype(duel::DType::F32).unwrap(),
        );
        close(&x, &y, n);
    }
    a.set_training(false);
    b.set_training(false);
    let ya = a.forward(&z).unwrap();
    let yb = b.forward(&z.to_device(&emu).unwrap()).unwrap();
    close(&ya, &yb, "eval output");
}
