//! Exact resume and reproducibility of GAN training on the cpu (the issue's requirement
//! (a)): training N steps in one go equals training N/2, saving, dropping the trainer,
//! loading and training N/2 more — bit for bit, for every tensor of the training state
//! (G's and D's parameters and batch-norm buffers, both optimizers' state), the optimizer
//! counters, the data/noise positions and the per-step metrics. The same seed gives the
//! same metrics; another seed gives others. Then the same through `duel train --resume`.
//!
//! Everything is tiny (DCGAN width 4, batch 8, nz 8; MLP width 16) so the file runs in a
//! few seconds in release.

use std::path::Path;
use std::process::Output;

use duel::gan::{Arch, DataSpec, OptimizerKind, StepMetrics, TrainConfig, Trainer, Variant};
use duel::io::checkpoint::load_safetensors;
use duel::ops::loss::LsCoding;
use duel::tensor::DType;
use duel::{Device, Tensor};

mod common;
use common::{bits, duel, TempDir};

// ---- helpers --------------------------------------------------------------------------

/// Name, dtype, dims and bits of every tensor.
type Snapshot = Vec<(String, DType, Vec<usize>, Vec<u64>)>;

fn snapshot(entries: &[(String, Tensor)]) -> Snapshot {
    entries
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype(), t.dims().to_vec(), bits(t)))
        .collect()
}

/// Panics naming the first tensor (and element) that differs.
fn assert_same_tensors(what: &str, a: &Snapshot, b: &Snapshot) {
    let names = |s: &Snapshot| s.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{what}: different tensor names");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.1, &x.2),
            (y.1, &y.2),
            "{what}: tensor {} has a different dtype/shape",
            x.0
        );
        if let Some(i) = (0..x.3.len()).find(|&i| x.3[i] != y.3[i]) {
            panic!(
                "{what}: tensor {} differs first at element {i} (bits {:#x} vs {:#x})",
                x.0, x.3[i], y.3[i]
            );
        }
    }
}

/// Every tensor of the training state, the optimizers' counters and the JSON counters
/// (step, noise position, data position, configuration) of two trainers are identical.
fn assert_same_state(what: &str, a: &Trainer, b: &Trainer) {
    assert_eq!(a.step, b.step, "{what}: step");
    assert_same_tensors(
        what,
        &snapshot(&a.state_tensors()),
        &snapshot(&b.state_tensors()),
    );
    for (name, x, y) in [("opt_g", &a.opt_g, &b.opt_g), ("opt_d", &a.opt_d, &b.opt_d)] {
        assert_eq!(x.steps(), y.steps(), "{what}: {name}.steps()");
        assert_eq!(
            x.param_steps(),
            y.param_steps(),
            "{what}: {name}.param_steps()"
        );
    }
    assert_eq!(
        a.state_json().unwrap(),
        b.state_json().unwrap(),
        "{what}: state_json"
    );
}

/// The metrics as bits (so NaN == NaN and −0 != +0: a bitwise comparison).
fn metric_bits(m: &StepMetrics) -> Vec<u64> {
    m.fields().iter().map(|(_, v)| v.to_bits()).collect()
}

fn assert_same_metrics(what: &str, a: &[StepMetrics], b: &[StepMetrics]) {
    assert_eq!(a.len(), b.len(), "{what}: number of steps");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            metric_bits(x),
            metric_bits(y),
            "{what}: metrics of step {} differ:\n{x:?}\n{y:?}",
            x.step
        );
    }
}

fn train(t: &mut Trainer, n: u64) -> Vec<StepMetrics> {
    (0..n).map(|_| t.train_step().unwrap()).collect()
}

/// Straight N steps vs N/2, save, drop, load, N/2 more: identical state and metrics.
/// Returns the straight run's metrics.
fn check_resume(name: &str, config: TrainConfig, n: u64) -> Vec<StepMetrics> {
    assert!(n >= 2 && n.is_multiple_of(2));
    let dev = Device::Cpu;
    let mut straight = Trainer::new(config.clone(), &dev).unwrap();
    let all = train(&mut straight, n);
    assert_eq!(straight.step, n);

    let tmp = TempDir::new(&format!("gan_resume-{name}"));
    let dir = tmp.dir();
    let path = dir.join("state.safetensors");
    let second = {
        let mut first = Trainer::new(config, &dev).unwrap();
        let head = train(&mut first, n / 2);
        assert_same_metrics(
            &format!("{name}: first half"),
            &head,
            &all[..n as usize / 2],
        );
        first.save(&path).unwrap();
        // `first` drops here: nothing survives but the file.
        drop(first);
        let mut resumed = Trainer::load(&path, &dev, None).unwrap();
        assert_eq!(resumed.step, n / 2, "{name}: the loaded step");
        let tail = train(&mut resumed, n / 2);
        assert_same_state(&format!("{name}: straight vs resumed"), &straight, &resumed);
        tail
    };
    assert_same_metrics(
        &format!("{name}: second half"),
        &second,
        &all[n as usize / 2..],
    );
    // the state really moved (a comparison of two untrained trainers would prove nothing)
    let fresh = Trainer::new(straight.config.clone(), &dev).unwrap();
    let a = snapshot(&straight.state_tensors());
    let f = snapshot(&fresh.state_tensors());
    let moved = a
        .iter()
        .zip(&f)
        .filter(|(x, y)| x.0.starts_with("g.") && x.3 != y.3)
        .count();
    assert!(moved > 0, "{name}: training changed none of G's tensors");
    all
}

/// Same seed twice: identical metrics; another seed: different metrics.
fn check_seed(name: &str, config: TrainConfig, n: u64) {
    let dev = Device::Cpu;
    let run = |c: TrainConfig| train(&mut Trainer::new(c, &dev).unwrap(), n);
    let a = run(config.clone());
    let b = run(config.clone());
    assert_same_metrics(&format!("{name}: same seed"), &a, &b);
    let mut other = config.clone();
    other.seed += 1;
    let c = run(other);
    assert!(
        a.iter()
            .zip(&c)
            .any(|(x, y)| metric_bits(x) != metric_bits(y)),
        "{name}: seeds {} and {} gave the same metrics",
        config.seed,
        config.seed + 1
    );
}

fn toy(variant: Variant) -> TrainConfig {
    let mut c = TrainConfig::defaults(variant, Arch::Mlp, DataSpec::Ring8);
    c.batch_size = 32;
    c.width = 16;
    c.nz = 4;
    c.steps = 1000;
    c
}

fn tiny_dcgan(variant: Variant, conditional: bool) -> TrainConfig {
    let mut c = TrainConfig::defaults(variant, Arch::Dcgan28, DataSpec::Digits);
    c.width = 4;
    c.batch_size = 8;
    c.nz = 8;
    c.conditional = conditional;
    c.steps = 1000;
    c
}

fn has_batch_norm_buffers(t: &Trainer) {
    let names: Vec<String> = t.state_tensors().into_iter().map(|(n, _)| n).collect();
    for net in ["g.", "d."] {
        for buf in ["running_mean", "running_var", "num_batches_tracked"] {
            assert!(
                names.iter().any(|n| n.starts_with(net) && n.ends_with(buf)),
                "no {net}*{buf} in the state: {names:?}"
            );
        }
    }
}

// ---- in-process resume -------------------------------------------------------------------

#[test]
fn gan_resume_toy_mlp_nsgan_is_bitwise() {
    check_resume("toy-nsgan", toy(Variant::NsGan), 16);
}

#[test]
fn gan_resume_tiny_dcgan28_is_bitwise() {
    let c = tiny_dcgan(Variant::NsGan, false);
    let t = Trainer::new(c.clone(), &Device::Cpu).unwrap();
    has_batch_norm_buffers(&t);
    check_resume("dcgan28", c.clone(), 8);
    // num_batches_tracked counts forward passes in training mode: after 8 iterations D saw
    // 3 batches per iteration (real, fake in the D step, fake in the G step) and G 2.
    let mut t = Trainer::new(c, &Device::Cpu).unwrap();
    train(&mut t, 8);
    let count = |prefix: &str| -> Vec<f64> {
        t.state_tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with(prefix) && n.ends_with("num_batches_tracked"))
            .map(|(_, v)| v.to_f64_vec().unwrap()[0])
            .collect()
    };
    assert!(count("g.").iter().all(|&n| n == 16.0), "{:?}", count("g."));
    assert!(count("d.").iter().all(|&n| n == 24.0), "{:?}", count("d."));
}

#[test]
fn gan_resume_conditional_tiny_dcgan28_is_bitwise() {
    let c = tiny_dcgan(Variant::NsGan, true);
    let t = Trainer::new(c.clone(), &Device::Cpu).unwrap();
    assert_eq!(t.spec.classes, Some(10));
    check_resume("cond-dcgan28", c, 8);
}

#[test]
fn gan_resume_wgan_rmsprop_clipping_is_bitwise() {
    let c = toy(Variant::WGan { clip: 0.01 });
    assert_eq!(c.optimizer, OptimizerKind::RmsProp);
    assert_eq!(c.d_steps, 5);
    check_resume("toy-wgan", c.clone(), 10);
    // with RMSProp momentum too (a second state buffer per parameter)
    let mut m = c;
    m.beta1 = 0.5;
    check_resume("toy-wgan-momentum", m, 10);
}

#[test]
fn gan_resume_lsgan_sgd_momentum_is_bitwise() {
    let mut c = toy(Variant::LsGan(LsCoding::PEARSON));
    c.optimizer = OptimizerKind::Sgd;
    c.lr_g = 0.01;
    c.lr_d = 0.01;
    check_resume("toy-lsgan-sgd", c, 10);
}

#[test]
fn gan_resume_across_an_epoch_boundary_is_bitwise() {
    // The 4,000 training digits (data::split) in batches of 800: 5 batches an epoch, so 8
    // steps split 4 + 4 cross into the second epoch after the resume (a reshuffle from the
    // restored data state).
    let mut c = tiny_dcgan(Variant::NsGan, false);
    c.batch_size = 800;
    c.width = 2;
    check_resume("epoch", c.clone(), 8);
    let mut t = Trainer::new(c, &Device::Cpu).unwrap();
    train(&mut t, 6);
    assert_eq!(
        t.state_json().unwrap()["data"]["epoch"],
        1,
        "{}",
        t.state_json().unwrap()
    );
}

#[test]
fn gan_resume_to_more_steps_than_planned() {
    // load(.., Some(steps)) extends the run; the state and the continuation are unchanged.
    let dev = Device::Cpu;
    let mut c = toy(Variant::NsGan);
    c.steps = 6;
    let mut straight = Trainer::new(
        TrainConfig {
            steps: 12,
            ..c.clone()
        },
        &dev,
    )
    .unwrap();
    let all = train(&mut straight, 12);
    let tmp = TempDir::new("gan_resume-extend");
    let dir = tmp.dir();
    let path = dir.join("state.safetensors");
    let mut first = Trainer::new(c, &dev).unwrap();
    train(&mut first, 6);
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Trainer::load(&path, &dev, Some(12)).unwrap();
    assert_eq!(resumed.config.steps, 12);
    let tail = train(&mut resumed, 6);
    assert_same_metrics("extend", &tail, &all[6..]);
    assert_same_state("extend", &straight, &resumed);
}

#[test]
fn gan_resume_save_load_save_is_a_fixed_point() {
    // Loading a state and saving it again writes the same tensors and counters.
    let dev = Device::Cpu;
    let tmp = TempDir::new("gan_resume-fixed-point");
    let dir = tmp.dir();
    let mut t = Trainer::new(tiny_dcgan(Variant::NsGan, true), &dev).unwrap();
    train(&mut t, 3);
    t.save(dir.join("a.safetensors")).unwrap();
    let u = Trainer::load(dir.join("a.safetensors"), &dev, None).unwrap();
    assert_same_state("reloaded", &t, &u);
    u.save(dir.join("b.safetensors")).unwrap();
    let a = load_safetensors(dir.join("a.safetensors")).unwrap();
    let b = load_safetensors(dir.join("b.safetensors")).unwrap();
    assert_same_tensors("a vs b", &snapshot(&a), &snapshot(&b));
}

// ---- seeds ---------------------------------------------------------------------------------

#[test]
fn gan_same_seed_same_metrics_toy() {
    check_seed("toy-nsgan", toy(Variant::NsGan), 8);
    check_seed("toy-wgan", toy(Variant::WGan { clip: 0.01 }), 4);
}

#[test]
fn gan_same_seed_same_metrics_dcgan28() {
    check_seed("dcgan28", tiny_dcgan(Variant::NsGan, false), 4);
    check_seed("cond-dcgan28", tiny_dcgan(Variant::NsGan, true), 3);
}

// ---- through the binary ------------------------------------------------------------------

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Exit code 2 and exactly one line on stderr, `error: …`; returns that line.
fn fails_with_usage_error(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

/// metrics.jsonl rows without the wall-clock fields.
fn metric_rows(dir: &Path) -> Vec<serde_json::Value> {
    let s = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().expect("a metrics row is an object");
            assert!(o.remove("img_per_s").is_some(), "no img_per_s in {l}");
            assert!(o.remove("elapsed_s").is_some(), "no elapsed_s in {l}");
            v
        })
        .collect()
}

#[test]
fn gan_resume_through_the_cli_is_bitwise() {
    let tmp = TempDir::new("gan_resume-cli");
    let runs = tmp.dir();
    let runs_s = runs.to_str().unwrap();
    let common = [
        "--data",
        "ring8",
        "--batch-size",
        "64",
        "--width",
        "32",
        "--checkpoint-every",
        "10",
        "--runs-dir",
        runs_s,
        "--quiet",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        common
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let mut all = vec!["train".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        duel(&refs)
    };
    ok(&run(with(&["--steps", "20", "--name", "a"])));
    ok(&run(with(&["--steps", "10", "--name", "b"])));
    let b = runs.join("b");
    let b_s = b.to_str().unwrap();
    let first_half = metric_rows(&b);
    assert_eq!(first_half.len(), 10);
    // As if the process had died after logging steps 11 and 12 but before their
    // checkpoint: the resume must drop those rows and log the steps again.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.join("metrics.jsonl"))
            .unwrap();
        for step in [11, 12] {
            writeln!(
                f,
                r#"{{"step":{step},"d_loss":99,"g_loss":99,"img_per_s":1,"elapsed_s":1}}"#
            )
            .unwrap();
        }
    }
    ok(&duel(&[
        "train", "--resume", b_s, "--steps", "20", "--quiet",
    ]));

    let a = runs.join("a");
    let ta = load_safetensors(a.join("checkpoint.safetensors")).unwrap();
    let tb = load_safetensors(b.join("checkpoint.safetensors")).unwrap();
    assert!(ta.len() > 10, "{} tensors", ta.len());
    assert_same_tensors("checkpoint a vs b", &snapshot(&ta), &snapshot(&tb));
    let ga = load_safetensors(a.join("generator.safetensors")).unwrap();
    let gb = load_safetensors(b.join("generator.safetensors")).unwrap();
    assert_same_tensors("generator a vs b", &snapshot(&ga), &snapshot(&gb));

    let (ma, mb) = (metric_rows(&a), metric_rows(&b));
    assert_eq!(ma.len(), 20);
    assert_eq!(mb.len(), 20, "the resumed log has each step once");
    for (i, (x, y)) in ma.iter().zip(&mb).enumerate() {
        assert_eq!(x["step"], (i + 1) as u64, "{x}");
        assert_eq!(x, y, "metrics row {} differs", i + 1);
    }
    assert_eq!(
        &mb[..10],
        &first_half[..],
        "the resume rewrote the first half"
    );

    // the checkpoint loads as a trainer at step 20 with the extended total
    let t = Trainer::load(b.join("checkpoint.safetensors"), &Device::Cpu, None).unwrap();
    assert_eq!((t.step, t.config.steps), (20, 20));
}

#[test]
fn gan_resume_cli_refusals() {
    let tmp = TempDir::new("gan_resume-cli-refuse");
    let runs = tmp.dir();
    let runs_s = runs.to_str().unwrap();
    ok(&duel(&[
        "train",
        "--data",
        "ring8",
        "--batch-size",
        "32",
        "--width",
        "8",
        "--steps",
        "4",
        "--runs-dir",
        runs_s,
        "--name",
        "r",
        "--quiet",
    ]));
    let r = runs.join("r");
    let r_s = r.to_str().unwrap();
    let before = std::fs::read(r.join("checkpoint.safetensors")).unwrap();

    // a flag that describes the run cannot change a resumed run
    let line = fails_with_usage_error(&duel(&[
        "train",
        "--resume",
        r_s,
        "--variant",
        "gan",
        "--steps",
        "8",
        "--quiet",
    ]));
    assert!(line.contains("--variant"), "{line}");
    let line = fails_with_usage_error(&duel(&["train", "--resume", r_s, "--nz", "3"]));
    assert!(line.contains("--nz"), "{line}");

    // a finished run needs a larger --steps
    for extra in [&[][..], &["--steps", "4"][..], &["--steps", "2"][..]] {
        let mut args = vec!["train", "--resume", r_s, "--quiet"];
        args.extend_from_slice(extra);
        let line = fails_with_usage_error(&duel(&args));
        assert!(line.contains("--steps"), "{extra:?}: {line}");
    }

    // a directory without a run
    let line = fails_with_usage_error(&duel(&["train", "--resume", runs_s, "--steps", "8"]));
    assert!(line.contains("checkpoint.safetensors"), "{line}");

    // nothing was touched by the refusals
    assert_eq!(
        before,
        std::fs::read(r.join("checkpoint.safetensors")).unwrap()
    );
    assert_eq!(metric_rows(&r).len(), 4);
}

// ---- the comparison itself can fail ----------------------------------------------------------

#[test]
fn gan_resume_comparison_detects_differences() {
    let dev = Device::Cpu;
    let c = toy(Variant::NsGan);
    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    let mut a = Trainer::new(c.clone(), &dev).unwrap();
    let mut b = Trainer::new(c.clone(), &dev).unwrap();
    train(&mut a, 2);
    train(&mut b, 2);
    assert_same_state("twins", &a, &b);
    // one more D step: D's tensors, opt_d's state and the data/noise positions move
    b.d_step().unwrap();
    assert!(fails(&|| assert_same_state("after a D step", &a, &b)));
    // the same tensors but other counters: only state_json tells them apart
    let mut e = Trainer::new(c.clone(), &dev).unwrap();
    train(&mut e, 2);
    e.noise(1).unwrap();
    assert_same_tensors(
        "noise draw",
        &snapshot(&a.state_tensors()),
        &snapshot(&e.state_tensors()),
    );
    assert!(fails(&|| assert_same_state("after a noise draw", &a, &e)));
    // one flipped low bit of one element is caught
    let s = snapshot(&a.state_tensors());
    let mut t = s.clone();
    t[0].3[0] ^= 1;
    assert!(fails(&|| assert_same_tensors("one bit", &s, &t)));
    // metrics: a changed last bit of one field is caught
    let m = train(&mut a, 1);
    let mut n = m.clone();
    n[0].g_grad_norm = f64::from_bits(n[0].g_grad_norm.to_bits() ^ 1);
    assert!(fails(&|| assert_same_metrics("one bit", &m, &n)));
}
