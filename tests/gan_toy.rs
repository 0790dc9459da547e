//! Every GAN variant learns the 2-D ring of 8 Gaussians (radius 2, std 0.02) with its
//! default toy configuration, and the check that says so fails for a broken loss.
//!
//! Each test trains on the cpu from `TrainConfig::defaults(variant, Arch::Mlp,
//! DataSpec::Ring8)` (seed 1, exactly what `duel train --data ring8 --variant V` runs) and
//! judges the 1000 fixed samples with [`lands_on_modes`].
//!
//! **Why the radius is 0.2, not 3 std (0.06).** THEORY.md's "high quality" radius of 3 std
//! is what the CLI reports, but WGAN with weight clipping (RMSProp, clip 0.01, n_critic 5)
//! only reaches a ring whose clumps are blurred over ~0.1–0.3 within a run of seconds
//! (measured: 1–5 % of its samples within 3 std, 16–30 % within 0.2), and LSGAN's
//! clusters keep drifting by a few std. 0.2 is 10 std, still under a seventh of the 1.53
//! between neighbouring modes, so "near a mode" stays unambiguous, and the 8 disks of
//! radius 0.2 cover only 1.0 of the ~28 units² the samples could spread over (a cloud
//! spread evenly over them would put ~4 % of its samples near a mode).
//!
//! **Thresholds**, from seeds 1–5 of the defaults (reprint them with
//! `cargo test --release --test gan_toy -- --ignored --nocapture measure`):
//! - near fraction (samples within 0.2 of their nearest mode): gan 75–85 %, nsgan 72–90 %,
//!   lsgan 01 69–88 %, lsgan pm1 56–73 %, wgan 16–30 %. Required: 40 %; 12 % for wgan
//!   (the paper's RMSProp 5e-5, still a blob after 2000 steps, has ~6 %).
//! - modes covered (modes with ≥ 0.5 % of the samples near them): gan 8, nsgan 7–8,
//!   lsgan 01 6–7, lsgan pm1 5–6, wgan 8. Required: 4 of 8 for every variant.
//!
//! Both broken losses below (the generator's loss with the wrong sign; the discriminator
//! trained with real and fake swapped) leave no sample near a mode, so they fail even the
//! loosest threshold (wgan's).

use duel::eval::{mode_coverage, ModeCoverage};
use duel::gan::{Arch, DataSpec, Objective, TrainConfig, Trainer, Variant};
use duel::ops::loss::{discriminator_loss, nonsaturating_generator_loss, LsCoding};
use duel::{Device, Result, Tensor};

mod common;
use common::{duel, TempDir};

/// A sample is near a mode when within this distance of the mode's centre (10 std).
const NEAR_RADIUS: f64 = 0.2;
/// A mode is covered when at least this share of all samples is near it (5 of 1000).
const MIN_MODE_SHARE: f64 = 0.005;
/// Modes that must be covered (of 8).
const MIN_MODES: usize = 4;
/// Near fraction required of gan, nsgan and lsgan.
const MIN_NEAR: f64 = 0.40;
/// Near fraction required of wgan (weight clipping blurs its clusters; see the top).
const MIN_NEAR_WGAN: f64 = 0.12;

/// Mode coverage of `samples` with "high quality" meaning within [`NEAR_RADIUS`] of the
/// nearest mode (`mode_coverage` uses 3·std as its radius).
fn near_coverage(samples: &Tensor, modes: &[Vec<f64>]) -> ModeCoverage {
    mode_coverage(samples, modes, NEAR_RADIUS / 3.0).unwrap()
}

/// Modes with at least [`MIN_MODE_SHARE`] of the samples near them.
fn covered_modes(cov: &ModeCoverage) -> usize {
    let min = (MIN_MODE_SHARE * cov.n_samples as f64).ceil() as usize;
    cov.counts.iter().filter(|&&c| c >= min.max(1)).count()
}

/// THE check: at least `min_near` of the samples lie near a mode, and at least
/// [`MIN_MODES`] modes are covered.
fn lands_on_modes(cov: &ModeCoverage, min_near: f64) -> bool {
    cov.high_quality_fraction >= min_near && covered_modes(cov) >= MIN_MODES
}

/// Train `variant`'s default toy run on the cpu (optionally with another seed, objective
/// or number of steps); return the near-coverage of its fixed samples and the 3-std one.
fn train(
    variant: Variant,
    seed: Option<u64>,
    objective: Option<Box<dyn Objective>>,
    steps: Option<u64>,
) -> (ModeCoverage, ModeCoverage) {
    let mut config = TrainConfig::defaults(variant, Arch::Mlp, DataSpec::Ring8);
    if let Some(s) = seed {
        config.seed = s;
    }
    let steps = steps.unwrap_or(config.steps);
    let mut t = Trainer::new(config, &Device::Cpu).unwrap();
    if let Some(o) = objective {
        t = t.with_objective(o);
    }
    for _ in 0..steps {
        t.train_step().unwrap();
    }
    let x = t.fixed_samples().unwrap();
    let mixture = t.mixture().unwrap();
    let near = near_coverage(&x, mixture.modes());
    let hq = mode_coverage(&x, mixture.modes(), mixture.std()).unwrap();
    (near, hq)
}

fn describe(name: &str, near: &ModeCoverage, hq: &ModeCoverage) -> String {
    format!(
        "{name}: {:.1}% within {NEAR_RADIUS} of a mode, {} modes covered (near counts {:?}); \
         3 std: {}/8 modes, {:.1}% high quality, KL {:.3}",
        100.0 * near.high_quality_fraction,
        covered_modes(near),
        near.counts,
        hq.modes_captured,
        100.0 * hq.high_quality_fraction,
        hq.kl_to_uniform
    )
}

fn check_variant(name: &str, variant: Variant, min_near: f64) {
    let (near, hq) = train(variant, None, None, None);
    let line = describe(name, &near, &hq);
    println!("{line}");
    assert!(
        lands_on_modes(&near, min_near),
        "{line}; required {:.0}% near and {MIN_MODES} modes covered",
        100.0 * min_near
    );
}

#[test]
fn gan_lands_on_the_ring() {
    check_variant("gan", Variant::Gan, MIN_NEAR);
}

#[test]
fn nsgan_lands_on_the_ring() {
    check_variant("nsgan", Variant::NsGan, MIN_NEAR);
}

#[test]
fn lsgan_01_lands_on_the_ring() {
    check_variant("lsgan 01", Variant::LsGan(LsCoding::BINARY), MIN_NEAR);
}

#[test]
fn lsgan_pm1_lands_on_the_ring() {
    check_variant("lsgan pm1", Variant::LsGan(LsCoding::PEARSON), MIN_NEAR);
}

#[test]
fn wgan_lands_on_the_ring() {
    check_variant("wgan", Variant::WGan { clip: 0.01 }, MIN_NEAR_WGAN);
}

/// nsgan's discriminator, but the generator minimises log D(G(z)) instead of −log D(G(z)):
/// it runs away from whatever D calls real.
struct WrongSignGenerator;

impl Objective for WrongSignGenerator {
    fn d_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        discriminator_loss(real, fake)
    }
    fn g_loss(&self, fake: &Tensor) -> Result<Tensor> {
        nonsaturating_generator_loss(fake)?.neg()
    }
    fn mean_d(&self, out: &Tensor) -> Result<f64> {
        out.sigmoid()?.mean_all()?.item()
    }
}

/// nsgan's generator, but the discriminator learns that the reals are fake and the fakes
/// real, so G is pulled towards its own samples and away from the data.
struct SwappedTargets;

impl Objective for SwappedTargets {
    fn d_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        discriminator_loss(fake, real)
    }
    fn g_loss(&self, fake: &Tensor) -> Result<Tensor> {
        nonsaturating_generator_loss(fake)
    }
    fn mean_d(&self, out: &Tensor) -> Result<f64> {
        out.sigmoid()?.mean_all()?.item()
    }
}

fn check_broken(name: &str, objective: Box<dyn Objective>) {
    // A third of nsgan's 3000 steps keeps the file's run time down; both broken losses
    // have left the ring by then (and still have no sample near a mode after all 3000).
    let (near, hq) = train(Variant::NsGan, None, Some(objective), Some(1000));
    let line = describe(name, &near, &hq);
    println!("{line}");
    // Fails even the loosest threshold, so it fails every variant's.
    assert!(
        !lands_on_modes(&near, MIN_NEAR_WGAN.min(MIN_NEAR)),
        "a broken loss passed the check: {line}"
    );
}

#[test]
fn a_generator_loss_with_the_wrong_sign_fails_the_check() {
    check_broken("nsgan, G loss negated", Box::new(WrongSignGenerator));
}

#[test]
fn a_discriminator_with_swapped_targets_fails_the_check() {
    check_broken("nsgan, D targets swapped", Box::new(SwappedTargets));
}

#[test]
fn cli_trains_on_ring8_and_reports_mode_coverage() {
    let tmp = TempDir::new("gan_toy-cli");
    let runs = tmp.arg("runs");
    let out = duel(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "ring8",
        "--variant",
        "lsgan",
        "--ls-coding",
        "pm1",
        "--steps",
        "40",
        "--quiet",
        "--runs-dir",
        &runs,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "duel train failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("mode coverage"),
        "no mode coverage line in:\n{stdout}\n{stderr}"
    );
}

/// Reprints the measurements behind the thresholds: `DUEL_TOY_SEEDS=1,2,3` (default 1..=5)
/// `cargo test --release --test gan_toy -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure() {
    let seeds = std::env::var("DUEL_TOY_SEEDS").unwrap_or_else(|_| "1,2,3,4,5".into());
    let variants = [
        ("gan", Variant::Gan),
        ("nsgan", Variant::NsGan),
        ("lsgan 01", Variant::LsGan(LsCoding::BINARY)),
        ("lsgan pm1", Variant::LsGan(LsCoding::PEARSON)),
        ("wgan", Variant::WGan { clip: 0.01 }),
    ];
    for (name, variant) in variants {
        for seed in seeds.split(',') {
            let seed: u64 = seed.trim().parse().unwrap();
            let t0 = std::time::Instant::now();
            let (near, hq) = train(variant, Some(seed), None, None);
            println!(
                "{} ({:.1} s)",
                describe(&format!("{name} seed {seed}"), &near, &hq),
                t0.elapsed().as_secs_f64()
            );
        }
    }
}
