//! Subcommands of the `duel` binary that need more than a few lines.

pub mod bench;
pub mod eval;
pub mod img2img;
pub mod theory;
pub mod train;
pub mod translate;
