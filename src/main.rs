//! The `duel` command line.
//!
//! One subcommand per variant of [`Command`], each a `fn` below taking what it needs.
//! Subcommands that run kernels take their device from the global `--device`, parsed
//! into a [`DeviceSpec`] up front and opened when needed. Every error is printed as one `error: <message>` line; the process
//! exits 2 for bad command-line values and 1 for failures while running.

mod cli;

use clap::{Parser, Subcommand};
use cli::check as selfcheck;
use duel::device::cuda;
use duel::device::DeviceSpec;
use duel::kernels::{KERNELS, KERNEL_SOURCES, NVCC, PTX_ARCH, PTX_FROM_NVCC};
use duel::ops::precision::Precision;
use duel::Device;
use std::io::Write;
use std::process::ExitCode;

/// Counts cpu allocations for `duel bench`'s step rows (two relaxed atomic adds a request).
#[global_allocator]
static ALLOC_COUNTER: duel::device::cpu::alloc_counter::CountingAlloc =
    duel::device::cpu::alloc_counter::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "duel",
    version,
    about = "A GAN engine whose compute is hand-written CUDA kernels"
)]
#[command(arg_required_else_help = true)]
struct Cli {
    /// Where kernels run: cpu, cuda, cuda:N, emu, or auto (cuda when a GPU is usable, else cpu)
    #[arg(long, global = true, value_name = "DEVICE", default_value = "auto")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN (default: non-saturating DCGAN on the built-in digits; `train pix2pix`,
    /// `train cyclegan` for image-to-image) into runs/<name>/
    Train(Box<cli::train::TrainArgs>),
    /// Draw samples from a trained generator into a PNG
    Sample(cli::train::SampleArgs),
    /// Score a trained generator: classifier FD, IS-like, class histogram, Parzen (digits);
    /// the mode-collapse protocol (toy data)
    Eval(Box<cli::eval::EvalArgs>),
    /// Train a toy GAN and compute its theory: D vs the optimal D*, JSD and chi^2 at
    /// checkpoints, the generator's gradient vs D(G(z)); PNGs into --out
    Theory(cli::theory::TheoryArgs),
    /// Apply a trained pix2pix or CycleGAN generator to images (a grid input | output)
    Translate(cli::translate::TranslateArgs),
    /// List the CPU, GPUs, how the kernels were built, and whether the emulator works
    Devices {
        /// Instead: list the product kernels, one `NAME kernels/FILE.cu` per line (what
        /// scripts/emu-coverage.sh checks the emulator launched)
        #[arg(long, conflicts_with = "nvcc")]
        kernels: bool,
        /// Instead: print the path of the nvcc that compiled the PTX (fails when the build
        /// found none)
        #[arg(long)]
        nvcc: bool,
    },
    /// Run every op family on --device and compare it with the cpu reference
    Check,
    /// Compare every op's backward rule with central finite differences (f64, cpu)
    Gradcheck {
        /// Only the cases of this op (as named on the tape, e.g. sigmoid, matmul)
        #[arg(long)]
        op: Option<String>,
    },
    /// Measure every op family and whole training steps against the machine's limits
    Bench(cli::bench::BenchArgs),
    /// Print the tape of a two-layer MLP's loss, run backward, write the graph as DOT
    Trace {
        /// Where to write the Graphviz DOT file
        #[arg(long, value_name = "FILE", default_value = "tape.dot")]
        dot: std::path::PathBuf,
    },
}

/// A failure: the message and the exit code.
struct Failure(pub String, pub u8);

impl From<duel::Error> for Failure {
    fn from(e: duel::Error) -> Self {
        Failure(e.to_string(), 1)
    }
}

fn main() -> ExitCode {
    // A bug must still end as one `error:` line rather than a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!("error: internal error{at}: {msg} (this is a bug in duel)");
    }));
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    // Reject a malformed --device up front (exit 2), whatever the subcommand.
    let device: DeviceSpec = cli
        .device
        .parse()
        .map_err(|e: duel::Error| Failure(e.to_string(), 2))?;
    match &cli.command {
        Command::Train(args) => cli::train::train(device, args),
        Command::Sample(args) => cli::train::sample(device, args),
        Command::Eval(args) => cli::eval::eval(device, args),
        Command::Theory(args) => cli::theory::theory(args),
        Command::Translate(args) => cli::translate::translate(device, args),
        Command::Devices { kernels: true, .. } => print(&kernel_list()),
        Command::Devices { nvcc: true, .. } => match NVCC {
            Some(path) => print(&format!("{path}\n")),
            None => Err(Failure(
                "this duel was built without nvcc (its kernels are embedded as source); \
                 rebuild with DUEL_NVCC set (scripts/install-cuda-compiler.sh prints a path)"
                    .to_string(),
                1,
            )),
        },
        Command::Devices { .. } => devices(),
        Command::Check => check(device),
        Command::Gradcheck { op } => gradcheck(op.as_deref()),
        Command::Trace { dot } => trace(device, dot),
        Command::Bench(args) => cli::bench::bench(device, args),
    }
}

fn gradcheck(only: Option<&str>) -> Result<(), Failure> {
    use duel::autograd::gradcheck;
    let cases: Vec<_> = duel::ops::gradcheck_cases()?
        .into_iter()
        .filter(|c| only.is_none_or(|op| c.op == op))
        .collect();
    if cases.is_empty() {
        let mut known: Vec<&str> = duel::ops::gradcheck_cases()?.iter().map(|c| c.op).collect();
        known.dedup();
        return Err(Failure(
            format!(
                "no gradcheck case for op '{}'; known ops: {}",
                only.unwrap_or(""),
                known.join(", ")
            ),
            2,
        ));
    }
    println!(
        "central differences in f64 on cpu; pass: |analytic - numeric| <= abs + rel*|numeric|, \
         by default h = {:e}, abs = {:e}, rel = {:e} (rows marked * use their own, shown)",
        gradcheck::STEP,
        gradcheck::ABS_TOLERANCE,
        gradcheck::REL_TOLERANCE
    );
    println!(
        "{:<18} {:<52} {:>5} {:<16} {:>12} {:>12}  result",
        "op", "case", "input", "shape", "max abs err", "max rel err"
    );
    let mut failed = 0;
    let mut total = 0;
    for case in &cases {
        for row in gradcheck::check(case)? {
            total += 1;
            failed += usize::from(!row.passed);
            let own = if row.tolerance == gradcheck::Tolerance::default() {
                String::new()
            } else {
                let t = row.tolerance;
                format!("  * h = {:e}, abs = {:e}, rel = {:e}", t.step, t.abs, t.rel)
            };
            println!(
                "{:<18} {:<52} {:>5} {:<16} {:>12.2e} {:>12.2e}  {}{own}",
                row.op,
                row.variant,
                row.input,
                row.shape.to_string(),
                row.max_abs_err,
                row.max_rel_err,
                if row.passed { "pass" } else { "FAIL" }
            );
        }
    }
    println!("{} passed, {failed} failed", total - failed);
    if failed > 0 {
        return Err(Failure(
            format!("{failed} of {total} gradient checks failed"),
            1,
        ));
    }
    Ok(())
}

fn trace(spec: DeviceSpec, dot_path: &std::path::Path) -> Result<(), Failure> {
    use duel::autograd::{self, trace};
    let device = spec.open()?;
    autograd::reset_peak_memory();
    let example = cli::trace::example_mlp(&device)?;
    println!("two-layer MLP on {device}: x[8, 2] -> matmul w1[2, 16] + b1 -> relu -> matmul w2[16, 1] + b2 -> mean squared error");
    println!("loss = {:.6}\n", example.loss.item()?);
    let entries = autograd::tape(&example.loss);
    print!("{}", trace::format_tape(&entries));
    let dot = trace::to_dot(&entries);
    std::fs::write(dot_path, dot)
        .map_err(|e| Failure(format!("{}: {e}", dot_path.display()), 1))?;
    example.loss.backward()?;
    println!("\nafter backward (saved tensors are freed as each rule runs):");
    for (name, p) in &example.params {
        let g = p
            .grad()
            .ok_or_else(|| Failure(format!("{name} received no gradient (a bug)"), 1))?;
        let values = g.to_f64_vec()?;
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        let head: Vec<String> = values.iter().take(4).map(|v| format!("{v:+.4}")).collect();
        println!(
            "  d loss / d {name:<3} {:<10} |grad| = {norm:.6}  [{}{}]",
            g.shape().to_string(),
            head.join(", "),
            if values.len() > 4 { ", ..." } else { "" }
        );
    }
    let mem = autograd::memory();
    println!(
        "saved for backward: peak {} bytes, {} bytes still held after backward",
        mem.saved_bytes_peak, mem.saved_bytes_live
    );
    println!(
        "graph written to {} (render: dot -Tpng {} -o tape.png)",
        dot_path.display(),
        dot_path.display()
    );
    Ok(())
}

fn check(spec: DeviceSpec) -> Result<(), Failure> {
    let device = spec.open()?;
    println!("checking {device} against the cpu reference");
    println!(
        "{:<22} {:>14} {:>12}  result",
        "op", "max rel diff", "tolerance"
    );
    let rows = selfcheck::run(&device)?;
    for row in &rows {
        let verdict = if row.passed() { "ok" } else { "FAILED" };
        println!(
            "{:<22} {:>14.3e} {:>12.1e}  {verdict}",
            row.op, row.max_rel_diff, row.tolerance
        );
    }
    match rows.iter().filter(|r| !r.passed()).count() {
        0 => Ok(()),
        n => Err(Failure(
            format!(
                "{n} of {} ops on {device} differ from the cpu reference",
                rows.len()
            ),
            1,
        )),
    }
}

fn devices() -> Result<(), Failure> {
    let mut out = String::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let simd = duel::bench::machine::isa_features();
    out += &format!(
        "CPU       {} ({threads} logical threads; SIMD: {})\n",
        duel::bench::machine::cpu_model(),
        if simd.is_empty() {
            "none detected".to_string()
        } else {
            simd.join(" ")
        }
    );
    out += &format!("f32 GEMM  {}\n", duel::ops::sgemm::engine_description());
    out += &format!(
        "bf16 GEMM {}; DUEL_CPU_ISA={} limits the cpu's instruction sets\n",
        duel::ops::gemm_bf16::bf16_path_reason(),
        duel::device::cpu::isa::ISA_VALUES.join("|")
    );
    out += &format!(
        "precision cpu matmul/conv: bf16 {}; f16 {}\n",
        Precision::Bf16.cpu_route(),
        Precision::F16.cpu_route()
    );
    match cuda::probe() {
        Ok(gpus) if gpus.is_empty() => out += "GPU       no GPU: the CUDA driver reports none\n",
        Ok(gpus) => {
            for g in gpus {
                out += &format!(
                    "GPU       cuda:{}  {}  compute {}.{}  {:.1} GiB  driver CUDA {}.{}\n",
                    g.ordinal,
                    g.name,
                    g.compute_capability.0,
                    g.compute_capability.1,
                    g.total_memory as f64 / (1u64 << 30) as f64,
                    g.driver_version.0,
                    g.driver_version.1
                );
            }
        }
        Err(why) => {
            let why = why.trim_end_matches("; use --device cpu");
            out += &format!("GPU       no GPU: {why}\n")
        }
    }
    let files = match KERNEL_SOURCES.len() {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    if PTX_FROM_NVCC {
        out += &format!(
            "kernels   {files} built as PTX for {PTX_ARCH} by nvcc (sources embedded for NVRTC)\n"
        );
    } else {
        out += &format!(
            "kernels   {files} embedded as source for NVRTC (nvcc was not found at build time)\n"
        );
    }
    let product = KERNELS.iter().filter(|k| k.product).count();
    out += &format!(
        "manifest  {product} kernels in kernels/*.cu, {} emulator self-test kernels\n",
        KERNELS.len() - product
    );
    match Device::emu() {
        Ok(_) => out += "emulator  available (--device emu)\n",
        Err(e) => out += &format!("emulator  unavailable: {e}\n"),
    }
    print(&out)
}

/// `duel devices --kernels`: every product kernel and its file, in manifest order.
fn kernel_list() -> String {
    duel::kernels::product_kernels()
        .map(|k| format!("{} kernels/{}.cu\n", k.name, k.file))
        .collect()
}

/// Write to stdout; a closed pipe (`duel devices | head -1`) is not an error.
pub(crate) fn print(text: &str) -> Result<(), Failure> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure(format!("writing to stdout: {e}"), 1))
        }
        _ => Ok(()),
    }
}
