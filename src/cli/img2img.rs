//! `duel train pix2pix` and `duel train cyclegan`: image-to-image runs
//! ([`duel::gan::img2img`]), with their own configuration and trainer.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use duel::device::DeviceSpec;
use duel::gan::img2img::run::{self, format_evaluation};
use duel::gan::img2img::{
    GanLoss, GeneratorKind, Img2ImgConfig, Img2ImgTrainer, Model, Norm, TestMode,
};
use duel::gan::run::{request_stop, start, CONFIG};

use super::set;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum Img2ImgCommand {
    /// pix2pix on paired images (default: the built-in edges2digits task, outline → digit)
    Pix2pix(Img2ImgArgs),
    /// CycleGAN on unpaired images (default: the built-in thicken-unpaired task)
    Cyclegan(Img2ImgArgs),
}

/// The flags of `duel train pix2pix|cyclegan`; defaults in brackets as [pix2pix; cyclegan].
#[derive(Args, Debug)]
pub struct Img2ImgArgs {
    /// Data: edges2digits, thicken (paired), thicken-unpaired, or a folder of PNGs (A/ and B/
    /// for unpaired; side-by-side A|B images for paired) [edges2digits; thicken-unpaired]
    #[arg(long)]
    data: Option<String>,
    /// Generator: unet or resnet [unet; resnet]
    #[arg(long)]
    generator: Option<String>,
    /// Generator base channels [16; 8]
    #[arg(long)]
    ngf: Option<usize>,
    /// Discriminator base channels [16]
    #[arg(long)]
    ndf: Option<usize>,
    /// U-Net levels; the image side must be a multiple of 2^N [5]
    #[arg(long)]
    num_downs: Option<usize>,
    /// U-Net channel cap as a multiple of ngf (the reference's 8) [4]
    #[arg(long)]
    max_mult: Option<usize>,
    /// ResNet generator residual blocks [3]
    #[arg(long)]
    n_blocks: Option<usize>,
    /// PatchGAN stride-2 layers: 1 (16×16 patches), 2 (34×34), 3 (70×70) [1]
    #[arg(long)]
    n_layers_d: Option<usize>,
    /// Normalisation: batch or instance [batch; instance]
    #[arg(long)]
    norm: Option<String>,
    /// Dropout 0.5 in the generator: true or false [true; false]
    #[arg(long)]
    dropout: Option<bool>,
    /// GAN loss: vanilla (cross-entropy on logits) or lsgan (least squares) [vanilla; lsgan]
    #[arg(long)]
    gan_loss: Option<String>,
    /// pix2pix: weight of the L1 term [100]
    #[arg(long)]
    lambda_l1: Option<f64>,
    /// CycleGAN: weight of each cycle-consistency term [10]
    #[arg(long)]
    lambda_cycle: Option<f64>,
    /// CycleGAN: identity weight as a fraction of --lambda-cycle (0 disables it) [0.5]
    #[arg(long)]
    lambda_identity: Option<f64>,
    /// CycleGAN: generated images kept per discriminator's history (0: none) [50]
    #[arg(long)]
    pool_size: Option<usize>,
    /// Minibatch size [16; 4]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Steps in all [2000; 3000]
    #[arg(long)]
    steps: Option<u64>,
    /// The last N steps decay the learning rate linearly to 0 [half of --steps]
    #[arg(long, value_name = "N")]
    decay_steps: Option<u64>,
    /// Adam learning rate of all networks [2e-4]
    #[arg(long)]
    lr: Option<f64>,
    /// Adam beta1 [0.5]
    #[arg(long)]
    beta1: Option<f64>,
    /// Adam beta2 [0.999]
    #[arg(long)]
    beta2: Option<f64>,
    /// Seed of every random stream [1]
    #[arg(long)]
    seed: Option<u64>,
    /// How G runs after training (grids, evaluation, translate): eval (running statistics,
    /// no dropout: deterministic and independent of the batch) or paper (dropout on and
    /// test-batch statistics, as the pix2pix paper) [eval]
    #[arg(long)]
    test_mode: Option<String>,
    /// Operand precision of the convolutions (f32 accumulation; weights, optimizer state,
    /// norms and losses in f32): f32, bf16, or f16 (with dynamic loss scaling) [f32]
    #[arg(long, value_name = "P")]
    precision: Option<String>,
    /// Run name: outputs go to <runs-dir>/<name> [<model>-<data>, numbered if taken]
    #[arg(long)]
    name: Option<String>,
    /// Where runs are written
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Continue the run in DIR from its last checkpoint (with --steps to extend it)
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Write a sample grid every N steps
    #[arg(long, value_name = "N", default_value_t = 250)]
    sample_every: u64,
    /// Write a checkpoint every N steps
    #[arg(long, value_name = "N", default_value_t = 500)]
    checkpoint_every: u64,
    /// No progress line
    #[arg(long)]
    quiet: bool,
}

impl Img2ImgArgs {
    fn config(&self, model: Model) -> duel::Result<Img2ImgConfig> {
        let mut c = Img2ImgConfig::defaults(model);
        set(&mut c.data, self.data.clone());
        if let Some(g) = &self.generator {
            c.generator = GeneratorKind::parse(g)?;
        }
        set(&mut c.ngf, self.ngf);
        set(&mut c.ndf, self.ndf);
        set(&mut c.num_downs, self.num_downs);
        set(&mut c.max_mult, self.max_mult);
        set(&mut c.n_blocks, self.n_blocks);
        set(&mut c.n_layers_d, self.n_layers_d);
        if let Some(n) = &self.norm {
            c.norm = Norm::parse(n)?;
        }
        set(&mut c.dropout, self.dropout);
        if let Some(g) = &self.gan_loss {
            c.gan_loss = GanLoss::parse(g)?;
        }
        set(&mut c.lambda_l1, self.lambda_l1);
        set(&mut c.lambda_cycle, self.lambda_cycle);
        set(&mut c.lambda_identity, self.lambda_identity);
        set(&mut c.pool_size, self.pool_size);
        set(&mut c.batch_size, self.batch_size);
        if let Some(s) = self.steps {
            c.steps = s;
            c.decay_steps = s / 2;
        }
        set(&mut c.decay_steps, self.decay_steps);
        set(&mut c.lr, self.lr);
        set(&mut c.beta1, self.beta1);
        set(&mut c.beta2, self.beta2);
        set(&mut c.seed, self.seed);
        if let Some(m) = &self.test_mode {
            c.test_mode = TestMode::parse(m)?;
        }
        if let Some(p) = &self.precision {
            c.precision = p.parse()?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Flags that describe the run (refused with --resume).
    fn config_flags(&self) -> Vec<&'static str> {
        let given = [
            (self.data.is_some(), "--data"),
            (self.generator.is_some(), "--generator"),
            (self.ngf.is_some(), "--ngf"),
            (self.ndf.is_some(), "--ndf"),
            (self.num_downs.is_some(), "--num-downs"),
            (self.max_mult.is_some(), "--max-mult"),
            (self.n_blocks.is_some(), "--n-blocks"),
            (self.n_layers_d.is_some(), "--n-layers-d"),
            (self.norm.is_some(), "--norm"),
            (self.dropout.is_some(), "--dropout"),
            (self.gan_loss.is_some(), "--gan-loss"),
            (self.lambda_l1.is_some(), "--lambda-l1"),
            (self.lambda_cycle.is_some(), "--lambda-cycle"),
            (self.lambda_identity.is_some(), "--lambda-identity"),
            (self.pool_size.is_some(), "--pool-size"),
            (self.batch_size.is_some(), "--batch-size"),
            (self.decay_steps.is_some(), "--decay-steps"),
            (self.lr.is_some(), "--lr"),
            (self.beta1.is_some(), "--beta1"),
            (self.beta2.is_some(), "--beta2"),
            (self.seed.is_some(), "--seed"),
            (self.test_mode.is_some(), "--test-mode"),
            (self.precision.is_some(), "--precision"),
            (self.name.is_some(), "--name"),
        ];
        given.iter().filter(|g| g.0).map(|g| g.1).collect()
    }
}

fn run_dir(args: &Img2ImgArgs, c: &Img2ImgConfig) -> PathBuf {
    if let Some(n) = &args.name {
        return args.runs_dir.join(n);
    }
    let data = Path::new(&c.data)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "data".into());
    let base = format!("{}-{data}", c.model.name());
    let mut dir = args.runs_dir.join(&base);
    let mut i = 2;
    while dir.exists() {
        dir = args.runs_dir.join(format!("{base}-{i}"));
        i += 1;
    }
    dir
}

/// `duel train pix2pix|cyclegan …`.
pub fn train(spec: DeviceSpec, cmd: &Img2ImgCommand) -> Result<(), Failure> {
    let (model, args) = match cmd {
        Img2ImgCommand::Pix2pix(a) => (Model::Pix2pix, a),
        Img2ImgCommand::Cyclegan(a) => (Model::Cyclegan, a),
    };
    let bad = |e: duel::Error| Failure(e.to_string(), 2);
    if let Some(dir) = &args.resume {
        let flags = args.config_flags();
        if !flags.is_empty() {
            return Err(Failure(
                format!(
                    "{} cannot change a resumed run (its configuration is in {}); only --steps, \
                     --sample-every, --checkpoint-every and --quiet may be given with --resume",
                    flags.join(", "),
                    dir.join(CONFIG).display()
                ),
                2,
            ));
        }
        return resume(
            spec,
            dir,
            args.steps,
            args.sample_every,
            args.checkpoint_every,
            args.quiet,
        );
    }
    for (flag, v) in [
        ("--sample-every", args.sample_every),
        ("--checkpoint-every", args.checkpoint_every),
    ] {
        if v == 0 {
            return Err(Failure(format!("{flag} must be at least 1"), 2));
        }
    }
    let config = args.config(model).map_err(bad)?;
    let dir = run_dir(args, &config);
    let device = spec.open()?;
    let t = Img2ImgTrainer::new(config, &device).map_err(bad)?;
    start(&dir).map_err(bad)?;
    go(
        t,
        &dir,
        args.sample_every,
        args.checkpoint_every,
        args.quiet,
    )
}

/// Continue the image-to-image run in `dir` (also reached from `duel train --resume`).
pub fn resume(
    spec: DeviceSpec,
    dir: &Path,
    steps: Option<u64>,
    sample_every: u64,
    checkpoint_every: u64,
    quiet: bool,
) -> Result<(), Failure> {
    if steps == Some(0) || sample_every == 0 || checkpoint_every == 0 {
        return Err(Failure(
            "--steps, --sample-every and --checkpoint-every must be at least 1".into(),
            2,
        ));
    }
    let device = spec.open()?;
    let t = run::resume(dir, &device, steps).map_err(|e| Failure(e.to_string(), 2))?;
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
    go(t, dir, sample_every, checkpoint_every, quiet)
}

fn go(
    mut t: Img2ImgTrainer,
    dir: &Path,
    sample_every: u64,
    checkpoint_every: u64,
    quiet: bool,
) -> Result<(), Failure> {
    let c = &t.config;
    eprintln!(
        "{} on {} ({:?} generator ngf {}, PatchGAN {} layers ndf {}, {:?} norm, {:?} loss, batch {}, \
         lr {:e} constant then linear decay over the last {} steps) on {} — steps {}..{} into {}",
        c.model.name(),
        t.data.name,
        c.generator,
        c.ngf,
        c.n_layers_d,
        c.ndf,
        c.norm,
        c.gan_loss,
        c.batch_size,
        c.lr,
        c.decay_steps,
        t.device(),
        t.step,
        c.steps,
        dir.display()
    );
    let _ = ctrlc::set_handler(|| {
        if request_stop() {
            std::process::exit(130);
        }
    });
    let s = run::run(&mut t, dir, sample_every, checkpoint_every, quiet)?;
    if s.interrupted {
        println!(
            "interrupted at step {} of {}; checkpoint written. Continue with: duel train --resume {}",
            s.step,
            t.config.steps,
            dir.display()
        );
    }
    println!("trained to step {} in {:.1} s", s.step, s.seconds);
    if !s.evaluation.is_empty() {
        println!(
            "evaluation on the {} held-out images (L1 of [0, 1] pixels; baseline: output = input):",
            t.data.test_a.len()
        );
        print!("{}", format_evaluation(&s.evaluation));
    }
    println!("samples:     {}", s.final_samples.display());
    println!(
        "loss plot:   {}",
        dir.join(duel::gan::run::LOSS_PLOT).display()
    );
    println!(
        "metrics:     {}",
        dir.join(duel::gan::run::METRICS).display()
    );
    println!(
        "checkpoint:  {}",
        dir.join(duel::gan::run::CHECKPOINT).display()
    );
    Ok(())
}
