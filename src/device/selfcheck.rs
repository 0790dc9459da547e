//! `duel check`: run each op family on a device and compare it with the cpu reference.
//! On a GPU machine this is the first thing to run; on the emulator it shows the kernels
//! compute what the cpu computes. Inputs come from the Philox stream, so they are the
//! same on both sides.

use crate::device::Device;
use crate::error::Result;
use crate::tensor::{DType, Shape, Tensor};

/// One comparison: the op, the worst difference found and the bound it must stay within.
#[derive(Clone, Debug)]
pub struct CheckRow {
    pub op: &'static str,
    /// Largest |device − cpu| relative to max(1, |cpu|); 0 means bit-identical values.
    pub max_rel_diff: f64,
    /// The bound: 0 for ops that must match bit for bit.
    pub tolerance: f64,
}

impl CheckRow {
    pub fn passed(&self) -> bool {
        self.max_rel_diff <= self.tolerance
    }
}

/// Compare `device` against cpu on every op of the first family.
pub fn run(device: &Device) -> Result<Vec<CheckRow>> {
    let shape = [67, 129]; // odd sizes: partial blocks and warps
    let on = |t: &Tensor| t.to_device(device);
    let a = Tensor::randn(shape, 1, 0, &Device::Cpu)?;
    let b = Tensor::randn([129], 2, 0, &Device::Cpu)?;
    let (da, db) = (on(&a)?, on(&b)?);

    type Case<'a> = (
        &'static str,
        f64,
        Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>,
    );
    // Tolerances: libm-class functions differ by a few ulp between the host and CUDA
    // (2^-21 ≈ 4.8e-7 covers 4 ulp); f32 sums of 129 terms reorder (1e-5); the rest is
    // exact arithmetic or data movement and must be bit-identical.
    let cases: Vec<Case> = vec![
        ("add (broadcast)", 0.0, Box::new(|x, y| x.add(y))),
        ("mul (broadcast)", 0.0, Box::new(|x, y| x.mul(y))),
        ("exp", 4.8e-7, Box::new(|x, _| x.exp())),
        ("sigmoid", 4.8e-7, Box::new(|x, _| x.sigmoid())),
        ("tanh", 4.8e-7, Box::new(|x, _| x.tanh())),
        ("transpose copy", 0.0, Box::new(|x, _| x.t()?.contiguous())),
        ("sum (axis 1)", 1e-5, Box::new(|x, _| x.sum(&[1], false))),
        ("mean (axis 0)", 1e-5, Box::new(|x, _| x.mean(&[0], false))),
        ("max (all)", 0.0, Box::new(|x, _| x.max_all())),
        (
            "cast f16 round trip",
            0.0,
            Box::new(|x, _| x.to_dtype(DType::F16)?.to_dtype(DType::F32)),
        ),
    ];
    let mut rows = Vec::new();
    for (op, tolerance, f) in &cases {
        let want = f(&a, &b)?.to_f64_vec()?;
        let got = f(&da, &db)?.to_f64_vec()?;
        rows.push(CheckRow {
            op,
            max_rel_diff: max_rel_diff(&got, &want),
            tolerance: *tolerance,
        });
    }
    type Draw = fn(Shape, u64, u64, &Device) -> Result<Tensor>;
    let draws: [(&'static str, Draw); 2] = [
        ("rand (Philox)", |s, seed, off, d| {
            Tensor::rand(s, seed, off, d)
        }),
        ("randn (Philox)", |s, seed, off, d| {
            Tensor::randn(s, seed, off, d)
        }),
    ];
    for (op, draw) in draws {
        // offset 3: not a multiple of the 4 words Philox makes per counter
        let want = draw(Shape::new([1001]), 9, 3, &Device::Cpu)?.to_f64_vec()?;
        let got = draw(Shape::new([1001]), 9, 3, device)?.to_f64_vec()?;
        rows.push(CheckRow {
            op,
            max_rel_diff: max_rel_diff(&got, &want),
            tolerance: 0.0,
        });
    }
    Ok(rows)
}

fn max_rel_diff(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            if g.to_bits() == w.to_bits() {
                0.0
            } else {
                (g - w).abs() / w.abs().max(1.0)
            }
        })
        .fold(
            0.0,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        )
}
