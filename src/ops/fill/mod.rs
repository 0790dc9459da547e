//! PLACEHOLDER — replaced by the fill/cast/reduce/rng helper.
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

pub fn full(_shape: &Shape, _value: f64, _dtype: DType, _device: &Device) -> Result<Tensor> {
    Err(Error::invalid("fill: not yet implemented"))
}
pub fn arange(
    _start: f64,
    _end: f64,
    _step: f64,
    _dtype: DType,
    _device: &Device,
) -> Result<Tensor> {
    Err(Error::invalid("arange: not yet implemented"))
}
