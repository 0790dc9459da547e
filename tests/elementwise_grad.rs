//! Backward rules of the elementwise family: gradient checks in f64 on cpu for every op
//! (`ops::elementwise::gradcheck_cases`), the backward kernels of kernels/elementwise.cu
//! through `emu` against the cpu reference in f32, and the autograd semantics the rules
//! must honour (a tensor used twice, broadcasting, nothing recorded without a leaf).
//!
//! Tolerances
//! - gradcheck: the harness's own (|analytic − numeric| ≤ 1e-7 + 1e-6·|numeric|, f64,
//!   central differences with h = 1e-6; see `autograd::gradcheck`).
//! - backward kernel parity, emu vs cpu in f32, on identical x/y/dy: at most
//!   [`PARITY_ULP`] = 2 ulp apart, [`PARITY_ULP_POW`] = 8 for powf and pow (they call
//!   libm's powf/logf, whose f32 results may differ by an ulp or two from Rust's and are
//!   then multiplied; CUDA documents several ulp for powf). NaN ↔ NaN, equal infinities.
//! - whole graphs, emu vs cpu in f32 (forward and backward through several ops, so the
//!   forward's own 1–4 ulp differences propagate): |emu − cpu| ≤ [`GRAPH_ABS`] +
//!   [`GRAPH_REL`]·|cpu| with GRAPH_REL = 1e-5, GRAPH_ABS = 1e-6.

use duel::autograd::gradcheck;
use duel::autograd::{self, no_grad};
use duel::ops::elementwise::{
    binary, binary_backward, unary, unary_backward, BinaryOp, Reads, UnaryOp,
};
use duel::{Device, Tensor};
use std::collections::BTreeMap;

const PARITY_ULP: i64 = 2;
const PARITY_ULP_POW: i64 = 8;
const GRAPH_REL: f32 = 1e-5;
const GRAPH_ABS: f32 = 1e-6;
const SIZES: [usize; 4] = [1, 7, 1000, 4099];

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for the parity tests")
}

fn cpu(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn all_unary() -> Vec<UnaryOp> {
    vec![
        UnaryOp::Copy,
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu { slope: 0.01 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Clamp {
            min: -0.5,
            max: 1.5,
        },
        UnaryOp::Powf { exponent: 2.5 },
        UnaryOp::Powf { exponent: 0.0 },
        UnaryOp::Affine {
            mul: -1.5,
            add: 0.25,
        },
    ]
}

const ALL_BINARY: [BinaryOp; 7] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Pow,
    BinaryOp::Maximum,
    BinaryOp::Minimum,
];

// ---- gradcheck (f64, cpu) --------------------------------------------------------------

#[test]
fn elementwise_gradcheck_every_case_passes() {
    let cases = duel::ops::elementwise::gradcheck_cases().unwrap();
    // Every op of the family has cases, under the name it records on the tape.
    let names: Vec<&str> = cases.iter().map(|c| c.op).collect();
    for op in all_unary() {
        assert!(
            names.contains(&op.name()),
            "no gradcheck case for {}",
            op.name()
        );
    }
    for op in ALL_BINARY {
        let n = names.iter().filter(|&&n| n == op.name()).count();
        assert!(
            n >= 4,
            "{}: {n} cases (want same-shape, 2 broadcasts, x⊕x)",
            op.name()
        );
    }

    let mut worst: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let rows = gradcheck::check(case)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", case.op, case.variant));
        assert_eq!(rows.len(), case.inputs.len());
        for row in rows {
            let w = worst.entry(row.op).or_insert((0.0, 0.0));
            w.0 = w.0.max(row.max_abs_err);
            w.1 = w.1.max(row.max_rel_err);
            if !row.passed {
                failures.push(format!(
                    "{} ({}) input {} {}: max abs {:.2e}, max rel {:.2e}",
                    row.op, row.variant, row.input, row.shape, row.max_abs_err, row.max_rel_err
                ));
            }
        }
    }
    println!("{:<12} {:>12} {:>12}", "op", "max abs err", "max rel err");
    for (op, (abs, rel)) in &worst {
        println!("{op:<12} {abs:>12.2e} {rel:>12.2e}");
    }
    assert!(
        failures.is_empty(),
        "gradcheck failures:\n{}",
        failures.join("\n")
    );
}

// ---- semantics -------------------------------------------------------------------------

#[test]
fn elementwise_grad_tensor_used_twice_gets_both_contributions() {
    for dev in [Device::Cpu, emu()] {
        let xs = [1.5f32, -2.0, 0.25, 3.0];
        let x = cpu(&xs, &[4]).to_device(&dev).unwrap().with_requires_grad();
        let y = x.mul(&x).unwrap();
        y.backward_with(&Tensor::ones([4], duel::DType::F32, &dev).unwrap())
            .unwrap();
        let g = vals(&x.grad().unwrap());
        let want: Vec<f32> = xs.iter().map(|v| 2.0 * v).collect();
        assert_eq!(g, want, "d(x*x)/dx = 2x on {dev}");

        // x + x and maximum(x, x): 2 and 1 (a tie with itself splits half/half).
        x.zero_grad();
        let y = x.add(&x).unwrap();
        y.backward_with(&Tensor::ones([4], duel::DType::F32, &dev).unwrap())
            .unwrap();
        assert_eq!(vals(&x.grad().unwrap()), vec![2.0; 4], "d(x+x)/dx on {dev}");
        x.zero_grad();
        let y = x.maximum(&x).unwrap();
        y.backward_with(&Tensor::ones([4], duel::DType::F32, &dev).unwrap())
            .unwrap();
        assert_eq!(
            vals(&x.grad().unwrap()),
            vec![1.0; 4],
            "d max(x,x)/dx on {dev}"
        );
    }
}

#[test]
fn elementwise_grad_broadcast_operand_gets_the_column_sum() {
    for dev in [Device::Cpu, emu()] {
        let a = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
            .to_device(&dev)
            .unwrap()
            .with_requires_grad();
        let b = cpu(&[10.0, 20.0, 30.0], &[3])
            .to_device(&dev)
            .unwrap()
            .with_requires_grad();
        let seed = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
            .to_device(&dev)
            .unwrap();
        a.add(&b).unwrap().backward_with(&seed).unwrap();
        let gb = b.grad().unwrap();
        assert_eq!(gb.dims(), &[3], "on {dev}");
        assert_eq!(vals(&gb), vec![5.0, 7.0, 9.0], "column sums on {dev}");
        assert_eq!(vals(&a.grad().unwrap()), vals(&seed), "on {dev}");

        // [4,1] * [1,5]: each operand's gradient is the seed summed along the other's axis.
        let p = cpu(&[1.0, 2.0, 3.0, 4.0], &[4, 1])
            .to_device(&dev)
            .unwrap()
            .with_requires_grad();
        let q = cpu(&[1.0, -1.0, 2.0, 0.5, 3.0], &[1, 5])
            .to_device(&dev)
            .unwrap()
            .with_requires_grad();
        let ones = Tensor::ones([4, 5], duel::DType::F32, &dev).unwrap();
        p.mul(&q).unwrap().backward_with(&ones).unwrap();
        assert_eq!(p.grad().unwrap().dims(), &[4, 1]);
        assert_eq!(vals(&p.grad().unwrap()), vec![5.5; 4], "on {dev}");
        assert_eq!(q.grad().unwrap().dims(), &[1, 5]);
        assert_eq!(
            vals(&q.grad().unwrap()),
            vec![10.0; 5],
            "row sums of p on {dev}"
        );
    }
}

#[test]
fn elementwise_grad_nothing_recorded_without_a_leaf() {
    let a = cpu(&[1.0, 2.0, 3.0], &[3]);
    let b = cpu(&[4.0, 5.0, 6.0], &[3]);
    let y = a
        .mul(&b)
        .unwrap()
        .sigmoid()
        .unwrap()
        .add_scalar(1.0)
        .unwrap();
    assert!(!y.requires_grad());
    assert!(autograd::tape(&y).is_empty());
    // A leaf under no_grad records nothing either.
    let x = a.with_requires_grad();
    let z = no_grad(|| x.mul(&b).unwrap().exp().unwrap());
    assert!(!z.requires_grad() && autograd::tape(&z).is_empty());
}

#[test]
fn elementwise_grad_records_names_and_saved_bytes() {
    let x = cpu(&[1.0, -2.0, 3.0, 0.5, 2.0, -1.0], &[2, 3]).with_requires_grad_named("x");
    let w = cpu(&[0.5, 1.5, -1.0], &[3]); // a constant: mul saves only w for dx
    let h = x.mul(&w).unwrap();
    let s = h.sigmoid().unwrap();
    let t = s.t().unwrap().contiguous().unwrap();
    let r = t.relu().unwrap().affine(2.0, 1.0).unwrap();
    let tape = autograd::tape(&r);
    let ops: Vec<&str> = tape.iter().map(|e| e.op).collect();
    // transpose (a view, its own family) records in between.
    let ours: Vec<&str> = ops
        .iter()
        .copied()
        .filter(|o| ["mul", "sigmoid", "copy", "relu", "affine"].contains(o))
        .collect();
    assert_eq!(
        ours,
        ["mul", "sigmoid", "copy", "relu", "affine"],
        "{ops:?}"
    );
    let bytes = |op: &str| tape.iter().find(|e| e.op == op).map(|e| e.saved_bytes);
    assert_eq!(bytes("affine"), Some(0));
    assert_eq!(bytes("relu"), Some(6 * 4)); // its output
    assert_eq!(bytes("mul"), Some(3 * 4)); // only w: x's partial reads w
    assert_eq!(bytes("sigmoid"), Some(6 * 4)); // its output
    assert_eq!(bytes("copy"), Some(0));
    // Backward frees what the rules saved (the global counters are shared with tests
    // running in parallel, so look at the tape).
    r.backward_with(&Tensor::ones([3, 2], duel::DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert!(autograd::tape(&r).iter().all(|e| e.saved_bytes == 0));
}

// ---- emu vs cpu: backward kernels on identical inputs -----------------------------------

/// Test data in (-3, 3) with exact zeros and a few repeated values (kinks and ties).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            match i % 17 {
                3 => 0.0,
                7 => 1.5,
                11 => -0.5,
                _ => (u - 0.5) * 6.0,
            }
        })
        .collect()
}

fn ulp_key(x: f32) -> i64 {
    let b = x.to_bits() as i32 as i64;
    if b < 0 {
        i32::MIN as i64 - b
    } else {
        b
    }
}

/// NaN ↔ NaN, equal infinities, else at most `max_ulp` apart (+0 == −0).
fn assert_ulp(emu_out: &Tensor, cpu_out: &Tensor, max_ulp: i64, what: &str) {
    assert_eq!(emu_out.dims(), cpu_out.dims(), "{what}: shape");
    let (g, e) = (vals(emu_out), vals(cpu_out));
    for (i, (&x, &y)) in g.iter().zip(&e).enumerate() {
        if x.is_nan() || y.is_nan() {
            assert!(x.is_nan() && y.is_nan(), "{what}[{i}]: emu {x} vs cpu {y}");
            continue;
        }
        let d = if x == y {
            0
        } else {
            (ulp_key(x) - ulp_key(y)).abs()
        };
        assert!(d <= max_ulp, "{what}[{i}]: emu {x} vs cpu {y} ({d} ulp)");
    }
}

/// |emu − cpu| ≤ GRAPH_ABS + GRAPH_REL·|cpu|, NaN ↔ NaN.
fn assert_graph_close(emu_out: &Tensor, cpu_out: &Tensor, what: &str) -> f32 {
    assert_eq!(emu_out.dims(), cpu_out.dims(), "{what}: shape");
    let (g, e) = (vals(emu_out), vals(cpu_out));
    let mut worst = 0.0f32;
    for (i, (&x, &y)) in g.iter().zip(&e).enumerate() {
        if x.is_nan() || y.is_nan() {
            assert!(x.is_nan() && y.is_nan(), "{what}[{i}]: emu {x} vs cpu {y}");
            continue;
        }
        if x.is_infinite() || y.is_infinite() {
            assert_eq!(x, y, "{what}[{i}]: emu {x} vs cpu {y}");
            continue;
        }
        let err = (x - y).abs();
        worst = worst.max(err / (GRAPH_ABS + GRAPH_REL * y.abs()));
        assert!(
            err <= GRAPH_ABS + GRAPH_REL * y.abs(),
            "{what}[{i}]: emu {x} vs cpu {y} (diff {err:e})"
        );
    }
    worst
}

fn unary_ulp(op: UnaryOp) -> i64 {
    match op {
        UnaryOp::Powf { .. } => PARITY_ULP_POW,
        _ => PARITY_ULP,
    }
}

fn binary_ulp(op: BinaryOp) -> i64 {
    match op {
        BinaryOp::Pow => PARITY_ULP_POW,
        _ => PARITY_ULP,
    }
}

#[test]
fn elementwise_backward_parity_unary_kernel() {
    let dev = emu();
    for &n in &SIZES {
        let x = cpu(&data(n, n as u64), &[n]);
        let dy = cpu(&data(n, 1000 + n as u64), &[n]);
        let dye = dy.to_device(&dev).unwrap();
        for op in all_unary() {
            // The saved tensor is what the rule reads; feed both backends the same values.
            let saved = match op.backward_reads() {
                Reads::Nothing => None,
                Reads::Input => Some(x.clone()),
                Reads::Output => Some(unary(&x, op).unwrap()),
            };
            let saved_e = saved.as_ref().map(|s| s.to_device(&dev).unwrap());
            let want = unary_backward(op, saved.as_ref(), &dy).unwrap();
            let got = unary_backward(op, saved_e.as_ref(), &dye).unwrap();
            assert!(got.device().same(&dev));
            assert_ulp(&got, &want, unary_ulp(op), &format!("{op:?}' n={n}"));
        }
    }
}

#[test]
fn elementwise_backward_parity_unary_strided_inputs() {
    // Non-contiguous saved tensor and gradient: the launch layer copies them first.
    let dev = emu();
    for &n in &[1usize, 7, 333] {
        let xb = cpu(&data(3 * n, 5 + n as u64), &[n, 3]);
        let gb = cpu(&data(3 * n, 9 + n as u64), &[n, 3]);
        let (x, dy) = (xb.t().unwrap(), gb.t().unwrap());
        let xe = xb.to_device(&dev).unwrap().t().unwrap();
        let dye = gb.to_device(&dev).unwrap().t().unwrap();
        for op in all_unary() {
            let reads = op.backward_reads() != Reads::Nothing;
            let want = unary_backward(op, reads.then_some(&x), &dy).unwrap();
            let got = unary_backward(op, reads.then_some(&xe), &dye).unwrap();
            assert_eq!(got.dims(), &[3, n]);
            assert_ulp(
                &got,
                &want,
                unary_ulp(op),
                &format!("strided {op:?}' n={n}"),
            );
        }
    }
}

/// Operand shapes for an output of about `n` elements: equal, row broadcast,
/// outer-product broadcast.
fn binary_shapes(n: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![n], vec![n]),
        (vec![3, n], vec![n]),
        (vec![n, 1], vec![1, 3]),
        (vec![1], vec![n]),
    ]
}

#[test]
fn elementwise_backward_parity_binary_kernel() {
    let dev = emu();
    for &n in &SIZES {
        for (k, (sa, sb)) in binary_shapes(n).into_iter().enumerate() {
            let seed = (n * 10 + k) as u64;
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a = cpu(&data(na, seed), &sa);
            let b = cpu(&data(nb, seed + 7), &sb);
            let out: Vec<usize> = duel::Shape::broadcast("test", a.shape(), b.shape())
                .unwrap()
                .dims()
                .to_vec();
            let dy = cpu(&data(out.iter().product(), seed + 13), &out);
            let (ae, be, dye) = (
                a.to_device(&dev).unwrap(),
                b.to_device(&dev).unwrap(),
                dy.to_device(&dev).unwrap(),
            );
            for op in ALL_BINARY {
                for (wa, wb) in [(true, true), (true, false), (false, true)] {
                    let what = format!("{op:?} {sa:?}⊕{sb:?} want ({wa},{wb})");
                    let (ca, cb) = binary_backward(op, Some(&a), Some(&b), &dy, wa, wb).unwrap();
                    let (ea, eb) = binary_backward(op, Some(&ae), Some(&be), &dye, wa, wb).unwrap();
                    assert_eq!(ca.is_some(), wa);
                    assert_eq!(ea.is_some(), wa);
                    assert_eq!(cb.is_some(), wb);
                    assert_eq!(eb.is_some(), wb);
                    if let (Some(c), Some(e)) = (&ca, &ea) {
                        assert_ulp(e, c, binary_ulp(op), &format!("da {what}"));
                    }
                    if let (Some(c), Some(e)) = (&cb, &eb) {
                        assert_ulp(e, c, binary_ulp(op), &format!("db {what}"));
                    }
                }
                // Without operands where the op's partials do not read them.
                if matches!(op, BinaryOp::Add | BinaryOp::Sub) {
                    let (_, c) = binary_backward(op, None, None, &dy, false, true).unwrap();
                    let (_, e) = binary_backward(op, None, None, &dye, false, true).unwrap();
                    assert_ulp(
                        &e.unwrap(),
                        &c.unwrap(),
                        0,
                        &format!("{op:?} db, no operands"),
                    );
                }
            }
        }
    }
}

#[test]
fn elementwise_backward_parity_through_the_tape() {
    // Forward + recorded backward (including sum_to_shape) per op, emu vs cpu, with the
    // graph tolerance: the forward outputs saved by exp/sigmoid/... differ by an ulp.
    let dev = emu();
    for &n in &SIZES {
        let x = cpu(&data(n, 77 + n as u64), &[n]);
        let dy = cpu(&data(n, 78 + n as u64), &[n]);
        for op in all_unary() {
            let xc = x.with_requires_grad();
            let xe = x.to_device(&dev).unwrap().with_requires_grad();
            unary(&xc, op).unwrap().backward_with(&dy).unwrap();
            unary(&xe, op)
                .unwrap()
                .backward_with(&dy.to_device(&dev).unwrap())
                .unwrap();
            assert_graph_close(
                &xe.grad().unwrap(),
                &xc.grad().unwrap(),
                &format!("tape {op:?} n={n}"),
            );
        }
        for (k, (sa, sb)) in binary_shapes(n).into_iter().enumerate() {
            let seed = (n * 10 + k) as u64;
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            // pow's bases and div's divisors away from zero, so that the broadcast sums in
            // f32 (emu) vs f64 (cpu) do not cancel huge terms like a/b².
            let a: Vec<f32> = data(na, seed).iter().map(|v| v.abs() + 0.5).collect();
            let b: Vec<f32> = data(nb, seed + 3)
                .iter()
                .map(|&v| v * 0.5 + if v < 0.0 { -0.25 } else { 0.25 })
                .collect();
            let (a, b) = (cpu(&a, &sa), cpu(&b, &sb));
            for op in ALL_BINARY {
                let (ac, bc) = (a.with_requires_grad(), b.with_requires_grad());
                let (ae, be) = (
                    a.to_device(&dev).unwrap().with_requires_grad(),
                    b.to_device(&dev).unwrap().with_requires_grad(),
                );
                let yc = binary(&ac, &bc, op).unwrap();
                let dy = cpu(&data(yc.numel(), seed + 5), yc.dims());
                yc.backward_with(&dy).unwrap();
                binary(&ae, &be, op)
                    .unwrap()
                    .backward_with(&dy.to_device(&dev).unwrap())
                    .unwrap();
                let what = format!("tape {op:?} {sa:?}⊕{sb:?}");
                assert_eq!(ae.grad().unwrap().dims(), &sa[..]);
                assert_eq!(be.grad().unwrap().dims(), &sb[..]);
                assert_graph_close(
                    &ae.grad().unwrap(),
                    &ac.grad().unwrap(),
                    &format!("da {what}"),
                );
                assert_graph_close(
                    &be.grad().unwrap(),
                    &bc.grad().unwrap(),
                    &format!("db {what}"),
                );
            }
        }
    }
}

// ---- emu vs cpu: a small graph ------------------------------------------------------------

#[test]
fn elementwise_grad_graph_emu_matches_cpu() {
    // out = maximum(sigmoid(x*w + b) * y - tanh(x)/4, c) + relu(x).powf(1.5) on [5,3],
    // with w:[3], b:[5,1], c:[] broadcast; every leaf requires grad; loss = sum(out * r).
    let dev = emu();
    let shapes: [(&str, Vec<usize>); 5] = [
        ("x", vec![5, 3]),
        ("w", vec![3]),
        ("b", vec![5, 1]),
        ("y", vec![5, 3]),
        ("c", vec![]),
    ];
    let build = |device: &Device| -> (Vec<Tensor>, Tensor) {
        let leaves: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let n: usize = shape.iter().product();
                cpu(&data(n, 500 + i as u64), shape)
                    .to_device(device)
                    .unwrap()
                    .with_requires_grad_named(*name)
            })
            .collect();
        let [x, w, b, y, c] = &leaves[..] else {
            unreachable!()
        };
        let h = x.mul(w).unwrap().add(b).unwrap().sigmoid().unwrap();
        let t = x
            .tanh()
            .unwrap()
            .div(&Tensor::full([], 4.0, duel::DType::F32, device).unwrap());
        let u = h.mul(y).unwrap().sub(&t.unwrap()).unwrap();
        let out = u
            .maximum(c)
            .unwrap()
            .add(&x.relu().unwrap().powf(1.5).unwrap())
            .unwrap();
        (leaves, out)
    };
    let (lc, oc) = build(&Device::Cpu);
    let (le, oe) = build(&dev);
    // loss = sum(out * r) for fixed weights r, through the reduction's own rule.
    let r = cpu(&data(15, 999), &[5, 3]);
    let loss_c = oc.mul(&r).unwrap().sum_all().unwrap();
    let loss_e = oe
        .mul(&r.to_device(&dev).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    assert_graph_close(&oe, &oc, "forward");
    assert_graph_close(&loss_e, &loss_c, "loss");
    loss_c.backward().unwrap();
    loss_e.backward().unwrap();
    for ((name, _), (c, e)) in shapes.iter().zip(lc.iter().zip(&le)) {
        let (gc, ge) = (c.grad().unwrap(), e.grad().unwrap());
        assert_eq!(gc.dims(), c.dims(), "{name}");
        let worst = assert_graph_close(&ge, &gc, &format!("grad of {name}"));
        println!("grad of {name}: worst error {worst:.3} of the tolerance");
    }
}
