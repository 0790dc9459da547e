//! view: backward rules of reshape/flatten, transpose/t, permute, narrow, broadcast_to,
//! unsqueeze and squeeze: every gradcheck case (f64, cpu), hand-checked gradients,
//! gradients reaching the base leaf through views, and emu-vs-cpu f32 gradient parity at
//! odd sizes (narrow's backward runs `copy_into_f32` / `copy_into_b16` on emu).

use duel::autograd::gradcheck::check;
use duel::ops::view::{copy_into, gradcheck_cases};
use duel::{DType, Device, Result, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn view_gradcheck_cases_pass() {
    let cases = gradcheck_cases().unwrap();
    let mut ops: Vec<&str> = cases.iter().map(|c| c.op).collect();
    ops.dedup();
    for op in [
        "reshape",
        "transpose",
        "permute",
        "narrow",
        "broadcast_to",
        "unsqueeze",
        "squeeze",
        "cast",
    ] {
        assert!(ops.contains(&op), "no gradcheck case for {op}");
    }
    for case in &cases {
        for row in check(case).unwrap() {
            println!(
                "{:<13} {:<58} input {} {:>10.2e} {:>10.2e}",
                row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
            assert!(
                row.passed,
                "gradcheck failed: {} ({}) input {}: max abs {:e}, max rel {:e}",
                row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
        }
    }
}

fn arange(n: usize, shape: &[usize], device: &Device) -> Tensor {
    Tensor::arange(0.0, n as f64, 1.0, DType::F32, device)
        .unwrap()
        .reshape(shape.to_vec())
        .unwrap()
}

#[test]
fn view_grad_reaches_the_base_leaf() {
    for device in [Device::Cpu, emu()] {
        let x = arange(6, &[2, 3], &device).with_requires_grad();
        x.t().unwrap().sum_all().unwrap().backward().unwrap();
        let g = x.grad().unwrap();
        assert_eq!(g.dims(), &[2, 3]);
        assert_eq!(g.to_vec::<f32>().unwrap(), vec![1.0; 6], "{device}");

        // a chain of every view back to the leaf
        let x = arange(24, &[2, 3, 4], &device).with_requires_grad();
        let y = x
            .permute(&[2, 0, 1])
            .unwrap()
            .narrow(0, 1, 2)
            .unwrap()
            .reshape([2, 6])
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .broadcast_to([3, 2, 6])
            .unwrap()
            .squeeze(0);
        assert!(y.is_err(), "squeeze of a size-3 axis must fail");
        let y = x
            .permute(&[2, 0, 1])
            .unwrap()
            .narrow(0, 1, 2)
            .unwrap()
            .reshape([2, 6])
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .broadcast_to([3, 2, 6])
            .unwrap();
        y.sum_all().unwrap().backward().unwrap();
        // x[i][j][k] is used 3 times (the broadcast) when k is 1 or 2 (the window), else never
        let expect: Vec<f32> = (0..24)
            .map(|v| if (1..3).contains(&(v % 4)) { 3.0 } else { 0.0 })
            .collect();
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>().unwrap(),
            expect,
            "{device}"
        );
    }
}

#[test]
fn view_hand_checked_gradients() {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], [4], &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    let w = Tensor::from_slice(&[10.0f32, 20.0], [2], &Device::Cpu).unwrap();
    x.narrow(0, 1, 2).unwrap().backward_with(&w).unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 10.0, 20.0, 0.0]
    );

    // transpose: the gradient of x.t() weighted by w is w.t()
    let x = Tensor::zeros([2, 3], DType::F32, &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    let w = arange(6, &[3, 2], &Device::Cpu);
    x.t().unwrap().backward_with(&w).unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    );

    // broadcast_to sums over the expanded axes
    let x = Tensor::zeros([3, 1], DType::F32, &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    let w = arange(6, &[2, 3, 1], &Device::Cpu)
        .broadcast_to([2, 3, 2])
        .unwrap();
    x.broadcast_to([2, 3, 2])
        .unwrap()
        .backward_with(&w.contiguous().unwrap())
        .unwrap();
    // [3,1] gets Σ over batch (2) and the expanded column (2): 2·(v + (v+3))
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![6.0, 10.0, 14.0]
    );
}

#[test]
fn view_tape_names() {
    let x = Tensor::zeros([2, 3], DType::F32, &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    let cases: Vec<(&str, Tensor)> = vec![
        ("reshape", x.reshape([3, 2]).unwrap()),
        ("reshape", x.flatten().unwrap()),
        ("transpose", x.t().unwrap()),
        ("transpose", x.transpose(0, 1).unwrap()),
        ("permute", x.permute(&[1, 0]).unwrap()),
        ("narrow", x.narrow(1, 0, 2).unwrap()),
        ("broadcast_to", x.broadcast_to([4, 2, 3]).unwrap()),
        ("unsqueeze", x.unsqueeze(0).unwrap()),
        ("squeeze", x.unsqueeze(0).unwrap().squeeze(0).unwrap()),
    ];
    for (name, y) in cases {
        let tape = duel::autograd::tape(&y);
        assert_eq!(tape.last().map(|e| e.op), Some(name), "{name}");
    }
    // nothing is recorded without a leaf that requires grad, or under no_grad
    let plain = Tensor::zeros([2, 3], DType::F32, &Device::Cpu).unwrap();
    assert!(!plain.t().unwrap().requires_grad());
    assert!(!duel::autograd::no_grad(|| x.t()).unwrap().requires_grad());
}

/// Gradient of `f(x)` weighted by fixed Philox weights, on `device`, as f32 values.
fn grad_on(
    device: &Device,
    x: &[f32],
    shape: &[usize],
    dtype: DType,
    f: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Vec<f32> {
    let x = Tensor::from_slice(x, shape.to_vec(), device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .with_requires_grad();
    let y = f(&x).unwrap();
    let w = Tensor::randn(y.shape().clone(), 7, 0, device)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    y.backward_with(&w).unwrap();
    let g = x.grad().unwrap();
    assert_eq!((g.shape(), g.dtype()), (x.shape(), dtype));
    g.to_f64_vec()
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[test]
fn view_emu_matches_cpu_gradients() {
    type F = Box<dyn Fn(&Tensor) -> Result<Tensor>>;
    let cases: Vec<(&str, Vec<usize>, F)> = vec![
        (
            "reshape of transposed",
            vec![7, 13],
            Box::new(|x| x.t()?.reshape([13, 7])),
        ),
        ("flatten", vec![3, 5, 7], Box::new(|x| x.flatten())),
        ("transpose", vec![5, 3, 7], Box::new(|x| x.transpose(0, 2))),
        (
            "permute rank 4",
            vec![3, 5, 2, 7],
            Box::new(|x| x.permute(&[3, 1, 0, 2])),
        ),
        (
            "narrow axis 0",
            vec![11, 9],
            Box::new(|x| x.narrow(0, 3, 5)),
        ),
        (
            "narrow axis -1",
            vec![11, 9],
            Box::new(|x| x.narrow(-1, 2, 7)),
        ),
        (
            "narrow twice",
            vec![5, 7, 9],
            Box::new(|x| x.narrow(1, 1, 5)?.narrow(2, 3, 3)),
        ),
        (
            "narrow of transposed",
            vec![7, 9],
            Box::new(|x| x.t()?.narrow(1, 2, 3)),
        ),
        (
            "narrow large",
            vec![301, 257],
            Box::new(|x| x.narrow(0, 17, 200)),
        ),
        (
            "broadcast leading",
            vec![13],
            Box::new(|x| x.broadcast_to([3, 5, 13])),
        ),
        (
            "broadcast size-1",
            vec![7, 1, 3],
            Box::new(|x| x.broadcast_to([2, 7, 9, 3])),
        ),
        ("unsqueeze", vec![5, 7], Box::new(|x| x.unsqueeze(1))),
        ("squeeze", vec![5, 1, 7], Box::new(|x| x.squeeze(1))),
    ];
    let emu = emu();
    for (what, shape, f) in &cases {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = Tensor::randn([n], 3, 0, &Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let cpu = grad_on(&Device::Cpu, &x, shape, DType::F32, f.as_ref());
        let gpu = grad_on(&emu, &x, shape, DType::F32, f.as_ref());
        assert_eq!(cpu.len(), gpu.len(), "{what}");
        for (i, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
            // sums over broadcast axes run in a different order (f32 on emu, f64 on cpu)
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "{what}: element {i}: cpu {a}, emu {b}"
            );
        }
    }
    // narrow's backward of 16-bit gradients: fill_u16 + copy_into_b16, bit-exact
    for dtype in [DType::F16, DType::BF16] {
        let x: Vec<f32> = Tensor::randn([7 * 9], 4, 0, &Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let f = |x: &Tensor| x.narrow(1, 2, 5);
        let cpu = grad_on(&Device::Cpu, &x, &[7, 9], dtype, &f);
        let gpu = grad_on(&emu, &x, &[7, 9], dtype, &f);
        assert_eq!(cpu, gpu, "{dtype}");
    }
}

#[test]
fn view_copy_into_writes_a_window() {
    for device in [Device::Cpu, emu()] {
        let dst = Tensor::zeros([3, 4], DType::F32, &device).unwrap();
        let src = arange(6, &[3, 2], &device);
        // a transposed source into a column window
        let src_t = src.t().unwrap().contiguous().unwrap().t().unwrap();
        copy_into(&src_t, &dst.narrow(1, 1, 2).unwrap()).unwrap();
        assert_eq!(
            dst.to_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 4.0, 5.0, 0.0],
            "{device}"
        );
        // overlapping source and destination: the source is read before any write
        let row = dst.narrow(0, 0, 2).unwrap();
        copy_into(&dst.narrow(0, 1, 2).unwrap(), &row).unwrap();
        assert_eq!(
            dst.to_vec::<f32>().unwrap(),
            vec![0.0, 2.0, 3.0, 0.0, 0.0, 4.0, 5.0, 0.0, 0.0, 4.0, 5.0, 0.0],
            "{device}"
        );
        // a broadcast destination and a shape mismatch are refused
        let one = Tensor::zeros([1, 4], DType::F32, &device).unwrap();
        let wide = one.broadcast_to([3, 4]).unwrap();
        assert!(copy_into(&dst, &wide).is_err());
        assert!(copy_into(&src, &dst).is_err());
    }
}
