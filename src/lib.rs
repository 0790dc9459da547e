//! duel — a GAN engine whose compute is hand-written CUDA kernels (`kernels/*.cu`), whose
//! gradients come from a hand-written reverse-mode autodiff, and whose kernels are proven
//! on machines without a GPU by running the same CUDA source in an emulator.
//!
//! Start with [`prelude`] and examples/toy_gan.rs (a GAN in ~80 lines); the README's
//! "Layout" and "Backends" sections say how the crate fits together.

pub mod autograd;
pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod gan;
pub mod io;
#[doc(hidden)]
pub mod kernels;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod prelude;
pub mod profile;
pub mod tensor;

pub use device::Device;
pub use error::{Error, Result};
pub use tensor::{DType, Shape, Tensor};
