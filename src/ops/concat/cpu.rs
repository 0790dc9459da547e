//! Reference concat on the cpu, any dtype: each input (gathered to row-major order when
//! strided) is copied in `chunk`-long rows into its columns of the `[outer, total]` output.

use super::ConcatPlan;
use crate::device::cpu::CpuBuffer;
use crate::error::Result;
use crate::ops::cpu_shared::gather;
use crate::tensor::{Layout, Tensor};

fn copy_rows<T: Copy>(
    src: &[T],
    layout: &Layout,
    out: &mut [T],
    plan: &ConcatPlan,
    start: usize,
    len: usize,
) {
    let chunk = len * plan.inner;
    if chunk == 0 {
        return;
    }
    let s = gather(src, layout);
    let col = start * plan.inner;
    for (o, row) in s.chunks(chunk).enumerate() {
        let at = o * plan.total + col;
        out[at..at + chunk].copy_from_slice(row);
    }
}

pub fn concat(tensors: &[&Tensor], plan: &ConcatPlan) -> Result<Tensor> {
    let mut out = CpuBuffer::zeros(tensors[0].dtype(), plan.out_shape.numel());
    for (t, &(start, len)) in tensors.iter().zip(&plan.spans) {
        let b = t.cpu_buffer("concat")?;
        let l = t.layout();
        match (&*b, &mut out) {
            (CpuBuffer::F32(s), CpuBuffer::F32(o)) => copy_rows(s, l, o, plan, start, len),
            (CpuBuffer::F64(s), CpuBuffer::F64(o)) => copy_rows(s, l, o, plan, start, len),
            (CpuBuffer::F16(s), CpuBuffer::F16(o)) => copy_rows(s, l, o, plan, start, len),
            (CpuBuffer::BF16(s), CpuBuffer::BF16(o)) => copy_rows(s, l, o, plan, start, len),
            _ => unreachable!("dtypes checked by concat"),
        }
    }
    Tensor::from_cpu_buffer(out, plan.out_shape.clone())
}
