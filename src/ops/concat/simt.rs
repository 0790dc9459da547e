//! Launch logic for kernels/concat.cu: one `concat_copy_f32` launch per non-empty input,
//! one thread per input element (grid-stride, at most `MAX_BLOCKS` blocks of 256).

use super::ConcatPlan;
use crate::device::simt::{Arg, KernelLayout, LaunchConfig, SimtDevice};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 2048;

pub fn concat(simt: &SimtDevice, tensors: &[&Tensor], plan: &ConcatPlan) -> Result<Tensor> {
    let numel = plan.out_shape.numel();
    if numel > i32::MAX as usize {
        return Err(Error::shape(
            "concat",
            format!(
                "output shape {} has {numel} elements, over the 2^31-1 limit of the CUDA kernels",
                plan.out_shape
            ),
        ));
    }
    let out = simt.alloc(numel * 4)?;
    for (t, &(start, len)) in tensors.iter().zip(&plan.spans) {
        let n = t.numel();
        if n == 0 {
            continue;
        }
        let blocks = n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
        simt.launch(
            "concat_copy_f32",
            &LaunchConfig {
                grid: (blocks as u32, 1, 1),
                block: (THREADS, 1, 1),
                shared_bytes: 0,
            },
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
