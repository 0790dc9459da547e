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
//!
//! Split-K: a single product whose C covers few tiles but whose K is long (a weight
//! gradient summed over the batch, a matrix-vector product) would leave most of the GPU
//! idle while a handful of blocks walk all of K. [`k_splits`] cuts K into equal chunks
//! (a multiple of 64, so every chunk starts 16-byte aligned and on the kernels' k-steps),
//! runs them as a batch of products into a `[S, M, N]` workspace and sums the workspace
//! over its first axis with the reduce family (one thread per output, chunks in order).
//! The policy reads the shape only, never the GPU, so a product rounds the same way on
//! every device, and every kernel version splits alike (they stay bit-identical).

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

/// Blocks a split product aims at: about two per SM on a 132-SM H100/H200 (a constant,
/// so the split, and with it the rounding, depends on the shape alone).
const SPLIT_TARGET_BLOCKS: usize = 256;
/// The least K a chunk gets: below it the extra workspace pass costs more than it saves.
const SPLIT_MIN_CHUNK: usize = 256;
const SPLIT_MAX: usize = 64;
/// The C tile the policy counts in, whatever the kernel's own tile: every version then
/// splits a product alike.
const SPLIT_TILE: usize = 64;
/// Chunks are multiples of this (float4 alignment, the tiles' k-steps of 16 and 32).
const SPLIT_ALIGN: usize = 64;

/// `(splits, chunk)` for a product of `tiles` C tiles and inner dimension `k`: K is cut
/// into `splits` chunks of `chunk` (the last one shorter or equal), or `(1, k)` when
/// splitting does not pay.
pub(crate) fn k_splits(tiles: usize, k: usize) -> (usize, usize) {
    let want = (SPLIT_TARGET_BLOCKS / tiles.max(1))
        .min(k / SPLIT_MIN_CHUNK)
        .min(SPLIT_MAX);
    if want < 2 {
        return (1, k);
    }
    let chunk = k.div_ceil(want).next_multiple_of(SPLIT_ALIGN);
    (k.div_ceil(chunk), chunk)
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
    if out_len == 0 {
        return Ok(Tensor::from_device_buffer(
            dev.alloc_elems(DType::F32, 0)?,
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
    if batch == 1 && m <= rows_per_launch {
        let (splits, chunk) = k_splits(m.div_ceil(SPLIT_TILE) * n.div_ceil(SPLIT_TILE), k);
        if splits > 1 {
            let split = Split {
                name,
                block,
                tile_m,
                grid_x,
                splits,
                chunk,
            };
            return split
                .run(dev, a.device(), &ka, &kb, (m, n, k))?
                .reshape(p.out_shape.clone());
        }
    }
    let out = dev.alloc_elems(DType::F32, out_len)?;
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
            let ptrs = [
                a_elem_ptr(a_off),
                b_elem_ptr(kb.offsets[z0]),
                out.ptr() + (c_off * F32) as u64,
            ];
            let args = kernel_args(ptrs, (rows, n, k), (&ka, &kb), [sa, sb, c_stride]);
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

/// The arguments every kernel version takes (see kernels/matmul.cu): the addresses of
/// A, B and C, `(M, N, K)`, the operands' leading dimensions, C's (`N`), their trans
/// flags, and the batch strides of A, B and C. The values were range-checked by the caller.
fn kernel_args(
    [a, b, c]: [u64; 3],
    (m, n, k): (usize, usize, usize),
    (ka, kb): (&KernelOperand, &KernelOperand),
    [sa, sb, sc]: [usize; 3],
) -> [Arg; 14] {
    [
        Arg::ptr(a),
        Arg::ptr(b),
        Arg::ptr(c),
        Arg::val(m as i32),
        Arg::val(n as i32),
        Arg::val(k as i32),
        Arg::val(ka.ld as i32),
        Arg::val(kb.ld as i32),
        Arg::val(n as i32),
        Arg::val(ka.trans as i32),
        Arg::val(kb.trans as i32),
        Arg::val(sa as i32),
        Arg::val(sb as i32),
        Arg::val(sc as i32),
    ]
}

/// One product cut along K (see the module docs): the launch plan of [`k_splits`].
struct Split {
    name: &'static str,
    block: (u32, u32, u32),
    tile_m: usize,
    grid_x: usize,
    splits: usize,
    chunk: usize,
}

impl Split {
    /// C = op(A)·op(B) (batch 1, M within one launch) as `[M·N]`: the full chunks as one
    /// batched launch over gridDim.z, a shorter last chunk as its own launch, then the
    /// workspace summed over the chunks.
    fn run(
        &self,
        dev: &SimtDevice,
        device: &crate::device::Device,
        ka: &KernelOperand,
        kb: &KernelOperand,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Tensor> {
        const F32: usize = DType::F32.size_in_bytes();
        let (s, chunk) = (self.splits, self.chunk);
        int("split workspace size", s * m * n)?;
        let workspace = dev.alloc_elems(DType::F32, s * m * n)?;
        // Moving one chunk along K: along a row of A's storage (or down its rows when
        // transposed), down B's rows (or along them when transposed).
        let a_step = if ka.trans { chunk * ka.ld } else { chunk };
        let b_step = if kb.trans { chunk } else { chunk * kb.ld };
        int("split stride of A", a_step * s)?;
        int("split stride of B", b_step * s)?;
        let last = k - (s - 1) * chunk;
        let full = if last == chunk { s } else { s - 1 };
        let launch = |first: usize, count: usize, kk: usize| -> Result<()> {
            let cfg = LaunchConfig {
                grid: (
                    self.grid_x as u32,
                    m.div_ceil(self.tile_m) as u32,
                    count as u32,
                ),
                block: self.block,
                shared_bytes: 0,
            };
            let ptrs = [
                ka.base + ((ka.offsets[0] + first * a_step) * F32) as u64,
                kb.base + ((kb.offsets[0] + first * b_step) * F32) as u64,
                workspace.ptr() + (first * m * n * F32) as u64,
            ];
            let args = kernel_args(ptrs, (m, n, kk), (ka, kb), [a_step, b_step, m * n]);
            dev.launch(self.name, &cfg, &args)
        };
        launch(0, full, chunk)?;
        if full < s {
            launch(full, 1, last)?;
        }
        let parts = Tensor::from_device_buffer(workspace, [s, m * n], DType::F32, device);
        crate::tensor::tape::no_grad(|| parts.sum(&[0], false))
    }
}

#[cfg(test)]
mod tests {
    use super::k_splits;

    #[test]
    fn k_splits_cuts_long_k_of_few_tiles_into_aligned_chunks() {
        // dcgan28's D.conv1 weight gradient: C [64, 16] is one tile, K = 64·196.
        assert_eq!(k_splits(1, 12_544), (49, 256));
        // dcgan28's G.fc input gradient: two tiles, K = 6272; uneven last chunk.
        assert_eq!(k_splits(2, 6272), (20, 320));
        // Enough tiles to fill the GPU, or a short K: no split.
        assert_eq!(k_splits(256, 1 << 20), (1, 1 << 20));
        assert_eq!(k_splits(1, 511), (1, 511));
        // Every chunk but the last is full, the last is not empty.
        for (tiles, k) in [(1, 5000), (3, 100_000), (7, 4099)] {
            let (s, c) = k_splits(tiles, k);
            assert!(
                s >= 2 && c % 64 == 0 && (s - 1) * c < k && s * c >= k,
                "{tiles} {k}"
            );
        }
    }
}
