//! upsample_nearest2d: hand-checked forward and backward (block sums), errors, gradcheck,
//! emu-vs-cpu parity at odd non-square sizes (forward bitwise — a copy; backward within
//! 1e-6·(1 + |value|): f32 sums of s² terms vs the cpu's f64 sums).

use duel::autograd::gradcheck;
use duel::ops::upsample::upsample_nearest2d;
use duel::{Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn upsample_nearest2d_hand_checked() {
    let x = Tensor::from_slice(
        &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
        [1, 1, 2, 3],
        &Device::Cpu,
    )
    .unwrap()
    .with_requires_grad();
    let y = x.upsample_nearest2d(2).unwrap();
    assert_eq!(y.dims(), &[1, 1, 4, 6]);
    #[rustfmt::skip]
    let expect = vec![
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
        4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
        4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
    ];
    assert_eq!(v(&y), expect);
    // dy[i] = i: block sums, e.g. pixel (0,0) gets 0 + 1 + 6 + 7 = 14
    let dy: Vec<f32> = (0..24).map(|i| i as f32).collect();
    y.backward_with(&Tensor::from_vec(dy, [1, 1, 4, 6], &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(
        v(&x.grad().unwrap()),
        vec![14.0, 22.0, 30.0, 62.0, 70.0, 78.0]
    );
    // scale 1 is the identity
    assert_eq!(v(&x.upsample_nearest2d(1).unwrap()), v(&x));
}

#[test]
fn upsample_nearest2d_errors() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], [1, 2], &Device::Cpu).unwrap();
    assert!(upsample_nearest2d(&x, 2).is_err());
    let x = Tensor::from_slice(&[1.0f32, 2.0], [1, 1, 1, 2], &Device::Cpu).unwrap();
    assert!(upsample_nearest2d(&x, 0).is_err());
}

#[test]
fn upsample_nearest2d_gradcheck() {
    for case in duel::ops::upsample::gradcheck_cases().unwrap() {
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
fn upsample_nearest2d_emu_parity() {
    let e = emu();
    for (shape, s) in [
        (vec![1usize, 1, 1, 1], 2usize),
        (vec![2, 3, 5, 7], 2),
        (vec![3, 2, 7, 3], 3),
        (vec![2, 128, 7, 7], 2), // the DCGAN 7 → 14 step
    ] {
        let x = Tensor::randn(shape.clone(), 3, 0, &Device::Cpu).unwrap();
        let run = |dev: &Device| {
            let xl = x.to_device(dev).unwrap().with_requires_grad();
            let y = upsample_nearest2d(&xl, s).unwrap();
            let g = Tensor::randn(y.shape().clone(), 4, 0, dev).unwrap();
            y.backward_with(&g).unwrap();
            (v(&y), v(&xl.grad().unwrap()))
        };
        let (yc, gc) = run(&Device::Cpu);
        let (ye, ge) = run(&e);
        assert_eq!(ye, yc, "forward {shape:?}");
        for (a, b) in ge.iter().zip(&gc) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{shape:?}: {a} vs {b}"
            );
        }
    }
    // a strided input is made contiguous first
    let x = Tensor::randn([2, 3, 4, 5], 8, 0, &Device::Cpu).unwrap();
    let xt = x.transpose(2, 3).unwrap();
    let c = upsample_nearest2d(&xt, 2).unwrap();
    let d = upsample_nearest2d(&x.to_device(&e).unwrap().transpose(2, 3).unwrap(), 2).unwrap();
    assert_eq!(v(&d), v(&c));
}
