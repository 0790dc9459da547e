//! Whole GANs on `Device::emu()` (kernels/*.cu compiled for the cpu emulator): a tiny
//! toy-data MLP and a tiny conditional DCGAN train end to end through `run::run`, and
//! match the same runs on the cpu reference step by step.
//!
//! Tolerance: the kernels' f32 reductions (matmul, conv, batch-norm statistics, sums)
//! add in another order than the cpu's, so values differ by rounding, which the training
//! steps carry on. Measured: losses, mean D outputs and gradient norms agree to 2e-7
//! relative; parameters, buffers and Adam moments to 3e-6 of each tensor's largest value;
//! G's output to 2e-7. The bounds below are 50× and 30× those.

use std::time::Instant;

use duel::gan::config::{DataSpec, TrainConfig};
use duel::gan::run::{self, RunOptions};
use duel::gan::{Arch, StepMetrics, Trainer, Variant};
use duel::io::metrics::read_metrics;
use duel::nn::Module;
use duel::tensor::Tensor;
use duel::Device;

mod common;
use common::{png_size, TempDir};

/// Relative bound for losses, mean D outputs and gradient norms.
const METRIC_TOL: f64 = 1e-5;
/// Bound on max |emu − cpu| over a tensor, relative to the tensor's largest |value|.
const STATE_TOL: f64 = 1e-4;

fn emu() -> Device {
    Device::emu().expect("the emu device must be available for the emu GAN tests")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-6)
}

/// max |a − b| / max |b| (0 for two zero tensors).
fn tensor_rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    assert!(a.iter().all(|v| v.is_finite()), "non-finite emu values");
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(1e-12)
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    assert!(a.iter().all(|v| v.is_finite()), "non-finite values");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Names of parameters that are a bias directly followed by a batch norm. The networks have
/// none (DCGAN's bias=False): such a bias gets an exact gradient of zero, each device
/// computes ~1e-9 of rounding noise instead, and Adam's normalised step turns that into
/// moves of up to lr per step in directions set by the noise, so emu and cpu would drift
/// apart there by ~lr·steps and the tight bounds below could not hold.
fn biases_before_batch_norm(t: &Trainer) -> Vec<String> {
    let names: Vec<String> = t.state_tensors().into_iter().map(|(n, _)| n).collect();
    let mut out = vec![];
    for (p, net) in [("g", &t.g), ("d", &t.d)] {
        for (name, _) in net.body.parameters() {
            let Some(i) = name
                .strip_suffix(".bias")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if names.contains(&format!("{p}.{}.running_mean", i + 1)) {
                out.push(format!("{p}.{name}"));
            }
        }
    }
    out
}

/// Train `config` on the emulator through `run::start` + `run::run` into a temp dir, and
/// for as many steps on the cpu; compare metrics, the whole training state and the fixed
/// samples. Returns the run directory's guard and the emu trainer.
fn emu_matches_cpu(test: &str, config: &TrainConfig) -> (TempDir, Trainer) {
    let device = emu();
    assert!(matches!(device, Device::Emu(_)));
    let tmp = TempDir::new(&format!("gan_emu-{test}"));
    let dir = tmp.path("run");

    let t0 = Instant::now();
    let mut on_emu = Trainer::new(config.clone(), &device).unwrap();
    run::start(&dir).unwrap();
    let opts = RunOptions {
        sample_every: 1000,
        checkpoint_every: 1000,
        quiet: true,
        ..Default::default()
    };
    let summary = run::run(&mut on_emu, &dir, &opts).unwrap();
    assert_eq!(summary.step, config.steps);
    let emu_seconds = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let mut on_cpu = Trainer::new(config.clone(), &Device::Cpu).unwrap();
    let cpu_metrics: Vec<StepMetrics> = (0..config.steps)
        .map(|_| on_cpu.train_step().unwrap())
        .collect();
    let cpu_seconds = t0.elapsed().as_secs_f64();

    // Losses per step, from the emu run's metrics.jsonl (written with full precision).
    let rows = read_metrics(dir.join(run::METRICS)).unwrap();
    assert_eq!(rows.len(), cpu_metrics.len());
    let mut worst_metric = 0.0f64;
    for (row, m) in rows.iter().zip(&cpu_metrics) {
        assert_eq!(row["step"], m.step as f64);
        for (key, want) in m.fields().into_iter().skip(1) {
            let got = row[key];
            assert!(got.is_finite(), "step {}: {key} = {got} on emu", m.step);
            let r = rel(got, want);
            worst_metric = worst_metric.max(r);
            assert!(
                r <= METRIC_TOL,
                "step {}: {key} emu {got} vs cpu {want} (rel {r:.2e} > {METRIC_TOL:e})",
                m.step
            );
        }
    }

    // The whole training state: G, D (with batch-norm buffers), both optimizers.
    let (a, b) = (on_emu.state_tensors(), on_cpu.state_tensors());
    assert_eq!(a.len(), b.len());
    let cancelled = biases_before_batch_norm(&on_cpu);
    assert!(
        cancelled.is_empty(),
        "biases before batch norm: {cancelled:?}"
    );
    let mut worst_state = (0.0f64, String::new());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        if !na.ends_with("num_batches_tracked") {
            assert!(
                matches!(ta.device(), Device::Emu(_)),
                "{na} is on {}, not the emulator",
                ta.device()
            );
        }
        let ta = ta.to_device(&Device::Cpu).unwrap();
        let r = tensor_rel(&ta, tb);
        if r > worst_state.0 {
            worst_state = (r, na.clone());
        }
        assert!(
            r <= STATE_TOL,
            "{na}: emu vs cpu rel {r:.2e} > {STATE_TOL:e}"
        );
    }

    // G(fixed noise) in eval mode (batch norm's running statistics).
    let fixed = tensor_rel(
        &on_emu.fixed_samples().unwrap(),
        &on_cpu.fixed_samples().unwrap(),
    );
    assert!(
        fixed <= STATE_TOL,
        "fixed samples: rel {fixed:.2e} > {STATE_TOL:e}"
    );

    // The run directory: samples at the last step and final, loss plot, checkpoints.
    let last = dir
        .join("samples")
        .join(format!("step-{:06}.png", config.steps));
    for p in [&last, &summary.final_samples, &dir.join(run::LOSS_PLOT)] {
        assert!(p.is_file(), "{} missing", p.display());
        png_size(p);
    }
    assert!(dir.join(run::CONFIG).is_file());
    // The emu checkpoint reloads on the cpu as exactly the emu run's state.
    let reloaded = Trainer::load(dir.join(run::CHECKPOINT), &Device::Cpu, None).unwrap();
    assert_eq!(reloaded.step, config.steps);
    for ((n, t), (_, e)) in reloaded.state_tensors().iter().zip(&a) {
        let d = max_abs_diff(t, &e.to_device(&Device::Cpu).unwrap());
        assert_eq!(d, 0.0, "{n} reloaded from the emu checkpoint");
    }
    // generator.safetensors: the emu G, run on the cpu, draws what it draws on the emu.
    let (g, spec, _) = run::load_generator(&dir, &Device::Cpu).unwrap();
    assert_eq!(spec, on_cpu.spec);
    let z = Tensor::randn([8, config.nz], 11, 0, &Device::Cpu).unwrap();
    let labels = spec
        .classes
        .map(|k| (0..8).map(|i| (i % k) as u8).collect::<Vec<u8>>());
    let from_file = duel::autograd::no_grad(|| g.forward(&z, labels.as_deref())).unwrap();
    let z_emu = z.to_device(&device).unwrap();
    let on_device = on_emu.generate(&z_emu, labels.as_deref()).unwrap();
    let r = tensor_rel(&from_file, &on_device);
    assert!(
        r <= STATE_TOL,
        "generator.safetensors on cpu vs on emu: rel {r:.2e}"
    );

    // G(z) in training mode (batch statistics). Last: this forward advances G's running
    // statistics.
    let z = Tensor::randn([16, config.nz], 13, 0, &Device::Cpu).unwrap();
    let labels = on_cpu
        .spec
        .classes
        .map(|k| (0..16).map(|i| (i % k) as u8).collect::<Vec<u8>>());
    let train_mode = |t: &Trainer, z: &Tensor| {
        let out = duel::autograd::no_grad(|| t.g.forward(z, labels.as_deref())).unwrap();
        out.to_device(&Device::Cpu).unwrap()
    };
    let batch_stats = tensor_rel(
        &train_mode(&on_emu, &z.to_device(&device).unwrap()),
        &train_mode(&on_cpu, &z),
    );
    assert!(
        batch_stats <= STATE_TOL,
        "G(z) in training mode: rel {batch_stats:.2e}"
    );
    eprintln!(
        "{test}: emu {emu_seconds:.2} s (run::run with files), cpu {cpu_seconds:.2} s; \
         worst metric rel diff {worst_metric:.2e}; worst state rel diff {:.2e} ({}); \
         fixed samples (eval) rel diff {fixed:.2e}, G(z) (batch stats) rel diff \
         {batch_stats:.2e}",
        worst_state.0, worst_state.1
    );

    (tmp, on_emu)
}

#[test]
fn emu_trains_a_toy_mlp_gan_like_the_cpu() {
    let mut config = TrainConfig::defaults(Variant::NsGan, Arch::Mlp, DataSpec::Ring8);
    config.batch_size = 16;
    config.width = 8;
    config.nz = 4;
    config.steps = 5;
    let (tmp, on_emu) = emu_matches_cpu("mlp", &config);
    // Toy data: a 600×600 scatter of the fixed samples over the ring's modes.
    let final_png = tmp.path("run/samples/final.png");
    assert_eq!(png_size(&final_png), (600, 600));
    assert!(on_emu.mixture().is_some());
}

#[test]
fn emu_trains_a_tiny_conditional_dcgan_like_the_cpu() {
    let mut config = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan28, DataSpec::Digits);
    config.conditional = true;
    config.width = 2;
    config.batch_size = 4;
    config.nz = 4;
    config.steps = 2;
    let (tmp, on_emu) = emu_matches_cpu("cond28", &config);
    assert_eq!(on_emu.spec.classes, Some(10));
    // An 8×8 grid of 28×28 digits, padding 2.
    let final_png = tmp.path("run/samples/final.png");
    let (w, h) = duel::io::image::grid_size(64, 28, 28, 8, 2);
    assert_eq!(png_size(&final_png), (w as u32, h as u32));
}
