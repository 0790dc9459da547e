//! matmul: cpu against hand-computed products and a plain f64 reference loop, then parity
//! of every kernel version in kernels/matmul.cu (through `emu`) against the cpu backend,
//! then autograd (gradcheck in f64 on cpu, emu-vs-cpu gradients in f32).
//!
//! Tolerances
//! - Hand-computed products of small integers: exact (every partial sum is an integer
//!   below 2^24, so f32 and f64 are exact whatever the summation order).
//! - cpu vs the f64 reference loop and emu vs cpu (f32): per element
//!   |got − expected| <= 2·K·ε·max|a|·max|b| + 1e-30, ε = f32::EPSILON (2^-23): the size of
//!   the rounding error of a K-term f32 dot product whose terms are bounded by
//!   max|a|·max|b|, for each of the two sides compared (the cpu GEMM and the kernels
//!   sum in different orders). K = 0 must give exact zeros.
//! - Between the three kernel versions: bit-identical. Each one accumulates
//!   `acc = fmaf(a, b, acc)` over p = 0..K-1 in order, so they must agree exactly.
//! - Gradients, emu vs cpu (f32): the same bound with K replaced by the inner dimension
//!   of each gradient product.
//! - gradcheck (f64, cpu): the harness's own |analytic − numeric| <= 1e-7 + 1e-6·|numeric|.

use duel::device::emu::EmuOptions;
use duel::ops::matmul::{matmul_with, MatmulKernel};
use duel::{DType, Device, Tensor};

mod common;
use common::lcg_data;

fn cpu(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for the parity tests")
}

fn rand_cpu(shape: &[usize], seed: u64) -> Tensor {
    cpu(&lcg_data(shape.iter().product(), seed), shape)
}

/// Plain f64 reference: `a @ b` for contiguous row-major batched data with explicit
/// batch index maps.
fn reference(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let (ad, bd) = (a.dims().to_vec(), b.dims().to_vec());
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let rank = ad.len().max(bd.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(&d[..d.len() - 2]);
        v
    };
    let (ab, bb) = (pad(&ad), pad(&bd));
    let batch: Vec<usize> = ab.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
    let av = a.to_f64_vec().unwrap();
    let bv = b.to_f64_vec().unwrap();
    let total: usize = batch.iter().product();
    let mut out = vec![0.0; total * m * n];
    for z in 0..total {
        // Unravel z over `batch`, then ravel over each operand's (broadcast) batch dims.
        let (mut rem, mut za, mut zb, mut sa, mut sb) = (z, 0, 0, 1, 1);
        for axis in (0..rank - 2).rev() {
            let i = rem % batch[axis];
            rem /= batch[axis];
            za += if ab[axis] == 1 { 0 } else { i * sa };
            zb += if bb[axis] == 1 { 0 } else { i * sb };
            sa *= ab[axis];
            sb *= bb[axis];
        }
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += av[za * m * k + i * k + p] * bv[zb * k * n + p * n + j];
                }
                out[z * m * n + i * n + j] = s;
            }
        }
    }
    out
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_f64_vec()
        .unwrap()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
}

/// The stated tolerance (module doc) for a product of `a` and `b`.
fn tolerance(a: &Tensor, b: &Tensor) -> f64 {
    let k = a.dims()[a.rank() - 1] as f64;
    2.0 * k * f32::EPSILON as f64 * max_abs(a) * max_abs(b) + 1e-30
}

fn assert_within(got: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= tol,
            "{what}[{i}]: got {g}, expected {e} (|diff| {} > tol {tol})",
            (g - e).abs()
        );
    }
}

// ---- cpu, hand-computed ----------------------------------------------------------------

const A23: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
const B32: [f32; 6] = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
// [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]]
const C22: [f32; 4] = [58.0, 64.0, 139.0, 154.0];

#[test]
fn matmul_hand_checked_2d() {
    let c = cpu(&A23, &[2, 3]).matmul(&cpu(&B32, &[3, 2])).unwrap();
    assert_eq!(c.dims(), &[2, 2]);
    assert_eq!(vals(&c), C22);
    // [3,2] @ [2,3] = [[39,54,69],[49,68,87],[59,82,105]]
    let c = cpu(&B32, &[3, 2]).matmul(&cpu(&A23, &[2, 3])).unwrap();
    assert_eq!(
        vals(&c),
        [39.0, 54.0, 69.0, 49.0, 68.0, 87.0, 59.0, 82.0, 105.0]
    );
    // Row vector times column vector and the outer product.
    let r = cpu(&[1.0, 2.0, 3.0], &[1, 3]);
    let col = cpu(&[4.0, 5.0, 6.0], &[3, 1]);
    assert_eq!(vals(&r.matmul(&col).unwrap()), [32.0]);
    assert_eq!(
        vals(&col.matmul(&r).unwrap()),
        [4.0, 8.0, 12.0, 5.0, 10.0, 15.0, 6.0, 12.0, 18.0]
    );
}

/// A `[rows, cols]` tensor holding `data` (row-major) as the transpose of its storage.
fn as_transposed_view(data: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor {
    let mut st = vec![0.0; data.len()];
    for i in 0..rows {
        for j in 0..cols {
            st[j * rows + i] = data[i * cols + j];
        }
    }
    let t = Tensor::from_slice(&st, [cols, rows], device)
        .unwrap()
        .t()
        .unwrap();
    assert!(!t.is_contiguous());
    t
}

#[test]
fn matmul_all_four_transpose_combinations_cpu() {
    let d = Device::Cpu;
    let a = cpu(&A23, &[2, 3]);
    let b = cpu(&B32, &[3, 2]);
    let at = as_transposed_view(&A23, 2, 3, &d);
    let bt = as_transposed_view(&B32, 3, 2, &d);
    for (x, y, what) in [
        (&a, &b, "NN"),
        (&at, &b, "TN"),
        (&a, &bt, "NT"),
        (&at, &bt, "TT"),
    ] {
        assert_eq!(vals(&x.matmul(y).unwrap()), C22, "{what}");
    }
    // A·Aᵀ through one shared storage.
    let aat = a.matmul(&a.t().unwrap()).unwrap();
    assert_eq!(vals(&aat), [14.0, 32.0, 32.0, 77.0]);
}

#[test]
fn matmul_batched_and_broadcast_cpu() {
    // [2,2,3] @ [3,2]: the second batch entry is the first plus 1 everywhere.
    let mut a2 = A23.to_vec();
    a2.extend(A23.iter().map(|v| v + 1.0));
    let c = cpu(&a2, &[2, 2, 3]).matmul(&cpu(&B32, &[3, 2])).unwrap();
    assert_eq!(c.dims(), &[2, 2, 2]);
    // [[2,3,4],[5,6,7]] @ B = [[85,94],[166,184]]
    assert_eq!(
        vals(&c),
        [58.0, 64.0, 139.0, 154.0, 85.0, 94.0, 166.0, 184.0]
    );
    // [1,2,3] @ [2,3,2]: the lhs broadcast over the batch.
    let mut b2 = B32.to_vec();
    b2.extend(B32.iter().map(|v| -v));
    let c = cpu(&A23, &[1, 2, 3]).matmul(&cpu(&b2, &[2, 3, 2])).unwrap();
    assert_eq!(c.dims(), &[2, 2, 2]);
    assert_eq!(
        vals(&c),
        [58.0, 64.0, 139.0, 154.0, -58.0, -64.0, -139.0, -154.0]
    );
    // [2,2,3] @ [2,3,2] one-to-one.
    let c = cpu(&a2, &[2, 2, 3]).matmul(&cpu(&b2, &[2, 3, 2])).unwrap();
    assert_eq!(
        vals(&c),
        [58.0, 64.0, 139.0, 154.0, -85.0, -94.0, -166.0, -184.0]
    );
    // Two-sided broadcast [2,1,3,4] @ [1,3,4,5] and a 2-D lhs against a batch.
    for (sa, sb) in [
        (vec![2, 1, 3, 4], vec![1, 3, 4, 5]),
        (vec![3, 4], vec![2, 4, 5]),
        (vec![2, 3, 3, 4], vec![3, 4, 2]),
    ] {
        let (a, b) = (rand_cpu(&sa, 1), rand_cpu(&sb, 2));
        let c = a.matmul(&b).unwrap();
        let tol = tolerance(&a, &b);
        assert_within(
            &c.to_f64_vec().unwrap(),
            &reference(&a, &b),
            tol,
            "broadcast",
        );
    }
    let c = rand_cpu(&[2, 1, 3, 4], 1)
        .matmul(&rand_cpu(&[1, 3, 4, 5], 2))
        .unwrap();
    assert_eq!(c.dims(), &[2, 3, 3, 5]);
}

#[test]
fn matmul_odd_sizes_and_batch_one_cpu() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 1, 7),
        (1, 33, 1),
        (7, 33, 129),
        (129, 7, 33),
        (33, 129, 7),
        (129, 129, 129),
    ] {
        for batch in [None, Some(1), Some(3)] {
            let (sa, sb) = match batch {
                None => (vec![m, k], vec![k, n]),
                Some(z) => (vec![z, m, k], vec![z, k, n]),
            };
            let (a, b) = (rand_cpu(&sa, 3), rand_cpu(&sb, 4));
            let c = a.matmul(&b).unwrap();
            let mut expect_shape = sa[..sa.len() - 1].to_vec();
            expect_shape.push(n);
            assert_eq!(c.dims(), &expect_shape[..]);
            assert_within(
                &c.to_f64_vec().unwrap(),
                &reference(&a, &b),
                tolerance(&a, &b),
                &format!("{m}x{k}x{n} batch {batch:?}"),
            );
        }
    }
}

#[test]
fn matmul_large_parallel_and_transposed_cpu() {
    // Big enough for gemm's rayon path; all four transposes against the reference.
    let (m, k, n) = (96, 200, 80);
    let a = rand_cpu(&[m, k], 5);
    let b = rand_cpu(&[k, n], 6);
    let expected = reference(&a, &b);
    let tol = tolerance(&a, &b);
    let at = a.t().unwrap().contiguous().unwrap().t().unwrap();
    let bt = b.t().unwrap().contiguous().unwrap().t().unwrap();
    for (x, y) in [(&a, &b), (&at, &b), (&a, &bt), (&at, &bt)] {
        assert_within(
            &x.matmul(y).unwrap().to_f64_vec().unwrap(),
            &expected,
            tol,
            "large",
        );
    }
}

#[test]
fn matmul_f64_cpu() {
    let a: Vec<f64> = A23.iter().map(|&v| v as f64 + 0.5).collect();
    let b: Vec<f64> = B32.iter().map(|&v| v as f64).collect();
    let a = Tensor::from_vec(a, [2, 3], &Device::Cpu).unwrap();
    let b = Tensor::from_vec(b, [3, 2], &Device::Cpu).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dtype(), DType::F64);
    // C22 + 0.5 * column sums of B (27, 30).
    assert_eq!(c.to_vec::<f64>().unwrap(), [71.5, 79.0, 152.5, 169.0]);
    // Transposed f64 view, and a non-integer product to full f64 precision.
    let x = Tensor::from_vec(vec![0.1f64, 0.2, 0.3], [3, 1], &Device::Cpu).unwrap();
    let y = x.t().unwrap().matmul(&x).unwrap().item().unwrap();
    assert!((y - 0.14).abs() < 1e-16, "{y}");
}

#[test]
fn matmul_empty_dims() {
    for device in [Device::Cpu, emu()] {
        // k = 0: the empty sum, zeros of shape [m, n].
        let a = Tensor::zeros([3, 0], DType::F32, &device).unwrap();
        let b = Tensor::zeros([0, 4], DType::F32, &device).unwrap();
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.dims(), &[3, 4]);
        assert_eq!(vals(&c), vec![0.0; 12], "{device}");
        // m = 0 and n = 0: empty results of the right shape.
        let a = Tensor::zeros([0, 5], DType::F32, &device).unwrap();
        let b = Tensor::ones([5, 4], DType::F32, &device).unwrap();
        assert_eq!(a.matmul(&b).unwrap().dims(), &[0, 4]);
        let b0 = Tensor::ones([5, 0], DType::F32, &device).unwrap();
        let a1 = Tensor::ones([2, 5], DType::F32, &device).unwrap();
        assert_eq!(a1.matmul(&b0).unwrap().dims(), &[2, 0]);
        // Batch 0.
        let a = Tensor::zeros([0, 2, 5], DType::F32, &device).unwrap();
        assert_eq!(a.matmul(&b).unwrap().dims(), &[0, 2, 4]);
        // k = 0 batched with broadcasting.
        let a = Tensor::zeros([2, 3, 0], DType::F32, &device).unwrap();
        let b = Tensor::zeros([0, 2], DType::F32, &device).unwrap();
        assert_eq!(vals(&a.matmul(&b).unwrap()), vec![0.0; 12]);
    }
}

#[test]
fn matmul_errors() {
    let a = rand_cpu(&[2, 3], 1);
    let b = rand_cpu(&[4, 5], 2);
    let msg = a.matmul(&b).unwrap_err().to_string();
    assert!(
        msg.contains("[2, 3]") && msg.contains("[4, 5]") && msg.contains("inner"),
        "{msg}"
    );
    // Rank 1 and rank 0.
    let v = rand_cpu(&[3], 3);
    let msg = v.matmul(&rand_cpu(&[3, 2], 4)).unwrap_err().to_string();
    assert!(msg.contains("rank"), "{msg}");
    assert!(a.matmul(&v).is_err());
    let s = Tensor::scalar(1.0, &Device::Cpu).unwrap();
    assert!(s.matmul(&s).is_err());
    // Dtype mismatch and storage-only dtypes.
    let a64 = a.to_dtype(DType::F64).unwrap();
    let msg = a64.matmul(&rand_cpu(&[3, 2], 5)).unwrap_err().to_string();
    assert!(msg.contains("f64") && msg.contains("f32"), "{msg}");
    let h = a.to_dtype(DType::F16).unwrap();
    let h2 = rand_cpu(&[3, 2], 6).to_dtype(DType::F16).unwrap();
    assert!(h.matmul(&h2).is_err());
    // Batch dims that do not broadcast.
    let msg = rand_cpu(&[2, 2, 3], 7)
        .matmul(&rand_cpu(&[3, 3, 2], 8))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[2, 2, 3]") && msg.contains("[3, 3, 2]"),
        "{msg}"
    );
    // Device mismatch, and f64 on the emulator.
    let e = a.to_device(&emu()).unwrap();
    let msg = e.matmul(&rand_cpu(&[3, 2], 9)).unwrap_err().to_string();
    assert!(msg.contains("device"), "{msg}");
    let e64 = a64.to_device(&emu()).unwrap();
    let msg = e64.matmul(&e64.t().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("f64"), "{msg}");
}

// ---- emu parity ------------------------------------------------------------------------

/// Run `f(a, b)` on cpu and on emu with every kernel version; versions must agree bit
/// for bit, and with cpu within the stated tolerance.
fn parity(a: &Tensor, b: &Tensor, what: &str, view: impl Fn(&Tensor, &Tensor) -> (Tensor, Tensor)) {
    let (ca, cb) = view(a, b);
    let expected = ca.matmul(&cb).unwrap();
    let tol = tolerance(&ca, &cb);
    let (ea, eb) = (a.to_device(&emu()).unwrap(), b.to_device(&emu()).unwrap());
    let (ea, eb) = view(&ea, &eb);
    let mut first: Option<Vec<f32>> = None;
    for kernel in MatmulKernel::ALL {
        let got = matmul_with(&ea, &eb, kernel).unwrap();
        assert_eq!(got.dims(), expected.dims(), "{what} {kernel:?}");
        let got = vals(&got);
        assert_within(
            &got.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &expected.to_f64_vec().unwrap(),
            tol,
            &format!("{what} {kernel:?}"),
        );
        match &first {
            None => first = Some(got),
            Some(f) => {
                let same = f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{what}: {kernel:?} differs bitwise from Naive");
            }
        }
    }
}

fn plain(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    (a.clone(), b.clone())
}

#[test]
fn matmul_emu_parity_odd_sizes() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 3, 5),
        (33, 17, 29),
        (65, 33, 7),
        (7, 129, 65),
        (129, 16, 64),
        (64, 64, 64),
    ] {
        let (a, b) = (rand_cpu(&[m, k], 11), rand_cpu(&[k, n], 12));
        parity(&a, &b, &format!("{m}x{k}x{n}"), plain);
    }
}

#[test]
fn matmul_emu_parity_split_k() {
    // Few C tiles and a long K: the launch layer cuts K into chunks summed afterwards
    // (src/ops/matmul/simt.rs, `k_splits`): one tile with equal chunks (a conv weight
    // gradient's shape), two tiles with a shorter last chunk, a matrix-vector product,
    // and transposed operands (the chunk steps of a column-major A and B). Each chunk
    // and the chunk sum are f32 sums of at most K terms: the same bound holds.
    for &(m, k, n) in &[
        (64, 12_544, 16),
        (64, 6272, 100),
        (64, 6272, 1),
        (5, 5000, 3),
    ] {
        let (a, b) = (rand_cpu(&[m, k], 41), rand_cpu(&[k, n], 42));
        parity(&a, &b, &format!("split {m}x{k}x{n}"), plain);
    }
    let (m, k, n) = (33, 4099, 17);
    let (at, bt) = (rand_cpu(&[k, m], 43), rand_cpu(&[n, k], 44));
    parity(&at, &bt, "split TT 33x4099x17", |x, y| {
        (x.t().unwrap(), y.t().unwrap())
    });
}

#[test]
fn matmul_emu_parity_transposes() {
    // Operands stored transposed ([k,m] and [n,k]) and used through .t() views: the
    // kernels read them with trans flags (odd sizes, aligned and unaligned leading dims).
    for &(m, k, n) in &[(7, 5, 3), (33, 17, 65), (66, 20, 36), (64, 33, 8)] {
        let a = rand_cpu(&[m, k], 21);
        let b = rand_cpu(&[k, n], 22);
        let at = rand_cpu(&[k, m], 23);
        let bt = rand_cpu(&[n, k], 24);
        let what = format!("{m}x{k}x{n}");
        parity(&a, &b, &format!("NN {what}"), plain);
        parity(&at, &b, &format!("TN {what}"), |x, y| {
            (x.t().unwrap(), y.clone())
        });
        parity(&a, &bt, &format!("NT {what}"), |x, y| {
            (x.clone(), y.t().unwrap())
        });
        parity(&at, &bt, &format!("TT {what}"), |x, y| {
            (x.t().unwrap(), y.t().unwrap())
        });
    }
}

#[test]
fn matmul_emu_parity_strided_and_unaligned() {
    // Row-major with a leading dim > k and an offset of 1 element (not 16-byte aligned):
    // the scalar load path. [m, k+3] narrowed to columns 1..k+1.
    let (m, k, n) = (33, 20, 17);
    let a = rand_cpu(&[m, k + 3], 31);
    let b = rand_cpu(&[k + 1, n + 5], 32);
    parity(&a, &b, "narrowed", |x, y| {
        (
            x.narrow(1, 1, k).unwrap(),
            y.narrow(0, 1, k).unwrap().narrow(1, 2, n).unwrap(),
        )
    });
    // Neither row- nor column-major (both strides > 1): copied to contiguous first.
    let s = rand_cpu(&[m, k, 2], 33);
    let t = rand_cpu(&[n, k, 2], 34);
    parity(&s, &t, "strided both axes", |x, y| {
        (
            x.narrow(2, 1, 1).unwrap().squeeze(2).unwrap(),
            y.narrow(2, 0, 1).unwrap().squeeze(2).unwrap().t().unwrap(),
        )
    });
}

#[test]
fn matmul_emu_parity_batched_and_broadcast() {
    for (sa, sb) in [
        (vec![1, 7, 5], vec![1, 5, 9]),
        (vec![3, 17, 9], vec![3, 9, 33]),
        (vec![3, 17, 9], vec![9, 33]),
        (vec![17, 9], vec![4, 9, 33]),
        (vec![1, 17, 9], vec![4, 9, 33]),
        (vec![2, 1, 7, 5], vec![1, 3, 5, 9]),
        (vec![2, 3, 7, 5], vec![3, 5, 9]),
    ] {
        let (a, b) = (rand_cpu(&sa, 41), rand_cpu(&sb, 42));
        parity(&a, &b, &format!("{sa:?}@{sb:?}"), plain);
    }
    // Batched transposed views: [B,k,m]ᵀ @ [B,n,k]ᵀ.
    let (a, b) = (rand_cpu(&[3, 9, 17], 43), rand_cpu(&[3, 33, 9], 44));
    parity(&a, &b, "batched TT", |x, y| {
        (x.t().unwrap(), y.t().unwrap())
    });
    // A batch whose entries are not at a uniform stride (a permuted 4-D view): one
    // launch per entry.
    let (a, b) = (rand_cpu(&[3, 2, 5, 7], 45), rand_cpu(&[2, 3, 7, 4], 46));
    parity(&a, &b, "permuted batch", |x, y| {
        (x.permute(&[1, 0, 2, 3]).unwrap(), y.clone())
    });
}

#[test]
fn matmul_emu_transposed_views_are_not_copied() {
    // Every launch goes to the trace: a transposed operand must not cause a copy kernel.
    let path = std::env::temp_dir().join(format!("duel-matmul-trace-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let dev = Device::emu_with(EmuOptions {
        trace: Some(path.clone()),
        ..EmuOptions::from_env()
    })
    .unwrap();
    let a = rand_cpu(&[2, 9, 7], 51).to_device(&dev).unwrap();
    let b = rand_cpu(&[5, 9], 52).to_device(&dev).unwrap();
    let c = a.t().unwrap().matmul(&b.t().unwrap()).unwrap();
    assert_eq!(c.dims(), &[2, 7, 5]);
    let trace = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let kernels: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(kernels, ["kernel=matmul_regblock_f32"], "{trace}");
}

// ---- autograd --------------------------------------------------------------------------

#[test]
fn matmul_gradcheck_f64() {
    let cases = duel::ops::matmul::gradcheck_cases().unwrap();
    assert!(cases.len() >= 4);
    for case in &cases {
        for row in duel::autograd::gradcheck::check(case).unwrap() {
            assert!(
                row.passed,
                "matmul {} input {}: max abs err {} rel {}",
                row.variant, row.input, row.max_abs_err, row.max_rel_err
            );
        }
    }
}

/// Gradients of `sum(w ⊙ f(a, b))` for f32 inputs on `device`.
fn grads(
    a: &Tensor,
    b: &Tensor,
    w: &Tensor,
    device: &Device,
    kernel: MatmulKernel,
    view: &dyn Fn(&Tensor, &Tensor) -> (Tensor, Tensor),
) -> (Vec<f32>, Vec<f32>) {
    // The (possibly transposed) views are the leaves: their gradients have the views'
    // shapes, and the backward rule sees strided operands.
    let (x, y) = view(&a.to_device(device).unwrap(), &b.to_device(device).unwrap());
    let (la, lb) = (x.with_requires_grad(), y.with_requires_grad());
    let out = matmul_with(&la, &lb, kernel).unwrap();
    out.backward_with(&w.to_device(device).unwrap()).unwrap();
    (vals(&la.grad().unwrap()), vals(&lb.grad().unwrap()))
}

#[test]
fn matmul_emu_gradients_match_cpu() {
    type View = Box<dyn Fn(&Tensor, &Tensor) -> (Tensor, Tensor)>;
    let cases: Vec<(Vec<usize>, Vec<usize>, View)> = vec![
        (
            vec![7, 5],
            vec![5, 9],
            Box::new(|x, y| (x.clone(), y.clone())),
        ),
        (
            vec![3, 7, 5],
            vec![5, 9],
            Box::new(|x, y| (x.clone(), y.clone())),
        ),
        (
            vec![1, 7, 5],
            vec![3, 5, 9],
            Box::new(|x, y| (x.clone(), y.clone())),
        ),
        (
            vec![7, 5],
            vec![2, 5, 9],
            Box::new(|x, y| (x.clone(), y.clone())),
        ),
        (
            vec![2, 5, 7],
            vec![9, 5],
            Box::new(|x, y| (x.t().unwrap(), y.t().unwrap())),
        ),
    ];
    for (sa, sb, view) in cases {
        let (a, b) = (rand_cpu(&sa, 61), rand_cpu(&sb, 62));
        let out_shape = {
            let (x, y) = view(&a, &b);
            x.matmul(&y).unwrap().dims().to_vec()
        };
        let w = rand_cpu(&out_shape, 63);
        let (ga, gb) = grads(&a, &b, &w, &Device::Cpu, MatmulKernel::RegBlock, &*view);
        assert_eq!(ga.len(), a.numel());
        assert_eq!(gb.len(), b.numel());
        // dA sums over n (and broadcast batch entries), dB over m (and batch entries):
        // bound the number of terms by the product of those extents.
        let batch: usize = out_shape[..out_shape.len() - 2].iter().product();
        let (m, n) = (
            out_shape[out_shape.len() - 2],
            out_shape[out_shape.len() - 1],
        );
        let wmax = max_abs(&w);
        let tol_a = 2.0 * (n * batch) as f64 * f32::EPSILON as f64 * wmax * max_abs(&b);
        let tol_b = 2.0 * (m * batch) as f64 * f32::EPSILON as f64 * wmax * max_abs(&a);
        for kernel in MatmulKernel::ALL {
            let (ea, eb) = grads(&a, &b, &w, &emu(), kernel, &*view);
            let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let what = format!("{sa:?}@{sb:?} {kernel:?}");
            assert_within(&f(&ea), &f(&ga), tol_a, &format!("dA {what}"));
            assert_within(&f(&eb), &f(&gb), tol_b, &format!("dB {what}"));
        }
    }
}

#[test]
fn matmul_backward_hand_checked() {
    // L = sum(A @ B): dA = 1·Bᵀ (row sums of B per column), dB = Aᵀ·1 (column sums of A).
    let a = cpu(&A23, &[2, 3]).with_requires_grad();
    let b = cpu(&B32, &[3, 2]).with_requires_grad();
    let c = a.matmul(&b).unwrap();
    c.backward_with(&Tensor::ones([2, 2], DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(
        vals(&a.grad().unwrap()),
        [15.0, 19.0, 23.0, 15.0, 19.0, 23.0]
    );
    assert_eq!(vals(&b.grad().unwrap()), [5.0, 5.0, 7.0, 7.0, 9.0, 9.0]);
}

/// The Linear pattern `x @ Wᵀ` (W a leaf, used through a transposed view): W's gradient
/// `dW = dYᵀ·x` arrives as a contiguous tensor (the optimizers and the gradient norm read
/// it in place) with the values of hand-checked integer products (exact in f32).
#[test]
fn linear_weight_gradients_arrive_contiguous() {
    // x [2, 3], W [2, 3], dY [2, 2]: dW[o][i] = Σ_n dY[n][o]·x[n][i].
    let x = cpu(&A23, &[2, 3]);
    let w = cpu(&[1.0, -2.0, 3.0, 0.5, 4.0, -1.0], &[2, 3]).with_requires_grad();
    let dy = cpu(&[1.0, 2.0, -3.0, 4.0], &[2, 2]);
    x.matmul(&w.t().unwrap())
        .unwrap()
        .backward_with(&dy)
        .unwrap();
    let g = w.grad().expect("W has a gradient");
    assert!(g.is_contiguous(), "W's gradient is a strided view");
    let (xs, ds) = (vals(&x), vals(&dy));
    let want: Vec<f32> = (0..2)
        .flat_map(|o| (0..3).map(move |i| (o, i)))
        .map(|(o, i)| (0..2).map(|n| ds[n * 2 + o] * xs[n * 3 + i]).sum())
        .collect();
    assert_eq!(vals(&g), want);
}
