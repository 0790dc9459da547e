//! PLACEHOLDER — replaced by the fill/cast/reduce/rng helper.
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

pub fn uniform(
    _shape: &Shape,
    _seed: u64,
    _offset: u64,
    _dtype: DType,
    _device: &Device,
) -> Result<Tensor> {
    Err(Error::invalid("rng: not yet implemented"))
}
pub fn normal(
    _shape: &Shape,
    _seed: u64,
    _offset: u64,
    _dtype: DType,
    _device: &Device,
) -> Result<Tensor> {
    Err(Error::invalid("rng: not yet implemented"))
}
