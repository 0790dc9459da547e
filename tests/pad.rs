//! pad2d: hand-checked zero and reflect padding (values as PyTorch's F.pad gives them),
//! the reflect backward (mirrored contributions added), errors, gradcheck, emu-vs-cpu
//! parity (forward bitwise — a copy; backward within 1e-6·(1 + |value|): f32 sums of up
//! to 9 terms vs the cpu's f64 sums).

use duel::autograd::gradcheck;
use duel::ops::pad::{pad2d, PadMode};
use duel::{Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn x23() -> Tensor {
    Tensor::from_slice(
        &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
        [1, 1, 2, 3],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn pad2d_zero_hand_checked() {
    let y = pad2d(&x23(), (1, 0, 0, 1), PadMode::Zero).unwrap();
    assert_eq!(y.dims(), &[1, 1, 3, 4]);
    #[rustfmt::skip]
    let expect = vec![
        0.0, 1.0, 2.0, 3.0,
        0.0, 4.0, 5.0, 6.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(v(&y), expect);
    // no padding: a copy
    assert_eq!(
        v(&pad2d(&x23(), (0, 0, 0, 0), PadMode::Zero).unwrap()),
        v(&x23())
    );
}

#[test]
fn pad2d_reflect_hand_checked() {
    // F.pad(x, (2, 1, 1, 1), mode="reflect") for x = [[1,2,3],[4,5,6]]
    let y = pad2d(&x23(), (2, 1, 1, 1), PadMode::Reflect).unwrap();
    assert_eq!(y.dims(), &[1, 1, 4, 6]);
    #[rustfmt::skip]
    let expect = vec![
        6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
        3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
        6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
        3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
    ];
    assert_eq!(v(&y), expect);
    // backward with dy = 1: each input pixel counts how often it appears above
    let x = x23().with_requires_grad();
    let y = pad2d(&x, (2, 1, 1, 1), PadMode::Reflect).unwrap();
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(v(&x.grad().unwrap()), vec![2.0, 6.0, 4.0, 2.0, 6.0, 4.0]);
}

#[test]
fn pad2d_errors() {
    // reflect pad must be < dim
    let err = pad2d(&x23(), (3, 0, 0, 0), PadMode::Reflect)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("smaller than the corresponding input dimension"),
        "{err}"
    );
    assert!(pad2d(&x23(), (0, 0, 2, 0), PadMode::Reflect).is_err());
    // zero padding has no such limit
    assert!(pad2d(&x23(), (5, 5, 5, 5), PadMode::Zero).is_ok());
    let r3 = Tensor::from_slice(&[1.0f32, 2.0], [1, 1, 2], &Device::Cpu).unwrap();
    assert!(pad2d(&r3, (1, 1, 1, 1), PadMode::Zero).is_err());
}

#[test]
fn pad2d_gradcheck() {
    for case in duel::ops::pad::gradcheck_cases().unwrap() {
        for row in gradcheck::check(&case).unwrap() {
            assert!(
                row.passed,
                "{} ({}): {:e}",
                row.op, row.variant, row.max_abs_err
            );
        }
    }
}

#[test]
fn pad2d_emu_parity() {
    let e = emu();
    for (shape, pads) in [
        (vec![1usize, 1, 1, 1], (0usize, 0usize, 0usize, 0usize)),
        (vec![2, 3, 5, 7], (1, 2, 3, 0)),
        (vec![2, 3, 5, 7], (6, 6, 4, 4)), // pad = dim - 1
        (vec![1, 2, 3, 3], (1, 1, 1, 1)),
        (vec![1, 4, 9, 6], (3, 3, 3, 3)), // CycleGAN's ReflectionPad2d(3)
    ] {
        for mode in [PadMode::Zero, PadMode::Reflect] {
            if mode == PadMode::Reflect
                && (pads.0 >= shape[3]
                    || pads.1 >= shape[3]
                    || pads.2 >= shape[2]
                    || pads.3 >= shape[2])
            {
                continue;
            }
            let x = Tensor::randn(shape.clone(), 5, 0, &Device::Cpu).unwrap();
            let run = |dev: &Device| {
                let xl = x.to_device(dev).unwrap().with_requires_grad();
                let y = pad2d(&xl, pads, mode).unwrap();
                let g = Tensor::randn(y.shape().clone(), 6, 0, dev).unwrap();
                y.backward_with(&g).unwrap();
                (v(&y), v(&xl.grad().unwrap()))
            };
            let (yc, gc) = run(&Device::Cpu);
            let (ye, ge) = run(&e);
            assert_eq!(ye, yc, "forward {shape:?} {pads:?} {mode:?}");
            for (a, b) in ge.iter().zip(&gc) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{shape:?} {pads:?} {mode:?}: {a} vs {b}"
                );
            }
        }
    }
}
