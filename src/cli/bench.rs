//! `duel bench`: measure, print the table, optionally write JSON and compare with PyTorch.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use duel::bench::report::{utc_now, Against, Report};
use duel::bench::{self, Options};
use duel::device::DeviceSpec;

use crate::Failure;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Threads for the cpu kernels and the FMA/bandwidth probes [all logical CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Only rows whose key (op/direction/where/shape, or step/<arch>) contains PATTERN (ending in `$`: keys ending in the rest, as `step/dcgan28$`)
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// CI-sized: 3 samples a row, the dcgan64 and large generic shapes left out
    #[arg(long)]
    quick: bool,
    /// Leave out the whole-step rows
    #[arg(long)]
    no_steps: bool,
    /// Measure and print only the machine header (FMA peak, bandwidth): no rows, no steps
    #[arg(long, conflicts_with_all = ["filter", "no_steps", "against"])]
    machine_only: bool,
    /// Also write every sample and estimate as JSON (schema duel-bench/1, see README)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Add a "vs" column: duel's median over the median of the same row in FILE
    /// (from `python3 scripts/bench_pytorch.py > FILE`); < 1 means duel is faster
    #[arg(long, value_name = "FILE")]
    against: Option<PathBuf>,
}

pub fn bench(spec: DeviceSpec, args: &BenchArgs) -> Result<(), Failure> {
    // Read --against first: a bad file should fail before minutes of measuring.
    let against = match &args.against {
        Some(p) => Some(Against::load(p).map_err(|e| Failure(e.to_string(), 2))?),
        None => None,
    };
    let device = spec.open()?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Failure(format!("cannot start {threads} threads: {e}"), 1))?;
    let options = Options {
        quick: args.quick,
        filter: args.filter.clone(),
        no_steps: args.no_steps,
    };
    let show = std::io::stderr().is_terminal();
    let progress = |key: &str| {
        if show {
            eprint!("\r\x1b[2Kmeasuring {key}");
            let _ = std::io::stderr().flush();
        }
    };
    let report = pool.install(|| -> Result<Report, Failure> {
        progress("machine (FMA peak, stream triad)");
        let machine = bench::measure_machine(&device, threads, args.quick);
        let (rows, steps) = if args.machine_only {
            (Vec::new(), Vec::new())
        } else {
            (
                bench::run_cases(&device, &options, progress)?,
                bench::run_steps(&device, &options, progress)?,
            )
        };
        Ok(Report {
            machine,
            rows,
            steps,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date: utc_now(),
        })
    })?;
    if show {
        eprint!("\r\x1b[2K");
    }
    if args.machine_only {
        crate::print(&(report.machine.describe().join("\n") + "\n"))?;
    } else if report.rows.is_empty() && report.steps.is_empty() {
        return Err(Failure(
            format!(
                "no row matches --filter '{}'; keys look like conv2d/input-grad/dcgan28 \
                 D.conv2/... or step/dcgan28",
                args.filter.as_deref().unwrap_or("")
            ),
            2,
        ));
    } else {
        crate::print(&report.table(against.as_ref()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json(against.as_ref()))
            .map_err(|e| Failure(format!("encoding the JSON: {e}"), 1))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure(format!("--json {}: {e}", path.display()), 1))?;
    }
    let wrong = report
        .rows
        .iter()
        .filter(|r| r.check.as_ref().is_some_and(|c| !c.ok()))
        .count();
    if wrong > 0 {
        return Err(Failure(
            format!("{wrong} rows differ from the cpu reference beyond the tolerance"),
            1,
        ));
    }
    Ok(())
}
