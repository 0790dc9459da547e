//! Launch logic for kernels/upsample.cu: 1-D grid-stride launches, 256 threads per block,
//! at most `MAX_BLOCKS` blocks; one thread per output element (forward) or per input
//! element (backward).

use crate::device::simt::{Arg, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 2048;

fn launch(
    simt: &SimtDevice,
    kernel: &str,
    src: &Tensor,
    out_dims: [usize; 4],
    plane_hw: (usize, usize),
    s: usize,
) -> Result<Tensor> {
    let n: usize = out_dims.iter().product();
    if n > i32::MAX as usize || src.numel() > i32::MAX as usize {
        return Err(Error::shape(
            "upsample_nearest2d",
            format!("{n} elements exceed the 2^31-1 limit of the CUDA kernels"),
        ));
    }
    if src.dtype() != DType::F32 {
        return Err(Error::dtype(
            "upsample_nearest2d",
            format!(
                "upsample on {} takes f32, got {}",
                src.device(),
                src.dtype()
            ),
        ));
    }
    let out = simt.alloc(n * 4)?;
    if n > 0 {
        let blocks = n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
        simt.launch(
            kernel,
            &LaunchConfig {
                grid: (blocks as u32, 1, 1),
                block: (THREADS, 1, 1),
                shared_bytes: 0,
            },
            &[
                Arg::ptr(src.device_ptr("upsample_nearest2d")? + (src.layout().offset * 4) as u64),
                Arg::ptr(out.ptr()),
                Arg::val((out_dims[0] * out_dims[1]) as i32),
                Arg::val(plane_hw.0 as i32),
                Arg::val(plane_hw.1 as i32),
                Arg::val(s as i32),
            ],
        )?;
    }
    Ok(Tensor::from_device_buffer(
        out,
        out_dims.to_vec(),
        DType::F32,
        src.device(),
    ))
}

/// `x` contiguous `[N, C, H, W]`.
pub fn forward(simt: &SimtDevice, x: &Tensor, s: usize) -> Result<Tensor> {
    let d = x.dims();
    launch(
        simt,
        "upsample_nearest2d_f32",
        x,
        [d[0], d[1], d[2] * s, d[3] * s],
        (d[2], d[3]),
        s,
    )
}

/// `dy` contiguous `[N, C, H·s, W·s]`.
pub fn backward(simt: &SimtDevice, dy: &Tensor, s: usize) -> Result<Tensor> {
    let d = dy.dims();
    let (h, w) = (d[2] / s, d[3] / s);
    launch(
        simt,
        "upsample_nearest2d_backward_f32",
        dy,
        [d[0], d[1], h, w],
        (h, w),
        s,
    )
}
