//! Runs written by main before the run description moved to serde derive (commit 8e3b19f,
//! `scripts/make-legacy-fixtures.sh`): their config.json and checkpoints still load, and a
//! resume continues them as the old binary's own continuation, recorded when the fixtures
//! were made: bit for bit for the toy run's tensors (its metrics to within the f64 rounding
//! of the gradient norm, whose sum of squares is now formed in 8 lanes); for the dcgan28 run to within rounding, because
//! its generator ends in tanh, which the old binary took from the host's libm (glibc 2.36's
//! `tanhf`, 25% of whose results are 1 ulp off the correctly rounded value) and duel now
//! computes itself (within 0.57 ulp, the same on every host: `ops/elementwise/cpu/math.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bits, TempDir};
use duel::gan::config::{DataSpec, ImageRows, OptimizerKind, TrainConfig};
use duel::gan::objective::Variant;
use duel::gan::Arch;
use duel::io::checkpoint::load_safetensors;
use duel::ops::loss::LsCoding;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn legacy_json(run: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(&format!("{run}/config.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn legacy_config(run: &str) -> TrainConfig {
    TrainConfig::from_json(&legacy_json(run), "config.json").unwrap()
}

#[test]
fn legacy_config_files_load_with_their_values() {
    // The values are those given on the command lines of make-legacy-fixtures.sh.
    let c = legacy_config("ring8");
    assert_eq!(c.variant, Variant::LsGan(LsCoding::PEARSON));
    assert_eq!((c.arch, c.data.clone()), (Arch::Mlp, DataSpec::Ring8));
    assert_eq!(
        (c.nz, c.width, c.batch_size, c.steps, c.seed),
        (4, 8, 16, 10, 7)
    );
    assert_eq!(
        (c.optimizer, c.lr_g, c.lr_d),
        (OptimizerKind::Adam, 5e-4, 5e-4)
    );

    let c = legacy_config("dcgan28");
    assert_eq!(c.variant, Variant::WGan { clip: 0.02 });
    assert!(c.conditional);
    assert_eq!((c.arch, c.data.clone()), (Arch::Dcgan28, DataSpec::Digits));
    assert_eq!((c.d_steps, c.optimizer), (5, OptimizerKind::RmsProp));
    assert_eq!((c.beta1, c.beta2), (0.0, 0.99));
    // Made before the data split: it keeps training on every digit, so it resumes bitwise.
    assert_eq!(c.image_rows, ImageRows::All);

    let c = legacy_config("idx");
    assert_eq!(c.variant, Variant::Gan);
    assert_eq!(
        c.data,
        DataSpec::Idx {
            images: "tiny-images-idx3-ubyte".into(),
            labels: Some("tiny-labels-idx1-ubyte".into()),
        }
    );
    assert_eq!(
        (c.optimizer, c.lr_g, c.lr_d, c.beta1),
        (OptimizerKind::Sgd, 1e-3, 3e-3, 0.9)
    );
}

#[test]
fn the_written_form_keeps_every_legacy_field_name_and_value() {
    for run in ["ring8", "dcgan28", "idx"] {
        let old = legacy_json(run);
        let new = legacy_config(run).to_json().unwrap();
        for (k, v) in old.as_object().unwrap() {
            // Fields a variant or data set does not use were written as null; they may
            // now be left out.
            let written = new.get(k).unwrap_or(&serde_json::Value::Null);
            assert_eq!(written, v, "{run}: field {k}");
        }
        assert_eq!(
            TrainConfig::from_json(&new, "new").unwrap(),
            legacy_config(run)
        );
    }
}

fn metric_rows(path: &Path) -> Vec<Vec<u64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            common::DETERMINISTIC_METRICS
                .iter()
                .map(|k| v[k].as_f64().unwrap().to_bits())
                .collect()
        })
        .collect()
}

fn tensor_bits(path: &Path) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    let mut v: Vec<_> = load_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec(), bits(&t)))
        .collect();
    v.sort();
    v
}

/// Resume a copy of the legacy run `run` to `steps` with today's binary (one cpu thread,
/// as the fixtures were made) and compare with the old binary's continuation: every
/// deterministic metric within `metrics_rel` and every tensor element within `rel` of the
/// old value, relative to the largest magnitude of its row or tensor (0: bitwise).
fn resumes_within(run: &str, steps: &str, every: &str, metrics_rel: f64, rel: f64) {
    let tmp = TempDir::new(&format!("legacy-{run}"));
    let dir = tmp.path(run);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "checkpoint.safetensors", "metrics.jsonl"] {
        std::fs::copy(fixture(&format!("{run}/{f}")), dir.join(f)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_duel"))
        .args(["train", "--device", "cpu", "--resume"])
        .arg(&dir)
        .args([
            "--steps",
            steps,
            "--checkpoint-every",
            every,
            "--sample-every",
            every,
        ])
        .arg("--quiet")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{run}: resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = metric_rows(&fixture(&format!("{run}/continued-metrics.jsonl")));
    let got = metric_rows(&dir.join("metrics.jsonl"));
    assert_eq!(got.len(), expected.len(), "{run}: metrics rows");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        let err = normwise_error(g, e, f64::from_bits);
        assert!(
            err <= metrics_rel,
            "{run}: metrics row {} is {err:e} from the old binary's (allowed {metrics_rel:e})",
            i + 1
        );
    }
    let expected = tensor_bits(&fixture(&format!("{run}/continued-checkpoint.safetensors")));
    let got = tensor_bits(&dir.join("checkpoint.safetensors"));
    assert_eq!(got.len(), expected.len(), "{run}: tensor count");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((&g.0, &g.1), (&e.0, &e.1), "{run}: tensor names and shapes");
        // Every checkpoint tensor is f32 (bits widened to u64 by `bits`); step counters are
        // compared bitwise by the same measure (any difference is > 0).
        let err = normwise_error(&g.2, &e.2, |b| f32::from_bits(b as u32) as f64);
        assert!(
            err <= rel,
            "{run}: tensor {} is {err:e} from the old binary's (allowed {rel:e})",
            e.0
        );
    }
}

/// `max |got − old| / max |old|` over a row (0 when equal, NaN-safe: a NaN on one side
/// only is infinitely far).
fn normwise_error(got: &[u64], old: &[u64], value: impl Fn(u64) -> f64) -> f64 {
    if got == old {
        return 0.0;
    }
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (&g, &o) in got.iter().zip(old) {
        let (g, o) = (value(g), value(o));
        let d = if g.is_nan() || o.is_nan() {
            f64::INFINITY
        } else {
            (g - o).abs()
        };
        diff = diff.max(d);
        scale = scale.max(o.abs());
    }
    if scale == 0.0 {
        f64::INFINITY
    } else {
        diff / scale
    }
}

/// Tensors bitwise. The metrics rows hold the gradient norms, √Σv² in f64 over the m
/// gradient elements, whose terms the old binary added in order and today's binary in the
/// 8 lanes of `lane_sum`: two orders of one sum of non-negative terms differ by at most
/// 2γ_m·Σv² (γ_m ≈ m·2⁻⁵³), so the norms by at most γ_m relative; m < 2²⁰ here, so within
/// 2⁻³³ ≈ 1.2e-10 (measured: 8.5e-18); a change to training itself would show in the
/// tensors first.
#[test]
fn legacy_toy_checkpoint_resumes_bitwise() {
    resumes_within("ring8", "20", "10", 1.2e-10, 0.0);
}

/// 4 resumed steps (20 critic steps) from ulp-level differences in the generator's tanh:
/// measured at 2026-12-01, the losses part from the old ones by 1.3e-9 and the tensors by
/// at most 3.4e-7 (g.0.weight), normwise; the bound is 30 times that. A resume that lost
/// state (optimizer moments, counters, the data stream's position) moves whole steps.
#[test]
fn legacy_dcgan28_checkpoint_resumes_to_the_old_continuation_within_rounding() {
    resumes_within("dcgan28", "8", "4", 1e-5, 1e-5);
}

#[test]
fn legacy_generator_and_checkpoint_files_sample() {
    let tmp = TempDir::new("legacy-sample");
    for run in ["ring8", "dcgan28", "idx"] {
        for file in ["generator.safetensors", "checkpoint.safetensors"] {
            let out = tmp.path(&format!("{run}-{file}.png"));
            let o = common::duel(&[
                "sample",
                "--device",
                "cpu",
                "--checkpoint",
                fixture(&format!("{run}/{file}")).to_str().unwrap(),
                "--n",
                "4",
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(
                o.status.success(),
                "{run}/{file}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(common::png_size(&out).0 > 0);
        }
    }
}
