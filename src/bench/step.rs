//! Whole-step rows: the real trainer step ([`Trainer::train_step`]: one D step, then one G
//! step, Adam) of each architecture with its `duel train` defaults, timed step by step,
//! with the op profiler on so the step splits into (op, direction) shares.

use serde_json::{json, Value};

use crate::device::Device;
use crate::error::Result;
use crate::gan::arch::Arch;
use crate::gan::config::{DataSpec, TrainConfig};
use crate::gan::objective::Variant;
use crate::gan::trainer::Trainer;
use crate::ops::precision::Precision;
use crate::profile;

use super::timing::{Spread, Stopwatch};

/// Steps run with the profiler's device waits on cuda/emu, for the breakdown alone.
const PROFILED_STEPS: usize = 10;

/// One share of a step: an (op, direction) and its time per step.
#[derive(Clone, Debug)]
pub struct Share {
    pub op: String,
    pub direction: String,
    pub calls_per_step: f64,
    pub seconds_per_step: f64,
}

/// A whole-step row.
#[derive(Clone, Debug)]
pub struct StepRow {
    pub arch: &'static str,
    pub precision: Precision,
    pub data: String,
    pub batch: usize,
    pub device: String,
    pub samples: Vec<f64>,
    pub spread: Spread,
    /// Allocations that went to the system per step (None where the device cannot say;
    /// see [`super::AllocReading`]).
    pub allocs_per_step: Option<f64>,
    pub alloc_bytes_per_step: Option<f64>,
    /// cpu: the tensor-sized (>= 4 KiB) part of those, count and bytes per step.
    pub tensor_allocs_per_step: Option<(f64, f64)>,
    /// Largest first; the time no scope covered (data, autograd bookkeeping) is "other".
    pub breakdown: Vec<Share>,
}

impl StepRow {
    /// `step/<arch>` for f32, `step/<arch>/<precision>` otherwise (PyTorch's rows of the
    /// same key: the same step under `torch.autocast`).
    pub fn key(&self) -> String {
        match self.precision {
            Precision::F32 => format!("step/{}", self.arch),
            p => format!("step/{}/{p}", self.arch),
        }
    }
    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / self.spread.median
    }
    pub fn to_json(&self) -> Value {
        let total: f64 = self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64;
        json!({
            "key": self.key(),
            "arch": self.arch,
            "precision": self.precision.name(),
            "data": self.data,
            "batch": self.batch,
            "device": self.device,
            "samples_s": self.samples,
            "median_s": self.spread.median,
            "p10_s": self.spread.p10,
            "p90_s": self.spread.p90,
            "ms_per_step": self.spread.median * 1e3,
            "img_per_s": self.images_per_second(),
            "allocs_per_step": self.allocs_per_step,
            "alloc_bytes_per_step": self.alloc_bytes_per_step,
            "tensor_allocs_per_step": self.tensor_allocs_per_step.map(|t| t.0),
            "tensor_alloc_bytes_per_step": self.tensor_allocs_per_step.map(|t| t.1),
            "breakdown": self.breakdown.iter().map(|s| json!({
                "op": s.op,
                "direction": s.direction,
                "calls_per_step": s.calls_per_step,
                "s_per_step": s.seconds_per_step,
                "pct": 100.0 * s.seconds_per_step / total,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The architectures with a step row, and the config `duel train` gives each by default
/// (non-saturating loss; digits for the DCGANs, ring8 for the MLP), each DCGAN in f32 and
/// under `--precision bf16`, dcgan28 under f16 too.
pub fn step_configs() -> Vec<TrainConfig> {
    [
        (Arch::Dcgan28, DataSpec::Digits, Precision::F32),
        (Arch::Dcgan28, DataSpec::Digits, Precision::Bf16),
        (Arch::Dcgan28, DataSpec::Digits, Precision::F16),
        (Arch::Dcgan64, DataSpec::Digits, Precision::F32),
        (Arch::Dcgan64, DataSpec::Digits, Precision::Bf16),
        (Arch::Mlp, DataSpec::Ring8, Precision::F32),
    ]
    .into_iter()
    .map(|(arch, data, precision)| TrainConfig {
        precision,
        ..TrainConfig::defaults(Variant::NsGan, arch, data)
    })
    .collect()
}

/// The key of the row [`measure_step`] makes of `config` (to filter before measuring).
pub fn step_key(config: &TrainConfig) -> String {
    match config.precision {
        Precision::F32 => format!("step/{}", config.arch.name()),
        p => format!("step/{}/{p}", config.arch.name()),
    }
}

/// Time `steps` trainer steps (after `warmup` untimed ones) of `config` on `device`.
pub fn measure_step(
    config: TrainConfig,
    device: &Device,
    warmup: usize,
    steps: usize,
) -> Result<StepRow> {
    let arch = config.arch.name();
    let precision = config.precision;
    let data = config.data.name();
    let batch = config.batch_size;
    let mut trainer = Trainer::new(config, device)?;
    for _ in 0..warmup {
        trainer.train_step()?;
    }
    // On the cpu the profiler rides along with the timed steps (its scopes cost a clock
    // read each). On cuda/emu it needs a device wait per op (profile::set_sync), which
    // would slow the steps it times: the steps are timed unprofiled and the breakdown
    // comes from PROFILED_STEPS more.
    let asynchronous = device.simt().is_some();
    profile::take();
    let before = super::alloc_reading(device);
    profile::set_enabled(!asynchronous);
    let mut watch = Stopwatch::new(device);
    let mut samples = Vec::with_capacity(steps);
    let mut timed = |count: usize, samples: &mut Vec<f64>| -> Result<()> {
        for _ in 0..count {
            watch.start()?;
            trainer.train_step()?;
            watch.stop()?;
            samples.push(watch.take().as_secs_f64());
        }
        Ok(())
    };
    let run = timed(steps.max(1), &mut samples);
    profile::set_enabled(false);
    run?;
    let after = super::alloc_reading(device);
    let mut profiled = samples.clone();
    if let Some(simt) = device.simt() {
        let simt = simt.clone();
        profile::set_sync(Some(Box::new(move || {
            let _ = simt.runtime().synchronize();
        })));
        profile::set_enabled(true);
        profiled.clear();
        let run = timed(PROFILED_STEPS.min(steps.max(1)), &mut profiled);
        profile::set_enabled(false);
        profile::set_sync(None);
        run?;
    }
    let n = samples.len() as f64;
    let n_profiled = profiled.len() as f64;
    let per_step_total: f64 = profiled.iter().sum::<f64>() / n_profiled;
    let mut breakdown: Vec<Share> = profile::take()
        .into_iter()
        .map(|e| Share {
            op: e.op.to_string(),
            direction: e.direction.name().to_string(),
            calls_per_step: e.calls as f64 / n_profiled,
            seconds_per_step: e.time.as_secs_f64() / n_profiled,
        })
        .collect();
    let covered: f64 = breakdown.iter().map(|s| s.seconds_per_step).sum();
    breakdown.push(Share {
        op: "other".into(),
        direction: "-".into(),
        calls_per_step: 0.0,
        seconds_per_step: (per_step_total - covered).max(0.0),
    });
    breakdown.sort_by(|a, b| b.seconds_per_step.total_cmp(&a.seconds_per_step));
    let allocs = before.zip(after);
    let per_step = |b: u64, a: u64| a.saturating_sub(b) as f64 / n;
    let tensor_sized = allocs.and_then(|(b, a)| {
        let ((bc, bb), (ac, ab)) = b.tensor_sized.zip(a.tensor_sized)?;
        Some((per_step(bc, ac), per_step(bb, ab)))
    });
    Ok(StepRow {
        arch,
        precision,
        data,
        batch,
        device: device.to_string(),
        spread: Spread::of(&samples),
        samples,
        allocs_per_step: allocs.map(|(b, a)| per_step(b.allocations, a.allocations)),
        alloc_bytes_per_step: allocs.map(|(b, a)| per_step(b.bytes, a.bytes)),
        tensor_allocs_per_step: tensor_sized,
        breakdown,
    })
}
