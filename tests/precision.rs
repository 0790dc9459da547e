//! Mixed precision on the cpu (`ops::precision`): matmul, conv2d and conv_transpose2d with
//! bf16 / f16 operands and f32 accumulation, forward and every gradient, against plain f64
//! loops over the *rounded* operands written out here; the bf16 results bitwise the same
//! on 1, 2 and 3 threads; and the whole suite again in child processes with the bf16
//! units switched off (`DUEL_CPU_ISA=baseline|avx512`: the portable fallback).
//!
//! **Tolerance.** Every output element is a sum of k products of rounded operands. A
//! product of two bf16 (8 + 8 significant bits) or f16 (11 + 11) values is exact in f32,
//! so the only error is the f32 summation: in any order, `|got − ref| ≤ γ_k·M`,
//! `γ_k = k·u/(1 − k·u)`, `u = 2^-24`, `M = Σ|ρ(a_i)ρ(b_i)|` (Higham, Thm 4.4), where ref
//! and M are the f64 sums over the rounded operands (their own error, k·2^-53·M, is below
//! one part in 2^29 of the bound). A bias added after the sum is one more f32 addition:
//! k + 1 terms with `|bias|` added to M. The data are in [-2, 2), far from bf16's flush
//! of values below 2^-126 and from f16's overflow, so the rounding is `Precision::round`.
//! The bound is ~k·2^-24 relative, while leaving the operands unrounded moves a result by
//! ~2^-9 (bf16) or ~2^-12 (f16) relative: a path that ignored the precision fails here.

use duel::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
use duel::ops::precision::{with_precision, Precision};
use duel::{Device, Tensor};

mod common;
use common::{gamma, lcg_data};

fn leaf(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu)
        .unwrap()
        .with_requires_grad()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.contiguous().unwrap().to_vec::<f32>().unwrap()
}

/// `(reference, magnitude)` of each element: f64 sums of the rounded products and of
/// their absolute values.
struct Reference {
    sum: Vec<f64>,
    mag: Vec<f64>,
    /// Products per element (the k of γ_k).
    k: usize,
}

impl Reference {
    fn zeros(len: usize, k: usize) -> Reference {
        Reference {
            sum: vec![0.0; len],
            mag: vec![0.0; len],
            k,
        }
    }
    fn add(&mut self, at: usize, a: f32, b: f32, p: Precision) {
        let t = f64::from(p.round(a)) * f64::from(p.round(b));
        self.sum[at] += t;
        self.mag[at] += t.abs();
    }
    fn add_bias(&mut self, at: usize, b: f32) {
        self.sum[at] += f64::from(b);
        self.mag[at] += f64::from(b).abs();
    }
    /// Every element of `got` within γ_{k+extra}·M of the reference.
    fn check(&self, got: &[f32], extra: usize, what: &str) {
        assert_eq!(got.len(), self.sum.len(), "{what}: length");
        let g = gamma(self.k + extra);
        for (i, (&x, (&r, &m))) in got.iter().zip(self.sum.iter().zip(&self.mag)).enumerate() {
            let err = (f64::from(x) - r).abs();
            assert!(
                err <= g * m,
                "{what}[{i}]: got {x}, reference {r}, error {err:e} > γ·M = {:e}",
                g * m
            );
        }
    }
}

/// `C = A·B` (A `[m, k]`, B `[k, n]` row-major) and its gradients for the upstream `dc`:
/// `dA = dC·Bᵀ`, `dB = Aᵀ·dC`, each over rounded operands.
fn matmul_reference(
    a: &[f32],
    b: &[f32],
    dc: &[f32],
    (m, k, n): (usize, usize, usize),
    p: Precision,
) -> [Reference; 3] {
    let mut c = Reference::zeros(m * n, k);
    let mut da = Reference::zeros(m * k, n);
    let mut db = Reference::zeros(k * n, m);
    for i in 0..m {
        for j in 0..n {
            for q in 0..k {
                c.add(i * n + j, a[i * k + q], b[q * n + j], p);
                da.add(i * k + q, dc[i * n + j], b[q * n + j], p);
                db.add(q * n + j, a[i * k + q], dc[i * n + j], p);
            }
        }
    }
    [c, da, db]
}

fn check_matmul(p: Precision, (m, k, n): (usize, usize, usize), transposed: bool) {
    let (av, bv, dcv) = (lcg_data(m * k, 1), lcg_data(k * n, 2), lcg_data(m * n, 3));
    // With `transposed`, A is stored as [k, m] and used through the view `.t()`.
    let (a, a_stored) = if transposed {
        let at: Vec<f32> = (0..k * m).map(|x| av[(x % m) * k + x / m]).collect();
        let leaf = leaf(&at, &[k, m]);
        (leaf.t().unwrap(), leaf)
    } else {
        let leaf = leaf(&av, &[m, k]);
        (leaf.clone(), leaf)
    };
    let b = leaf(&bv, &[k, n]);
    let dc = Tensor::from_slice(&dcv, [m, n], &Device::Cpu).unwrap();
    let c = with_precision(p, || a.matmul(&b)).unwrap();
    // Backward outside the scope: the node keeps the forward's precision.
    c.backward_with(&dc).unwrap();
    let [rc, rda, rdb] = matmul_reference(&av, &bv, &dcv, (m, k, n), p);
    let what = format!(
        "{p} matmul {m}x{k}x{n}{}",
        if transposed { " (Aᵀ view)" } else { "" }
    );
    rc.check(&values(&c), 0, &format!("{what} C"));
    let mut da = values(&a_stored.grad().unwrap());
    if transposed {
        da = (0..m * k).map(|x| da[(x % k) * m + x / k]).collect();
    }
    rda.check(&da, 0, &format!("{what} dA"));
    rdb.check(&values(&b.grad().unwrap()), 0, &format!("{what} dB"));
}

/// Geometry of a conv2d `x [n, c, h, w] * w [o, c, kh, kw]`, stride `s`, padding `pad`.
#[derive(Clone, Copy)]
struct Conv {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    s: usize,
    pad: usize,
}

impl Conv {
    fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.s + 1
    }
    fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.s + 1
    }
    /// Every (x index, weight index, y index) of the definition
    /// `y[n,o,i,j] = Σ_{c,p,q} x[n, c, i·s − pad + p, j·s − pad + q] · w[o, c, p, q]`.
    fn taps(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = (self.ho(), self.wo());
        for n in 0..self.n {
            for o in 0..self.o {
                for i in 0..ho {
                    for j in 0..wo {
                        let yi = ((n * self.o + o) * ho + i) * wo + j;
                        for c in 0..self.c {
                            for p in 0..self.kh {
                                for q in 0..self.kw {
                                    let (r, t) = (i * self.s + p, j * self.s + q);
                                    if r < self.pad || t < self.pad {
                                        continue;
                                    }
                                    let (r, t) = (r - self.pad, t - self.pad);
                                    if r >= self.h || t >= self.w {
                                        continue;
                                    }
                                    let xi = ((n * self.c + c) * self.h + r) * self.w + t;
                                    let wi = ((o * self.c + c) * self.kh + p) * self.kw + q;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    fn w_len(&self) -> usize {
        self.o * self.c * self.kh * self.kw
    }
    fn y_len(&self) -> usize {
        self.n * self.o * self.ho() * self.wo()
    }
    /// The references of `y = conv(x, w)` and, for the upstream `dy`, `dx` and `dW`. The
    /// k of each: taps per output (an upper bound where padding cuts some), per input
    /// element (`o·⌈kh/s⌉·⌈kw/s⌉` bounds it), per weight (`n·ho·wo`).
    fn reference(&self, x: &[f32], w: &[f32], dy: &[f32], p: Precision) -> [Reference; 3] {
        let mut y = Reference::zeros(self.y_len(), self.c * self.kh * self.kw);
        let per_x = self.o * self.kh.div_ceil(self.s) * self.kw.div_ceil(self.s);
        let mut dx = Reference::zeros(self.x_len(), per_x);
        let mut dw = Reference::zeros(self.w_len(), self.n * self.ho() * self.wo());
        self.taps(|xi, wi, yi| {
            y.add(yi, x[xi], w[wi], p);
            dx.add(xi, dy[yi], w[wi], p);
            dw.add(wi, dy[yi], x[xi], p);
        });
        [y, dx, dw]
    }
}

fn conv_params(g: &Conv) -> Conv2dParams {
    Conv2dParams {
        stride: (g.s, g.s),
        padding: (g.pad, g.pad),
        dilation: (1, 1),
    }
}

/// conv2d with a bias: forward, dx, dW against the references.
fn check_conv2d(p: Precision, g: Conv) {
    let (xv, wv, bv) = (
        lcg_data(g.x_len(), 4),
        lcg_data(g.w_len(), 5),
        lcg_data(g.o, 6),
    );
    let dyv = lcg_data(g.y_len(), 7);
    let (x, w, b) = (
        leaf(&xv, &[g.n, g.c, g.h, g.w]),
        leaf(&wv, &[g.o, g.c, g.kh, g.kw]),
        leaf(&bv, &[g.o]),
    );
    let y = with_precision(p, || conv2d(&x, &w, Some(&b), &conv_params(&g))).unwrap();
    let dy = Tensor::from_slice(&dyv, y.shape().dims(), &Device::Cpu).unwrap();
    y.backward_with(&dy).unwrap();
    let [mut ry, rdx, rdw] = g.reference(&xv, &wv, &dyv, p);
    let plane = g.ho() * g.wo();
    for (e, _) in ry.sum.clone().iter().enumerate() {
        ry.add_bias(e, bv[(e / plane) % g.o]);
    }
    let what = format!("{p} conv2d x{:?}", [g.n, g.c, g.h, g.w]);
    ry.check(&values(&y), 1, &format!("{what} y"));
    rdx.check(&values(&x.grad().unwrap()), 0, &format!("{what} dx"));
    rdw.check(&values(&w.grad().unwrap()), 0, &format!("{what} dW"));
}

/// conv_transpose2d is conv2d's input gradient: with its input `z` (shaped like conv2d's
/// y) and weight `[o, c, kh, kw]` (in → out channels o → c), `out = dx(dy = z)`; its input
/// gradient is conv2d's forward of the upstream gradient and its weight gradient is
/// conv2d's dW with the roles of x and dy swapped.
fn check_conv_transpose2d(p: Precision, g: Conv) {
    let (zv, wv) = (lcg_data(g.y_len(), 8), lcg_data(g.w_len(), 9));
    let upv = lcg_data(g.x_len(), 10);
    let z = leaf(&zv, &[g.n, g.o, g.ho(), g.wo()]);
    let w = leaf(&wv, &[g.o, g.c, g.kh, g.kw]);
    let params = ConvTranspose2dParams {
        stride: (g.s, g.s),
        padding: (g.pad, g.pad),
        // What conv2d's floor dropped, so the output is x's shape again.
        output_padding: (
            g.h + 2 * g.pad - g.kh - (g.ho() - 1) * g.s,
            g.w + 2 * g.pad - g.kw - (g.wo() - 1) * g.s,
        ),
        dilation: (1, 1),
    };
    let out = with_precision(p, || conv_transpose2d(&z, &w, None, &params)).unwrap();
    assert_eq!(out.dims(), [g.n, g.c, g.h, g.w], "the geometry round-trips");
    let up = Tensor::from_slice(&upv, out.shape().dims(), &Device::Cpu).unwrap();
    out.backward_with(&up).unwrap();
    // out = dx of conv2d(·, w) at dy = z; d(out)/dz = conv2d(up, w); dW from (up, z).
    let [rdz, rout, rdw] = g.reference(&upv, &wv, &zv, p);
    let what = format!("{p} conv_transpose2d z{:?}", [g.n, g.o, g.ho(), g.wo()]);
    rout.check(&values(&out), 0, &format!("{what} out"));
    rdz.check(&values(&z.grad().unwrap()), 0, &format!("{what} dz"));
    rdw.check(&values(&w.grad().unwrap()), 0, &format!("{what} dW"));
}

/// Odd sizes (tails of every blocking), a DCGAN-like stride-2 layer, the 1-channel case
/// — thin GEMMs, which bf16 runs as the f32 GEMM over rounded operands — and a layer whose
/// three GEMMs fill the bf16 units' 32-blocks (m, n, k multiples of 32: `ops::cpu_gemm`
/// runs them on AMX / AVX512-BF16 where the CPU has them).
const CONVS: [Conv; 4] = [
    Conv {
        n: 3,
        c: 5,
        h: 9,
        w: 8,
        o: 4,
        kh: 3,
        kw: 3,
        s: 2,
        pad: 1,
    },
    Conv {
        n: 2,
        c: 8,
        h: 14,
        w: 14,
        o: 16,
        kh: 4,
        kw: 4,
        s: 2,
        pad: 1,
    },
    Conv {
        n: 4,
        c: 1,
        h: 7,
        w: 7,
        o: 3,
        kh: 4,
        kw: 4,
        s: 1,
        pad: 0,
    },
    Conv {
        n: 2,
        c: 32,
        h: 8,
        w: 8,
        o: 32,
        kh: 3,
        kw: 3,
        s: 1,
        pad: 1,
    },
];

fn suite(p: Precision) {
    check_matmul(p, (37, 70, 45), false);
    check_matmul(p, (33, 129, 65), true);
    check_matmul(p, (1, 1, 1), false);
    // Multiples of 32: the bf16 units' path (the shapes above are thin or ragged).
    check_matmul(p, (64, 96, 160), false);
    check_matmul(p, (96, 128, 64), true);
    for g in CONVS {
        check_conv2d(p, g);
        check_conv_transpose2d(p, g);
    }
}

#[test]
fn bf16_operands_are_rounded_and_summed_in_f32() {
    suite(Precision::Bf16);
}

#[test]
fn f16_operands_are_rounded_and_summed_in_f32() {
    suite(Precision::F16);
}

#[test]
fn f16_operands_overflow_to_inf_beyond_65504() {
    // 70000 rounds to +inf in f16 (largest finite 65504): the product is inf, as on a
    // tensor core; bf16 keeps f32's range.
    let a = Tensor::from_slice(&[70000f32, 1.0], [1, 2], &Device::Cpu).unwrap();
    let b = Tensor::from_slice(&[1f32, 1.0], [2, 1], &Device::Cpu).unwrap();
    let f16 = with_precision(Precision::F16, || a.matmul(&b)).unwrap();
    assert_eq!(values(&f16), [f32::INFINITY]);
    let bf16 = with_precision(Precision::Bf16, || a.matmul(&b)).unwrap();
    assert_eq!(values(&bf16), [70145.0], "bf16(70000) = 70144, plus 1");
}

#[test]
fn f64_tensors_ignore_the_precision() {
    let v: Vec<f64> = lcg_data(12, 11).into_iter().map(f64::from).collect();
    let a = Tensor::from_slice(&v, [3, 4], &Device::Cpu).unwrap();
    let b = a.t().unwrap();
    let exact = a.matmul(&b).unwrap().to_vec::<f64>().unwrap();
    let under = with_precision(Precision::Bf16, || a.matmul(&b))
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(exact, under, "gradient checks stay in f64");
}

#[test]
fn bf16_results_are_bitwise_the_same_on_1_2_and_3_threads() {
    // Shapes on the bf16 units' path (multiples of 32), split over the threads by rows
    // (m ≥ n) and by columns (m < n: `p·q`, 600 columns in uneven parts, and p's gradient).
    let g = CONVS[3];
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let x = leaf(&lcg_data(g.x_len(), 4), &[g.n, g.c, g.h, g.w]);
            let w = leaf(&lcg_data(g.w_len(), 5), &[g.o, g.c, g.kh, g.kw]);
            let a = leaf(&lcg_data(320 * 192, 6), &[320, 192]);
            let b = leaf(&lcg_data(192 * 256, 7), &[192, 256]);
            let p = leaf(&lcg_data(64 * 160, 8), &[64, 160]);
            let q = leaf(&lcg_data(160 * 600, 9), &[160, 600]);
            let (y, c, r) = with_precision(Precision::Bf16, || {
                (
                    conv2d(&x, &w, None, &conv_params(&g)),
                    a.matmul(&b),
                    p.matmul(&q),
                )
            });
            let (y, c, r) = (y.unwrap(), c.unwrap(), r.unwrap());
            y.sum_all().unwrap().backward().unwrap();
            c.sum_all().unwrap().backward().unwrap();
            r.sum_all().unwrap().backward().unwrap();
            [
                y,
                c,
                r,
                x.grad().unwrap(),
                w.grad().unwrap(),
                a.grad().unwrap(),
                p.grad().unwrap(),
            ]
            .map(|t| values(&t).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(
            run(threads) == one,
            "bf16 results differ on {threads} threads"
        );
    }
}

/// Child of `bf16_falls_back_without_the_bf16_units`: the switch in `DUEL_CPU_ISA` must
/// have turned the bf16 units off, and the suite must still pass.
#[test]
#[ignore = "run by bf16_falls_back_without_the_bf16_units in a child process"]
fn child_without_bf16_units() {
    assert_eq!(duel::ops::gemm_bf16::bf16_path(), "portable");
    suite(Precision::Bf16);
    suite(Precision::F16);
}

#[test]
fn bf16_falls_back_without_the_bf16_units() {
    for value in ["baseline", "avx512"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_without_bf16_units", "--include-ignored"])
            .env(duel::device::cpu::isa::ISA_ENV, value)
            .output()
            .expect("run the test binary");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "DUEL_CPU_ISA={value}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
