//! Subcommands of the `duel` binary that need more than a few lines.

pub mod bench;
pub mod check;
pub mod eval;
pub mod img2img;
pub mod theory;
pub mod trace;
pub mod train;
pub mod translate;

/// A flag given on the command line overrides the value it was defaulted or loaded with.
fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}
