//! reduce: backward rules of sum, mean and max: every gradcheck case (f64, cpu),
//! hand-computed gradients (ties share the gradient evenly, NaN maxima take it), and
//! emu-vs-cpu f32 gradient parity at odd sizes exercising `reduce_max_backward_warp_f32`
//! and `reduce_max_backward_block_f32`.

use duel::autograd::gradcheck::check;
use duel::ops::reduce::{gradcheck_cases, reduce, ReduceOp};
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn reduce_gradcheck_cases_pass() {
    let cases = gradcheck_cases().unwrap();
    for op in ["sum", "mean", "max"] {
        assert!(
            cases.iter().any(|c| c.op == op),
            "no gradcheck case for {op}"
        );
    }
    for case in &cases {
        for row in check(case).unwrap() {
            println!(
                "{:<5} {:<46} input {} {:>10.2e} {:>10.2e}",
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

fn leaf(data: &[f32], shape: &[usize], device: &Device) -> Tensor {
    Tensor::from_slice(data, shape.to_vec(), device)
        .unwrap()
        .with_requires_grad()
}

fn grad(x: &Tensor) -> Vec<f32> {
    x.grad().unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn reduce_max_ties_share_the_gradient() {
    for device in [Device::Cpu, emu()] {
        let x = leaf(&[1.0, 3.0, 3.0], &[3], &device);
        x.max_all().unwrap().backward().unwrap();
        assert_eq!(grad(&x), vec![0.0, 0.5, 0.5], "{device}");

        // per row, weighted, keepdim
        let x = leaf(
            &[1.0, 3.0, 3.0, 5.0, 2.0, 5.0, 7.0, 7.0, 7.0],
            &[3, 3],
            &device,
        );
        let y = x.max(&[1], true).unwrap();
        assert_eq!(y.dims(), &[3, 1]);
        let w = Tensor::from_slice(&[2.0f32, 4.0, 3.0], [3, 1], &device).unwrap();
        y.backward_with(&w).unwrap();
        assert_eq!(
            grad(&x),
            vec![0.0, 1.0, 1.0, 2.0, 0.0, 2.0, 1.0, 1.0, 1.0],
            "{device}"
        );

        // over axis 0 (strided rows), no keepdim
        // columns [4, 4] (a tie) and [1, 2]
        let x = leaf(&[4.0, 1.0, 4.0, 2.0], &[2, 2], &device);
        x.max(&[0], false)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(grad(&x), vec![0.5, 0.0, 0.5, 1.0], "{device}");
    }
    // f64 too
    let x = Tensor::from_slice(&[1.0f64, 3.0, 3.0], [3], &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    x.max_all().unwrap().backward().unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f64>().unwrap(),
        vec![0.0, 0.5, 0.5]
    );
}

#[test]
fn reduce_max_nan_takes_the_gradient() {
    for device in [Device::Cpu, emu()] {
        let x = leaf(&[1.0, f32::NAN, 3.0, f32::NAN], &[4], &device);
        let y = x.max_all().unwrap();
        assert!(y.item().unwrap().is_nan());
        y.backward().unwrap();
        assert_eq!(grad(&x), vec![0.0, 0.5, 0.0, 0.5], "{device}");
        // infinities are ordinary values
        let x = leaf(&[f32::INFINITY, 1.0, f32::NEG_INFINITY], &[3], &device);
        x.max_all().unwrap().backward().unwrap();
        assert_eq!(grad(&x), vec![1.0, 0.0, 0.0], "{device}");
    }
}

#[test]
fn reduce_sum_and_mean_hand_checked() {
    for device in [Device::Cpu, emu()] {
        let x = leaf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &device);
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0], [3], &device).unwrap();
        x.sum(&[0], false).unwrap().backward_with(&w).unwrap();
        assert_eq!(grad(&x), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "{device}");

        let x = leaf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &device);
        let w = Tensor::from_slice(&[3.0f32, 6.0], [2, 1], &device).unwrap();
        x.mean(&[-1], true).unwrap().backward_with(&w).unwrap();
        assert_eq!(grad(&x), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0], "{device}");

        let x = leaf(&[1.0, 2.0, 3.0, 4.0], &[2, 2], &device);
        x.mean_all().unwrap().backward().unwrap();
        assert_eq!(grad(&x), vec![0.25; 4], "{device}");

        // through a view, to the leaf: x.t().sum_all() → ones
        let x = leaf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &device);
        x.t().unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(grad(&x), vec![1.0; 6], "{device}");
    }
}

#[test]
fn reduce_records_its_name() {
    let x = leaf(&[1.0, 2.0], &[2], &Device::Cpu);
    for (op, y) in [
        ("sum", x.sum_all().unwrap()),
        ("mean", x.mean(&[0], true).unwrap()),
        ("max", x.max(&[-1], false).unwrap()),
    ] {
        assert_eq!(duel::autograd::tape(&y).last().unwrap().op, op);
    }
    // max keeps x and y for backward (8 + 4 bytes), sum and mean nothing
    let entry = duel::autograd::tape(&x.max_all().unwrap()).pop().unwrap();
    assert_eq!(entry.saved_bytes, 12);
    let entry = duel::autograd::tape(&x.sum_all().unwrap()).pop().unwrap();
    assert_eq!(entry.saved_bytes, 0);
}

/// Gradient of `reduce(op, axes, keepdim)` of x (shape `shape`, possibly transposed
/// first) weighted by fixed Philox weights, on `device`.
fn reduce_grad(
    device: &Device,
    x: &[f32],
    shape: &[usize],
    transpose: bool,
    op: ReduceOp,
    axes: &[isize],
    keepdim: bool,
) -> Vec<f32> {
    let x = leaf(x, shape, device);
    let input = if transpose { x.t().unwrap() } else { x.clone() };
    let y = reduce(&input, op, axes, keepdim).unwrap();
    let w = Tensor::randn(y.shape().clone(), 9, 0, device).unwrap();
    y.backward_with(&w).unwrap();
    grad(&x)
}

#[test]
fn reduce_emu_matches_cpu_gradients() {
    let emu = emu();
    // (shape, transpose first, axes, keepdim): warp rows, block rows (k > 1024), strided
    // rows, several axes, full reductions
    let shapes: Vec<(Vec<usize>, bool, Vec<isize>, bool)> = vec![
        (vec![7, 37], false, vec![1], false),
        (vec![7, 37], false, vec![0], true),
        (vec![37, 9], true, vec![-1], false),
        (vec![3, 2001], false, vec![1], true),
        (vec![2001, 3], true, vec![1], false),
        (vec![5, 3, 7], false, vec![0, 2], false),
        (vec![5, 3, 7], false, vec![-1, 1], true),
        (vec![5003], false, vec![0], false),
        (vec![3, 5, 7, 2], false, vec![0, 1, 2, 3], false),
        (vec![301, 67], false, vec![1], false),
    ];
    for (shape, transpose, axes, keepdim) in &shapes {
        let n: usize = shape.iter().product();
        let gauss: Vec<f32> = Tensor::randn([n], 5, 0, &Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        // small integers: plenty of ties for max
        let ties: Vec<f32> = gauss
            .iter()
            .map(|v| (v * 2.0).round().clamp(-3.0, 3.0))
            .collect();
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            for (label, x) in [("gaussian", &gauss), ("ties", &ties)] {
                let args = (shape.as_slice(), *transpose, op, axes.as_slice(), *keepdim);
                let cpu = reduce_grad(&Device::Cpu, x, args.0, args.1, args.2, args.3, args.4);
                let gpu = reduce_grad(&emu, x, args.0, args.1, args.2, args.3, args.4);
                assert_eq!(cpu.len(), gpu.len());
                for (i, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * a.abs().max(1e-6),
                        "{op:?} {label} {shape:?} t={transpose} axes {axes:?} keepdim {keepdim}: \
                         element {i}: cpu {a}, emu {b}"
                    );
                }
                if op == ReduceOp::Max {
                    // the rule is exact: same bits on both backends
                    assert_eq!(cpu, gpu, "{label} {shape:?} axes {axes:?}");
                }
            }
        }
    }
}

#[test]
fn reduce_max_backward_refuses_mismatches() {
    let x = Tensor::zeros([2, 3], DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
    let bad = Tensor::zeros([3], DType::F32, &Device::Cpu).unwrap();
    assert!(duel::ops::reduce::max_backward(&x, &y, &bad, &[1], false).is_err());
    assert!(duel::ops::reduce::max_backward(&x, &y, &y, &[1], false).is_ok());
}
