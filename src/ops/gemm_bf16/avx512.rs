//! The AVX512-BF16 block: a 32x32 block of C as four 8x32 register blocks (16 zmm
//! accumulators each); per pair of k, two B vectors (16 columns x 2 bf16, the VNNI line of
//! `pack.rs`), one broadcast A pair per row and two `vdpbf16ps` per row.

use super::pack::{Line, CHUNK_LINES};
use std::arch::x86_64::*;

/// As `amx::block`: `C[32x32] (+)= A·B` over `chunks` chunks.
///
/// # Safety
/// AVX-512F and AVX512-BF16 detected; `a`, `b` hold `2·chunks·16` lines; `c` is writable
/// at 32 rows of 32 elements with stride `ldc`.
#[target_feature(enable = "avx512bf16,avx512f")]
pub(super) unsafe fn block(
    a: *const Line,
    b: *const Line,
    chunks: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let strip = chunks * CHUNK_LINES;
    for half in 0..2 {
        let a_strip = a.add(half * strip);
        for r0 in [0, 8] {
            rows8(
                a_strip,
                r0,
                b,
                b.add(strip),
                chunks,
                c.add((half * 16 + r0) * ldc),
                ldc,
                load,
            );
        }
    }
}

#[inline]
#[target_feature(enable = "avx512bf16,avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows8(
    a: *const Line,
    r0: usize,
    b0: *const Line,
    b1: *const Line,
    chunks: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; 8];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm512_loadu_ps(c.add(r * ldc));
            row[1] = _mm512_loadu_ps(c.add(r * ldc + 16));
        }
    }
    for ch in 0..chunks {
        let lines = a.add(ch * CHUNK_LINES + r0) as *const u32;
        let bl0 = b0.add(ch * CHUNK_LINES);
        let bl1 = b1.add(ch * CHUNK_LINES);
        for q in 0..16 {
            let v0: __m512bh = std::mem::transmute(_mm512_load_si512(bl0.add(q) as *const _));
            let v1: __m512bh = std::mem::transmute(_mm512_load_si512(bl1.add(q) as *const _));
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = *lines.add(r * 16 + q) as i32;
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                row[0] = _mm512_dpbf16_ps(row[0], av, v0);
                row[1] = _mm512_dpbf16_ps(row[1], av, v1);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), row[0]);
        _mm512_storeu_ps(c.add(r * ldc + 16), row[1]);
    }
}
