//! Elementwise ops: cpu against hand-checked values and edge cases, then parity of every
//! kernel in kernels/elementwise.cu (through `emu`) against the cpu backend.
//!
//! Tolerances
//! - Hand-checked values: relative 1e-6 (the literals are correctly rounded f32 or f64
//!   values worked out independently; exact where the result is exact, e.g. relu, clamp,
//!   add of small integers). NaN must be NaN, infinities must match exactly.
//! - emu vs cpu parity (f32): at most 2 ulp apart ([`PARITY_ULP`]); 4 ulp for sigmoid,
//!   powf and pow ([`PARITY_ULP_COMPOSED`]: the cpu's vectorised exp is within 1 ulp of
//!   the C library's expf the emulator calls, and sigmoid adds a division on top; CUDA
//!   documents 2 ulp for expf and more for powf on real GPUs). NaN where the other is NaN,
//!   equal infinities. Copies and neg must be bit-exact.

// The expected values are literals worked out independently, on purpose not std constants.
#![allow(clippy::approx_constant)]

use duel::ops::elementwise::{binary, unary, BinaryOp, UnaryOp};
use duel::{DType, Device, Tensor};
use half::{bf16, f16};

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

fn cpu(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// Equal within relative `rel` (absolute for |expected| < 1), NaN ↔ NaN, inf exactly.
fn assert_close(got: &[f32], expected: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            g.is_nan()
        } else if e.is_infinite() {
            g == e
        } else {
            (g - e).abs() <= rel * e.abs().max(1.0)
        };
        assert!(
            ok,
            "{what}[{i}]: got {g}, expected {e}\n got {got:?}\n exp {expected:?}"
        );
    }
}

fn assert_close64(got: &[f64], expected: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            g.is_nan()
        } else if e.is_infinite() {
            g == e
        } else {
            (g - e).abs() <= rel * e.abs().max(1.0)
        };
        assert!(ok, "{what}[{i}]: got {g}, expected {e}");
    }
}

// ---- unary, hand-checked ---------------------------------------------------------------

#[test]
fn elementwise_unary_hand_checked() {
    let x = cpu(&[0.0, 1.0, -1.0, 2.0, INF, -INF, NAN], &[7]);
    assert_close(
        &vals(&x.neg().unwrap()),
        &[-0.0, -1.0, 1.0, -2.0, -INF, INF, NAN],
        0.0,
        "neg",
    );
    assert_close(
        &vals(&x.exp().unwrap()),
        &[1.0, 2.718_281_8, 0.367_879_44, 7.389_056, INF, 0.0, NAN],
        1e-6,
        "exp",
    );
    assert_close(
        &vals(&x.abs().unwrap()),
        &[0.0, 1.0, 1.0, 2.0, INF, INF, NAN],
        0.0,
        "abs",
    );
    assert_close(
        &vals(&x.tanh().unwrap()),
        &[0.0, 0.761_594_2, -0.761_594_2, 0.964_027_6, 1.0, -1.0, NAN],
        1e-6,
        "tanh",
    );

    let p = cpu(&[1.0, 2.0, 0.0, -1.0, INF, 4.0, NAN, -0.0], &[8]);
    assert_close(
        &vals(&p.log().unwrap()),
        &[0.0, 0.693_147_2, -INF, NAN, INF, 1.386_294_4, NAN, -INF],
        1e-6,
        "log",
    );
    assert_close(
        &vals(&p.sqrt().unwrap()),
        &[1.0, 1.414_213_5, 0.0, NAN, INF, 2.0, NAN, -0.0],
        1e-6,
        "sqrt",
    );
}

#[test]
fn elementwise_activations_hand_checked() {
    let x = cpu(&[-2.0, -0.5, 0.0, 3.0, NAN, -INF, INF], &[7]);
    assert_close(
        &vals(&x.relu().unwrap()),
        &[0.0, 0.0, 0.0, 3.0, NAN, 0.0, INF],
        0.0,
        "relu",
    );
    assert_close(
        &vals(&x.leaky_relu(0.1).unwrap()),
        &[-0.2, -0.05, 0.0, 3.0, NAN, -INF, INF],
        1e-6,
        "leaky_relu",
    );
    let s = cpu(
        &[0.0, 1.0, -1.0, 100.0, 200.0, -200.0, INF, -INF, NAN],
        &[9],
    );
    assert_close(
        &vals(&s.sigmoid().unwrap()),
        &[0.5, 0.731_058_6, 0.268_941_43, 1.0, 1.0, 0.0, 1.0, 0.0, NAN],
        1e-6,
        "sigmoid",
    );
    // e^-100 ≈ 3.72e-44 is an f32 denormal: no overflow to NaN or 0/0 on the way.
    let tiny = vals(&cpu(&[-100.0], &[1]).sigmoid().unwrap())[0];
    assert!(tiny > 0.0 && tiny < 1e-42, "sigmoid(-100) = {tiny}");
}

#[test]
fn elementwise_clamp_pow_affine_hand_checked() {
    let x = cpu(&[-5.0, -1.0, 0.5, 2.0, 7.0, NAN, -INF, INF], &[8]);
    assert_close(
        &vals(&x.clamp(-1.0, 2.0).unwrap()),
        &[-1.0, -1.0, 0.5, 2.0, 2.0, NAN, -1.0, 2.0],
        0.0,
        "clamp",
    );
    // PyTorch: min > max gives max everywhere (NaN stays NaN).
    assert_close(
        &vals(&x.clamp(3.0, 1.0).unwrap()),
        &[1.0, 1.0, 1.0, 1.0, 1.0, NAN, 1.0, 1.0],
        0.0,
        "clamp min>max",
    );

    let b = cpu(&[3.0, -2.0, 0.5, 0.0, NAN, INF], &[6]);
    assert_close(
        &vals(&b.powf(2.0).unwrap()),
        &[9.0, 4.0, 0.25, 0.0, NAN, INF],
        0.0,
        "powf 2",
    );
    assert_close(
        &vals(&b.powf(0.0).unwrap()),
        &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        0.0,
        "powf 0 (pow(0,0)=1, pow(NaN,0)=1)",
    );
    assert_close(
        &vals(&b.powf(0.5).unwrap()),
        &[1.732_050_8, NAN, 0.707_106_77, 0.0, NAN, INF],
        1e-6,
        "powf 0.5",
    );
    assert_close(
        &vals(&b.powf(-1.0).unwrap()),
        &[0.333_333_34, -0.5, 2.0, INF, NAN, 0.0],
        1e-6,
        "powf -1",
    );

    let a = cpu(&[1.0, -0.5, INF, NAN, 2.5], &[5]);
    assert_close(
        &vals(&a.affine(2.0, 1.0).unwrap()),
        &[3.0, 0.0, INF, NAN, 6.0],
        0.0,
        "affine",
    );
    assert_close(
        &vals(&a.add_scalar(1.5).unwrap()),
        &[2.5, 1.0, INF, NAN, 4.0],
        0.0,
        "add_scalar",
    );
    assert_close(
        &vals(&a.mul_scalar(-2.0).unwrap()),
        &[-2.0, 1.0, -INF, NAN, -5.0],
        0.0,
        "mul_scalar",
    );
    // inf * 0 is NaN, as in IEEE arithmetic.
    assert!(vals(&a.mul_scalar(0.0).unwrap())[2].is_nan());
}

// ---- binary, hand-checked --------------------------------------------------------------

#[test]
fn elementwise_binary_hand_checked() {
    let a = cpu(&[1.0, -1.0, 0.0, 0.0, 6.0, INF], &[6]);
    let b = cpu(&[0.0, 0.0, 0.0, 2.0, -4.0, INF], &[6]);
    assert_close(
        &vals(&a.add(&b).unwrap()),
        &[1.0, -1.0, 0.0, 2.0, 2.0, INF],
        0.0,
        "add",
    );
    assert_close(
        &vals(&a.sub(&b).unwrap()),
        &[1.0, -1.0, 0.0, -2.0, 10.0, NAN],
        0.0,
        "sub",
    );
    assert_close(
        &vals(&a.mul(&b).unwrap()),
        &[0.0, -0.0, 0.0, 0.0, -24.0, INF],
        0.0,
        "mul",
    );
    assert_close(
        &vals(&a.div(&b).unwrap()),
        &[INF, -INF, NAN, 0.0, -1.5, NAN],
        0.0,
        "div",
    );

    let base = cpu(&[0.0, 2.0, -2.0, 4.0, NAN, 1.0, -8.0], &[7]);
    let exp = cpu(&[0.0, 10.0, 3.0, 0.5, 0.0, NAN, 0.5], &[7]);
    assert_close(
        &vals(&base.pow(&exp).unwrap()),
        &[1.0, 1024.0, -8.0, 2.0, 1.0, 1.0, NAN],
        1e-6,
        "pow",
    );

    let x = cpu(&[1.0, NAN, 3.0, -INF, 5.0, -0.5], &[6]);
    let y = cpu(&[2.0, 0.0, NAN, -5.0, 5.0, -0.25], &[6]);
    assert_close(
        &vals(&x.maximum(&y).unwrap()),
        &[2.0, NAN, NAN, -5.0, 5.0, -0.25],
        0.0,
        "maximum",
    );
    assert_close(
        &vals(&x.minimum(&y).unwrap()),
        &[1.0, NAN, NAN, -INF, 5.0, -0.5],
        0.0,
        "minimum",
    );
}

#[test]
fn elementwise_broadcasting_rules() {
    // [2,3] + [3]
    let a = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = cpu(&[10.0, 20.0, 30.0], &[3]);
    let c = a.add(&b).unwrap();
    assert_eq!(c.dims(), &[2, 3]);
    assert_eq!(vals(&c), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    // and the other way round
    let c = b.sub(&a).unwrap();
    assert_eq!(vals(&c), vec![9.0, 18.0, 27.0, 6.0, 15.0, 24.0]);

    // [4,1] * [1,5]: an outer product
    let col = cpu(&[1.0, 2.0, 3.0, 4.0], &[4, 1]);
    let row = cpu(&[1.0, 10.0, 100.0, 1000.0, 10000.0], &[1, 5]);
    let c = col.mul(&row).unwrap();
    assert_eq!(c.dims(), &[4, 5]);
    assert_eq!(
        vals(&c),
        vec![
            1.0, 10.0, 100.0, 1000.0, 10000.0, //
            2.0, 20.0, 200.0, 2000.0, 20000.0, //
            3.0, 30.0, 300.0, 3000.0, 30000.0, //
            4.0, 40.0, 400.0, 4000.0, 40000.0,
        ]
    );

    // [2,1,3] with [3,1] -> [2,3,3]: out[i][j][k] = a[i][0][k] - b[j][0]
    let a = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 1, 3]);
    let b = cpu(&[10.0, 20.0, 30.0], &[3, 1]);
    let c = a.sub(&b).unwrap();
    assert_eq!(c.dims(), &[2, 3, 3]);
    assert_eq!(
        vals(&c),
        vec![
            -9.0, -8.0, -7.0, -19.0, -18.0, -17.0, -29.0, -28.0, -27.0, //
            -6.0, -5.0, -4.0, -16.0, -15.0, -14.0, -26.0, -25.0, -24.0,
        ]
    );

    // scalar-shaped operands: rank 0 and [1]
    let x = cpu(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let s = Tensor::scalar(0.5, &Device::Cpu).unwrap();
    assert_eq!(s.rank(), 0);
    assert_eq!(vals(&x.mul(&s).unwrap()), vec![0.5, 1.0, 1.5, 2.0]);
    assert_eq!(vals(&s.div(&x).unwrap()), vec![0.5, 0.25, 0.5 / 3.0, 0.125]);
    let one = cpu(&[2.0], &[1]);
    let c = x.pow(&one).unwrap();
    assert_eq!(c.dims(), &[2, 2]);
    assert_eq!(vals(&c), vec![1.0, 4.0, 9.0, 16.0]);
    // scalar with scalar stays rank 0
    let c = s.add(&s).unwrap();
    assert_eq!(c.rank(), 0);
    assert_eq!(c.item().unwrap(), 1.0);
}

#[test]
fn elementwise_empty_and_size_one_dims() {
    let empty = cpu(&[], &[0, 3]);
    let e = empty.exp().unwrap();
    assert_eq!(e.dims(), &[0, 3]);
    assert!(vals(&e).is_empty());
    let row = cpu(&[1.0, 2.0, 3.0], &[3]);
    let s = empty.add(&row).unwrap();
    assert_eq!(s.dims(), &[0, 3]);
    // [0,1] with [1,5] -> [0,5]
    let z = cpu(&[], &[0, 1]).mul(&cpu(&[1.0; 5], &[1, 5])).unwrap();
    assert_eq!(z.dims(), &[0, 5]);
    assert_eq!(z.numel(), 0);
    // [0] does not broadcast against [3]
    assert!(cpu(&[], &[0]).add(&row).is_err());

    // size-1 dims everywhere
    let a = cpu(&[5.0], &[1, 1, 1]);
    let b = cpu(&[1.0, 2.0, 3.0], &[1, 3, 1]);
    let c = a.sub(&b).unwrap();
    assert_eq!(c.dims(), &[1, 3, 1]);
    assert_eq!(vals(&c), vec![4.0, 3.0, 2.0]);
    let r = cpu(&[-1.0, 2.0], &[1, 2, 1]).relu().unwrap();
    assert_eq!(r.dims(), &[1, 2, 1]);
    assert_eq!(vals(&r), vec![0.0, 2.0]);
}

#[test]
fn elementwise_nan_inf_propagate_through_every_op() {
    let nan = cpu(&[NAN], &[1]);
    for op in all_unary() {
        let y = vals(&unary(&nan, op).unwrap())[0];
        // Only x^0 maps NaN to a number.
        if op == (UnaryOp::Powf { exponent: 0.0 }) {
            assert_eq!(y, 1.0);
        } else {
            assert!(y.is_nan(), "{op:?}(NaN) = {y}");
        }
    }
    let one = cpu(&[1.5], &[1]);
    for op in all_binary() {
        let l = vals(&binary(&nan, &one, op).unwrap())[0];
        let r = vals(&binary(&one, &nan, op).unwrap())[0];
        assert!(l.is_nan(), "{op:?}(NaN, 1.5) = {l}");
        assert!(r.is_nan(), "{op:?}(1.5, NaN) = {r}");
    }
    // infinities
    let inf = cpu(&[INF, -INF], &[2]);
    let expect: [(UnaryOp, [f32; 2]); 8] = [
        (UnaryOp::Neg, [-INF, INF]),
        (UnaryOp::Exp, [INF, 0.0]),
        (UnaryOp::Abs, [INF, INF]),
        (UnaryOp::Relu, [INF, 0.0]),
        (UnaryOp::Sigmoid, [1.0, 0.0]),
        (UnaryOp::Tanh, [1.0, -1.0]),
        (
            UnaryOp::Clamp {
                min: -3.0,
                max: 3.0,
            },
            [3.0, -3.0],
        ),
        (
            UnaryOp::Affine {
                mul: -2.0,
                add: 1.0,
            },
            [-INF, INF],
        ),
    ];
    for (op, e) in expect {
        assert_close(&vals(&unary(&inf, op).unwrap()), &e, 0.0, op.name());
    }
    let big = cpu(&[INF, INF], &[2]);
    assert_close(
        &vals(&inf.add(&big).unwrap()),
        &[INF, NAN],
        0.0,
        "inf + inf, -inf + inf",
    );
    assert_close(
        &vals(&inf.maximum(&cpu(&[0.0, 0.0], &[2])).unwrap()),
        &[INF, 0.0],
        0.0,
        "maximum with inf",
    );
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
        UnaryOp::LeakyRelu { slope: 0.2 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Clamp {
            min: -0.75,
            max: 1.25,
        },
        UnaryOp::Clamp {
            min: 1.0,
            max: -1.0,
        },
        UnaryOp::Powf { exponent: 2.0 },
        UnaryOp::Powf { exponent: 0.0 },
        UnaryOp::Powf { exponent: -1.5 },
        UnaryOp::Affine {
            mul: 0.3,
            add: -1.7,
        },
    ]
}

fn all_binary() -> Vec<BinaryOp> {
    vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ]
}

// ---- strided inputs ----------------------------------------------------------------------

#[test]
fn elementwise_strided_inputs() {
    let a = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    // transpose: [[1,4],[2,5],[3,6]]
    let t = a.t().unwrap();
    assert!(!t.is_contiguous());
    assert_eq!(
        vals(&t.neg().unwrap()),
        vec![-1.0, -4.0, -2.0, -5.0, -3.0, -6.0]
    );
    assert_eq!(
        vals(&t.contiguous().unwrap()),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    // transpose + broadcast row: [3,2] + [2]
    let c = t.add(&cpu(&[100.0, 200.0], &[2])).unwrap();
    assert_eq!(vals(&c), vec![101.0, 204.0, 102.0, 205.0, 103.0, 206.0]);
    // transpose * transpose of a different tensor
    let b = cpu(&[1.0, 0.0, -1.0, 2.0, 0.5, 1.0], &[2, 3]).t().unwrap();
    assert_eq!(
        vals(&t.mul(&b).unwrap()),
        vec![1.0, 8.0, 0.0, 2.5, -3.0, 6.0]
    );
    // narrow: columns 1..3 of a -> [[2,3],[5,6]], an offset view
    let n = a.narrow(1, 1, 2).unwrap();
    assert_eq!(
        vals(&n.mul_scalar(10.0).unwrap()),
        vec![20.0, 30.0, 50.0, 60.0]
    );
    assert_eq!(
        vals(&n.maximum(&cpu(&[4.0], &[1])).unwrap()),
        vec![4.0, 4.0, 5.0, 6.0]
    );
    // narrow along the first axis keeps contiguity but has an offset
    let r = a.narrow(0, 1, 1).unwrap();
    assert!(r.is_contiguous());
    assert_eq!(vals(&r.relu().unwrap()), vec![4.0, 5.0, 6.0]);
    assert_eq!(vals(&r.contiguous().unwrap()), vec![4.0, 5.0, 6.0]);
    // broadcast view as input
    let bv = cpu(&[1.0, -2.0], &[2, 1]).broadcast_to([2, 3]).unwrap();
    assert_eq!(vals(&bv.abs().unwrap()), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    assert_eq!(
        vals(&bv.add(&a).unwrap()),
        vec![2.0, 3.0, 4.0, 2.0, 3.0, 4.0]
    );
    // permuted 3-d view
    let p = cpu(&(0..24).map(|i| i as f32).collect::<Vec<_>>(), &[2, 3, 4])
        .permute(&[2, 0, 1])
        .unwrap();
    let expected: Vec<f32> = (0..4)
        .flat_map(|k| (0..2).flat_map(move |i| (0..3).map(move |j| (i * 12 + j * 4 + k) as f32)))
        .map(|v| v + 1.0)
        .collect();
    assert_eq!(vals(&p.add_scalar(1.0).unwrap()), expected);
}

#[test]
fn elementwise_strided_large_runs_in_parallel_chunks() {
    // Big enough for the rayon path; chunk boundaries fall in the middle of rows.
    let (rows, cols) = (301, 997);
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| (i % 1013) as f32 - 500.0)
        .collect();
    let a = cpu(&data, &[rows, cols]);
    let t = a.t().unwrap(); // [cols, rows]
    let got = vals(&t.relu().unwrap());
    for j in 0..cols {
        for i in 0..rows {
            let v = data[i * cols + j];
            assert_eq!(got[j * rows + i], if v < 0.0 { 0.0 } else { v });
        }
    }
    let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 0.5).collect();
    let got = vals(&t.add(&cpu(&bias, &[rows])).unwrap());
    for j in 0..cols {
        for i in 0..rows {
            assert_eq!(got[j * rows + i], data[i * cols + j] + bias[i]);
        }
    }
    let col: Vec<f32> = (0..cols).map(|j| j as f32).collect();
    let got = vals(&cpu(&col, &[cols, 1]).sub(&t).unwrap());
    for j in 0..cols {
        for i in 0..rows {
            assert_eq!(got[j * rows + i], col[j] - data[i * cols + j]);
        }
    }
    // contiguous fast path on the same size
    let got = vals(&a.add(&a).unwrap());
    assert!(got.iter().zip(&data).all(|(&g, &d)| g == d + d));
}

#[test]
fn elementwise_copy_of_storage_dtypes() {
    let h: Vec<f16> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let t = Tensor::from_vec(h, [2, 3], &Device::Cpu)
        .unwrap()
        .t()
        .unwrap();
    let c = t.contiguous().unwrap();
    assert_eq!(c.dtype(), DType::F16);
    assert_eq!(
        c.to_vec::<f16>()
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect::<Vec<_>>(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    let b: Vec<bf16> = [1.0f32, -2.0].iter().map(|&v| bf16::from_f32(v)).collect();
    let t = Tensor::from_vec(b, [1, 2], &Device::Cpu)
        .unwrap()
        .broadcast_to([3, 2])
        .unwrap();
    let c = unary(&t, UnaryOp::Copy).unwrap();
    assert_eq!(c.dims(), &[3, 2]);
    assert_eq!(
        c.to_f64_vec().unwrap(),
        vec![1.0, -2.0, 1.0, -2.0, 1.0, -2.0]
    );
}

// ---- f64 -------------------------------------------------------------------------------

#[test]
fn elementwise_f64_path() {
    let x = Tensor::from_slice(
        &[0.0f64, 1.0, -1.0, 2.0, -800.0, f64::NAN],
        [6],
        &Device::Cpu,
    )
    .unwrap();
    let e = x.exp().unwrap();
    assert_eq!(e.dtype(), DType::F64);
    assert_close64(
        &e.to_vec::<f64>().unwrap(),
        &[
            1.0,
            std::f64::consts::E,
            0.367_879_441_171_442_3,
            7.389_056_098_930_65,
            0.0,
            f64::NAN,
        ],
        1e-15,
        "exp f64",
    );
    assert_close64(
        &x.sigmoid().unwrap().to_vec::<f64>().unwrap(),
        &[
            0.5,
            0.731_058_578_630_004_9,
            0.268_941_421_369_995_1,
            0.880_797_077_977_882_4,
            0.0,
            f64::NAN,
        ],
        1e-15,
        "sigmoid f64",
    );
    assert_close64(
        &x.tanh().unwrap().to_vec::<f64>().unwrap(),
        &[
            0.0,
            0.761_594_155_955_764_9,
            -0.761_594_155_955_764_9,
            0.964_027_580_075_817,
            -1.0,
            f64::NAN,
        ],
        1e-15,
        "tanh f64",
    );
    // 0.1 is not representable in f32: f64 keeps the extra digits.
    let y = Tensor::from_slice(&[3.0f64], [1], &Device::Cpu).unwrap();
    assert_eq!(y.mul_scalar(0.1).unwrap().item().unwrap(), 3.0 * 0.1);
    assert_eq!(y.affine(0.1, 0.2).unwrap().item().unwrap(), 3.0 * 0.1 + 0.2);
    let m = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &Device::Cpu).unwrap();
    let r = Tensor::from_slice(&[0.5f64, 0.25, 0.125], [3], &Device::Cpu).unwrap();
    assert_eq!(
        m.mul(&r).unwrap().to_vec::<f64>().unwrap(),
        vec![0.5, 0.5, 0.375, 2.0, 1.25, 0.75]
    );
    assert_eq!(
        m.t().unwrap().sqrt().unwrap().to_vec::<f64>().unwrap(),
        vec![1.0, 2.0, 2f64.sqrt(), 5f64.sqrt(), 3f64.sqrt(), 6f64.sqrt()]
    );
}

// ---- errors ----------------------------------------------------------------------------

#[test]
fn elementwise_errors_are_values_with_clear_messages() {
    let a = cpu(&[1.0; 6], &[2, 3]);
    let b = cpu(&[1.0; 4], &[4]);
    let e = a.add(&b).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[4]"),
        "{e}"
    );
    let e = cpu(&[1.0; 8], &[2, 4])
        .mul(&cpu(&[1.0; 6], &[3, 2]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mul") && e.contains("[2, 4]") && e.contains("[3, 2]"),
        "{e}"
    );

    let d = Tensor::from_slice(&[1.0f64; 6], [2, 3], &Device::Cpu).unwrap();
    let e = a.sub(&d).unwrap_err().to_string();
    assert!(
        e.contains("sub") && e.contains("f32") && e.contains("f64"),
        "{e}"
    );
    assert!(e.contains("to_dtype"), "{e}");

    let h = Tensor::from_vec(vec![f16::ONE; 6], [2, 3], &Device::Cpu).unwrap();
    let e = h.exp().unwrap_err().to_string();
    assert!(
        e.contains("exp") && e.contains("f16") && e.contains("to_dtype"),
        "{e}"
    );
    let e = h.add(&h).unwrap_err().to_string();
    assert!(e.contains("f16") && e.contains("storage-only"), "{e}");
    let e = a.add(&h).unwrap_err().to_string();
    assert!(e.contains("f32") && e.contains("f16"), "{e}");
    let hb = Tensor::from_vec(vec![bf16::ONE; 2], [2], &Device::Cpu).unwrap();
    assert!(hb.relu().is_err());
}

// ---- emu parity ------------------------------------------------------------------------

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for the parity tests")
}

/// Deterministic test data with specials sprinkled in: NaN, ±inf, ±0, tiny, huge.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            match i % 53 {
                5 => NAN,
                11 => INF,
                17 => -INF,
                23 => 0.0,
                29 => -0.0,
                31 => 1e-30,
                37 => -90.0,
                41 => 95.0,
                _ => (u - 0.5) * 12.0,
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

/// emu vs cpu: NaN ↔ NaN, equal infinities, else within `max_ulp` units in the last place.
fn assert_parity(emu_out: &Tensor, cpu_out: &Tensor, max_ulp: i64, what: &str) {
    assert_eq!(emu_out.dims(), cpu_out.dims(), "{what}: shape");
    let (g, e) = (vals(emu_out), vals(cpu_out));
    let mut worst = 0;
    for (i, (&x, &y)) in g.iter().zip(&e).enumerate() {
        if y.is_nan() || x.is_nan() {
            assert!(x.is_nan() && y.is_nan(), "{what}[{i}]: emu {x} vs cpu {y}");
            continue;
        }
        let d = (ulp_key(x) - ulp_key(y)).abs();
        // +0 and -0 are 1 key apart but equal.
        let d = if x == y { 0 } else { d };
        worst = worst.max(d);
        assert!(d <= max_ulp, "{what}[{i}]: emu {x} vs cpu {y} ({d} ulp)");
    }
    if worst > 0 {
        println!("{what}: worst {worst} ulp");
    }
}

const SIZES: [usize; 4] = [1, 7, 1000, 4099];
const PARITY_ULP: i64 = 2;
const PARITY_ULP_COMPOSED: i64 = 4;

fn unary_tol(op: UnaryOp) -> i64 {
    match op {
        UnaryOp::Sigmoid | UnaryOp::Powf { .. } => PARITY_ULP_COMPOSED,
        _ => PARITY_ULP,
    }
}

fn binary_tol(op: BinaryOp) -> i64 {
    match op {
        BinaryOp::Pow => PARITY_ULP_COMPOSED,
        _ => PARITY_ULP,
    }
}

#[test]
fn elementwise_parity_unary_contiguous() {
    let dev = emu();
    for &n in &SIZES {
        let x = cpu(&data(n, n as u64), &[n]);
        let xe = x.to_device(&dev).unwrap();
        for op in all_unary() {
            let got = unary(&xe, op).unwrap();
            assert!(got.device().same(&dev));
            let want = unary(&x, op).unwrap();
            assert_parity(&got, &want, unary_tol(op), &format!("{op:?} n={n}"));
        }
    }
}

#[test]
fn elementwise_parity_unary_unaligned_and_strided() {
    let dev = emu();
    for &n in &SIZES {
        // narrow by one element: contiguous, offset 1 -> misaligned pointer, scalar path.
        let x = cpu(&data(n + 1, 7 + n as u64), &[n + 1]);
        let xe = x.to_device(&dev).unwrap();
        let (xn, xen) = (x.narrow(0, 1, n).unwrap(), xe.narrow(0, 1, n).unwrap());
        // a transposed [n,3] view: the strided kernel
        let y = cpu(&data(3 * n, 3 + n as u64), &[n, 3]);
        let ye = y.to_device(&dev).unwrap();
        let (yt, yet) = (y.t().unwrap(), ye.t().unwrap());
        // a broadcast view [1,n] -> [2,n]
        let (xb, xeb) = (
            xn.unsqueeze(0).unwrap().broadcast_to([2, n]).unwrap(),
            xen.unsqueeze(0).unwrap().broadcast_to([2, n]).unwrap(),
        );
        for op in all_unary() {
            let what = format!("{op:?} n={n}");
            assert_parity(
                &unary(&xen, op).unwrap(),
                &unary(&xn, op).unwrap(),
                unary_tol(op),
                &format!("offset {what}"),
            );
            assert_parity(
                &unary(&yet, op).unwrap(),
                &unary(&yt, op).unwrap(),
                unary_tol(op),
                &format!("transposed {what}"),
            );
            assert_parity(
                &unary(&xeb, op).unwrap(),
                &unary(&xb, op).unwrap(),
                unary_tol(op),
                &format!("broadcast {what}"),
            );
        }
        // Tensor::contiguous() on emu: unary Copy through the strided kernel, bit-exact.
        let c = yet.contiguous().unwrap();
        assert!(c.is_contiguous());
        let (g, w) = (vals(&c), vals(&yt));
        assert!(g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn elementwise_parity_binary() {
    let dev = emu();
    for &n in &SIZES {
        let a = cpu(&data(n, 100 + n as u64), &[n]);
        let b = cpu(&data(n, 200 + n as u64), &[n]);
        let (ae, be) = (a.to_device(&dev).unwrap(), b.to_device(&dev).unwrap());
        // [n,1] with [1,3] broadcast, a transposed [n,3] against [3], a scalar.
        let m = cpu(&data(3 * n, 300 + n as u64), &[3, n]);
        let me = m.to_device(&dev).unwrap();
        let r = cpu(&[0.5, -2.0, 3.0], &[3]);
        let re = r.to_device(&dev).unwrap();
        let s = Tensor::scalar(1.75, &Device::Cpu).unwrap();
        let se = s.to_device(&dev).unwrap();
        let col = a.reshape([n, 1]).unwrap();
        let cole = ae.reshape([n, 1]).unwrap();
        let row = r.reshape([1, 3]).unwrap();
        let rowe = re.reshape([1, 3]).unwrap();
        // offset (misaligned) contiguous operands
        let (an, ben) = (
            a.narrow(0, 1, n - 1).unwrap(),
            b.narrow(0, 0, n - 1).unwrap(),
        );
        let (aen, been) = (
            ae.narrow(0, 1, n - 1).unwrap(),
            be.narrow(0, 0, n - 1).unwrap(),
        );
        for op in all_binary() {
            let what = format!("{op:?} n={n}");
            let cases: [(&str, Tensor, Tensor); 7] = [
                (
                    "contiguous",
                    binary(&ae, &be, op).unwrap(),
                    binary(&a, &b, op).unwrap(),
                ),
                (
                    "offset",
                    binary(&aen, &been, op).unwrap(),
                    binary(&an, &ben, op).unwrap(),
                ),
                (
                    "outer",
                    binary(&cole, &rowe, op).unwrap(),
                    binary(&col, &row, op).unwrap(),
                ),
                (
                    "transposed+row",
                    binary(&me.t().unwrap(), &re, op).unwrap(),
                    binary(&m.t().unwrap(), &r, op).unwrap(),
                ),
                (
                    "scalar rhs",
                    binary(&ae, &se, op).unwrap(),
                    binary(&a, &s, op).unwrap(),
                ),
                (
                    "scalar lhs",
                    binary(&se, &be, op).unwrap(),
                    binary(&s, &b, op).unwrap(),
                ),
                (
                    "same storage",
                    binary(&ae, &ae, op).unwrap(),
                    binary(&a, &a, op).unwrap(),
                ),
            ];
            for (case, got, want) in &cases {
                assert_parity(got, want, binary_tol(op), &format!("{case} {what}"));
            }
        }
    }
}

#[test]
fn elementwise_parity_grid_stride_loops() {
    // More work than one capped grid (2048 blocks x 256 threads) covers: every thread
    // runs several loop iterations, in the vectorised, scalar and strided kernels.
    let dev = emu();
    let n = 2048 * 256 * 4 + 4 * 3 + 3;
    let x = cpu(&data(n, 42), &[n]);
    let xe = x.to_device(&dev).unwrap();
    assert_parity(
        &xe.sigmoid().unwrap(),
        &x.sigmoid().unwrap(),
        PARITY_ULP_COMPOSED,
        "sigmoid large",
    );
    assert_parity(
        &xe.add(&xe).unwrap(),
        &x.add(&x).unwrap(),
        PARITY_ULP,
        "add large",
    );
    let (xs, xes) = (
        x.narrow(0, 0, n - 1)
            .unwrap()
            .reshape([2, (n - 1) / 2])
            .unwrap()
            .t()
            .unwrap(),
        xe.narrow(0, 0, n - 1)
            .unwrap()
            .reshape([2, (n - 1) / 2])
            .unwrap()
            .t()
            .unwrap(),
    );
    assert_parity(
        &xes.neg().unwrap(),
        &xs.neg().unwrap(),
        0,
        "neg strided large",
    );
}

#[test]
fn elementwise_parity_storage_copies() {
    let dev = emu();
    // f16 and bf16 (copy_strided_b16), f64 (copy_strided_b64): bit-exact. Widening to f64
    // is exact and one-to-one for finite values, so comparing those bits compares the copies.
    let same_copy = |cpu: Tensor, view: &dyn Fn(&Tensor) -> Tensor| {
        let want = view(&cpu).contiguous().unwrap().to_f64_vec().unwrap();
        let got = view(&cpu.to_device(&dev).unwrap()).contiguous().unwrap();
        assert_eq!(got.dtype(), cpu.dtype());
        let got = got.to_f64_vec().unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{:?} copy", cpu.dtype());
        got.len()
    };
    let src: Vec<f32> = data(4099 * 3, 9);
    let h: Vec<f16> = src.iter().map(|&v| f16::from_f32(v)).collect();
    let transpose = |t: &Tensor| t.t().unwrap();
    let n = same_copy(
        Tensor::from_vec(h, [3, 4099], &Device::Cpu).unwrap(),
        &transpose,
    );
    assert_eq!(n, 3 * 4099);
    let b: Vec<bf16> = src.iter().map(|&v| bf16::from_f32(v)).collect();
    let window = |t: &Tensor| t.narrow(1, 5, 7).unwrap();
    let n = same_copy(
        Tensor::from_vec(b, [3, 4099], &Device::Cpu).unwrap(),
        &window,
    );
    assert_eq!(n, 21);
    let d: Vec<f64> = src.iter().map(|&v| v as f64 * 1.000_000_1).collect();
    let n = same_copy(
        Tensor::from_vec(d, [4099, 3], &Device::Cpu).unwrap(),
        &transpose,
    );
    assert_eq!(n, 3 * 4099);
}

#[test]
fn elementwise_emu_errors_and_empty() {
    let dev = emu();
    let a = cpu(&[1.0, 2.0], &[2]);
    let ae = a.to_device(&dev).unwrap();
    let e = a.add(&ae).unwrap_err().to_string();
    assert!(
        e.contains("cpu") && e.contains("emu") && e.contains("to_device"),
        "{e}"
    );
    let d = Tensor::from_slice(&[1.0f64, 2.0], [2], &Device::Cpu)
        .unwrap()
        .to_device(&dev)
        .unwrap();
    let e = d.exp().unwrap_err().to_string();
    assert!(
        e.contains("f64") && e.contains("cpu") && e.contains("f32"),
        "{e}"
    );
    let e = d.add(&d).unwrap_err().to_string();
    assert!(e.contains("f64"), "{e}");
    let e = ae
        .add(&cpu(&[1.0; 3], &[3]).to_device(&dev).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    // empty tensors: no launch, right shape
    let z = cpu(&[], &[0, 3]).to_device(&dev).unwrap();
    assert_eq!(z.exp().unwrap().dims(), &[0, 3]);
    let r = cpu(&[1.0; 3], &[3]).to_device(&dev).unwrap();
    assert_eq!(z.add(&r).unwrap().dims(), &[0, 3]);
}

// ---- throughput (informational) --------------------------------------------------------

#[test]
fn elementwise_cpu_throughput_report() {
    let n = 1 << 20;
    let a = cpu(&data(n, 1), &[n]);
    let b = cpu(&data(n, 2), &[n]);
    let time = |f: &dyn Fn() -> Tensor| {
        f();
        let reps = 20;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(f());
        }
        t0.elapsed().as_secs_f64() / reps as f64
    };
    let add = time(&|| a.add(&b).unwrap());
    let exp = time(&|| a.exp().unwrap());
    let bias = cpu(&data(1024, 3), &[1024]);
    let a2 = a.reshape([1024, 1024]).unwrap();
    let badd = time(&|| a2.add(&bias).unwrap());
    let tr = a2.t().unwrap();
    let tcopy = time(&|| tr.contiguous().unwrap());
    let gbs = |s: f64, bytes: f64| bytes / s / 1e9;
    println!(
        "cpu 1M f32: add {:.3} ms ({:.1} GB/s), exp {:.3} ms ({:.0} Melem/s), \
         [1024,1024]+[1024] {:.3} ms, transpose copy {:.3} ms, threads {}",
        add * 1e3,
        gbs(add, 12.0 * n as f64),
        exp * 1e3,
        n as f64 / exp / 1e6,
        badd * 1e3,
        tcopy * 1e3,
        rayon::current_num_threads()
    );
}
