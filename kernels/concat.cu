// concat.cu — concatenation along one axis (U-Net skip connections: the channel axis).
//
// Computes: one launch per input. The output (contiguous) is seen as [outer, total] with
//   total = (output size along the axis) * inner, the input as [outer, chunk] with
//   chunk = (its size along the axis) * inner; input element at row-major position p
//   (read through its strided layout) goes to out[(p / chunk) * total + col + p % chunk],
//   col = (the input's start along the axis) * inner.
// Launch: 1-D, one thread per input element, grid-stride loop, any block size (256 used).
// Limits: element counts and the layout's storage span < 2^31 (checked by the launcher).
#include "common.cuh"

extern "C" __global__ void concat_copy_f32(TensorLayout src_layout, const float* src, float* out, int n, int chunk, int total, int col) {
    const int stride = blockDim.x * gridDim.x;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += stride) {
        const int o = p / chunk;
        const int r = p - o * chunk;
        out[o * total + col + r] = src[layout_index(src_layout, p)];
    }
}
