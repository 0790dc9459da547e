//! Rounding f32 → bf16 and packing operand panels into the tile layouts.
//!
//! Both panels are made of *strips* of 16 rows (A) or 16 columns (B) and, within a strip,
//! *chunks* of 32 k values (a panel's k is padded to a multiple of 32, its rows/columns to
//! a multiple of 32, with zeros). One chunk of one strip is 1 KiB, 16 lines of 64 bytes,
//! exactly one AMX tile:
//! - A: line `r` holds the 32 k values of row `r` (`[strip][chunk][row 16][k 32]`);
//! - B: line `q` holds, for the 16 columns, the pair of k values `2q, 2q + 1` of the chunk
//!   (the VNNI pair layout, `[strip][chunk][pair 16][col 16][2]`), so a 32-bit word of
//!   line `q` is `(b[2q+1][j] << 16) | b[2q][j]`, what `tdpbf16ps`'s B tile and
//!   `vdpbf16ps`'s B vector take.
//!
//! The scalar, AVX-512F and AVX512-BF16 packers produce the same bits (the unit tests below
//! compare them on special values, every layout and the tails).

/// One 64-byte line of 32 bf16 values (the unit of the packed panels, cache-line aligned).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [u16; 32]);

/// Lines per chunk (16 rows or 16 pairs of one strip).
pub(crate) const CHUNK_LINES: usize = 16;

/// `x` rounded to bf16, to nearest with ties to even. NaN stays NaN (made quiet, sign
/// kept); zeros and denormals become a signed zero (what the bf16 units do with a
/// denormal input, so every path sees the same operands); a value that rounds past the
/// largest bf16 becomes infinity.
#[inline]
pub fn round_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of a bf16.
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A strided f32 matrix: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Src {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

impl Src {
    #[inline]
    unsafe fn at(self, i: usize, j: usize) -> f32 {
        *self.ptr.add(i * self.rs + j * self.cs)
    }
}

/// How the packers round: scalar code, AVX-512F integer arithmetic, or AVX512-BF16's
/// conversion instruction — the same bits (the tests compare them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packer {
    Scalar,
    Avx512,
    Avx512Bf16,
}

impl Packer {
    /// The fastest this CPU (after `DUEL_CPU_ISA`) runs.
    pub fn detected() -> Packer {
        let isa = crate::device::cpu::isa::isa();
        match cfg!(target_arch = "x86_64") {
            true if isa.avx512_bf16 => Packer::Avx512Bf16,
            true if isa.avx512f => Packer::Avx512,
            _ => Packer::Scalar,
        }
    }
}

/// `packer`'s vector function `f` (never called with `Packer::Scalar`).
#[cfg(target_arch = "x86_64")]
macro_rules! vector {
    ($packer:expr, $f:ident($($arg:expr),*)) => {
        match $packer {
            Packer::Avx512Bf16 => avx512bf16::$f($($arg),*),
            _ => avx512::$f($($arg),*),
        }
    };
}

/// Lines of a panel of `n` rows (A) or columns (B), k padded to `chunks·32`.
pub(crate) fn panel_lines(n: usize, chunks: usize) -> usize {
    n.div_ceil(32) * 2 * chunks * CHUNK_LINES
}

/// Pack rows `0..m`, k `0..kc` of `a` into `out` (A layout, `chunks = ceil(kc / 32)`).
///
/// # Safety
/// `a` readable at every `(i, p)`, `i < m`, `p < kc`; `out` holds `panel_lines(m, chunks)`.
pub(crate) unsafe fn pack_a(a: Src, m: usize, kc: usize, out: &mut [Line], packer: Packer) {
    let chunks = kc.div_ceil(32);
    let strips = m.div_ceil(32) * 2;
    debug_assert!(out.len() >= strips * chunks * CHUNK_LINES);
    for s in 0..strips {
        for c in 0..chunks {
            let k0 = c * 32;
            let kn = (kc - k0).min(32);
            for r in 0..16 {
                let i = s * 16 + r;
                let line = &mut out[(s * chunks + c) * CHUNK_LINES + r];
                if i >= m {
                    *line = Line::default();
                    continue;
                }
                let from = Src {
                    ptr: a.ptr.add(i * a.rs + k0 * a.cs),
                    ..a
                };
                #[cfg(target_arch = "x86_64")]
                if packer != Packer::Scalar && a.rs == 1 && a.cs != 1 {
                    if r == 0 {
                        // i runs along each column: pack the chunk's 16 lines at once.
                        let lines = &mut out[(s * chunks + c) * CHUNK_LINES..][..CHUNK_LINES];
                        vector!(
                            packer,
                            chunk_from_rows(from.ptr, a.cs, (m - i).min(16), kn, lines)
                        );
                    }
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                if packer != Packer::Scalar {
                    vector!(packer, row32(from.ptr, from.cs, kn, line));
                    continue;
                }
                let _ = packer;
                for q in 0..32 {
                    line.0[q] = if q < kn { round_bf16(from.at(0, q)) } else { 0 };
                }
            }
        }
    }
}

/// Pack k `0..kc`, columns `0..n` of `b` into `out` (B layout, `chunks = ceil(kc / 32)`).
///
/// # Safety
/// `b` readable at every `(p, j)`, `p < kc`, `j < n`; `out` holds `panel_lines(n, chunks)`.
pub(crate) unsafe fn pack_b(b: Src, kc: usize, n: usize, out: &mut [Line], packer: Packer) {
    let chunks = kc.div_ceil(32);
    let strips = n.div_ceil(32) * 2;
    debug_assert!(out.len() >= strips * chunks * CHUNK_LINES);
    // One line: pair q of chunk c of strip t.
    let line_of = |t: usize, c: usize, q: usize, out: &mut [Line]| {
        let j0 = t * 16;
        let jn = n.saturating_sub(j0).min(16);
        let p0 = c * 32 + 2 * q;
        let line = &mut out[(t * chunks + c) * CHUNK_LINES + q];
        // Rows past kc, columns past n: zeros.
        let rows = kc.saturating_sub(p0).min(2);
        if jn == 0 || rows == 0 {
            *line = Line::default();
            return;
        }
        let at = |p: usize| b.ptr.add(p * b.rs + j0 * b.cs);
        #[cfg(target_arch = "x86_64")]
        if packer != Packer::Scalar && b.rs == 1 && b.cs != 1 {
            if q == 0 {
                // k runs along each column: pack the chunk's 16 lines at once.
                let lines = &mut out[(t * chunks + c) * CHUNK_LINES..][..CHUNK_LINES];
                let kn = (kc - c * 32).min(32);
                vector!(packer, chunk_from_columns(at(c * 32), b.cs, jn, kn, lines));
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if packer != Packer::Scalar {
            let second = (rows == 2).then(|| at(p0 + 1));
            vector!(packer, pair_row16(at(p0), second, b.cs, jn, line));
            return;
        }
        for j in 0..16 {
            let (lo, hi) = if j < jn {
                let lo = round_bf16(*at(p0).add(j * b.cs));
                let hi = if rows == 2 {
                    round_bf16(*at(p0 + 1).add(j * b.cs))
                } else {
                    0
                };
                (lo, hi)
            } else {
                (0, 0)
            };
            line.0[2 * j] = lo;
            line.0[2 * j + 1] = hi;
        }
    };
    // Rows contiguous along j (a row-major operand, conv's columns): one pair of rows at a
    // time across every strip — two read streams, where strip by strip read a line of
    // each of the block's `kc` rows in turn (dcgan28 D.conv2 forward 3.15–3.53 → 3.02–3.16
    // ms, G.convt1 forward 3.00–3.16 → 2.70–2.93, p10 of 4 interleaved runs each, a noisy
    // host); else strip by strip (the column-major path packs a chunk at once).
    if b.cs == 1 {
        for c in 0..chunks {
            for q in 0..16 {
                for t in 0..strips {
                    line_of(t, c, q, out);
                }
            }
        }
    } else {
        for t in 0..strips {
            for c in 0..chunks {
                for q in 0..16 {
                    line_of(t, c, q, out);
                }
            }
        }
    }
}

/// The vector packers of `pack_a` / `pack_b`, one module per way of rounding (the same
/// body, the same bits): `$round` gives `line` (32 values of two vectors as one line of
/// bf16, the first vector's 16 first) and `words` (lane `j`: `(ρ(hi[j]) << 16) | ρ(lo[j])`).
macro_rules! vector_packers {
    ($name:ident, $features:literal, $round:ident, $doc:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[doc = $doc]
        pub(crate) mod $name {
            use super::$round::{line as line_of, words};
            use super::Line;
            use std::arch::x86_64::*;

            /// Up to 16 values `p[0], p[s], …` (`count` of them, zeros after).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn load16(p: *const f32, s: usize, count: usize) -> __m512 {
                let mask: __mmask16 = if count >= 16 {
                    0xffff
                } else {
                    (1u16 << count) - 1
                };
                if s == 1 {
                    return _mm512_maskz_loadu_ps(mask, p);
                }
                if s <= (i32::MAX as usize) / 64 {
                    let s = s as i32;
                    let idx = _mm512_mullo_epi32(
                        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                        _mm512_set1_epi32(s),
                    );
                    return _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, p);
                }
                let mut v = [0f32; 16];
                for (j, x) in v.iter_mut().enumerate().take(count) {
                    *x = *p.add(j * s);
                }
                _mm512_loadu_ps(v.as_ptr())
            }

            /// One A line: `count` (≤ 32) values `p[0], p[s], …` rounded, zeros after.
            #[target_feature(enable = $features)]
            pub(in crate::ops::gemm_bf16) unsafe fn row32(
                p: *const f32,
                s: usize,
                count: usize,
                line: &mut Line,
            ) {
                let lo = load16(p, s, count.min(16));
                let hi = if count > 16 {
                    load16(p.add(16 * s), s, count - 16)
                } else {
                    _mm512_setzero_ps()
                };
                _mm512_storeu_si512(line.0.as_mut_ptr() as *mut __m512i, line_of(lo, hi));
            }

            /// The 16 x 16 transpose of 32-bit words: afterwards lane `j` of `rows[i]` is
            /// what lane `i` of `rows[j]` was. Four butterfly stages; stage `d` swaps bit
            /// `d` of the row and lane indices (two `vpermt2d` per pair of rows).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn transpose16(rows: &mut [__m512i; 16]) {
                for d in [8, 4, 2, 1] {
                    let (mut keep, mut take) = ([0i32; 16], [0i32; 16]);
                    for j in 0..16 {
                        let (lo, hi) = if j & d == 0 {
                            (j, j + d)
                        } else {
                            (16 + j - d, 16 + j)
                        };
                        keep[j] = lo as i32;
                        take[j] = hi as i32;
                    }
                    let keep = _mm512_loadu_si512(keep.as_ptr() as *const _);
                    let take = _mm512_loadu_si512(take.as_ptr() as *const _);
                    for i in (0..16).filter(|i| i & d == 0) {
                        let (a, b) = (rows[i], rows[i + d]);
                        rows[i] = _mm512_permutex2var_epi32(a, keep, b);
                        rows[i + d] = _mm512_permutex2var_epi32(a, take, b);
                    }
                }
            }

            /// Store 16 vectors as the 16 lines of a chunk.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn store_lines(words: &[__m512i; 16], lines: &mut [Line]) {
                for (line, w) in lines.iter_mut().zip(words) {
                    _mm512_storeu_si512(line.0.as_mut_ptr() as *mut __m512i, *w);
                }
            }

            /// One B chunk (16 lines) from columns whose k values are contiguous: column
            /// `j` (`j < cols ≤ 16`) holds `kn ≤ 32` values at `p + j·cs`. Each column's
            /// run rounded as an A line is 16 32-bit words, word `q` the pair (2q, 2q + 1) —
            /// line `q`'s word `j` of the B layout — so the chunk is the 16 x 16 transpose
            /// of those words.
            #[target_feature(enable = $features)]
            pub(in crate::ops::gemm_bf16) unsafe fn chunk_from_columns(
                p: *const f32,
                cs: usize,
                cols: usize,
                kn: usize,
                lines: &mut [Line],
            ) {
                let mut rows = [_mm512_setzero_si512(); 16];
                for (j, w) in rows.iter_mut().enumerate().take(cols) {
                    let col = p.add(j * cs);
                    let hi = if kn > 16 {
                        load16(col.add(16), 1, kn - 16)
                    } else {
                        _mm512_setzero_ps()
                    };
                    *w = line_of(load16(col, 1, kn.min(16)), hi);
                }
                transpose16(&mut rows);
                store_lines(&rows, lines);
            }

            /// One A chunk (16 lines) from rows whose values at one k are contiguous:
            /// value `(r, p)` (`r < rows ≤ 16`, `p < kn ≤ 32`) at `ptr + r + p·cs`. The
            /// pairs of k rounded as B lines give word `r` of vector `q` = the pair
            /// (2q, 2q + 1) of row `r` — word `q` of A's line `r` — so the chunk is again
            /// the 16 x 16 transpose.
            #[target_feature(enable = $features)]
            pub(in crate::ops::gemm_bf16) unsafe fn chunk_from_rows(
                p: *const f32,
                cs: usize,
                rows: usize,
                kn: usize,
                lines: &mut [Line],
            ) {
                let mut w = [_mm512_setzero_si512(); 16];
                for (q, v) in w.iter_mut().enumerate().take(kn.div_ceil(2)) {
                    let hi = if 2 * q + 1 < kn {
                        load16(p.add((2 * q + 1) * cs), 1, rows)
                    } else {
                        _mm512_setzero_ps()
                    };
                    *v = words(load16(p.add(2 * q * cs), 1, rows), hi);
                }
                transpose16(&mut w);
                store_lines(&w, lines);
            }

            /// One B line: for `count` (≤ 16) columns `j`, the pair `(p0[j·s], p1[j·s])`
            /// (p1 None: zero), zeros after.
            #[target_feature(enable = $features)]
            pub(in crate::ops::gemm_bf16) unsafe fn pair_row16(
                p0: *const f32,
                p1: Option<*const f32>,
                s: usize,
                count: usize,
                line: &mut Line,
            ) {
                let hi = match p1 {
                    Some(p1) => load16(p1, s, count),
                    None => _mm512_setzero_ps(),
                };
                let w = words(load16(p0, s, count), hi);
                _mm512_storeu_si512(line.0.as_mut_ptr() as *mut __m512i, w);
            }
        }
    };
}

vector_packers!(
    avx512,
    "avx512f",
    int_round,
    "The packers with AVX-512F: 16 values per load (a gather when strided), rounded by the \
     integer arithmetic of [`round_bf16`](super::round_bf16)."
);
vector_packers!(
    avx512bf16,
    "avx512f,avx512bf16",
    cvt_round,
    "The packers with AVX512-BF16's `vcvtne2ps2bf16`: one instruction rounds 32 values, \
     with the rules of [`round_bf16`](super::round_bf16) (Intel SDM: round to nearest \
     even, denormal inputs as zero, NaN made quiet)."
);

/// Rounding by integer arithmetic (AVX-512F), as [`round_bf16`].
#[cfg(target_arch = "x86_64")]
mod int_round {
    use std::arch::x86_64::*;

    /// 16 lanes rounded to bf16 (in the low half of each 32-bit lane), as `round_bf16`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round16(x: __m512) -> __m512i {
        let b = _mm512_castps_si512(x);
        let hi = _mm512_srli_epi32::<16>(b);
        let lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
            _mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)),
            lsb,
        ));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        let quiet = _mm512_or_si512(hi, _mm512_set1_epi32(0x40));
        let r = _mm512_mask_mov_epi32(rounded, nan, quiet);
        let tiny = _mm512_cmpeq_epi32_mask(
            _mm512_and_si512(b, _mm512_set1_epi32(0x7f80_0000)),
            _mm512_setzero_si512(),
        );
        let signed_zero = _mm512_and_si512(hi, _mm512_set1_epi32(0x8000));
        let r = _mm512_mask_mov_epi32(r, tiny, signed_zero);
        _mm512_and_si512(r, _mm512_set1_epi32(0xffff))
    }

    /// `lo` then `hi` rounded: one line of 32 bf16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn line(lo: __m512, hi: __m512) -> __m512i {
        let lo = _mm512_cvtepi32_epi16(round16(lo));
        let hi = _mm512_cvtepi32_epi16(round16(hi));
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    }

    /// Lane `j`: `(ρ(hi[j]) << 16) | ρ(lo[j])`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn words(lo: __m512, hi: __m512) -> __m512i {
        _mm512_or_si512(round16(lo), _mm512_slli_epi32::<16>(round16(hi)))
    }
}

/// Rounding by `vcvtne2ps2bf16` (AVX512-BF16).
#[cfg(target_arch = "x86_64")]
mod cvt_round {
    use std::arch::x86_64::*;

    /// `lo` then `hi` rounded: one line of 32 bf16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn line(lo: __m512, hi: __m512) -> __m512i {
        // The second operand fills the low 16 values.
        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
    }

    /// Lane `j`: `(ρ(hi[j]) << 16) | ρ(lo[j])`: the line's two halves interleaved.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn words(lo: __m512, hi: __m512) -> __m512i {
        const INTERLEAVE: [i16; 32] = {
            let mut idx = [0i16; 32];
            let mut j = 0;
            while j < 32 {
                idx[j] = if j % 2 == 0 { j / 2 } else { 16 + j / 2 } as i16;
                j += 1;
            }
            idx
        };
        let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr() as *const _);
        _mm512_permutexvar_epi16(idx, line(lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 values whose rounding has a rule: signed zeros, ties to even either way, the
    /// largest finite value (rounds to infinity) and the largest that does not, denormals
    /// (to signed zero), the smallest normal, infinities, NaNs with payloads and signs.
    const SPECIAL: [u32; 16] = [
        0x0000_0000,
        0x8000_0000,
        0x3f80_8000,
        0x3f81_8000,
        0xbf80_8001,
        0x7f7f_ffff,
        0x7f7f_7fff,
        0x0000_0001,
        0x8040_0000,
        0x0080_0000,
        0x7f80_0000,
        0xff80_0000,
        0x7fa0_0001,
        0xffc0_1234,
        0x3e2a_aaab,
        0xc2f6_e979,
    ];

    fn value(i: usize) -> f32 {
        match i % 3 {
            0 => f32::from_bits(SPECIAL[i / 3 % 16]),
            _ => (i as f32 * 0.618_034).sin() * 3.7,
        }
    }

    fn packers() -> Vec<Packer> {
        let best = Packer::detected();
        [Packer::Scalar, Packer::Avx512, Packer::Avx512Bf16]
            .into_iter()
            .filter(|&p| match p {
                Packer::Scalar => true,
                Packer::Avx512 => best != Packer::Scalar,
                Packer::Avx512Bf16 => best == Packer::Avx512Bf16,
            })
            .collect()
    }

    fn bits(lines: &[Line]) -> Vec<u16> {
        lines.iter().flat_map(|l| l.0).collect()
    }

    #[test]
    fn every_packer_gives_the_scalar_bits_on_every_layout() {
        let available = packers();
        assert!(available.len() > 1 || Packer::detected() == Packer::Scalar);
        // (rows, cols) of the operand, tails in both; row-major, column-major, strided.
        for (rows, cols) in [(37, 45), (16, 32), (5, 70), (64, 17)] {
            for (rs, cs) in [(cols, 1), (1, rows), (2 * cols + 1, 2)] {
                let len = (rows - 1) * rs + (cols - 1) * cs + 1;
                let data: Vec<f32> = (0..len).map(value).collect();
                let src = Src {
                    ptr: data.as_ptr(),
                    rs,
                    cs,
                };
                let a_lines = panel_lines(rows, cols.div_ceil(32));
                let b_lines = panel_lines(cols, rows.div_ceil(32));
                let pack = |p: Packer| {
                    let mut a = vec![Line([0xdead; 32]); a_lines];
                    let mut b = vec![Line([0xbeef; 32]); b_lines];
                    // SAFETY: every (i, j) < (rows, cols) is inside `data`; the panels
                    // hold panel_lines lines. B reads the same matrix as k x n.
                    unsafe {
                        pack_a(src, rows, cols, &mut a, p);
                        pack_b(src, rows, cols, &mut b, p);
                    }
                    (bits(&a), bits(&b))
                };
                let want = pack(Packer::Scalar);
                for &p in &available[1..] {
                    assert!(
                        pack(p) == want,
                        "{p:?} differs from scalar: {rows}x{cols}, strides ({rs}, {cs})"
                    );
                }
            }
        }
    }
}
