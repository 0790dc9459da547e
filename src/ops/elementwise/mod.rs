//! PLACEHOLDER — replaced by the elementwise helper.
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Copy,
}

pub fn unary(_x: &Tensor, _op: UnaryOp) -> Result<Tensor> {
    Err(Error::invalid("elementwise: not yet implemented"))
}
