//! Op families. Each folder holds one family: `mod.rs` (the API and the dispatch to a
//! backend), `cpu.rs` (the Rust reference kernels), `simt.rs` (the launch logic shared
//! by `cuda` and `emu`, driving `kernels/<family>.cu`).

pub mod cast;
pub mod concat;
pub mod conv;
pub(crate) mod cpu_gemm;
pub(crate) mod cpu_shared;
pub mod dropout;
pub mod elementwise;
pub mod fill;
pub mod gemm_bf16;
#[doc(hidden)]
pub mod grad_case;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod precision;
pub mod reduce;
pub mod rng;
pub mod sgemm;
pub mod upsample;
pub mod view;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// The compute-dtype rule of every op: the cpu computes in f32 or f64 (f64 for gradient
/// checks), the SIMT devices in f32; f16/bf16 are storage only. `what` names the operand.
pub(crate) fn check_compute(
    op: &'static str,
    what: &str,
    dtype: DType,
    device: &Device,
) -> Result<()> {
    let (ok, allowed) = match device {
        Device::Cpu => (dtype.is_compute(), "f32 or f64"),
        _ => (dtype == DType::F32, "f32"),
    };
    if ok {
        return Ok(());
    }
    let fix = if !dtype.is_compute() {
        ", a storage-only dtype; convert with .to_dtype(DType::F32) first"
    } else if dtype == DType::F64 {
        ": f64 is cpu-only (used for gradient checks); use f32"
    } else {
        "; convert with .to_dtype(DType::F32) first"
    };
    Err(Error::dtype(
        op,
        format!("{op} on {device} takes {allowed}, but {what} is {dtype}{fix}"),
    ))
}

/// [`check_compute`] for the input tensor `t`.
pub(crate) fn check_compute_dtype(op: &'static str, t: &Tensor) -> Result<()> {
    let what = format!("the input (shape {})", t.shape());
    check_compute(op, &what, t.dtype(), t.device())
}

/// The storage rule: f64 lives on the cpu only.
pub(crate) fn check_storage_dtype(op: &'static str, dtype: DType, device: &Device) -> Result<()> {
    if dtype == DType::F64 && !device.is_cpu() {
        return Err(Error::dtype(
            op,
            format!("f64 is cpu-only (used for gradient checks); use f32 (device {device})"),
        ));
    }
    Ok(())
}

/// Every op's gradient-check cases, gathered from the op families (the registry
/// `duel gradcheck` and tests/gradcheck.rs run; a new family adds its line here).
pub fn gradcheck_cases() -> Result<Vec<crate::ops::grad_case::GradCase>> {
    let mut cases = Vec::new();
    cases.extend(elementwise::gradcheck_cases()?);
    cases.extend(matmul::gradcheck_cases()?);
    cases.extend(view::gradcheck_cases()?);
    cases.extend(reduce::gradcheck_cases()?);
    cases.extend(conv::gradcheck_cases()?);
    cases.extend(norm::gradcheck_cases()?);
    cases.extend(dropout::gradcheck_cases()?);
    cases.extend(concat::gradcheck_cases()?);
    cases.extend(upsample::gradcheck_cases()?);
    cases.extend(pad::gradcheck_cases()?);
    cases.extend(loss::gradcheck_cases()?);
    Ok(cases)
}
