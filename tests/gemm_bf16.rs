//! The cpu bf16 GEMM (`ops::gemm_bf16`): every path this CPU has, forced one by one, against
//! an f64 reference of the bf16-rounded operands (the tight bound `γ_k·Σ|t_i|` of the
//! module doc) and of the unrounded ones (the loose bound `(2·2^-8 + 2^-16 + γ_k)·Σ|a||b|`),
//! on shapes with tails, strided and transposed operands, accumulation, NaN/inf, stale
//! workspaces; and, in child processes, under `DUEL_CPU_ISA=baseline|avx512|avx512bf16`.

use duel::device::cpu::isa::ISA_ENV;
use duel::ops::gemm_bf16::pack::{bf16_to_f32, round_bf16};
mod common;
use common::gamma;
use duel::ops::gemm_bf16::{bf16_path, gemm_bf16_parallel, gemm_bf16_slices, Bf16Path, MatRef};

const UB: f64 = 1.0 / 256.0; // bf16 unit roundoff, 2^-8 (8 significant bits)

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // uniform in (-2, 2), with a spread of exponents
        let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        (u * 4.0 - 2.0) * if self.0 & 0x100 != 0 { 1.0 } else { 0.01 }
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn paths() -> Vec<Bf16Path> {
    Bf16Path::ALL
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

/// An operand stored with given strides: `rows x cols` logical, in a buffer of `len`
/// elements filled with `fill` outside the logical elements.
struct Op {
    data: Vec<f32>,
    rs: usize,
    cs: usize,
}

impl Op {
    /// layout 0: row-major; 1: transposed (column-major); 2: row stride cols + 3;
    /// 3: col stride 2 (row stride 2·cols + 1).
    fn new(rng: &mut Rng, rows: usize, cols: usize, layout: usize, fill: f32) -> Op {
        let (rs, cs) = match layout {
            0 => (cols, 1),
            1 => (1, rows),
            2 => (cols + 3, 1),
            _ => (2 * cols + 1, 2),
        };
        let len = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        };
        let mut data = vec![fill; len + 7];
        for i in 0..rows {
            for j in 0..cols {
                data[i * rs + j * cs] = rng.next();
            }
        }
        Op { data, rs, cs }
    }
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
    fn mat(&self) -> MatRef<'_> {
        MatRef {
            data: &self.data,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

fn rounded(x: f32) -> f64 {
    bf16_to_f32(round_bf16(x)) as f64
}

/// Check `got` against both references; returns the worst tight-bound ratio.
#[allow(clippy::too_many_arguments)]
fn check(
    what: &str,
    m: usize,
    n: usize,
    k: usize,
    got: &[f32],
    c0: Option<&[f32]>,
    a: &Op,
    b: &Op,
) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let start = c0.map_or(0.0, |c| c[i * n + j] as f64);
            let (mut exact, mut mag, mut raw, mut raw_mag) =
                (start, start.abs(), start, start.abs());
            for p in 0..k {
                let (x, y) = (a.at(i, p), b.at(p, j));
                let t = rounded(x) * rounded(y);
                exact += t;
                mag += t.abs();
                raw += x as f64 * y as f64;
                raw_mag += (x as f64 * y as f64).abs();
            }
            let terms = k + usize::from(c0.is_some());
            let g = got[i * n + j] as f64;
            let tight = gamma(terms) * mag + k as f64 * f64::from(f32::MIN_POSITIVE);
            let loose = (2.0 * UB + UB * UB + gamma(terms)) * raw_mag
                + k as f64 * f64::from(f32::MIN_POSITIVE);
            assert!(
                (g - exact).abs() <= tight,
                "{what}: ({i}, {j}) = {g}, the rounded operands' sum {exact}, |err| {} > {tight}",
                (g - exact).abs()
            );
            assert!(
                (g - raw).abs() <= loose,
                "{what}: ({i}, {j}) = {g}, the unrounded sum {raw}, |err| {} > {loose}",
                (g - raw).abs()
            );
            if tight > 0.0 {
                worst = worst.max((g - exact).abs() / tight);
            }
        }
    }
    worst
}

/// Run one case on `path`; returns the output.
#[allow(clippy::too_many_arguments)]
fn run_case(
    path: Bf16Path,
    m: usize,
    n: usize,
    k: usize,
    layouts: (usize, usize),
    accumulate: bool,
    seed: u64,
) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    // NaN outside the logical elements: a packer reading past k, m or n would show it.
    let a = Op::new(&mut rng, m, k, layouts.0, f32::NAN);
    let b = Op::new(&mut rng, k, n, layouts.1, f32::NAN);
    let c0 = rng.vec(m * n);
    let mut dst = if accumulate {
        c0.clone()
    } else {
        vec![f32::NAN; m * n]
    };
    gemm_bf16_slices(path, m, n, k, &mut dst, accumulate, a.mat(), b.mat());
    let what = format!(
        "{} {m}x{n}x{k} layouts {layouts:?} acc {accumulate}",
        path.name()
    );
    check(&what, m, n, k, &dst, accumulate.then_some(&c0[..]), &a, &b);
    dst
}

const SHAPES: [(usize, usize, usize); 17] = [
    (1, 1, 1),
    (1, 17, 5),
    (19, 1, 33),
    (32, 32, 32),
    (16, 16, 1),
    (33, 31, 7),
    (5, 40, 63),
    (64, 64, 64),
    (37, 70, 95),
    (3, 5, 2),
    (48, 33, 31),
    (65, 97, 129),
    (7, 9, 513),
    (33, 20, 1100),
    (20, 600, 40),
    (96, 530, 77),
    (2, 3, 1025),
];

/// Run every shape, layout and accumulate mode on `path`; a digest of all outputs.
fn suite(path: Bf16Path) -> u64 {
    // Leave the workspaces full of NaN: padding that is not rewritten with zeros shows.
    stale_workspace(path);
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
        for layouts in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 3), (3, 2)] {
            for accumulate in [false, true] {
                let out = run_case(path, m, n, k, layouts, accumulate, 1 + s as u64);
                for v in out {
                    digest = (digest ^ v.to_bits() as u64).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }
    digest
}

/// A large product of NaNs: every line of both workspaces now holds NaN bf16 values.
fn stale_workspace(path: Bf16Path) {
    let (m, n, k) = (130, 530, 600);
    let a = vec![f32::NAN; m * k];
    let b = vec![f32::NAN; k * n];
    let mut c = vec![0.0; m * n];
    gemm_bf16_slices(
        path,
        m,
        n,
        k,
        &mut c,
        false,
        MatRef::row_major(&a, k),
        MatRef::row_major(&b, n),
    );
    assert!(c.iter().all(|v| v.is_nan()));
}

#[test]
fn rounding_is_to_nearest_even_and_keeps_nan() {
    let one_plus = |e: i32| 1.0f32 + 2f32.powi(e);
    assert_eq!(round_bf16(1.0), 0x3f80);
    assert_eq!(
        round_bf16(one_plus(-8)),
        0x3f80,
        "a tie goes to the even 1.0"
    );
    assert_eq!(
        round_bf16(1.0 + 3.0 * 2f32.powi(-8)),
        0x3f82,
        "a tie goes to the even"
    );
    assert_eq!(
        round_bf16(one_plus(-8) + 2f32.powi(-20)),
        0x3f81,
        "above a tie: up"
    );
    assert_eq!(round_bf16(-0.0), 0x8000);
    assert_eq!(round_bf16(f32::INFINITY), 0x7f80);
    assert_eq!(round_bf16(f32::NEG_INFINITY), 0xff80);
    assert_eq!(round_bf16(f32::MAX), 0x7f80, "rounds past the largest bf16");
    assert!(bf16_to_f32(round_bf16(f32::NAN)).is_nan());
    assert!(
        bf16_to_f32(round_bf16(f32::from_bits(0x7f80_0001))).is_nan(),
        "a NaN with low payload"
    );
    assert_eq!(round_bf16(f32::from_bits(1)), 0);
    assert_eq!(
        round_bf16(-f32::from_bits(0x007f_ffff)),
        0x8000,
        "denormals flush to ±0"
    );
    // Against the half crate's RNE on normal values, and the 2^-8 relative bound.
    let mut rng = Rng(99);
    for _ in 0..200_000 {
        let x = f32::from_bits((rng.next().to_bits() ^ (rng.0 as u32)) & 0xbfff_ffff);
        if !x.is_finite() || x.abs() < f32::MIN_POSITIVE || x.abs() > 1e38 {
            continue;
        }
        let h = round_bf16(x);
        assert_eq!(h, half::bf16::from_f32(x).to_bits(), "{x:e}");
        let rel = ((bf16_to_f32(h) as f64 - x as f64) / x as f64).abs();
        assert!(rel <= UB, "{x:e}: relative error {rel:e}");
    }
}

#[test]
fn every_path_meets_the_bounds_on_tails_strides_and_accumulation() {
    let mut digests = Vec::new();
    for path in paths() {
        digests.push((path, suite(path)));
    }
    eprintln!("paths {:?}, detected {}", digests, bf16_path());
    // Deterministic: the same digest a second time.
    for &(path, d) in &digests {
        assert_eq!(suite(path), d, "{} is not deterministic", path.name());
    }
}

#[test]
fn k_zero_leaves_or_zeroes_the_output() {
    for path in paths() {
        let a: Vec<f32> = vec![];
        let mut dst = vec![3.0f32; 6];
        let empty = MatRef::row_major(&a, 0);
        gemm_bf16_slices(
            path,
            2,
            3,
            0,
            &mut dst,
            true,
            empty,
            MatRef::row_major(&a, 3),
        );
        assert_eq!(dst, vec![3.0; 6]);
        gemm_bf16_slices(
            path,
            2,
            3,
            0,
            &mut dst,
            false,
            empty,
            MatRef::row_major(&a, 3),
        );
        assert_eq!(dst, vec![0.0; 6]);
    }
}

#[test]
fn nan_and_inf_propagate_to_their_rows_and_columns_only() {
    let (m, n, k) = (40, 35, 70);
    for path in paths() {
        let mut rng = Rng(5);
        let mut a: Vec<f32> = (0..m * k).map(|_| rng.next().abs() + 0.5).collect();
        let mut b: Vec<f32> = (0..k * n).map(|_| rng.next().abs() + 0.5).collect();
        a[3 * k + 17] = f32::NAN; // row 3
        a[36 * k + 65] = f32::INFINITY; // row 36: +inf (b > 0)
        b[40 * n + 33] = f32::NEG_INFINITY; // column 33: -inf, NaN on row 36 (inf − inf)
        let mut c = vec![0.0; m * n];
        gemm_bf16_slices(
            path,
            m,
            n,
            k,
            &mut c,
            false,
            MatRef::row_major(&a, k),
            MatRef::row_major(&b, n),
        );
        for i in 0..m {
            for j in 0..n {
                let v = c[i * n + j];
                let want = match (i, j) {
                    (3, _) | (36, 33) => "nan",
                    (36, _) => "+inf",
                    (_, 33) => "-inf",
                    _ => "finite",
                };
                let is = if v.is_nan() {
                    "nan"
                } else if v == f32::INFINITY {
                    "+inf"
                } else if v == f32::NEG_INFINITY {
                    "-inf"
                } else {
                    "finite"
                };
                assert_eq!(is, want, "{} ({i}, {j}) = {v}", path.name());
            }
        }
    }
}

#[test]
fn parallel_parts_give_the_same_bits_as_one() {
    let (m, n, k) = (150, 97, 300);
    let mut rng = Rng(11);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    for path in paths() {
        let mut one = vec![0.0; m * n];
        gemm_bf16_parallel(
            path,
            1,
            m,
            n,
            k,
            &mut one,
            false,
            MatRef::row_major(&a, k),
            MatRef::row_major(&b, n),
        );
        for parts in [2, 3, 7] {
            let mut got = vec![0.0; m * n];
            gemm_bf16_parallel(
                path,
                parts,
                m,
                n,
                k,
                &mut got,
                false,
                MatRef::row_major(&a, k),
                MatRef::row_major(&b, n),
            );
            assert!(
                one.iter()
                    .zip(&got)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} on {parts} parts",
                path.name()
            );
        }
    }
}

#[test]
fn paths_agree_within_twice_the_summation_bound() {
    let (m, n, k) = (64, 64, 1000);
    let mut rng = Rng(21);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let outs: Vec<(Bf16Path, Vec<f32>)> = paths()
        .into_iter()
        .map(|p| {
            let mut c = vec![0.0; m * n];
            gemm_bf16_slices(
                p,
                m,
                n,
                k,
                &mut c,
                false,
                MatRef::row_major(&a, k),
                MatRef::row_major(&b, n),
            );
            (p, c)
        })
        .collect();
    for i in 0..m {
        for j in 0..n {
            let mag: f64 = (0..k)
                .map(|p| (rounded(a[i * k + p]) * rounded(b[p * n + j])).abs())
                .sum();
            for (p, c) in &outs[1..] {
                let d = (c[i * n + j] as f64 - outs[0].1[i * n + j] as f64).abs();
                assert!(
                    d <= 2.0 * gamma(k) * mag,
                    "{} vs {}: {d:e}",
                    p.name(),
                    outs[0].0.name()
                );
            }
        }
    }
}

/// Child of `falls_back_under_the_isa_switch`: under the switch value in `DUEL_CPU_ISA`, the
/// detected path must be the expected one, pass the suite, and print the portable digest.
#[test]
#[ignore = "run by falls_back_under_the_isa_switch in a child process"]
fn child_under_isa_switch() {
    let value = std::env::var(ISA_ENV).unwrap_or_default();
    let want = match value.as_str() {
        "baseline" | "avx512" => "portable",
        "avx512bf16" if Bf16Path::Avx512.available() => "avx512-bf16",
        "avx512bf16" => "portable",
        other => panic!("unexpected {ISA_ENV}={other}"),
    };
    assert_eq!(bf16_path(), want);
    assert!(!Bf16Path::Amx.available());
    for path in paths() {
        let d = suite(path);
        if path == Bf16Path::Portable {
            println!("DIGEST {d:016x}");
        }
    }
}

#[test]
fn falls_back_under_the_isa_switch() {
    // The portable path packs with AVX-512F where it may and with scalar code under
    // `baseline`: the same bits either way.
    let native = suite(Bf16Path::Portable);
    for value in ["baseline", "avx512", "avx512bf16"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_under_isa_switch",
                "--include-ignored",
                "--nocapture",
            ])
            .env(ISA_ENV, value)
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{ISA_ENV}={value}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = format!("DIGEST {native:016x}");
        assert!(
            stdout.contains(&digest),
            "{ISA_ENV}={value}: want {digest} in {stdout}"
        );
    }
}
