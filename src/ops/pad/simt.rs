//! Launch logic for kernels/pad.cu: 1-D grid-stride launches, 256 threads per block, at
//! most `MAX_BLOCKS` blocks; one thread per output element (forward) or per input
//! element (backward).

use super::PadSpec;
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
    h: usize,
    w: usize,
    p: PadSpec,
) -> Result<Tensor> {
    let n: usize = out_dims.iter().product();
    if n > i32::MAX as usize || src.numel() > i32::MAX as usize {
        return Err(Error::shape(
            "pad2d",
            format!("{n} elements exceed the 2^31-1 limit of the CUDA kernels"),
        ));
    }
    if src.dtype() != DType::F32 {
        return Err(Error::dtype(
            "pad2d",
            format!("pad2d on {} takes f32, got {}", src.device(), src.dtype()),
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
                Arg::ptr(src.device_ptr("pad2d")? + (src.layout().offset * 4) as u64),
                Arg::ptr(out.ptr()),
                Arg::val((out_dims[0] * out_dims[1]) as i32),
                Arg::val(h as i32),
                Arg::val(w as i32),
                Arg::val(p.left as i32),
                Arg::val(p.right as i32),
                Arg::val(p.top as i32),
                Arg::val(p.bottom as i32),
                Arg::val(p.mode.code()),
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
pub fn forward(simt: &SimtDevice, x: &Tensor, p: PadSpec) -> Result<Tensor> {
    let d = x.dims();
    let (h, w) = (d[2], d[3]);
    let out = [d[0], d[1], h + p.top + p.bottom, w + p.left + p.right];
    launch(simt, "pad2d_f32", x, out, h, w, p)
}

/// `dy` contiguous `[N, C, H+top+bottom, W+left+right]`.
pub fn backward(simt: &SimtDevice, dy: &Tensor, h: usize, w: usize, p: PadSpec) -> Result<Tensor> {
    let d = dy.dims();
    launch(simt, "pad2d_backward_f32", dy, [d[0], d[1], h, w], h, w, p)
}
