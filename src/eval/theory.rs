//! The theory of the GAN papers computed, for toy data whose density is known:
//! the optimal discriminator D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al.
//! 2014, Prop. 1), JSD(p_data ‖ p_g) (what the minimax game minimises at D*), and LSGAN's
//! Pearson χ²(p_data + p_g ‖ 2p_g) = ∫ (p_g − p_data)² / (p_data + p_g) dx (Mao et al.
//! 2017, Theorem 1).
//!
//! p_g is known only through samples, so it is a Gaussian kernel density
//! ([`Kde::fit`]: bandwidth chosen by the likelihood of half the samples under the other
//! half). Both divergences are Monte Carlo estimates that need the densities only at
//! samples, in any dimension:
//! * JSD = ½ E_{x∼p_data} ln(2p_data/(p_data+p_g)) + ½ E_{x∼p_g} ln(2p_g/(p_data+p_g)),
//! * χ² = ∫ (p_g − p_d)²/(p_d + p_g) = 2·E_{x∼m} [((p_g − p_d)/(p_d + p_g))²] with
//!   m = (p_d + p_g)/2, sampled as the union of equally many samples of each.
//!
//! Both are bounded (JSD ≤ ln 2, χ² ≤ 2), so the estimates have bounded variance.

use crate::data::toy::Mixture;

/// The density of an equal-weight isotropic Gaussian mixture at `x`.
pub fn mixture_density(m: &Mixture, x: &[f64]) -> f64 {
    let d = m.dim() as f64;
    let s2 = m.std() * m.std();
    let norm = (std::f64::consts::TAU * s2).powf(-d / 2.0) / m.modes().len() as f64;
    m.modes()
        .iter()
        .map(|c| {
            let r2: f64 = c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
            (-r2 / (2.0 * s2)).exp()
        })
        .sum::<f64>()
        * norm
}

/// D*(x) from the two densities at x (½ where both vanish: D cannot tell, and does not
/// need to).
pub fn optimal_discriminator(p_data: f64, p_g: f64) -> f64 {
    if p_data + p_g > 0.0 {
        p_data / (p_data + p_g)
    } else {
        0.5
    }
}

/// A Gaussian kernel density estimate over points of dimension `d`.
#[derive(Clone, Debug)]
pub struct Kde {
    points: Vec<f64>,
    d: usize,
    pub bandwidth: f64,
}

impl Kde {
    /// A KDE of `points` (rows of `d`) with the given bandwidth.
    pub fn new(points: Vec<f64>, d: usize, bandwidth: f64) -> Kde {
        Kde {
            points,
            d,
            bandwidth,
        }
    }

    /// Choose the bandwidth (40 values from 1e-3 to 1, log-spaced) that maximises the mean
    /// log-density of the odd rows under a KDE of the even rows; the result uses all rows.
    pub fn fit(points: Vec<f64>, d: usize) -> Kde {
        let rows: Vec<&[f64]> = points.chunks_exact(d).collect();
        let even: Vec<f64> = rows
            .iter()
            .step_by(2)
            .flat_map(|r| r.iter().copied())
            .collect();
        let odd: Vec<&[f64]> = rows.iter().skip(1).step_by(2).copied().collect();
        let mut best = (f64::NEG_INFINITY, 0.1);
        for i in 0..40 {
            let h = 1e-3 * 10f64.powf(3.0 * i as f64 / 39.0);
            let k = Kde::new(even.clone(), d, h);
            let ll = odd
                .iter()
                .map(|x| k.density(x).max(1e-300).ln())
                .sum::<f64>();
            if ll > best.0 {
                best = (ll, h);
            }
        }
        Kde::new(points, d, best.1)
    }

    pub fn density(&self, x: &[f64]) -> f64 {
        let n = self.points.len() / self.d;
        let h2 = self.bandwidth * self.bandwidth;
        let norm = (std::f64::consts::TAU * h2).powf(-(self.d as f64) / 2.0) / n as f64;
        self.points
            .chunks_exact(self.d)
            .map(|p| {
                let r2: f64 = p.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
                (-r2 / (2.0 * h2)).exp()
            })
            .sum::<f64>()
            * norm
    }
}

/// Monte Carlo JSD(P ‖ Q) (nats) from samples of each and the two densities (see the module
/// docs). `p_at_p` are (p(x), q(x)) at samples x of P, `at_q` the same at samples of Q.
pub fn jsd(at_p: &[(f64, f64)], at_q: &[(f64, f64)]) -> f64 {
    let term = |a: f64, b: f64| {
        if a > 0.0 {
            (2.0 * a / (a + b)).ln()
        } else {
            0.0
        }
    };
    let ep = at_p.iter().map(|&(p, q)| term(p, q)).sum::<f64>() / at_p.len() as f64;
    let eq = at_q.iter().map(|&(p, q)| term(q, p)).sum::<f64>() / at_q.len() as f64;
    0.5 * (ep + eq)
}

/// Monte Carlo Pearson χ²(P + Q ‖ 2Q) = ∫ (q − p)²/(p + q), from (p(x), q(x)) at equally
/// many samples of P and of Q (see the module docs).
pub fn pearson_chi2(at_p: &[(f64, f64)], at_q: &[(f64, f64)]) -> f64 {
    let all: Vec<&(f64, f64)> = at_p.iter().chain(at_q).collect();
    2.0 * all
        .iter()
        .map(|&&(p, q)| {
            if p + q > 0.0 {
                ((q - p) / (p + q)).powi(2)
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / all.len() as f64
}

/// |∂L_G/∂f| at D(G(z)) = σ(f) = `d`: minimax L = log(1 − σ(f)) gives σ(f) = d, which
/// vanishes as D rejects the fakes; non-saturating L = −log σ(f) gives 1 − d.
pub fn generator_logit_gradient(d: f64, non_saturating: bool) -> f64 {
    if non_saturating {
        1.0 - d
    } else {
        d
    }
}
