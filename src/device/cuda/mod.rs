//! PLACEHOLDER — replaced by the infrastructure helper (cudarc runtime + driver probe).
use crate::error::{Error, Result};

pub struct CudaRuntime;

impl CudaRuntime {
    pub fn new(_ordinal: usize) -> Result<CudaRuntime> {
        Err(Error::backend(
            "CUDA driver not found (libcuda.so); use --device cpu",
        ))
    }
}

impl crate::device::simt::Runtime for CudaRuntime {
    fn name(&self) -> String {
        unreachable!()
    }
    fn alloc(&self, _: usize) -> Result<u64> {
        unreachable!()
    }
    unsafe fn free(&self, _: u64) {}
    fn copy_to_device(&self, _: u64, _: &[u8]) -> Result<()> {
        unreachable!()
    }
    fn copy_to_host(&self, _: u64, _: &mut [u8]) -> Result<()> {
        unreachable!()
    }
    fn copy_on_device(&self, _: u64, _: u64, _: usize) -> Result<()> {
        unreachable!()
    }
    fn launch(
        &self,
        _: &str,
        _: &crate::device::simt::LaunchConfig,
        _: &[crate::device::simt::Arg],
    ) -> Result<()> {
        unreachable!()
    }
    fn synchronize(&self) -> Result<()> {
        unreachable!()
    }
}
