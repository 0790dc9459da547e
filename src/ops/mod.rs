//! Op families. Each folder holds one family: `mod.rs` (the API and the dispatch to a
//! backend), `cpu.rs` (the Rust reference kernels), `simt.rs` (the launch logic shared
//! by `cuda` and `emu`, driving `kernels/<family>.cu`).

pub mod cast;
pub mod elementwise;
pub mod fill;
pub mod reduce;
pub mod rng;
