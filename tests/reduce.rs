//! reduce: sum/mean/max over axes on cpu (hand-checked values, strided inputs, empty and
//! size-1 dims, NaN/inf, errors) and emu-vs-cpu parity for every kernel and launch path.

use duel::ops::reduce::{reduce, ReduceOp};
use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

fn cpu_f32(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape.to_vec(), &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn reduce_hand_checked_2d() {
    let x = cpu_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(vals(&x.sum(&[0], false).unwrap()), vec![5.0, 7.0, 9.0]);
    assert_eq!(vals(&x.sum(&[1], false).unwrap()), vec![6.0, 15.0]);
    let k = x.sum(&[-1], true).unwrap();
    assert_eq!((k.dims(), vals(&k)), (&[2usize, 1][..], vec![6.0, 15.0]));
    assert_eq!(vals(&x.mean(&[0], false).unwrap()), vec![2.5, 3.5, 4.5]);
    assert_eq!(vals(&x.max(&[1], false).unwrap()), vec![3.0, 6.0]);
    assert_eq!(vals(&x.max(&[-2], true).unwrap()), vec![4.0, 5.0, 6.0]);
    let s = x.sum_all().unwrap();
    assert_eq!((s.dims(), s.item().unwrap()), (&[][..], 21.0));
    assert_eq!(x.mean_all().unwrap().item().unwrap(), 3.5);
    assert_eq!(x.max_all().unwrap().item().unwrap(), 6.0);
    let all = x.sum(&[0, 1], true).unwrap();
    assert_eq!((all.dims(), vals(&all)), (&[1usize, 1][..], vec![21.0]));
    // no axes: nothing reduced
    let same = x.sum(&[], false).unwrap();
    assert_eq!((same.dims(), vals(&same)), (&[2usize, 3][..], vals(&x)));
}

#[test]
fn reduce_hand_checked_3d_multiple_axes() {
    // x[i][j][k] = 12i + 4j + k
    let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let x = cpu_f32(&data, &[2, 3, 4]);
    // sum over i, k: 8 terms: 12·4 + 8·4j + 2·(0+1+2+3) = 60 + 32j
    assert_eq!(
        vals(&x.sum(&[0, 2], false).unwrap()),
        vec![60.0, 92.0, 124.0]
    );
    assert_eq!(
        vals(&x.sum(&[2, 0], false).unwrap()),
        vec![60.0, 92.0, 124.0]
    );
    let m = x.max(&[0, -1], true).unwrap();
    assert_eq!(
        (m.dims(), vals(&m)),
        (&[1usize, 3, 1][..], vec![15.0, 19.0, 23.0])
    );
    assert_eq!(
        vals(&x.mean(&[1], false).unwrap()),
        (0..8)
            .map(|v| {
                let (i, k) = (v / 4, v % 4);
                (12 * i + 4 + k) as f32
            })
            .collect::<Vec<_>>()
    );
    // f64 too
    let d: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let x64 = Tensor::from_slice(&d, [2, 3, 4], &Device::Cpu).unwrap();
    let s = x64.sum(&[0, 2], false).unwrap();
    assert_eq!(
        (s.dtype(), s.to_vec::<f64>().unwrap()),
        (DType::F64, vec![60.0, 92.0, 124.0])
    );
}

#[test]
fn reduce_strided_inputs() {
    let x = cpu_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let t = x.t().unwrap(); // [[1,4],[2,5],[3,6]]
    assert_eq!(vals(&t.sum(&[1], false).unwrap()), vec![5.0, 7.0, 9.0]);
    assert_eq!(vals(&t.max(&[0], false).unwrap()), vec![3.0, 6.0]);
    let n = x.narrow(1, 1, 2).unwrap(); // [[2,3],[5,6]]
    assert_eq!(vals(&n.sum(&[0], false).unwrap()), vec![7.0, 9.0]);
    assert_eq!(n.sum_all().unwrap().item().unwrap(), 16.0);
    let b = cpu_f32(&[1.0, 2.0, 3.0], &[3])
        .broadcast_to([4, 3])
        .unwrap();
    assert_eq!(vals(&b.sum(&[0], false).unwrap()), vec![4.0, 8.0, 12.0]);
    assert_eq!(b.mean_all().unwrap().item().unwrap(), 2.0);
}

#[test]
fn reduce_empty_and_size_one_dims() {
    let z = Tensor::zeros([0, 3], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(vals(&z.sum(&[0], false).unwrap()), vec![0.0; 3]);
    assert!(vals(&z.mean(&[0], false).unwrap())
        .iter()
        .all(|v| v.is_nan()));
    let e = z.max(&[0], false).unwrap_err().to_string();
    assert!(e.contains("[0, 3]"), "{e}");
    assert!(z.max_all().is_err());
    assert_eq!(z.sum(&[1], false).unwrap().dims(), &[0]);
    assert_eq!(z.max(&[1], true).unwrap().dims(), &[0, 1]);
    assert_eq!(z.sum_all().unwrap().item().unwrap(), 0.0);
    assert!(z.mean_all().unwrap().item().unwrap().is_nan());
    let o = cpu_f32(&[7.0, 8.0], &[1, 2, 1]);
    assert_eq!(vals(&o.sum(&[0, 2], false).unwrap()), vec![7.0, 8.0]);
    assert_eq!(o.max(&[0], false).unwrap().dims(), &[2, 1]);
    let s = Tensor::scalar(4.0, &Device::Cpu).unwrap();
    assert_eq!(s.sum_all().unwrap().item().unwrap(), 4.0);
    assert_eq!(s.max_all().unwrap().dims(), &[] as &[usize]);
}

#[test]
fn reduce_nan_and_inf() {
    let x = cpu_f32(&[1.0, f32::NAN, 3.0, -1.0, -2.0, -3.0], &[2, 3]);
    let m = vals(&x.max(&[1], false).unwrap());
    assert!(m[0].is_nan());
    assert_eq!(m[1], -1.0);
    assert!(x.max_all().unwrap().item().unwrap().is_nan());
    assert!(x.sum_all().unwrap().item().unwrap().is_nan());
    let i = cpu_f32(
        &[
            1.0,
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
        &[3, 2],
    );
    let s = vals(&i.sum(&[1], false).unwrap());
    assert_eq!(s[0], f32::INFINITY);
    assert!(s[1].is_nan());
    assert_eq!(s[2], f32::NEG_INFINITY);
    assert_eq!(
        vals(&i.max(&[1], false).unwrap()),
        vec![f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY]
    );
    // f32 overflow of the f64 accumulator's result rounds to inf
    let big = cpu_f32(&[f32::MAX, f32::MAX], &[2]);
    assert_eq!(big.sum_all().unwrap().item().unwrap(), f64::INFINITY);
}

#[test]
fn reduce_errors() {
    let x = cpu_f32(&[1.0; 6], &[2, 3]);
    let e = x.sum(&[0, -2], false).unwrap_err().to_string();
    assert!(e.contains("repeated") && e.contains("[2, 3]"), "{e}");
    assert!(x.sum(&[2], false).is_err());
    assert!(x.mean(&[-3], false).is_err());
    let h = x.to_dtype(DType::F16).unwrap();
    let e = h.sum_all().unwrap_err().to_string();
    assert!(e.contains("f16"), "{e}");
}

#[test]
fn reduce_f32_sums_accumulate_in_f64() {
    // 1e6 copies of 0.1f32 (= 0.100000001490116...): exact sum 100000.0014901..., which
    // is 100000.0 in f32. A naive f32 running sum gives ~100958.
    let n = 1_000_000;
    let x = cpu_f32(&vec![0.1f32; n], &[n]);
    assert_eq!(x.sum_all().unwrap().item().unwrap(), 100000.0);
    assert_eq!(x.mean_all().unwrap().item().unwrap(), 0.1f32 as f64);
    // the same over rows (parallel, segmented) and columns
    let m = x.reshape([1000, 1000]).unwrap();
    assert!(vals(&m.sum(&[1], false).unwrap())
        .iter()
        .all(|&v| v == 100.0));
    assert!(vals(&m.sum(&[0], false).unwrap())
        .iter()
        .all(|&v| v == 100.0));
}

#[test]
fn reduce_column_strategy_hand_checked() {
    // x[i][j] = 40i + j, i < 1000, j < 40: column sum = 40·499500 + 1000j, max = 39960 + j
    let data: Vec<f32> = (0..40_000).map(|v| v as f32).collect();
    let x = cpu_f32(&data, &[1000, 40]);
    let s = vals(&x.sum(&[0], false).unwrap());
    assert_eq!(
        s,
        (0..40)
            .map(|j| (19_980_000 + 1000 * j) as f32)
            .collect::<Vec<_>>()
    );
    let m = vals(&x.max(&[0], false).unwrap());
    assert_eq!(m, (0..40).map(|j| (39_960 + j) as f32).collect::<Vec<_>>());
    // reduced axes outer of a 3-D tensor, kept inner
    let y = x.reshape([10, 100, 40]).unwrap();
    assert_eq!(vals(&y.sum(&[0, 1], false).unwrap()), s);
}

/// Pseudo-random values in [-scale, scale) (from the cpu Philox stream).
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    Tensor::rand([n], seed, 0, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(|u| (2.0 * u - 1.0) * scale)
        .collect()
}

/// Compare emu with cpu for one view-building function. Sum/mean tolerance: 1e-5 of the
/// row's Σ|x| (mean: of its mean |x|) plus 1e-6 — f32 tree sums vs f64 sums. Max: bitwise
/// (NaN equals NaN).
fn check(
    data: &[f32],
    shape: &[usize],
    view: &dyn Fn(&Tensor) -> Tensor,
    axes: &[isize],
    keepdim: bool,
) {
    let emu = emu();
    let c = view(&cpu_f32(data, shape));
    let e = view(&Tensor::from_slice(data, shape.to_vec(), &emu).unwrap());
    let abs: Vec<f32> = c.to_vec::<f32>().unwrap().iter().map(|v| v.abs()).collect();
    let cabs = Tensor::from_slice(&abs, c.dims().to_vec(), &Device::Cpu).unwrap();
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        let cr = reduce(&c, op, axes, keepdim).unwrap();
        let er = reduce(&e, op, axes, keepdim).unwrap();
        assert_eq!(cr.dims(), er.dims(), "{op:?} {shape:?} {axes:?}");
        let (cv, ev) = (vals(&cr), vals(&er));
        let scale = vals(
            &reduce(
                &cabs,
                if op == ReduceOp::Mean {
                    op
                } else {
                    ReduceOp::Sum
                },
                axes,
                keepdim,
            )
            .unwrap(),
        );
        for i in 0..cv.len() {
            let ok = if op == ReduceOp::Max {
                cv[i].to_bits() == ev[i].to_bits() || (cv[i].is_nan() && ev[i].is_nan())
            } else {
                (cv[i].is_nan() && ev[i].is_nan())
                    || cv[i] == ev[i]
                    || ((cv[i] - ev[i]).abs() as f64) <= 1e-5 * scale[i] as f64 + 1e-6
            };
            assert!(
                ok,
                "{op:?} shape {shape:?} axes {axes:?} out[{i}]: cpu {} emu {}",
                cv[i], ev[i]
            );
        }
    }
}

fn id(t: &Tensor) -> Tensor {
    t.clone()
}

#[test]
fn reduce_emu_matches_cpu_block_warp_thread_and_two_pass() {
    // warp kernel (k <= 256)
    check(&random(500 * 20, 1, 3.0), &[500, 20], &id, &[1], false);
    check(&random(33 * 256, 2, 1.0), &[33, 256], &id, &[-1], true);
    // block kernel, one block per row
    check(&random(7 * 300, 3, 2.0), &[7, 300], &id, &[1], false);
    check(&random(200 * 1000, 4, 1.0), &[200, 1000], &id, &[1], false);
    // block kernel, reduced axis outer (few rows)
    check(&random(5000 * 64, 5, 1.0), &[5000, 64], &id, &[0], false);
    // thread kernel: many rows, reduced axis outer, kept axis contiguous
    check(&random(64 * 4096, 6, 1.0), &[64, 4096], &id, &[0], false);
    check(
        &random(3 * 5 * 3000, 7, 1.0),
        &[3, 5, 3000],
        &id,
        &[0, 1],
        true,
    );
    // two-pass: long rows split into segments, then partials reduced
    check(
        &random(3 * 100_000, 8, 1.0),
        &[3, 100_000],
        &id,
        &[1],
        false,
    );
    check(
        &random(1000 * 1000, 9, 1.0),
        &[1000, 1000],
        &id,
        &[0, 1],
        false,
    );
}

#[test]
fn reduce_emu_matches_cpu_strided_and_edge_cases() {
    let d = random(6 * 7 * 8, 10, 5.0);
    check(&d, &[6, 7, 8], &id, &[0, 2], false);
    check(&d, &[6, 7, 8], &id, &[1], true);
    check(&d, &[6, 7, 8], &id, &[], false);
    check(
        &d,
        &[6, 7, 8],
        &|t: &Tensor| t.transpose(0, 2).unwrap(),
        &[1, 2],
        false,
    );
    check(
        &d,
        &[6, 7, 8],
        &|t: &Tensor| t.narrow(2, 1, 5).unwrap(),
        &[2],
        false,
    );
    check(
        &d[..8],
        &[8],
        &|t: &Tensor| t.broadcast_to([300, 8]).unwrap(),
        &[0],
        false,
    );
    let big = random(300 * 500, 11, 1.0);
    check(&big, &[300, 500], &|t: &Tensor| t.t().unwrap(), &[1], false);
    check(&big, &[300, 500], &|t: &Tensor| t.t().unwrap(), &[0], false);
    // size-1 dims, scalars
    check(&[2.5, -1.0], &[1, 2, 1], &id, &[0, 2], false);
    check(&[3.0], &[], &id, &[], false);
    // NaN and inf in rows handled by each kernel
    let mut s = random(4 * 1000, 12, 1.0);
    s[5] = f32::NAN;
    s[1500] = f32::INFINITY;
    s[2500] = f32::NEG_INFINITY;
    s[3100] = f32::INFINITY;
    s[3200] = f32::NEG_INFINITY;
    check(&s, &[4, 1000], &id, &[1], false);
    check(&s, &[40, 100], &id, &[1], false);
    check(&s, &[4, 1000], &id, &[0], false);
    let mut neg = vec![f32::NEG_INFINITY; 64];
    neg[3] = f32::NAN;
    check(&neg, &[2, 32], &id, &[1], false);
    // empty: sums over zero elements (0, NaN); empty outputs launch nothing
    let emu = emu();
    let z = Tensor::zeros([0, 3], DType::F32, &emu).unwrap();
    assert_eq!(vals(&z.sum(&[0], false).unwrap()), vec![0.0; 3]);
    assert!(vals(&z.mean(&[0], true).unwrap())
        .iter()
        .all(|v| v.is_nan()));
    assert!(z.max(&[0], false).is_err());
    assert_eq!(z.sum(&[1], false).unwrap().dims(), &[0]);
    let f64_on_emu = Tensor::from_slice(&[1.0f64], [1], &emu).unwrap();
    let e = f64_on_emu.sum_all().unwrap_err().to_string();
    assert!(e.contains("f64 is cpu-only"), "{e}");
}
