//! Runs that survive how people really stop them (issue 16), through the real binary:
//! signals, `kill -9`, concurrent use, names and paths, moved and changed data, damaged
//! files, full disks (a picture that cannot be written), and resumes that change the
//! optimizer or the thread count.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{duel, TempDir};
use duel::io::checkpoint::{load_safetensors_with_metadata, save_safetensors};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

/// A tiny toy run's flags into `runs`, then `extra`.
fn toy_args<'a>(runs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--device",
        "cpu",
        "--data",
        "ring8",
        "--width",
        "8",
        "--nz",
        "4",
        "--batch-size",
        "16",
        "--runs-dir",
        runs,
        "--quiet",
    ];
    v.extend_from_slice(extra);
    v
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// Exit 2, no panic, and an `error:` line containing each of `needles`.
fn refused(out: &Output, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    for n in needles {
        assert!(line.contains(n), "expected {n:?} in: {line}");
    }
    line.to_string()
}

/// The `step` of every line of the run's metrics.jsonl, in file order.
fn metric_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// A toy run that would train for a very long time, writing no checkpoint on its own.
fn spawn_long(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_duel"))
        .args(args)
        .args(["--steps", "100000000", "--checkpoint-every", "100000000"])
        .args(["--sample-every", "100000000"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn duel")
}

fn rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Wait until the run in `dir` has logged more than `n` steps.
fn wait_past(dir: &Path, n: usize, child: &mut Child) {
    let t0 = Instant::now();
    while rows(dir) <= n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("duel ended early ({status})");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no progress in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
}

/// The step stored in a checkpoint.
fn checkpoint_step(path: &Path) -> u64 {
    let (_, meta) = load_safetensors_with_metadata(path).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    state["step"].as_u64().unwrap()
}

#[test]
fn sigterm_and_sighup_stop_with_a_checkpoint() {
    let tmp = TempDir::new("rel-signals");
    let runs = tmp.arg("runs");
    for sig in ["TERM", "HUP"] {
        let name = format!("sig{sig}");
        let mut child = spawn_long(&toy_args(&runs, &["--name", &name]));
        let dir = tmp.path(&format!("runs/{name}"));
        wait_past(&dir, 3, &mut child);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        ok(&out);
        assert!(
            text(&out.stdout).contains("interrupted at step"),
            "{}",
            text(&out.stdout)
        );
        let ckpt = dir.join("checkpoint.safetensors");
        assert!(ckpt.is_file(), "SIG{sig}: no checkpoint");
        assert_eq!(checkpoint_step(&ckpt) as usize, rows(&dir), "SIG{sig}");
    }
}

#[test]
fn a_run_killed_before_its_first_checkpoint_leaves_a_reusable_directory() {
    let tmp = TempDir::new("rel-deadend");
    let runs = tmp.arg("runs");
    let mut child = spawn_long(&toy_args(&runs, &["--name", "x"]));
    let dir = tmp.path("runs/x");
    wait_past(&dir, 2, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.join("checkpoint.safetensors").exists());
    let resume = [
        "train",
        "--device",
        "cpu",
        "--resume",
        dir.to_str().unwrap(),
        "--steps",
        "3",
    ];
    refused(
        &duel(&resume),
        &["before its first checkpoint", "without --resume"],
    );
    ok(&duel(&toy_args(&runs, &["--name", "x", "--steps", "3"])));
    assert_eq!(rows(&dir), 3, "the dead run's rows are gone");
    assert_eq!(checkpoint_step(&dir.join("checkpoint.safetensors")), 3);
}

#[test]
fn a_run_directory_is_locked_for_the_life_of_a_run() {
    let tmp = TempDir::new("rel-lock");
    let runs = tmp.arg("runs");
    // A start with a --name in use.
    let mut child = spawn_long(&toy_args(&runs, &["--name", "a"]));
    wait_past(&tmp.path("runs/a"), 1, &mut child);
    let again = duel(&toy_args(&runs, &["--name", "a", "--steps", "2"]));
    refused(
        &again,
        &[
            "in use by another duel process",
            &format!("pid {}", child.id()),
        ],
    );
    signal(&child, "TERM");
    ok(&child.wait_with_output().unwrap());

    // Two resumes of one run.
    let dir = tmp.path("runs/a");
    let resume = |extra: &[&str]| {
        let mut v = vec!["train", "--device", "cpu", "--quiet", "--resume"];
        v.push(dir.to_str().unwrap());
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let before = rows(&dir);
    let first = resume(&[]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let mut child = spawn_long(&first);
    wait_past(&dir, before + 1, &mut child);
    let second = resume(&["--steps", "100000000"]);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    refused(&duel(&second), &["in use"]);
    signal(&child, "TERM");
    ok(&child.wait_with_output().unwrap());
    let steps = metric_steps(&dir);
    assert_eq!(
        steps,
        (1..=steps.len() as u64).collect::<Vec<_>>(),
        "each step once"
    );
}

#[test]
fn parallel_starts_with_one_name_leave_one_run() {
    let tmp = TempDir::new("rel-samename");
    let runs = tmp.arg("runs");
    let seeds = ["11", "12", "13", "14"];
    let children: Vec<Child> = seeds
        .iter()
        .map(|seed| {
            Command::new(env!("CARGO_BIN_EXE_duel"))
                .args(toy_args(
                    &runs,
                    &["--name", "same", "--steps", "3", "--seed", seed],
                ))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one start wins");
    for o in outs.iter().filter(|o| !o.status.success()) {
        refused(o, &["runs/same"]);
    }
    // config.json and the checkpoint are the same run's.
    let dir = tmp.path("runs/same");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let (_, meta) = load_safetensors_with_metadata(dir.join("checkpoint.safetensors")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    assert_eq!(config["seed"], state["config"]["seed"]);
    assert_eq!(rows(&dir), 3);
}

#[test]
fn parallel_starts_without_a_name_get_their_own_directories() {
    let tmp = TempDir::new("rel-parallel");
    let runs = tmp.arg("runs");
    // Tiny digits runs: loading the data takes each process about as long, so their
    // starts meet (toy runs start too staggered to collide).
    let children: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_duel"))
                .args([
                    "train", "--device", "cpu", "--arch", "dcgan28", "--width", "2",
                ])
                .args(["--nz", "2", "--batch-size", "4", "--quiet", "--steps", "3"])
                .args(["--runs-dir", &runs])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let mut names: Vec<String> = std::fs::read_dir(tmp.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "nsgan-dcgan28-digits",
            "nsgan-dcgan28-digits-2",
            "nsgan-dcgan28-digits-3",
            "nsgan-dcgan28-digits-4"
        ]
    );
    for n in names {
        let dir = tmp.path(&format!("runs/{n}"));
        assert_eq!(rows(&dir), 3, "{n}");
        assert_eq!(
            checkpoint_step(&dir.join("checkpoint.safetensors")),
            3,
            "{n}"
        );
    }
}

#[test]
fn sizes_too_large_for_the_machine_are_refused_before_allocating() {
    let tmp = TempDir::new("rel-huge");
    let runs = tmp.arg("runs");
    for (flag, v) in [
        ("--batch-size", "100000000000000"),
        ("--width", "4000000000"),
        ("--nz", "1000000000000"),
    ] {
        // toy_args with `flag` replaced by the huge value.
        let mut args = toy_args(&runs, &["--steps", "1"]);
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = v,
            None => args.extend([flag, v]),
        }
        refused(&duel(&args), &[flag, "memory", "lower"]);
    }
    let out = duel(&[
        "train",
        "--device",
        "cpu",
        "--arch",
        "dcgan28",
        "--width",
        "100000000",
        "--runs-dir",
        &runs,
        "--steps",
        "1",
        "--quiet",
    ]);
    refused(&out, &["--width 100000000", "memory"]);
    // The same from a checkpoint's stored configuration.
    let dir = tmp.path("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let (tensors, mut meta) =
        load_safetensors_with_metadata(fixture("ring8/checkpoint.safetensors")).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    state["config"]["batch_size"] = serde_json::json!(1u64 << 50);
    meta.insert("duel.training_state".into(), state.to_string());
    save_safetensors(dir.join("checkpoint.safetensors"), &tensors, Some(&meta)).unwrap();
    let out = duel(&[
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--steps",
        "20",
        "--resume",
        dir.to_str().unwrap(),
    ]);
    refused(&out, &["checkpoint.safetensors", "memory"]);
}

#[test]
fn relative_data_resumes_from_anywhere_and_changed_data_is_noticed() {
    let tmp = TempDir::new("rel-data");
    std::fs::create_dir_all(tmp.path("d")).unwrap();
    for f in ["tiny-images-idx3-ubyte", "tiny-labels-idx1-ubyte"] {
        std::fs::copy(fixture(&format!("idx/{f}")), tmp.path(&format!("d/{f}"))).unwrap();
    }
    let train = |cwd: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_duel"))
            .current_dir(cwd)
            .args(["train", "--device", "cpu", "--quiet"])
            .args(args)
            .output()
            .unwrap()
    };
    let small = [
        "--width",
        "2",
        "--nz",
        "3",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
    ];
    let mut args = vec![
        "--data",
        "d/tiny-images-idx3-ubyte",
        "--name",
        "r",
        "--steps",
        "2",
    ];
    args.extend_from_slice(&small);
    ok(&train(tmp.dir(), &args));
    let run = tmp.arg("runs/r");
    // From another directory.
    ok(&train(Path::new("/"), &["--resume", &run, "--steps", "4"]));
    // Moved: refused with how to point at it; accepted at its new place.
    std::fs::rename(tmp.path("d"), tmp.path("e")).unwrap();
    refused(
        &train(Path::new("/"), &["--resume", &run, "--steps", "6"]),
        &["not there", "--data"],
    );
    ok(&train(
        tmp.dir(),
        &[
            "--resume",
            &run,
            "--steps",
            "6",
            "--data",
            "e/tiny-images-idx3-ubyte",
        ],
    ));
    let config = std::fs::read_to_string(tmp.path("runs/r/config.json")).unwrap();
    assert!(config.contains(tmp.path("e").to_str().unwrap()), "{config}");
    // Changed: refused, naming the file.
    let img = tmp.path("e/tiny-images-idx3-ubyte");
    let mut bytes = std::fs::read(&img).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&img, bytes).unwrap();
    refused(
        &train(tmp.dir(), &["--resume", &run, "--steps", "8"]),
        &["data changed", "crc32"],
    );
}

#[test]
fn run_names_are_one_plain_path_component() {
    let tmp = TempDir::new("rel-names");
    let runs = tmp.arg("sub/runs");
    for name in ["", ".", "..", "../x", "a/b", "/tmp/duel-abs-name"] {
        let out = duel(&toy_args(&runs, &["--name", name, "--steps", "1"]));
        refused(&out, &["--name", "plain name"]);
    }
    assert!(!tmp.path("sub").exists(), "nothing was written");
    assert!(!Path::new("/tmp/duel-abs-name").exists());
}

#[test]
fn a_resume_may_lower_the_learning_rate_and_records_it() {
    let tmp = TempDir::new("rel-lr");
    let runs = tmp.arg("runs");
    ok(&duel(&toy_args(&runs, &["--name", "r", "--steps", "2"])));
    let out = duel(&[
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--resume",
        &tmp.arg("runs/r"),
        "--steps",
        "4",
        "--lr",
        "1e-5",
        "--beta1",
        "0.25",
    ]);
    let stderr = ok(&out);
    assert!(stderr.contains("changed on resume at step 2"), "{stderr}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path("runs/r/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (config["lr_g"].as_f64(), config["lr_d"].as_f64()),
        (Some(1e-5), Some(1e-5))
    );
    assert_eq!(config["beta1"].as_f64(), Some(0.25));
    let (_, meta) =
        load_safetensors_with_metadata(tmp.path("runs/r/checkpoint.safetensors")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
    assert_eq!(state["config"]["lr_g"].as_f64(), Some(1e-5));
    // What cannot change is still refused.
    refused(
        &duel(&[
            "train",
            "--resume",
            &tmp.arg("runs/r"),
            "--width",
            "4",
            "--steps",
            "6",
        ]),
        &["--width", "cannot change"],
    );
}

#[test]
fn a_picture_that_cannot_be_written_costs_no_checkpoint_and_the_schedule_is_stored() {
    let tmp = TempDir::new("rel-pictures");
    let runs = tmp.arg("runs");
    let every = ["--checkpoint-every", "3", "--sample-every", "3"];
    let mut args = vec!["--name", "p", "--steps", "3"];
    args.extend_from_slice(&every);
    ok(&duel(&toy_args(&runs, &args)));
    let dir = tmp.path("runs/p");
    // Something in the way of step 6's picture (as a full disk would fail it).
    std::fs::create_dir_all(dir.join("samples/step-000006.png/x")).unwrap();
    let stderr = ok(&duel(&[
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--resume",
        dir.to_str().unwrap(),
        "--steps",
        "7",
    ]));
    assert!(stderr.contains("warning: step 6"), "{stderr}");
    // The stored --checkpoint-every 3 made the step-6 checkpoint; then the final one.
    assert_eq!(checkpoint_step(&dir.join("checkpoint.safetensors")), 7);
    assert!(dir.join("samples/final.png").is_file());
    assert!(!dir.join("samples/step-000007.png").exists() || rows(&dir) == 7);
}

#[test]
fn stored_schedule_is_kept_by_a_resume() {
    let tmp = TempDir::new("rel-schedule");
    let runs = tmp.arg("runs");
    ok(&duel(&toy_args(
        &runs,
        &[
            "--name",
            "s",
            "--steps",
            "2",
            "--checkpoint-every",
            "3",
            "--sample-every",
            "3",
        ],
    )));
    let dir = tmp.path("runs/s");
    ok(&duel(&[
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--resume",
        dir.to_str().unwrap(),
        "--steps",
        "7",
    ]));
    for s in ["step-000003.png", "step-000006.png", "step-000007.png"] {
        assert!(dir.join("samples").join(s).is_file(), "{s}");
    }
}

/// `fixture` G file with its metadata changed by `edit`, written into `dir`.
fn edited_generator(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut Vec<(String, duel::Tensor)>, &mut BTreeMap<String, String>),
) -> PathBuf {
    let (mut tensors, mut meta) =
        load_safetensors_with_metadata(fixture("ring8/generator.safetensors")).unwrap();
    edit(&mut tensors, &mut meta);
    let path = dir.join(name);
    save_safetensors(&path, &tensors, Some(&meta)).unwrap();
    path
}

fn sample(path: &Path, out: &Path) -> Output {
    duel(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--n",
        "4",
    ])
}

#[test]
fn sample_refuses_non_finite_weights_and_crafted_network_descriptions() {
    let tmp = TempDir::new("rel-sample");
    let png = tmp.path("s.png");
    let nan = edited_generator(tmp.dir(), "nan.safetensors", |t, _| {
        let (name, w) = t
            .iter()
            .find(|(n, _)| n.ends_with("weight"))
            .unwrap()
            .clone();
        let mut v = w.to_vec::<f32>().unwrap();
        v[0] = f32::NAN;
        let i = t.iter().position(|(n, _)| *n == name).unwrap();
        t[i].1 = duel::Tensor::from_vec(v, w.dims().to_vec(), &duel::Device::Cpu).unwrap();
    });
    refused(&sample(&nan, &png), &["not finite"]);
    assert!(!png.exists(), "no picture of a broken model");
    for (field, value) in [
        ("classes", serde_json::json!(0)),
        ("classes", serde_json::json!(100000)),
        ("nz", serde_json::json!(1u64 << 62)),
        ("width", serde_json::json!(1u64 << 40)),
        ("sample_shape", serde_json::json!([1u64 << 61])),
        ("sample_shape", serde_json::json!([2, 2])),
        ("arch", serde_json::json!("dcgan28")),
    ] {
        let path = edited_generator(tmp.dir(), "crafted.safetensors", |_, m| {
            let mut net: serde_json::Value = serde_json::from_str(&m["duel.net"]).unwrap();
            net[field] = value.clone();
            m.insert("duel.net".into(), net.to_string());
        });
        refused(
            &sample(&path, &png),
            &["crafted.safetensors", "network description"],
        );
    }
}

#[test]
fn a_resume_keeps_the_metrics_history_byte_for_byte_and_recovers_a_corrupt_line() {
    let tmp = TempDir::new("rel-metrics");
    let dir = tmp.path("r");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "checkpoint.safetensors", "metrics.jsonl"] {
        std::fs::copy(fixture(&format!("ring8/{f}")), dir.join(f)).unwrap();
    }
    let resume = |steps: &str| {
        duel(&[
            "train",
            "--device",
            "cpu",
            "--quiet",
            "--resume",
            dir.to_str().unwrap(),
            "--steps",
            steps,
        ])
    };
    ok(&resume("12"));
    let old = std::fs::read_to_string(fixture("ring8/metrics.jsonl")).unwrap();
    let new = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(
        new.starts_with(&old),
        "the first 10 lines are kept as written"
    );
    assert_eq!(new.lines().count(), 12);
    // A damaged line 5: the log is cut there, with a warning, and the run goes on.
    let mut lines: Vec<&str> = new.lines().collect();
    lines[4] = "{\"step\":5,\"d_loss\":1.0,GARBAGE";
    std::fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    let stderr = ok(&resume("14"));
    assert!(
        stderr.contains("warning") && stderr.contains("line 5"),
        "{stderr}"
    );
    let steps = metric_steps(&dir);
    assert_eq!(steps, [1, 2, 3, 4, 13, 14]);
}

#[test]
fn leftover_temp_files_are_removed_and_a_lagging_generator_is_not_used() {
    let tmp = TempDir::new("rel-leftovers");
    let runs = tmp.arg("runs");
    ok(&duel(&toy_args(
        &runs,
        &["--name", "t", "--steps", "2", "--checkpoint-every", "2"],
    )));
    let dir = tmp.path("runs/t");
    let old_g = tmp.path("old-generator.safetensors");
    std::fs::copy(dir.join("generator.safetensors"), &old_g).unwrap();
    let stale = [
        dir.join(".checkpoint.safetensors.tmp.4242.0"),
        dir.join("samples/.step-000002.png.tmp.4242.1"),
    ];
    for s in &stale {
        std::fs::write(s, b"half a file").unwrap();
    }
    ok(&duel(&[
        "train",
        "--device",
        "cpu",
        "--quiet",
        "--resume",
        dir.to_str().unwrap(),
        "--steps",
        "4",
    ]));
    for s in &stale {
        assert!(!s.exists(), "{} left behind", s.display());
    }
    // As if killed between the checkpoint and the generator write.
    std::fs::copy(&old_g, dir.join("generator.safetensors")).unwrap();
    let (a, b) = (tmp.path("a.png"), tmp.path("b.png"));
    ok(&sample(&dir, &a));
    ok(&sample(&dir.join("checkpoint.safetensors"), &b));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_resume_with_another_cpu_thread_count_is_bitwise_the_run_and_notes_it() {
    let tmp = TempDir::new("rel-threads");
    let runs = tmp.arg("runs");
    // A small dcgan28 run: the convolutions are where a thread count could show.
    let small = [
        "--arch",
        "dcgan28",
        "--width",
        "4",
        "--nz",
        "4",
        "--batch-size",
        "8",
        "--runs-dir",
    ];
    let train = |threads: &str, extra: &[&str]| {
        let mut v = vec!["train", "--device", "cpu", "--quiet", "--threads", threads];
        v.extend_from_slice(extra);
        duel(&v)
    };
    let start = |name: &str, steps: &str| {
        let mut v = small.to_vec();
        v.extend([runs.as_str(), "--name", name, "--steps", steps]);
        ok(&train("1", &v));
    };
    start("whole", "4");
    start("split", "2");
    let split = tmp.arg("runs/split");
    let same = ok(&train("1", &["--resume", &split, "--steps", "3"]));
    assert!(!same.contains("cpu threads"), "{same}");
    let other = ok(&train("2", &["--resume", &split, "--steps", "4"]));
    assert!(
        other.contains("note: the checkpoint was written with 1 cpu threads, this process has 2"),
        "{other}"
    );
    let state = |run: &str| {
        let (t, meta) =
            load_safetensors_with_metadata(tmp.path(&format!("runs/{run}/checkpoint.safetensors")))
                .unwrap();
        let mut s: serde_json::Value = serde_json::from_str(&meta["duel.training_state"]).unwrap();
        let threads = s["cpu_threads"].take();
        let bits: Vec<(String, Vec<u64>)> = t
            .iter()
            .map(|(n, t)| (n.clone(), common::bits(t)))
            .collect();
        (bits, s, threads)
    };
    let (whole, whole_state, whole_threads) = state("whole");
    let (resumed, resumed_state, resumed_threads) = state("split");
    assert_eq!(
        (whole_threads.as_u64(), resumed_threads.as_u64()),
        (Some(1), Some(2)),
        "recorded"
    );
    assert_eq!(resumed_state, whole_state);
    assert_eq!(resumed.len(), whole.len());
    for ((n, a), (_, b)) in whole.iter().zip(&resumed) {
        assert!(
            a == b,
            "{n}: the resume on 2 threads differs from the run on 1"
        );
    }
}
