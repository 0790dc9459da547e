//! The output of `duel bench`: one aligned table for people, one JSON document (schema
//! `duel-bench/1`, documented in the README) for tools, and the `--against` comparison
//! with another run of the same schema (PyTorch's, from scripts/bench_pytorch.py).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use super::machine::Machine;
use super::step::StepRow;
use super::Row;
use crate::error::{Error, Result};

pub const SCHEMA: &str = "duel-bench/1";

/// A whole run.
pub struct Report {
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub steps: Vec<StepRow>,
    pub command: String,
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
}

/// Another tool's medians by row key (seconds).
#[derive(Clone, Debug, Default)]
pub struct Against {
    pub tool: String,
    pub medians: HashMap<String, f64>,
}

impl Against {
    /// Read a `duel-bench/1` JSON file (rows and steps, keyed as duel keys them).
    pub fn load(path: &Path) -> Result<Against> {
        let what = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "--against {what}: {e}; make it with `python3 scripts/bench_pytorch.py > {what}`"
            ))
        })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("--against {what}: not JSON ({e})")))?;
        if v.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
            return Err(Error::invalid(format!(
                "--against {what}: not a {SCHEMA} document (no \"schema\": \"{SCHEMA}\")"
            )));
        }
        let mut medians = HashMap::new();
        for list in ["rows", "steps"] {
            for r in v.get(list).and_then(Value::as_array).into_iter().flatten() {
                let key = r.get("key").and_then(Value::as_str);
                let median = r.get("median_s").and_then(Value::as_f64);
                if let (Some(k), Some(m)) = (key, median) {
                    if m > 0.0 {
                        medians.insert(k.to_string(), m);
                    }
                }
            }
        }
        Ok(Against {
            tool: v
                .get("tool")
                .and_then(Value::as_str)
                .unwrap_or("other")
                .to_string(),
            medians,
        })
    }

    /// duel's time over the other's (< 1: duel is faster).
    pub fn ratio(&self, key: &str, median: f64) -> Option<f64> {
        self.medians.get(key).map(|other| median / other)
    }
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 && part.is_finite() {
        format!("{:.0}%", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

/// Milliseconds with 3 significant digits.
fn ms(seconds: f64) -> String {
    let v = seconds * 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    pub fn to_json(&self, against: Option<&Against>) -> Value {
        let bw = self.machine.bandwidth_gbps();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "op": r.op,
                    "direction": r.direction,
                    "label": r.label,
                    "shape": r.shape,
                    "dtype": r.dtype.to_string(),
                    "device": r.device,
                    "kernel": r.kernel,
                    "samples_s": r.samples,
                    "median_s": r.spread.median,
                    "p10_s": r.spread.p10,
                    "p90_s": r.spread.p90,
                    "flops": r.flops,
                    "bytes": r.bytes,
                    "gflops": r.gflops(),
                    "gbps": r.gbps(),
                    "pct_peak": 100.0 * r.gflops() / self.machine.peak_gflops(r.kernel),
                    "pct_bandwidth": 100.0 * r.gbps() / bw,
                    "check": r.check.as_ref().map(|c| json!({
                        "max_rel_err": c.max_rel_err,
                        "tolerance": c.tolerance,
                        "reference": c.reference,
                        "ok": c.ok(),
                    })),
                    "vs": against.and_then(|a| a.ratio(&r.key, r.spread.median)),
                })
            })
            .collect();
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut v = s.to_json();
                v["vs"] = json!(against.and_then(|a| a.ratio(&s.key(), s.spread.median)));
                v
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "tool": format!("duel {}", env!("CARGO_PKG_VERSION")),
            "date": self.date,
            "command": self.command,
            "machine": self.machine.to_json(),
            "vs_tool": against.map(|a| a.tool.clone()),
            "rows": rows,
            "steps": steps,
        })
    }

    /// The human table: header, op rows, step rows with their breakdowns.
    pub fn table(&self, against: Option<&Against>) -> String {
        let bw = self.machine.bandwidth_gbps();
        let mut out = format!("duel bench  {}  {}\n", self.date, self.command);
        for line in self.machine.describe() {
            out += &line;
            out.push('\n');
        }
        let vs_head = against.map_or(String::new(), |a| format!("  vs {}", a.tool));
        out += &format!(
            "\n{:<17} {:<11} {:<22} {:<34} {:<13} {:>9} {:>17} {:>8} {:>7} {:>5} {:>5}  {:<16}{vs_head}\n",
            "op", "direction", "where", "shape", "kernel", "median ms", "p10-p90 ms", "GFLOP/s",
            "GB/s", "%pk", "%bw", "check (max rel)"
        );
        for r in &self.rows {
            let check = match &r.check {
                Some(c) if c.ok() => format!("{:.1e} ok", c.max_rel_err),
                Some(c) => format!("{:.1e} WRONG", c.max_rel_err),
                None => "no reference".into(),
            };
            let vs = against
                .and_then(|a| a.ratio(&r.key, r.spread.median))
                .map_or(String::new(), |x| format!("  {x:.2}x"));
            out += &format!(
                "{:<17} {:<11} {:<22} {:<34} {:<13} {:>9} {:>17} {:>8.1} {:>7.1} {:>5} {:>5}  {:<16}{vs}\n",
                r.op,
                r.direction,
                r.label,
                r.shape,
                r.kernel,
                ms(r.spread.median),
                format!("{}-{}", ms(r.spread.p10), ms(r.spread.p90)),
                r.gflops(),
                r.gbps(),
                pct(r.gflops(), self.machine.peak_gflops(r.kernel)),
                pct(r.gbps(), bw),
                check
            );
        }
        for s in &self.steps {
            let vs = against
                .and_then(|a| a.ratio(&s.key(), s.spread.median))
                .map_or(String::new(), |x| format!(", {x:.2}x {}", a_tool(against)));
            let allocs = match (s.allocs_per_step, s.alloc_bytes_per_step) {
                (Some(n), Some(b)) => format!("{n:.0} allocations ({:.1} MB)", b / 1e6),
                _ => "allocations n/a".into(),
            } + &s.tensor_allocs_per_step.map_or(String::new(), |(n, b)| {
                format!(", {n:.0} tensor-sized ({:.1} MB)", b / 1e6)
            });
            out += &format!(
                "\nstep {} (batch {}, {} on {}): {} ms/step (p10-p90 {}-{}), {:.0} img/s, {allocs}{vs}\n",
                s.key().trim_start_matches("step/"),
                s.batch,
                s.data,
                s.device,
                ms(s.spread.median),
                ms(s.spread.p10),
                ms(s.spread.p90),
                s.images_per_second()
            );
            // The shares' own sum: on cpu the timed steps' mean, on cuda/emu that of the
            // profiled steps (which wait for the device after every op; see bench::step).
            let total: f64 = s.breakdown.iter().map(|x| x.seconds_per_step).sum();
            if s.device != "cpu" {
                out += &format!(
                    "  (shares of {} ms/step: profiled steps that wait for the device after each op)\n",
                    ms(total)
                );
            }
            for share in &s.breakdown {
                if share.seconds_per_step / total < 0.005 {
                    continue;
                }
                out += &format!(
                    "  {:>4}  {:<22} {:<9} {:>8} ms {:>7.1} calls\n",
                    pct(share.seconds_per_step, total),
                    share.op,
                    share.direction,
                    ms(share.seconds_per_step),
                    share.calls_per_step
                );
            }
        }
        let wrong = self
            .rows
            .iter()
            .filter(|r| r.check.as_ref().is_some_and(|c| !c.ok()))
            .count();
        if wrong > 0 {
            out += &format!("\n{wrong} rows are WRONG: their result differs from the cpu reference beyond the tolerance\n");
        }
        out
    }
}

fn a_tool(against: Option<&Against>) -> &str {
    against.map_or("", |a| a.tool.as_str())
}

/// `YYYY-MM-DD HH:MM` UTC of the system clock (civil-from-days, proleptic Gregorian).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn against_reads_rows_and_steps_and_rejects_other_files() {
        let dir = std::env::temp_dir().join(format!("duel-against-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("torch.json");
        std::fs::write(
            &good,
            r#"{"schema":"duel-bench/1","tool":"pytorch 2.15",
               "rows":[{"key":"matmul/forward/square/256x256x256","median_s":0.002}],
               "steps":[{"key":"step/dcgan28","median_s":0.05}]}"#,
        )
        .unwrap();
        let a = Against::load(&good).unwrap();
        assert_eq!(a.tool, "pytorch 2.15");
        assert_eq!(
            a.ratio("matmul/forward/square/256x256x256", 0.001),
            Some(0.5)
        );
        assert_eq!(a.ratio("step/dcgan28", 0.1), Some(2.0));
        assert_eq!(a.ratio("missing", 1.0), None);
        let bad = dir.join("other.json");
        std::fs::write(&bad, r#"{"rows":[]}"#).unwrap();
        let e = Against::load(&bad).unwrap_err().to_string();
        assert!(e.contains("duel-bench/1"), "{e}");
        let e = Against::load(&dir.join("absent.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bench_pytorch.py"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn milliseconds_keep_three_digits() {
        assert_eq!(ms(0.123_456), "123");
        assert_eq!(ms(0.012_345), "12.3");
        assert_eq!(ms(0.001_234_5), "1.23");
        assert_eq!(ms(0.000_123_45), "0.123");
    }
}
