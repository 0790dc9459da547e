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

impl Linear {
    /// PyTorch's default initialisation from `rng`.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut ParamRng,
        device: &Device,
    ) -> Result<Linear> {
        let shape = [out_features, in_features];
        let w = kaiming_uniform(rng, &shape, 5f64.sqrt(), device)?;
        let b = if bias {
            Some(default_bias(rng, out_features, in_features, device)?)
        } else {
            None
        };
        Ok(Linear::from_tensors(w, b))
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

/// 2-D convolution, `weight [Cout, Cin, kh, kw]`, `bias [Cout]`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
    prefix: String,
}

impl Conv2d {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        bias: bool,
        rng: &mut ParamRng,
        device: &Device,
    ) -> Result<Conv2d> {
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        let w = kaiming_uniform(rng, &shape, 5f64.sqrt(), device)?;
        let b = if bias {
            Some(default_bias(rng, out_channels, fans(&shape)?.0, device)?)
        } else {
            None
        };
        Ok(Conv2d::from_tensors(w, b, params))
    }
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
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: ConvTranspose2dParams,
        bias: bool,
        rng: &mut ParamRng,
        device: &Device,
    ) -> Result<ConvTranspose2d> {
        let shape = [in_channels, out_channels, kernel.0, kernel.1];
        let w = kaiming_uniform(rng, &shape, 5f64.sqrt(), device)?;
        let b = if bias {
            Some(default_bias(rng, out_channels, fans(&shape)?.0, device)?)
        } else {
            None
        };
        Ok(ConvTranspose2d::from_tensors(w, b, params))
    }
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
