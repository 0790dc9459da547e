//! The `duel` binary: exit codes and messages.

use std::process::{Command, Output};

fn duel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duel"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run duel")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_devices_exits_zero() {
    let out = duel(&["devices"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("CPU "), "{stdout}");
    assert!(stdout.contains("logical threads"), "{stdout}");
    assert!(stdout.contains("kernels "), "{stdout}");
    assert!(stdout.contains("emulator "), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let no_driver = !unsafe { cudarc::driver::sys::is_culib_present() };
    if no_driver {
        assert!(
            stdout.contains("no GPU: CUDA driver not found (libcuda.so)"),
            "{stdout}"
        );
    }
}

#[test]
fn cli_help_lists_subcommands() {
    let out = duel(&["--help"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("devices"), "{stdout}");
    assert!(stdout.contains("--device"), "{stdout}");
}

#[test]
fn cli_bad_device_is_one_clear_line() {
    let out = duel(&["--device", "tpu", "devices"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: unknown device 'tpu'; use cpu, cuda, cuda:N, emu or auto"
    );
    assert!(!stderr.contains("panicked"));
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_bad_device_after_subcommand() {
    let out = duel(&["devices", "--device=cuda:x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: unknown device 'cuda:x'"));
}

#[test]
fn cli_unknown_subcommand_fails() {
    let out = duel(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn cli_check_on_emu_matches_the_cpu_reference() {
    let out = duel(&["check", "--device", "emu"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(" ok") || l.ends_with("FAILED"))
        .collect();
    assert_eq!(rows.len(), 22, "one row per checked op:\n{stdout}");
    assert!(rows.iter().all(|r| r.ends_with(" ok")), "{stdout}");
    assert!(stdout.contains("randn (Philox)"), "{stdout}");
}

#[test]
fn cli_check_on_cuda_without_a_gpu_is_the_clear_error() {
    let out = duel(&["check", "--device", "cuda"]);
    let stderr = text(&out.stderr);
    match duel::Device::cuda(0) {
        Ok(_) => assert!(
            out.status.success(),
            "a GPU was found, so the check must pass: {stderr}"
        ),
        Err(why) => {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert_eq!(stderr.trim(), format!("error: {why}"));
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                assert_eq!(
                    stderr.trim(),
                    "error: CUDA driver not found (libcuda.so); use --device cpu"
                );
            }
        }
    }
}

#[test]
fn cli_gradcheck_one_op_and_an_unknown_op() {
    let out = duel(&["gradcheck", "--op", "sigmoid"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sigmoid") && l.ends_with("pass")),
        "{stdout}"
    );
    assert!(
        stdout.lines().all(|l| !l.starts_with("tanh")),
        "--op filters: {stdout}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");

    let out = duel(&["gradcheck", "--op", "sigmoidd"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no gradcheck case for op 'sigmoidd'") && stderr.contains("sigmoid"),
        "{stderr}"
    );
}

#[test]
fn cli_trace_prints_the_tape_and_writes_dot() {
    let dir = std::env::temp_dir().join(format!("duel-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dot = dir.join("tape.dot");
    let out = duel(&["trace", "--device", "cpu", "--dot", dot.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("8 ops on the tape"), "{stdout}");
    assert!(
        stdout.contains("0 bytes still held after backward"),
        "{stdout}"
    );
    let graph = std::fs::read_to_string(&dot).unwrap();
    assert!(graph.starts_with("digraph tape {"), "{graph}");
    let missing_dir = dir.join("no/such/dir/tape.dot");
    let out = duel(&["trace", "--dot", missing_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
