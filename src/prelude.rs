//! `use duel::prelude::*;` brings in what a program that builds and trains a model uses:
//! tensors and devices, the layers and their options, the optimizers, the GAN losses and
//! the autograd switches, the mixed-precision scope (examples/toy_gan.rs uses it).

pub use crate::autograd::{freeze, no_grad};
pub use crate::device::Device;
pub use crate::error::{Error, Result};
pub use crate::nn::{
    state_dict, BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, InstanceNorm2d,
    LeakyReLU, Linear, Module, ParamRng, ReLU, Reshape, Sequential, Sigmoid, Tanh,
};
pub use crate::ops::conv::{Conv2dParams, ConvTranspose2dParams};
pub use crate::ops::loss::{
    bce_with_logits, discriminator_loss, l1, mse, nonsaturating_generator_loss,
};
pub use crate::ops::precision::{with_precision, Precision};
pub use crate::optim::{Adam, AdamConfig, LossScaler, Optimizer, Sgd, SgdConfig};
pub use crate::tensor::{DType, Shape, Tensor};
