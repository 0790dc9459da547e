//! Branch-free f32 transcendentals for the cpu row loops (libm's are opaque calls that
//! stop vectorisation): each computes in f64 and rounds once, so it is the correctly
//! rounded value except within its f64 error (2e-10 relative for exp, 4e-9 for tanh) of
//! a rounding tie, i.e. at most 1 ulp from it, like the libm functions the CUDA kernels
//! call. The tests below check exactly those bounds.

/// `e^x` for f32, branch-free so row loops vectorise (libm's `expf` is an opaque call).
/// Computed in f64: `x·log2(e) = n + f` with `n` rounded to an integer by the 1.5·2^52
/// trick and |f| <= 1/2, `2^f` by a degree-8 Taylor polynomial of `e^(f·ln 2)` (relative
/// error < 2e-10: the first term left out, (ln2/2)⁹/9!), `2^n` by writing the exponent
/// bits. One final rounding to f32, so the result is the correctly rounded value except
/// within 2e-10 (relative) of a tie: at most 1 ulp from a correctly rounded `expf`. The
/// f64 range covers all of f32's, so overflow to inf and the subnormal results come out
/// of the final conversion; inputs are clamped to [-150, 90] first (beyond those the f32
/// result is 0 or inf anyway) and NaN survives the comparisons and the arithmetic.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    exp_core(x as f64) as f32
}

/// `e^x` in f64 to a relative error below 2e-10 for x in [-150, 90] (clamped there; NaN
/// passes): the core of [`exp_f32`] and [`tanh_f32`].
#[inline(always)]
fn exp_core(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    let x = if x < -150.0 { -150.0 } else { x };
    let x = if x > 90.0 { 90.0 } else { x };
    let r = x * std::f64::consts::LOG2_E;
    let t = r + MAGIC;
    let n = t - MAGIC; // r rounded to an integer
    let y = (r - n) * std::f64::consts::LN_2;
    // e^y, |y| <= ln2/2, Horner form of sum y^k/k!, k = 0..8.
    let p = 1.0 / 40320.0;
    let p = p * y + 1.0 / 5040.0;
    let p = p * y + 1.0 / 720.0;
    let p = p * y + 1.0 / 120.0;
    let p = p * y + 1.0 / 24.0;
    let p = p * y + 1.0 / 6.0;
    let p = p * y + 0.5;
    let p = p * y + 1.0;
    let p = p * y + 1.0;
    // The low bits of t hold n (two's complement); 2^n = bits (n + 1023) << 52.
    let scale = f64::from_bits((t.to_bits().wrapping_add(1023)) << 52);
    p * scale
}

/// `tanh x` for f32. In f64: for |x| < 1/16 the odd Taylor series through x⁹ (the first
/// term left out, 1382/155925·|x|¹¹, is below 1e-14·|x| there); otherwise
/// `1 − 2/(e^{2|x|} + 1)`, whose absolute error 2e-10 (from `exp_core`) is below 4e-9
/// relative to tanh(1/16) and smaller beyond. The sign is copied from x (tanh(−0) = −0);
/// ±inf give ±1 (the exponent is clamped) and NaN gives NaN.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
    let x = x as f64;
    let a = x.abs();
    let s = a * a;
    let series =
        a * (1.0 + s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0 + s * (62.0 / 2835.0)))));
    let far = 1.0 - 2.0 / (exp_core(2.0 * a) + 1.0);
    let t = if a < 0.0625 { series } else { far };
    t.copysign(x) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound each function's doc derives: the final rounding (half an f32 spacing)
    /// plus the f64 computation's relative error `rel`, in spacings at `exact`.
    fn bound(exact: f64, rel: f64) -> f64 {
        0.5 + rel * exact.abs() / spacing(exact)
    }

    fn spacing(exact: f64) -> f64 {
        let e = exact as f32;
        if e == 0.0 {
            f32::from_bits(1) as f64
        } else {
            let b = e.abs().to_bits();
            (f32::from_bits(b + 1) as f64 - f32::from_bits(b) as f64).abs()
        }
    }

    /// |got − exact| in units of the f32 spacing at `exact` (exact computed in f64 by libm,
    /// itself within 1e-16 relative, far below what this measures).
    fn ulps(got: f32, exact: f64) -> f64 {
        (got as f64 - exact).abs() / spacing(exact)
    }

    /// Inputs across every binade that matters (and both sides of the 1/16 switch).
    fn inputs() -> Vec<f32> {
        let mut v = vec![
            0.0, -0.0, 1e-45, -1e-45, 1e-38, 0.0625, -0.0625, 9.0, 45.0, 100.0,
        ];
        v.push(f32::from_bits(0.0625f32.to_bits() - 1));
        let mut x = 1e-30f32;
        while x < 60.0 {
            v.extend([x, -x]);
            x *= 1.000_37;
        }
        v
    }

    #[test]
    fn tanh_is_within_its_derived_bound_of_the_exact_value_everywhere() {
        let mut worst = 0.0f64;
        for x in inputs() {
            let got = tanh_f32(x);
            let exact = (x as f64).tanh();
            let u = ulps(got, exact);
            assert!(
                u <= bound(exact, 4e-9),
                "tanh({x:e}) = {got:e}, {u} ulp from {exact:e}"
            );
            worst = worst.max(u);
        }
        assert!(
            worst > 0.4,
            "the sweep should meet a near-half-ulp case (worst {worst})"
        );
    }

    #[test]
    fn tanh_edge_values() {
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(1e-40), 1e-40, "tanh is the identity on subnormals");
    }

    #[test]
    fn exp_is_within_its_derived_bound_of_the_exact_value() {
        for x in inputs().into_iter().filter(|x| x.abs() < 85.0) {
            let exact = (x as f64).exp();
            let u = ulps(exp_f32(x), exact);
            assert!(u <= bound(exact, 2e-10), "exp({x:e}): {u} ulp");
        }
    }
}
