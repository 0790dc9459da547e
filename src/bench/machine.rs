//! The machine header of `duel bench`: what the CPU is, what it can do (a measured f32 FMA
//! peak and stream-triad bandwidth), and on cuda what the GPU is and how the kernels were
//! built. Every "% of peak" column of the table divides by the numbers measured here.

use crate::ops::precision::Precision;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::device::cuda::GpuInfo;
use crate::kernels::{PTX_ARCH, PTX_FROM_NVCC};

/// The CPU's name from /proc/cpuinfo (the architecture when there is none).
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    ["model name", "Hardware", "Model", "cpu model"]
        .iter()
        .find_map(|key| {
            info.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| format!("{} CPU", std::env::consts::ARCH))
}

/// SIMD and matrix features detected at run time, in a fixed order.
#[allow(unused_mut)]
pub fn isa_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($name:tt => $shown:expr),*) => {
                $(if is_x86_feature_detected!($name) { found.push($shown); })*
            };
        }
        probe!("avx2" => "avx2", "fma" => "fma", "avx512f" => "avx512f",
               "avx512bw" => "avx512bw", "avx512vnni" => "avx512_vnni",
               "avx512bf16" => "avx512_bf16", "avx512fp16" => "avx512_fp16");
        // AMX: the CPUID/XCR0 probe of `device::cpu::isa` (what the hardware and OS offer).
        let amx = crate::device::cpu::isa::amx_bits();
        if amx.tile {
            found.push("amx-tile");
        }
        if amx.bf16 {
            found.push("amx-bf16");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon");
        }
    }
    found
}

/// A measured f32 FMA rate: which loop ran and the best rate over the repetitions.
#[derive(Clone, Debug)]
pub struct FmaPeak {
    pub gflops: f64,
    pub threads: usize,
    pub kernel: &'static str,
}

/// The f32 FMA peak on `threads` OS threads, each running [`fma_loop`] for the same count;
/// the best of `reps` repetitions (the machine may be shared; the best is the least disturbed).
pub fn measure_fma_peak(threads: usize, reps: usize, iters: u64) -> FmaPeak {
    let (kernel, flops_per_iter) = fma_kernel();
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
                        std::hint::black_box(fma_loop(std::hint::black_box(iters)));
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
    FmaPeak {
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

/// The best stream-triad rate `a[i] = b[i] + s·c[i]` over `reps` on the current rayon
/// pool, in GB/s counting 12 bytes per element (STREAM's convention: reads of b and c,
/// the write of a; the write-allocate read is not counted).
pub fn measure_triad(len: usize, reps: usize) -> f64 {
    let b = vec![1.0f32; len];
    let c = vec![2.0f32; len];
    let mut a = vec![0.0f32; len];
    let s = std::hint::black_box(3.0f32);
    const CHUNK: usize = 1 << 16;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK)))
            .for_each(|(a, (b, c))| {
                for i in 0..a.len() {
                    a[i] = b[i] + s * c[i];
                }
            });
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(&a);
    }
    (12 * len) as f64 / best / 1e9
}

/// The GPU facts of the header, with the peaks derived from the driver's clocks.
#[derive(Clone, Debug)]
pub struct GpuFacts {
    pub info: GpuInfo,
    /// FP32 lanes per SM for this compute capability (NVIDIA's tables); None if unknown.
    pub fp32_lanes_per_sm: Option<u32>,
}

impl GpuFacts {
    pub fn new(info: GpuInfo) -> GpuFacts {
        let fp32_lanes_per_sm = match info.compute_capability {
            (7, _) | (8, 0) => Some(64),
            (8, _) | (9, 0) | (10, _) | (12, _) => Some(128),
            _ => None,
        };
        GpuFacts {
            info,
            fp32_lanes_per_sm,
        }
    }
    /// SMs × lanes × 2 FLOPs × boost clock.
    pub fn fp32_peak_gflops(&self) -> Option<f64> {
        let lanes = self.fp32_lanes_per_sm? as f64;
        Some(self.info.sm_count as f64 * lanes * 2.0 * self.info.clock_khz as f64 / 1e6)
    }
    /// Double data rate × bus width.
    pub fn bandwidth_gbps(&self) -> f64 {
        2.0 * self.info.memory_clock_khz as f64 * 1e3 * self.info.memory_bus_bits as f64 / 8.0 / 1e9
    }
    /// One line per fact, as the header prints them.
    pub fn describe(&self) -> Vec<String> {
        let i = &self.info;
        let peak = self
            .fp32_peak_gflops()
            .map_or("unknown".to_string(), |p| format!("{p:.0} GFLOP/s"));
        vec![
            format!(
                "GPU        cuda:{} {}, compute {}.{}, {} SMs, {:.0} MHz, {:.1} GiB",
                i.ordinal,
                i.name,
                i.compute_capability.0,
                i.compute_capability.1,
                i.sm_count,
                i.clock_khz as f64 / 1e3,
                i.total_memory as f64 / (1u64 << 30) as f64
            ),
            format!(
                "GPU peak   f32 {peak} (from the clock), memory {:.0} GB/s ({} MHz, {}-bit)",
                self.bandwidth_gbps(),
                i.memory_clock_khz / 1000,
                i.memory_bus_bits
            ),
        ]
    }
}

/// How kernels/*.cu reach the GPU in this build.
pub fn kernel_build() -> String {
    if PTX_FROM_NVCC {
        format!("embedded PTX for {PTX_ARCH} (nvcc at build time)")
    } else {
        "CUDA sources embedded, compiled by NVRTC at first use (nvcc was absent)".to_string()
    }
}

/// The whole header as measured: CPU, features, peaks, GPU.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub threads: usize,
    pub features: Vec<&'static str>,
    pub fma: FmaPeak,
    pub triad_gbps: f64,
    /// The device the rows ran on (cpu, emu, cuda:N).
    pub device: String,
    pub gpu: Option<GpuFacts>,
    /// Why there is no GPU line (cuda was asked for but none could be used).
    pub gpu_absent: Option<String>,
    pub kernels: String,
}

impl Machine {
    /// The peak the rows are judged against: the GPU's on cuda, the measured FMA peak else.
    pub fn peak_gflops(&self) -> f64 {
        self.gpu
            .as_ref()
            .and_then(GpuFacts::fp32_peak_gflops)
            .unwrap_or(self.fma.gflops)
    }
    pub fn bandwidth_gbps(&self) -> f64 {
        self.gpu
            .as_ref()
            .map_or(self.triad_gbps, GpuFacts::bandwidth_gbps)
    }

    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("CPU        {} ({} threads used)", self.cpu, self.threads),
            format!("ISA        {}", self.features.join(" ")),
            format!("f32 GEMM   {}", crate::ops::sgemm::engine_description()),
            format!(
                "bf16 GEMM  {}; --precision bf16: {}, f16: {}",
                crate::ops::gemm_bf16::bf16_path_reason(),
                Precision::Bf16.cpu_route(),
                Precision::F16.cpu_route()
            ),
            format!(
                "FMA peak   {:.1} GFLOP/s f32 measured on {} threads ({})",
                self.fma.gflops, self.fma.threads, self.fma.kernel
            ),
            format!(
                "bandwidth  {:.1} GB/s stream triad on {} threads",
                self.triad_gbps, self.threads
            ),
            format!("device     {}", self.device),
        ];
        if let Some(g) = &self.gpu {
            lines.extend(g.describe());
        }
        if let Some(why) = &self.gpu_absent {
            lines.push(format!("GPU        no GPU found: {why}"));
        }
        lines.push(format!("kernels    {}", self.kernels));
        lines
    }

    pub fn to_json(&self) -> Value {
        json!({
            "cpu": self.cpu,
            "threads": self.threads,
            "features": self.features,
            "bf16_gemm_path": crate::ops::gemm_bf16::bf16_path(),
            "fma_peak_gflops": self.fma.gflops,
            "fma_threads": self.fma.threads,
            "fma_kernel": self.fma.kernel,
            "triad_gbps": self.triad_gbps,
            "device": self.device,
            "gpu": self.gpu.as_ref().map(|g| json!({
                "name": g.info.name,
                "ordinal": g.info.ordinal,
                "compute_capability": [g.info.compute_capability.0, g.info.compute_capability.1],
                "sm_count": g.info.sm_count,
                "clock_mhz": g.info.clock_khz as f64 / 1e3,
                "memory_clock_mhz": g.info.memory_clock_khz as f64 / 1e3,
                "memory_bus_bits": g.info.memory_bus_bits,
                "fp32_peak_gflops": g.fp32_peak_gflops(),
                "bandwidth_gbps": g.bandwidth_gbps(),
            })),
            "gpu_absent": self.gpu_absent,
            "kernels": self.kernels,
        })
    }
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
    fn gpu_peaks_come_from_the_driver_facts() {
        // An H100 SXM as its driver reports it: 132 SMs at 1980 MHz, HBM3 at 2619 MHz on
        // a 5120-bit bus.
        let facts = GpuFacts::new(GpuInfo {
            ordinal: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: (9, 0),
            total_memory: 80 << 30,
            driver_version: (12, 4),
            sm_count: 132,
            clock_khz: 1_980_000,
            memory_clock_khz: 2_619_000,
            memory_bus_bits: 5120,
        });
        let peak = facts.fp32_peak_gflops().unwrap();
        assert!((peak - 132.0 * 128.0 * 2.0 * 1.98).abs() < 1e-6, "{peak}"); // 66.9 TFLOP/s
        assert!((facts.bandwidth_gbps() - 3352.32).abs() < 1e-6);
        let lines = facts.describe().join("\n");
        assert!(
            lines.contains("132 SMs") && lines.contains("compute 9.0"),
            "{lines}"
        );
    }
}
