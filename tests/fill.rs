//! fill: full and arange on cpu (hand-checked values, edge cases) and emu parity (bitwise).

use duel::{DType, Device, Tensor};
use half::{bf16, f16};

mod common;
use common::bits;

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn fill_full_cpu_values_and_dtypes() {
    let d = Device::Cpu;
    let t = Tensor::full([2, 3], 2.5, DType::F32, &d).unwrap();
    assert_eq!(t.dims(), &[2, 3]);
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![2.5; 6]);
    assert_eq!(
        Tensor::zeros([4], DType::F64, &d)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![0.0; 4]
    );
    assert_eq!(
        Tensor::ones([2], DType::F16, &d)
            .unwrap()
            .to_vec::<f16>()
            .unwrap(),
        vec![f16::ONE; 2]
    );
    // 0.1 rounded once: f16 0x2e66, bf16 0x3dcd
    let h = Tensor::full([1], 0.1, DType::F16, &d)
        .unwrap()
        .to_vec::<f16>()
        .unwrap();
    assert_eq!(h[0].to_bits(), 0x2e66);
    let b = Tensor::full([1], 0.1, DType::BF16, &d)
        .unwrap()
        .to_vec::<bf16>()
        .unwrap();
    assert_eq!(b[0].to_bits(), 0x3dcd);
    // specials and empties
    let n = Tensor::full([3], f64::NAN, DType::F32, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(n.iter().all(|x| x.is_nan()));
    let i = Tensor::full([2], f64::NEG_INFINITY, DType::F16, &d)
        .unwrap()
        .to_vec::<f16>()
        .unwrap();
    assert_eq!(i, vec![f16::NEG_INFINITY; 2]);
    assert_eq!(
        Tensor::full([0, 5], 1.0, DType::F32, &d).unwrap().numel(),
        0
    );
    let s = Tensor::full(Vec::<usize>::new(), 7.0, DType::F32, &d).unwrap();
    assert_eq!(s.rank(), 0);
    assert_eq!(s.item().unwrap(), 7.0);
}

#[test]
fn fill_arange_cpu_values() {
    let d = Device::Cpu;
    let a = Tensor::arange(0.0, 5.0, 1.0, DType::F32, &d).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    let a = Tensor::arange(1.0, 2.0, 0.25, DType::F64, &d).unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap(), vec![1.0, 1.25, 1.5, 1.75]);
    // ceil((end - start) / step): 2.5 -> 3 elements
    let a = Tensor::arange(0.0, 5.0, 2.0, DType::F32, &d).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), vec![0.0, 2.0, 4.0]);
    let a = Tensor::arange(3.0, 0.0, -1.5, DType::F32, &d).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), vec![3.0, 1.5]);
    // empty when the step points away from end
    assert_eq!(
        Tensor::arange(0.0, 5.0, -1.0, DType::F32, &d)
            .unwrap()
            .dims(),
        &[0]
    );
    assert_eq!(
        Tensor::arange(2.0, 2.0, 1.0, DType::F32, &d)
            .unwrap()
            .dims(),
        &[0]
    );
    // element i is start + i*step in f64, then rounded: 0.1*3 = 0.30000000000000004
    let a = Tensor::arange(0.0, 0.35, 0.1, DType::F64, &d)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(a, vec![0.0, 0.1, 0.2, 0.30000000000000004]);
    let h = Tensor::arange(0.0, 3.0, 1.0, DType::F16, &d)
        .unwrap()
        .to_vec::<f16>()
        .unwrap();
    assert_eq!(h, vec![f16::from_f32(0.0), f16::ONE, f16::from_f32(2.0)]);
}

#[test]
fn fill_arange_errors() {
    let d = Device::Cpu;
    let e = Tensor::arange(0.0, 1.0, 0.0, DType::F32, &d)
        .unwrap_err()
        .to_string();
    assert!(e.contains("step"), "{e}");
    assert!(Tensor::arange(0.0, f64::INFINITY, 1.0, DType::F32, &d).is_err());
    assert!(Tensor::arange(f64::NAN, 1.0, 1.0, DType::F32, &d).is_err());
    assert!(Tensor::arange(0.0, 1.0, f64::NAN, DType::F32, &d).is_err());
    assert!(Tensor::arange(0.0, 1e300, 1e-300, DType::F32, &d).is_err());
}

#[test]
fn fill_emu_matches_cpu_bitwise() {
    let emu = emu();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for (shape, value) in [
            (vec![1usize], 1.0),
            (vec![3, 5, 7], 0.1),
            (vec![1000, 3], -123.456),
            (vec![2], f64::INFINITY),
            (vec![0, 4], 2.0),
        ] {
            let c = Tensor::full(shape.clone(), value, dtype, &Device::Cpu).unwrap();
            let e = Tensor::full(shape.clone(), value, dtype, &emu).unwrap();
            assert_eq!(e.dims(), c.dims());
            assert_eq!(bits(&e), bits(&c), "full {shape:?} {value} {dtype}");
        }
        for (start, end, step) in [
            (0.0, 10.0, 1.0),
            (-1.0, 1.0, 0.1),
            (0.0, 0.35, 0.1),
            (5.0, -3.0, -0.37),
            (0.0, 1000.5, 0.7),
            (1e7, 1e7 + 300.0, 0.3),
            (0.0, -1.0, 1.0),
        ] {
            let c = Tensor::arange(start, end, step, dtype, &Device::Cpu).unwrap();
            let e = Tensor::arange(start, end, step, dtype, &emu).unwrap();
            assert_eq!(bits(&e), bits(&c), "arange {start} {end} {step} {dtype}");
        }
    }
    let err = Tensor::full([2], 1.0, DType::F64, &emu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("f64 is cpu-only"), "{err}");
    assert!(Tensor::arange(0.0, 2.0, 1.0, DType::F64, &emu).is_err());
}
