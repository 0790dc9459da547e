//! concat: hand-checked values on several axes, strided and empty inputs, errors,
//! gradients (slices of the output gradient), gradcheck, and exact emu-vs-cpu parity
//! (a copy: bitwise equal) at odd sizes and the U-Net channel concat.

use duel::autograd::gradcheck;
use duel::ops::concat::concat;
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape.to_vec(), &Device::Cpu).unwrap()
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn seq(n: usize, start: f32) -> Vec<f32> {
    (0..n).map(|i| start + i as f32).collect()
}

#[test]
fn concat_hand_checked_axes() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[5.0, 6.0], &[1, 2]);
    let c = t(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[2, 3]);
    let y = concat(&[&a, &b], 0).unwrap();
    assert_eq!(y.dims(), &[3, 2]);
    assert_eq!(v(&y), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let y = concat(&[&a, &c], -1).unwrap();
    assert_eq!(y.dims(), &[2, 5]);
    assert_eq!(
        v(&y),
        vec![1.0, 2.0, 7.0, 8.0, 9.0, 3.0, 4.0, 10.0, 11.0, 12.0]
    );
    // channels of NCHW: [1,1,2,2] ++ [1,2,2,2]
    let x1 = t(&seq(4, 0.0), &[1, 1, 2, 2]);
    let x2 = t(&seq(8, 10.0), &[1, 2, 2, 2]);
    let y = concat(&[&x1, &x2], 1).unwrap();
    assert_eq!(y.dims(), &[1, 3, 2, 2]);
    let mut expect = seq(4, 0.0);
    expect.extend(seq(8, 10.0));
    assert_eq!(v(&y), expect);
    // one tensor: a copy
    assert_eq!(v(&concat(&[&a], 1).unwrap()), v(&a));
    // an empty input along the axis contributes nothing
    let empty = Tensor::zeros([2, 0], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        v(&concat(&[&a, &empty, &a], 1).unwrap()),
        vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
    );
}

#[test]
fn concat_backward_slices_the_gradient() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).with_requires_grad();
    let b = t(&[5.0, 6.0], &[2, 1]).with_requires_grad();
    let y = concat(&[&a, &b], 1).unwrap();
    y.backward_with(&t(&seq(6, 1.0), &[2, 3])).unwrap();
    assert_eq!(v(&a.grad().unwrap()), vec![1.0, 2.0, 4.0, 5.0]);
    assert_eq!(v(&b.grad().unwrap()), vec![3.0, 6.0]);
    // the same tensor twice gets both windows summed
    let y = concat(&[&b, &b], 0).unwrap();
    b.zero_grad();
    y.backward_with(&t(&[1.0, 2.0, 3.0, 4.0], &[4, 1])).unwrap();
    assert_eq!(v(&b.grad().unwrap()), vec![4.0, 6.0]);
}

#[test]
fn concat_errors() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[1.0, 2.0, 3.0], &[3, 1]);
    let err = concat(&[&a, &b], 1).unwrap_err().to_string();
    assert!(
        err.contains("sizes must match except along axis 1"),
        "{err}"
    );
    assert!(concat(&[], 0).is_err());
    assert!(concat(&[&a], 2).is_err());
    let r3 = t(&[1.0, 2.0], &[1, 1, 2]);
    assert!(concat(&[&a, &r3], 0).is_err());
    let a64 = a.to_dtype(DType::F64).unwrap();
    assert!(concat(&[&a, &a64], 0)
        .unwrap_err()
        .to_string()
        .contains("dtype"));
    let ae = a.to_device(&emu()).unwrap();
    assert!(concat(&[&a, &ae], 0)
        .unwrap_err()
        .to_string()
        .contains("device"));
}

#[test]
fn concat_gradcheck() {
    for case in duel::ops::concat::gradcheck_cases().unwrap() {
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
fn concat_emu_parity() {
    let e = emu();
    let cases: Vec<(Vec<Vec<usize>>, isize)> = vec![
        (
            vec![vec![3, 5, 7, 3], vec![3, 2, 7, 3], vec![3, 1, 7, 3]],
            1,
        ), // U-Net skip
        (vec![vec![2, 64, 7, 7], vec![2, 64, 7, 7]], 1),
        (vec![vec![5, 3], vec![5, 1], vec![5, 0], vec![5, 4]], -1),
        (vec![vec![1, 3, 5], vec![2, 3, 5]], 0),
        (vec![vec![3, 2, 5], vec![3, 2, 1]], 2),
    ];
    for (k, (shapes, axis)) in cases.into_iter().enumerate() {
        let xs: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor::randn(s.clone(), (k * 10 + i) as u64, 0, &Device::Cpu).unwrap())
            .collect();
        let run = |dev: &Device| {
            let leaves: Vec<Tensor> = xs
                .iter()
                .map(|x| x.to_device(dev).unwrap().with_requires_grad())
                .collect();
            let refs: Vec<&Tensor> = leaves.iter().collect();
            let y = concat(&refs, axis).unwrap();
            let g = Tensor::randn(y.shape().clone(), 77, 0, dev).unwrap();
            y.backward_with(&g).unwrap();
            let grads: Vec<Vec<f32>> = leaves.iter().map(|l| v(&l.grad().unwrap())).collect();
            (v(&y), grads)
        };
        assert_eq!(run(&e), run(&Device::Cpu), "case {k}");
    }
    // strided inputs (a transpose and a narrow window) through the kernel's layout
    let a = Tensor::randn([4, 3], 1, 0, &Device::Cpu).unwrap();
    let b = Tensor::randn([3, 6], 2, 0, &Device::Cpu).unwrap();
    let cpu_y = concat(&[&a.t().unwrap(), &b.narrow(1, 2, 4).unwrap()], 0).unwrap();
    let (ae, be) = (a.to_device(&e).unwrap(), b.to_device(&e).unwrap());
    let emu_y = concat(&[&ae.t().unwrap(), &be.narrow(1, 2, 4).unwrap()], 0).unwrap();
    assert_eq!(v(&emu_y), v(&cpu_y));
    assert_eq!(cpu_y.dims(), &[6, 4]);
}
