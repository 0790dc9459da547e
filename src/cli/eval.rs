//! `duel eval`: the figures of a trained generator (see `duel::eval::digits` for images,
//! `duel::eval::coverage` for toy data), and `--train-classifier` to remake the classifier.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use duel::data::Digits;
use duel::device::DeviceSpec;
use duel::eval::classifier::{Classifier, CLASSIFIER_PATH};
use duel::eval::digits::{DigitsEval, Scores};
use duel::eval::ModeCoverage;
use duel::gan::config::DataSpec;
use duel::gan::evaluate::{score_digits, toy_protocol, TOY_PROTOCOL_SAMPLES};
use duel::gan::run;

use crate::Failure;

/// The flags of `duel eval`.
#[derive(Args, Debug)]
#[command(after_long_help = PARZEN_CAVEAT)]
pub struct EvalArgs {
    /// A run directory (runs/<name>), or its generator.safetensors / checkpoint.safetensors
    #[arg(value_name = "RUN", required_unless_present = "train_classifier")]
    run: Option<PathBuf>,
    /// Samples to draw for image runs (toy runs always use the protocol's 2,500)
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Skip the Parzen-window log-likelihood (the slowest figure)
    #[arg(long)]
    no_parzen: bool,
    /// Print the figures as one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// The evaluation classifier (safetensors) [data/digits-classifier.safetensors]
    #[arg(long, value_name = "PATH")]
    classifier: Option<PathBuf>,
    /// Train the evaluation classifier on the train split (under a minute on the cpu) and
    /// write it to --classifier
    #[arg(long)]
    train_classifier: bool,
}

const PARZEN_CAVEAT: &str = "\
Figures for digit runs (n samples, G in eval mode, fixed noise stream):
  FD          Fréchet distance of the classifier's 64-d penultimate features to the 4,000
              train-split digits (lower is better; grows as n shrinks: compare at equal n)
  IS-like     exp(E KL(p(y|x) || p(y))) from the classifier (1..10, higher is better)
  class KL    KL of the predicted-class histogram to uniform (0 = every digit equally often)
  classes>=5% classes predicted for at least 5% of the samples
  confidence  mean max_y p(y|x)
  Parzen      mean log-likelihood (nats) ± standard error of the 500 held-out digits under a
              Gaussian kernel density on the samples (pixels in [0,1]), σ chosen on the 500
              validation digits (Goodfellow et al. 2014).
              Caveat (Theis, van den Oord & Bethge 2016): in 784 dimensions this estimate is
              far from the true log-likelihood even with millions of samples, can order models
              wrongly, and rewards memorising training digits; read it as a distance to
              held-out data, not as a likelihood.
The 'held-out real' column scores the 500 held-out digits as if they were samples: the
ceiling. No GAN trains on the validation or held-out digits.
Toy runs: the mode-collapse protocol on 2,500 samples (high quality: within 3 std of the
nearest mode; a mode is captured when it is the nearest mode of a high-quality sample;
reverse KL of the captured-mode histogram to uniform).";

pub fn eval(spec: DeviceSpec, args: &EvalArgs) -> Result<(), Failure> {
    let classifier_path = args
        .classifier
        .clone()
        .unwrap_or_else(|| PathBuf::from(CLASSIFIER_PATH));
    if args.train_classifier {
        return train_classifier(&classifier_path);
    }
    let path = args.run.as_deref().expect("clap requires RUN");
    if args.n < 2 || args.n > 100_000 {
        return Err(Failure(
            format!("--n {}: use 2 to 100000 samples", args.n),
            2,
        ));
    }
    let device = spec.open()?;
    let t0 = Instant::now();
    let (mut g, net, config) =
        run::load_generator(path, &device).map_err(|e| Failure(e.to_string(), 2))?;
    let what = format!(
        "{} {} on {}",
        config.variant.name(),
        config.arch.name(),
        config.data.name()
    );
    if let Some(mixture) = config.data.mixture() {
        let c = toy_protocol(&mut g, net.nz, &mixture)?;
        print_toy(path, &what, &c, args.json);
        return Ok(());
    }
    if config.data != DataSpec::Digits {
        return Err(Failure(
            format!(
                "duel eval scores runs on the built-in digits (its classifier knows them); \
                 {} was trained on {}",
                path.display(),
                config.data.name()
            ),
            2,
        ));
    }
    let classifier = Classifier::load(&classifier_path)?;
    let eval = DigitsEval::new(classifier, &Digits::builtin()?)?;
    let samples = score_digits(&eval, &mut g, net.nz, args.n, !args.no_parzen)?;
    let real = eval.real()?;
    let secs = t0.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json(&samples, &real, eval.classifier.heldout_accuracy)
        );
    } else {
        print_digits(path, &what, &eval, &samples, &real, secs);
    }
    Ok(())
}

fn train_classifier(path: &Path) -> Result<(), Failure> {
    let t0 = Instant::now();
    let digits = Digits::builtin()?;
    println!("training the evaluation classifier on the train split of the built-in digits");
    let c = Classifier::train(&digits, |epoch, loss, acc| {
        println!(
            "  epoch {epoch}: loss {loss:.4}, validation accuracy {:.1}%",
            100.0 * acc
        )
    })?;
    c.save(path)?;
    println!(
        "validation accuracy {:.1}%, held-out accuracy {:.1}%; written to {} ({:.0} s)",
        100.0 * c.validation_accuracy,
        100.0 * c.heldout_accuracy,
        path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parzen_cell(s: &Scores) -> String {
    s.parzen.map_or("-".into(), |p| {
        format!("{:.1} ± {:.1} (σ {:.3})", p.mean, p.stderr, p.sigma)
    })
}

fn print_digits(path: &Path, what: &str, eval: &DigitsEval, s: &Scores, r: &Scores, secs: f64) {
    println!("{} ({what}): {} samples", path.display(), s.n);
    println!(
        "classifier: held-out accuracy {:.1}% (features: its 64-d penultimate layer)",
        100.0 * eval.classifier.heldout_accuracy
    );
    println!(
        "{:<24} {:>28} {:>28}",
        "",
        "samples",
        format!("held-out real ({})", r.n)
    );
    let row = |name: &str, a: String, b: String| println!("{name:<24} {a:>28} {b:>28}");
    row(
        "FD (features)",
        format!("{:.3}", s.fd),
        format!("{:.3}", r.fd),
    );
    row(
        "IS-like",
        format!("{:.3}", s.is_like),
        format!("{:.3}", r.is_like),
    );
    row(
        "class KL to uniform",
        format!("{:.4}", s.kl_to_uniform),
        format!("{:.4}", r.kl_to_uniform),
    );
    row(
        "classes with >= 5%",
        format!("{}/10", s.classes_at_5pct),
        format!("{}/10", r.classes_at_5pct),
    );
    row(
        "mean confidence",
        format!("{:.3}", s.mean_confidence),
        format!("{:.3}", r.mean_confidence),
    );
    row("Parzen log-lik (nats)", parzen_cell(s), parzen_cell(r));
    let hist = |h: &[f64]| {
        h.iter()
            .enumerate()
            .map(|(k, v)| format!("{k}:{:.1}%", 100.0 * v))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("class histogram (samples):  {}", hist(&s.class_histogram));
    println!("class histogram (held-out): {}", hist(&r.class_histogram));
    if let Some(acc) = &s.per_class_accuracy {
        println!(
            "conditional: samples asked for class k that the classifier calls k: {} (mean {:.1}%)",
            hist(acc),
            100.0 * acc.iter().sum::<f64>() / acc.len() as f64
        );
    }
    println!("({secs:.1} s; `duel eval --help` says what each figure means)");
}

fn scores_json(s: &Scores) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("n".into(), s.n.into());
    for (k, v) in s.fields() {
        m.insert(k.trim_start_matches("eval_").into(), v.into());
    }
    if let Some(p) = s.parzen {
        m.insert("parzen_sigma".into(), p.sigma.into());
    }
    m.insert("class_histogram".into(), s.class_histogram.clone().into());
    if let Some(acc) = &s.per_class_accuracy {
        m.insert("per_class_accuracy".into(), acc.clone().into());
    }
    m.into()
}

fn json(s: &Scores, r: &Scores, classifier_accuracy: f64) -> serde_json::Value {
    serde_json::json!({
        "samples": scores_json(s),
        "heldout_real": scores_json(r),
        "classifier_heldout_accuracy": classifier_accuracy,
    })
}

fn print_toy(path: &Path, what: &str, c: &ModeCoverage, as_json: bool) {
    let k = c.counts.len();
    if as_json {
        println!(
            "{}",
            serde_json::json!({
                "samples": c.n_samples,
                "modes": k,
                "modes_captured": c.modes_captured,
                "high_quality": c.high_quality_fraction,
                "reverse_kl": c.kl_to_uniform,
            })
        );
        return;
    }
    println!(
        "{} ({what}): mode-collapse protocol on {TOY_PROTOCOL_SAMPLES} samples",
        path.display()
    );
    println!(
        "modes captured {}/{k}, high quality {:.1}%, reverse KL to uniform {:.3} (0 … ln {k} = {:.3})",
        c.modes_captured,
        100.0 * c.high_quality_fraction,
        c.kl_to_uniform,
        (k as f64).ln()
    );
}
