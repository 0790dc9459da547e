//! duel's own f32 GEMM, `C (m x n, row stride ldc) (+)= A · B` on strided operands: the
//! engine `cpu_gemm` runs on CPUs with AVX2 and FMA but without AVX-512 (AMD Zen as VMs
//! often expose it, Intel client parts). Measured there against the `gemm` crate
//! (`duel bench --filter square`, `--filter "D.conv2"`): equal on square products (~86% of
//! the FMA peak at 1024³) and on one thread, ~25% faster on the input and weight gradients
//! of dcgan28's D.conv2 at 2 threads (the product cut into two column halves, each packing
//! only its half of `B`), and no allocation per call. On CPUs with AVX-512 it runs its
//! 12 x 32 AVX-512 tiles for the shallow products where they beat the crate
//! (`AVX512_MAX_K`); the deep ones keep the crate's 16-lane kernels.
//!
//! **Blocking** (the BLIS scheme): the columns in blocks of `NC` = 2048, `k` in blocks
//! of `KC` = 256; per `(NC, KC)` block `B` is packed once into `kc x NR` micro-panels
//! (or, for a short `k`, read in place) and all of the part's rows of `A` into `kc x MR`
//! micro-panels; the `MR x NR` tile loop then walks blocks of `MC` = 144 rows, one `B`
//! micro-panel (16 KiB) in L1 against an `A` block (144 KiB) in L2.
//!
//! **Every element's arithmetic is fixed by `k` alone**: within each block of `KC`
//! products the terms are chained by FMA from zero in order of `p`, and each block's sum
//! is added to `C` (the first block of an overwriting product is stored). Nothing else —
//! the tile sizes, the blocking of `m` and `n`, the split over threads, the AVX2 or
//! portable loops — enters a result, so they are bitwise the same for any thread count
//! and under `DUEL_CPU_ISA` (the portable loops are `f32::mul_add`, one rounding, as the
//! hardware FMA). Only a product's `k`, its `KC` and `accumulate` decide its bits.
//!
//! **A packed once** (`PackedA`, `sgemm_packed`): a left operand many products share
//! (conv's weight against every block of images of a call, `Wᵀ` against every channel
//! tile) is packed for all its k-blocks at once, so each product skips packing it; the
//! panels are those `block` would pack, so the bits are too.
//!
//! **B packed by its owner** (`PanelSource`, `sgemm_sourced`): a right operand that is
//! never materialised — conv's weight gradient reads `im2col(x)ᵀ` straight from the
//! image — packs its own panels, in the layout `pack::pack_b` writes; the tiles are the
//! same, so are the bits of every element.

mod micro;
mod pack;
#[cfg(test)]
mod tests;

use crate::device::cpu::isa;
use micro::Tile;
use pack::Strided;
use rayon::prelude::*;
use std::cell::RefCell;

use crate::ops::cpu_shared::{with_pair, PairCell};

/// Rows of a tile: 6 x 2 accumulator vectors + 2 of `B` + 1 broadcast fit AVX2's 16
/// registers.
pub(crate) const MR: usize = 6;
/// Columns of a tile: two 8-lane vectors.
pub(crate) const NR: usize = 16;
/// Products per k-block: a `B` micro-panel of `KC x NR` is 16 KiB (half of Zen's and
/// Intel's 32 KiB L1).
pub(crate) const KC: usize = 256;
/// Rows per block of `A`: `MC x KC` is 144 KiB, inside a core's L2 (512 KiB – 2 MiB).
const MC: usize = 144;
/// Columns per block of `B`: `KC x NC` is 2 MiB, streamed through L2 from L3.
const NC: usize = 2048;
/// Up to this `k`, a `B` with contiguous rows is read in place, not packed (its panels'
/// rows are then a row stride apart; for a long `k` packing measured no slower).
const IN_PLACE_K: usize = 64;
/// Below this many multiply-adds a product runs on one thread (the split costs more).
const PARALLEL_MACS: usize = 1 << 18;

/// The loops of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loops {
    /// 16-lane FMA tiles, four at a time (AVX-512F), and the AVX2 packing.
    Avx512,
    /// 8-lane FMA tiles and packing (AVX2 + FMA).
    Avx2,
    /// The same arithmetic in scalar `f32::mul_add` (what `DUEL_CPU_ISA=baseline` runs).
    Portable,
}

impl Loops {
    pub(crate) const ALL: [Loops; 3] = [Loops::Avx512, Loops::Avx2, Loops::Portable];

    /// The kernel name in `duel bench`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Loops::Avx512 => "duel-avx512",
            Loops::Avx2 => "duel-avx2",
            Loops::Portable => "duel-portable",
        }
    }

    /// Whether this CPU (after `DUEL_CPU_ISA`) runs these loops.
    pub(crate) fn available(self) -> bool {
        match self {
            Loops::Avx512 => isa::isa().avx512f,
            Loops::Avx2 => isa::isa().avx2,
            Loops::Portable => true,
        }
    }

    /// Whether packing uses the AVX2 routines (the same copies, so the same bits).
    fn vector_packing(self) -> bool {
        self != Loops::Portable
    }

    /// The tile rows and columns that `run` keeps together in one part.
    fn unit(self) -> (usize, usize) {
        match self {
            Loops::Avx512 => (2 * MR, 2 * NR),
            _ => (MR, NR),
        }
    }
}

/// The f32 engine of this CPU: `Some(loops)` when the CPU (not the switch) has AVX2 and
/// FMA, the switch picking the loops (AVX-512, AVX2 or portable), or `None` for the `gemm`
/// crate. Which products it takes is [`engine_for`]'s choice, by the hardware and `k`; the
/// loops all give the same bits, so `DUEL_CPU_ISA` changes none.
pub(crate) fn engine() -> Option<Loops> {
    let hardware = isa::hardware();
    if !hardware.avx2 {
        return None;
    }
    let isa = isa::isa();
    Some(if isa.avx512f {
        Loops::Avx512
    } else if isa.avx2 {
        Loops::Avx2
    } else {
        Loops::Portable
    })
}

/// The shortest `k` this engine takes: below it a tile's fixed costs (packing, loading
/// and storing `C`) fall on few FMAs, and the `gemm` crate's unpacked small kernels
/// measured faster (dcgan28 D.conv1 forward, k = 16: 48 against 60 GFLOP/s). The
/// choice depends on `k` alone, the same for every block and tile of one conv call.
pub(crate) const MIN_K: usize = 32;

/// The deepest `k` the AVX-512 tiles take: above it the `gemm` crate's AVX-512 kernels
/// (64 x 6 tiles, their own blocking) measured as fast or faster — square products ~9%
/// faster, dcgan28's D.conv2 and G.convt1 (k = 1024) within ±4% — while up to it these
/// tiles won: dcgan28's G.fc forward (k = 100) 0.48 against 0.51 ms, G.convt2 forward and
/// D.conv1 input gradient (k = 64) 0.23 against 0.30 ms (`duel bench --threads 2`,
/// interleaved rounds, this Xeon with AVX-512).
pub(crate) const AVX512_MAX_K: usize = 128;

/// The engine for a product of depth `k`: [`engine`] from [`MIN_K`] on (on AVX-512
/// hardware up to [`AVX512_MAX_K`]), else the crate. Like [`engine`], a choice by the
/// hardware and `k` alone, never by the switch. (Products whose `B` packs itself from an
/// image, conv's `patches` and `windows`, take [`engine`] at any depth: the crate cannot
/// read such an operand, and they measured faster than im2col and the crate.)
pub(crate) fn engine_for(k: usize) -> Option<Loops> {
    let deep = isa::hardware().avx512f && k > AVX512_MAX_K;
    engine().filter(|_| k >= MIN_K && !deep)
}

/// What `duel devices` and the bench header say about the f32 GEMM.
pub fn engine_description() -> String {
    let hardware = isa::hardware();
    let loops = match engine() {
        Some(Loops::Avx512) => "AVX-512F tiles, 12x32 at a time",
        Some(Loops::Avx2) if hardware.avx512f => "AVX2+FMA tiles: DUEL_CPU_ISA turns AVX-512 off",
        Some(Loops::Avx2) => "AVX2+FMA tiles; this CPU has no AVX-512",
        Some(Loops::Portable) => "portable loops: DUEL_CPU_ISA turns AVX2 off",
        None => return "the gemm crate (this CPU lacks AVX2 or FMA)".into(),
    };
    match hardware.avx512f {
        true => format!(
            "duel's own (ops::sgemm, {loops}) for {MIN_K} <= k <= {AVX512_MAX_K}, the gemm \
             crate (its AVX-512 kernels) elsewhere"
        ),
        false => format!("duel's own (ops::sgemm, {loops}) for k >= {MIN_K}, the gemm crate below"),
    }
}

/// The output of a product: `C` at `ptr`, row stride `ldc`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    ldc: usize,
}

unsafe impl Send for Out {}
unsafe impl Sync for Out {}

thread_local! {
    /// This thread's packed blocks of `A` and `B`.
    static PACKS: PairCell<f32> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c (m x n, row stride ldc) (+)= a · b`, `a` and `b` as (pointer, row stride, column
/// stride), split over up to `threads` rayon tasks (the larger of `m` and `n` is cut, in
/// whole tiles).
///
/// # Safety
/// `a` readable at every `i·rs + p·cs` (i < m, p < k), `b` at every `p·rs + j·cs`
/// (p < k, j < n), `c` writable at every `i·ldc + j`; `Loops::Avx2` only where
/// [`Loops::available`].
pub(crate) unsafe fn sgemm(
    loops: Loops,
    (m, n, k): (usize, usize, usize),
    c: (*mut f32, usize),
    accumulate: bool,
    a: (*const f32, usize, usize),
    b: (*const f32, usize, usize),
    threads: usize,
) {
    // One contiguous column (a matrix-vector product: dcgan28's D.fc forward, [64, 6272]
    // · [6272, 1]) would fill one of each tile's 16 columns; as its transpose, the row
    // `cᵀ (1 x m) = bᵀ · aᵀ`, it fills them all. Each element is the same chain of FMAs over
    // the same k-blocks (fma(x, y, z) = fma(y, x, z)), so the bits are the product's.
    if n == 1 && m > 1 && c.1 == 1 {
        let (a_t, b_t) = ((b.0, b.2, b.1), (a.0, a.2, a.1));
        let a_t = Lhs::Strided(Strided::from(a_t));
        let b_t = Rhs::Strided(Strided::from(b_t));
        return run(loops, (1, m, k), (c.0, m), accumulate, a_t, b_t, threads);
    }
    let (a, b) = (
        Lhs::Strided(Strided::from(a)),
        Rhs::Strided(Strided::from(b)),
    );
    run(loops, (m, n, k), c, accumulate, a, b, threads)
}

/// [`sgemm`] with `A` packed beforehand: `c (a.m x n) (+)= a · b`, `k = a.k`. The same
/// arithmetic, so the same bits.
///
/// # Safety
/// As [`sgemm`] for `b` and `c`.
pub(crate) unsafe fn sgemm_packed(
    a: PackedRows<'_>,
    n: usize,
    c: (*mut f32, usize),
    accumulate: bool,
    b: (*const f32, usize, usize),
    threads: usize,
) {
    let dims = (a.m, n, a.packed.k);
    let b = Rhs::Strided(Strided::from(b));
    run(
        a.packed.loops,
        dims,
        c,
        accumulate,
        Lhs::Packed(a),
        b,
        threads,
    )
}

/// A right operand (`k x n`) that packs its own panels instead of being read from memory.
pub(crate) trait PanelSource: Sync {
    /// Rows `p0 .. p0 + kc` x columns `j0 .. j0 + cols` into `ceil(cols / NR)` k-major
    /// micro-panels of [`NR`] columns each (`kc·NR` values a panel, columns past `cols`
    /// zero): the layout `pack::pack_b` writes.
    fn pack(&self, rows: (usize, usize), cols: (usize, usize), to: &mut [f32]);
}

/// [`sgemm_packed`] with `B` (`a.k x n`) packed by `b` itself. The same tiles, so the
/// same bits as a product against the materialised `B`.
///
/// # Safety
/// As [`sgemm`] for `c`.
pub(crate) unsafe fn sgemm_sourced(
    a: PackedRows<'_>,
    n: usize,
    c: (*mut f32, usize),
    accumulate: bool,
    b: &dyn PanelSource,
    threads: usize,
) {
    let dims = (a.m, n, a.packed.k);
    run(
        a.packed.loops,
        dims,
        c,
        accumulate,
        Lhs::Packed(a),
        Rhs::Source(b),
        threads,
    )
}

/// `A` packed once for several products against it (a conv weight against every block
/// of images): for each k-block in turn, the micro-panels of all its rows, as [`block`]
/// packs them for one block. Packing only copies values, so a product against it has the
/// bits of one against the plain operand.
pub(crate) struct PackedA {
    data: Vec<f32>,
    /// Where the 64-byte aligned panels start in `data`.
    skip: usize,
    m: usize,
    k: usize,
    loops: Loops,
}

impl PackedA {
    /// Packs `a` (`m x k`, as (pointer, row stride, column stride)), its k-blocks in
    /// parallel.
    ///
    /// # Safety
    /// `a` readable at every `i·rs + p·cs` (i < m, p < k); `Loops::Avx2` only where
    /// [`Loops::available`].
    pub(crate) unsafe fn new(
        loops: Loops,
        a: (*const f32, usize, usize),
        m: usize,
        k: usize,
    ) -> PackedA {
        let a = Strided::from(a);
        let stride = m.div_ceil(MR) * MR;
        // This thread's buffer of the last one dropped: its stale values are all packed
        // over below (the panels' padding rows included).
        let mut data = SPARE_PACKED_A.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
        if data.len() < stride * k + 16 {
            data.resize(stride * k + 16, 0.0);
        }
        let skip = data.as_ptr().align_offset(64).min(16);
        let mut regions = Vec::new();
        let mut rest = &mut data[skip..skip + stride * k];
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let (region, tail) = rest.split_at_mut(stride * kc);
            regions.push((pc, kc, region));
            rest = tail;
        }
        let avx2 = loops.vector_packing();
        let pack =
            |(pc, kc, to): (usize, usize, &mut [f32])| pack::pack_a(a, (0, m), (pc, kc), to, avx2);
        match stride * k >= PARALLEL_PACK {
            true => regions.into_par_iter().for_each(pack),
            false => regions.into_iter().for_each(pack),
        }
        PackedA {
            data,
            skip,
            m,
            k,
            loops,
        }
    }

    /// Rows `i0 .. i0 + m` as the `A` of [`sgemm_packed`]; `None` unless `i0` is a
    /// multiple of [`MR`] (a panel's first row) and the rows are inside the matrix.
    pub(crate) fn rows(&self, i0: usize, m: usize) -> Option<PackedRows<'_>> {
        (i0.is_multiple_of(MR) && i0 + m <= self.m).then_some(PackedRows {
            packed: self,
            first: i0 / MR,
            m,
        })
    }

    /// The depth (columns) of the packed matrix.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// The panels of k-block `pc .. pc + kc` from panel `panel` on.
    fn panels(&self, panel: usize, (pc, kc): (usize, usize)) -> &[f32] {
        let stride = self.m.div_ceil(MR) * MR;
        &self.data[self.skip + stride * pc + panel * MR * kc..][..(stride - panel * MR) * kc]
    }
}

impl Drop for PackedA {
    /// Keeps the largest buffer for this thread's next [`PackedA`] (a training step packs
    /// every conv weight once or twice: no allocation per call).
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        SPARE_PACKED_A.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < data.len() {
                *spare = data;
            }
        })
    }
}

thread_local! {
    static SPARE_PACKED_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows of a [`PackedA`] from a panel boundary on.
#[derive(Clone, Copy)]
pub(crate) struct PackedRows<'a> {
    packed: &'a PackedA,
    /// The panel of the first row.
    first: usize,
    m: usize,
}

/// Values of a [`PackedA`] from which its k-blocks are packed in parallel.
const PARALLEL_PACK: usize = 1 << 16;

/// The `A` of a product: strided (packed block by block) or packed beforehand.
#[derive(Clone, Copy)]
enum Lhs<'a> {
    Strided(Strided),
    Packed(PackedRows<'a>),
}

/// The `B` of a product: strided (read in place or packed block by block) or packing
/// itself.
#[derive(Clone, Copy)]
enum Rhs<'a> {
    Strided(Strided),
    Source(&'a dyn PanelSource),
}

/// The products of [`sgemm`], [`sgemm_packed`] and [`sgemm_sourced`].
unsafe fn run(
    loops: Loops,
    (m, n, k): (usize, usize, usize),
    c: (*mut f32, usize),
    accumulate: bool,
    a: Lhs<'_>,
    b: Rhs<'_>,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let out = Out { ptr: c.0, ldc: c.1 };
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| std::slice::from_raw_parts_mut(c.0.add(i * c.1), n).fill(0.0));
        }
        return;
    }
    let by_columns = n >= m;
    let (unit_m, unit_n) = loops.unit();
    let (along, unit) = if by_columns { (n, unit_n) } else { (m, unit_m) };
    let parts = match m * n * k >= PARALLEL_MACS {
        true => threads.min(along.div_ceil(unit)).max(1),
        false => 1,
    };
    let span = along.div_ceil(parts).next_multiple_of(unit);
    let run = |t: usize| {
        let range = (t * span, span.min(along - t * span));
        let (rows, cols) = match by_columns {
            true => ((0, m), range),
            false => (range, (0, n)),
        };
        with_pair(&PACKS, |ap, bp| {
            block(loops, rows, cols, k, out, accumulate, a, b, ap, bp)
        })
    };
    let parts = along.div_ceil(span);
    if parts == 1 {
        run(0)
    } else {
        (0..parts).into_par_iter().for_each(run)
    }
}

/// A vector of at least `len` values whose first `len` are at a 64-byte boundary.
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(16);
    &mut buf[skip..skip + len]
}

/// Rows `i0..i0+mb` x columns `j0..j0+nb` of the product (see the module doc).
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    loops: Loops,
    (i0, mb): (usize, usize),
    (j0, nb): (usize, usize),
    k: usize,
    out: Out,
    accumulate: bool,
    a: Lhs<'_>,
    b: Rhs<'_>,
    apack: &mut Vec<f32>,
    bpack: &mut Vec<f32>,
) {
    // B read in place when its rows are contiguous runs and k is short: packing it would
    // copy every value of B for little reuse (a thin layer's k = 16).
    let in_place = match b {
        Rhs::Strided(s) if s.cs == 1 && k <= IN_PLACE_K => Some(s),
        _ => None,
    };
    let overwrite = |pc: usize| pc == 0 && !accumulate;
    for jc in (j0..j0 + nb).step_by(NC) {
        let ncols = NC.min(j0 + nb - jc);
        let full = if in_place.is_some() { ncols / NR } else { 0 };
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // Packed: every panel (in place: only the last, narrower one).
            let (packed0, packed_cols) = (jc + full * NR, ncols - full * NR);
            let bp = aligned(bpack, packed_cols.div_ceil(NR) * NR * kc);
            match b {
                Rhs::Strided(s) => {
                    let avx2 = loops.vector_packing();
                    pack::pack_b(s, (pc, kc), (packed0, packed_cols), bp, avx2)
                }
                Rhs::Source(source) => source.pack((pc, kc), (packed0, packed_cols), bp),
            }
            // All the rows at once: a transposed A (`Wᵀ`) is then read in whole runs of
            // m values per k, not in MC-long pieces a row stride apart, which a power-of-two
            // stride (R = 1024) keeps in a few cache sets.
            let all: &[f32] = match a {
                Lhs::Strided(a) => {
                    let all = aligned(apack, mb.div_ceil(MR) * MR * kc);
                    pack::pack_a(a, (i0, mb), (pc, kc), all, loops.vector_packing());
                    all
                }
                Lhs::Packed(p) => p.packed.panels(p.first + i0 / MR, (pc, kc)),
            };
            for ic in (i0..i0 + mb).step_by(MC) {
                let nrows = MC.min(i0 + mb - ic);
                let first = (ic - i0) / MR * MR * kc;
                let ap = &all[first..first + nrows.div_ceil(MR) * MR * kc];
                // B micro-panel `jr` of this block: in place (k rows a row stride apart)
                // or packed.
                let panel = |jr: usize| match in_place.filter(|_| jr < full) {
                    Some(b) => (b.at(pc, jc + jr * NR), b.rs),
                    None => (bp.as_ptr().add((jr - full) * NR * kc), NR),
                };
                #[cfg(target_arch = "x86_64")]
                if loops == Loops::Avx512 {
                    let panels = ncols.div_ceil(NR);
                    for (ir, apair) in ap.chunks(2 * MR * kc).enumerate() {
                        let i = ic + ir * 2 * MR;
                        for jr in (0..panels).step_by(2) {
                            let j = jc + jr * NR;
                            let b = [panel(jr), panel((jr + 1).min(panels - 1))];
                            let t = Tile {
                                c: out.ptr.add(i * out.ldc + j),
                                ldc: out.ldc,
                                rows: (2 * MR).min(ic + nrows - i),
                                cols: (2 * NR).min(jc + ncols - j),
                                overwrite: overwrite(pc),
                            };
                            let q = micro::Quad {
                                a: apair.as_ptr(),
                                b,
                            };
                            micro::quad(kc, q, t);
                        }
                    }
                    continue;
                }
                for jr in 0..ncols.div_ceil(NR) {
                    let j = jc + jr * NR;
                    let bpanel = panel(jr);
                    for (ir, apanel) in ap.chunks_exact(MR * kc).enumerate() {
                        let i = ic + ir * MR;
                        let t = Tile {
                            c: out.ptr.add(i * out.ldc + j),
                            ldc: out.ldc,
                            rows: MR.min(ic + nrows - i),
                            cols: NR.min(jc + ncols - j),
                            overwrite: overwrite(pc),
                        };
                        micro::tile(loops, kc, apanel.as_ptr(), bpanel, t);
                    }
                }
            }
        }
    }
}
