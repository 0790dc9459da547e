//! Matrix multiplication with PyTorch semantics for operands of rank >= 2:
//! `[m, k] @ [k, n] -> [m, n]`, and batched `[..., m, k] @ [..., k, n]` where the batch
//! dims (all but the last two) broadcast NumPy-style (`[B, m, k] @ [k, n]`,
//! `[1, m, k] @ [B, k, n]`, `[B, 1, m, k] @ [1, C, k, n]`, …). Rank-1 operands are
//! refused with an error (unsqueeze them to `[1, k]` / `[k, 1]`).
//!
//! Transposed operands are views (`a.t()`) and are not copied: every backend reads an
//! operand whose matrix is row-major (unit column stride) or column-major (unit row
//! stride) in place, as a GEMM with a transpose flag and a leading dimension. The cpu
//! backend takes any strides at all; the simt kernels copy only an operand whose matrix
//! is neither row- nor column-major (e.g. a strided slice of both axes).
//!
//! Dtypes: f32 on every device, f64 on cpu. The result is a fresh contiguous tensor.
//! Precision: under `ops::precision`'s bf16 / f16 scope an f32 product has rounded
//! operands and f32 accumulation (cpu: `ops::cpu_gemm`; simt: the tensor-core kernels);
//! the node keeps the forward's precision for both gradients.
//!
//! Backends: `cpu.rs` (`ops::cpu_gemm`: duel's own AVX2 engine or the `gemm` crate,
//! rayon inside one large product or across the batch of small ones) and `simt.rs` (the
//! launch logic for kernels/matmul.cu, shared by `cuda` and `emu`, with three f32 kernel
//! versions: [`MatmulKernel`]; under a bf16 / f16 [`precision`](crate::ops::precision) it
//! launches the tensor-core kernels of kernels/matmul_mma.cu instead).
//!
//! Autograd: `C = A·B` records one node; its backward is `dA = dC·Bᵀ`, `dB = Aᵀ·dC`
//! computed by the same GEMM with transpose flags (the transposes are views), then summed
//! over the batch dims each operand was broadcast along.

mod cpu;
mod simt;

use crate::error::{Error, Result};
use crate::ops::precision::Precision;
use crate::tensor::tape::{self, Backward};
use crate::tensor::{DType, Layout, Shape, Tensor};

/// Which kernel of kernels/matmul.cu the simt backends launch for f32 operands. Under
/// `Precision::Bf16` / `F16` the precision picks the kernel (kernels/matmul_mma.cu) and
/// this is ignored; so does the cpu backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// `matmul_naive_f32`: one thread per output, the reference.
    Naive,
    /// `matmul_tiled_f32`: 16x16 shared-memory tiles, one output per thread.
    Tiled,
    /// `matmul_regblock_f32`: 64x64 shared-memory tiles, 4x4 outputs per thread (default).
    #[default]
    RegBlock,
}

impl MatmulKernel {
    pub const ALL: [MatmulKernel; 3] = [
        MatmulKernel::Naive,
        MatmulKernel::Tiled,
        MatmulKernel::RegBlock,
    ];
    /// The kernel's `extern "C"` name in kernels/matmul.cu.
    pub fn kernel_name(&self) -> &'static str {
        match self {
            MatmulKernel::Naive => "matmul_naive_f32",
            MatmulKernel::Tiled => "matmul_tiled_f32",
            MatmulKernel::RegBlock => "matmul_regblock_f32",
        }
    }
    /// A short name for benchmarks and messages.
    pub fn name(&self) -> &'static str {
        match self {
            MatmulKernel::Naive => "naive",
            MatmulKernel::Tiled => "tiled",
            MatmulKernel::RegBlock => "regblock",
        }
    }
}

/// One operand seen as a batch of matrices: the storage offset of each batch entry's
/// matrix (row-major order over the broadcast batch shape) and the matrix strides.
#[derive(Clone, Debug)]
pub(crate) struct MatrixOperand {
    pub rows: usize,
    pub cols: usize,
    /// Storage offset (elements) of the matrix of each batch entry.
    pub offsets: Vec<usize>,
    /// Stride between rows and between columns (elements; 0 when broadcast).
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixOperand {
    /// View `layout` (rank >= 2) broadcast to `batch` + its own last two dims.
    fn new(op: &'static str, layout: &Layout, batch: &Shape) -> Result<Self> {
        let dims = layout.shape.dims();
        let r = dims.len();
        let (rows, cols) = (dims[r - 2], dims[r - 1]);
        let mut target = batch.dims().to_vec();
        target.extend([rows, cols]);
        let full = layout.broadcast_to(op, &Shape::new(target))?;
        let nb = batch.rank();
        let mut offsets = Vec::with_capacity(batch.numel());
        let mut index = vec![0usize; nb];
        for _ in 0..batch.numel() {
            offsets.push(
                full.offset
                    + index
                        .iter()
                        .zip(&full.strides)
                        .map(|(&i, &s)| i * s)
                        .sum::<usize>(),
            );
            // Odometer over the batch dims, last fastest.
            for axis in (0..nb).rev() {
                index[axis] += 1;
                if index[axis] < batch.dim(axis) {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(MatrixOperand {
            rows,
            cols,
            offsets,
            row_stride: full.strides[nb],
            col_stride: full.strides[nb + 1],
        })
    }

    /// `Some(s)` when batch entry `i` sits at `offsets[0] + i*s` (always for <= 1 entry).
    pub fn uniform_batch_stride(&self) -> Option<usize> {
        match self.offsets.len() {
            0 | 1 => Some(0),
            _ => {
                let base = self.offsets[0];
                let s = self.offsets[1].checked_sub(base)?;
                self.offsets
                    .iter()
                    .enumerate()
                    .all(|(i, &o)| o == base + i * s)
                    .then_some(s)
            }
        }
    }
}

/// The shapes of one product: `out = batch + [m, n]`, operands viewed per batch entry.
#[derive(Clone, Debug)]
pub(crate) struct MatmulPlan {
    pub batch: Shape,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub out_shape: Shape,
    pub a: MatrixOperand,
    pub b: MatrixOperand,
}

impl MatmulPlan {
    pub fn batch_count(&self) -> usize {
        self.batch.numel()
    }
}

const OP: &str = "matmul";

/// Check ranks, inner dims, dtypes and devices, and plan the batched product.
fn plan(a: &Tensor, b: &Tensor) -> Result<MatmulPlan> {
    a.device().check_same(OP, b.device())?;
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::shape(
            OP,
            format!(
                "both operands need rank >= 2, got shapes {} and {}; rank-1 operands are not \
                 supported: unsqueeze a vector to [1, k] or [k, 1] first",
                a.shape(),
                b.shape()
            ),
        ));
    }
    if a.dtype() != b.dtype() {
        return Err(Error::dtype(
            OP,
            format!(
                "lhs is {}, rhs is {}; cast one with .to_dtype(..) so both match",
                a.dtype(),
                b.dtype()
            ),
        ));
    }
    let dtype = a.dtype();
    let cpu = a.device().is_cpu();
    if !(dtype == DType::F32 || (dtype == DType::F64 && cpu)) {
        return Err(Error::dtype(
            OP,
            format!(
                "operands are {dtype}; matmul computes in f32 on every device and in f64 on \
                 cpu only (not on {}); cast with .to_dtype(DType::F32) first",
                a.device()
            ),
        ));
    }
    let (ad, bd) = (a.dims(), b.dims());
    let (m, k) = (ad[ad.len() - 2], ad[ad.len() - 1]);
    let (k2, n) = (bd[bd.len() - 2], bd[bd.len() - 1]);
    if k != k2 {
        return Err(Error::shape(
            OP,
            format!(
                "inner dimensions differ: lhs {} has {k} columns, rhs {} has {k2} rows",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let a_batch = Shape::new(&ad[..ad.len() - 2]);
    let b_batch = Shape::new(&bd[..bd.len() - 2]);
    let batch = Shape::broadcast(OP, &a_batch, &b_batch).map_err(|_| {
        Error::shape(
            OP,
            format!(
                "batch dimensions of {} and {} do not broadcast ({a_batch} vs {b_batch})",
                a.shape(),
                b.shape()
            ),
        )
    })?;
    let mut out = batch.dims().to_vec();
    out.extend([m, n]);
    Ok(MatmulPlan {
        a: MatrixOperand::new(OP, a.layout(), &batch)?,
        b: MatrixOperand::new(OP, b.layout(), &batch)?,
        batch,
        m,
        n,
        k,
        out_shape: Shape::new(out),
    })
}

/// `a @ b` with PyTorch semantics (see the module doc). Records on the autograd tape.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(a, b, MatmulKernel::default())
}

/// [`matmul`] with the simt kernel version forced (tests and benchmarks compare them;
/// the backward of the recorded node uses the same version). The cpu backend ignores it.
pub fn matmul_with(a: &Tensor, b: &Tensor, kernel: MatmulKernel) -> Result<Tensor> {
    let _p = crate::profile::forward("matmul");
    let precision = crate::ops::precision::current();
    let out = forward(&a.detach(), &b.detach(), kernel, precision)?;
    let (a_grad, b_grad) = (a.requires_grad(), b.requires_grad());
    Ok(tape::record(OP, &[a, b], out, || MatmulBackward {
        a: tape::save(a),
        b: tape::save(b),
        a_grad,
        b_grad,
        kernel,
        precision,
    }))
}

/// The product in `precision` (see `ops::precision`; f64 operands ignore it), without
/// touching the tape: what conv's simt primitives run their GEMMs with.
pub(crate) fn product(
    a: &Tensor,
    b: &Tensor,
    kernel: MatmulKernel,
    precision: Precision,
) -> Result<Tensor> {
    forward(a, b, kernel, precision)
}

fn forward(a: &Tensor, b: &Tensor, kernel: MatmulKernel, precision: Precision) -> Result<Tensor> {
    let p = plan(a, b)?;
    match a.device().simt() {
        None => cpu::matmul(a, b, &p, precision),
        Some(simt) => simt::matmul(simt, a, b, &p, kernel, precision),
    }
}

/// Saved for backward: both operands (detached views; a transposed operand stays a view).
struct MatmulBackward {
    a: Tensor,
    b: Tensor,
    a_grad: bool,
    b_grad: bool,
    kernel: MatmulKernel,
    /// The forward's precision: the gradients' products use it too.
    precision: Precision,
}

impl MatmulBackward {
    /// The gradient of an operand whose batch dims were broadcast: fold the batch into
    /// the GEMM's inner dimension when that needs no copy, else a batched product summed
    /// over the broadcast dims.
    fn grad_b(&self, g: &Tensor) -> Result<Tensor> {
        let (a, b) = (&self.a, &self.b);
        // dB = Aᵀ·dC. With b 2-D and a contiguous (the Linear / im2col case), batched or
        // not, Σ_batch A_zᵀ dC_z = A'ᵀ dC' with A' = a as [batch·m, k], dC' = dC as
        // [batch·m, n].
        if b.rank() == 2 && a.rank() >= 2 && a.is_contiguous() && g.is_contiguous() {
            let (k, n) = (b.dims()[0], b.dims()[1]);
            if k > 0 && n > 0 {
                let a2 = a.reshape([a.numel() / k, k])?;
                let g2 = g.reshape([g.numel() / n, n])?;
                if b.t()?.is_contiguous() {
                    // b is a transposed view (Linear's Wᵀ): form dBᵀ = dC'ᵀ·A' (the same
                    // dot products over the same k) and return its transposed view, so
                    // the weight's gradient arrives contiguous. A strided one sent the
                    // gradient norm and the optimizer through a copy each (1.5% of a
                    // dcgan28 step for G.fc's [6272, 100]).
                    return forward(&g2.t()?, &a2, self.kernel, self.precision)?.t();
                }
                return forward(&a2.t()?, &g2, self.kernel, self.precision);
            }
        }
        let full = forward(&a.t()?, g, self.kernel, self.precision)?;
        crate::ops::reduce::sum_to_shape(&full, b.shape())
    }

    fn grad_a(&self, g: &Tensor) -> Result<Tensor> {
        // dA = dC·Bᵀ, summed over the batch dims a was broadcast along.
        let full = forward(g, &self.b.t()?, self.kernel, self.precision)?;
        crate::ops::reduce::sum_to_shape(&full, self.a.shape())
    }
}

impl Backward for MatmulBackward {
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ga = if self.a_grad {
            Some(self.grad_a(grad_output)?)
        } else {
            None
        };
        let gb = if self.b_grad {
            Some(self.grad_b(grad_output)?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
    fn saved_bytes(&self) -> usize {
        (self.a.numel() + self.b.numel()) * self.a.dtype().size_in_bytes()
    }
}

impl Tensor {
    /// `self @ other` (see [`matmul`]).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul(self, other)
    }
}

/// Gradient-check cases for matmul (f64 cpu; see `autograd::gradcheck`): 2-D, batched,
/// broadcast batch dims on either side, and transposed (view) operands.
#[doc(hidden)]
pub fn gradcheck_cases() -> Result<Vec<crate::ops::grad_case::GradCase>> {
    use crate::ops::grad_case::{input, GradCase};
    let mm = |x: &[Tensor]| x[0].matmul(&x[1]);
    Ok(vec![
        GradCase::new(
            OP,
            "[3,4]@[4,5]",
            vec![input([3, 4], 1, 0.0)?, input([4, 5], 2, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[2,3,4]@[2,4,5] batched",
            vec![input([2, 3, 4], 3, 0.0)?, input([2, 4, 5], 4, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[2,3,4]@[4,5] broadcast rhs",
            vec![input([2, 3, 4], 5, 0.0)?, input([4, 5], 6, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[1,3,4]@[3,4,2] broadcast lhs",
            vec![input([1, 3, 4], 7, 0.0)?, input([3, 4, 2], 8, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[3,4]@[2,4,5] 2-D lhs, batched rhs",
            vec![input([3, 4], 9, 0.0)?, input([2, 4, 5], 10, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[2,1,3,4]@[1,2,4,2] two-sided broadcast",
            vec![input([2, 1, 3, 4], 11, 0.0)?, input([1, 2, 4, 2], 12, 0.0)?],
            mm,
        ),
        // Transposed operands: the inputs themselves are `.t()` views (the leaves of the
        // check), so the rule is exercised on views without relying on view autograd.
        GradCase::new(
            OP,
            "[4,3]ᵀ@[5,4]ᵀ transposed views",
            vec![input([4, 3], 13, 0.0)?.t()?, input([5, 4], 14, 0.0)?.t()?],
            mm,
        ),
        GradCase::new(
            OP,
            "[2,4,3]ᵀ@[4,5] batched transposed lhs",
            vec![input([2, 4, 3], 15, 0.0)?.t()?, input([4, 5], 16, 0.0)?],
            mm,
        ),
        GradCase::new(
            OP,
            "[3,4]@[2,5,4]ᵀ batched transposed rhs",
            vec![input([3, 4], 17, 0.0)?, input([2, 5, 4], 18, 0.0)?.t()?],
            mm,
        ),
    ])
}
