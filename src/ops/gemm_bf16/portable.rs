//! The portable block: the same packed bf16 operands, each product (exact in f32: two 8-bit
//! significands) added to an f32 accumulator by plain loops, k in increasing order.

use super::pack::{bf16_to_f32, Line, CHUNK_LINES};

/// As `amx::block`: `C[32x32] (+)= A·B` over `chunks` chunks.
///
/// # Safety
/// `a`, `b` hold `2·chunks·16` lines; `c` is writable at 32 rows of 32 elements with
/// stride `ldc`.
pub(super) unsafe fn block(
    a: *const Line,
    b: *const Line,
    chunks: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let strip = chunks * CHUNK_LINES;
    let a = std::slice::from_raw_parts(a, 2 * strip);
    let b = std::slice::from_raw_parts(b, 2 * strip);
    for (ha, a_strip) in a.chunks_exact(strip).enumerate() {
        for (hb, b_strip) in b.chunks_exact(strip).enumerate() {
            tile16(a_strip, b_strip, c.add(16 * ha * ldc + 16 * hb), ldc, load);
        }
    }
}

unsafe fn tile16(a: &[Line], b: &[Line], c: *mut f32, ldc: usize, load: bool) {
    let mut acc = [[0f32; 16]; 16];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(std::slice::from_raw_parts(c.add(r * ldc), 16));
        }
    }
    for (a_chunk, b_chunk) in a.chunks_exact(CHUNK_LINES).zip(b.chunks_exact(CHUNK_LINES)) {
        for (q, pair) in b_chunk.iter().enumerate() {
            let mut even = [0f32; 16];
            let mut odd = [0f32; 16];
            for j in 0..16 {
                even[j] = bf16_to_f32(pair.0[2 * j]);
                odd[j] = bf16_to_f32(pair.0[2 * j + 1]);
            }
            for (row, line) in acc.iter_mut().zip(a_chunk) {
                let a0 = bf16_to_f32(line.0[2 * q]);
                let a1 = bf16_to_f32(line.0[2 * q + 1]);
                for j in 0..16 {
                    row[j] += a0 * even[j];
                }
                for j in 0..16 {
                    row[j] += a1 * odd[j];
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        std::slice::from_raw_parts_mut(c.add(r * ldc), 16).copy_from_slice(row);
    }
}
