//! The unit tests of build.rs's modules (build/*.rs): a build script's own `#[cfg(test)]`
//! tests never run, so they are compiled here as ordinary modules.

#[path = "../build/kernel_sigs.rs"]
mod kernel_sigs;
