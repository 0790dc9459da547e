//! Launch logic for kernels/reduce.cu, shared by `cuda` and `emu`.
//!
//! The input is passed as its permuted layout (kept axes first, reduced last; no copy),
//! so output `r` reduces linear positions `r·k .. r·k + k`. Kernel choice:
//! * `reduce_thread_f32` (one thread per output) when outputs are many and the reduced
//!   axes are outer with a contiguous kept axis (adjacent threads read adjacent memory);
//! * `reduce_warp_f32` (one warp per output, 8 per block) for short rows (k ≤ 256);
//! * `reduce_block_f32` (one 256-thread block per output) otherwise; with few outputs and
//!   a long row it splits each row into segments (grid.y) writing partials, and a second
//!   launch of the same kernel reduces the partials.

use super::{ReduceOp, ReducePlan};
use crate::device::simt::{
    kernel_count, kernel_int, Arg, KernelLayout, LaunchConfig, SimtDevice, THREADS,
};
use crate::error::Result;
use crate::ops::check_compute_dtype;
use crate::tensor::{DType, Layout, Tensor};

const WARP_MAX_K: usize = 256;
/// Target elements per block when a row is split into segments.
const SEGMENT_TARGET: usize = 8192;
const MAX_SEGMENTS: usize = 1024;

/// Op codes shared with kernels/reduce.cu.
pub const OP_SUM: i32 = 0;
pub const OP_MEAN: i32 = 1;
pub const OP_MAX: i32 = 2;

fn op_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => OP_SUM,
        ReduceOp::Mean => OP_MEAN,
        ReduceOp::Max => OP_MAX,
    }
}

fn block_config(grid: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid,
        block: (THREADS, 1, 1),
        shared_bytes: (THREADS / 32) * DType::F32.size_in_bytes() as u32,
    }
}

pub fn reduce(simt: &SimtDevice, x: &Tensor, op: ReduceOp, plan: &ReducePlan) -> Result<Tensor> {
    let (rows, k) = (plan.rows, plan.k);
    kernel_count(op.name(), x.shape())?;
    kernel_int(op.name(), "output count", rows)?;
    let layout = KernelLayout::new(op.name(), &plan.permuted)?;
    let out = simt.alloc_elems(DType::F32, rows)?;
    let result = Tensor::from_device_buffer(out, plan.out_shape.clone(), DType::F32, x.device());
    if rows == 0 {
        return Ok(result);
    }
    let x_ptr = x.device_ptr(op.name())?;
    let out_ptr = result.device_ptr(op.name())?;
    let code = op_code(op);
    let (ri, ki) = (rows as i32, k as i32);

    let p = &plan.permuted;
    let kept_inner_contiguous = (0..plan.kept)
        .rev()
        .find(|&i| p.shape.dim(i) != 1)
        .is_some_and(|i| p.strides[i] == 1);
    let reduced_inner_strided = (plan.kept..p.shape.rank())
        .rev()
        .find(|&i| p.shape.dim(i) != 1)
        .is_some_and(|i| p.strides[i] != 1);

    // reduce_thread_f32 and reduce_warp_f32 take the same arguments.
    let row_args = || {
        [
            Arg::val(layout),
            Arg::ptr(x_ptr),
            Arg::ptr(out_ptr),
            Arg::val(ri),
            Arg::val(ki),
            Arg::val(code),
            Arg::val(ki),
        ]
    };
    if rows >= 2048 && kept_inner_contiguous && reduced_inner_strided {
        let cfg = LaunchConfig::linear(rows, THREADS)?;
        simt.launch("reduce_thread_f32", &cfg, &row_args())?;
    } else if k <= WARP_MAX_K {
        let cfg = LaunchConfig::linear(rows, THREADS / 32)?;
        let cfg = LaunchConfig {
            block: (THREADS, 1, 1),
            ..cfg
        };
        simt.launch("reduce_warp_f32", &cfg, &row_args())?;
    } else {
        let segments = if rows < 128 {
            k.div_ceil(SEGMENT_TARGET).clamp(1, MAX_SEGMENTS)
        } else {
            1
        };
        if segments == 1 {
            simt.launch(
                "reduce_block_f32",
                &block_config((ri as u32, 1, 1)),
                &[
                    Arg::val(layout),
                    Arg::ptr(x_ptr),
                    Arg::ptr(out_ptr),
                    Arg::val(ri),
                    Arg::val(ki),
                    Arg::val(code),
                    Arg::val(1i32),
                    Arg::val(ki),
                ],
            )?;
        } else {
            // pass 1: partial sums (or maxima) of each segment, no division yet
            let partial = simt.alloc_elems(DType::F32, rows * segments)?;
            let pass1 = if op == ReduceOp::Max { OP_MAX } else { OP_SUM };
            simt.launch(
                "reduce_block_f32",
                &block_config((ri as u32, segments as u32, 1)),
                &[
                    Arg::val(layout),
                    Arg::ptr(x_ptr),
                    Arg::ptr(partial.ptr()),
                    Arg::val(ri),
                    Arg::val(ki),
                    Arg::val(pass1),
                    Arg::val(segments as i32),
                    Arg::val(ki),
                ],
            )?;
            // pass 2: reduce each row's partials (contiguous [rows, segments])
            let flat = KernelLayout::new(op.name(), &Layout::contiguous([rows * segments]))?;
            let cfg = LaunchConfig::linear(rows, THREADS / 32)?;
            simt.launch(
                "reduce_warp_f32",
                &LaunchConfig {
                    block: (THREADS, 1, 1),
                    ..cfg
                },
                &[
                    Arg::val(flat),
                    Arg::ptr(partial.ptr()),
                    Arg::ptr(out_ptr),
                    Arg::val(ri),
                    Arg::val(segments as i32),
                    Arg::val(code),
                    Arg::val(ki),
                ],
            )?;
        }
    }
    Ok(result)
}

/// Rows up to this long use one warp each in the backward of max; longer, one block.
const MAX_BACKWARD_WARP_K: usize = 1024;

/// Launch `reduce_max_backward_{warp,block}_f32` (see kernels/reduce.cu); `y` and `dy`
/// are contiguous, `dx_layout` is the contiguous x-shaped layout permuted like `plan`.
pub fn max_backward(
    simt: &SimtDevice,
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    plan: &ReducePlan,
    dx_layout: &Layout,
) -> Result<Tensor> {
    check_compute_dtype("max_backward", x)?;
    let (rows, k) = (plan.rows, plan.k);
    kernel_count("max_backward", x.shape())?;
    let xl = KernelLayout::new("max_backward", &plan.permuted)?;
    let dxl = KernelLayout::new("max_backward", dx_layout)?;
    let dx = simt.alloc_elems(DType::F32, x.numel())?;
    let result = Tensor::from_device_buffer(dx, x.shape().clone(), DType::F32, x.device());
    if rows == 0 || k == 0 {
        return Ok(result);
    }
    let args = [
        Arg::val(xl),
        Arg::ptr(x.device_ptr("max_backward")?),
        Arg::ptr(y.view_ptr("max_backward")?),
        Arg::ptr(dy.view_ptr("max_backward")?),
        Arg::val(dxl),
        Arg::ptr(result.device_ptr("max_backward")?),
        Arg::val(rows as i32),
        Arg::val(k as i32),
    ];
    if k <= MAX_BACKWARD_WARP_K {
        let cfg = LaunchConfig::linear(rows, THREADS / 32)?;
        simt.launch(
            "reduce_max_backward_warp_f32",
            &LaunchConfig {
                block: (THREADS, 1, 1),
                ..cfg
            },
            &args,
        )?;
    } else {
        simt.launch(
            "reduce_max_backward_block_f32",
            &block_config((rows as u32, 1, 1)),
            &args,
        )?;
    }
    Ok(result)
}
