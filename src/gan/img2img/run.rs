//! An image-to-image run on disk (`duel train pix2pix|cyclegan`), as `duel train` writes
//! its runs:
//!
//! ```text
//! config.json               the run's Img2ImgConfig
//! metrics.jsonl             one JSON object per step: every loss term, lr, images/s, elapsed s
//! loss.png                  the loss terms against step (trailing mean over ~1% of the run)
//! samples/step-000250.png   held-out examples: rows input | output | target, and for
//! samples/final.png         CycleGAN input | output | reconstruction | target, A rows then B rows
//! checkpoint.safetensors    the whole training state (networks, optimizers, pools, counters)
//! net_G.safetensors         pix2pix's generator (PyTorch state_dict names), or
//! net_G_A/net_G_B.safetensors  CycleGAN's two generators
//! eval.json                 the held-out evaluation printed at the end
//! ```
//! Ctrl-C ([`crate::gan::run::request_stop`]) ends the run after the step with a
//! checkpoint; a NaN or infinite loss stops it with an error naming the step and term.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::trainer::{EvalRow, Img2ImgTrainer};
use super::{Img2ImgConfig, Model};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gan::run::{stop_requested, trailing_mean, CHECKPOINT, CONFIG, LOSS_PLOT, METRICS};
use crate::io::checkpoint::{load_training_state, save_module, write_atomic};
use crate::io::image::save_grid;
use crate::io::metrics::{series, MetricsLog};
use crate::io::plot::save_line_plot;
use crate::io::progress::Progress;
use crate::tensor::Tensor;

pub const EVAL: &str = "eval.json";
/// Held-out examples in a sample grid (per direction for CycleGAN): one of each digit.
pub const GRID_EXAMPLES: usize = 10;

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct Img2ImgSummary {
    pub dir: PathBuf,
    pub step: u64,
    pub seconds: f64,
    pub final_samples: PathBuf,
    pub evaluation: Vec<EvalRow>,
    pub interrupted: bool,
}

/// True when `dir` holds an image-to-image run (its checkpoint says so).
pub fn is_img2img_run(dir: &Path) -> bool {
    load_training_state(dir.join(CHECKPOINT))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.metadata_json).ok())
        .is_some_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some("img2img"))
}

/// Reopen the run in `dir` at its last checkpoint; `steps` changes its total.
pub fn resume(dir: &Path, device: &Device, steps: Option<u64>) -> Result<Img2ImgTrainer> {
    let ckpt = dir.join(CHECKPOINT);
    if !ckpt.is_file() {
        return Err(Error::invalid(format!(
            "{}: no {CHECKPOINT} there; give the directory of a run started by duel train \
             pix2pix or duel train cyclegan",
            dir.display()
        )));
    }
    Img2ImgTrainer::load(&ckpt, device, steps)
}

/// Write the training state and each generator alone (PyTorch names; the config in the
/// metadata).
pub fn save_checkpoint(t: &Img2ImgTrainer, dir: &Path) -> Result<()> {
    t.save(dir.join(CHECKPOINT))?;
    let mut meta = BTreeMap::new();
    meta.insert("duel.img2img".to_string(), t.config.to_json().to_string());
    meta.insert("duel.step".to_string(), t.step.to_string());
    match &t.g_b {
        None => save_module(
            dir.join("net_G.safetensors"),
            t.g_a.module.as_ref(),
            Some(&meta),
        ),
        Some(g_b) => {
            save_module(
                dir.join("net_G_A.safetensors"),
                t.g_a.module.as_ref(),
                Some(&meta),
            )?;
            save_module(
                dir.join("net_G_B.safetensors"),
                g_b.module.as_ref(),
                Some(&meta),
            )
        }
    }
}

/// `n` indices spread evenly over `0..len` (all classes of the sorted digits).
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

/// Gray images as RGB when the other columns are colour (so one grid holds both).
fn to_channels(x: &Tensor, c: usize) -> Result<Tensor> {
    if x.dims()[1] == c {
        return Ok(x.clone());
    }
    let d = x.dims().to_vec();
    x.broadcast_to([d[0], c, d[2], d[3]])?.contiguous()
}

/// Rows of `columns` (each `[n, C, H, W]`), side by side, as one `[n·k, C, H, W]` tensor.
pub fn interleave(columns: &[Tensor]) -> Result<Tensor> {
    let c = columns.iter().map(|t| t.dims()[1]).max().unwrap_or(1);
    let cols: Vec<Tensor> = columns
        .iter()
        .map(|t| to_channels(&t.to_device(&Device::Cpu)?, c))
        .collect::<Result<_>>()?;
    let n = cols[0].dims()[0];
    let mut parts = Vec::new();
    for i in 0..n {
        for col in &cols {
            parts.push(col.narrow(0, i, 1)?);
        }
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::concat(&refs, 0)
}

/// The sample grid of held-out examples (training examples when nothing is held out).
pub fn save_samples(t: &mut Img2ImgTrainer, path: &Path) -> Result<()> {
    let d = t.data.clone();
    let pick = |test: &crate::data::translation::ImageSet,
                train: &crate::data::translation::ImageSet| {
        let set = if test.is_empty() { train } else { test };
        let idx = spread(set.len(), GRID_EXAMPLES);
        (set.batch(&idx, &Device::Cpu), idx, !test.is_empty())
    };
    let (a, idx_a, held) = pick(&d.test_a, &d.train_a);
    let a = a?;
    let fake_b = t.translate(true, &a)?;
    let target = |set: &crate::data::translation::ImageSet, idx: &[usize], ok: bool| {
        ok.then(|| set.batch(idx, &Device::Cpu)).transpose()
    };
    let aligned = if held { d.test_aligned } else { d.paired };
    let tb = if held { &d.test_b } else { &d.train_b };
    let mut cols = vec![a.clone(), fake_b.clone()];
    if t.g_b.is_none() {
        cols.extend(target(tb, &idx_a, aligned)?);
        return save_grid(path, &interleave(&cols)?, cols.len(), 2);
    }
    cols.push(t.translate(false, &fake_b)?);
    cols.extend(target(tb, &idx_a, aligned)?);
    let (b, idx_b, _) = pick(&d.test_b, &d.train_b);
    let b = b?;
    let fake_a = t.translate(false, &b)?;
    let ta = if held { &d.test_a } else { &d.train_a };
    let mut rows_b = vec![b, fake_a.clone(), t.translate(true, &fake_a)?];
    rows_b.extend(target(ta, &idx_b, aligned)?);
    let k = cols.len();
    let grid = Tensor::concat(&[&interleave(&cols)?, &interleave(&rows_b)?], 0)?;
    save_grid(path, &grid, k, 2)
}

fn write_config(c: &Img2ImgConfig, dir: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(c).map_err(|e| Error::invalid(format!("{e}")))?;
    write_atomic(&dir.join(CONFIG), format!("{text}\n").as_bytes())
}

fn save_loss_plot(path: &Path, curves: &BTreeMap<String, Vec<(f64, f64)>>) -> Result<()> {
    let Some(len) = curves.values().next().map(|c| c.len()).filter(|&l| l > 0) else {
        return Ok(());
    };
    let w = (len / 100).clamp(1, 100);
    let smooth: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(k, v)| (k.to_uppercase(), trailing_mean(v, w)))
        .collect();
    let s: Vec<(&str, &[(f64, f64)])> = smooth
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let title = if w > 1 {
        format!("LOSS TERMS (MEAN OF {w})")
    } else {
        "LOSS TERMS".into()
    };
    save_line_plot(path, &title, &s, 800, 500)
}

/// The loss terms drawn in loss.png.
fn plotted(model: Model) -> &'static [&'static str] {
    match model {
        Model::Pix2pix => &["d_loss", "g_gan", "g_l1"],
        Model::Cyclegan => &["d_a", "d_b", "g_a", "g_b", "cycle_a", "cycle_b"],
    }
}

/// Train until `t.config.steps`, writing into `dir` (made by [`crate::gan::run::start`],
/// or a run reopened by [`resume`]), then evaluate on the held-out images.
pub fn run(
    t: &mut Img2ImgTrainer,
    dir: &Path,
    sample_every: u64,
    checkpoint_every: u64,
    quiet: bool,
) -> Result<Img2ImgSummary> {
    let total = t.config.steps;
    write_config(&t.config, dir)?;
    let (mut log, kept) = MetricsLog::resume(dir.join(METRICS), t.step)?;
    let mut curves: BTreeMap<String, Vec<(f64, f64)>> = plotted(t.config.model)
        .iter()
        .map(|k| (k.to_string(), series(&kept, "step", k)))
        .collect();
    let samples = dir.join("samples");
    std::fs::create_dir_all(&samples).map_err(|e| Error::io(&samples, e))?;
    let mut progress = if quiet {
        Progress::quiet(total)
    } else {
        Progress::new(total)
    };
    let start = Instant::now();
    let mut last_checkpoint = dir.join(CHECKPOINT).is_file().then_some(t.step);
    while t.step < total {
        let t0 = Instant::now();
        let terms = t.train_step()?;
        let img_per_s = t.config.batch_size as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let step = t.step;
        let mut fields = vec![("step", step as f64)];
        fields.extend(terms.iter().copied());
        fields.push(("img_per_s", img_per_s));
        fields.push(("elapsed_s", start.elapsed().as_secs_f64()));
        log.log(&fields)?;
        if let Some((name, v)) = terms.iter().find(|(_, v)| !v.is_finite()) {
            progress.finish();
            let kept = match last_checkpoint {
                Some(s) => format!("the last good checkpoint (step {s}) is kept"),
                None => "no checkpoint had been written yet".into(),
            };
            return Err(Error::invalid(format!(
                "step {step}: {name} is {v}; training stopped ({kept}). Try a lower --lr"
            )));
        }
        for (k, v) in &terms {
            if let Some(c) = curves.get_mut(*k) {
                c.push((step as f64, *v));
            }
        }
        let shown: Vec<(&str, f64)> = terms
            .iter()
            .filter(|(k, _)| *k != "lr")
            .copied()
            .chain([("img/s", img_per_s)])
            .collect();
        progress.update(step, &shown);
        let done = step == total;
        if step.is_multiple_of(sample_every.max(1)) || done {
            save_samples(t, &samples.join(format!("step-{step:06}.png")))?;
            save_loss_plot(&dir.join(LOSS_PLOT), &curves)?;
        }
        if step.is_multiple_of(checkpoint_every.max(1)) || done {
            save_checkpoint(t, dir)?;
            last_checkpoint = Some(step);
        }
        if stop_requested() {
            break;
        }
    }
    progress.finish();
    let interrupted = t.step < total;
    let final_samples = samples.join("final.png");
    save_samples(t, &final_samples)?;
    save_loss_plot(&dir.join(LOSS_PLOT), &curves)?;
    if last_checkpoint != Some(t.step) {
        save_checkpoint(t, dir)?;
    }
    let evaluation = if interrupted {
        Vec::new()
    } else {
        t.evaluate()?
    };
    if !evaluation.is_empty() {
        let rows: Vec<serde_json::Value> = evaluation.iter().map(eval_json).collect();
        let doc = serde_json::json!({"step": t.step, "heldout_a": t.data.test_a.len(),
            "heldout_b": t.data.test_b.len(), "rows": rows});
        write_atomic(&dir.join(EVAL), format!("{doc:#}\n").as_bytes())?;
    }
    Ok(Img2ImgSummary {
        dir: dir.to_path_buf(),
        step: t.step,
        seconds: start.elapsed().as_secs_f64(),
        final_samples,
        evaluation,
        interrupted,
    })
}

fn eval_json(r: &EvalRow) -> serde_json::Value {
    let s = |s: &crate::eval::similarity::Similarity| serde_json::json!({"l1": s.l1, "psnr": s.psnr, "ssim": s.ssim});
    serde_json::json!({"what": r.what, "model": s(&r.model), "baseline": r.baseline.as_ref().map(s)})
}

/// The evaluation as a table.
pub fn format_evaluation(rows: &[EvalRow]) -> String {
    let mut out = format!(
        "{:<22} {:>8} {:>9} {:>7}   {:>8} {:>9} {:>7}\n",
        "held-out", "L1", "PSNR dB", "SSIM", "base L1", "base PSNR", "SSIM"
    );
    for r in rows {
        let b = r.baseline.map_or(
            "   (no baseline: output = input does not apply)".to_string(),
            |b| format!("{:>8.4} {:>9.2} {:>7.4}", b.l1, b.psnr, b.ssim),
        );
        out += &format!(
            "{:<22} {:>8.4} {:>9.2} {:>7.4}   {b}\n",
            r.what, r.model.l1, r.model.psnr, r.model.ssim
        );
    }
    out
}
