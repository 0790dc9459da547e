//! What build.rs produced from kernels/*.cu: the kernel manifest (every `__global__`
//! entry point and its parameters) and, when nvcc was found, the embedded PTX.

include!(concat!(env!("OUT_DIR"), "/kernel_manifest.rs"));
