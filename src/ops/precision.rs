//! The compute precision of the GEMM-shaped ops (matmul, conv2d, conv_transpose2d): `f32`
//! (the default), or `bf16` / `f16` *operands* with f32 accumulation — mixed precision as
//! PyTorch's autocast does it for these ops. Everything else (batch norm and its
//! statistics, reductions, losses, optimizers, weight clipping) computes in f32 whatever
//! the precision; parameters and optimizer state stay f32 tensors.
//!
//! **Scope.** The precision is a property of the calling thread, set for the duration of a
//! closure by [`with_precision`] (nested scopes restore the outer one, also on a panic).
//! An op reads it once, when it is called, and keeps it for its backward pass: the
//! gradients of a product computed in bf16 are computed in bf16 too, wherever
//! `backward()` runs. f64 tensors ignore it (gradient checks stay in f64).
//!
//! **What each backend does.** An operand is rounded to the reduced type to nearest even
//! as it is read (a bf16 keeps 8 significant bits, an f16 11 with the range ±65504, beyond
//! which a value becomes ±inf — what f16 loss scaling guards against); the products of
//! two rounded values are exact in f32 (8 + 8 and 11 + 11 bits ≤ 24) and are summed in
//! f32. cpu: bf16 on AMX-BF16 / AVX512-BF16 when the CPU has them (`ops::gemm_bf16`),
//! f16 by rounding the operands and running the f32 GEMM on them. cuda/emu: tensor-core
//! `mma.sync` kernels (kernels/matmul_mma.cu).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::fmt;

/// The operand type of the GEMM-shaped ops (accumulation is f32 in all three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands: the reference.
    #[default]
    F32,
    /// bfloat16 operands (8 significant bits, f32's range).
    Bf16,
    /// IEEE half operands (11 significant bits, range ±65504): needs loss scaling.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// `f32`, `bf16`, `f16` (as on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The unit roundoff of one operand rounding, `2^-p` for p significant bits: 0 for
    /// f32 (no rounding beyond the f32 GEMM's own), `2^-8` for bf16, `2^-11` for f16.
    pub fn operand_unit(self) -> f64 {
        match self {
            Precision::F32 => 0.0,
            Precision::Bf16 => 2f64.powi(-8),
            Precision::F16 => 2f64.powi(-11),
        }
    }

    /// Round one f32 to this precision's operand type (to nearest even) and back: what a
    /// GEMM operand becomes. f32 is unchanged.
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
            Precision::F16 => half::f16::from_f32(x).to_f32(),
        }
    }

    /// How the GEMM-shaped ops run at this precision on this cpu (`duel devices`, `duel
    /// bench`; `DUEL_CPU_ISA` limits the bf16 units as everywhere).
    pub fn cpu_route(self) -> &'static str {
        use crate::ops::gemm_bf16::Bf16Path;
        match self {
            Precision::F32 => "f32 GEMM",
            Precision::Bf16 => match Bf16Path::detected() {
                Bf16Path::Amx => "amx-bf16 tiles (thin shapes: f32 GEMM on bf16-rounded operands)",
                Bf16Path::Avx512 => {
                    "avx512-bf16 vdpbf16ps (thin shapes: f32 GEMM on bf16-rounded operands)"
                }
                Bf16Path::Portable => "no bf16 units: f32 GEMM on bf16-rounded operands",
            },
            Precision::F16 => "f32 GEMM on f16-rounded operands",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--precision {s}: unknown precision; use f32, bf16 or f16"
                ))
            })
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision the GEMM-shaped ops called now on this thread use.
pub fn current() -> Precision {
    CURRENT.with(Cell::get)
}

/// Run `f` with the GEMM-shaped ops in precision `p`; the previous precision is restored
/// afterwards, also when `f` panics.
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(p)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(current(), Precision::F32);
        with_precision(Precision::Bf16, || {
            assert_eq!(current(), Precision::Bf16);
            with_precision(Precision::F16, || assert_eq!(current(), Precision::F16));
            assert_eq!(current(), Precision::Bf16);
        });
        assert_eq!(current(), Precision::F32);
        let caught = std::panic::catch_unwind(|| with_precision(Precision::F16, || panic!()));
        assert!(caught.is_err());
        assert_eq!(current(), Precision::F32, "a panic must not leak the scope");
    }

    #[test]
    fn names_parse_back_and_bad_names_say_the_fix() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        let e = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("use f32, bf16 or f16"), "{e}");
    }

    #[test]
    fn rounding_keeps_the_stated_bits() {
        // 1 + 2^-9 lies below bf16's halfway point 1 + 2^-8 and rounds to 1 (8 significant
        // bits); f16 keeps it (11 bits); 70000 overflows f16 only.
        let x = 1.0 + 2f32.powi(-9);
        assert_eq!(Precision::Bf16.round(x), 1.0);
        assert_eq!(Precision::F16.round(x), x);
        assert_eq!(Precision::F32.round(x), x);
        assert_eq!(Precision::F16.round(70000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70000.0), 70144.0);
    }
}
