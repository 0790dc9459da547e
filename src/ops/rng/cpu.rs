//! Philox4x32-10 and the f32 math the RNG needs, written so that the CUDA kernels in
//! kernels/rng.cu perform exactly the same sequence of IEEE operations (only `+`, `-`,
//! `*`, fused multiply-add, correctly rounded `sqrt` and bit manipulation). No libm call
//! is made, so `cpu`, `emu` and a GPU produce bit-identical numbers.

use rayon::prelude::*;

use crate::device::cpu::PARALLEL_THRESHOLD;

/// Philox multipliers and Weyl key increments (Salmon et al. 2011).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

#[inline(always)]
fn philox_round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
    let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// The Philox4x32 bijection with 10 rounds: 4 random words from a counter and a key.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    c = philox_round(c, k);
    for _ in 1..10 {
        k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        c = philox_round(c, k);
    }
    c
}

/// The key of a 64-bit seed: (low word, high word).
#[inline(always)]
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The 4 words of block `block` (positions 4·block .. 4·block+3) of the stream of `seed`.
#[inline(always)]
pub fn philox_block(seed: u64, block: u64) -> [u32; 4] {
    philox4x32_10([block as u32, (block >> 32) as u32, 0, 0], seed_key(seed))
}

/// A handle on the Philox stream of one seed: word `p` of the stream is word `p % 4` of
/// `philox4x32_10([p/4 lo, p/4 hi, 0, 0], [seed lo, seed hi])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    pub seed: u64,
}

impl Philox {
    pub fn new(seed: u64) -> Self {
        Philox { seed }
    }
    /// The u32 word at `position` of the stream.
    pub fn word(&self, position: u64) -> u32 {
        philox_block(self.seed, position / 4)[(position % 4) as usize]
    }
    /// The uniform [0, 1) value at `position` (what `rand` yields there).
    pub fn uniform(&self, position: u64) -> f32 {
        uniform_from_word(self.word(position))
    }
    /// The standard normal value at `position` (what `randn` yields there).
    pub fn normal(&self, position: u64) -> f32 {
        let w = philox_block(self.seed, position / 4);
        let j = (position % 4) as usize;
        let pair = j & !1;
        let (c, s) = box_muller(w[pair], w[pair + 1]);
        if j.is_multiple_of(2) {
            c
        } else {
            s
        }
    }
}

/// The uniform value at `position` of the stream of `seed`.
pub fn uniform_at(seed: u64, position: u64) -> f32 {
    Philox::new(seed).uniform(position)
}

/// The normal value at `position` of the stream of `seed`.
pub fn normal_at(seed: u64, position: u64) -> f32 {
    Philox::new(seed).normal(position)
}

const TWO_POW_M24: f32 = 5.960_464_5e-8; // 2^-24, exact

/// u32 → [0, 1): the top 24 bits times 2^-24 (exact in f32).
#[inline(always)]
pub fn uniform_from_word(w: u32) -> f32 {
    (w >> 8) as f32 * TWO_POW_M24
}

// ---- logf ------------------------------------------------------------------------------
// x = 2^e · m with m in [√½, √2); log x = e·ln2 + log1p(f), f = m − 1 (exact).
// log1p(f) = f − f²/2 + f³·P(f) with the Cephes logf polynomial, evaluated by fma Horner;
// ln2 = 0.693359375 (exact, few bits) − 2.12194440e-4.
const LOG_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_87e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
const LN2_HI: f32 = 0.693_359_4; // = 0.693359375 exactly
const LN2_LO: f32 = -2.121_944_4e-4;

/// Natural logarithm of a positive, normal, finite f32 (what Box–Muller feeds it:
/// (0, 1]). Same operation sequence as `duel_logf` in kernels/rng.cu. Other inputs
/// (0, negative, subnormal, inf, NaN) are outside its contract.
#[inline(always)]
pub fn logf(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut mbits = (bits & 0x007f_ffff) | 0x3f80_0000; // m in [1, 2)
    if mbits > 0x3fb5_04f3 {
        // m > √2: halve it (exact: exponent field 127 → 126)
        mbits -= 0x0080_0000;
        e += 1;
    }
    let f = f32::from_bits(mbits) - 1.0;
    let ef = e as f32;
    let z = f * f;
    let mut p = LOG_P[0];
    for &c in &LOG_P[1..] {
        p = p.mul_add(f, c);
    }
    let mut y = (f * z) * p;
    y = ef.mul_add(LN2_LO, y);
    y = z.mul_add(-0.5, y);
    let r = f + y;
    ef.mul_add(LN2_HI, r)
}

// ---- sincos(2πu) ---------------------------------------------------------------------
// u = k·2^-24 (k < 2^24 an integer). Quadrant j = round(4u) and t = 4u − j in [−½, ½]
// come from exact integer arithmetic; sin(π/2·t), cos(π/2·t) are Taylor polynomials
// (truncation error < 2e-9 absolute) evaluated by fma Horner in t².
const SIN_HI: f32 = 1.570_796_4; // π/2 rounded to f32
const SIN_LO: f32 = -4.371_139e-8; // π/2 − SIN_HI
const SIN_P: [f32; 4] = [1.604_411_8e-4, -4.681_754e-3, 7.969_262_5e-2, -6.459_641e-1];
const COS_P: [f32; 5] = [
    -2.520_204_2e-5,
    9.192_602_6e-4,
    -2.086_348e-2,
    2.536_695e-1,
    -1.233_700_5,
];
const TWO_POW_M22: f32 = 2.384_185_8e-7; // 2^-22, exact

/// (sin 2πu, cos 2πu) for u = k·2^-24, k in [0, 2^24). Same operation sequence as
/// `duel_sincos2pi` in kernels/rng.cu.
#[inline(always)]
pub fn sincos_2pi(k: u32) -> (f32, f32) {
    // 4u = k·2^-22; j = round(4u) (ties up), t = 4u − j = (k − j·2^22)·2^-22 exactly
    let j = (k + (1 << 21)) >> 22;
    let tk = k as i32 - (j << 22) as i32;
    let t = tk as f32 * TWO_POW_M22;
    let t2 = t * t;
    let mut ps = SIN_P[0];
    for &c in &SIN_P[1..] {
        ps = ps.mul_add(t2, c);
    }
    let t3 = t2 * t;
    let s = t.mul_add(SIN_HI, t.mul_add(SIN_LO, t3 * ps));
    let mut pc = COS_P[0];
    for &c in &COS_P[1..] {
        pc = pc.mul_add(t2, c);
    }
    let c = t2.mul_add(pc, 1.0);
    match j & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// Box–Muller on two words: (r·cos 2πu2, r·sin 2πu2) with r = √(−2 ln u1),
/// u1 = ((w0 >> 8) + 1)·2^-24 in (0, 1], u2 = (w1 >> 8)·2^-24.
#[inline(always)]
pub fn box_muller(w0: u32, w1: u32) -> (f32, f32) {
    let u1 = ((w0 >> 8) + 1) as f32 * TWO_POW_M24;
    let r = (-2.0 * logf(u1)).sqrt();
    let (s, c) = sincos_2pi(w1 >> 8);
    (r * c, r * s)
}

/// Chunk size of the parallel fill: a multiple of 4 so chunks start on whole blocks of
/// the output (any chunking gives the same numbers; this just keeps blocks whole).
const CHUNK: usize = 1 << 14;

/// Fill `out` with the uniform stream of `seed` at positions `offset ..`.
pub fn uniform_f32(out: &mut [f32], seed: u64, offset: u64) {
    fill_parallel(out, seed, offset, uniform_serial_dispatch);
}

/// Fill `out` with the normal stream of `seed` at positions `offset ..`.
pub fn normal_f32(out: &mut [f32], seed: u64, offset: u64) {
    fill_parallel(out, seed, offset, normal_serial_dispatch);
}

#[inline(always)]
fn uniform4(w: [u32; 4]) -> [f32; 4] {
    w.map(uniform_from_word)
}

#[inline(always)]
fn normal4(w: [u32; 4]) -> [f32; 4] {
    let (c0, s0) = box_muller(w[0], w[1]);
    let (c1, s1) = box_muller(w[2], w[3]);
    [c0, s0, c1, s1]
}

/// Values for positions `start .. start + out.len()`: a partial head block, whole
/// blocks, a partial tail block.
#[inline(always)]
fn serial<const NORMAL: bool>(out: &mut [f32], seed: u64, start: u64) {
    // direct calls (not a closure) so everything inlines into the target_feature callers
    #[inline(always)]
    fn f<const NORMAL: bool>(w: [u32; 4]) -> [f32; 4] {
        if NORMAL {
            normal4(w)
        } else {
            uniform4(w)
        }
    }
    let head = (((4 - start % 4) % 4) as usize).min(out.len());
    if head > 0 {
        let j = (start % 4) as usize;
        let v = f::<NORMAL>(philox_block(seed, start / 4));
        out[..head].copy_from_slice(&v[j..j + head]);
    }
    let len = out.len();
    let first = start.wrapping_add(head as u64) / 4;
    let mut blocks = out[head..].chunks_exact_mut(4);
    for (b, o) in (&mut blocks).enumerate() {
        o.copy_from_slice(&f::<NORMAL>(philox_block(
            seed,
            first.wrapping_add(b as u64),
        )));
    }
    let tail = blocks.into_remainder();
    if !tail.is_empty() {
        let p = start.wrapping_add((len - tail.len()) as u64);
        let v = f::<NORMAL>(philox_block(seed, p / 4));
        let n = tail.len();
        tail.copy_from_slice(&v[..n]);
    }
}

// With hardware FMA the `mul_add`s become single instructions instead of libm calls;
// the results are identical (fma is exactly rounded either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn normal_serial_fma(out: &mut [f32], seed: u64, start: u64) {
    serial::<true>(out, seed, start)
}

fn normal_serial_dispatch(out: &mut [f32], seed: u64, start: u64) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        unsafe { normal_serial_fma(out, seed, start) };
        return;
    }
    serial::<true>(out, seed, start)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn uniform_serial_avx2(out: &mut [f32], seed: u64, start: u64) {
    serial::<false>(out, seed, start)
}

fn uniform_serial_dispatch(out: &mut [f32], seed: u64, start: u64) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was just detected.
        unsafe { uniform_serial_avx2(out, seed, start) };
        return;
    }
    serial::<false>(out, seed, start)
}

/// Any chunking gives the same numbers (each value is a function of its position).
fn fill_parallel(out: &mut [f32], seed: u64, offset: u64, serial: fn(&mut [f32], u64, u64)) {
    if out.len() < PARALLEL_THRESHOLD {
        serial(out, seed, offset);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| serial(chunk, seed, offset.wrapping_add((c * CHUNK) as u64)));
    }
}
