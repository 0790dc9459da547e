// common.cuh — shared by every kernel in kernels/*.cu.
// Compiled two ways: by nvcc (PTX for GPUs) and by the host C++ compiler for the `emu`
// device, where kernels/emu/shim.h is force-included first and defines DUEL_EMU.
// Holds: the strided-layout struct the Rust launch layer passes by value, index helpers,
// and DYNAMIC_SHARED, the one way kernels declare dynamic shared memory.
#pragma once

#ifndef DUEL_EMU
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// NVRTC (the embedded-source path, build.rs without nvcc) has no C library headers unless
// it is given a CUDA include dir: then the fixed-width types are declared here.
#if !defined(__CUDACC_RTC__) || __has_include(<stdint.h>)
#include <stdint.h>
#else
typedef signed char int8_t; typedef unsigned char uint8_t;
typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t;
typedef long long int64_t; typedef unsigned long long uint64_t;
#endif
// Dynamic shared memory, sized by the launch. One macro so the emulator can give each
// block its own buffer.
#define DYNAMIC_SHARED(T, name) \
    extern __shared__ __align__(16) unsigned char duel_dynamic_shared_[]; \
    T* name = reinterpret_cast<T*>(duel_dynamic_shared_)
#elif !defined(DYNAMIC_SHARED)
// The emulator's wrappers include kernels/emu/shim.h before any kernel source.
#error "DUEL_EMU builds must include kernels/emu/shim.h first (build.rs does)"
#endif

// Mirror of `KernelLayout` in src/device/simt/mod.rs: a strided view, passed by value.
// Offsets and strides are in elements; a stride of 0 broadcasts. Kernels index with
// 32-bit ints; the launch layer refuses tensors whose storage span exceeds 2^31-1.
#define DUEL_MAX_RANK 6
struct TensorLayout {
    int rank;
    int offset;
    int shape[DUEL_MAX_RANK];
    int strides[DUEL_MAX_RANK];
};

// Storage index of the element at row-major logical position `linear`. The loop runs over
// the fixed maximum rank so it unrolls and the layout stays in registers (indexing the
// struct with a runtime bound makes ptxas spill it to a local stack frame).
__device__ __forceinline__ int layout_index(const TensorLayout& l, int linear) {
    int index = l.offset;
#pragma unroll
    for (int axis = DUEL_MAX_RANK - 1; axis >= 0; --axis) {
        if (axis < l.rank) {
            const int dim = l.shape[axis];
            index += (linear % dim) * l.strides[axis];
            linear /= dim;
        }
    }
    return index;
}
