//! Philox RNG: known-answer vectors, stream semantics, moments, our own logf/sincos
//! accuracy, and cpu-vs-emu bitwise parity.

use duel::ops::rng::{self, box_muller, logf, philox4x32_10, sincos_2pi, uniform_at, Philox};
use duel::{DType, Device, Shape, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn rng_philox_known_answer_vectors() {
    // Random123 kat_vectors, philox4x32_10.
    assert_eq!(
        philox4x32_10([0, 0, 0, 0], [0, 0]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([0xffffffff; 4], [0xffffffff; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn rng_stream_definition() {
    // Word p of seed s is word p%4 of philox([p/4 lo, p/4 hi, 0, 0], [s lo, s hi]).
    let seed = 0x0123_4567_89ab_cdefu64;
    let p = ((5u64 << 32) + 1) * 4 + 2; // block (5 << 32) + 1: counter [1, 5, 0, 0]
    let b = philox4x32_10([1, 5, 0, 0], [0x89ab_cdef, 0x0123_4567]);
    assert_eq!(Philox::new(seed).word(p), b[2]);
    assert_eq!(Philox::new(seed).word(p + 1), b[3]);
    assert_eq!(Philox::new(seed).word(p - 2), b[0]);
    // uniform: (w >> 8) * 2^-24
    let w = Philox::new(7).word(3);
    assert_eq!(uniform_at(7, 3), (w >> 8) as f32 / 16_777_216.0);
}

#[test]
fn rng_uniform_values_and_offsets() {
    let d = Device::Cpu;
    let a = Tensor::rand([1000], 42, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (i, &v) in a.iter().enumerate() {
        assert_eq!(v, uniform_at(42, i as u64));
        assert!((0.0..1.0).contains(&v));
    }
    for k in [1u64, 2, 3, 5, 17, 999] {
        let b = Tensor::rand([1000 - k as usize], 42, k, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(&b[..], &a[k as usize..], "offset {k}");
    }
    // same seed + offset -> same; different seed / offset -> different
    let again = Tensor::rand([1000], 42, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, again);
    let other_seed = Tensor::rand([1000], 43, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let other_off = Tensor::rand([1000], 42, 1000, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let same = |x: &[f32], y: &[f32]| x.iter().zip(y).filter(|(a, b)| a == b).count();
    assert!(same(&a, &other_seed) < 5);
    assert!(same(&a, &other_off) < 5);
}

#[test]
fn rng_normal_values_and_offsets() {
    let d = Device::Cpu;
    let a = Tensor::randn([1001], 9, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (i, &v) in a.iter().enumerate() {
        assert_eq!(v.to_bits(), rng::normal_at(9, i as u64).to_bits());
    }
    for k in [1u64, 2, 3, 6, 7] {
        let b = Tensor::randn([1001 - k as usize], 9, k, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(&b[..], &a[k as usize..], "offset {k}");
    }
    let again = Tensor::randn([1001], 9, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, again);
    let other = Tensor::randn([1001], 10, 0, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(a.iter().zip(&other).filter(|(x, y)| x == y).count() < 5);
}

#[test]
fn rng_box_muller_extremes_are_finite() {
    // u1 = 1 (largest word) -> r = 0; u1 = 2^-24 (smallest) -> r = sqrt(48 ln 2) = 5.7683
    let (c, s) = box_muller(0xffff_ffff, 0x1234_5678);
    assert_eq!((c, s), (0.0, 0.0));
    let (c, _) = box_muller(0, 0); // u2 = 0 -> cos = 1
    assert!(
        (c as f64 - (48.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-5,
        "{c}"
    );
    let (_, s) = box_muller(0, 1 << 30); // u2 = 1/4 -> sin = 1
    assert!(
        (s as f64 - (48.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-5,
        "{s}"
    );
}

fn f32_ulp(y: f64) -> f64 {
    let a = (y.abs() as f32).max(f32::MIN_POSITIVE);
    (f32::from_bits(a.to_bits() + 1) - a) as f64
}

#[test]
fn rng_logf_accuracy_exhaustive_on_the_box_muller_domain() {
    // Every u1 = m * 2^-24, m in [1, 2^24], plus a sweep over normal floats in
    // [1e-30, 1e30]. Bound: 1 ulp of the f32 result (measured 0.82 ulp).
    let mut worst = 0f64;
    for m in 1u32..=(1 << 24) {
        let x = m as f32 / 16_777_216.0;
        let exact = (x as f64).ln();
        let got = logf(x) as f64;
        let err = if exact == 0.0 {
            got.abs() / f32_ulp(0.0)
        } else {
            (got - exact).abs() / f32_ulp(exact)
        };
        worst = worst.max(err);
    }
    let mut bits = 0x0d80_0000u32; // ~7.9e-31
    while f32::from_bits(bits) < 1e30 {
        let x = f32::from_bits(bits);
        let exact = (x as f64).ln();
        if exact != 0.0 {
            worst = worst.max((logf(x) as f64 - exact).abs() / f32_ulp(exact));
        }
        bits += 977;
    }
    println!("logf max error: {worst:.3} ulp");
    assert!(worst <= 1.0, "logf max error {worst} ulp");
}

#[test]
fn rng_sincos_accuracy_exhaustive() {
    // Every u = k * 2^-24, k in [0, 2^24). Bound: 1.5 ulp (measured 1.02) of the f32 result, relative to
    // the true value (the quadrant reduction is exact, so small results stay accurate),
    // and 1.2e-7 absolute.
    let mut worst_ulp = 0f64;
    let mut worst_abs = 0f64;
    for k in 0u32..(1 << 24) {
        let (s, c) = sincos_2pi(k);
        let a = std::f64::consts::TAU * (k as f64 / 16_777_216.0);
        for (got, exact) in [(s as f64, a.sin()), (c as f64, a.cos())] {
            let e = (got - exact).abs();
            worst_abs = worst_abs.max(e);
            // values the f64 reference itself only knows to ~1e-16 absolute
            if exact.abs() > 1e-6 {
                worst_ulp = worst_ulp.max(e / f32_ulp(exact));
            }
        }
    }
    println!("sincos max error: {worst_ulp:.3} ulp, {worst_abs:.3e} absolute");
    assert!(worst_ulp <= 1.5, "sincos max error {worst_ulp} ulp");
    assert!(worst_abs <= 1.2e-7, "sincos max abs error {worst_abs}");
}

fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn rng_uniform_moments_within_five_standard_errors() {
    // n = 1e6. mean 1/2: SE = sqrt(1/12/n) = 2.89e-4; variance 1/12: SE =
    // sqrt((mu4 - sigma^4)/n) = sqrt((1/80 - 1/144)/n) = 7.45e-5. Bounds: 5 SE.
    let n = 1_000_000;
    let v = Tensor::rand([n], 2024, 0, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
    let (mean, var) = moments(&v);
    assert!((mean - 0.5).abs() < 5.0 * 2.887e-4, "mean {mean}");
    assert!((var - 1.0 / 12.0).abs() < 5.0 * 7.454e-5, "var {var}");
}

#[test]
fn rng_normal_moments_within_five_standard_errors() {
    // n = 1e6. mean 0: SE = 1e-3; variance 1: SE = sqrt((3 - 1)/n) = 1.414e-3. Bounds: 5 SE.
    let n = 1_000_000;
    let v = Tensor::randn([n], 77, 3, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    assert!(v.iter().all(|x| x.abs() <= 5.77));
    let (mean, var) = moments(&v);
    assert!(mean.abs() < 5.0 * 1e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * 1.414e-3, "var {var}");
}

#[test]
fn rng_other_dtypes_and_errors() {
    let d = Device::Cpu;
    let a = Tensor::rand([5], 1, 0, &d).unwrap();
    let b = rng::uniform(&Shape::new([5]), 1, 0, DType::F64, &d).unwrap();
    assert_eq!(b.dtype(), DType::F64);
    assert_eq!(a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    let e = Tensor::rand([0, 3], 1, 0, &d).unwrap();
    assert_eq!(e.dims(), &[0, 3]);
    assert!(Tensor::rand([8], 1, u64::MAX - 3, &d).is_err());
}

#[test]
fn rng_cpu_and_emu_agree_bitwise() {
    let emu = emu();
    for &(n, offset) in &[
        (1usize, 0u64),
        (1, 3),
        (7, 1),
        (13, 2),
        (1000, 5),
        (4099, 7),
        (70_001, 4_000_000_001),
    ] {
        for seed in [0u64, 0xdead_beef_0000_0001] {
            let shape = Shape::new([n]);
            for normal in [false, true] {
                let (c, e) = if normal {
                    (
                        rng::normal(&shape, seed, offset, DType::F32, &Device::Cpu),
                        rng::normal(&shape, seed, offset, DType::F32, &emu),
                    )
                } else {
                    (
                        rng::uniform(&shape, seed, offset, DType::F32, &Device::Cpu),
                        rng::uniform(&shape, seed, offset, DType::F32, &emu),
                    )
                };
                let c: Vec<u32> = c
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                let e: Vec<u32> = e
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                assert_eq!(c, e, "n {n} offset {offset} seed {seed} normal {normal}");
            }
        }
    }
    assert!(rng::normal(&Shape::new([3]), 0, 0, DType::F64, &emu).is_err());
}
