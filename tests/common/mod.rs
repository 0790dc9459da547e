//! Helpers shared by integration tests: temp directories, PNG decoding, running the `duel`
//! binary, the exact bits of a tensor, deterministic test data, the f32 summation bound and
//! the emulator schedules the parity tests run in.

#![allow(dead_code)] // each test binary compiles this module and uses a subset of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory `duel-<tag>-<pid>` under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory empty (removing one a previous run left).
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("duel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    /// `path(rel)` as a command-line argument.
    pub fn arg(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Width, height and colour type of a PNG file (decoding every pixel).
pub fn png_info(path: &Path) -> (u32, u32, png::ColorType) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file)
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: bad PNG data: {e}", path.display()));
    (frame.width, frame.height, frame.color_type)
}

/// Width and height of a PNG file (decoding every pixel).
pub fn png_size(path: &Path) -> (u32, u32) {
    let (w, h, _) = png_info(path);
    (w, h)
}

/// Runs the `duel` binary with `args` (RUST_BACKTRACE unset) and waits for it.
pub fn duel(args: &[&str]) -> Output {
    duel_with_env(args, &[])
}

/// [`duel`] with the variables `env` set for the child.
pub fn duel_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duel"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run duel")
}

/// The exact bits of every element, widened to u64 (f64 bits as they are).
pub fn bits(t: &duel::Tensor) -> Vec<u64> {
    use duel::DType;
    use half::{bf16, f16};
    fn widen<T: Copy>(v: Vec<T>, f: impl Fn(T) -> u64) -> Vec<u64> {
        v.into_iter().map(f).collect()
    }
    match t.dtype() {
        DType::F32 => widen(t.to_vec::<f32>().unwrap(), |x| x.to_bits() as u64),
        DType::F64 => widen(t.to_vec::<f64>().unwrap(), f64::to_bits),
        DType::F16 => widen(t.to_vec::<f16>().unwrap(), |x| x.to_bits() as u64),
        DType::BF16 => widen(t.to_vec::<bf16>().unwrap(), |x| x.to_bits() as u64),
    }
}

/// The metrics.jsonl fields that do not depend on timing (`img_per_s` and `elapsed_s` do).
pub const DETERMINISTIC_METRICS: [&str; 7] = [
    "step",
    "d_loss",
    "g_loss",
    "d_real",
    "d_fake",
    "d_grad_norm",
    "g_grad_norm",
];

/// Deterministic values in [-2, 2), multiples of 2^-22 (exact in f32 and f64), from a small
/// LCG: no dependence on the op families under test.
pub fn lcg_data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// f32's unit roundoff, 2^-24.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// `γ_k = k·u/(1 − k·u)`: any order of k f32 additions is off the exact sum by at most
/// `γ_k·Σ|terms|` (Higham, Thm 4.4).
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    ku / (1.0 - ku)
}

/// Forward and reverse, plus DUEL_EMU_SCHEDULE's order when it is another (CI's random
/// seed); races and the trace as the environment says.
pub fn emu_schedules() -> Vec<duel::device::emu::Schedule> {
    use duel::device::emu::{EmuOptions, Schedule};
    let mut v = vec![Schedule::Forward, Schedule::Reverse];
    let env = EmuOptions::from_env().schedule;
    if !v.contains(&env) {
        v.push(env);
    }
    v
}
