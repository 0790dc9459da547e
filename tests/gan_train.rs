//! Short GAN trainings on the cpu through the library API (`run::start` + `run::run`):
//! finite losses, and every file of the run directory present and valid.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use duel::gan::config::{DataSpec, TrainConfig};
use duel::gan::run::{self, RunOptions};
use duel::gan::{Arch, Objective, Trainer, Variant};
use duel::io::image::grid_size;
use duel::io::metrics::read_metrics;
use duel::nn::Module;
use duel::tensor::Tensor;
use duel::Device;

mod common;
use common::{png_info, TempDir};

fn tiny_dcgan28(steps: u64) -> TrainConfig {
    let mut c = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan28, DataSpec::Digits);
    c.width = 4;
    c.batch_size = 8;
    c.nz = 8;
    c.steps = steps;
    c
}

fn opts(every: u64) -> RunOptions {
    RunOptions {
        sample_every: every,
        checkpoint_every: every,
        quiet: true,
        ..Default::default()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn all_finite(t: &Tensor) -> bool {
    t.to_f64_vec().unwrap().iter().all(|v| v.is_finite())
}

/// Check everything a finished run of `config` left in `dir`: config.json, metrics.jsonl
/// (one finite row per step), the sample grids, loss.png and both checkpoints. Returns the
/// trainer reloaded from the checkpoint.
fn check_run_dir(dir: &Path, config: &TrainConfig, sample_steps: &[u64], side: usize) -> Trainer {
    // config.json round-trips.
    let text = std::fs::read_to_string(dir.join(run::CONFIG)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let back = TrainConfig::from_json(&json, "config.json").unwrap();
    assert_eq!(&back, config);

    // metrics.jsonl: exactly `steps` rows, steps 1..=N, all finite.
    let rows = read_metrics(dir.join(run::METRICS)).unwrap();
    assert_eq!(rows.len() as u64, config.steps, "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["step"], (i + 1) as f64, "{row:?}");
        let timing = ["img_per_s", "elapsed_s"];
        for key in common::DETERMINISTIC_METRICS[1..].iter().chain(&timing) {
            let v = row
                .get(*key)
                .unwrap_or_else(|| panic!("row {} has no {key}: {row:?}", i + 1));
            assert!(v.is_finite(), "row {}: {key} = {v}", i + 1);
        }
        // nsgan: D(x), D(G(z)) are probabilities; the losses are cross-entropies.
        assert!((0.0..=1.0).contains(&row["d_real"]), "{row:?}");
        assert!((0.0..=1.0).contains(&row["d_fake"]), "{row:?}");
        assert!(row["d_loss"] > 0.0 && row["g_loss"] > 0.0, "{row:?}");
    }

    // Sample grids: 64 images, 8 per row, padding 2.
    let (gw, gh) = grid_size(64, side, side, 8, 2);
    let mut pictures: Vec<PathBuf> = sample_steps
        .iter()
        .map(|s| dir.join("samples").join(format!("step-{s:06}.png")))
        .collect();
    pictures.push(dir.join("samples").join("final.png"));
    for p in &pictures {
        let (w, h, color) = png_info(p);
        assert_eq!((w as usize, h as usize), (gw, gh), "{}", p.display());
        assert_eq!(color, png::ColorType::Grayscale, "{}", p.display());
    }
    let (w, h, _) = png_info(&dir.join(run::LOSS_PLOT));
    assert_eq!((w, h), (800, 500));

    // The checkpoint reloads at the last step.
    let t = Trainer::load(dir.join(run::CHECKPOINT), &Device::Cpu, None).unwrap();
    assert_eq!(t.step, config.steps);
    assert_eq!(&t.config, config);
    for (name, tensor) in t.state_tensors() {
        assert!(all_finite(&tensor), "{name} is not finite");
    }
    t
}

#[test]
fn tiny_dcgan28_run_writes_valid_files() {
    let tmp = TempDir::new("gan_train-dcgan28");
    let dir = tmp.path("run");
    let config = tiny_dcgan28(6);
    let mut trainer = Trainer::new(config.clone(), &Device::Cpu).unwrap();
    run::start(&dir).unwrap();
    let summary = run::run(&mut trainer, &dir, &opts(3)).unwrap();
    assert_eq!(summary.step, 6);
    assert_eq!(summary.final_samples, dir.join("samples").join("final.png"));
    assert!(summary.coverage.is_none());
    let last = summary.last.unwrap();
    assert_eq!(last.step, 6);
    assert!(last.d_loss.is_finite() && last.g_loss.is_finite());

    let mut reloaded = check_run_dir(&dir, &config, &[3, 6], 28);
    let samples = std::fs::read_dir(dir.join("samples")).unwrap().count();
    assert_eq!(samples, 3, "step-000003, step-000006, final");

    // The reloaded trainer is the trained one: same state, bit for bit.
    let (a, b) = (trainer.state_tensors(), reloaded.state_tensors());
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(max_abs_diff(ta, tb), 0.0, "{na}");
    }

    // generator.safetensors is G alone: same images as the trainer's G (eval mode).
    let z = Tensor::randn([16, config.nz], 7, 0, &Device::Cpu).unwrap();
    let (g, spec, _) = run::load_generator(&dir.join(run::GENERATOR), &Device::Cpu).unwrap();
    assert_eq!(spec, trainer.spec);
    assert_eq!(spec.classes, None);
    let from_file = duel::autograd::no_grad(|| g.forward(&z, None)).unwrap();
    let from_trainer = trainer.generate(&z, None).unwrap();
    assert_eq!(from_file.dims(), &[16, 1, 28, 28]);
    assert!(all_finite(&from_file));
    assert_eq!(max_abs_diff(&from_file, &from_trainer), 0.0);
    // The run directory and checkpoint.safetensors lead to the same generator.
    for path in [dir.clone(), dir.join(run::CHECKPOINT)] {
        let (g2, spec2, _) = run::load_generator(&path, &Device::Cpu).unwrap();
        assert_eq!(spec2, spec);
        let out = duel::autograd::no_grad(|| g2.forward(&z, None)).unwrap();
        assert_eq!(max_abs_diff(&out, &from_trainer), 0.0, "{}", path.display());
    }
    // Drawing samples changed nothing: the reloaded trainer's fixed grid is the same.
    let fixed = trainer.fixed_samples().unwrap();
    assert_eq!(fixed.dims(), &[64, 1, 28, 28]);
    assert_eq!(
        max_abs_diff(&fixed, &reloaded.fixed_samples().unwrap()),
        0.0
    );

    // A second start in the same directory is refused.
    let err = run::start(&dir).unwrap_err().to_string();
    assert!(err.contains("already holds a run"), "{err}");
}

#[test]
fn tiny_conditional_dcgan28_run_writes_valid_files() {
    let tmp = TempDir::new("gan_train-cond28");
    let dir = tmp.path("run");
    let mut config = tiny_dcgan28(4);
    config.conditional = true;
    let mut trainer = Trainer::new(config.clone(), &Device::Cpu).unwrap();
    assert_eq!(trainer.spec.classes, Some(10));
    run::start(&dir).unwrap();
    run::run(&mut trainer, &dir, &opts(2)).unwrap();
    check_run_dir(&dir, &config, &[2, 4], 28);

    let (g, spec, _) = run::load_generator(&dir, &Device::Cpu).unwrap();
    assert_eq!(spec.classes, Some(10));
    let z = Tensor::randn([10, config.nz], 3, 0, &Device::Cpu).unwrap();
    let labels: Vec<u8> = (0..10).collect();
    let out = duel::autograd::no_grad(|| g.forward(&z, Some(&labels))).unwrap();
    assert_eq!(out.dims(), &[10, 1, 28, 28]);
    assert!(all_finite(&out));
    let want = trainer.generate(&z, Some(&labels)).unwrap();
    assert_eq!(max_abs_diff(&out, &want), 0.0);
    // A conditional G needs labels.
    let err = g.forward(&z, None).unwrap_err().to_string();
    assert!(err.contains("conditional"), "{err}");
}

#[test]
fn tiny_dcgan64_run_writes_valid_files() {
    let tmp = TempDir::new("gan_train-dcgan64");
    let dir = tmp.path("run");
    let mut config = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan64, DataSpec::Digits);
    config.width = 2;
    config.batch_size = 4;
    config.nz = 8;
    config.steps = 2;
    assert_eq!(config.image_size(), 64);
    let mut trainer = Trainer::new(config.clone(), &Device::Cpu).unwrap();
    run::start(&dir).unwrap();
    run::run(&mut trainer, &dir, &opts(1)).unwrap();
    check_run_dir(&dir, &config, &[1, 2], 64);
    let (g, spec, _) = run::load_generator(&dir, &Device::Cpu).unwrap();
    assert_eq!(spec.sample_shape, vec![1, 64, 64]);
    let z = Tensor::randn([3, config.nz], 5, 0, &Device::Cpu).unwrap();
    let out = duel::autograd::no_grad(|| g.forward(&z, None)).unwrap();
    assert_eq!(out.dims(), &[3, 1, 64, 64]);
    assert!(all_finite(&out));
}

/// The non-saturating objective, but G's loss becomes NaN from generator step `from` on.
struct NanFrom {
    inner: Variant,
    from: u64,
    g_calls: AtomicU64,
}

impl Objective for NanFrom {
    fn d_loss(&self, real: &Tensor, fake: &Tensor) -> duel::Result<Tensor> {
        self.inner.d_loss(real, fake)
    }
    fn g_loss(&self, fake: &Tensor) -> duel::Result<Tensor> {
        let step = self.g_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let loss = self.inner.g_loss(fake)?;
        if step >= self.from {
            let nan = Tensor::scalar(f32::NAN, fake.device())?;
            return loss.mul(&nan);
        }
        Ok(loss)
    }
    fn mean_d(&self, out: &Tensor) -> duel::Result<f64> {
        self.inner.mean_d(out)
    }
}

#[test]
fn nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let tmp = TempDir::new("gan_train-nan");
    let dir = tmp.path("run");
    let config = tiny_dcgan28(10);
    let objective = NanFrom {
        inner: Variant::NsGan,
        from: 5,
        g_calls: AtomicU64::new(0),
    };
    let mut trainer = Trainer::new(config.clone(), &Device::Cpu)
        .unwrap()
        .with_objective(Box::new(objective));
    run::start(&dir).unwrap();
    let opts = RunOptions {
        sample_every: 100,
        checkpoint_every: 2,
        quiet: true,
        ..Default::default()
    };
    let err = run::run(&mut trainer, &dir, &opts).unwrap_err().to_string();
    assert!(err.starts_with("step 5:"), "names the step: {err}");
    assert!(err.contains("G loss is NaN"), "{err}");
    assert!(
        err.contains("last good checkpoint (step 4)") && err.contains(run::CHECKPOINT),
        "names the kept checkpoint: {err}"
    );
    assert_eq!(trainer.step, 5);

    // The checkpoint on disk is step 4's, and sound.
    let t = Trainer::load(dir.join(run::CHECKPOINT), &Device::Cpu, None).unwrap();
    assert_eq!(t.step, 4);
    for (name, tensor) in t.state_tensors() {
        assert!(all_finite(&tensor), "{name} is not finite");
    }
    // So is generator.safetensors (written with it).
    let (g, _, _) = run::load_generator(&dir, &Device::Cpu).unwrap();
    for (name, p) in g.body.parameters() {
        assert!(all_finite(&p), "generator {name} is not finite");
    }
    let (_, meta) =
        duel::io::checkpoint::load_safetensors_with_metadata(dir.join(run::GENERATOR)).unwrap();
    assert_eq!(meta.get("duel.step").map(String::as_str), Some("4"));

    // The metrics log holds steps 1..=5, the last with its NaN (null) G loss.
    let rows = read_metrics(dir.join(run::METRICS)).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows[..4].iter().all(|r| r["g_loss"].is_finite()));
    assert!(rows[4]["g_loss"].is_nan(), "{:?}", rows[4]);

    // Resuming from the kept checkpoint (with the sound objective) finishes the run.
    let mut resumed = run::resume(&dir, &Device::Cpu, None).unwrap();
    assert_eq!(resumed.step, 4);
    let summary = run::run(&mut resumed, &dir, &opts).unwrap();
    assert_eq!(summary.step, 10);
    let rows = read_metrics(dir.join(run::METRICS)).unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r["g_loss"].is_finite()));
}
