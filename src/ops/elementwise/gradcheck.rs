//! Gradient-check cases of the elementwise family (f64 cpu; see `autograd::gradcheck`).

use super::{binary, unary, BinaryOp, UnaryOp};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::tape;
use crate::tensor::Tensor;

/// `t` (f64, cpu) with every value closer than `margin` to one of `points` pushed out to
/// `margin` away from it (for gradient checks near kinks that are not at 0).
fn away_from(t: Tensor, points: &[f64], margin: f64) -> Result<Tensor> {
    let mut v = t.to_vec::<f64>()?;
    for x in &mut v {
        for &p in points {
            if (*x - p).abs() < margin {
                *x = if *x >= p { p + margin } else { p - margin };
            }
        }
    }
    Tensor::from_vec(v, t.shape().clone(), &Device::Cpu)
}

/// Two f64 inputs whose broadcast pairs are at least `gap` apart (no near-ties for
/// maximum/minimum) and where each operand wins some pairs (so neither gradient is all
/// zeros): the first seed from `seed` that satisfies both.
fn separated(a: &[usize], b: &[usize], seed: u64, gap: f64) -> Result<(Tensor, Tensor)> {
    use crate::ops::grad_case::input;
    for s in seed..seed + 10_000 {
        let (x, y) = (input(a, s, 0.0)?, input(b, s + 1000, 0.0)?);
        let d = tape::no_grad(|| x.sub(&y))?.to_vec::<f64>()?;
        if d.iter().all(|&v| v.abs() >= gap)
            && d.iter().any(|&v| v > 0.0)
            && d.iter().any(|&v| v < 0.0)
        {
            return Ok((x, y));
        }
    }
    Err(Error::invalid(format!(
        "gradcheck: no seed gives separated {a:?} and {b:?} inputs"
    )))
}

/// Gradient-check cases for this family (see `autograd::gradcheck`): every unary op
/// (copy through `contiguous()` of a transposed view), every binary op with equal shapes,
/// with broadcasting `[2,3]⊕[3]` and `[4,1]⊕[1,5]`, with one tensor used as both
/// operands (`x*x`), and maximum/minimum at exact ties (where central differences see
/// the half/half split). Inputs keep away from kinks: relu/abs/leaky_relu at 0, clamp at
/// its bounds, log/sqrt/pow bases and divisors away from 0, maximum/minimum away from
/// near-ties.
pub fn gradcheck_cases() -> Result<Vec<crate::ops::grad_case::GradCase>> {
    use crate::ops::grad_case::{input, positive_input, GradCase};
    let mut cases = Vec::new();

    // ---- unary ----
    let unary_case = |op: UnaryOp, variant: &str, x: Tensor| {
        GradCase::new(op.name(), variant, vec![x], move |x| unary(&x[0], op))
    };
    cases.push(GradCase::new(
        UnaryOp::Copy.name(),
        "strided view [3,2] -> contiguous",
        vec![input([2, 3], 1, 0.0)?.t()?],
        // The leaf is the strided view, so contiguous() runs (and records) the copy; the
        // perturbed inputs of the finite differences are contiguous, which is the same
        // function.
        |x| x[0].contiguous(),
    ));
    cases.push(GradCase::new(
        UnaryOp::Copy.name(),
        "x.t().contiguous(), x [2,3]",
        vec![input([2, 3], 18, 0.0)?],
        |x| x[0].t()?.contiguous(),
    ));
    cases.push(unary_case(UnaryOp::Neg, "[2,3]", input([2, 3], 2, 0.0)?));
    cases.push(unary_case(UnaryOp::Exp, "[2,3]", input([2, 3], 3, 0.0)?));
    cases.push(unary_case(
        UnaryOp::Log,
        "[2,3] in [0.5, 2.5)",
        positive_input([2, 3], 4, 0.5)?,
    ));
    cases.push(unary_case(
        UnaryOp::Sqrt,
        "[2,3] in [0.5, 2.5)",
        positive_input([2, 3], 5, 0.5)?,
    ));
    cases.push(unary_case(
        UnaryOp::Abs,
        "[2,3], |x| >= 0.1",
        input([2, 3], 6, 0.1)?,
    ));
    cases.push(unary_case(
        UnaryOp::Relu,
        "[2,3], |x| >= 0.1",
        input([2, 3], 7, 0.1)?,
    ));
    cases.push(unary_case(
        UnaryOp::LeakyRelu { slope: 0.2 },
        "slope 0.2, [2,3], |x| >= 0.1",
        input([2, 3], 8, 0.1)?,
    ));
    cases.push(unary_case(
        UnaryOp::Sigmoid,
        "[2,3]",
        input([2, 3], 9, 0.0)?,
    ));
    cases.push(unary_case(UnaryOp::Tanh, "[2,3]", input([2, 3], 10, 0.0)?));
    cases.push(unary_case(
        UnaryOp::Clamp {
            min: -1.0,
            max: 1.0,
        },
        "[-1,1], [3,4], 0.05 from bounds",
        away_from(input([3, 4], 11, 0.0)?, &[-1.0, 1.0], 0.05)?,
    ));
    cases.push(unary_case(
        UnaryOp::Powf { exponent: 2.5 },
        "x^2.5, [2,3] in [0.5, 2.5)",
        positive_input([2, 3], 12, 0.5)?,
    ));
    cases.push(unary_case(
        UnaryOp::Powf { exponent: -1.5 },
        "x^-1.5, [2,3] in [0.5, 2.5)",
        positive_input([2, 3], 13, 0.5)?,
    ));
    cases.push(unary_case(
        UnaryOp::Powf { exponent: 3.0 },
        "x^3 (negative bases), [2,3]",
        input([2, 3], 14, 0.0)?,
    ));
    cases.push(unary_case(
        UnaryOp::Powf { exponent: 0.0 },
        "x^0, [2,3]",
        input([2, 3], 15, 0.1)?,
    ));
    cases.push(unary_case(
        UnaryOp::Affine {
            mul: 1.5,
            add: -0.5,
        },
        "1.5x - 0.5, [2,3]",
        input([2, 3], 16, 0.0)?,
    ));
    cases.push(GradCase::new(
        UnaryOp::Affine { mul: 1.0, add: 0.0 }.name(),
        "add_scalar(2).mul_scalar(-3), [5]",
        vec![input([5], 17, 0.0)?],
        |x| x[0].add_scalar(2.0)?.mul_scalar(-3.0),
    ));

    // ---- binary ----
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[2, 3], &[2, 3]), (&[2, 3], &[3]), (&[4, 1], &[1, 5])];
    for (k, op) in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, &(sa, sb)) in shapes.iter().enumerate() {
            let seed = 100 + 10 * k as u64 + 2 * j as u64;
            let (a, b) = match op {
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => {
                    (input(sa, seed, 0.0)?, input(sb, seed + 1, 0.0)?)
                }
                BinaryOp::Div => (input(sa, seed, 0.0)?, input(sb, seed + 1, 0.5)?),
                BinaryOp::Pow => (positive_input(sa, seed, 0.5)?, input(sb, seed + 1, 0.0)?),
                BinaryOp::Maximum | BinaryOp::Minimum => separated(sa, sb, seed, 0.01)?,
            };
            let variant = format!("{sa:?} {} {sb:?}", op.name());
            cases.push(GradCase::new(op.name(), variant, vec![a, b], move |x| {
                binary(&x[0], &x[1], op)
            }));
        }
        // One tensor as both operands: the gradient is the sum of both partials.
        let x = match op {
            BinaryOp::Div | BinaryOp::Pow => positive_input([2, 3], 200 + k as u64, 0.5)?,
            _ => input([2, 3], 200 + k as u64, 0.0)?,
        };
        cases.push(GradCase::new(
            op.name(),
            format!("x {} x (one tensor twice)", op.name()),
            vec![x],
            move |x| binary(&x[0], &x[0], op),
        ));
    }
    // Exact ties: equal values in two tensors, each gets half (central differences agree).
    for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
        let a = input([2, 3], 300, 0.0)?;
        let b = a.contiguous()?.mul_scalar(1.0)?;
        cases.push(GradCase::new(
            op.name(),
            "ties a == b (half/half), [2,3]",
            vec![a, b],
            move |x| binary(&x[0], &x[1], op),
        ));
    }
    Ok(cases)
}
