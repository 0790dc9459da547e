//! The compute peaks of `duel bench`'s header: how fast this CPU runs independent chains
//! of its f32 FMA and, where it has the units, of its bf16 dot-product instruction, with
//! every operand in registers. The op rows' "% of peak" divide by these (a bf16 row by the
//! bf16 peak: what its precision could reach here).

use std::time::Instant;

/// A measured rate: which loop ran and the best rate over the repetitions.
#[derive(Clone, Debug)]
pub struct Peak {
    pub gflops: f64,
    pub threads: usize,
    pub kernel: &'static str,
}

/// The f32 FMA peak on `threads` threads ([`fma_loop`], 2 FLOPs per lane per FMA).
pub fn fma(threads: usize, reps: usize, iters: u64) -> Peak {
    let (kernel, flops_per_iter) = fma_kernel();
    measure(kernel, flops_per_iter, fma_loop, (threads, reps, iters))
}

/// The `vdpbf16ps` peak on `threads` threads (per f32 lane two bf16 products added to
/// the accumulator: 4 FLOPs per lane, 64 per instruction); `None` where the CPU (after
/// `DUEL_CPU_ISA`) lacks AVX512-BF16.
pub fn bf16_dot(threads: usize, reps: usize, iters: u64) -> Option<Peak> {
    bf16_dot_available().then(|| {
        let kernel = "avx512_bf16: 24 zmm vdpbf16ps accumulators";
        measure(
            kernel,
            (24 * 16 * 4) as f64,
            bf16_dot_loop,
            (threads, reps, iters),
        )
    })
}

fn bf16_dot_available() -> bool {
    cfg!(target_arch = "x86_64") && crate::device::cpu::isa::isa().avx512_bf16
}

/// `body(iters)` on `threads` OS threads at once; the best rate of `reps` repetitions
/// (the machine may be shared; the best is the least disturbed).
fn measure(
    kernel: &'static str,
    flops_per_iter: f64,
    body: fn(u64) -> f32,
    (threads, reps, iters): (usize, usize, u64),
) -> Peak {
    let threads = threads.max(1);
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let barrier = std::sync::Barrier::new(threads + 1);
        // Each worker reads the clock itself: a coordinating thread that is descheduled
        // after the barrier would start its clock late (on 2 cores running 2 workers it
        // is), and the interval from the first start to the last end is what was spent.
        let seconds = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let start = Instant::now();
                        std::hint::black_box(body(std::hint::black_box(iters)));
                        (start, Instant::now())
                    })
                })
                .collect();
            barrier.wait();
            let spans: Vec<(Instant, Instant)> =
                workers.into_iter().filter_map(|w| w.join().ok()).collect();
            let first = spans.iter().map(|&(a, _)| a).min();
            let last = spans.iter().map(|&(_, b)| b).max();
            match (first, last) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => f64::INFINITY,
            }
        });
        let flops = flops_per_iter * iters as f64 * threads as f64;
        best = best.max(flops / seconds / 1e9);
    }
    Peak {
        gflops: best,
        threads,
        kernel,
    }
}

/// The loop [`fma_loop`] will run here and its FLOPs per iteration (2 per lane per FMA).
fn fma_kernel() -> (&'static str, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return ("avx512f: 24 zmm accumulators", (24 * 16 * 2) as f64);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return ("avx2+fma: 12 ymm accumulators", (12 * 8 * 2) as f64);
        }
    }
    ("scalar: 8 accumulators", (8 * 2) as f64)
}

/// `iters` rounds of independent FMAs on register-resident accumulators. The multiplier
/// and addend come through `black_box`, and every accumulator feeds the returned sum, so
/// the compiler can neither precompute nor drop a single FMA; FMAs are not reassociated.
pub fn fma_loop(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was detected at run time.
            return unsafe { fma_avx512(iters) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: avx2 and fma were detected at run time.
            return unsafe { fma_avx2(iters) };
        }
    }
    fma_scalar(iters)
}

// a·acc + b with a < 1 converges to b / (1 − a) ≈ 1: no overflow, no subnormals.
const FMA_A: f32 = 0.999_9;
const FMA_B: f32 = 1e-4;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(FMA_A));
    let b = _mm512_set1_ps(std::hint::black_box(FMA_B));
    let mut acc = [_mm512_setzero_ps(); 24];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm512_set1_ps(std::hint::black_box(i as f32 * 1e-3));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(std::hint::black_box(FMA_A));
    let b = _mm256_set1_ps(std::hint::black_box(FMA_B));
    let mut acc = [_mm256_setzero_ps(); 12];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm256_set1_ps(std::hint::black_box(i as f32 * 1e-3));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}

fn fma_scalar(iters: u64) -> f32 {
    let a = std::hint::black_box(FMA_A);
    let b = std::hint::black_box(FMA_B);
    let mut acc = [0f32; 8];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

/// The bf16 pair `(2^-10, 2^-10)` as one 32-bit word: each `vdpbf16ps` lane adds
/// `2·2^-20 = 2^-19` to its accumulator, exactly while the accumulator stays below 16
/// (its f32 ulp ≤ 2^-20), so no overflow, no subnormals, and a checkable result.
const DOT_PAIR: u32 = 0x3a80_3a80;

/// `iters` rounds of `vdpbf16ps` on 24 register-resident accumulators (accumulator `i`
/// starts at `i·2^-10`), all summed into the result; 0 where the CPU lacks AVX512-BF16
/// (callers ask [`bf16_dot`], which checks first).
fn bf16_dot_loop(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if bf16_dot_available() {
        // SAFETY: AVX512-BF16 (and AVX-512F) were detected at run time.
        return unsafe { bf16_dot_avx512(iters) };
    }
    let _ = iters;
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn bf16_dot_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let pair: __m512bh =
        std::mem::transmute(_mm512_set1_epi32(std::hint::black_box(DOT_PAIR) as i32));
    let mut acc = [_mm512_setzero_ps(); 24];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm512_set1_ps(std::hint::black_box(i as f32 / 1024.0));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, pair, pair);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_loop_computes_the_recurrence() {
        // acc ← a·acc + b from acc₀ = i·1e-3, summed over the accumulators: checked against
        // the same recurrence in f64 (the loop must not be shortened or reassociated away).
        let (_, flops_per_iter) = fma_kernel();
        let accs = (flops_per_iter / 2.0) as usize;
        let lanes = match accs {
            384 => 16, // 24 zmm × 16 lanes
            96 => 8,   // 12 ymm × 8 lanes
            _ => 1,
        };
        let per_lane = accs / lanes;
        let n = 1000;
        let want: f64 = (0..per_lane)
            .map(|i| {
                let mut x = if lanes == 1 { 0.0 } else { i as f64 * 1e-3 };
                for _ in 0..n {
                    x = x * FMA_A as f64 + FMA_B as f64;
                }
                x * lanes as f64
            })
            .sum();
        let got = fma_loop(n) as f64;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "fma_loop({n}) = {got}, the recurrence gives {want}"
        );
    }

    #[test]
    fn bf16_dot_loop_adds_every_product() {
        if !bf16_dot_available() {
            // Nothing to run: this CPU has no AVX512-BF16, and the header says so.
            assert!(bf16_dot(1, 1, 10).is_none());
            return;
        }
        // Accumulator i of 16 lanes: i·2^-10 + n·2^-19, every step exact (see DOT_PAIR);
        // the final sum of 384 lanes rounds, ≤ 384·2^-24 relative at most.
        let n = 1000u64;
        let want: f64 = (0..24)
            .map(|i| 16.0 * (i as f64 / 1024.0 + n as f64 * 2f64.powi(-19)))
            .sum();
        let got = bf16_dot_loop(n) as f64;
        assert!(
            (got - want).abs() <= 384.0 * 2f64.powi(-24) * want,
            "bf16_dot_loop({n}) = {got}, the exact sum is {want}"
        );
        let short = bf16_dot_loop(n - 1) as f64;
        assert!(short < got, "one iteration fewer must add less");
    }
}
