//! The GAN objectives of THEORY.md as one trait the trainer calls: the discriminator's loss
//! on a real and a fake batch, the generator's loss on a fake batch, and what "mean D(·)"
//! means for the metrics.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::loss::{
    discriminator_loss, lsgan_d_loss, lsgan_g_loss, minimax_generator_loss,
    nonsaturating_generator_loss, wgan_critic_loss, wgan_generator_loss, LsCoding,
};
use crate::tensor::Tensor;

/// What the trainer needs from a GAN objective. `real` and `fake` are the discriminator's
/// raw outputs (`[N, 1]`: logits, least-squares scores or critic values).
pub trait Objective: Send + Sync {
    /// The discriminator's (critic's) loss, which its optimizer minimises.
    fn d_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor>;
    /// The generator's loss, which its optimizer minimises.
    fn g_loss(&self, fake: &Tensor) -> Result<Tensor>;
    /// Mean D(·) over a batch of raw outputs, for the metrics: the probability σ(f) for
    /// the cross-entropy variants, the raw score for least squares and WGAN.
    fn mean_d(&self, out: &Tensor) -> Result<f64>;
}

/// The four variants, selectable by name (`gan`, `nsgan`, `lsgan`, `wgan`). Stored as
/// [`VariantFields`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "VariantFields", try_from = "VariantFields")]
pub enum Variant {
    /// Minimax: G minimises E log(1 − D(G(z))) (saturates when D rejects the fakes).
    Gan,
    /// Non-saturating: G minimises −E log D(G(z)).
    NsGan,
    /// Least squares with target coding (a, b, c); D has no sigmoid.
    LsGan(LsCoding),
    /// Wasserstein critic (no sigmoid) with weight clipping to [−clip, clip].
    WGan { clip: f64 },
}

impl Variant {
    pub const NAMES: [&'static str; 4] = ["gan", "nsgan", "lsgan", "wgan"];

    /// `gan`, `nsgan`, `lsgan` (with `coding`) or `wgan` (with `clip`).
    pub fn parse(name: &str, coding: LsCoding, clip: f64) -> Result<Variant> {
        match name {
            "gan" => Ok(Variant::Gan),
            "nsgan" => Ok(Variant::NsGan),
            "lsgan" => Ok(Variant::LsGan(coding)),
            "wgan" => {
                if !(clip.is_finite() && clip > 0.0) {
                    return Err(Error::invalid(format!(
                        "--clip {clip}: the WGAN weight clip must be a positive number (the paper uses 0.01)"
                    )));
                }
                Ok(Variant::WGan { clip })
            }
            other => Err(Error::invalid(format!(
                "--variant '{other}': unknown variant; choose one of {}",
                Variant::NAMES.join(", ")
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Variant::Gan => "gan",
            Variant::NsGan => "nsgan",
            Variant::LsGan(_) => "lsgan",
            Variant::WGan { .. } => "wgan",
        }
    }

    /// The weight clip applied to the critic after each of its steps (WGAN only).
    pub fn weight_clip(&self) -> Option<f64> {
        match self {
            Variant::WGan { clip } => Some(*clip),
            _ => None,
        }
    }
}

/// How a [`Variant`] is stored among the run configuration's fields: its name, the LSGAN
/// coding as `"a,b,c"` and the WGAN clip (`null` or absent where they do not apply; an
/// absent coding is `01`, an absent clip 0.01).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantFields {
    variant: String,
    #[serde(default)]
    ls_coding: Option<String>,
    #[serde(default)]
    clip: Option<f64>,
}

impl From<Variant> for VariantFields {
    fn from(v: Variant) -> VariantFields {
        VariantFields {
            variant: v.name().to_string(),
            ls_coding: match v {
                Variant::LsGan(c) => Some(format_ls_coding(c)),
                _ => None,
            },
            clip: v.weight_clip(),
        }
    }
}

impl TryFrom<VariantFields> for Variant {
    type Error = Error;
    fn try_from(f: VariantFields) -> Result<Variant> {
        let coding = match &f.ls_coding {
            Some(c) => parse_ls_coding(c)?,
            None => LsCoding::BINARY,
        };
        Variant::parse(&f.variant, coding, f.clip.unwrap_or(0.01))
    }
}

/// `01` = (0, 1, 1), `pm1` = (−1, 1, 0), or three numbers `a,b,c`.
pub fn parse_ls_coding(s: &str) -> Result<LsCoding> {
    match s {
        "01" => Ok(LsCoding::BINARY),
        "pm1" => Ok(LsCoding::PEARSON),
        _ => {
            let v: Vec<f64> = s
                .split(',')
                .map(|p| p.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad_coding(s))?;
            match v[..] {
                [a, b, c] if v.iter().all(|x| x.is_finite()) && a != b => Ok(LsCoding { a, b, c }),
                _ => Err(bad_coding(s)),
            }
        }
    }
}

fn bad_coding(s: &str) -> Error {
    Error::invalid(format!(
        "--ls-coding '{s}': use 01 for (a,b,c) = (0,1,1), pm1 for (-1,1,0), or three numbers \
         a,b,c with a != b (a: target for fakes, b: for reals, c: what G wants for its fakes)"
    ))
}

/// The coding as `a,b,c` (the form [`parse_ls_coding`] reads back).
pub fn format_ls_coding(c: LsCoding) -> String {
    format!("{:?},{:?},{:?}", c.a, c.b, c.c)
}

impl Objective for Variant {
    fn d_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        match self {
            Variant::Gan | Variant::NsGan => discriminator_loss(real, fake),
            Variant::LsGan(coding) => lsgan_d_loss(real, fake, *coding),
            Variant::WGan { .. } => wgan_critic_loss(real, fake),
        }
    }
    fn g_loss(&self, fake: &Tensor) -> Result<Tensor> {
        match self {
            Variant::Gan => minimax_generator_loss(fake),
            Variant::NsGan => nonsaturating_generator_loss(fake),
            Variant::LsGan(coding) => lsgan_g_loss(fake, *coding),
            Variant::WGan { .. } => wgan_generator_loss(fake),
        }
    }
    fn mean_d(&self, out: &Tensor) -> Result<f64> {
        match self {
            Variant::Gan | Variant::NsGan => out.sigmoid()?.mean_all()?.item(),
            Variant::LsGan(_) | Variant::WGan { .. } => out.mean_all()?.item(),
        }
    }
}
