//! Reference conversions on the cpu: per element through the `half` crate (or `as` for
//! f32 ↔ f64), parallel above `PARALLEL_THRESHOLD`. Strided inputs are gathered first.

use crate::device::cpu::{CpuBuffer, PARALLEL_THRESHOLD};
use crate::error::Result;
use crate::ops::cpu_shared::gather;
use crate::tensor::{DType, Layout, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

fn map<S: Copy + Sync, D: Copy + Send + Default>(src: &[S], f: impl Fn(S) -> D + Sync) -> Vec<D> {
    if src.len() < PARALLEL_THRESHOLD {
        src.iter().map(|&v| f(v)).collect()
    } else {
        let mut out = vec![D::default(); src.len()];
        out.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(o, s)| {
                for (o, &s) in o.iter_mut().zip(s) {
                    *o = f(s);
                }
            });
        out
    }
}

/// Convert a cpu buffer's elements (already gathered) to `dtype`.
pub fn convert(buffer: &CpuBuffer, layout: &Layout, dtype: DType) -> CpuBuffer {
    match buffer {
        CpuBuffer::F32(v) => {
            let s = gather(v, layout);
            match dtype {
                DType::F32 => CpuBuffer::F32(s.into_owned()),
                DType::F64 => CpuBuffer::F64(map(&s, |x| x as f64)),
                DType::F16 => CpuBuffer::F16(map(&s, f16::from_f32)),
                DType::BF16 => CpuBuffer::BF16(map(&s, bf16::from_f32)),
            }
        }
        CpuBuffer::F64(v) => {
            let s = gather(v, layout);
            match dtype {
                DType::F32 => CpuBuffer::F32(map(&s, |x| x as f32)),
                DType::F64 => CpuBuffer::F64(s.into_owned()),
                DType::F16 => CpuBuffer::F16(map(&s, f16::from_f64)),
                DType::BF16 => CpuBuffer::BF16(map(&s, bf16::from_f64)),
            }
        }
        CpuBuffer::F16(v) => {
            let s = gather(v, layout);
            match dtype {
                DType::F32 => CpuBuffer::F32(map(&s, f16::to_f32)),
                DType::F64 => CpuBuffer::F64(map(&s, f16::to_f64)),
                DType::F16 => CpuBuffer::F16(s.into_owned()),
                DType::BF16 => CpuBuffer::BF16(map(&s, |x| bf16::from_f32(x.to_f32()))),
            }
        }
        CpuBuffer::BF16(v) => {
            let s = gather(v, layout);
            match dtype {
                DType::F32 => CpuBuffer::F32(map(&s, bf16::to_f32)),
                DType::F64 => CpuBuffer::F64(map(&s, bf16::to_f64)),
                DType::F16 => CpuBuffer::F16(map(&s, |x| f16::from_f32(x.to_f32()))),
                DType::BF16 => CpuBuffer::BF16(s.into_owned()),
            }
        }
    }
}

pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let out = {
        let buffer = x.cpu_buffer("cast")?;
        convert(&buffer, x.layout(), dtype)
    };
    Tensor::from_cpu_buffer(out, x.shape().clone())
}
