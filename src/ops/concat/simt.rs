//! Launch logic for kernels/concat.cu: one `concat_copy_f32` launch per non-empty input,
//! one thread per input element ([`LaunchConfig::grid_stride`]).

use super::ConcatPlan;
use crate::device::simt::{kernel_count, Arg, KernelLayout, LaunchConfig, SimtDevice};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

pub fn concat(simt: &SimtDevice, tensors: &[&Tensor], plan: &ConcatPlan) -> Result<Tensor> {
    let numel = kernel_count("concat", &plan.out_shape)? as usize;
    let out = simt.alloc_elems(DType::F32, numel)?;
    for (t, &(start, len)) in tensors.iter().zip(&plan.spans) {
        let n = t.numel();
        if n == 0 {
            continue;
        }
        simt.launch(
            "concat_copy_f32",
            &LaunchConfig::grid_stride(n),
            &[
                Arg::val(KernelLayout::new("concat", t.layout())?),
                Arg::ptr(t.device_ptr("concat")?),
                Arg::ptr(out.ptr()),
                Arg::val(n as i32),
                Arg::val((len * plan.inner) as i32),
                Arg::val(plan.total as i32),
                Arg::val((start * plan.inner) as i32),
            ],
        )?;
    }
    Ok(Tensor::from_device_buffer(
        out,
        plan.out_shape.clone(),
        DType::F32,
        tensors[0].device(),
    ))
}
