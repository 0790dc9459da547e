//! Gradient-check cases of conv2d and conv_transpose2d (f64 cpu; see `autograd::gradcheck`).

use super::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, CONV, CONVT};
use crate::error::Result;
use crate::tensor::Tensor;

/// Gradient-check cases (f64 cpu; see `autograd::gradcheck`).
pub fn gradcheck_cases() -> Result<Vec<crate::ops::grad_case::GradCase>> {
    use crate::ops::grad_case::{input, GradCase};
    type Case<P> = (&'static str, [usize; 4], [usize; 4], bool, P);
    let mut cases = Vec::new();
    let convs: [Case<Conv2dParams>; 8] = [
        (
            "stride 1",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            true,
            Conv2dParams::default(),
        ),
        (
            "stride 2, padding 1, no bias",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            false,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "dilation 2, padding 1",
            [2, 2, 5, 6],
            [3, 2, 3, 2],
            true,
            Conv2dParams {
                padding: (1, 1),
                dilation: (2, 2),
                ..Default::default()
            },
        ),
        (
            "non-square stride (2,1), padding (0,2), batch 1",
            [1, 2, 7, 5],
            [3, 2, 2, 3],
            true,
            Conv2dParams {
                stride: (2, 1),
                padding: (0, 2),
                dilation: (1, 2),
            },
        ),
        (
            "DCGAN 4x4/2/1, Cin 1",
            [2, 1, 8, 8],
            [3, 1, 4, 4],
            true,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "DCGAN 4x4/2/1, odd 7x7",
            [1, 2, 7, 7],
            [2, 2, 4, 4],
            false,
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "Cout 1",
            [2, 3, 4, 5],
            [1, 3, 2, 2],
            true,
            Conv2dParams::default(),
        ),
        (
            "one window over the whole image",
            [3, 2, 3, 4],
            [2, 2, 3, 4],
            true,
            Conv2dParams::default(),
        ),
    ];
    let mut seed = 100;
    for (name, xs, ws, with_bias, p) in convs {
        let mut inputs = vec![input(xs, seed, 0.0)?, input(ws, seed + 1, 0.0)?];
        if with_bias {
            inputs.push(input([ws[0]], seed + 2, 0.0)?);
        }
        seed += 3;
        cases.push(GradCase::new(
            CONV,
            format!(
                "{name}: x {xs:?} w {ws:?} s{:?} p{:?} d{:?}",
                p.stride, p.padding, p.dilation
            ),
            inputs,
            move |t: &[Tensor]| conv2d(&t[0], &t[1], t.get(2), &p),
        ));
    }
    let convts: [Case<ConvTranspose2dParams>; 7] = [
        (
            "stride 1",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            true,
            ConvTranspose2dParams::default(),
        ),
        (
            "stride 2, padding 1, output_padding 1",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                output_padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "dilation 2, padding 1, no bias",
            [2, 2, 3, 4],
            [2, 3, 3, 2],
            false,
            ConvTranspose2dParams {
                padding: (1, 1),
                dilation: (2, 2),
                ..Default::default()
            },
        ),
        (
            "non-square stride (1,3), output_padding (0,2), batch 1",
            [1, 2, 3, 2],
            [2, 3, 2, 3],
            true,
            ConvTranspose2dParams {
                stride: (1, 3),
                padding: (1, 0),
                output_padding: (0, 2),
                dilation: (1, 1),
            },
        ),
        (
            "DCGAN 4x4/2/1",
            [2, 3, 3, 3],
            [3, 2, 4, 4],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "DCGAN 4x4/2/1, Cout 1",
            [1, 3, 4, 4],
            [3, 1, 4, 4],
            true,
            ConvTranspose2dParams {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            "1x1 input, the kernel the output's size",
            [3, 2, 1, 1],
            [2, 3, 3, 2],
            true,
            ConvTranspose2dParams::default(),
        ),
    ];
    for (name, xs, ws, with_bias, p) in convts {
        let mut inputs = vec![input(xs, seed, 0.0)?, input(ws, seed + 1, 0.0)?];
        if with_bias {
            inputs.push(input([ws[1]], seed + 2, 0.0)?);
        }
        seed += 3;
        cases.push(GradCase::new(
            CONVT,
            format!(
                "{name}: x {xs:?} w {ws:?} s{:?} p{:?} op{:?} d{:?}",
                p.stride, p.padding, p.output_padding, p.dilation
            ),
            inputs,
            move |t: &[Tensor]| conv_transpose2d(&t[0], &t[1], t.get(2), &p),
        ));
    }
    Ok(cases)
}
