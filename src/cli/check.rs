//! `duel check`: run each op family on a device and compare it with the cpu reference.
//! On a GPU machine this is the first thing to run; on the emulator it shows the kernels
//! compute what the cpu computes. Inputs come from the Philox stream, so they are the
//! same on both sides.

use duel::device::Device;
use duel::error::Result;
use duel::tensor::{DType, Tensor};

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

/// The inputs every case draws from, on one device.
struct Inputs {
    /// [67, 129]: odd sizes, so blocks and warps are partial.
    matrix: Tensor,
    /// [129]: broadcast along the rows of `matrix`.
    row: Tensor,
    /// [2, 3, 9, 11]: an image batch for the conv, norm and resampling ops.
    images: Tensor,
}

impl Inputs {
    fn new(device: &Device) -> Result<Inputs> {
        Ok(Inputs {
            matrix: Tensor::randn([67, 129], 1, 0, device)?,
            row: Tensor::randn([129], 2, 0, device)?,
            images: Tensor::randn([2, 3, 9, 11], 3, 0, device)?,
        })
    }
}

type Case = (&'static str, f64, fn(&Inputs) -> Result<Tensor>);

/// Tolerances: libm-class functions differ by a few ulp between the host and CUDA
/// (2^-21 ≈ 4.8e-7 covers 4 ulp); sums reorder (1e-5 relative to max(1, |value|)); the
/// rest is exact arithmetic or data movement and must be bit-identical.
const CASES: &[Case] = &[
    ("add (broadcast)", 0.0, |i| i.matrix.add(&i.row)),
    ("mul (broadcast)", 0.0, |i| i.matrix.mul(&i.row)),
    ("exp", 4.8e-7, |i| i.matrix.exp()),
    ("sigmoid", 4.8e-7, |i| i.matrix.sigmoid()),
    ("tanh", 4.8e-7, |i| i.matrix.tanh()),
    ("transpose copy", 0.0, |i| i.matrix.t()?.contiguous()),
    ("sum (axis 1)", 1e-5, |i| i.matrix.sum(&[1], false)),
    ("mean (axis 0)", 1e-5, |i| i.matrix.mean(&[0], false)),
    ("max (all)", 0.0, |i| i.matrix.max_all()),
    ("cast f16 round trip", 0.0, |i| {
        i.matrix.to_dtype(DType::F16)?.to_dtype(DType::F32)
    }),
    // [67, 129] @ [129, 67]: 129-term dot products, summed in another order
    ("matmul", 1e-5, |i| i.matrix.matmul(&i.matrix.t()?)),
    ("conv2d 3x3/2/1", 1e-5, |i| {
        let w = i
            .images
            .narrow(0, 1, 1)?
            .narrow(2, 0, 3)?
            .narrow(3, 0, 3)?
            .reshape([1, 3, 3, 3])?;
        let p = duel::ops::conv::Conv2dParams {
            stride: (2, 2),
            padding: (1, 1),
            dilation: (1, 1),
        };
        duel::ops::conv::conv2d(
            &i.images,
            &w.broadcast_to([4, 3, 3, 3])?.contiguous()?,
            None,
            &p,
        )
    }),
    ("conv_transpose2d 4x4/2/1", 1e-5, |i| {
        let w = i
            .images
            .narrow(2, 0, 4)?
            .narrow(3, 0, 4)?
            .reshape([2, 3, 4, 4])?
            .narrow(0, 0, 1)?;
        let w = w.broadcast_to([3, 3, 4, 4])?.contiguous()?;
        let p = duel::ops::conv::ConvTranspose2dParams {
            stride: (2, 2),
            padding: (1, 1),
            output_padding: (1, 1),
            dilation: (1, 1),
        };
        duel::ops::conv::conv_transpose2d(&i.images, &w, None, &p)
    }),
    ("batch_norm (train)", 1e-5, |i| {
        i.images.batch_norm_train(None, None, 1e-5)
    }),
    ("instance_norm2d", 1e-5, |i| {
        i.images.instance_norm2d(None, None, 1e-5)
    }),
    ("dropout p=0.3", 0.0, |i| i.images.dropout(0.3, 5, 0, true)),
    ("concat (channels)", 0.0, |i| {
        Tensor::concat(&[&i.images, &i.images.narrow(1, 1, 2)?], 1)
    }),
    ("upsample_nearest2d x2", 0.0, |i| {
        i.images.upsample_nearest2d(2)
    }),
    ("pad2d reflect", 0.0, |i| {
        i.images
            .pad2d((2, 1, 1, 2), duel::ops::pad::PadMode::Reflect)
    }),
];

/// Compare `device` against cpu on every op family, then compare the gradients of a
/// small MLP (the backward kernels).
pub fn run(device: &Device) -> Result<Vec<CheckRow>> {
    // The same Philox draws on both sides; the check below proves they are identical.
    let (want_in, got_in) = (Inputs::new(&Device::Cpu)?, Inputs::new(device)?);
    let mut rows = vec![CheckRow {
        op: "randn (Philox)",
        max_rel_diff: max_rel_diff(&got_in.images.to_f64_vec()?, &want_in.images.to_f64_vec()?),
        tolerance: 0.0,
    }];
    let (u_want, u_got) = (
        Tensor::rand([1001], 9, 3, &Device::Cpu)?,
        Tensor::rand([1001], 9, 3, device)?,
    );
    rows.push(CheckRow {
        op: "rand (Philox)",
        max_rel_diff: max_rel_diff(&u_got.to_f64_vec()?, &u_want.to_f64_vec()?),
        tolerance: 0.0,
    });
    for (op, tolerance, f) in CASES {
        let want = duel::autograd::no_grad(|| f(&want_in))?.to_f64_vec()?;
        let got = duel::autograd::no_grad(|| f(&got_in))?.to_f64_vec()?;
        rows.push(CheckRow {
            op,
            max_rel_diff: max_rel_diff(&got, &want),
            tolerance: *tolerance,
        });
    }
    let (want, got) = (mlp_gradients(&Device::Cpu)?, mlp_gradients(device)?);
    rows.push(CheckRow {
        op: "MLP gradients",
        max_rel_diff: max_rel_diff(&got, &want),
        tolerance: 1e-5,
    });
    Ok(rows)
}

/// All parameter gradients of `cli::trace::example_mlp`, concatenated.
fn mlp_gradients(device: &Device) -> Result<Vec<f64>> {
    let example = crate::cli::trace::example_mlp(device)?;
    example.loss.backward()?;
    let mut out = Vec::new();
    for (name, p) in &example.params {
        let g = p
            .grad()
            .ok_or_else(|| duel::error::Error::invalid(format!("{name} got no gradient")))?;
        out.extend(g.to_f64_vec()?);
    }
    Ok(out)
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
