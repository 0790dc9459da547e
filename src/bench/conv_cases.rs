//! The conv rows of `duel bench` (see `cases` for the counting rules): forward,
//! input-gradient and weight-gradient at every DCGAN layer and two generic shapes, in f32
//! and under `--precision bf16` / `f16`.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::ops::conv::{Conv2dParams, ConvTranspose2dParams};
use crate::ops::precision::{with_precision, Precision};
use crate::tensor::Tensor;

use super::cases::{backward_timed, dims, grad_of, input, Case, Sizes, Work};
use super::timing::Stopwatch;

/// A convolution layer: conv2d (`transposed == false`, weight `[Cout, Cin, k, k]`) or
/// conv_transpose2d (weight `[Cin, Cout, k, k]`), on input `[n, cin, h, h]`.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer {
    pub name: &'static str,
    pub transposed: bool,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvLayer {
    fn out(&self) -> usize {
        if self.transposed {
            (self.h - 1) * self.stride + self.k - 2 * self.pad
        } else {
            (self.h + 2 * self.pad - self.k) / self.stride + 1
        }
    }
    fn weight_dims(&self) -> [usize; 4] {
        if self.transposed {
            [self.cin, self.cout, self.k, self.k]
        } else {
            [self.cout, self.cin, self.k, self.k]
        }
    }
    /// `2·N·Cin·Cout·k²` times the positions of the smaller side (conv2d: the output grid;
    /// convT: the input grid): the same GEMM in every direction.
    fn flops(&self, n: usize) -> f64 {
        let grid = if self.transposed { self.h } else { self.out() };
        2.0 * (n * self.cin * self.cout * self.k * self.k * grid * grid) as f64
    }
    fn run(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (s, p) = ((self.stride, self.stride), (self.pad, self.pad));
        if self.transposed {
            let params = ConvTranspose2dParams {
                stride: s,
                padding: p,
                ..Default::default()
            };
            x.conv_transpose2d(w, None, &params)
        } else {
            let params = Conv2dParams {
                stride: s,
                padding: p,
                dilation: (1, 1),
            };
            x.conv2d(w, None, &params)
        }
    }
}

/// The convolution layers of dcgan28 and dcgan64 (width 64, nz 100, one channel), as
/// src/gan/arch.rs builds them, plus two generic shapes.
pub fn conv_layers() -> Vec<(&'static str, ConvLayer, bool)> {
    let c = |name, transposed, cin, cout, h, k, stride, pad| ConvLayer {
        name,
        transposed,
        cin,
        cout,
        h,
        k,
        stride,
        pad,
    };
    vec![
        ("dcgan28", c("G.convt1", true, 128, 64, 7, 4, 2, 1), false),
        ("dcgan28", c("G.convt2", true, 64, 1, 14, 4, 2, 1), false),
        ("dcgan28", c("D.conv1", false, 1, 64, 28, 4, 2, 1), false),
        ("dcgan28", c("D.conv2", false, 64, 128, 14, 4, 2, 1), false),
        ("dcgan64", c("G.convt1", true, 100, 512, 1, 4, 1, 0), true),
        ("dcgan64", c("G.convt2", true, 512, 256, 4, 4, 2, 1), true),
        ("dcgan64", c("G.convt3", true, 256, 128, 8, 4, 2, 1), true),
        ("dcgan64", c("G.convt4", true, 128, 64, 16, 4, 2, 1), true),
        ("dcgan64", c("G.convt5", true, 64, 1, 32, 4, 2, 1), true),
        ("dcgan64", c("D.conv1", false, 1, 64, 64, 4, 2, 1), true),
        ("dcgan64", c("D.conv2", false, 64, 128, 32, 4, 2, 1), true),
        ("dcgan64", c("D.conv3", false, 128, 256, 16, 4, 2, 1), true),
        ("dcgan64", c("D.conv4", false, 256, 512, 8, 4, 2, 1), true),
        ("dcgan64", c("D.conv5", false, 512, 1, 4, 4, 1, 0), true),
        ("generic", c("3x3/1", false, 64, 64, 32, 3, 1, 1), true),
        ("generic", c("3x3/1", false, 256, 256, 8, 3, 1, 1), true),
    ]
}

/// The conv rows in f32 (kernel `default`) and, for the DCGAN layers, under
/// `--precision bf16` and `f16` (kernels `bf16` and `f16`, labels with the precision
/// appended so the keys differ; f16 in full runs only).
pub(super) fn conv_cases(sizes: Sizes, out: &mut Vec<Case>) {
    for (arch, layer, full_only) in conv_layers() {
        for (precision, kernel) in [
            (Precision::F32, "default"),
            (Precision::Bf16, "bf16"),
            (Precision::F16, "f16"),
        ] {
            if precision != Precision::F32 && arch == "generic" {
                continue;
            }
            let full_only = full_only || precision == Precision::F16;
            conv_layer_cases(sizes, arch, layer, full_only, precision, kernel, out);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_layer_cases(
    sizes: Sizes,
    arch: &'static str,
    layer: ConvLayer,
    full_only: bool,
    precision: Precision,
    kernel: &'static str,
    out: &mut Vec<Case>,
) {
    let n = sizes.batch;
    {
        let op = if layer.transposed {
            "conv_transpose2d"
        } else {
            "conv2d"
        };
        let x_dims = [n, layer.cin, layer.h, layer.h];
        let y_dims = [n, layer.cout, layer.out(), layer.out()];
        let w_dims = layer.weight_dims();
        let shape = format!("x{} w{}", dims(&x_dims), dims(&w_dims));
        let numel = |d: &[usize]| d.iter().product::<usize>() as f64;
        let (xn, wn, yn) = (numel(&x_dims), numel(&w_dims), numel(&y_dims));
        // forward reads x, w, writes y; input-grad reads dy, w, writes dx; weight-grad
        // reads dy, x, writes dw.
        for (direction, bytes) in [
            ("forward", xn + wn + yn),
            ("input-grad", yn + wn + xn),
            ("weight-grad", yn + xn + wn),
        ] {
            let label = match precision {
                Precision::F32 => format!("{arch} {}", layer.name),
                p => format!("{arch} {} {p}", layer.name),
            };
            out.push(Case {
                op,
                direction,
                label,
                shape: shape.clone(),
                kernel,
                flops: layer.flops(n),
                bytes: 4.0 * bytes,
                full_only,
                build: Box::new(move |dev, dt| {
                    let x = input(&x_dims, 11, dev, dt)?;
                    let w = input(&w_dims, 12, dev, dt)?;
                    let dy = input(&y_dims, 13, dev, dt)?;
                    match direction {
                        "forward" => Ok(Box::new(move |sw: &mut Stopwatch| {
                            sw.start()?;
                            let y = no_grad(|| with_precision(precision, || layer.run(&x, &w)))?;
                            sw.stop()?;
                            Ok(vec![y])
                        }) as Work),
                        dir => {
                            let wrt_input = dir == "input-grad";
                            let (x, w) = if wrt_input {
                                (x.with_requires_grad(), w)
                            } else {
                                (x, w.with_requires_grad())
                            };
                            Ok(Box::new(move |sw: &mut Stopwatch| {
                                let leaf = if wrt_input { &x } else { &w };
                                leaf.zero_grad();
                                // The node keeps the precision for the timed backward.
                                let y = with_precision(precision, || layer.run(&x, &w))?;
                                backward_timed(sw, &y, &dy)?;
                                Ok(vec![grad_of(leaf)?])
                            }) as Work)
                        }
                    }
                }),
            });
        }
    }
}
