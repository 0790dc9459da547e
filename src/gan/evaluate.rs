//! A generator under evaluation: draw n samples (eval mode, batches of 500, from a noise
//! stream of its own) and score them with [`crate::eval`]: the digits figures, or the
//! mode-collapse protocol on toy data.

use super::arch::Net;
use crate::autograd::no_grad;
use crate::data::toy::Mixture;
use crate::device::Device;
use crate::error::Result;
use crate::eval::digits::{DigitsEval, Scores};
use crate::eval::{mode_coverage, ModeCoverage};
use crate::nn::Module;
use crate::tensor::Tensor;

/// Samples of the toy mode-collapse protocol (VEEGAN, PacGAN).
pub const TOY_PROTOCOL_SAMPLES: usize = 2500;
/// The noise stream of evaluation samples (apart from training's and the fixed grid's).
pub const EVAL_SEED: u64 = 0x0e7a_1000;
const BATCH: usize = 500;

/// `n` samples of `g` (noise size `nz`) on the cpu, and for a conditional `g` the labels
/// asked for (sample i: class i mod k, so every class gets n/k). G is left in eval mode.
pub fn draw(g: &mut Net, nz: usize, n: usize, seed: u64) -> Result<(Tensor, Option<Vec<u8>>)> {
    let device = g
        .parameters()
        .first()
        .map_or(Device::Cpu, |p| p.device().clone());
    let labels: Option<Vec<u8>> = g.classes.map(|k| (0..n).map(|i| (i % k) as u8).collect());
    let z = Tensor::randn([n, nz], seed, 0, &Device::Cpu)?.to_vec::<f32>()?;
    g.set_training(false);
    let mut out = Vec::new();
    let mut shape = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - start);
        let zb = Tensor::from_vec(
            z[start * nz..(start + count) * nz].to_vec(),
            [count, nz],
            &Device::Cpu,
        )?
        .to_device(&device)?;
        let lb = labels.as_ref().map(|l| &l[start..start + count]);
        let x = no_grad(|| g.forward(&zb, lb))?.to_device(&Device::Cpu)?;
        shape = x.dims()[1..].to_vec();
        out.extend(x.to_dtype(crate::tensor::DType::F32)?.to_vec::<f32>()?);
    }
    let mut dims = vec![n];
    dims.extend(shape);
    Ok((Tensor::from_vec(out, dims, &Device::Cpu)?, labels))
}

/// The digits figures of `n` samples of `g` (the training mode of `g` is restored).
pub fn score_digits(
    eval: &DigitsEval,
    g: &mut Net,
    nz: usize,
    n: usize,
    with_parzen: bool,
) -> Result<Scores> {
    let training = g.body.is_training();
    let drawn = draw(g, nz, n, EVAL_SEED);
    g.set_training(training);
    let (x, labels) = drawn?;
    eval.score(&x, labels.as_deref(), with_parzen)
}

/// The toy protocol: mode coverage of [`TOY_PROTOCOL_SAMPLES`] samples of `g`.
pub fn toy_protocol(g: &mut Net, nz: usize, mixture: &Mixture) -> Result<ModeCoverage> {
    let training = g.body.is_training();
    let drawn = draw(g, nz, TOY_PROTOCOL_SAMPLES, EVAL_SEED);
    g.set_training(training);
    mode_coverage(&drawn?.0, mixture.modes(), mixture.std())
}

/// Samples per evaluation during training (`duel train --eval-every`).
pub const TRAINING_EVAL_SAMPLES: usize = 2000;
/// The picture of the evaluation figures against step.
pub const EVAL_PLOT: &str = "eval.png";

/// What `--eval-every` scores: the digits figures or the toy protocol.
enum Target {
    Digits(Box<DigitsEval>),
    Toy(Mixture),
}

/// One plotted figure: (label, metrics key, points so far).
type Curve = (&'static str, &'static str, Vec<(f64, f64)>);

/// The figures of a run every N steps (`duel train --eval-every N`): fields for
/// metrics.jsonl and `eval.png`.
pub struct Evaluator {
    every: u64,
    target: Target,
    curves: Vec<Curve>,
}

impl Evaluator {
    /// For a run on `data` (None when `every` is 0); `kept` are the metrics rows a resumed
    /// run already has, so the plot continues.
    pub fn new(
        every: u64,
        mixture: Option<&Mixture>,
        kept: &[crate::io::metrics::MetricsRow],
    ) -> Result<Option<Evaluator>> {
        if every == 0 {
            return Ok(None);
        }
        let (target, keys): (Target, &[(&str, &str)]) = match mixture {
            Some(m) => (
                Target::Toy(m.clone()),
                &[
                    ("MODES CAPTURED", "eval_modes"),
                    ("REVERSE KL", "eval_reverse_kl"),
                ],
            ),
            None => {
                let c = crate::eval::classifier::Classifier::load(
                    crate::eval::classifier::CLASSIFIER_PATH.as_ref(),
                )?;
                let digits = crate::data::Digits::builtin()?;
                (
                    Target::Digits(Box::new(DigitsEval::new(c, &digits)?)),
                    &[("FD", "eval_fd"), ("IS-LIKE", "eval_is")],
                )
            }
        };
        let curves = keys
            .iter()
            .map(|&(label, key)| (label, key, crate::io::metrics::series(kept, "step", key)))
            .collect();
        Ok(Some(Evaluator {
            every,
            target,
            curves,
        }))
    }

    /// Whether step `step` is evaluated (every N steps and the last).
    pub fn due(&self, step: u64, last: bool) -> bool {
        step.is_multiple_of(self.every) || last
    }

    /// Score G (`nz` noise inputs) at `step`: the metrics.jsonl fields; redraws `plot`.
    pub fn evaluate(
        &mut self,
        g: &mut Net,
        nz: usize,
        step: u64,
        plot: &std::path::Path,
    ) -> Result<Vec<(&'static str, f64)>> {
        let fields = match &self.target {
            Target::Digits(eval) => {
                score_digits(eval, g, nz, TRAINING_EVAL_SAMPLES, true)?.fields()
            }
            Target::Toy(m) => {
                let c = toy_protocol(g, nz, m)?;
                vec![
                    ("eval_modes", c.modes_captured as f64),
                    ("eval_high_quality", c.high_quality_fraction),
                    ("eval_reverse_kl", c.kl_to_uniform),
                ]
            }
        };
        for (_, key, points) in &mut self.curves {
            if let Some(&(_, v)) = fields.iter().find(|(k, _)| k == key) {
                points.push((step as f64, v));
            }
        }
        let series: Vec<(&str, &[(f64, f64)])> = self
            .curves
            .iter()
            .map(|(l, _, p)| (*l, p.as_slice()))
            .collect();
        crate::io::plot::save_line_plot(plot, "EVALUATION BY STEP", &series, 800, 500)?;
        Ok(fields)
    }
}
