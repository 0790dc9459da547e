//! cpu matmul (f32 and f64) through `ops::cpu_gemm`: its f32 / f64 engines, or the bf16 / f16
//! operand paths under `ops::precision`.
//!
//! `gemm` takes arbitrary row and column strides for every operand, so transposed and
//! otherwise strided views (even broadcast ones, stride 0) are read in place: nothing is
//! copied. Its microkernels are chosen at run time (AVX-512 with the `x86-v4` feature when
//! the CPU has it, else AVX2+FMA, else scalar), so one binary runs everywhere.
//!
//! Threading: a product of at least [`PARALLEL_FLOPS`] multiply-adds runs with
//! `Parallelism::Rayon(0)` (gemm splits it over the rayon pool); smaller ones run on one
//! thread. A batch of small products runs the entries in parallel instead, each single
//! threaded. `k = 0` gives zeros without calling gemm.

use super::MatmulPlan;
use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::ops::cpu_gemm::{self, GemmElem};
use crate::ops::precision::Precision;
use crate::tensor::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

/// Multiply-adds (m·n·k) from which one product is worth splitting across threads.
pub const PARALLEL_FLOPS: usize = cpu_gemm::PARALLEL_MACS;

/// Raw pointers are not `Send`; the batch entries below write disjoint output chunks and
/// only read the inputs.
#[derive(Clone, Copy)]
struct ConstPtr<T>(*const T);
unsafe impl<T> Send for ConstPtr<T> {}
unsafe impl<T> Sync for ConstPtr<T> {}

/// `out[z] = a[z] · b[z]` for every batch entry of the plan, into a contiguous buffer.
fn run<T: GemmElem>(a: &[T], b: &[T], p: &MatmulPlan, precision: Precision) -> Result<Vec<T>> {
    let (m, n, k) = (p.m, p.n, p.k);
    let batch = p.batch_count();
    let mut out = vec![T::default(); batch * m * n];
    if m == 0 || n == 0 || k == 0 || batch == 0 {
        return Ok(out); // k = 0: the empty sum is 0
    }
    // Every element gemm reads must lie inside the storage it is handed.
    let span = |op: &super::MatrixOperand| {
        op.offsets.iter().max().copied().unwrap_or(0)
            + (op.rows - 1) * op.row_stride
            + (op.cols - 1) * op.col_stride
    };
    if span(&p.a) >= a.len() || span(&p.b) >= b.len() {
        return Err(Error::invalid(
            "matmul: an operand's layout reaches past its storage (internal error)",
        ));
    }
    let (a_ptr, b_ptr) = (ConstPtr(a.as_ptr()), ConstPtr(b.as_ptr()));
    let flops = m * n * k;
    let product = |z: usize, dst: &mut [T], par: Parallelism| {
        let (a_ptr, b_ptr) = (a_ptr, b_ptr);
        // SAFETY: dst holds m·n elements written row-major (row stride n, col stride 1);
        // every lhs/rhs element read is within the checked spans above.
        unsafe {
            cpu_gemm::gemm(
                precision,
                m,
                n,
                k,
                (dst, n),
                false,
                (a_ptr.0.add(p.a.offsets[z]), p.a.row_stride, p.a.col_stride),
                (b_ptr.0.add(p.b.offsets[z]), p.b.row_stride, p.b.col_stride),
                par,
            )
        }
    };
    if batch > 1 && flops < PARALLEL_FLOPS {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(z, dst)| product(z, dst, Parallelism::None));
    } else {
        let par = cpu_gemm::parallelism_for(flops);
        for (z, dst) in out.chunks_mut(m * n).enumerate() {
            product(z, dst, par);
        }
    }
    Ok(out)
}

pub(super) fn matmul(
    a: &Tensor,
    b: &Tensor,
    p: &MatmulPlan,
    precision: Precision,
) -> Result<Tensor> {
    const OP: &str = "matmul";
    let a_buf = a.cpu_buffer(OP)?;
    // The same storage on both sides (a @ a.t()): read it through one guard.
    let b_guard;
    let b_buf = if a.shares_storage(b) {
        &*a_buf
    } else {
        b_guard = b.cpu_buffer(OP)?;
        &*b_guard
    };
    let out = match (&*a_buf, b_buf) {
        (CpuBuffer::F32(x), CpuBuffer::F32(y)) => CpuBuffer::F32(run(x, y, p, precision)?),
        (CpuBuffer::F64(x), CpuBuffer::F64(y)) => CpuBuffer::F64(run(x, y, p, precision)?),
        (x, y) => {
            return Err(Error::dtype(
                OP,
                format!(
                    "operands are {} and {}; the cpu matmul computes in f32 or f64",
                    x.dtype(),
                    y.dtype()
                ),
            ))
        }
    };
    Tensor::from_cpu_buffer(out, p.out_shape.clone())
}
