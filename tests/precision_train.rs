//! Training under `--precision`: f16 dynamic loss scaling survives a planted overflow (the
//! step is skipped with the parameters and optimizer state untouched, the scale backs off,
//! training continues), the scalers resume exactly from a checkpoint, bf16 and f16 runs
//! train the toy GAN to finite losses, and bad `--precision` values are refused.
//!
//! Tiny networks (MLP width 16 on ring8, batch 32) so the file runs in seconds.

use duel::gan::{Arch, DataSpec, TrainConfig, Trainer, Variant};
use duel::ops::precision::Precision;
use duel::{Device, Tensor};

mod common;
use common::{bits, duel, TempDir};

fn toy(precision: Precision) -> TrainConfig {
    TrainConfig {
        width: 16,
        batch_size: 32,
        steps: 40,
        precision,
        ..TrainConfig::defaults(Variant::NsGan, Arch::Mlp, DataSpec::Ring8)
    }
}

fn params_bits(t: &Trainer) -> Vec<Vec<u64>> {
    t.state_tensors().iter().map(|(_, x)| bits(x)).collect()
}

#[test]
fn f16_loss_scaling_skips_an_overflowing_step_and_recovers() {
    let mut t = Trainer::new(toy(Precision::F16), &Device::Cpu).unwrap();
    t.train_step().unwrap();
    let scalers = t.loss_scalers.expect("an f16 run scales its losses");
    assert_eq!(scalers.d.scale, 65536.0, "the first scale, 2^16");
    assert_eq!(scalers.d.skipped_steps, 0, "2^16 does not overflow here");
    // Plant an overflow: at 2^40 the scaled gradients pass f16's 65504 in the backward
    // GEMMs' operands, so they come out inf/NaN.
    let planted = 2f64.powi(40);
    if let Some(s) = t.loss_scalers.as_mut() {
        s.d.scale = planted;
        s.g.scale = planted;
    }
    let before = params_bits(&t);
    let m = t.train_step().unwrap();
    let s = t.loss_scalers.unwrap();
    assert_eq!(s.d.skipped_steps, 1, "D's step was skipped");
    assert_eq!(s.g.skipped_steps, 1, "G's step was skipped");
    assert_eq!(
        (s.d.scale, s.g.scale),
        (planted / 2.0, planted / 2.0),
        "backed off"
    );
    assert!(m.d_grad_norm.is_nan() && m.g_grad_norm.is_nan(), "{m:?}");
    assert_eq!(m.loss_scales, Some((planted / 2.0, planted / 2.0)));
    assert!(
        m.d_loss.is_finite() && m.g_loss.is_finite(),
        "the losses are f32: {m:?}"
    );
    let after = params_bits(&t);
    // Batch-norm running statistics are not in the MLP; every parameter and every
    // optimizer state tensor is unchanged.
    assert!(
        before == after,
        "a skipped step must not touch the training state"
    );
    // Training continues: the scale halves until the gradients fit, then steps resume.
    let mut stepped = 0;
    for _ in 0..30 {
        let m = t.train_step().unwrap();
        if m.d_grad_norm.is_finite() && m.g_grad_norm.is_finite() {
            stepped += 1;
        }
        assert!(m.d_loss.is_finite() && m.g_loss.is_finite(), "{m:?}");
    }
    let s = t.loss_scalers.unwrap();
    assert!(
        stepped >= 10,
        "only {stepped} of 30 steps were taken: {s:?}"
    );
    assert!(s.d.scale < planted && s.g.scale < planted, "{s:?}");
    assert!(params_bits(&t) != after, "training moved on");
}

#[test]
fn f16_scalers_resume_exactly() {
    let tmp = TempDir::new("f16-resume");
    let path = tmp.path("ckpt.safetensors");
    let mut straight = Trainer::new(toy(Precision::F16), &Device::Cpu).unwrap();
    let mut first = Trainer::new(toy(Precision::F16), &Device::Cpu).unwrap();
    for t in [&mut straight, &mut first] {
        t.train_step().unwrap();
        // An overflow before the save, so the saved scalers are not the defaults.
        if let Some(s) = t.loss_scalers.as_mut() {
            s.d.scale = 2f64.powi(40);
        }
        for _ in 0..3 {
            t.train_step().unwrap();
        }
    }
    first.save(&path).unwrap();
    let mut resumed = Trainer::load(&path, &Device::Cpu, None).unwrap();
    assert_eq!(resumed.loss_scalers, first.loss_scalers);
    assert!(resumed.loss_scalers.unwrap().d.skipped_steps >= 1);
    for _ in 0..4 {
        let a = straight.train_step().unwrap();
        let b = resumed.train_step().unwrap();
        let bits = |m: &duel::gan::StepMetrics| {
            m.fields()
                .iter()
                .map(|(_, v)| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&a), bits(&b), "step {}", a.step);
    }
    assert!(params_bits(&straight) == params_bits(&resumed));
}

#[test]
fn reduced_precision_runs_train_the_toy_gan() {
    for p in [Precision::Bf16, Precision::F16] {
        let mut t = Trainer::new(toy(p), &Device::Cpu).unwrap();
        let mut f32_run = Trainer::new(toy(Precision::F32), &Device::Cpu).unwrap();
        let (a, b) = (t.train_step().unwrap(), f32_run.train_step().unwrap());
        // The first D loss comes from the same initial weights and batch; only the
        // operand rounding differs: close, not equal.
        let rel = (a.d_loss - b.d_loss).abs() / b.d_loss.abs();
        assert!(
            rel > 0.0 && rel < 0.05,
            "{p}: d_loss {} vs f32 {}",
            a.d_loss,
            b.d_loss
        );
        for _ in 0..20 {
            let m = t.train_step().unwrap();
            assert!(m.d_loss.is_finite() && m.g_loss.is_finite(), "{p}: {m:?}");
        }
        assert_eq!(t.loss_scalers.is_some(), p == Precision::F16);
        let z = Tensor::randn([8, t.config.nz], 3, 0, &Device::Cpu).unwrap();
        let x = t.generate(&z, None).unwrap().to_vec::<f32>().unwrap();
        assert!(x.iter().all(|v| v.is_finite()), "{p}: samples");
    }
}

#[test]
fn the_cli_records_the_precision_and_refuses_bad_values() {
    let tmp = TempDir::new("precision-cli");
    let runs = tmp.arg("runs");
    let out = duel(&[
        "train",
        "--data",
        "ring8",
        "--steps",
        "2",
        "--width",
        "8",
        "--precision",
        "fp16",
        "--runs-dir",
        &runs,
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--precision fp16") && err.contains("use f32, bf16 or f16"),
        "{err}"
    );
    let out = duel(&[
        "train",
        "--data",
        "ring8",
        "--steps",
        "2",
        "--width",
        "8",
        "--precision",
        "bf16",
        "--runs-dir",
        &runs,
        "--name",
        "b",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(tmp.path("runs/b/config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(v["precision"], "bf16", "{config}");
    // The precision describes the run: a resume cannot change it.
    let out = duel(&[
        "train",
        "--resume",
        &tmp.arg("runs/b"),
        "--steps",
        "3",
        "--precision",
        "f32",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--precision cannot change a resumed run"),
        "{err}"
    );
}

/// pix2pix under bf16 and CycleGAN under f16 (two D losses into one scaled step): finite
/// losses, the f16 scales logged, an overflow planted after the first step skipped and
/// backed off, and a save/resume in the middle continuing bit for bit.
#[test]
fn img2img_trains_under_reduced_precision_and_f16_resumes_exactly() {
    use duel::gan::img2img::{Img2ImgConfig, Img2ImgTrainer, Model};
    let tiny = |model, precision| Img2ImgConfig {
        ngf: 2,
        ndf: 2,
        n_blocks: 1,
        batch_size: 2,
        pool_size: 3,
        steps: 6,
        decay_steps: 4,
        precision,
        ..Img2ImgConfig::defaults(model)
    };
    let plant = |t: &mut Img2ImgTrainer| {
        if let Some(s) = t.loss_scalers.as_mut() {
            s.d.scale = 2f64.powi(40);
        }
    };
    let tmp = TempDir::new("img2img-precision");
    for (model, p) in [
        (Model::Pix2pix, Precision::Bf16),
        (Model::Cyclegan, Precision::F16),
    ] {
        let c = tiny(model, p);
        let mut straight = Img2ImgTrainer::new(c.clone(), &Device::Cpu).unwrap();
        let mut logs = Vec::new();
        for i in 0..6 {
            logs.push(straight.train_step().unwrap());
            if i == 0 {
                plant(&mut straight);
            }
        }
        for log in &logs {
            for (k, v) in log {
                assert!(v.is_finite(), "{p} {model:?}: {k} = {v}");
            }
            let scaled = log.iter().any(|(k, _)| *k == "d_loss_scale");
            assert_eq!(scaled, p == Precision::F16, "{p}: {log:?}");
        }
        let path = tmp.path(&format!("{p}.safetensors"));
        let mut first = Img2ImgTrainer::new(c, &Device::Cpu).unwrap();
        for i in 0..3 {
            first.train_step().unwrap();
            if i == 0 {
                plant(&mut first);
            }
        }
        first.save(&path).unwrap();
        let mut resumed = Img2ImgTrainer::load(&path, &Device::Cpu, None).unwrap();
        assert_eq!(resumed.loss_scalers, first.loss_scalers);
        if p == Precision::F16 {
            let s = resumed.loss_scalers.unwrap();
            // 2^40 overflows (and so may 2^39): skipped, backed off once per skip.
            assert!(
                s.d.skipped_steps >= 1,
                "the planted overflow was skipped: {s:?}"
            );
            assert_eq!(s.d.scale, 2f64.powi(40 - s.d.skipped_steps as i32), "{s:?}");
        }
        let bits = |l: &Vec<(&str, f64)>| l.iter().map(|(_, v)| v.to_bits()).collect::<Vec<_>>();
        for log in &logs[3..] {
            assert_eq!(bits(&resumed.train_step().unwrap()), bits(log), "{p}");
        }
    }
}
