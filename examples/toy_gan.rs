//! A non-saturating GAN on the ring of 8 Gaussians, written against the public API alone
//! (`duel::prelude`, the toy mixtures and the mode-coverage measure):
//! two MLPs, two Adams, Algorithm 1 with k = 1 (Goodfellow et al., 2014), and the mode
//! coverage of 2,000 samples at the end.
//!
//! `cargo run --release --example toy_gan [STEPS] [DEVICE]` (defaults: 3000, cpu; DEVICE is
//! cpu, emu, cuda, cuda:N or auto).

use duel::data::toy::Mixture;
use duel::eval::mode_coverage;
use duel::prelude::*;

const NOISE: usize = 8;
const HIDDEN: usize = 128;
const BATCH: usize = 256;

/// `in → HIDDEN → HIDDEN → out` with LeakyReLU(0.2) between the layers.
fn mlp(input: usize, output: usize, rng: &mut ParamRng, device: &Device) -> Result<Sequential> {
    Ok(Sequential::new(vec![
        Box::new(Linear::options(input, HIDDEN).build(rng, device)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(HIDDEN, HIDDEN).build(rng, device)?),
        Box::new(LeakyReLU(0.2)),
        Box::new(Linear::options(HIDDEN, output).build(rng, device)?),
    ]))
}

fn params(m: &dyn Module) -> Vec<Tensor> {
    m.parameters().into_iter().map(|(_, p)| p).collect()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let steps: u64 = match args.next() {
        Some(s) => s
            .parse()
            .map_err(|_| Error::invalid(format!("STEPS: '{s}' is not a count")))?,
        None => 3000,
    };
    let device = Device::parse(&args.next().unwrap_or_else(|| "cpu".to_string()))?;
    let data = Mixture::ring8();
    let mut rng = ParamRng::new(1);
    let g = mlp(NOISE, data.dim(), &mut rng, &device)?;
    let d = mlp(data.dim(), 1, &mut rng, &device)?;
    let adam = AdamConfig::new(1e-3).betas(0.5, 0.999);
    let (mut opt_g, mut opt_d) = (Adam::new(params(&g), adam)?, Adam::new(params(&d), adam)?);

    for step in 0..steps {
        let offset = step * BATCH as u64;
        // D step: real samples against detached fakes (G gets no gradient).
        let real = data.sample(BATCH, 7, offset)?.to_device(&device)?;
        let z = Tensor::randn([BATCH, NOISE], 11, offset * NOISE as u64, &device)?;
        let fake = no_grad(|| g.forward(&z))?;
        opt_d.zero_grad();
        let d_loss = discriminator_loss(&d.forward(&real)?, &d.forward(&fake)?)?;
        d_loss.backward()?;
        opt_d.step()?;
        // G step: D frozen, so the backward walk writes only G's gradients.
        let z = Tensor::randn([BATCH, NOISE], 13, offset * NOISE as u64, &device)?;
        opt_g.zero_grad();
        let g_loss = {
            let _frozen = freeze(&params(&d));
            nonsaturating_generator_loss(&d.forward(&g.forward(&z)?)?)?
        };
        g_loss.backward()?;
        opt_g.step()?;
        if step % 500 == 0 || step + 1 == steps {
            println!(
                "step {step:>5}  D loss {:.4}  G loss {:.4}",
                d_loss.item()?,
                g_loss.item()?
            );
        }
    }

    let z = Tensor::randn([2000, NOISE], 17, 0, &device)?;
    let samples = no_grad(|| g.forward(&z))?;
    let c = mode_coverage(&samples, data.modes(), data.std())?;
    println!(
        "{} of {} modes captured; {:.1}% of samples within 3 std of a mode; KL to uniform {:.3}",
        c.modes_captured,
        data.modes().len(),
        100.0 * c.high_quality_fraction,
        c.kl_to_uniform
    );
    Ok(())
}
