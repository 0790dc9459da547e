//! PLACEHOLDER — replaced by the emulator helper.
use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct EmuOptions;

impl EmuOptions {
    pub fn from_env() -> Self {
        EmuOptions
    }
}

pub struct EmuRuntime;

impl EmuRuntime {
    pub fn new(_options: EmuOptions) -> Result<EmuRuntime> {
        Err(Error::backend("emulator: not yet built"))
    }
}

impl crate::device::simt::Runtime for EmuRuntime {
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
