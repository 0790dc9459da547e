//! The microkernels: one `MR x NR` tile of `C` from a packed `A` micro-panel (`kc x MR`,
//! k-major) and a packed `B` micro-panel (`kc x NR`, k-major).
//!
//! Both versions form every element the same way, which is the engine's whole contract:
//! `acc = 0; for p in 0..kc { acc = fma(a[p], b[p], acc) }`, then `c = acc` (the first
//! k-block of an overwriting product) or `c = c + acc`. The AVX2 version keeps the tile
//! in 12 ymm registers (6 rows x 2 vectors of 8), the portable one in an array; the
//! arithmetic, and so every bit, is the same. The AVX-512 version ([`quad`]) computes
//! four tiles at once — two `A` panels against two `B` panels, 12 x 32 in 24 zmm
//! registers — with the same chains, so again the same bits.

use super::{Loops, MR, NR};

/// Where a tile goes: `rows x cols` (at most `MR x NR`) of `C` at `c`, row stride `ldc`;
/// `overwrite` for the first k-block of a product that does not accumulate.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub c: *mut f32,
    pub ldc: usize,
    pub rows: usize,
    pub cols: usize,
    pub overwrite: bool,
}

/// Writes the accumulators `acc` (`MR x NR`, row-major) into the tile's valid part.
///
/// # Safety
/// `tile.c` must be writable at `i·ldc + j` for `i < rows`, `j < cols`.
#[inline]
unsafe fn store(acc: &[f32; MR * NR], tile: Tile) {
    for i in 0..tile.rows {
        let row = std::slice::from_raw_parts_mut(tile.c.add(i * tile.ldc), tile.cols);
        let src = &acc[i * NR..][..tile.cols];
        if tile.overwrite {
            row.copy_from_slice(src);
        } else {
            row.iter_mut().zip(src).for_each(|(c, &s)| *c += s);
        }
    }
}

/// One tile: `a` a packed `A` micro-panel, `b` the `B` micro-panel with its k rows `ldb`
/// apart (`NR` when packed, the matrix's row stride when read in place).
///
/// # Safety
/// `a` holds `kc·MR` values, `b` is readable at `p·ldb + j` (p < kc, j < NR); the tile as
/// [`store`]; `Loops::Avx2` only on a CPU with AVX2 and FMA.
#[inline]
pub(super) unsafe fn tile(
    loops: Loops,
    kc: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    t: Tile,
) {
    #[cfg(target_arch = "x86_64")]
    if loops == Loops::Avx2 {
        // The rows a tile really has: an edge panel's padding rows are not computed.
        return match t.rows {
            6 => tile_avx2::<6>(kc, a, (b, ldb), t),
            5 => tile_avx2::<5>(kc, a, (b, ldb), t),
            4 => tile_avx2::<4>(kc, a, (b, ldb), t),
            3 => tile_avx2::<3>(kc, a, (b, ldb), t),
            2 => tile_avx2::<2>(kc, a, (b, ldb), t),
            _ => tile_avx2::<1>(kc, a, (b, ldb), t),
        };
    }
    tile_portable(kc, a, (b, ldb), t)
}

/// The portable tile: `f32::mul_add` (one rounding, as the hardware FMA).
unsafe fn tile_portable(kc: usize, a: *const f32, (b, ldb): (*const f32, usize), t: Tile) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let mut acc = [0f32; MR * NR];
    for (p, ap) in a.chunks_exact(MR).enumerate() {
        let bp = std::slice::from_raw_parts(b.add(p * ldb), NR);
        for (i, &ai) in ap.iter().enumerate().take(t.rows) {
            for (c, &bj) in acc[i * NR..][..NR].iter_mut().zip(bp) {
                *c = ai.mul_add(bj, *c);
            }
        }
    }
    store(&acc, t)
}

/// The AVX2 tile of `R` rows: per k, two loads of `B`'s 16 values, `R` broadcasts of
/// `A`'s, `2R` FMAs into the register-resident tile (two FMA pipes at latency 4 need 8
/// chains in flight; the full tile's 12 hide it with room for the loads). A tile of full
/// width is added to `C` with vector loads and stores; a narrower one through [`store`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(
    kc: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    t: Tile,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for i in 0..R {
            let ai = _mm256_broadcast_ss(&*a.add(i));
            acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
        a = a.add(MR);
        b = b.add(ldb);
    }
    if t.cols == NR {
        for (i, pair) in acc.chunks_exact(2).enumerate().take(R) {
            let c = t.c.add(i * t.ldc);
            let (lo, hi) = match t.overwrite {
                true => (pair[0], pair[1]),
                false => (
                    _mm256_add_ps(_mm256_loadu_ps(c), pair[0]),
                    _mm256_add_ps(_mm256_loadu_ps(c.add(8)), pair[1]),
                ),
            };
            _mm256_storeu_ps(c, lo);
            _mm256_storeu_ps(c.add(8), hi);
        }
        return;
    }
    let mut out = [0f32; MR * NR];
    for (i, v) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *v);
    }
    store(&out, t)
}

/// Two adjacent `A` micro-panels (rows 0-5 at `a`, rows 6-11 at `a + MR·kc`) against two
/// `B` micro-panels (columns 0-15 and 16-31, each with its own k stride): a `12 x 32`
/// block of `C` whose valid part is `t.rows x t.cols`. Only the panels the valid part
/// touches are read.
#[derive(Clone, Copy)]
pub(super) struct Quad {
    pub a: *const f32,
    pub b: [(*const f32, usize); 2],
}

/// The AVX-512 tiles: [`Quad`] in one pass, `R` rows (up to 12) and `V` (1 or 2) vectors
/// of 16 columns by const generics, so the accumulators stay in registers.
///
/// # Safety
/// As [`tile`] for each panel the valid part touches; AVX-512F only (`Loops::Avx512`).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn quad(kc: usize, q: Quad, t: Tile) {
    macro_rules! rows {
        ($v:literal) => {
            match t.rows {
                12 => quad_avx512::<12, $v>(kc, q, t),
                11 => quad_avx512::<11, $v>(kc, q, t),
                10 => quad_avx512::<10, $v>(kc, q, t),
                9 => quad_avx512::<9, $v>(kc, q, t),
                8 => quad_avx512::<8, $v>(kc, q, t),
                7 => quad_avx512::<7, $v>(kc, q, t),
                6 => quad_avx512::<6, $v>(kc, q, t),
                5 => quad_avx512::<5, $v>(kc, q, t),
                4 => quad_avx512::<4, $v>(kc, q, t),
                3 => quad_avx512::<3, $v>(kc, q, t),
                2 => quad_avx512::<2, $v>(kc, q, t),
                _ => quad_avx512::<1, $v>(kc, q, t),
            }
        };
    }
    match t.cols > NR {
        true => rows!(2),
        false => rows!(1),
    }
}

/// Per k: `V` loads of `B`, `R` broadcasts of `A`, `R·V` FMAs (24 chains for the full
/// quad: two FMA pipes at latency 4 need 8). Full-width rows are stored with vector
/// loads and stores, a narrower block through [`store`] per tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quad_avx512<const R: usize, const V: usize>(kc: usize, q: Quad, t: Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    // Read only when R > MR (the second panel exists then).
    let a1 = q.a.wrapping_add(MR * kc);
    for p in 0..kc {
        let mut b = [_mm512_setzero_ps(); V];
        for (v, bv) in b.iter_mut().enumerate() {
            *bv = _mm512_loadu_ps(q.b[v].0.add(p * q.b[v].1));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let a = match i < MR {
                true => q.a.add(p * MR + i),
                false => a1.add(p * MR + i - MR),
            };
            let ai = _mm512_set1_ps(*a);
            for (c, bv) in row.iter_mut().zip(&b) {
                *c = _mm512_fmadd_ps(ai, *bv, *c);
            }
        }
    }
    if t.cols == V * NR {
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let c = t.c.add(i * t.ldc + v * NR);
                let x = match t.overwrite {
                    true => x,
                    false => _mm512_add_ps(_mm512_loadu_ps(c), x),
                };
                _mm512_storeu_ps(c, x);
            }
        }
        return;
    }
    // Edge: each of the (up to four) tiles through `store`.
    for half in 0..R.div_ceil(MR) {
        for v in 0..V {
            let cols = t.cols.saturating_sub(v * NR).min(NR);
            if cols == 0 {
                continue;
            }
            let rows = (R - half * MR).min(MR);
            let mut out = [0f32; MR * NR];
            for (i, row) in acc[half * MR..][..rows].iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(i * NR), row[v]);
            }
            let tile = Tile {
                c: t.c.add(half * MR * t.ldc + v * NR),
                rows,
                cols,
                ..t
            };
            store(&out, tile);
        }
    }
}
