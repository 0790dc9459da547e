//! The machine header of `duel bench`: what the CPU is, what it can do (measured f32 FMA
//! and bf16 dot-product peaks, `peak.rs`, and stream-triad bandwidth), and on cuda what the
//! GPU is and how the kernels were built. Every "% of peak" column of the table divides by
//! the numbers measured here.

use super::peak::Peak;
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
    pub fma: Peak,
    /// The `vdpbf16ps` peak, where the CPU has AVX512-BF16 (after `DUEL_CPU_ISA`).
    pub bf16: Option<Peak>,
    pub triad_gbps: f64,
    /// The device the rows ran on (cpu, emu, cuda:N).
    pub device: String,
    pub gpu: Option<GpuFacts>,
    /// Why there is no GPU line (cuda was asked for but none could be used).
    pub gpu_absent: Option<String>,
    pub kernels: String,
}

impl Machine {
    /// The peak a row of `kernel` is judged against: the GPU's f32 peak on cuda; on the
    /// cpu the measured FMA peak, or for a bf16 row (kernel `bf16…`) the bf16 dot-product
    /// peak where it was measured and the GEMM runs on `vdpbf16ps` (on AMX tiles, whose
    /// peak is not measured, bf16 rows keep the FMA peak and can pass 100%).
    pub fn peak_gflops(&self, kernel: &str) -> f64 {
        if let Some(gpu) = self.gpu.as_ref().and_then(GpuFacts::fp32_peak_gflops) {
            return gpu;
        }
        match &self.bf16 {
            Some(b)
                if super::kernel_precision(kernel) == Precision::Bf16 && !self.bf16_on_amx() =>
            {
                b.gflops
            }
            _ => self.fma.gflops,
        }
    }

    fn bf16_on_amx(&self) -> bool {
        crate::ops::gemm_bf16::Bf16Path::detected() == crate::ops::gemm_bf16::Bf16Path::Amx
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
            match &self.bf16 {
                Some(b) => format!(
                    "bf16 peak  {:.1} GFLOP/s measured on {} threads ({}){}",
                    b.gflops,
                    b.threads,
                    b.kernel,
                    match self.bf16_on_amx() {
                        true =>
                            "; the AMX tiles' peak is not measured: bf16 rows keep the FMA peak",
                        false => "; bf16 rows' %pk divide by it",
                    }
                ),
                None => {
                    "bf16 peak  no bf16 units (AVX512-BF16): bf16 rows' %pk divide by the FMA peak"
                        .into()
                }
            },
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
            "bf16_peak_gflops": self.bf16.as_ref().map(|b| b.gflops),
            "bf16_kernel": self.bf16.as_ref().map(|b| b.kernel),
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
