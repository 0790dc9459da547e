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
