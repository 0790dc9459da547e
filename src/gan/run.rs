//! A training run on disk: `runs/<name>/` holds everything a person looks at and
//! everything needed to continue.
//!
//! ```text
//! config.json               the run's configuration (also inside every checkpoint)
//! metrics.jsonl             one JSON object per step: losses, mean D(x), mean D(G(z)),
//!                           gradient norms, images/s, elapsed seconds
//! loss.png                  D and G loss against step
//! samples/step-000250.png   G(fixed noise) every --sample-every steps (images: an 8×8
//! samples/final.png         grid; toy data: the samples over the data's modes)
//! checkpoint.safetensors    the whole training state, every --checkpoint-every steps
//! generator.safetensors     G's state_dict alone (PyTorch names), written with it
//! ```
//!
//! An interrupt ([`request_stop`], which `duel train` calls on Ctrl-C, SIGTERM and SIGHUP)
//! ends the run after the current step with a checkpoint, so `--resume` loses nothing.
//!
//! **One process per run.** [`start`] claims the directory (`create_dir`, atomic; the
//! default names are numbered until one is free) and [`lock`] holds an exclusive lock on
//! its `.lock` file for the life of the run, resumes included; the system drops the lock
//! when the process ends, even by `kill -9`. With the lock held, temporary files of
//! interrupted writes are removed, and a directory whose run died before its first
//! checkpoint is reused. The checkpoint is written before the pictures of a step, and a
//! picture that cannot be written (disk full) is a warning, not the end of the run.
//!
//! A step whose loss is NaN or infinite stops the run with an error naming the step; the
//! checkpoint on disk is then the last one written before it (checkpoints are written
//! atomically and only after a finite step), so nothing good is overwritten.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use std::collections::HashMap;

use super::arch::{build, Net, NetSpec};
use super::config::TrainConfig;
use super::evaluate::{Evaluator, EVAL_PLOT};
use super::trainer::{StepMetrics, Trainer};
use crate::data::toy::Mixture;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::{mode_coverage, ModeCoverage};
use crate::io::checkpoint::load_safetensors_with_metadata;
use crate::io::checkpoint::save_module;
use crate::io::image::save_grid;
use crate::io::metrics::{series, MetricsLog};
use crate::io::plot::save_line_plot;
use crate::io::progress::Progress;
use crate::nn::load_state_dict;
use crate::tensor::Tensor;

static STOP: AtomicBool = AtomicBool::new(false);

/// Ask a running [`run`] to stop after its current step (safe to call from a signal
/// handler). Returns true if a stop had already been requested.
pub fn request_stop() -> bool {
    STOP.swap(true, Ordering::SeqCst)
}

/// True once [`request_stop`] was called (other trainers' loops check it too).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const GENERATOR: &str = "generator.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const LOSS_PLOT: &str = "loss.png";
pub const CONFIG: &str = "config.json";

/// How often to write what, and whether to draw the progress line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub sample_every: u64,
    pub checkpoint_every: u64,
    pub quiet: bool,
    /// Score G every N steps into metrics.jsonl and eval.png (0: never; gan::evaluate).
    pub eval_every: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            sample_every: 250,
            checkpoint_every: 500,
            quiet: false,
            eval_every: 0,
        }
    }
}

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub step: u64,
    /// The last sample picture (`samples/final.png`).
    pub final_samples: PathBuf,
    pub seconds: f64,
    pub last: Option<StepMetrics>,
    /// Mode coverage of the final samples (toy data only).
    pub coverage: Option<ModeCoverage>,
    /// True when [`request_stop`] ended the run before its last step.
    pub interrupted: bool,
}

pub const LOCK: &str = ".lock";

/// The exclusive lock on a run directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Lock the run in `dir` for this process (an error naming the other process when one
/// holds it), then remove the temporary files that interrupted writes left.
pub fn lock(dir: &Path) -> Result<RunLock> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let pid = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(Error::invalid(format!(
                "{} is in use by another duel process{pid}; wait for it to finish or stop it \
                 (Ctrl-C, or kill {}) first",
                dir.display(),
                if holder.is_empty() { "PID" } else { holder }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.set_len(0)
        .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    for d in [dir.to_path_buf(), dir.join("samples")] {
        crate::io::atomic::remove_stale_temp_files(&d)?;
    }
    Ok(RunLock { _file: file })
}

/// Claim `dir` for a new run and lock it; [`run`] then fills it. A directory that holds a
/// checkpoint is refused (resume it instead); one whose run died before its first
/// checkpoint is emptied of that run's files and reused.
pub fn start(dir: &Path) -> Result<RunLock> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let fresh = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Error::io(dir, e)),
    };
    let lock = lock(dir)?;
    if !fresh {
        if dir.join(CHECKPOINT).exists() {
            return Err(Error::invalid(format!(
                "{} already holds a run; continue it with --resume {} or choose another --name",
                dir.display(),
                dir.display()
            )));
        }
        clear_dead_run(dir)?;
    }
    fs::create_dir_all(dir.join("samples")).map_err(|e| Error::io(dir, e))?;
    MetricsLog::create(dir.join(METRICS))?;
    Ok(lock)
}

/// Claim the first free directory of `runs_dir/base`, `base-2`, `base-3`, … (atomically,
/// so parallel starts get different ones) and lock it.
pub fn start_numbered(runs_dir: &Path, base: &str) -> Result<(PathBuf, RunLock)> {
    fs::create_dir_all(runs_dir).map_err(|e| Error::io(runs_dir, e))?;
    for i in 1u64.. {
        let dir = match i {
            1 => runs_dir.join(base),
            _ => runs_dir.join(format!("{base}-{i}")),
        };
        match fs::create_dir(&dir) {
            Ok(()) => {
                let lock = start(&dir)?;
                return Ok((dir, lock));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("u64 run numbers are not exhausted")
}

/// Remove what a run that never reached a checkpoint wrote into `dir`.
fn clear_dead_run(dir: &Path) -> Result<()> {
    for f in [METRICS, CONFIG, LOSS_PLOT, GENERATOR] {
        match fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(dir.join(f), e))
            }
            _ => {}
        }
    }
    if let Ok(entries) = fs::read_dir(dir.join("samples")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".png") && (name.starts_with("step-") || name == "final.png") {
                fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
    }
    Ok(())
}

/// `config.json` from the trainer's configuration (written by every [`run`], so a resume
/// that extends the run updates it), with the cpu thread count of this session recorded
/// beside it (`threads`: informational, results do not depend on it).
fn write_config(trainer: &Trainer, dir: &Path) -> Result<()> {
    let mut json = trainer.config.to_json()?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("threads".into(), rayon::current_num_threads().into());
    }
    let config =
        serde_json::to_string_pretty(&json).map_err(|e| Error::invalid(format!("config: {e}")))?;
    crate::io::checkpoint::write_atomic(&dir.join(CONFIG), format!("{config}\n").as_bytes())
}

/// Reopen the run in `dir` at its last checkpoint on `device`; `steps` changes its total.
pub fn resume(dir: &Path, device: &Device, steps: Option<u64>) -> Result<Trainer> {
    Trainer::load(checkpoint_of(dir)?, device, steps)
}

/// The checkpoint of the run in `dir` (an error when there is none).
pub fn checkpoint_of(dir: &Path) -> Result<PathBuf> {
    let ckpt = dir.join(CHECKPOINT);
    if !ckpt.is_file() && dir.join(CONFIG).is_file() {
        return Err(Error::invalid(format!(
            "--resume {}: the run there stopped before its first checkpoint, so there is \
             nothing to resume; start it again with the same command without --resume (the \
             directory is reused)",
            dir.display()
        )));
    }
    if !ckpt.is_file() {
        return Err(Error::invalid(format!(
            "--resume {}: no {CHECKPOINT} there; give the directory of a run started by duel train",
            dir.display()
        )));
    }
    Ok(ckpt)
}

/// Train until `trainer.config.steps`, writing into `dir` (made by [`start`], or a run
/// reopened by [`resume`]).
pub fn run(trainer: &mut Trainer, dir: &Path, opts: &RunOptions) -> Result<RunSummary> {
    let total = trainer.config.steps;
    write_config(trainer, dir)?;
    let (mut log, kept) = MetricsLog::resume(dir.join(METRICS), trainer.step)?;
    if let Some(w) = log.recovered() {
        eprintln!("warning: {w}");
    }
    let mut d_curve = series(&kept, "step", "d_loss");
    let mut g_curve = series(&kept, "step", "g_loss");
    let samples_dir = dir.join("samples");
    std::fs::create_dir_all(&samples_dir).map_err(|e| Error::io(&samples_dir, e))?;
    let mut progress = if opts.quiet {
        Progress::quiet(total)
    } else {
        Progress::new(total)
    };
    let start = Instant::now();
    let mut last = None;
    let mut last_checkpoint = dir.join(CHECKPOINT).is_file().then_some(trainer.step);
    let mut evaluator = Evaluator::new(opts.eval_every, trainer.mixture(), &kept)?;
    while trainer.step < total {
        let t0 = Instant::now();
        let m = trainer.train_step()?;
        let dt = t0.elapsed().as_secs_f64();
        let img_per_s = trainer.config.batch_size as f64 / dt.max(1e-9);
        let mut fields = m.fields().to_vec();
        fields.push(("img_per_s", img_per_s));
        fields.push(("elapsed_s", start.elapsed().as_secs_f64()));
        if let Some(ev) = evaluator
            .as_mut()
            .filter(|e| e.due(m.step, m.step == total))
        {
            let nz = trainer.config.nz;
            fields.extend(ev.evaluate(&mut trainer.g, nz, m.step, &dir.join(EVAL_PLOT))?);
        }
        log.log(&fields)?;
        if let Some((name, v)) = [("D loss", m.d_loss), ("G loss", m.g_loss)]
            .into_iter()
            .find(|(_, v)| !v.is_finite())
        {
            progress.finish();
            let kept = match last_checkpoint {
                Some(s) => format!(
                    "the last good checkpoint (step {s}) is kept at {}",
                    dir.join(CHECKPOINT).display()
                ),
                None => "no checkpoint had been written yet".to_string(),
            };
            return Err(Error::invalid(format!(
                "step {}: the {name} is {v}; training stopped. {kept}. Continue it with a lower \
                 learning rate (duel train --resume {} --lr …) or start another variant",
                m.step,
                dir.display()
            )));
        }
        d_curve.push((m.step as f64, m.d_loss));
        g_curve.push((m.step as f64, m.g_loss));
        progress.update(
            m.step,
            &[
                ("D", m.d_loss),
                ("G", m.g_loss),
                ("D(x)", m.d_real),
                ("D(G(z))", m.d_fake),
                ("img/s", img_per_s),
            ],
        );
        let done = m.step == total;
        if m.step % opts.checkpoint_every.max(1) == 0 || done {
            save_checkpoint(trainer, dir)?;
            last_checkpoint = Some(m.step);
        }
        if m.step % opts.sample_every.max(1) == 0 || done {
            let name = format!("step-{:06}.png", m.step);
            save_pictures(trainer, &samples_dir.join(name), dir, &d_curve, &g_curve);
        }
        last = Some(m);
        if STOP.load(Ordering::SeqCst) {
            break;
        }
    }
    progress.finish();
    let interrupted = trainer.step < total;
    let final_samples = samples_dir.join("final.png");
    if last_checkpoint != Some(trainer.step) {
        save_checkpoint(trainer, dir)?;
    }
    save_pictures(trainer, &final_samples, dir, &d_curve, &g_curve);
    let coverage = match trainer.mixture().cloned() {
        Some(mixture) => Some(coverage_of(trainer, &mixture)?),
        None => None,
    };
    Ok(RunSummary {
        dir: dir.to_path_buf(),
        step: trainer.step,
        final_samples,
        seconds: start.elapsed().as_secs_f64(),
        last,
        coverage,
        interrupted,
    })
}

/// Mode coverage (THEORY.md) of G's fixed samples on the toy mixture.
pub fn coverage_of(trainer: &mut Trainer, mixture: &Mixture) -> Result<ModeCoverage> {
    let s = trainer.fixed_samples()?;
    mode_coverage(&s, mixture.modes(), mixture.std())
}

/// The sample picture and the loss plot; a failure (disk full, …) is a warning: the
/// pictures are for people, the checkpoint (written first) is what matters.
fn save_pictures(
    trainer: &mut Trainer,
    samples: &Path,
    dir: &Path,
    d_curve: &[(f64, f64)],
    g_curve: &[(f64, f64)],
) {
    let result = save_samples(trainer, samples)
        .and_then(|_| save_loss_plot(&dir.join(LOSS_PLOT), d_curve, g_curve));
    if let Err(e) = result {
        eprintln!("warning: step {}: {e} (training goes on)", trainer.step);
    }
}

/// Write the training state and G alone (with the run's configuration in its metadata),
/// after checking that every parameter and optimizer state is finite: a non-finite state
/// is an error and the last good checkpoint stays.
pub fn save_checkpoint(trainer: &Trainer, dir: &Path) -> Result<()> {
    for (name, t) in trainer.state_tensors() {
        if !t.to_f64_vec()?.iter().all(|v| v.is_finite()) {
            return Err(Error::invalid(format!(
                "step {}: {name} holds non-finite values (NaN or inf); the checkpoint was not \
                 written, so {} keeps the last good one. Continue it with a lower learning \
                 rate (duel train --resume {} --lr …)",
                trainer.step,
                dir.display(),
                dir.display()
            )));
        }
    }
    trainer.save(dir.join(CHECKPOINT))?;
    let mut meta = BTreeMap::new();
    meta.insert(
        "duel.config".to_string(),
        trainer.config.to_json()?.to_string(),
    );
    meta.insert("duel.net".to_string(), trainer.spec.to_json().to_string());
    meta.insert("duel.step".to_string(), trainer.step.to_string());
    save_module(dir.join(GENERATOR), &trainer.g.body, Some(&meta))
}

/// A generator read back for sampling: from a run directory, its `generator.safetensors`,
/// or its `checkpoint.safetensors`. Returns G (eval mode), its shapes (noise size,
/// classes) and the configuration of the run that trained it.
pub fn load_generator(path: &Path, device: &Device) -> Result<(Net, NetSpec, TrainConfig)> {
    let file = if path.is_dir() {
        newest_generator(path)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(Error::invalid(format!(
            "--checkpoint {}: no such file; give a run directory (runs/<name>), its {GENERATOR} \
             or its {CHECKPOINT}",
            file.display()
        )));
    }
    let what = file.display().to_string();
    let (tensors, meta) = load_safetensors_with_metadata(&file)?;
    let not_duel = || {
        Error::invalid(format!(
            "{what}: not a duel generator or training checkpoint (no network description in \
             its metadata)"
        ))
    };
    let parse = |s: &str| -> Result<serde_json::Value> {
        serde_json::from_str(s).map_err(|e| Error::invalid(format!("{what}: bad metadata: {e}")))
    };
    let (net, config, entries): (_, _, HashMap<String, Tensor>) =
        if let Some(state) = meta.get("duel.training_state") {
            let v = parse(state)?;
            let g = tensors
                .into_iter()
                .filter_map(|(n, t)| n.strip_prefix("g.").map(|n| (n.to_string(), t)))
                .collect();
            (v.get("net").cloned(), v.get("config").cloned(), g)
        } else {
            let field = |k: &str| meta.get(k).map(|s| parse(s)).transpose();
            (
                field("duel.net")?,
                field("duel.config")?,
                tensors.into_iter().collect(),
            )
        };
    let spec = NetSpec::from_json(&net.ok_or_else(not_duel)?, &what)?;
    let config = TrainConfig::from_json(&config.ok_or_else(not_duel)?, &what)?;
    let (mut g, _) = build(&spec, 0, device)?;
    load_state_dict(&g.body, &entries).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    g.set_training(false);
    Ok((g, spec, config))
}

/// In a run directory, generator.safetensors unless the checkpoint is newer (a process
/// killed between the two writes leaves the generator one checkpoint behind).
fn newest_generator(dir: &Path) -> PathBuf {
    let (gen, ckpt) = (dir.join(GENERATOR), dir.join(CHECKPOINT));
    if !ckpt.is_file() {
        return gen;
    }
    let step_of = |p: &Path| -> Option<u64> {
        let (_, meta) = load_safetensors_with_metadata(p).ok()?;
        match meta.get("duel.training_state") {
            Some(state) => serde_json::from_str::<serde_json::Value>(state).ok()?["step"].as_u64(),
            None => meta.get("duel.step")?.parse().ok(),
        }
    };
    match (step_of(&gen), step_of(&ckpt)) {
        (Some(g), Some(c)) if g >= c => gen,
        (_, Some(_)) => ckpt,
        _ => gen,
    }
}

/// G(fixed noise) as a picture: an 8×8 image grid, or the toy samples over the modes.
pub fn save_samples(trainer: &mut Trainer, path: &Path) -> Result<()> {
    let s = trainer.fixed_samples()?;
    let title = format!("{} STEP {}", trainer.config.variant.name(), trainer.step);
    match trainer.mixture() {
        None => save_grid(path, &s, 8, 2),
        Some(mixture) => save_toy_picture(path, &title, &s, mixture),
    }
}

/// 2-D: generated points (blue) and, around each mode, the circle of radius 3 std inside
/// which a sample counts as high quality (orange). 1-D: histograms of the generated samples
/// and of as many real ones, over the same bins.
pub fn save_toy_picture(
    path: &Path,
    title: &str,
    samples: &Tensor,
    mixture: &Mixture,
) -> Result<()> {
    let v = samples.to_f64_vec()?;
    if mixture.dim() == 2 {
        // Points separated by NaN are drawn as dots; the circles are polylines.
        let pts: Vec<(f64, f64)> = v
            .chunks(2)
            .flat_map(|p| [(p[0], p[1]), (f64::NAN, f64::NAN)])
            .collect();
        let r = 3.0 * mixture.std();
        let circles: Vec<(f64, f64)> = mixture
            .modes()
            .iter()
            .flat_map(|m| {
                (0..=24)
                    .map(move |i| {
                        let a = std::f64::consts::TAU * i as f64 / 24.0;
                        (m[0] + r * a.cos(), m[1] + r * a.sin())
                    })
                    .chain([(f64::NAN, f64::NAN)])
            })
            .collect();
        return save_line_plot(
            path,
            title,
            &[("generated", &pts), ("modes, 3 std", &circles)],
            600,
            600,
        );
    }
    let real = mixture.sample(v.len(), 0x7265_616c, 0)?.to_f64_vec()?;
    let lo = mixture
        .modes()
        .iter()
        .map(|m| m[0])
        .fold(f64::INFINITY, f64::min)
        - 1.0;
    let hi = mixture
        .modes()
        .iter()
        .map(|m| m[0])
        .fold(f64::NEG_INFINITY, f64::max)
        + 1.0;
    let hist = |xs: &[f64]| {
        let bins = 80;
        let w = (hi - lo) / bins as f64;
        let mut c = vec![0usize; bins];
        for &x in xs {
            if x >= lo && x < hi {
                c[((x - lo) / w) as usize] += 1;
            }
        }
        c.iter()
            .enumerate()
            .map(|(i, &n)| (lo + (i as f64 + 0.5) * w, n as f64 / (xs.len() as f64 * w)))
            .collect::<Vec<_>>()
    };
    let (g, r) = (hist(&v), hist(&real));
    save_line_plot(path, title, &[("generated", &g), ("real", &r)], 800, 500)
}

fn save_loss_plot(path: &Path, d: &[(f64, f64)], g: &[(f64, f64)]) -> Result<()> {
    if d.is_empty() {
        return Ok(());
    }
    // GAN losses jump from step to step; a trailing mean over ~1% of the run shows the trend.
    let w = (d.len() / 100).clamp(1, 100);
    let (d, g) = (trailing_mean(d, w), trailing_mean(g, w));
    let (dl, gl) = if w > 1 {
        (format!("D (MEAN OF {w})"), format!("G (MEAN OF {w})"))
    } else {
        ("D".to_string(), "G".to_string())
    };
    save_line_plot(path, "LOSS", &[(&dl, &d), (&gl, &g)], 800, 500)
}

/// Each point's y replaced by the mean of it and the `w − 1` points before it.
pub(crate) fn trailing_mean(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= points[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}
