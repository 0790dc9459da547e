//! The GAN layer: the objectives of THEORY.md ([`objective`]), the networks ([`arch`]),
//! a run's description ([`config`]), Algorithm 1 ([`trainer`]) and the run directory that
//! `duel train` writes ([`run`]).
//!
//! ```no_run
//! use duel::gan::{arch::Arch, config::{DataSpec, TrainConfig}, objective::Variant, trainer::Trainer};
//! let config = TrainConfig::defaults(Variant::NsGan, Arch::Mlp, DataSpec::Ring8);
//! let mut t = Trainer::new(config, &duel::Device::Cpu)?;
//! for _ in 0..100 {
//!     let m = t.train_step()?;
//!     println!("step {} D {:.3} G {:.3}", m.step, m.d_loss, m.g_loss);
//! }
//! # Ok::<(), duel::Error>(())
//! ```

pub mod arch;
pub mod budget;
pub mod config;
pub mod evaluate;
pub mod img2img;
pub mod objective;
pub mod run;
mod source;
pub mod trainer;

pub use crate::optim::LossScalers;
pub use arch::Arch;
pub use config::{DataSpec, ImageRows, OptimizerKind, TrainConfig};
pub use objective::{Objective, Variant};
pub use trainer::{StepMetrics, Trainer};
