//! Launch logic for kernels/pad.cu: 1-D grid-stride launches
//! ([`LaunchConfig::grid_stride`]); one thread per output element (forward) or per input
//! element (backward).

use super::PadSpec;
use crate::device::simt::{kernel_int, Arg, LaunchConfig, SimtDevice};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

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
    kernel_int("pad2d", "output element count", n)?;
    kernel_int("pad2d", "input element count", src.numel())?;
    let out = simt.alloc_elems(DType::F32, n)?;
    if n > 0 {
        simt.launch(
            kernel,
            &LaunchConfig::grid_stride(n),
            &[
                Arg::ptr(src.view_ptr("pad2d")?),
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
