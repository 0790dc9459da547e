//! `duel bench`: the measured throughput of every op family and of whole training steps,
//! against the machine's measured limits and, given a PyTorch run of the same rows
//! (`scripts/bench_pytorch.py`), against PyTorch.
//!
//! - [`machine`]: the header (CPU, ISA features, measured FMA and bf16 peaks ([`peak`]), triad bandwidth,
//!   GPU facts and kernel build mode);
//! - [`cases`]: the op rows with their FLOP/byte formulas;
//! - [`step`]: whole trainer steps split by op and direction ([`crate::profile`]);
//! - [`report`]: the table, the JSON schema (README "Benchmarks") and `--against`.

pub mod cases;
mod conv_cases;
pub mod machine;
pub mod peak;
pub mod report;
pub mod step;
pub mod timing;

use std::time::Instant;

use crate::device::Device;
use crate::error::Result;
use crate::ops::precision::Precision;
use crate::tensor::DType;

use cases::Case;
use timing::{max_rel_err, Budget, Spread, Stopwatch};

/// Normwise relative error an f32 row may show against the f64 reference: the GEMM rows
/// sum up to K = 64·32·32 = 65,536 products, whose rounding grows like √K·u ≈ 256 ·
/// 6e-8 = 1.5e-5 for random signs; 1e-4 leaves a 6× margin. A wrong kernel (a missing
/// term, a wrong index) is off by O(1/√K) or more.
pub const F32_TOLERANCE: f64 = 1e-4;

/// The operand precision a row's kernel runs at, by its name (`bf16…`, `f16…`, else f32):
/// what its check tolerance and its peak follow.
pub fn kernel_precision(kernel: &str) -> Precision {
    if kernel.starts_with("bf16") {
        Precision::Bf16
    } else if kernel.starts_with("f16") {
        Precision::F16
    } else {
        Precision::F32
    }
}

/// The check tolerance of the bf16 GEMM rows (kernel `bf16-*`; the f16 rows `f16-*`, whose
/// roundings are 8× smaller, use it too) against the f32/f64
/// product of the unrounded operands, normwise as every row (max |err| / max |want|):
/// each product carries the operands' rounding, `2·2^-8 + 2^-16` relative (`ops::gemm_bf16`);
/// for the benchmark's normal inputs the errors of a sum of k products grow like √k as the
/// sum does, so the normwise error stays near that per-product figure (measured 2.2e-3 at
/// 256³, 2.5e-3 at 512³, 2.9e-3 at 1024³, 2.4e-3 at 2048³, every path); 2^-6 leaves twice the worst case of two roundings.
pub const BF16_TOLERANCE: f64 = 1.0 / 64.0;

/// The same for the f16 rows (kernels `f16`, `f16-mma`): a product carries `2·2^-11 + 2^-22`, 8× less
/// than bf16, so 2^-9 keeps the same margin.
pub const F16_TOLERANCE: f64 = 1.0 / 512.0;

/// What a `duel bench` run measures.
#[derive(Clone, Debug)]
pub struct Options {
    /// CI-sized: fewer samples and shapes.
    pub quick: bool,
    /// Only rows whose key contains this (steps are `step/<arch>`).
    pub filter: Option<String>,
    /// Leave out the whole-step rows.
    pub no_steps: bool,
}

/// The check column: the worst normwise error against the reference.
#[derive(Clone, Debug)]
pub struct Check {
    pub max_rel_err: f64,
    pub tolerance: f64,
    /// What the row was compared with (`cpu f64`, `cpu f32`).
    pub reference: &'static str,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.max_rel_err <= self.tolerance
    }
}

/// One measured op row.
#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub op: &'static str,
    pub direction: &'static str,
    pub label: String,
    pub shape: String,
    pub dtype: DType,
    pub device: String,
    pub kernel: &'static str,
    pub flops: f64,
    pub bytes: f64,
    pub samples: Vec<f64>,
    pub spread: Spread,
    /// None when no reference could run (reported as such, never as a pass).
    pub check: Option<Check>,
}

impl Row {
    pub fn gflops(&self) -> f64 {
        self.flops / self.spread.median / 1e9
    }
    pub fn gbps(&self) -> f64 {
        self.bytes / self.spread.median / 1e9
    }
}

/// What a device has taken from the system so far, cumulatively.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AllocReading {
    /// cpu: every heap request; cuda/emu: device-memory allocations past the cache.
    pub allocations: u64,
    pub bytes: u64,
    /// cpu only: the requests of at least 4 KiB (tensor buffers), and their bytes.
    pub tensor_sized: Option<(u64, u64)>,
}

/// The reading for `device`, or None where it cannot count: the cpu without
/// [`CountingAlloc`](crate::device::cpu::alloc_counter::CountingAlloc) installed.
pub fn alloc_reading(device: &Device) -> Option<AllocReading> {
    match device.simt() {
        Some(simt) => {
            let s = simt.alloc_stats();
            Some(AllocReading {
                allocations: s.allocations,
                bytes: s.bytes,
                tensor_sized: None,
            })
        }
        None => crate::device::cpu::alloc_counter::read().map(|c| AllocReading {
            allocations: c.allocations,
            bytes: c.bytes,
            tensor_sized: Some((c.tensor_allocations, c.tensor_bytes)),
        }),
    }
}

/// Whether a row's `key` passes `--filter`: it contains the pattern, or, for a pattern
/// ending in `$`, it ends with the rest (`step/dcgan28$`: the f32 step alone, not its
/// bf16 and f16 rows). `scripts/bench_pytorch.py` reads the pattern the same way.
pub fn key_matches(key: &str, filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(f) => match f.strip_suffix('$') {
            Some(end) => key.ends_with(end),
            None => key.contains(f),
        },
    }
}

/// Every selected op row, measured in table order. `progress` is told each row's key
/// before it runs (long runs show where they are).
pub fn run_cases(
    device: &Device,
    options: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Row>> {
    let budget = if options.quick {
        Budget::quick()
    } else {
        Budget::full()
    };
    let mut rows = Vec::new();
    for case in cases::all_cases(device) {
        if options.quick && case.full_only {
            continue;
        }
        if !key_matches(&case.key(), options.filter.as_deref()) {
            continue;
        }
        progress(&case.key());
        rows.push(measure_case(&case, device, budget)?);
    }
    Ok(rows)
}

fn measure_case(case: &Case, device: &Device, budget: Budget) -> Result<Row> {
    let dtype = DType::F32;
    let mut sw = Stopwatch::new(device);
    let mut work = (case.build)(device, dtype)?;
    // The first call is the check (and the warm-up: workspaces, kernel loading).
    let got = work(&mut sw)?;
    sw.take();
    let check = check_against_reference(case, &got)?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while !budget.done(samples.len(), started.elapsed()) {
        work(&mut sw)?;
        samples.push(sw.take().as_secs_f64());
    }
    Ok(Row {
        key: case.key(),
        op: case.op,
        direction: case.direction,
        label: case.label.clone(),
        shape: case.shape.clone(),
        dtype,
        device: device.to_string(),
        kernel: case.kernel,
        flops: case.flops,
        bytes: case.bytes,
        spread: Spread::of(&samples),
        samples,
        check,
    })
}

/// Run the case once on the cpu in f64 on the same inputs (f32 where the op has no f64
/// path) and compare.
fn check_against_reference(case: &Case, got: &[crate::tensor::Tensor]) -> Result<Option<Check>> {
    let mut sw = Stopwatch::new(&Device::Cpu);
    for (dtype, reference) in [(DType::F64, "cpu f64"), (DType::F32, "cpu f32")] {
        let Ok(mut work) = (case.build)(&Device::Cpu, dtype) else {
            continue;
        };
        let Ok(want) = work(&mut sw) else { continue };
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max(max_rel_err(&g.to_f64_vec()?, &w.to_f64_vec()?));
        }
        if got.len() != want.len() {
            worst = f64::INFINITY;
        }
        return Ok(Some(Check {
            max_rel_err: worst,
            tolerance: match kernel_precision(case.kernel) {
                Precision::Bf16 => BF16_TOLERANCE,
                Precision::F16 => F16_TOLERANCE,
                Precision::F32 => F32_TOLERANCE,
            },
            reference,
        }));
    }
    Ok(None)
}

/// The whole-step rows: warm-up and timed step counts by mode.
pub fn run_steps(
    device: &Device,
    options: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Vec<step::StepRow>> {
    let mut rows = Vec::new();
    if options.no_steps {
        return Ok(rows);
    }
    for config in step::step_configs() {
        let key = step::step_key(&config);
        if !key_matches(&key, options.filter.as_deref()) {
            continue;
        }
        let dcgan64 = config.arch == crate::gan::arch::Arch::Dcgan64;
        // (warm-up, timed): the emulator and --quick get the fewest; dcgan64 is ~10× dcgan28.
        let (warmup, steps) = match (options.quick || device.simt().is_some(), dcgan64) {
            (true, true) => (1, 2),
            (true, false) => (1, 5),
            (false, true) => (2, 8),
            (false, false) => (3, 30),
        };
        if options.quick && dcgan64 && device.is_cpu() {
            continue; // ~2 s a step here: not CI-sized
        }
        progress(&key);
        rows.push(step::measure_step(config, device, warmup, steps)?);
    }
    Ok(rows)
}

/// Measure the header on `threads` threads (full: 5 repetitions; quick: 2).
pub fn measure_machine(device: &Device, threads: usize, quick: bool) -> machine::Machine {
    let reps = if quick { 2 } else { 5 };
    // ~0.1 s per repetition at 100 GFLOP/s per thread.
    let iters = if quick { 500_000 } else { 2_000_000 };
    let fma = peak::fma(threads, reps, iters);
    let bf16 = peak::bf16_dot(threads, reps, iters);
    // 3 × 128 MiB: beyond any L3 (105 MiB on the machine this was written on).
    let triad = machine::measure_triad(32 << 20, if quick { 3 } else { 8 });
    let (gpu, gpu_absent) = match device {
        Device::Cuda(_, ordinal) => match crate::device::cuda::probe() {
            Ok(gpus) => match gpus.into_iter().find(|g| g.ordinal == *ordinal) {
                Some(g) => (Some(machine::GpuFacts::new(g)), None),
                None => (
                    None,
                    Some(format!("cuda:{ordinal} is not in the driver's list")),
                ),
            },
            Err(why) => (None, Some(why)),
        },
        _ => (None, None),
    };
    machine::Machine {
        cpu: machine::cpu_model(),
        threads,
        features: machine::isa_features(),
        fma,
        bf16,
        triad_gbps: triad,
        device: device.to_string(),
        gpu,
        gpu_absent,
        kernels: machine::kernel_build(),
    }
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn filters_match_substrings_or_key_ends() {
        assert!(key_matches("step/dcgan28/bf16", None));
        assert!(key_matches("step/dcgan28/bf16", Some("dcgan28")));
        assert!(!key_matches("step/dcgan28/bf16", Some("dcgan64")));
        assert!(key_matches("step/dcgan28", Some("step/dcgan28$")));
        assert!(!key_matches("step/dcgan28/bf16", Some("step/dcgan28$")));
        assert!(key_matches("step/dcgan28/bf16", Some("bf16$")));
    }
}
