//! `duel train` and `duel sample` through the binary: tiny runs, run naming, sampling
//! from each kind of checkpoint path, and one clear `error:` line (exit 2) for bad values.

use std::path::Path;
use std::process::Output;

mod common;
use common::{duel, png_size, TempDir};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(!stderr.contains("error:"), "{stderr}");
    stdout
}

/// Exit 2 and exactly one stderr line, `error: …`, containing each of `needles`. Returns it.
fn assert_one_error(out: &Output, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors = lines.iter().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, 1, "one error line:\n{stderr}");
    assert_eq!(lines.len(), 1, "nothing but the error line:\n{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "expected {n:?} in: {}", lines[0]);
    }
    lines[0].to_string()
}

/// The tiny training flags (into `runs_dir`), followed by `extra`.
fn train(runs_dir: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--nz",
        "8",
        "--steps",
        "4",
        "--sample-every",
        "2",
        "--runs-dir",
        runs_dir,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    with_cpu(args)
}

/// `args`, run on the cpu unless they choose a device.
fn with_cpu(mut args: Vec<&str>) -> Output {
    if !args.contains(&"--device") {
        args.extend_from_slice(&["--device", "cpu"]);
    }
    duel(&args)
}

#[test]
fn train_writes_a_run_and_numbers_the_default_name() {
    let tmp = TempDir::new("gan_cli-train");
    let runs = tmp.arg("runs");
    let out = train(&runs, &[]);
    let stdout = assert_ok(&out);
    let dir = tmp.path("runs/nsgan-dcgan28-digits");
    let final_png = dir.join("samples/final.png");
    assert!(
        stdout.contains(&format!("samples:     {}", final_png.display())),
        "prints the samples path:\n{stdout}"
    );
    assert!(stdout.contains("trained to step 4"), "{stdout}");
    for f in [
        "config.json",
        "metrics.jsonl",
        "loss.png",
        "checkpoint.safetensors",
        "generator.safetensors",
        "samples/step-000002.png",
        "samples/step-000004.png",
        "samples/final.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    assert_eq!(png_size(&final_png), (242, 242));
    let rows = duel::io::metrics::read_metrics(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r["d_loss"].is_finite() && r["g_loss"].is_finite()));

    // The same configuration again goes to <name>-2.
    let out = train(&runs, &[]);
    let stdout = assert_ok(&out);
    let second = tmp.path("runs/nsgan-dcgan28-digits-2");
    assert!(
        stdout.contains(&second.join("samples/final.png").display().to_string()),
        "{stdout}"
    );
    assert!(second.join("checkpoint.safetensors").is_file());
    // Same seed, same configuration: the same metrics (bar the timings).
    let again = duel::io::metrics::read_metrics(second.join("metrics.jsonl")).unwrap();
    for (a, b) in rows.iter().zip(&again) {
        for k in ["step", "d_loss", "g_loss", "d_real", "d_fake"] {
            assert_eq!(a[k], b[k], "{k}");
        }
    }

    // An explicit --name that already holds a run is refused (exit 2), not overwritten.
    let out = train(&runs, &["--name", "nsgan-dcgan28-digits"]);
    assert_one_error(&out, &["already holds a run", "--resume"]);

    // --resume with --steps extends the run.
    let resume = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--device",
            "cpu",
            "--resume",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        duel(&args)
    };
    let stdout = assert_ok(&resume(&["--steps", "6", "--quiet"]));
    assert!(stdout.contains("trained to step 6"), "{stdout}");
    let rows = duel::io::metrics::read_metrics(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 6);
    // A finished run cannot be resumed without a larger --steps.
    let out = resume(&["--quiet"]);
    assert_one_error(&out, &["already finished", "--steps"]);
    // Nor can its networks be changed (the optimizer may: tests/reliability_cli.rs).
    let out = resume(&["--width", "8", "--steps", "8"]);
    assert_one_error(&out, &["--width", "cannot change a resumed run"]);
}

#[test]
fn sample_from_a_run_dir_generator_and_checkpoint() {
    let tmp = TempDir::new("gan_cli-sample");
    let runs = tmp.arg("runs");
    assert_ok(&train(&runs, &["--name", "r"]));
    let dir = tmp.path("runs/r");
    for (i, from) in [
        dir.clone(),
        dir.join("generator.safetensors"),
        dir.join("checkpoint.safetensors"),
    ]
    .iter()
    .enumerate()
    {
        let png = tmp.path(&format!("g{i}.png"));
        let out = duel(&[
            "sample",
            "--device",
            "cpu",
            "--checkpoint",
            from.to_str().unwrap(),
            "--n",
            "16",
            "--out",
            png.to_str().unwrap(),
        ]);
        let stdout = assert_ok(&out);
        assert!(stdout.contains(&png.display().to_string()), "{stdout}");
        // 16 samples: 4 per row, 28×28 with padding 2.
        assert_eq!(png_size(&png), (122, 122), "from {}", from.display());
    }
    // All three paths hold the same generator: the same picture.
    let bytes: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(tmp.path(&format!("g{i}.png"))).unwrap())
        .collect();
    assert_eq!(bytes[0], bytes[1]);
    assert_eq!(bytes[0], bytes[2]);

    // The default --n 64 is an 8×8 grid.
    let png = tmp.arg("g64.png");
    assert_ok(&duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--out",
        &png,
    ]));
    assert_eq!(png_size(Path::new(&png)), (242, 242));

    // --label on an unconditional model.
    let out = duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--label",
        "3",
        "--out",
        &tmp.arg("x.png"),
    ]);
    assert_one_error(&out, &["--label", "not conditional"]);
    assert!(!tmp.path("x.png").exists());

    // --n 0
    let out = duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--n",
        "0",
    ]);
    assert_one_error(&out, &["--n 0"]);

    // A missing checkpoint.
    let missing = tmp.arg("nope/generator.safetensors");
    let out = duel(&["sample", "--device", "cpu", "--checkpoint", &missing]);
    assert_one_error(&out, &["--checkpoint", &missing]);
}

#[test]
fn sample_from_a_corrupt_checkpoint_is_one_error_naming_the_file() {
    let tmp = TempDir::new("gan_cli-corrupt");
    let bad = tmp.path("checkpoint.safetensors");
    let out_png = tmp.arg("x.png");
    // Random bytes, text, an empty file, and a JSON header promising more than the file holds.
    let mut garbage: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    garbage[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut truncated = (header.len() as u64).to_le_bytes().to_vec();
    truncated.extend_from_slice(header);
    truncated.extend_from_slice(&[0; 4]);
    for bytes in [garbage, b"garbage\n".to_vec(), Vec::new(), truncated] {
        std::fs::write(&bad, &bytes).unwrap();
        let out = duel(&[
            "sample",
            "--device",
            "cpu",
            "--checkpoint",
            bad.to_str().unwrap(),
            "--out",
            &out_png,
        ]);
        assert_one_error(&out, &[bad.to_str().unwrap()]);
        assert!(!Path::new(&out_png).exists());
    }
    // A valid safetensors file that is not a duel generator.
    std::fs::write(&bad, {
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header);
        v.extend_from_slice(&1f32.to_le_bytes());
        v
    })
    .unwrap();
    let out = duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        bad.to_str().unwrap(),
        "--out",
        &out_png,
    ]);
    assert_one_error(&out, &[bad.to_str().unwrap(), "not a duel generator"]);
}

#[test]
fn conditional_run_samples_one_class() {
    let tmp = TempDir::new("gan_cli-cond");
    let runs = tmp.arg("runs");
    let out = train(&runs, &["--conditional"]);
    let stdout = assert_ok(&out);
    let dir = tmp.path("runs/nsgan-dcgan28-cond-digits");
    assert!(
        stdout.contains(&dir.join("samples/final.png").display().to_string()),
        "{stdout}"
    );
    let sample = |label: &str, out_png: &str| {
        duel(&[
            "sample",
            "--device",
            "cpu",
            "--checkpoint",
            dir.to_str().unwrap(),
            "--n",
            "16",
            "--label",
            label,
            "--out",
            out_png,
        ])
    };
    let png = tmp.arg("three.png");
    assert_ok(&sample("3", &png));
    assert_eq!(png_size(Path::new(&png)), (122, 122));
    // Without --label: every class in turn.
    let all = tmp.arg("all.png");
    assert_ok(&duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--n",
        "16",
        "--out",
        &all,
    ]));
    assert_ne!(std::fs::read(&png).unwrap(), std::fs::read(&all).unwrap());

    let out = sample("12", &tmp.arg("x.png"));
    assert_one_error(&out, &["--label 12", "0..=9"]);
    assert!(!tmp.path("x.png").exists());
}

#[test]
fn bad_train_values_are_one_error_line_exit_2() {
    let tmp = TempDir::new("gan_cli-bad");
    let runs = tmp.arg("runs");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--variant", "foo"], &["--variant 'foo'", "nsgan"]),
        (
            &["--variant", "lsgan", "--ls-coding", "1,1,1"],
            &["--ls-coding '1,1,1'"],
        ),
        (
            &["--variant", "lsgan", "--ls-coding", "x"],
            &["--ls-coding 'x'"],
        ),
        (
            &["--variant", "nsgan", "--ls-coding", "01"],
            &["--ls-coding", "lsgan only"],
        ),
        (&["--variant", "wgan", "--clip=-1"], &["--clip -1"]),
        (&["--variant", "wgan", "--clip", "-1"], &["--clip -1"]),
        (
            &["--variant", "nsgan", "--clip", "0.1"],
            &["--clip", "wgan only"],
        ),
        (&["--arch", "mlp"], &["--arch mlp", "toy"]),
        (
            &["--arch", "dcgan28", "--data", "ring8"],
            &["--arch dcgan28"],
        ),
        (&["--arch", "vgg"], &["--arch 'vgg'"]),
        (
            &["--data", "/nonexistent/file"],
            &["--data '/nonexistent/file'"],
        ),
        (&["--data", "ring8", "--conditional"], &["--conditional"]),
        (&["--steps", "0"], &["--steps"]),
        (&["--batch-size", "1"], &["--batch-size 1"]),
        (&["--lr=-1"], &["--lr"]),
        (&["--lr", "-1"], &["--lr -1"]),
        (&["--lr", "0"], &["--lr 0"]),
        (&["--beta1", "1.5"], &["--beta1 1.5"]),
        (&["--optimizer", "lbfgs"], &["--optimizer 'lbfgs'"]),
        (&["--sample-every", "0"], &["--sample-every"]),
        (&["--resume", "/nonexistent"], &["--resume /nonexistent"]),
        (&["--device", "bogus"], &["device 'bogus'"]),
    ];
    for (flags, needles) in cases {
        // No size flags here: --resume refuses them, and each case fails before training.
        let mut args = vec!["train", "--runs-dir", &runs, "--quiet"];
        args.extend_from_slice(flags);
        let out = with_cpu(args);
        let line = assert_one_error(&out, needles);
        assert!(out.stdout.is_empty(), "{flags:?}: {}", text(&out.stdout));
        eprintln!("{flags:?} -> {line}");
    }
    // Nothing was started by any of them.
    assert!(
        !tmp.path("runs").exists() || std::fs::read_dir(tmp.path("runs")).unwrap().count() == 0
    );
}

#[test]
fn idx_files_by_path_find_their_labels() {
    let tmp = TempDir::new("gan_cli-idx");
    let runs = tmp.arg("runs");
    // The built-in digits are MNIST-named IDX files: labels are found beside the images.
    let images = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/digits-5k-images-idx3-ubyte.gz"
    );
    let stdout = assert_ok(&train(
        &runs,
        &["--data", images, "--name", "idx", "--conditional"],
    ));
    assert!(stdout.contains("samples:"), "{stdout}");
    let config = std::fs::read_to_string(tmp.path("runs/idx/config.json")).unwrap();
    assert!(
        config.contains("digits-5k-labels-idx1-ubyte.gz"),
        "{config}"
    );
    png_size(&tmp.path("runs/idx/samples/final.png"));
    // Images without a labels file beside them: one error naming --labels.
    let lone = tmp.path("lone-images.gz");
    std::fs::copy(images, &lone).unwrap();
    let out = train(&runs, &["--data", lone.to_str().unwrap(), "--name", "lone"]);
    assert_one_error(&out, &["--labels"]);
}

#[test]
fn every_toy_set_trains_and_draws_its_picture() {
    let tmp = TempDir::new("gan_cli-toys");
    let runs = tmp.arg("runs");
    for (data, size) in [
        ("ring8", (600, 600)),
        ("grid25", (600, 600)),
        ("mix1d", (800, 500)),
    ] {
        let out = with_cpu(vec![
            "train",
            "--data",
            data,
            "--steps",
            "30",
            "--runs-dir",
            &runs,
            "--name",
            data,
            "--quiet",
        ]);
        let stdout = assert_ok(&out);
        assert!(stdout.contains("mode coverage of 1000 samples"), "{stdout}");
        let pic = tmp.path(&format!("runs/{data}/samples/final.png"));
        assert_eq!(png_size(&pic), size, "{data}");
        // `duel sample` on a toy model draws the same kind of picture.
        let run = tmp.arg(&format!("runs/{data}"));
        let drawn = tmp.arg(&format!("{data}-sample.png"));
        let out = with_cpu(vec![
            "sample",
            "--checkpoint",
            &run,
            "--n",
            "200",
            "--out",
            &drawn,
        ]);
        assert_ok(&out);
        assert_eq!(png_size(Path::new(&drawn)), size, "duel sample on {data}");
    }
}
