//! dropout: the Philox mask rule checked element by element, bitwise cpu/emu equality of
//! forward and backward, p = 0 / p = 1 / eval identities, errors, gradcheck.

use duel::autograd::gradcheck;
use duel::ops::dropout::dropout;
use duel::ops::rng::uniform_at;
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32) * 0.37 - 5.0).collect()
}

#[test]
fn dropout_mask_follows_philox_positions() {
    let (p, seed, offset) = (0.3, 1234u64, 7u64);
    let xs = data(101);
    let x = Tensor::from_slice(&xs, [101], &Device::Cpu).unwrap();
    let y = v(&dropout(&x, p, seed, offset, true).unwrap());
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut kept = 0;
    for i in 0..101 {
        let keep = uniform_at(seed, offset + i as u64) >= p as f32;
        kept += keep as usize;
        let expect = if keep { xs[i] * scale } else { 0.0 };
        assert_eq!(y[i].to_bits(), expect.to_bits(), "element {i}");
    }
    assert!(kept > 50 && kept < 90, "kept {kept} of 101 at p = 0.3");
}

#[test]
fn dropout_emu_matches_cpu_bitwise() {
    let e = emu();
    for (shape, p, seed, offset) in [
        (vec![101usize], 0.3, 1u64, 0u64),
        (vec![3, 5, 7], 0.5, 2, 1),
        (vec![2, 3, 33, 17], 0.1, 3, 6),
        (vec![1], 0.9, 4, 3),
        (vec![4, 5], 0.75, u64::MAX, 2),
    ] {
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec(data(n), shape.clone(), &Device::Cpu).unwrap();
        let xc = x.with_requires_grad();
        let xe = x.to_device(&e).unwrap().with_requires_grad();
        let yc = dropout(&xc, p, seed, offset, true).unwrap();
        let ye = dropout(&xe, p, seed, offset, true).unwrap();
        let bits = |t: &Tensor| v(t).iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ye), bits(&yc), "forward {shape:?} p={p}");
        let g = Tensor::randn(shape.clone(), 5, 0, &Device::Cpu).unwrap();
        yc.backward_with(&g).unwrap();
        ye.backward_with(&g.to_device(&e).unwrap()).unwrap();
        assert_eq!(
            bits(&xe.grad().unwrap()),
            bits(&xc.grad().unwrap()),
            "backward {shape:?}"
        );
        // backward = same mask × scale
        let gy: Vec<f32> = v(&g);
        let xg = v(&xc.grad().unwrap());
        let ys = v(&yc);
        let scale = (1.0 / (1.0 - p)) as f32;
        for i in 0..n {
            // no input element is 0, so a zero output means dropped
            let expect = if ys[i] != 0.0 { gy[i] * scale } else { 0.0 };
            assert_eq!(xg[i].to_bits(), expect.to_bits(), "grad element {i}");
        }
    }
}

#[test]
fn dropout_strided_input_uses_logical_positions() {
    let x = Tensor::from_vec(data(12), [3, 4], &Device::Cpu).unwrap();
    let xt = x.t().unwrap();
    let a = dropout(&xt, 0.4, 9, 0, true).unwrap();
    let b = dropout(&xt.contiguous().unwrap(), 0.4, 9, 0, true).unwrap();
    assert_eq!(v(&a), v(&b));
    let xe = x.to_device(&emu()).unwrap().t().unwrap();
    assert_eq!(v(&dropout(&xe, 0.4, 9, 0, true).unwrap()), v(&b));
}

#[test]
fn dropout_identities_and_errors() {
    let x = Tensor::from_vec(data(10), [10], &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    // eval and p = 0: the input itself
    assert_eq!(v(&dropout(&x, 0.5, 1, 0, false).unwrap()), data(10));
    assert_eq!(v(&dropout(&x, 0.0, 1, 0, true).unwrap()), data(10));
    let y = dropout(&x, 0.0, 1, 0, true).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(v(&x.grad().unwrap()), vec![1.0; 10]);
    x.zero_grad();
    // p = 1: zeros, zero gradient
    let y = dropout(&x, 1.0, 1, 0, true).unwrap();
    assert_eq!(v(&y), vec![0.0; 10]);
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(v(&x.grad().unwrap()), vec![0.0; 10]);
    let ye = dropout(&x.to_device(&emu()).unwrap(), 1.0, 1, 0, true).unwrap();
    assert_eq!(v(&ye), vec![0.0; 10]);
    // bad p
    for p in [-0.1, 1.5, f64::NAN] {
        let err = dropout(&x, p, 1, 0, true).unwrap_err().to_string();
        assert!(err.contains("between 0 and 1"), "{err}");
    }
    // f64 works on cpu
    let x64 = Tensor::from_vec(vec![1.0f64; 8], [8], &Device::Cpu).unwrap();
    let y64 = dropout(&x64, 0.5, 3, 0, true)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert!(y64.iter().all(|&a| a == 0.0 || a == 2.0));
    // f16 is refused
    let h = x.detach().to_dtype(DType::F16).unwrap();
    assert!(dropout(&h, 0.5, 1, 0, true).is_err());
}

#[test]
fn dropout_gradcheck() {
    for case in duel::ops::dropout::gradcheck_cases().unwrap() {
        for row in gradcheck::check(&case).unwrap() {
            assert!(
                row.passed,
                "{} ({}): {:e}",
                row.op, row.variant, row.max_abs_err
            );
        }
    }
}
