//! Launch logic for kernels/matmul.cu, shared by the `cuda` and `emu` devices.
//!
//! Every version takes `(A, B, C, M, N, K, lda, ldb, ldc, transA, transB, strideA,
//! strideB, strideC)` and runs the batch over `gridDim.z`:
//! - An operand whose matrix is row-major (unit column stride) is passed as is with
//!   `trans = 0, ld = row stride`; one that is column-major (unit row stride, e.g. `x.t()`
//!   of a contiguous `x`) with `trans = 1, ld = column stride`. Only a matrix that is
//!   neither is copied to contiguous first.
//! - Batch entries at a uniform distance (including 0: a broadcast operand) become one
//!   launch with that batch stride; otherwise (broadcasting over several batch dims
//!   against a non-mergeable layout) each entry gets its own launch.
//! - `gridDim.y` and `gridDim.z` are capped at 65535 by CUDA: larger M or batch counts
//!   are split into several launches with offset pointers.
//!
//! Kernels: under `Precision::F32` the [`MatmulKernel`] version of kernels/matmul.cu
//! (naive and tiled 16x16 threads per 16x16 tile of C, regblock 256 threads per 64x64
//! tile); under `Bf16` / `F16` the tensor-core kernel `matmul_mma_bf16` / `matmul_mma_f16`
//! of kernels/matmul_mma.cu (128 threads per 64x64 tile, operands rounded as they are
//! staged, f32 accumulation), with the same parameters, operand handling, batch groups
//! and grid splitting.

use super::{MatmulKernel, MatmulPlan, MatrixOperand};
use crate::device::simt::{kernel_int, Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::ops::precision::Precision;
use crate::tensor::{DType, Tensor};

const OP: &str = "matmul";
/// CUDA's limit on gridDim.y and gridDim.z.
const MAX_GRID_YZ: usize = 65_535;

/// The kernel one product launches: `kernel`'s f32 version for `Precision::F32`, else the
/// tensor-core kernel of kernels/matmul_mma.cu for the operand type (the f32 selector does
/// not apply to it). Returns the name, the rows and columns of C per block, and the block
/// shape.
fn launch_kernel(
    kernel: MatmulKernel,
    precision: Precision,
) -> (&'static str, usize, usize, (u32, u32, u32)) {
    match (precision, kernel) {
        (Precision::Bf16, _) => ("matmul_mma_bf16", 64, 64, (128, 1, 1)),
        (Precision::F16, _) => ("matmul_mma_f16", 64, 64, (128, 1, 1)),
        (Precision::F32, MatmulKernel::Naive | MatmulKernel::Tiled) => {
            (kernel.kernel_name(), 16, 16, (16, 16, 1))
        }
        (Precision::F32, MatmulKernel::RegBlock) => (kernel.kernel_name(), 64, 64, (256, 1, 1)),
    }
}

fn int(what: &str, v: usize) -> Result<i32> {
    kernel_int(OP, what, v)
}

/// How one operand is handed to the kernel.
struct KernelOperand {
    /// Device address of the storage base (offsets below are in elements from it).
    base: u64,
    trans: bool,
    ld: usize,
    offsets: Vec<usize>,
    /// `Some` when one launch covers the batch with this stride.
    batch_stride: Option<usize>,
}

impl KernelOperand {
    /// `None` when the matrix is neither row- nor column-major (the caller copies it).
    fn new(t: &Tensor, op: &MatrixOperand) -> Result<Option<Self>> {
        let (trans, ld) = if op.col_stride == 1 || op.cols <= 1 {
            // Row-major. With one row the leading dimension is never used: make it
            // harmless (a multiple of 4 keeps the float4 path open).
            (false, if op.rows <= 1 { 0 } else { op.row_stride })
        } else if op.row_stride == 1 || op.rows <= 1 {
            (true, if op.cols <= 1 { 0 } else { op.col_stride })
        } else {
            return Ok(None);
        };
        Ok(Some(KernelOperand {
            base: t.device_ptr(OP)?,
            trans,
            ld,
            batch_stride: op.uniform_batch_stride(),
            offsets: op.offsets.clone(),
        }))
    }
}

/// The operand as the kernel reads it, copying a layout that is neither row- nor
/// column-major to contiguous (after which it is row-major).
fn operand(
    t: &Tensor,
    op: &MatrixOperand,
    batch: &crate::tensor::Shape,
) -> Result<(Tensor, KernelOperand)> {
    if let Some(k) = KernelOperand::new(t, op)? {
        return Ok((t.clone(), k));
    }
    let c = t.contiguous()?;
    let op = MatrixOperand::new(OP, c.layout(), batch)?;
    let k = KernelOperand::new(&c, &op)?.ok_or_else(|| {
        Error::invalid("matmul: a contiguous operand is not row-major (internal error)")
    })?;
    Ok((c, k))
}

/// `a` and `b` f32 (checked by `matmul`'s plan), computed in `precision`.
pub(super) fn matmul(
    dev: &SimtDevice,
    a: &Tensor,
    b: &Tensor,
    p: &MatmulPlan,
    kernel: MatmulKernel,
    precision: Precision,
) -> Result<Tensor> {
    let (m, n, k) = (p.m, p.n, p.k);
    let batch = p.batch_count();
    let out_len = batch * m * n;
    int("output size", out_len)?;
    let out = dev.alloc_elems(DType::F32, out_len)?;
    if out_len == 0 {
        return Ok(Tensor::from_device_buffer(
            out,
            p.out_shape.clone(),
            DType::F32,
            a.device(),
        ));
    }
    // Keep any contiguous copies alive until the launches are queued.
    let (a_keep, ka) = operand(a, &p.a, &p.batch)?;
    let (b_keep, kb) = operand(b, &p.b, &p.batch)?;
    for (t, ko) in [(&a_keep, &ka), (&b_keep, &kb)] {
        int("operand storage span", t.layout().storage_span())?;
        int("leading dimension", ko.ld)?;
        if let Some(s) = ko.batch_stride {
            int("batch stride", s)?;
        }
    }
    int("M", m)?;
    int("N", n)?;
    int("K", k)?;

    let (name, tile_m, tile_n, block) = launch_kernel(kernel, precision);
    let grid_x = n.div_ceil(tile_n);
    int("grid x", grid_x)?;
    let rows_per_launch = MAX_GRID_YZ * tile_m;
    let c_stride = m * n;

    // Batch groups: (first entry, entries, strides); one group when both operands have a
    // uniform batch stride, else one group per entry.
    let groups: Vec<(usize, usize, usize, usize)> = match (ka.batch_stride, kb.batch_stride) {
        (Some(sa), Some(sb)) => (0..batch)
            .step_by(MAX_GRID_YZ)
            .map(|z0| (z0, MAX_GRID_YZ.min(batch - z0), sa, sb))
            .collect(),
        _ => (0..batch).map(|z| (z, 1, 0, 0)).collect(),
    };
    const F32: usize = DType::F32.size_in_bytes();
    let a_elem_ptr = |off: usize| ka.base + (off * F32) as u64;
    let b_elem_ptr = |off: usize| kb.base + (off * F32) as u64;
    for (z0, count, sa, sb) in groups {
        for i0 in (0..m).step_by(rows_per_launch) {
            let rows = rows_per_launch.min(m - i0);
            // Row i0 of op(A): row i0 of the storage, or column i0 when transposed.
            let a_off = ka.offsets[z0] + if ka.trans { i0 } else { i0 * ka.ld };
            let c_off = z0 * c_stride + i0 * n;
            let cfg = LaunchConfig {
                grid: (grid_x as u32, rows.div_ceil(tile_m) as u32, count as u32),
                block,
                shared_bytes: 0,
            };
            let args = [
                Arg::ptr(a_elem_ptr(a_off)),
                Arg::ptr(b_elem_ptr(kb.offsets[z0])),
                Arg::ptr(out.ptr() + (c_off * F32) as u64),
                Arg::val(rows as i32),
                Arg::val(n as i32),
                Arg::val(k as i32),
                Arg::val(ka.ld as i32),
                Arg::val(kb.ld as i32),
                Arg::val(n as i32),
                Arg::val(ka.trans as i32),
                Arg::val(kb.trans as i32),
                Arg::val(sa as i32),
                Arg::val(sb as i32),
                Arg::val(c_stride as i32),
            ];
            dev.launch(name, &cfg, &args)?;
        }
    }
    Ok(Tensor::from_device_buffer(
        out,
        p.out_shape.clone(),
        DType::F32,
        a.device(),
    ))
}
