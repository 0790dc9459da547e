//! Linear, Conv2d and ConvTranspose2d: PyTorch's weight layouts and default initialisation
//! (Kaiming uniform with `a = √5`, bias `U(−1/√fan_in, 1/√fan_in)`).

use super::init::{default_bias, fans, kaiming_uniform, ParamRng};
use super::{rename_leaf, Module};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
use crate::tensor::Tensor;

fn make_params(prefix: &str, w: Tensor, b: Option<Tensor>) -> (Tensor, Option<Tensor>) {
    (
        rename_leaf(&w, format!("{prefix}weight")),
        b.map(|b| rename_leaf(&b, format!("{prefix}bias"))),
    )
}

fn named(prefix: &str, w: &Tensor, b: &Option<Tensor>) -> Vec<(String, Tensor)> {
    let mut v = vec![(format!("{prefix}weight"), w.clone())];
    if let Some(b) = b {
        v.push((format!("{prefix}bias"), b.clone()));
    }
    v
}

/// `y = x·Wᵀ + b` with `weight [out, in]`, `bias [out]`; `x` is `[…, in]`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    prefix: String,
}

/// How to build a [`Linear`]: sizes, and whether it has a bias (PyTorch's default: yes).
/// `Linear::options(784, 256).bias(false).build(&mut rng, &device)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearOptions {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl LinearOptions {
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// The layer with PyTorch's default initialisation drawn from `rng` (weight, then bias).
    pub fn build(self, rng: &mut ParamRng, device: &Device) -> Result<Linear> {
        let (i, o) = (self.in_features, self.out_features);
        let w = kaiming_uniform(rng, &[o, i], 5f64.sqrt(), device)?;
        let b = if self.bias {
            Some(default_bias(rng, o, i, device)?)
        } else {
            None
        };
        Ok(Linear::from_tensors(w, b))
    }
}

impl Linear {
    /// Options for a layer from `in_features` to `out_features`, with a bias.
    pub fn options(in_features: usize, out_features: usize) -> LinearOptions {
        LinearOptions {
            in_features,
            out_features,
            bias: true,
        }
    }
    /// A layer holding the given values (`weight [out, in]`, `bias [out]`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Linear {
        let (weight, bias) = make_params("", weight, bias);
        Linear {
            weight,
            bias,
            prefix: String::new(),
        }
    }
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inf = self.in_features();
        if x.rank() < 1 || x.dims()[x.rank() - 1] != inf {
            return Err(Error::shape(
                "Linear",
                format!(
                    "{}: input shape {} does not end in in_features = {inf}",
                    self.describe(),
                    x.shape()
                ),
            ));
        }
        let y = if x.rank() == 1 {
            x.reshape(vec![1, inf])?
                .matmul(&self.weight.t()?)?
                .reshape(vec![self.out_features()])?
        } else {
            x.matmul(&self.weight.t()?)?
        };
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.prefix, &self.weight, &self.bias)
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        let (w, b) = make_params(prefix, self.weight.clone(), self.bias.clone());
        self.weight = w;
        self.bias = b;
    }
    fn describe(&self) -> String {
        format!(
            "Linear(in_features={}, out_features={}, bias={})",
            self.in_features(),
            self.out_features(),
            self.bias.is_some()
        )
    }
}

/// The options type of a convolution layer `$layer` (geometry `$params`, weight shape
/// `$shape` from (in, out, kh, kw)): one definition of the setters and of PyTorch's
/// default initialisation for Conv2d and ConvTranspose2d.
macro_rules! conv_options {
    ($opts:ident, $layer:ident, $params:ident, |$i:ident, $o:ident, $kh:ident, $kw:ident| $shape:expr, $example:literal) => {
        #[doc = concat!("How to build a [`", stringify!($layer), "`]: channels, kernel, geometry and bias")]
        /// (PyTorch's defaults: stride 1, no padding, dilation 1, a bias):
        #[doc = concat!("`", $example, "`.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $opts {
            pub in_channels: usize,
            pub out_channels: usize,
            /// `(kh, kw)`.
            pub kernel: (usize, usize),
            pub params: $params,
            pub bias: bool,
        }

        impl $opts {
            /// A `kh x kw` kernel instead of the square one.
            pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
                self.kernel = (kh, kw);
                self
            }
            /// The same stride along both axes.
            pub fn stride(mut self, s: usize) -> Self {
                self.params.stride = (s, s);
                self
            }
            /// The same zero padding on both axes.
            pub fn padding(mut self, p: usize) -> Self {
                self.params.padding = (p, p);
                self
            }
            /// The same dilation along both axes.
            pub fn dilation(mut self, d: usize) -> Self {
                self.params.dilation = (d, d);
                self
            }
            /// Every geometry parameter at once (per axis).
            pub fn params(mut self, params: $params) -> Self {
                self.params = params;
                self
            }
            pub fn bias(mut self, bias: bool) -> Self {
                self.bias = bias;
                self
            }
            /// The layer with PyTorch's default initialisation drawn from `rng` (weight,
            /// then bias).
            pub fn build(self, rng: &mut ParamRng, device: &Device) -> Result<$layer> {
                let ($i, $o, ($kh, $kw)) = (self.in_channels, self.out_channels, self.kernel);
                let shape = $shape;
                let w = kaiming_uniform(rng, &shape, 5f64.sqrt(), device)?;
                let b = if self.bias {
                    Some(default_bias(rng, $o, fans(&shape)?.0, device)?)
                } else {
                    None
                };
                Ok($layer::from_tensors(w, b, self.params))
            }
        }

        impl $layer {
            /// Options for a layer from `in_channels` to `out_channels` with a square
            /// `kernel`.
            pub fn options(in_channels: usize, out_channels: usize, kernel: usize) -> $opts {
                $opts {
                    in_channels,
                    out_channels,
                    kernel: (kernel, kernel),
                    params: $params::default(),
                    bias: true,
                }
            }
        }
    };
}

conv_options!(
    Conv2dOptions,
    Conv2d,
    Conv2dParams,
    |i, o, kh, kw| [o, i, kh, kw],
    "Conv2d::options(1, 64, 4).stride(2).padding(1).build(&mut rng, &device)"
);
conv_options!(
    ConvTranspose2dOptions,
    ConvTranspose2d,
    ConvTranspose2dParams,
    |i, o, kh, kw| [i, o, kh, kw],
    "ConvTranspose2d::options(128, 64, 4).stride(2).padding(1).bias(false).build(&mut rng, &device)"
);

impl ConvTranspose2dOptions {
    /// The same extra rows/columns on the output's bottom/right (`< max(stride, dilation)`).
    pub fn output_padding(mut self, p: usize) -> Self {
        self.params.output_padding = (p, p);
        self
    }
}

/// 2-D convolution, `weight [Cout, Cin, kh, kw]`, `bias [Cout]`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
    prefix: String,
}

impl Conv2d {
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, params: Conv2dParams) -> Conv2d {
        let (weight, bias) = make_params("", weight, bias);
        Conv2d {
            weight,
            bias,
            params,
            prefix: String::new(),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), &self.params)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.prefix, &self.weight, &self.bias)
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        let (w, b) = make_params(prefix, self.weight.clone(), self.bias.clone());
        self.weight = w;
        self.bias = b;
    }
    fn describe(&self) -> String {
        let d = self.weight.dims();
        format!(
            "Conv2d({}, {}, kernel_size=({}, {}), stride={:?}, padding={:?}, dilation={:?}, bias={})",
            d[1],
            d[0],
            d[2],
            d[3],
            self.params.stride,
            self.params.padding,
            self.params.dilation,
            self.bias.is_some()
        )
    }
}

/// 2-D transposed convolution, `weight [Cin, Cout, kh, kw]`, `bias [Cout]`.
pub struct ConvTranspose2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: ConvTranspose2dParams,
    prefix: String,
}

impl ConvTranspose2d {
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        params: ConvTranspose2dParams,
    ) -> ConvTranspose2d {
        let (weight, bias) = make_params("", weight, bias);
        ConvTranspose2d {
            weight,
            bias,
            params,
            prefix: String::new(),
        }
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_transpose2d(x, &self.weight, self.bias.as_ref(), &self.params)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.prefix, &self.weight, &self.bias)
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        let (w, b) = make_params(prefix, self.weight.clone(), self.bias.clone());
        self.weight = w;
        self.bias = b;
    }
    fn describe(&self) -> String {
        let d = self.weight.dims();
        format!(
            "ConvTranspose2d({}, {}, kernel_size=({}, {}), stride={:?}, padding={:?}, output_padding={:?}, bias={})",
            d[0],
            d[1],
            d[2],
            d[3],
            self.params.stride,
            self.params.padding,
            self.params.output_padding,
            self.bias.is_some()
        )
    }
}
