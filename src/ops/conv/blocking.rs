//! How the cpu conv cuts its work (see `cpu.rs`): the batch into a fixed set of tasks,
//! each task's images into blocks whose column matrices share one GEMM, a col2im block
//! into channel tiles. Every size here depends on the geometry alone, never on the thread
//! count, so the sums they order are the same on any machine.

use super::Geom;
use crate::ops::{cpu_gemm, sgemm};
use gemm::Parallelism;
use rayon::prelude::*;

/// Tasks a batch is split into: four of near-equal image counts, so 1, 2 or 4 threads
/// get equal work (whole GEMM blocks per task used to leave a short last task: 6 tasks of
/// 11, 11, 11, 11, 11, 9 images on dcgan28's 7x7 layers). Few tasks also keep the GEMMs
/// wide and the weight-gradient partials few.
pub(super) const TASKS: usize = 4;

/// The fixed partition of `n` images into tasks `(first, count)`, sizes differing by at
/// most one. It depends on `n` only, never on the thread count, so every sum is formed in
/// the same order on any machine.
pub(super) fn partition(n: usize) -> Vec<(usize, usize)> {
    let t = TASKS.min(n).max(1);
    (0..t)
        .map(|i| (i * n / t, (i + 1) * n / t - i * n / t))
        .collect()
}

/// Run `f(first, count, par)` for every task of [`partition`], in parallel, returning the
/// results in task order. A lone task splits its GEMMs across the pool instead (gemm
/// splits over output tiles only, so that is thread-count independent too).
pub(super) fn for_tasks<R: Send>(
    n: usize,
    flops: usize,
    f: impl Fn(usize, usize, Parallelism) -> R + Sync,
) -> Vec<R> {
    let tasks = partition(n);
    if tasks.len() == 1 {
        let par = cpu_gemm::parallelism_for(flops);
        tasks.into_iter().map(|(s, c)| f(s, c, par)).collect()
    } else {
        tasks
            .into_par_iter()
            .map(|(s, c)| f(s, c, Parallelism::None))
            .collect()
    }
}

/// Columns of one block: at most [`BLOCK_COLS`], and fewer where the column matrix is
/// tall, so that a block of `R x cols` values stays near [`BLOCK_ELEMS`] (1 MiB of f32,
/// a core's L2 here) while im2col writes it and the GEMM reads it — or the GEMM writes
/// it and col2im reads it. Measured on dcgan64's 16x16 and 8x8 layers (`R` = 2048, 4096):
/// the input gradient of D.conv4 22 → 15 ms. Never below 256 columns, so the GEMMs stay
/// wide.
const BLOCK_COLS: usize = 1024;
const BLOCK_ELEMS: usize = 1 << 18;

/// The target width of a block whose column matrix has `r` rows (see above).
fn block_width(r: usize) -> usize {
    (BLOCK_ELEMS / r.max(1)).clamp(256, BLOCK_COLS)
}

/// Images per block of a task of `count` images with `r` rows of columns: the task cut
/// into equal blocks of at most about [`block_width`] (one block when a whole task fits).
pub(super) fn block_images(l: usize, count: usize, r: usize) -> usize {
    equal_blocks(l, count, block_width(r))
}

/// Images per block when `count` images of `l` columns are cut into equal blocks of at
/// most about `target` columns.
fn equal_blocks(l: usize, count: usize, target: usize) -> usize {
    let blocks = (count * l).div_ceil(target).max(1);
    count.div_ceil(blocks).max(1)
}

/// Images per product of a task of `count` images whose columns are packed from the image
/// (`windows.rs`): the task in equal blocks of at most about [`BLOCK_COLS`] columns, so the
/// engine's `B` block and the product block stay in L2 (whole tasks of dcgan64's 16x16
/// positions, 4096 columns, measured 16 → 18.5 ms on D.conv2's forward).
pub(super) fn product_images(l: usize, count: usize) -> usize {
    equal_blocks(l, count, BLOCK_COLS)
}

pub(super) use crate::ops::cpu_shared::SendPtr;

/// Columns the f32 GEMM's main microkernel covers at once: the `gemm` crate's AVX-512
/// kernel holds 4 vectors of 16 along the block's columns, and the columns past the last
/// full strip run on its narrow edge kernels (on dcgan28's 7x7 layers in blocks of 4
/// images, 196 = 3·64 + 4 columns, the edge kernel `x1x6` took 5.5% of a training step
/// beside 43.5% for the full `x4x6`). [`strip_images`] counts a partial strip as a
/// full one: a simplification, which measured 5–8% faster on those layers' products.
const GEMM_STRIP: usize = 64;
/// A GEMM call's fixed cost (packing the weight) in columns of work, for [`strip_images`].
const CALL_COLS: usize = 32;

/// Images per block where the block's columns are the GEMM's `n`: the count, at most the
/// L2 width of [`block_images`] (or one more image where that fits the target), that
/// wastes the fewest columns in partial [`GEMM_STRIP`]s, counting [`CALL_COLS`] per call.
pub(super) fn strip_images(l: usize, count: usize, r: usize) -> usize {
    let widest = block_images(l, count, r)
        .max(block_width(r) / l.max(1))
        .min(count);
    let cost = |b: usize| {
        let (full, rest) = (count / b, count % b);
        let strips = |imgs: usize| (imgs * l).div_ceil(GEMM_STRIP) * GEMM_STRIP + CALL_COLS;
        full * strips(b) + if rest > 0 { strips(rest) } else { 0 }
    };
    (1..=widest.max(1))
        .rev()
        .min_by_key(|&b| cost(b))
        .unwrap_or(1)
}

/// Channels per tile of a col2im block: the GEMM writes the tile's `channels·kh·kw` rows
/// of the block and col2im adds them into those channels while they are still in L2
/// (tiles of about [`BLOCK_ELEMS`], a quarter more allowed before a block is cut, cut into
/// equal tiles), instead of the whole block going out to L3 and back (`R` = 4096 on
/// dcgan64's 8x8 and 4x4 layers: 4 MiB; its D.conv4 input gradient 21 → 12 ms). Each
/// pixel's terms come from its own channel's rows, in the same order, so the tiling
/// changes no bit of col2im; the GEMM's elements are the same dot products (`ops::sgemm` and the
/// `gemm` crate block k by k alone, `gemm_bf16` by fixed blocks of 32). A tile's rows
/// are rounded to whole panels of the engine's packed `Wᵀ` ([`sgemm::MR`] rows), so every
/// tile reads its rows from the one packing of the call.
pub(super) fn col2im_channels(g: &Geom, ld: usize) -> usize {
    let kk = (g.kh * g.kw).max(1);
    let per_channel = kk * ld.max(1);
    let tiles = (g.c * per_channel)
        .div_ceil(BLOCK_ELEMS + BLOCK_ELEMS / 4)
        .max(1);
    let whole_panels = sgemm::MR / gcd(kk, sgemm::MR);
    g.c.div_ceil(tiles)
        .next_multiple_of(whole_panels)
        .min(g.c)
        .max(1)
}

fn gcd(a: usize, b: usize) -> usize {
    match b {
        0 => a,
        _ => gcd(b, a % b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns the GEMMs of a task compute, partial strips padded out.
    fn padded_cols(l: usize, count: usize, b: usize) -> usize {
        (0..count)
            .step_by(b)
            .map(|n0| (b.min(count - n0) * l).next_multiple_of(GEMM_STRIP))
            .sum()
    }

    /// The strip-aware block never pads more than the L2-sized one it replaces, stays
    /// within the L2 width, and on dcgan28's 7x7 layers (16 images a task, R = 1024) cuts
    /// the padding of blocks of 4 images (4·196 columns in 4·256) to 13 strips (832).
    #[test]
    fn strip_blocks_pad_no_more_than_l2_blocks() {
        for l in [1, 4, 16, 49, 64, 196, 256, 784, 1024] {
            for count in [1, 3, 15, 16, 17, 64] {
                for r in [16, 100, 1024, 2048, 4096] {
                    let (old, new) = (block_images(l, count, r), strip_images(l, count, r));
                    assert!(
                        (1..=count).contains(&new),
                        "l {l} count {count} r {r}: {new}"
                    );
                    let width = block_width(r).max(old * l);
                    assert!(new * l <= width.max(l), "l {l} count {count} r {r}: {new}");
                    let (po, pn) = (padded_cols(l, count, old), padded_cols(l, count, new));
                    let calls = |b: usize| count.div_ceil(b) * CALL_COLS;
                    assert!(
                        pn + calls(new) <= po + calls(old),
                        "l {l} count {count} r {r}: {new} pads {pn}, {old} pads {po}"
                    );
                }
            }
        }
        assert_eq!(block_images(49, 16, 1024), 4);
        assert_eq!(padded_cols(49, 16, 4), 1024);
        assert_eq!(padded_cols(49, 16, strip_images(49, 16, 1024)), 832);
    }
}
