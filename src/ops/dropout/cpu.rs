//! Reference dropout on the cpu (f32 and f64), parallel above `PARALLEL_THRESHOLD`. The
//! mask is `uniform_at(seed, offset + i) >= p` in f32, as in kernels/dropout.cu; kept
//! elements are multiplied by the scale rounded to the element type.

use crate::device::cpu::PARALLEL_THRESHOLD;
use crate::error::Result;
use crate::ops::cpu_shared::map_real;
use crate::ops::rng::{philox_block, uniform_from_word};
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;

/// Elements per parallel chunk (a multiple of 4: Philox blocks stay whole when the
/// offset is aligned).
const CHUNK: usize = 1 << 14;

fn mask_typed<T: Element + std::ops::Mul<Output = T>>(
    x: &[T],
    p: f64,
    seed: u64,
    offset: u64,
) -> Vec<T> {
    let pf = p as f32;
    let scale = T::from_f64(super::keep_scale(p));
    let zero = T::from_f64(0.0);
    let mut out: Vec<T> = bytemuck::zeroed_vec(x.len());
    let run = |start: usize, o: &mut [T]| {
        let mut block = u64::MAX;
        let mut words = [0u32; 4];
        for (j, out) in o.iter_mut().enumerate() {
            let q = offset + (start + j) as u64;
            if q / 4 != block {
                block = q / 4;
                words = philox_block(seed, block);
            }
            let u = uniform_from_word(words[(q % 4) as usize]);
            *out = if u >= pf { x[start + j] * scale } else { zero };
        }
    };
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| run(c * CHUNK, o));
    } else {
        run(0, &mut out);
    }
    out
}

/// `x` contiguous.
pub fn apply_mask(x: &Tensor, p: f64, seed: u64, offset: u64) -> Result<Tensor> {
    map_real(
        "dropout",
        x,
        x.dims(),
        |v| mask_typed(v, p, seed, offset),
        |v| mask_typed(v, p, seed, offset),
    )
}
