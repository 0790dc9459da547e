//! The AMX-BF16 block: a 32x32 f32 block of C in four 16x16 accumulator tiles
//! (`tmm0..tmm3`), A tiles `tmm4, tmm5` (16 rows x 32 bf16), B tiles `tmm6, tmm7` (16 pairs
//! x 16 columns x 2 bf16, the VNNI layout of `pack.rs`). Per 32-wide chunk of k: 4 tile
//! loads (1 KiB each, contiguous: stride 64 bytes) and 4 `tdpbf16ps`.
//!
//! The tile configuration is loaded by [`begin`] and released by [`end`] on the calling
//! thread; every tile a block uses is loaded or zeroed inside the block's one `asm!`, so no
//! tile value lives across `asm!` blocks (only the configuration does, which the compiler
//! never touches: it emits no AMX code of its own).

use super::pack::{Line, CHUNK_LINES};
use std::arch::asm;

/// The palette-1 configuration: 8 tiles of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn config() -> TileConfig {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette 1
    for t in 0..8 {
        cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes()); // colsb
        cfg[48 + t] = 16; // rows
    }
    TileConfig(cfg)
}

/// Load the tile configuration on this thread.
///
/// # Safety
/// AMX-BF16 must be detected and the tile data granted (`isa().amx_bf16`).
pub(super) unsafe fn begin() {
    let cfg = config();
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
}

/// Release the tiles (the thread's tile state returns to init, cheap to save).
///
/// # Safety
/// As [`begin`].
pub(super) unsafe fn end() {
    asm!("tilerelease", options(nostack, nomem));
}

/// `C[32x32] (+)= A·B` over `chunks` chunks: `a` the first of two A strips, `b` the first
/// of two B strips (each strip `chunks` chunks long), C at `c` with row stride `ldc`
/// elements; `load`: start from C, else from zero.
///
/// # Safety
/// [`begin`] ran on this thread; `a`, `b` hold `2·chunks·16` lines; `c` is writable at
/// 32 rows of 32 elements with stride `ldc`; `chunks ≥ 1`.
pub(super) unsafe fn block(
    a: *const Line,
    b: *const Line,
    chunks: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let strip = chunks * CHUNK_LINES;
    let c1 = c.add(16 * ldc);
    asm!(
        "test {load:e}, {load:e}",
        "jz 3f",
        "tileloadd tmm0, [{c0} + {ldc}*1]",
        "tileloadd tmm1, [{c0} + {ldc}*1 + 64]",
        "tileloadd tmm2, [{c1} + {ldc}*1]",
        "tileloadd tmm3, [{c1} + {ldc}*1 + 64]",
        "jmp 4f",
        "3:",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "4:",
        "2:",
        "tileloadd tmm4, [{a0} + {s64}*1]",
        "tileloadd tmm6, [{b0} + {s64}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b1} + {s64}*1]",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{a1} + {s64}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {a0}, 1024",
        "add {a1}, 1024",
        "add {b0}, 1024",
        "add {b1}, 1024",
        "dec {n}",
        "jnz 2b",
        "tilestored [{c0} + {ldc}*1], tmm0",
        "tilestored [{c0} + {ldc}*1 + 64], tmm1",
        "tilestored [{c1} + {ldc}*1], tmm2",
        "tilestored [{c1} + {ldc}*1 + 64], tmm3",
        load = in(reg) load as u32,
        c0 = in(reg) c,
        c1 = in(reg) c1,
        ldc = in(reg) ldc * 4,
        s64 = in(reg) 64usize,
        a0 = inout(reg) a => _,
        a1 = inout(reg) a.add(strip) => _,
        b0 = inout(reg) b => _,
        b1 = inout(reg) b.add(strip) => _,
        n = inout(reg) chunks => _,
        out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
        out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
        options(nostack),
    );
}
