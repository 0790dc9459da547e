//! `duel bench`: the header, a row with its check, a whole step with its breakdown, the
//! JSON schema, `--against`, and the errors for bad flags.

mod common;

use common::{duel, duel_with_env, TempDir};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the --json file")).unwrap()
}

const ROW: &str = "matmul/forward/square/256x256x256";

#[test]
fn bench_row_has_header_formula_and_check_and_compares_with_another_run() {
    let tmp = TempDir::new("bench-row");
    let json = tmp.path("duel.json");
    let out = duel(&[
        "--device",
        "cpu",
        "bench",
        "--quick",
        "--threads",
        "1",
        "--filter",
        ROW,
        "--json",
        &tmp.arg("duel.json"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for want in [
        "FMA peak",
        "GFLOP/s f32 measured on 1 threads",
        "stream triad",
        "ISA",
    ] {
        assert!(stdout.contains(want), "no '{want}' in:\n{stdout}");
    }
    let v = read_json(&json);
    assert_eq!(v["schema"], "duel-bench/1");
    assert_eq!(v["machine"]["threads"], 1);
    assert!(v["machine"]["fma_peak_gflops"].as_f64().unwrap() > 0.0);
    let units = v["machine"]["features"]
        .as_array()
        .unwrap()
        .contains(&"avx512_bf16".into());
    let bf16 = &v["machine"]["bf16_peak_gflops"];
    assert_eq!(
        bf16.as_f64().is_some_and(|g| g > 0.0),
        units,
        "bf16 peak {bf16}"
    );
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "--filter keeps one row: {rows:?}");
    let row = &rows[0];
    assert_eq!(row["key"], ROW);
    assert_eq!(row["flops"].as_f64(), Some(2.0 * 256f64.powi(3)));
    assert!(row["samples_s"].as_array().unwrap().len() >= 3);
    assert_eq!(row["check"]["reference"], "cpu f64");
    assert_eq!(row["check"]["ok"], true, "{row}");
    assert!(v["steps"].as_array().unwrap().is_empty());

    // Another tool's run of the same row, twice as slow as this one: ratio 0.5.
    let median = row["median_s"].as_f64().unwrap();
    let other = tmp.path("other.json");
    std::fs::write(
        &other,
        serde_json::json!({
            "schema": "duel-bench/1", "tool": "pytorch 2.15",
            "rows": [{"key": ROW, "median_s": 2.0 * median}], "steps": []
        })
        .to_string(),
    )
    .unwrap();
    let out = duel(&[
        "--device",
        "cpu",
        "bench",
        "--quick",
        "--filter",
        ROW,
        "--against",
        &tmp.arg("other.json"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("vs pytorch 2.15"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("matmul")).unwrap();
    assert!(line.trim_end().ends_with('x'), "no ratio on: {line}");
}

#[test]
fn bench_step_is_the_trainer_step_split_by_op() {
    let tmp = TempDir::new("bench-step");
    let out = duel(&[
        "--device",
        "cpu",
        "bench",
        "--quick",
        "--filter",
        "step/mlp",
        "--json",
        &tmp.arg("s.json"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("step mlp (batch 256"), "{stdout}");
    let v = read_json(&tmp.path("s.json"));
    let step = &v["steps"][0];
    assert_eq!(step["key"], "step/mlp");
    assert_eq!(step["samples_s"].as_array().unwrap().len(), 5);
    let shares = step["breakdown"].as_array().unwrap();
    let find = |op: &str, dir: &str| {
        shares
            .iter()
            .find(|s| s["op"] == op && s["direction"] == dir)
            .unwrap_or_else(|| panic!("no {op} {dir} in {shares:?}"))
    };
    // Per step: D sees the real and the fake batch, G's step runs G then D: 3 layers each,
    // so 3 G matmuls (no-grad fakes) + 6 D matmuls in the D step, 3 + 3 in the G step.
    assert_eq!(
        find("matmul", "forward")["calls_per_step"].as_f64(),
        Some(15.0)
    );
    assert_eq!(find("adam", "update")["calls_per_step"].as_f64(), Some(2.0));
    find("matmul", "backward");
    // The binary counts cpu allocations: a step makes tensors, so some are tensor-sized.
    assert!(stdout.contains("tensor-sized"), "{stdout}");
    for field in ["allocs_per_step", "tensor_allocs_per_step"] {
        let n = step[field].as_f64();
        assert!(n.is_some_and(|n| n >= 1.0), "{field}: {n:?} in {step}");
    }
    assert!(step["tensor_alloc_bytes_per_step"].as_f64().unwrap() >= 4096.0);
    let total: f64 = shares.iter().map(|s| s["pct"].as_f64().unwrap()).sum();
    assert!((total - 100.0).abs() < 0.5, "shares sum to {total}%");
}

/// The header alone, on one thread.
const MACHINE_ONLY: [&str; 7] = [
    "--device",
    "cpu",
    "bench",
    "--quick",
    "--machine-only",
    "--threads",
    "1",
];

#[test]
fn bench_machine_only_prints_the_header_alone() {
    let out = duel(&MACHINE_ONLY);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let peak = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FMA peak"))
        .unwrap_or_else(|| panic!("no FMA peak line in:\n{stdout}"));
    let gflops: f64 = peak.split_whitespace().next().unwrap().parse().unwrap();
    assert!(gflops > 0.0, "{peak}");
    assert!(
        !stdout.contains("median ms"),
        "rows were measured:\n{stdout}"
    );
    assert!(!stdout.contains("step "), "steps were measured:\n{stdout}");
}

/// The bf16 peak line: measured (`vdpbf16ps` chains) where the CPU has AVX512-BF16, and
/// where it has not, or `DUEL_CPU_ISA=avx512` turns the units off, a line saying so.
#[test]
fn bench_measures_the_bf16_peak_where_the_units_are() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_units = cpuinfo.contains("avx512_bf16");
    for (isa, units) in [("avx512bf16", has_units), ("avx512", false)] {
        let out = duel_with_env(&MACHINE_ONLY, &[("DUEL_CPU_ISA", isa)]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("bf16 peak"))
            .unwrap_or_else(|| panic!("no bf16 peak line in:\n{stdout}"));
        match units {
            true => {
                let gflops: f64 = line.split_whitespace().next().unwrap().parse().unwrap();
                assert!(gflops > 0.0 && line.contains("vdpbf16ps"), "{isa}: {line}");
            }
            false => assert!(line.contains("no bf16 units"), "{isa}: {line}"),
        }
    }
}

#[test]
fn bench_bad_flags_are_clear_errors() {
    let out = duel(&[
        "--device",
        "cpu",
        "bench",
        "--against",
        "no-such-torch.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bench_pytorch.py"), "{stderr}");

    let out = duel(&[
        "--device",
        "cpu",
        "bench",
        "--quick",
        "--filter",
        "no-such-row",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no row matches"),
        "{}",
        text(&out.stderr)
    );

    let out = duel(&["--device", "cpu", "bench", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains("panicked"));
}
