//! `duel eval`, `duel theory` and `duel train --eval-every` through the binary: the figures
//! are printed, the metrics rows carry them, the plots are valid PNGs.

mod common;

use common::{duel, png_size, TempDir};
use std::process::Output;

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn eval_cli_toy_run_scores_during_training_and_after() {
    let tmp = TempDir::new("eval-cli-toy");
    let runs = tmp.dir().to_str().unwrap().to_string();
    ok(&duel(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "ring8",
        "--steps",
        "200",
        "--eval-every",
        "100",
        "--runs-dir",
        &runs,
        "--name",
        "toy",
        "--quiet",
    ]));
    let run = tmp.dir().join("toy");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let scored: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("eval_modes").is_some())
        .collect();
    let steps: Vec<u64> = scored.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![100, 200], "rows with eval fields");
    for v in &scored {
        let modes = v["eval_modes"].as_f64().unwrap();
        assert!((0.0..=8.0).contains(&modes), "{v}");
        let kl = v["eval_reverse_kl"].as_f64().unwrap();
        assert!((0.0..=8f64.ln() + 1e-12).contains(&kl), "{v}");
    }
    assert!(png_size(&run.join("eval.png")).0 > 0);

    let stdout = ok(&duel(&["--device", "cpu", "eval", run.to_str().unwrap()]));
    for want in ["modes", "high", "KL"] {
        assert!(stdout.contains(want), "no '{want}' in:\n{stdout}");
    }
}

#[test]
fn eval_cli_digit_run_prints_every_figure_beside_the_real_ceiling() {
    let tmp = TempDir::new("eval-cli-digits");
    let runs = tmp.dir().to_str().unwrap().to_string();
    ok(&duel(&[
        "--device",
        "cpu",
        "train",
        "--steps",
        "2",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--runs-dir",
        &runs,
        "--name",
        "tiny",
        "--quiet",
    ]));
    let run = tmp.dir().join("tiny");
    let stdout = ok(&duel(&[
        "--device",
        "cpu",
        "eval",
        run.to_str().unwrap(),
        "--n",
        "300",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("--json output is not one JSON object ({e}):\n{stdout}"));
    let (fake, real) = (&v["samples"], &v["heldout_real"]);
    assert_eq!(
        (fake["n"].as_u64(), real["n"].as_u64()),
        (Some(300), Some(500)),
        "{v}"
    );
    for key in [
        "fd",
        "is",
        "kl_uniform",
        "classes_5pct",
        "confidence",
        "parzen",
        "parzen_se",
    ] {
        for (who, s) in [("samples", fake), ("heldout_real", real)] {
            assert!(
                s[key].as_f64().is_some_and(f64::is_finite),
                "{who}.{key} in {v}"
            );
        }
    }
    let hist: f64 = fake["class_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!(
        (hist - 1.0).abs() < 1e-9,
        "the class histogram sums to 1: {v}"
    );
    // A 2-step generator is noise: the real ceiling scores far better on every figure.
    assert!(real["fd"].as_f64() < fake["fd"].as_f64(), "{v}");
    assert!(real["is"].as_f64() > fake["is"].as_f64(), "{v}");
    assert!(real["parzen"].as_f64() > fake["parzen"].as_f64(), "{v}");
    let bad = duel(&[
        "--device",
        "cpu",
        "eval",
        tmp.dir().join("absent").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("absent") && !err.contains("panicked"), "{err}");
}

#[test]
fn theory_cli_writes_its_plots_and_prints_the_divergences() {
    let tmp = TempDir::new("theory-cli");
    let out = tmp.dir().join("plots");
    let stdout = ok(&duel(&[
        "theory",
        "--steps",
        "200",
        "--every",
        "100",
        "--n",
        "500",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("JSD") || stdout.contains("jsd"), "{stdout}");
    for png in [
        "densities.png",
        "discriminator.png",
        "divergences.png",
        "gradient.png",
    ] {
        let (w, h) = png_size(&out.join(png));
        assert!(w > 100 && h > 100, "{png}: {w}x{h}");
    }
}
