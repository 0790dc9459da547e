// view.cu — writes into a strided destination: the backward of views that select a
// window of their input (narrow).
//
// Computes: dst[layout_index(dst_layout, i)] = src[layout_index(src_layout, i)] for
//   i < n, both layouts having the same logical shape (n elements, row-major order).
//   copy_into_f32: 4-byte floats; copy_into_b16: any 2-byte storage type (f16/bf16 bits).
//   The destination is an arbitrary strided view (e.g. a window of a zero-filled buffer),
//   the source any strided view (transposed, broadcast, offset).
// Launch: 1-D, one thread per element, any block size (256 used), grid ceil(n / block).
// Limits: n and both layouts' storage spans < 2^31 (32-bit indexing; checked by the
//   launcher). The destination must not alias itself (no stride 0 on a dim of size > 1:
//   two threads would write one address) and must not overlap the source; the launcher
//   refuses a broadcast destination and copies an aliasing source first.
#include "common.cuh"

extern "C" __global__ void copy_into_f32(TensorLayout src_layout, const float* src, TensorLayout dst_layout, float* dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        dst[layout_index(dst_layout, i)] = src[layout_index(src_layout, i)];
    }
}

extern "C" __global__ void copy_into_b16(TensorLayout src_layout, const unsigned short* src, TensorLayout dst_layout, unsigned short* dst, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        dst[layout_index(dst_layout, i)] = src[layout_index(src_layout, i)];
    }
}
