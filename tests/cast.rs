//! cast: f32 <-> f16/bf16/f64 on cpu (hand-checked bit patterns, specials, strided
//! inputs) and emu parity (bitwise; NaN compared as NaN).

use duel::{DType, Device, Tensor};
use half::{bf16, f16};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn cast_f32_to_f16_and_bf16_hand_checked() {
    let d = Device::Cpu;
    let x = Tensor::from_slice(
        &[
            1.0f32,
            -2.0,
            0.1,
            65504.0,
            65520.0,
            1e-8,
            6.1035156e-5,
            f32::INFINITY,
        ],
        [8],
        &d,
    )
    .unwrap();
    let h: Vec<u16> = x
        .to_dtype(DType::F16)
        .unwrap()
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    // 65520 rounds to inf (ties-to-even past max), 1e-8 underflows to 0,
    // 2^-14 is the smallest normal
    assert_eq!(
        h,
        vec![0x3c00, 0xc000, 0x2e66, 0x7bff, 0x7c00, 0x0000, 0x0400, 0x7c00]
    );
    let b: Vec<u16> = x
        .to_dtype(DType::BF16)
        .unwrap()
        .to_vec::<bf16>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(
        b,
        vec![0x3f80, 0xc000, 0x3dcd, 0x4780, 0x4780, 0x322c, 0x3880, 0x7f80]
    );
    // round to nearest even: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 -> 1 (even)
    let t = Tensor::from_slice(&[1.0f32 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0], [2], &d).unwrap();
    let h: Vec<u16> = t
        .to_dtype(DType::F16)
        .unwrap()
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(h, vec![0x3c00, 0x3c02]);
    // f16 subnormal 2^-24 and NaN
    let t = Tensor::from_slice(&[5.9604645e-8f32, f32::NAN, -0.0], [3], &d).unwrap();
    let h = t.to_dtype(DType::F16).unwrap().to_vec::<f16>().unwrap();
    assert_eq!(h[0].to_bits(), 0x0001);
    assert!(h[1].is_nan());
    assert_eq!(h[2].to_bits(), 0x8000);
}

#[test]
fn cast_widening_is_exact_and_roundtrips() {
    let d = Device::Cpu;
    let h = Tensor::from_slice(
        &[
            f16::from_bits(0x0001),
            f16::from_bits(0x7bff),
            f16::NEG_INFINITY,
        ],
        [3],
        &d,
    )
    .unwrap();
    let f = h.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(f, vec![5.9604645e-8, 65504.0, f32::NEG_INFINITY]);
    let g = h.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
    assert_eq!(g, vec![5.960464477539063e-8, 65504.0, f64::NEG_INFINITY]);
    let b = Tensor::from_slice(&[bf16::from_bits(0x3dcd)], [1], &d).unwrap();
    assert_eq!(
        b.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![205.0 / 2048.0] // 0x3dcd = 2^-4 * 205/128
    );
    // f64 -> f32 rounds to nearest
    let x = Tensor::from_slice(&[0.1f64, 1e300], [2], &d).unwrap();
    assert_eq!(
        x.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![0.1f32, f32::INFINITY]
    );
    // f16 <-> bf16 through f32: 0x2e66 = 0.0999755859375 = 2^-4 * (1 + 76.75/128) -> bf16
    // mantissa 77 = 0x4d -> 0x3dcd
    let h = Tensor::from_slice(&[f16::from_bits(0x2e66)], [1], &d).unwrap();
    assert_eq!(
        h.to_dtype(DType::BF16).unwrap().to_vec::<bf16>().unwrap()[0].to_bits(),
        0x3dcd
    );
}

#[test]
fn cast_strided_and_empty_inputs() {
    let d = Device::Cpu;
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &d).unwrap();
    let t = x.t().unwrap().to_dtype(DType::F16).unwrap();
    assert_eq!(t.dims(), &[3, 2]);
    let v: Vec<f32> = t
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|h| h.to_f32())
        .collect();
    assert_eq!(v, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let n = x.narrow(1, 1, 2).unwrap().to_dtype(DType::F64).unwrap();
    assert_eq!(n.to_vec::<f64>().unwrap(), vec![2.0, 3.0, 5.0, 6.0]);
    let e = Tensor::zeros([0, 3], DType::F32, &d)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!((e.dims(), e.dtype()), (&[0usize, 3][..], DType::BF16));
}

fn same_bits_or_both_nan(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Every interesting f32 class: normals across the whole range, f16/bf16 subnormal and
/// rounding boundaries, ties, ±0, ±inf, NaN, and a sweep of bit patterns.
fn probe_values() -> Vec<f32> {
    let mut v = vec![
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        0.1,
        65504.0,
        65519.99,
        65520.0,
        1e-8,
        5.9604645e-8,
        2.9802322e-8,
        2.980233e-8,
        6.1035156e-5,
        6.097555e-5,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0 + 1.0 / 2048.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
    ];
    let mut bits = 0u32;
    while let Some(next) = bits.checked_add(0x0001_3579) {
        v.push(f32::from_bits(bits));
        bits = next;
    }
    v
}

#[test]
fn cast_emu_matches_cpu_bitwise() {
    let emu = emu();
    let vals = probe_values();
    let n = vals.len();
    let c = Tensor::from_slice(&vals, [n], &Device::Cpu).unwrap();
    let e = Tensor::from_slice(&vals, [n], &emu).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let ch = c.to_dtype(dtype).unwrap();
        let eh = e.to_dtype(dtype).unwrap();
        let (cb, eb) = (
            ch.to_dtype(DType::F32).unwrap(),
            eh.to_dtype(DType::F32).unwrap(),
        );
        // compare the 16-bit results through the (exact) widening, and the widening itself
        let (cv, ev) = (cb.to_vec::<f32>().unwrap(), eb.to_vec::<f32>().unwrap());
        assert!(same_bits_or_both_nan(&cv, &ev), "{dtype}");
        let direct_c = ch.to_f64_vec().unwrap();
        let direct_e = eh.to_f64_vec().unwrap();
        assert!(direct_c
            .iter()
            .zip(&direct_e)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
        // the other 16-bit type, through f32 on both
        let other = if dtype == DType::F16 {
            DType::BF16
        } else {
            DType::F16
        };
        let co = ch.to_dtype(other).unwrap().to_f64_vec().unwrap();
        let eo = eh.to_dtype(other).unwrap().to_f64_vec().unwrap();
        assert!(co
            .iter()
            .zip(&eo)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
    }
    // strided input (transpose and narrow) through the layout, and the f32 gather kernel
    let m = Tensor::from_slice(&vals[..600], [20, 30], &Device::Cpu).unwrap();
    let me = m.to_device(&emu).unwrap();
    for (cv, ev) in [
        (m.t().unwrap(), me.t().unwrap()),
        (m.narrow(1, 3, 17).unwrap(), me.narrow(1, 3, 17).unwrap()),
    ] {
        let a = cv
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let b = ev
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(same_bits_or_both_nan(&a, &b));
        let g = duel::ops::cast::cast(&ev, DType::F32).unwrap();
        assert!(g.is_contiguous());
        let gc = duel::ops::cast::cast(&cv, DType::F32).unwrap();
        assert!(same_bits_or_both_nan(
            &g.to_vec::<f32>().unwrap(),
            &gc.to_vec::<f32>().unwrap()
        ));
    }
    let err = e.to_dtype(DType::F64).unwrap_err().to_string();
    assert!(err.contains("f64 is cpu-only"), "{err}");
}
