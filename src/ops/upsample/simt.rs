//! Launch logic for kernels/upsample.cu: 1-D grid-stride launches
//! ([`LaunchConfig::grid_stride`]); one thread per output element (forward) or per input
//! element (backward).

use crate::device::simt::{kernel_int, Arg, LaunchConfig, SimtDevice};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

fn launch(
    simt: &SimtDevice,
    kernel: &str,
    src: &Tensor,
    out_dims: [usize; 4],
    plane_hw: (usize, usize),
    s: usize,
) -> Result<Tensor> {
    let n: usize = out_dims.iter().product();
    kernel_int("upsample_nearest2d", "output element count", n)?;
    kernel_int("upsample_nearest2d", "input element count", src.numel())?;
    let out = simt.alloc_elems(DType::F32, n)?;
    if n > 0 {
        simt.launch(
            kernel,
            &LaunchConfig::grid_stride(n),
            &[
                Arg::ptr(src.view_ptr("upsample_nearest2d")?),
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
