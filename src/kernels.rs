//! What build.rs produced from kernels/*.cu: the kernel manifest (every `__global__`
//! entry point and its parameters) and, when nvcc was found, the embedded PTX.

include!(concat!(env!("OUT_DIR"), "/kernel_manifest.rs"));
include!(concat!(env!("OUT_DIR"), "/kernel_ptx.rs"));

/// The manifest entry of kernel `name`, if build.rs found it in kernels/.
pub fn find(name: &str) -> Option<&'static KernelInfo> {
    KERNELS.iter().find(|k| k.name == name)
}

/// Kernels of kernels/*.cu (those nvcc compiles), without the emulator self-tests.
pub fn product_kernels() -> impl Iterator<Item = &'static KernelInfo> {
    KERNELS.iter().filter(|k| k.product)
}
