//! The cpu bf16 GEMM: `dst (m x n) (+)= bf16(lhs) · bf16(rhs)` with f32 accumulation, on
//! AMX-BF16 tiles, AVX512-BF16 (`vdpbf16ps`) or portable loops, chosen at run time
//! ([`bf16_path`]; `DUEL_CPU_ISA` of `device::cpu::isa` limits the choice).
//!
//! **Shape.** The operands are f32 matrices given by pointer and (row stride, col stride),
//! rounded to bf16 while they are packed into panels ([`pack`]): for each block of
//! `KC = 256` values of k, all of A's rows (`m x KC`), then for each block of `NC = 512`
//! columns B's panel (`KC x NC`); C is computed in 32x32 blocks, each summing its k chunks
//! in order, the blocks of k one after another (C in memory holds the f32 sum between
//! them: no extra rounding, f32 is what the accumulators hold). Panels are padded with
//! zeros to multiples of 32 in m, n and k; blocks at the m/n edges run on a 32x32 staging
//! block. Panels live in thread-local workspaces that grow to the largest size seen and
//! are reused (no allocation once warm). One call runs on one thread; callers partition
//! ([`gemm_bf16_parallel`] splits m).
//!
//! **Numerics.** Write `ρ(x)` for x rounded to bf16 (8 significant bits, round to nearest
//! even): `ρ(x) = x(1 + δ)`, `|δ| ≤ u_b = 2^-8` (half an ulp, 2^-7, of the leading power of two)
//! for x in the normal range.
//! Two further rules, the same on every path (they are applied while packing): NaN stays
//! NaN, and an f32 below the smallest normal (2^-126) becomes a signed zero — what
//! `tdpbf16ps` and `vdpbf16ps` do with denormal inputs (the Intel SDM: "input denormals
//! are always treated as zero"), so every path sees the same operands.
//! - A product of two bf16 values is exact in f32 (8 + 8 significant bits ≤ 24), so the
//!   paths differ only in how they sum those exact products in f32: portable adds them in
//!   increasing k; `vdpbf16ps` adds a pair of products per instruction and `tdpbf16ps` a
//!   tile's worth, each accumulation rounded to nearest even (SDM), in an order of their
//!   own. Any order of `k` f32 additions of terms `t_i` gives, against the exact sum,
//!   `|err| ≤ γ_k·Σ|t_i|`, `γ_k = k·u/(1 − k·u)`, `u = 2^-24` (Higham, Thm 4.4; a sum started
//!   from C counts C as one more term). The bf16 units also flush denormal *results* to
//!   zero (SDM: "output denormals are always flushed to zero"): each of the k additions may
//!   lose up to 2^-126 more, so the bound against an f64 sum of the same rounded
//!   products is `γ_k·Σ|ρ(a_i)ρ(b_i)| + k·2^-126` (the second term is irrelevant unless
//!   the data lives near 1e-38).
//! - Against the f32 (or exact) product of the unrounded operands: `ρ(a)ρ(b) = ab(1+δ_a)(1+δ_b)`,
//!   `|(1+δ_a)(1+δ_b) − 1| ≤ 2u_b + u_b² = 2·2^-8 + 2^-16`, so
//!   `|err| ≤ (2·2^-8 + 2^-16 + γ_k)·Σ|a_i||b_i|` (+ `k·2^-126`, and the terms whose
//!   operands were flushed, `Σ_{flushed} |a_i b_i|`).
//! - Deterministic: a path's order of operations is fixed by (m, n, k) alone and every
//!   element's sum is the same wherever its row or column falls in the blocking, so a
//!   partition of m (or n) gives bitwise the same result on any number of threads.
//!
//! The tests (`tests/gemm_bf16.rs`) check every path against these bounds and each other.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod pack;
mod portable;

use crate::device::cpu::isa::isa;
use crate::ops::cpu_shared::{with_pair, PairCell};
use pack::{pack_a, pack_b, panel_lines, Line, Packer, Src, CHUNK_LINES};
use std::cell::RefCell;

/// k per packed block (a multiple of 32). 256: a 32x32 block's A and B panels (16 KiB
/// each) fit a 32 KiB L1 together; at 512 the B panel alone did, and streamed from L2 for
/// each of the block's four 8-row passes. Measured on AVX512-BF16 (Zen 4, 2 threads,
/// `duel bench`): square 512³ 371 → 410 GFLOP/s, dcgan28 D.conv2 input / weight gradient
/// 2.74 / 3.05 → 2.59 / 2.89 ms, G.convt1 forward 2.72 → 2.60 (128: slower than both).
/// The order of each element's sum does not depend on it (C holds the exact f32 sum
/// between blocks), so neither do the bits.
const KC: usize = 256;
/// Columns per packed B panel (a multiple of 32).
const NC: usize = 512;

/// The three ways the bf16 GEMM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Path {
    /// AMX-BF16 tiles (`tdpbf16ps`).
    Amx,
    /// AVX512-BF16 (`vdpbf16ps`).
    Avx512,
    /// Plain loops over the same rounded operands (any CPU).
    Portable,
}

impl Bf16Path {
    /// Fastest first.
    pub const ALL: [Bf16Path; 3] = [Bf16Path::Amx, Bf16Path::Avx512, Bf16Path::Portable];

    /// `amx-bf16`, `avx512-bf16`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "amx-bf16",
            Bf16Path::Avx512 => "avx512-bf16",
            Bf16Path::Portable => "portable",
        }
    }

    /// The kernel column of `duel bench`: `bf16-amx`, `bf16-avx512`, `bf16-portable`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "bf16-amx",
            Bf16Path::Avx512 => "bf16-avx512",
            Bf16Path::Portable => "bf16-portable",
        }
    }

    /// Whether this CPU (after `DUEL_CPU_ISA`) can run the path.
    pub fn available(self) -> bool {
        match self {
            Bf16Path::Amx => cfg!(target_arch = "x86_64") && isa().amx_bf16,
            Bf16Path::Avx512 => cfg!(target_arch = "x86_64") && isa().avx512_bf16,
            Bf16Path::Portable => true,
        }
    }

    /// The fastest available path (what `gemm_bf16` runs).
    pub fn detected() -> Bf16Path {
        Bf16Path::ALL
            .into_iter()
            .find(|p| p.available())
            .unwrap_or(Bf16Path::Portable)
    }
}

/// The name of the path `gemm_bf16` uses: `"amx-bf16"`, `"avx512-bf16"` or `"portable"`.
pub fn bf16_path() -> &'static str {
    Bf16Path::detected().name()
}

/// [`bf16_path`] and why it is the one: what this CPU lacks, or that `DUEL_CPU_ISA` turned
/// the faster paths off (`duel devices`, the bench header).
pub fn bf16_path_reason() -> String {
    use crate::device::cpu::isa::{detect_with, IsaLimit, ISA_ENV};
    let path = Bf16Path::detected();
    let cpu = detect_with(IsaLimit::All);
    let switched_off = match path {
        Bf16Path::Amx => false,
        Bf16Path::Avx512 => cpu.amx_bf16,
        Bf16Path::Portable => cpu.amx_bf16 || cpu.avx512_bf16,
    };
    let why = match path {
        _ if switched_off => format!(
            "{ISA_ENV}={} turns the faster paths off",
            std::env::var(ISA_ENV).unwrap_or_default()
        ),
        Bf16Path::Amx => "the fastest path".to_string(),
        Bf16Path::Avx512 => "this CPU has no AMX-BF16".to_string(),
        Bf16Path::Portable => "this CPU has neither AVX512-BF16 nor AMX-BF16".to_string(),
    };
    format!("{} ({why})", path.name())
}

/// `dst (m x n, row-major, row stride ldd ≥ n) (+)= bf16(lhs) · bf16(rhs)`, f32
/// accumulation, on `path` (the detected one: [`gemm_bf16_ptr`]; tests and `duel bench`
/// run each). `lhs`, `rhs`: f32 matrices by pointer and (row stride, col stride) in
/// elements, rounded to bf16 (to nearest even) while packing. One thread.
///
/// # Safety
/// `lhs` must be readable at every `i·rs + p·cs` (i < m, p < k), `rhs` at every
/// `p·rs + j·cs` (p < k, j < n), and `dst` must hold `(m − 1)·ldd + n` elements.
///
/// # Panics
/// When `path` is not available on this CPU, or `dst` is shorter than `(m − 1)·ldd + n`.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_bf16_on(
    path: Bf16Path,
    m: usize,
    n: usize,
    k: usize,
    (dst, ldd): (&mut [f32], usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    assert!(
        path.available(),
        "the {} path is not available here",
        path.name()
    );
    if m == 0 || n == 0 {
        return;
    }
    let need = (m - 1) * ldd + n;
    assert!(
        ldd >= n && dst.len() >= need,
        "dst holds {} < (m − 1)·ldd + n = {need} (ldd {ldd}, n {n})",
        dst.len(),
    );
    let lhs = Lhs::Matrix(lhs);
    on_ptr(path, m, n, k, (dst.as_mut_ptr(), ldd), accumulate, lhs, rhs)
}

/// [`gemm_bf16_on`] on the detected path, `dst` by pointer, the left operand given or
/// packed: for callers that split one output between threads by columns (parts whose
/// rows interleave in memory, so they cannot be disjoint slices).
///
/// # Safety
/// As [`gemm_bf16_on`], with `dst` writable at `i·ldd + j` (i < m, j < n), `ldd ≥ n`, and no
/// other thread touching those elements during the call; a packed `lhs` holds rows
/// `i0 .. i0 + m` at depth `k` ([`PackedLhs::covers`]).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_bf16_ptr(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize),
    accumulate: bool,
    lhs: Lhs,
    rhs: (*const f32, usize, usize),
) {
    on_ptr(Bf16Path::detected(), m, n, k, dst, accumulate, lhs, rhs)
}

/// The left operand of a product: a strided f32 matrix, or rows from `i0` of one packed
/// once for several products.
#[derive(Clone, Copy)]
pub(crate) enum Lhs<'a> {
    Matrix((*const f32, usize, usize)),
    Packed(&'a PackedLhs, usize),
}

impl Lhs<'_> {
    /// The operand from its row `rows` on (a multiple of 32 where packed).
    pub(crate) fn skip_rows(self, rows: usize) -> Self {
        match self {
            Lhs::Matrix((p, rs, cs)) => Lhs::Matrix((p.wrapping_add(rows * rs), rs, cs)),
            Lhs::Packed(p, i0) => Lhs::Packed(p, i0 + rows),
        }
    }
}

/// A left operand packed once (a conv weight against every block of images): for every
/// block of `KC` values of k the panel `gemm_bf16` packs per call — the same lines, so
/// products from it have the same bits — and one strip of zeros past the last, so that a
/// product over rows from an odd strip (`i0` a multiple of 16, not of 32) reads whole
/// blocks of 32 rows inside the panel.
pub(crate) struct PackedLhs {
    m: usize,
    k: usize,
    blocks: Vec<Vec<Line>>,
}

impl PackedLhs {
    /// # Safety
    /// `lhs` readable at every `i·rs + p·cs` (i < m, p < k).
    pub(crate) unsafe fn new(m: usize, k: usize, lhs: (*const f32, usize, usize)) -> Self {
        let packer = Packer::detected();
        let blocks = (0..k)
            .step_by(KC)
            .map(|kb| {
                let (kc, chunks) = ((k - kb).min(KC), (k - kb).min(KC).div_ceil(32));
                let mut lines =
                    vec![Line::default(); panel_lines(m, chunks) + chunks * CHUNK_LINES];
                let a = Src {
                    ptr: lhs.0.wrapping_add(kb * lhs.2),
                    rs: lhs.1,
                    cs: lhs.2,
                };
                pack_a(a, m, kc, &mut lines, packer);
                lines
            })
            .collect();
        PackedLhs { m, k, blocks }
    }

    /// Whether rows `i0 .. i0 + m` at depth `k` can be read from here.
    pub(crate) fn covers(&self, i0: usize, m: usize, k: usize) -> bool {
        i0.is_multiple_of(16) && i0 + m <= self.m && k == self.k
    }
}

thread_local! {
    /// The packed A and B panels of this thread.
    static WORKSPACE: PairCell<Line> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn grow(ws: &mut Vec<Line>, lines: usize) {
    if ws.len() < lines {
        ws.resize(lines, Line::default());
    }
}

/// `C[32x32] (+)= A·B` of one block (see `amx::block`).
type BlockFn = unsafe fn(*const Line, *const Line, usize, *mut f32, usize, bool);

/// The product on `path`: the k = 0 and empty edges, then the blocked loop of the
/// module doc on this thread's packed panels.
#[allow(clippy::too_many_arguments)]
unsafe fn on_ptr(
    path: Bf16Path,
    m: usize,
    n: usize,
    k: usize,
    (c, ldd): (*mut f32, usize),
    accumulate: bool,
    lhs: Lhs,
    rhs: (*const f32, usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::slice::from_raw_parts_mut(c.add(i * ldd), n).fill(0.0);
            }
        }
        return;
    }
    // The packed panels live in this thread's workspace (no allocation once warm).
    with_pair(&WORKSPACE, |a_ws, b_ws| {
        let packer = Packer::detected();
        let block: BlockFn = match path {
            #[cfg(target_arch = "x86_64")]
            Bf16Path::Amx => amx::block,
            #[cfg(target_arch = "x86_64")]
            Bf16Path::Avx512 => avx512::block,
            _ => portable::block,
        };
        let chunks_max = k.min(KC).div_ceil(32);
        if let Lhs::Matrix(_) = lhs {
            grow(a_ws, panel_lines(m, chunks_max));
        }
        grow(b_ws, panel_lines(n.min(NC), chunks_max));
        #[cfg(target_arch = "x86_64")]
        if path == Bf16Path::Amx {
            amx::begin();
        }
        for kb in (0..k).step_by(KC) {
            let kc = (k - kb).min(KC);
            let chunks = kc.div_ceil(32);
            let strip = chunks * CHUNK_LINES;
            let load = accumulate || kb > 0;
            let a_panel = match lhs {
                Lhs::Matrix(lhs) => {
                    let a = Src {
                        ptr: lhs.0.wrapping_add(kb * lhs.2),
                        rs: lhs.1,
                        cs: lhs.2,
                    };
                    pack_a(a, m, kc, a_ws, packer);
                    a_ws.as_ptr()
                }
                // The caller checked `covers`: strips from i0 / 16 on, the panel of this kb.
                Lhs::Packed(p, i0) => p.blocks[kb / KC].as_ptr().add(i0 / 16 * strip),
            };
            for nb in (0..n).step_by(NC) {
                let nc = (n - nb).min(NC);
                let b = Src {
                    ptr: rhs.0.wrapping_add(kb * rhs.1 + nb * rhs.2),
                    rs: rhs.1,
                    cs: rhs.2,
                };
                pack_b(b, kc, nc, b_ws, packer);
                for i in (0..m).step_by(32) {
                    let a_blk = a_panel.add(i / 16 * strip);
                    let rows = (m - i).min(32);
                    for j in (0..nc).step_by(32) {
                        let b_blk = b_ws.as_ptr().add(j / 16 * strip);
                        let cols = (nc - j).min(32);
                        let cp = c.add(i * ldd + nb + j);
                        if rows == 32 && cols == 32 {
                            block(a_blk, b_blk, chunks, cp, ldd, load);
                            continue;
                        }
                        let mut stage = [0f32; 32 * 32];
                        if load {
                            for r in 0..rows {
                                let from = std::slice::from_raw_parts(cp.add(r * ldd), cols);
                                stage[r * 32..r * 32 + cols].copy_from_slice(from);
                            }
                        }
                        block(a_blk, b_blk, chunks, stage.as_mut_ptr(), 32, load);
                        for r in 0..rows {
                            std::slice::from_raw_parts_mut(cp.add(r * ldd), cols)
                                .copy_from_slice(&stage[r * 32..r * 32 + cols]);
                        }
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if path == Bf16Path::Amx {
            amx::end();
        }
    })
}

/// A strided f32 matrix over a slice: element `(i, j)` at `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "{what}: element ({}, {}) at {last} is past its {} elements",
                rows - 1,
                cols - 1,
                self.data.len()
            );
        }
    }

    fn raw(&self, skip_rows: usize) -> (*const f32, usize, usize) {
        (
            self.data.as_ptr().wrapping_add(skip_rows * self.rs),
            self.rs,
            self.cs,
        )
    }
}

/// `gemm_bf16` over slices, bounds checked, on `path`.
///
/// # Panics
/// When an operand is too short for its strides, or `path` is not available.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_slices(
    path: Bf16Path,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: MatRef,
    rhs: MatRef,
) {
    lhs.check(m, k, "lhs");
    rhs.check(k, n, "rhs");
    // SAFETY: the reads are in bounds (checked above); gemm_bf16_on checks dst.
    unsafe { gemm_bf16_on(path, m, n, k, (dst, n), accumulate, lhs.raw(0), rhs.raw(0)) }
}

/// [`gemm_bf16_slices`] with m split into `parts` fixed ranges (multiples of 32 rows) run on
/// the rayon pool; bitwise the same as one part (every element's sum is independent of the
/// partition), so `parts` may follow the thread count.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_parallel(
    path: Bf16Path,
    parts: usize,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: MatRef,
    rhs: MatRef,
) {
    use rayon::prelude::*;
    lhs.check(m, k, "lhs");
    rhs.check(k, n, "rhs");
    assert!(
        dst.len() >= m * n,
        "dst holds {} < m·n = {}",
        dst.len(),
        m * n
    );
    if n == 0 {
        return;
    }
    let rows = m.div_ceil(parts.max(1)).div_ceil(32).max(1) * 32;
    dst[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(t, part)| {
            let i0 = t * rows;
            let mt = part.len() / n;
            // SAFETY: rows i0..i0+mt of lhs are in bounds (checked above), rhs as checked.
            unsafe {
                gemm_bf16_on(
                    path,
                    mt,
                    n,
                    k,
                    (part, n),
                    accumulate,
                    lhs.raw(i0),
                    rhs.raw(0),
                )
            }
        });
}
