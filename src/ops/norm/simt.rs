//! Launch logic for kernels/norm.cu, shared by `cuda` and `emu`.
//!
//! * training forward: `norm_train_forward_f32`, one 256-thread block per group;
//! * eval forward: `norm_eval_forward_f32`, one thread per element (grid-stride);
//! * backward: `norm_backward_f32`, one 256-thread block per group.

use super::{NormForward, NormGeom, Stats};
use crate::device::simt::{kernel_int, Arg, DevicePtr, LaunchConfig, SimtDevice, THREADS};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

fn opt_ptr(op: &'static str, t: Option<&Tensor>) -> Result<(DevicePtr, i32)> {
    Ok(match t {
        Some(t) => (t.view_ptr(op)?, 1),
        None => (0, 0),
    })
}

fn check_size(op: &'static str, geom: NormGeom) -> Result<()> {
    kernel_int(op, "element count", geom.numel())?;
    kernel_int(op, "group count", geom.groups)?;
    Ok(())
}

fn group_config(geom: NormGeom) -> LaunchConfig {
    LaunchConfig {
        grid: (geom.groups as u32, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: 0,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn forward(
    simt: &SimtDevice,
    op: &'static str,
    x: &Tensor,
    geom: NormGeom,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: &Stats<'_>,
    eps: f64,
) -> Result<NormForward> {
    check_size(op, geom)?;
    let dev = x.device();
    let y = simt.alloc_elems(DType::F32, geom.numel())?;
    let mean = simt.alloc_elems(DType::F32, geom.groups)?;
    let invstd = simt.alloc_elems(DType::F32, geom.groups)?;
    let xp = x.view_ptr(op)?;
    let (wp, has_w) = opt_ptr(op, weight)?;
    let (bp, has_b) = opt_ptr(op, bias)?;
    let dims = [
        Arg::val(geom.outer as i32),
        Arg::val(geom.groups as i32),
        Arg::val(geom.inner as i32),
        Arg::val(geom.channels as i32),
        Arg::val(has_w),
        Arg::val(has_b),
    ];
    if geom.numel() > 0 {
        match stats {
            Stats::Batch { running, momentum } => {
                let (rmp, rvp, update) = match running {
                    Some((rm, rv)) => (rm.view_ptr(op)?, rv.view_ptr(op)?, 1i32),
                    None => (0, 0, 0),
                };
                let mut args = vec![
                    Arg::ptr(xp),
                    Arg::ptr(y.ptr()),
                    Arg::ptr(wp),
                    Arg::ptr(bp),
                    Arg::ptr(mean.ptr()),
                    Arg::ptr(invstd.ptr()),
                    Arg::ptr(rmp),
                    Arg::ptr(rvp),
                ];
                args.extend(dims);
                args.extend([
                    Arg::val(update),
                    Arg::val(*momentum as f32),
                    Arg::val(eps as f32),
                ]);
                simt.launch("norm_train_forward_f32", &group_config(geom), &args)?;
            }
            Stats::Running(rm, rv) => {
                let cfg = LaunchConfig::grid_stride(geom.numel());
                let mut args = vec![
                    Arg::ptr(xp),
                    Arg::ptr(y.ptr()),
                    Arg::ptr(wp),
                    Arg::ptr(bp),
                    Arg::ptr(rm.view_ptr(op)?),
                    Arg::ptr(rv.view_ptr(op)?),
                    Arg::ptr(mean.ptr()),
                    Arg::ptr(invstd.ptr()),
                ];
                args.extend(dims);
                args.push(Arg::val(eps as f32));
                simt.launch("norm_eval_forward_f32", &cfg, &args)?;
            }
        }
    }
    Ok(NormForward {
        y: Tensor::from_device_buffer(y, x.shape().clone(), DType::F32, dev),
        mean: Tensor::from_device_buffer(mean, [geom.groups], DType::F32, dev),
        invstd: Tensor::from_device_buffer(invstd, [geom.groups], DType::F32, dev),
    })
}

#[allow(clippy::too_many_arguments)]
pub fn backward(
    simt: &SimtDevice,
    x: &Tensor,
    dy: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    geom: NormGeom,
    training: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "norm_backward";
    check_size(OP, geom)?;
    let dev = x.device();
    let dx = simt.alloc_elems(DType::F32, geom.numel())?;
    let sum_dy = simt.alloc_elems(DType::F32, geom.groups)?;
    let sum_dyx = simt.alloc_elems(DType::F32, geom.groups)?;
    let (wp, has_w) = opt_ptr(OP, weight)?;
    if geom.groups > 0 {
        simt.launch(
            "norm_backward_f32",
            &group_config(geom),
            &[
                Arg::ptr(x.view_ptr(OP)?),
                Arg::ptr(dy.view_ptr(OP)?),
                Arg::ptr(mean.view_ptr(OP)?),
                Arg::ptr(invstd.view_ptr(OP)?),
                Arg::ptr(wp),
                Arg::ptr(dx.ptr()),
                Arg::ptr(sum_dy.ptr()),
                Arg::ptr(sum_dyx.ptr()),
                Arg::val(geom.outer as i32),
                Arg::val(geom.groups as i32),
                Arg::val(geom.inner as i32),
                Arg::val(geom.channels as i32),
                Arg::val(has_w),
                Arg::val(training as i32),
            ],
        )?;
    }
    Ok((
        Tensor::from_device_buffer(dx, x.shape().clone(), DType::F32, dev),
        Tensor::from_device_buffer(sum_dy, [geom.groups], DType::F32, dev),
        Tensor::from_device_buffer(sum_dyx, [geom.groups], DType::F32, dev),
    ))
}
