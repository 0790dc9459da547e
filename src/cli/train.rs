//! `duel train` and `duel sample`.

use std::path::{Component, Path, PathBuf};

use clap::Args;
use duel::device::DeviceSpec;
use duel::gan::config::{DataSpec, OptimizerKind, TrainConfig};
use duel::gan::objective::{parse_ls_coding, Variant};
use duel::gan::run::{self, RunOptions};
use duel::gan::{Arch, Trainer};
use duel::io::image::save_grid;
use duel::ops::loss::LsCoding;
use duel::tensor::Tensor;

use super::set;
use crate::Failure;

/// The flags of `duel train`. Those that describe the run are options so a resume can
/// tell whether one was given (a resumed run keeps its configuration).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrainArgs {
    /// Image-to-image models, with flags of their own (duel train pix2pix --help)
    #[command(subcommand)]
    image_to_image: Option<super::img2img::Img2ImgCommand>,
    /// GAN variant: gan (minimax), nsgan (non-saturating), lsgan (least squares), wgan
    #[arg(long)]
    variant: Option<String>,
    /// LSGAN target coding: 01 = (a,b,c) (0,1,1), pm1 = (-1,1,0), or a,b,c
    #[arg(long, value_name = "CODING")]
    ls_coding: Option<String>,
    /// WGAN weight clip c: critic weights are clamped to [-c, c] after each step [0.01]
    #[arg(long, allow_negative_numbers = true)]
    clip: Option<f64>,
    /// Discriminator steps per generator step (Algorithm 1's k; WGAN's n_critic) [1; wgan 5]
    #[arg(long, visible_alias = "n-critic", value_name = "K")]
    d_steps: Option<usize>,
    /// Networks: mlp (toy data), dcgan28, dcgan64 [dcgan28 for images, mlp for toy data]
    #[arg(long)]
    arch: Option<String>,
    /// Condition G and D on the class label (conditional DCGAN)
    #[arg(long)]
    conditional: bool,
    /// Data: digits (built in), ring8, grid25, mix1d, or the path of an IDX images file
    #[arg(long)]
    data: Option<String>,
    /// Labels IDX file for --data PATH (default: the MNIST-named file beside it)
    #[arg(long, value_name = "PATH")]
    labels: Option<PathBuf>,
    /// Generator steps in all [3000; toy wgan 6000]
    #[arg(long)]
    steps: Option<u64>,
    /// Minibatch size [images 64; toy 256, toy wgan 64]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Noise dimension [images 100, toy 16]
    #[arg(long)]
    nz: Option<usize>,
    /// Network width: DCGAN base channels, MLP hidden units [64; 128]
    #[arg(long)]
    width: Option<usize>,
    /// Optimizer for both networks (separate instances): adam, rmsprop, sgd [adam; wgan rmsprop]
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate of both networks [DCGAN 2e-4, wgan 5e-5; toy 1e-3, lsgan 5e-4, wgan 2e-4]
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Learning rate of G (overrides --lr)
    #[arg(long, allow_negative_numbers = true)]
    lr_g: Option<f64>,
    /// Learning rate of D (overrides --lr)
    #[arg(long, allow_negative_numbers = true)]
    lr_d: Option<f64>,
    /// Adam beta1 / SGD momentum / RMSProp momentum [0.5; wgan 0]
    #[arg(long, allow_negative_numbers = true)]
    beta1: Option<f64>,
    /// Adam beta2 / RMSProp alpha [0.999; wgan 0.99]
    #[arg(long, allow_negative_numbers = true)]
    beta2: Option<f64>,
    /// Seed of every random stream (initialisation, noise, data order) [1]
    #[arg(long)]
    seed: Option<u64>,
    /// Run name: outputs go to <runs-dir>/<name> [<variant>-<arch>-<data>, numbered if taken]
    #[arg(long)]
    name: Option<String>,
    /// Where runs are written
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Continue the run in DIR from its last checkpoint (with --steps to extend it; --lr,
    /// --lr-g, --lr-d, --beta1, --beta2 change the optimizers, recorded in its config.json;
    /// --data/--labels point at moved data, accepted when the files are the same)
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Write a sample picture every N steps (stored with the run) [default: 250]
    #[arg(long, value_name = "N")]
    sample_every: Option<u64>,
    /// Write a checkpoint every N steps (stored with the run) [default: 500]
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// Score G every N steps (digits: FD, IS-like, … of 2,000 samples, see `duel eval --help`;
    /// toy data: the mode-collapse protocol) into metrics.jsonl and eval.png; 0 = never
    #[arg(long, value_name = "N", default_value_t = 0)]
    eval_every: u64,
    /// No progress line
    #[arg(long)]
    quiet: bool,
    /// Worker threads of the cpu backend; results are bitwise the same for any N [all cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Operand precision of the matmuls and convolutions (f32 accumulation, f32 weights,
    /// optimizer state, batch norm and losses in all three): f32, bf16, or f16 (with
    /// dynamic loss scaling) [f32]
    #[arg(long, value_name = "P")]
    precision: Option<String>,
}

impl TrainArgs {
    /// The flags that describe the run and cannot change on a resume.
    fn config_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut given = |set: bool, flag: &'static str| {
            if set {
                v.push(flag)
            }
        };
        given(self.variant.is_some(), "--variant");
        given(self.ls_coding.is_some(), "--ls-coding");
        given(self.clip.is_some(), "--clip");
        given(self.d_steps.is_some(), "--d-steps");
        given(self.arch.is_some(), "--arch");
        given(self.conditional, "--conditional");
        given(self.batch_size.is_some(), "--batch-size");
        given(self.nz.is_some(), "--nz");
        given(self.width.is_some(), "--width");
        given(self.optimizer.is_some(), "--optimizer");
        given(self.seed.is_some(), "--seed");
        given(self.name.is_some(), "--name");
        given(self.precision.is_some(), "--precision");
        v
    }

    /// The run's configuration: the variant's defaults, then every flag given.
    fn config(&self) -> duel::Result<TrainConfig> {
        let coding = match &self.ls_coding {
            Some(c) => parse_ls_coding(c)?,
            None => LsCoding::BINARY,
        };
        let name = self.variant.as_deref().unwrap_or("nsgan");
        let variant = Variant::parse(name, coding, self.clip.unwrap_or(0.01))?;
        if self.ls_coding.is_some() && !matches!(variant, Variant::LsGan(_)) {
            return Err(bad_flag("--ls-coding applies to --variant lsgan only"));
        }
        if self.clip.is_some() && variant.weight_clip().is_none() {
            return Err(bad_flag("--clip applies to --variant wgan only"));
        }
        let data = DataSpec::parse(
            self.data.as_deref().unwrap_or("digits"),
            self.labels.clone(),
        )?;
        let arch = match &self.arch {
            Some(a) => Arch::parse(a)?,
            None if data.is_images() => Arch::Dcgan28,
            None => Arch::Mlp,
        };
        if let Some(lr) = self.lr.filter(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad_flag(&format!(
                "--lr {lr}: the learning rate must be positive"
            )));
        }
        let mut c = TrainConfig::defaults(variant, arch, data);
        c.conditional = self.conditional;
        set(&mut c.d_steps, self.d_steps);
        set(&mut c.steps, self.steps);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.nz, self.nz);
        set(&mut c.width, self.width);
        if let Some(o) = &self.optimizer {
            c.optimizer = OptimizerKind::parse(o)?;
        }
        set(&mut c.lr_g, self.lr);
        set(&mut c.lr_d, self.lr);
        set(&mut c.lr_g, self.lr_g);
        set(&mut c.lr_d, self.lr_d);
        set(&mut c.beta1, self.beta1);
        set(&mut c.beta2, self.beta2);
        set(&mut c.seed, self.seed);
        set(&mut c.sample_every, self.sample_every);
        set(&mut c.checkpoint_every, self.checkpoint_every);
        if let Some(p) = &self.precision {
            c.precision = p.parse()?;
        }
        c.validate()?;
        Ok(c)
    }

    /// What a resume may change in the stored configuration `c`; returns a line per
    /// changed optimizer value, for the record.
    fn change_on_resume(&self, c: &mut TrainConfig) -> duel::Result<Vec<String>> {
        let before = c.clone();
        set(&mut c.steps, self.steps);
        set(&mut c.sample_every, self.sample_every);
        set(&mut c.checkpoint_every, self.checkpoint_every);
        set(&mut c.lr_g, self.lr);
        set(&mut c.lr_d, self.lr);
        set(&mut c.lr_g, self.lr_g);
        set(&mut c.lr_d, self.lr_d);
        set(&mut c.beta1, self.beta1);
        set(&mut c.beta2, self.beta2);
        if let Some(d) = &self.data {
            c.data = DataSpec::parse(d, self.labels.clone())?;
        } else if self.labels.is_some() {
            return Err(bad_flag(
                "--labels with --resume goes with --data (moved data)",
            ));
        }
        let mut changed = Vec::new();
        for (name, old, new) in [
            ("lr_g", before.lr_g, c.lr_g),
            ("lr_d", before.lr_d, c.lr_d),
            ("beta1", before.beta1, c.beta1),
            ("beta2", before.beta2, c.beta2),
        ] {
            if old != new {
                changed.push(format!("{name} {old:e} -> {new:e}"));
            }
        }
        if before.data != c.data {
            changed.push(format!("data {} -> {}", before.data.name(), c.data.name()));
        }
        Ok(changed)
    }
}

use duel::gan::img2img::run::is_img2img_run as img2img_run;

fn bad_flag(m: &str) -> duel::Error {
    duel::Error::invalid(m.to_string())
}

/// Claim and lock the run's directory: `<runs-dir>/<name>`, or the default name,
/// numbered (`-2`, `-3`, …) when taken.
fn claim_run_dir(args: &TrainArgs, c: &TrainConfig) -> duel::Result<(PathBuf, run::RunLock)> {
    if let Some(n) = &args.name {
        let plain = matches!(
            Path::new(n).components().collect::<Vec<_>>()[..],
            [Component::Normal(_)]
        ) && !n.contains(['/', '\\']);
        if !plain {
            return Err(bad_flag(&format!(
                "--name {n:?}: give a plain name (one path component: no '/', '..' or \
                 absolute path); the run goes to {}/<name>, and --runs-dir chooses where that is",
                args.runs_dir.display()
            )));
        }
        let dir = args.runs_dir.join(n);
        let lock = run::start(&dir)?;
        return Ok((dir, lock));
    }
    let data = match &c.data {
        DataSpec::Idx { images, .. } => images
            .file_name()
            .map(|f| {
                f.to_string_lossy()
                    .split('-')
                    .next()
                    .unwrap_or("idx")
                    .to_string()
            })
            .unwrap_or_else(|| "idx".into()),
        d => d.name(),
    };
    let cond = if c.conditional { "-cond" } else { "" };
    let base = format!("{}-{}{cond}-{data}", c.variant.name(), c.arch.name());
    run::start_numbered(&args.runs_dir, &base)
}

pub fn train(spec: DeviceSpec, args: &TrainArgs) -> Result<(), Failure> {
    if let Some(cmd) = &args.image_to_image {
        return super::img2img::train(spec, cmd);
    }
    if let Some(dir) = args.resume.as_ref().filter(|d| img2img_run(d)) {
        if !args.config_flags().is_empty() {
            return Err(Failure(
                format!("{} is an image-to-image run; only --steps, --sample-every, --checkpoint-every and --quiet may be given with --resume", dir.display()),
                2,
            ));
        }
        // Image-to-image runs do not store their schedule (yet): the flags or the defaults.
        let (s, c) = (
            args.sample_every.unwrap_or(250),
            args.checkpoint_every.unwrap_or(500),
        );
        return super::img2img::resume(spec, dir, args.steps, s, c, args.quiet);
    }
    for (flag, v) in [
        ("--sample-every", args.sample_every),
        ("--checkpoint-every", args.checkpoint_every),
    ] {
        if v == Some(0) {
            return Err(Failure(format!("{flag} must be at least 1"), 2));
        }
    }
    if args.steps == Some(0) {
        return Err(Failure("--steps must be at least 1".into(), 2));
    }
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(Failure("--threads must be at least 1".into(), 2));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| {
                Failure(
                    format!("--threads {n}: cannot start the thread pool: {e}"),
                    1,
                )
            })?;
    }
    // The run itself on a worker of the pool, as `duel bench` times its steps: a parallel
    // loop started from a thread outside the pool hands each piece of work over and waits
    // to be woken (~5% of a dcgan28 step on 1 thread). The trainer is made there too.
    rayon::scope(|_| train_on_worker(spec, args))
}

fn train_on_worker(spec: DeviceSpec, args: &TrainArgs) -> Result<(), Failure> {
    let bad = |e: duel::Error| Failure(e.to_string(), 2);
    let (mut trainer, dir, _lock) = match &args.resume {
        Some(dir) => {
            let flags = args.config_flags();
            if !flags.is_empty() {
                return Err(Failure(
                    format!(
                        "{} cannot change a resumed run (its configuration is in {}); with \
                         --resume give only --steps, --lr, --lr-g, --lr-d, --beta1, --beta2, \
                         --data/--labels (moved data), --sample-every, --checkpoint-every, --threads, --quiet",
                        flags.join(", "),
                        dir.join(run::CONFIG).display()
                    ),
                    2,
                ));
            }
            let checkpoint = run::checkpoint_of(dir).map_err(bad)?;
            let lock = run::lock(dir).map_err(bad)?;
            let device = spec.open()?;
            let mut changed = Vec::new();
            let t = Trainer::load_changed(checkpoint, &device, |c| {
                changed = args.change_on_resume(c)?;
                Ok(())
            })
            .map_err(bad)?;
            if t.step >= t.config.steps {
                return Err(Failure(
                    format!(
                        "{} already finished its {} steps; give a larger --steps to train further",
                        dir.display(),
                        t.config.steps
                    ),
                    2,
                ));
            }
            if !changed.is_empty() {
                eprintln!(
                    "changed on resume at step {}: {} (recorded in {})",
                    t.step,
                    changed.join(", "),
                    dir.join(run::CONFIG).display()
                );
            }
            // cpu results do not depend on the thread count (work is split by a partition
            // fixed by the shapes; tests/threads.rs), so another count only earns a note.
            let now = rayon::current_num_threads();
            match t.saved_cpu_threads {
                Some(then) if then != now && matches!(t.device(), duel::Device::Cpu) => eprintln!(
                    "note: the checkpoint was written with {then} cpu threads, this process has \
                     {now}; the results are the same for any thread count"
                ),
                _ => {}
            }
            (t, dir.clone(), lock)
        }
        None => {
            let config = args.config().map_err(bad)?;
            let device = spec.open()?;
            // Errors here are about the data files the flags named: exit 2.
            let t = Trainer::new(config, &device).map_err(bad)?;
            let (dir, lock) = claim_run_dir(args, &t.config).map_err(bad)?;
            (t, dir, lock)
        }
    };
    let c = &trainer.config;
    let what = if c.conditional { "conditional " } else { "" };
    eprintln!(
        "{} {what}{} on {} ({}, batch {}, k = {}, {} lr G {:e} D {:e}, {}) on {} — steps {}..{} into {}",
        c.variant.name(),
        c.arch.name(),
        c.data.name(),
        variant_detail(c.variant),
        c.batch_size,
        c.d_steps,
        c.optimizer.name(),
        c.lr_g,
        c.lr_d,
        c.precision,
        trainer.device(),
        trainer.step,
        c.steps,
        dir.display()
    );
    let opts = RunOptions {
        sample_every: trainer.config.sample_every,
        checkpoint_every: trainer.config.checkpoint_every,
        quiet: args.quiet,
        eval_every: args.eval_every,
    };
    // Ctrl-C, SIGTERM (timeout, docker stop, systemd, Slurm) and SIGHUP (a dropped ssh
    // session): finish the step, checkpoint, stop; a second signal exits at once.
    let _ = ctrlc::set_handler(|| {
        if run::request_stop() {
            std::process::exit(130);
        }
    });
    let summary = run::run(&mut trainer, &dir, &opts)?;
    if summary.interrupted {
        println!(
            "interrupted at step {} of {}; checkpoint written. Continue with: duel train --resume {}",
            summary.step,
            trainer.config.steps,
            dir.display()
        );
    }
    let last = summary
        .last
        .map(|m| {
            format!(
                " (last step: D loss {:.4}, G loss {:.4})",
                m.d_loss, m.g_loss
            )
        })
        .unwrap_or_default();
    println!(
        "trained to step {} in {:.1} s{last}",
        summary.step, summary.seconds
    );
    if let Some(cov) = &summary.coverage {
        let k = cov.counts.len();
        println!(
            "mode coverage of {} samples: {}/{k} modes captured, {:.1}% high quality (within 3 std of a mode), KL to uniform {:.3}",
            cov.n_samples,
            cov.modes_captured,
            100.0 * cov.high_quality_fraction,
            cov.kl_to_uniform
        );
    }
    println!("samples:     {}", summary.final_samples.display());
    println!("loss plot:   {}", dir.join(run::LOSS_PLOT).display());
    println!("metrics:     {}", dir.join(run::METRICS).display());
    println!("checkpoint:  {}", dir.join(run::CHECKPOINT).display());
    Ok(())
}

fn variant_detail(v: Variant) -> String {
    match v {
        Variant::Gan => "minimax G loss".into(),
        Variant::NsGan => "non-saturating G loss".into(),
        Variant::LsGan(c) => format!("coding a={} b={} c={}", c.a, c.b, c.c),
        Variant::WGan { clip } => format!("clip {clip}"),
    }
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A run directory, or its generator.safetensors or checkpoint.safetensors
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Number of samples
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Where to write the picture (PNG)
    #[arg(long, value_name = "FILE", default_value = "samples.png")]
    out: PathBuf,
    /// Class of every sample (conditional models only)
    #[arg(long)]
    label: Option<u8>,
    /// Seed of the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn sample(spec: DeviceSpec, args: &SampleArgs) -> Result<(), Failure> {
    if args.n == 0 || args.n > 4096 {
        return Err(Failure(format!("--n {}: use 1 to 4096 samples", args.n), 2));
    }
    let device = spec.open()?;
    let (g, net, config) =
        run::load_generator(&args.checkpoint, &device).map_err(|e| Failure(e.to_string(), 2))?;
    let labels = match (net.classes, args.label) {
        (Some(k), Some(l)) if (l as usize) < k => Some(vec![l; args.n]),
        (Some(k), Some(l)) => {
            return Err(Failure(
                format!("--label {l}: this model knows classes 0..={}", k - 1),
                2,
            ))
        }
        (None, Some(_)) => {
            return Err(Failure(
                "--label: this model is not conditional (train with --conditional)".into(),
                2,
            ))
        }
        (Some(k), None) => Some((0..args.n).map(|i| (i % k) as u8).collect()),
        (None, None) => None,
    };
    let z = Tensor::randn([args.n, net.nz], args.seed, 0, &device)?;
    let x = duel::autograd::no_grad(|| g.forward(&z, labels.as_deref()))?
        .to_device(&duel::Device::Cpu)?;
    if !x.to_f64_vec()?.iter().all(|v| v.is_finite()) {
        return Err(Failure(
            format!(
                "{}: the generator's output is not finite (NaN or inf): its weights are \
                 damaged; sample from an earlier checkpoint. Nothing was written",
                args.checkpoint.display()
            ),
            2,
        ));
    }
    match config.data.mixture() {
        Some(mixture) => run::save_toy_picture(&args.out, "SAMPLES", &x, &mixture)?,
        None => {
            let nrow = (args.n as f64).sqrt().ceil() as usize;
            save_grid(&args.out, &x, nrow.max(1), 2)?
        }
    }
    println!("{} samples written to {}", args.n, args.out.display());
    Ok(())
}
