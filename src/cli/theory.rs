//! `duel theory`: train a toy GAN and compute the theory along the way (see
//! `duel::eval::theory`): p_data, p_g, the trained D against the optimal D*, JSD and
//! Pearson χ² at checkpoints, and the generator's gradient against D(G(z)).

use std::path::{Path, PathBuf};

use clap::Args;
use duel::autograd::no_grad;
use duel::data::toy::Mixture;
use duel::eval::theory::{
    generator_logit_gradient, jsd, mixture_density, optimal_discriminator, pearson_chi2, Kde,
};
use duel::gan::config::DataSpec;
use duel::gan::evaluate::EVAL_SEED;
use duel::gan::objective::Variant;
use duel::gan::{Arch, TrainConfig, Trainer};
use duel::io::metrics::{read_metrics, series};
use duel::io::plot::save_line_plot;
use duel::tensor::Tensor;
use duel::Device;

use crate::Failure;

/// The flags of `duel theory`.
#[derive(Args, Debug)]
pub struct TheoryArgs {
    /// Toy data: mix1d (Gaussians at -2, 0, 2, std 0.1) or ring8
    #[arg(long, default_value = "mix1d")]
    data: String,
    /// GAN variant whose D is compared with D* = p_data / (p_data + p_g): gan or nsgan
    #[arg(long, default_value = "nsgan")]
    variant: String,
    /// Generator steps
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Estimate JSD and chi^2 every N steps
    #[arg(long, default_value_t = 250)]
    every: u64,
    /// Samples of p_data and of p_g per estimate
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Seed of the run
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the PNGs go
    #[arg(long, value_name = "DIR", default_value = "theory")]
    out: PathBuf,
    /// metrics.jsonl files of other runs whose (d_fake, g_grad_norm) to add to gradient.png
    #[arg(long, value_name = "FILE")]
    metrics: Vec<PathBuf>,
}

/// One checkpoint's estimates.
struct Estimate {
    step: u64,
    jsd: f64,
    chi2: f64,
    bandwidth: f64,
}

fn samples_f64(t: &Tensor) -> Result<Vec<f64>, Failure> {
    Ok(t.to_f64_vec()?)
}

/// (p_data, p_g) at real and at generated samples; the KDE of p_g.
fn estimate(t: &mut Trainer, m: &Mixture, n: usize, step: u64) -> Result<(Estimate, Kde), Failure> {
    let d = m.dim();
    let gen = samples_f64(&t.sample(n, EVAL_SEED ^ step, None)?)?;
    let real = samples_f64(&m.sample(n, EVAL_SEED, step * n as u64)?)?;
    let kde = Kde::fit(gen.clone(), d);
    let at = |xs: &[f64]| -> Vec<(f64, f64)> {
        xs.chunks_exact(d)
            .map(|x| (mixture_density(m, x), kde.density(x)))
            .collect()
    };
    let (at_p, at_q) = (at(&real), at(&gen));
    Ok((
        Estimate {
            step,
            jsd: jsd(&at_p, &at_q),
            chi2: pearson_chi2(&at_p, &at_q),
            bandwidth: kde.bandwidth,
        },
        kde,
    ))
}

/// The points where densities and D are drawn: x in [-3, 3] (1-D), or the circle of
/// radius 2 by angle (ring8). Returns (plot x, point).
fn probe_points(m: &Mixture) -> Vec<(f64, Vec<f64>)> {
    (0..=600)
        .map(|i| {
            if m.dim() == 1 {
                let x = -3.0 + 6.0 * i as f64 / 600.0;
                (x, vec![x])
            } else {
                let a = std::f64::consts::TAU * i as f64 / 600.0;
                (a, vec![2.0 * a.cos(), 2.0 * a.sin()])
            }
        })
        .collect()
}

pub fn theory(args: &TheoryArgs) -> Result<(), Failure> {
    let data = match args.data.as_str() {
        "mix1d" => DataSpec::Mix1d,
        "ring8" => DataSpec::Ring8,
        other => {
            return Err(Failure(
                format!("--data {other}: duel theory knows mix1d and ring8"),
                2,
            ))
        }
    };
    let variant = match args.variant.as_str() {
        "gan" => Variant::Gan,
        "nsgan" => Variant::NsGan,
        other => {
            return Err(Failure(
                format!(
                    "--variant {other}: D* = p_data/(p_data+p_g) is the optimum of the \
                     cross-entropy discriminator; use gan or nsgan"
                ),
                2,
            ))
        }
    };
    if args.steps == 0 || args.every == 0 || args.n < 10 {
        return Err(Failure(
            "--steps and --every must be at least 1, --n at least 10".into(),
            2,
        ));
    }
    let mut config = TrainConfig::defaults(variant, Arch::Mlp, data);
    config.steps = args.steps;
    config.seed = args.seed;
    let mut t = Trainer::new(config, &Device::Cpu)?;
    let m = t.mixture().expect("toy data").clone();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure(format!("{}: {e}", args.out.display()), 1))?;
    println!(
        "{} on {} ({} steps); JSD in nats (0 … ln 2 = 0.693), Pearson chi^2(p_data+p_g || 2p_g) (0 … 2)",
        variant.name(),
        args.data,
        args.steps
    );
    let mut estimates = Vec::new();
    let mut grads = Vec::new();
    let (e, _) = estimate(&mut t, &m, args.n, 0)?;
    print_estimate(&e);
    estimates.push(e);
    let mut kde = None;
    while t.step < args.steps {
        let s = t.train_step()?;
        grads.push((s.d_fake, s.g_grad_norm));
        if t.step % args.every == 0 || t.step == args.steps {
            let step = t.step;
            let (e, k) = estimate(&mut t, &m, args.n, step)?;
            print_estimate(&e);
            estimates.push(e);
            kde = Some(k);
        }
    }
    let kde = kde.expect("at least one step");
    plot_densities(&args.out, &mut t, &m, &kde)?;
    plot_divergences(&args.out, &estimates)?;
    plot_gradient(&args.out, variant.name(), &grads, &args.metrics)?;
    println!(
        "wrote {0}/densities.png, {0}/discriminator.png, {0}/divergences.png, {0}/gradient.png",
        args.out.display()
    );
    Ok(())
}

fn print_estimate(e: &Estimate) {
    println!(
        "step {:>6}: JSD {:.4}  chi^2 {:.4}  (KDE bandwidth {:.4})",
        e.step, e.jsd, e.chi2, e.bandwidth
    );
}

fn plot_densities(out: &Path, t: &mut Trainer, m: &Mixture, kde: &Kde) -> Result<(), Failure> {
    let probes = probe_points(m);
    let pd: Vec<(f64, f64)> = probes
        .iter()
        .map(|(a, x)| (*a, mixture_density(m, x)))
        .collect();
    let pg: Vec<(f64, f64)> = probes.iter().map(|(a, x)| (*a, kde.density(x))).collect();
    let dstar: Vec<(f64, f64)> = pd
        .iter()
        .zip(&pg)
        .map(|(&(a, p), &(_, q))| (a, optimal_discriminator(p, q)))
        .collect();
    let flat: Vec<f32> = probes
        .iter()
        .flat_map(|(_, x)| x.iter().map(|&v| v as f32))
        .collect();
    let x = Tensor::from_vec(flat, [probes.len(), m.dim()], &Device::Cpu)?;
    t.d.set_training(false);
    let logits = no_grad(|| t.d.forward(&x, None));
    t.d.set_training(true);
    let d: Vec<(f64, f64)> = logits?
        .sigmoid()?
        .to_f64_vec()?
        .into_iter()
        .zip(&probes)
        .map(|(v, (a, _))| (*a, v))
        .collect();
    let axis = if m.dim() == 1 {
        "X"
    } else {
        "ANGLE ON THE RING (RAD)"
    };
    save_line_plot(
        out.join("densities.png"),
        &format!("DENSITIES AT STEP {} (X: {axis})", t.step),
        &[("P_DATA", &pd), ("P_G (KDE)", &pg)],
        800,
        500,
    )?;
    save_line_plot(
        out.join("discriminator.png"),
        &format!("TRAINED D VS D* = P_DATA/(P_DATA+P_G) AT STEP {}", t.step),
        &[("D(X)", &d), ("D*(X)", &dstar)],
        800,
        500,
    )?;
    Ok(())
}

fn plot_divergences(out: &Path, e: &[Estimate]) -> Result<(), Failure> {
    let j: Vec<(f64, f64)> = e.iter().map(|e| (e.step as f64, e.jsd)).collect();
    let c: Vec<(f64, f64)> = e.iter().map(|e| (e.step as f64, e.chi2)).collect();
    let ln2: Vec<(f64, f64)> = [0.0, e.last().map_or(1.0, |e| e.step as f64)]
        .iter()
        .map(|&s| (s, std::f64::consts::LN_2))
        .collect();
    save_line_plot(
        out.join("divergences.png"),
        "JSD(P_DATA, P_G) AND PEARSON CHI2(P_DATA+P_G, 2 P_G) BY STEP",
        &[("JSD (NATS)", &j), ("CHI2", &c), ("LN 2", &ln2)],
        800,
        500,
    )?;
    Ok(())
}

/// Measured points as dots: (mean D(G(z)), g_grad_norm / the run's largest g_grad_norm).
fn scaled_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-300);
    points
        .iter()
        .flat_map(|&(d, g)| [(d, g / max), (f64::NAN, f64::NAN)])
        .collect()
}

fn plot_gradient(
    out: &Path,
    name: &str,
    grads: &[(f64, f64)],
    others: &[PathBuf],
) -> Result<(), Failure> {
    let curve = |ns: bool| -> Vec<(f64, f64)> {
        (0..=200)
            .map(|i| {
                let d = i as f64 / 200.0;
                (d, generator_logit_gradient(d, ns))
            })
            .collect()
    };
    let (mm, ns) = (curve(false), curve(true));
    let mut labelled: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("MINIMAX: D".into(), mm),
        ("NON-SATURATING: 1 - D".into(), ns),
        (format!("{name} (THIS RUN)"), scaled_points(grads)),
    ];
    for path in others {
        let rows = read_metrics(path)?;
        let d = series(&rows, "step", "d_fake");
        let g = series(&rows, "step", "g_grad_norm");
        let pts: Vec<(f64, f64)> = d.iter().zip(&g).map(|(a, b)| (a.1, b.1)).collect();
        let label = path
            .parent()
            .and_then(|p| p.file_name())
            .map_or("RUN".to_string(), |n| n.to_string_lossy().to_uppercase());
        labelled.push((label, scaled_points(&pts)));
    }
    let series: Vec<(&str, &[(f64, f64)])> = labelled
        .iter()
        .map(|(l, p)| (l.as_str(), p.as_slice()))
        .collect();
    save_line_plot(
        out.join("gradient.png"),
        "|DL_G/DF| AGAINST D(G(Z)); DOTS: MEASURED G_GRAD_NORM / RUN MAX",
        &series,
        800,
        500,
    )?;
    Ok(())
}
