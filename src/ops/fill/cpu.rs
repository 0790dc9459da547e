//! Reference fill and arange on the cpu.

use crate::device::cpu::{try_filled, CpuBuffer, PARALLEL_THRESHOLD};
use crate::error::Result;
use crate::tensor::{DType, Shape};
use half::{bf16, f16};
use rayon::prelude::*;

/// `value` rounded once to `dtype`, for every element of `shape` (an error when the
/// memory cannot be had: [`try_filled`]).
pub fn full(shape: &Shape, value: f64, dtype: DType) -> Result<CpuBuffer> {
    Ok(match dtype {
        DType::F32 => CpuBuffer::F32(try_filled("full", shape, value as f32)?),
        DType::F64 => CpuBuffer::F64(try_filled("full", shape, value)?),
        DType::F16 => CpuBuffer::F16(try_filled("full", shape, f16::from_f64(value))?),
        DType::BF16 => CpuBuffer::BF16(try_filled("full", shape, bf16::from_f64(value))?),
    })
}

/// Element `i` of arange: `start + i·step` in f64.
#[inline]
pub fn arange_value(start: f64, step: f64, i: usize) -> f64 {
    start + (i as f64) * step
}

fn generate<T: Copy + Send + Default>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n < PARALLEL_THRESHOLD {
        (0..n).map(f).collect()
    } else {
        let mut out = vec![T::default(); n];
        out.par_chunks_mut(1 << 14)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = f(c * (1 << 14) + j);
                }
            });
        out
    }
}

/// `n` values `start + i·step` (f64), rounded to f32 and then, for f16/bf16, from f32.
pub fn arange(n: usize, start: f64, step: f64, dtype: DType) -> CpuBuffer {
    let f32_at = move |i| arange_value(start, step, i) as f32;
    match dtype {
        DType::F32 => CpuBuffer::F32(generate(n, f32_at)),
        DType::F64 => CpuBuffer::F64(generate(n, |i| arange_value(start, step, i))),
        DType::F16 => CpuBuffer::F16(generate(n, |i| f16::from_f32(f32_at(i)))),
        DType::BF16 => CpuBuffer::BF16(generate(n, |i| bf16::from_f32(f32_at(i)))),
    }
}
