//! Op families. Each folder holds one family: `mod.rs` (the API and the dispatch to a
//! backend), `cpu.rs` (the Rust reference kernels), `simt.rs` (the launch logic shared
//! by `cuda` and `emu`, driving `kernels/<family>.cu`).

pub mod cast;
pub mod concat;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod fill;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod reduce;
pub mod rng;
pub mod upsample;
pub mod view;
