//! cast: the backward rule converts the gradient back to the input's dtype. Rounding
//! casts cannot be finite-differenced (see `ops::cast`), so their gradients are checked
//! exactly here, on cpu and emu; the f64 → f64 case runs in the gradcheck.

use duel::{DType, Device, Tensor};

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for parity tests")
}

#[test]
fn cast_grad_through_f16_is_exactly_one() {
    for device in [Device::Cpu, emu()] {
        for half in [DType::F16, DType::BF16] {
            let x = Tensor::randn([5, 7], 3, 0, &device)
                .unwrap()
                .with_requires_grad();
            let y = x.to_dtype(half).unwrap().to_dtype(DType::F32).unwrap();
            let tape = duel::autograd::tape(&y);
            assert_eq!(
                tape.iter().map(|e| e.op).collect::<Vec<_>>(),
                ["cast", "cast"]
            );
            y.sum_all().unwrap().backward().unwrap();
            let g = x.grad().unwrap();
            assert_eq!(g.dtype(), DType::F32);
            assert_eq!(g.to_vec::<f32>().unwrap(), vec![1.0; 35], "{device} {half}");
        }
    }
}

#[test]
fn cast_grad_of_a_half_leaf_is_half() {
    for device in [Device::Cpu, emu()] {
        let x = Tensor::randn([3, 5], 4, 0, &device)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .with_requires_grad();
        let y = x.to_dtype(DType::F32).unwrap();
        let w = Tensor::full([3, 5], 0.375, DType::F32, &device).unwrap();
        y.backward_with(&w).unwrap();
        let g = x.grad().unwrap();
        assert_eq!(g.dtype(), DType::F16, "{device}");
        assert_eq!(g.to_f64_vec().unwrap(), vec![0.375; 15], "{device}");
    }
    // f64 leaf through f32 on the cpu
    let x = Tensor::from_slice(&[0.1f64, 0.2], [2], &Device::Cpu)
        .unwrap()
        .with_requires_grad();
    x.to_dtype(DType::F32)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = x.grad().unwrap();
    assert_eq!(
        (g.dtype(), g.to_vec::<f64>().unwrap()),
        (DType::F64, vec![1.0, 1.0])
    );
}
