//! `duel train` and `duel sample`.

use std::path::PathBuf;

use clap::Args;
use duel::device::DeviceSpec;
use duel::gan::config::{DataSpec, OptimizerKind, TrainConfig};
use duel::gan::objective::{parse_ls_coding, Variant};
use duel::gan::run::{self, RunOptions};
use duel::gan::{Arch, Trainer};
use duel::io::image::save_grid;
use duel::ops::loss::LsCoding;
use duel::tensor::Tensor;

use crate::Failure;

/// The flags of `duel train`. Those that describe the run are options so a resume can
/// tell whether one was given (a resumed run keeps its configuration).
#[derive(Args, Debug)]
pub struct TrainArgs {
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
    /// Continue the run in DIR from its last checkpoint (with --steps to extend it)
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Write a sample picture every N steps
    #[arg(long, value_name = "N", default_value_t = 250)]
    sample_every: u64,
    /// Write a checkpoint every N steps
    #[arg(long, value_name = "N", default_value_t = 500)]
    checkpoint_every: u64,
    /// No progress line
    #[arg(long)]
    quiet: bool,
    /// Worker threads of the cpu backend; results are bitwise the same for any N [all cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

impl TrainArgs {
    /// The flags that describe the run (refused with --resume).
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
        given(self.data.is_some(), "--data");
        given(self.labels.is_some(), "--labels");
        given(self.batch_size.is_some(), "--batch-size");
        given(self.nz.is_some(), "--nz");
        given(self.width.is_some(), "--width");
        given(self.optimizer.is_some(), "--optimizer");
        given(self.lr.is_some(), "--lr");
        given(self.lr_g.is_some(), "--lr-g");
        given(self.lr_d.is_some(), "--lr-d");
        given(self.beta1.is_some(), "--beta1");
        given(self.beta2.is_some(), "--beta2");
        given(self.seed.is_some(), "--seed");
        given(self.name.is_some(), "--name");
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
        c.validate()?;
        Ok(c)
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn bad_flag(m: &str) -> duel::Error {
    duel::Error::invalid(m.to_string())
}

/// `runs/<name>`, numbered (`-2`, `-3`, …) when the default name is taken.
fn run_dir(args: &TrainArgs, c: &TrainConfig) -> PathBuf {
    if let Some(n) = &args.name {
        return args.runs_dir.join(n);
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
    let mut dir = args.runs_dir.join(&base);
    let mut i = 2;
    while dir.exists() {
        dir = args.runs_dir.join(format!("{base}-{i}"));
        i += 1;
    }
    dir
}

pub fn train(spec: DeviceSpec, args: &TrainArgs) -> Result<(), Failure> {
    let bad = |e: duel::Error| Failure(e.to_string(), 2);
    for (flag, v) in [
        ("--sample-every", args.sample_every),
        ("--checkpoint-every", args.checkpoint_every),
    ] {
        if v == 0 {
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
    let (mut trainer, dir) = match &args.resume {
        Some(dir) => {
            let flags = args.config_flags();
            if !flags.is_empty() {
                return Err(Failure(
                    format!(
                        "{} cannot change a resumed run (its configuration is in {}); only \
                         --steps, --sample-every, --checkpoint-every and --quiet may be given \
                         with --resume",
                        flags.join(", "),
                        dir.join(run::CONFIG).display()
                    ),
                    2,
                ));
            }
            let device = spec.open()?;
            let t = run::resume(dir, &device, args.steps).map_err(bad)?;
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
            (t, dir.clone())
        }
        None => {
            let config = args.config().map_err(bad)?;
            let dir = run_dir(args, &config);
            let device = spec.open()?;
            // Errors here are about the data files the flags named: exit 2.
            let t = Trainer::new(config, &device).map_err(bad)?;
            run::start(&dir).map_err(bad)?;
            (t, dir)
        }
    };
    let c = &trainer.config;
    let what = if c.conditional { "conditional " } else { "" };
    eprintln!(
        "{} {what}{} on {} ({}, batch {}, k = {}, {} lr G {:e} D {:e}) on {} — steps {}..{} into {}",
        c.variant.name(),
        c.arch.name(),
        c.data.name(),
        variant_detail(c.variant),
        c.batch_size,
        c.d_steps,
        c.optimizer.name(),
        c.lr_g,
        c.lr_d,
        trainer.device(),
        trainer.step,
        c.steps,
        dir.display()
    );
    let opts = RunOptions {
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        quiet: args.quiet,
    };
    // Ctrl-C: finish the step, checkpoint, stop; a second Ctrl-C exits at once.
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
