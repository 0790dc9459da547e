// cast.cu — element-type conversion between f32 and the 16-bit storage types.
//
// Computes: out[i] = convert(x[layout_index(in, i)]) for i < n, output contiguous.
//   cast_f32_to_f16 / cast_f32_to_bf16: round to nearest even (__float2half_rn,
//     __float2bfloat16_rn): subnormals and +-inf preserved, NaN stays NaN.
//   cast_f16_to_f32 / cast_bf16_to_f32: exact widening.
// Launch: 1-D, one thread per element, any block size (256 used), grid ceil(n / block).
// Limits: n and the input's storage span < 2^31 (32-bit indexing; checked by the launcher).
#include "common.cuh"

extern "C" __global__ void cast_f32_to_f16(TensorLayout in, const float* x, __half* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __float2half_rn(x[layout_index(in, i)]);
    }
}

extern "C" __global__ void cast_f32_to_bf16(TensorLayout in, const float* x, __nv_bfloat16* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __float2bfloat16_rn(x[layout_index(in, i)]);
    }
}

extern "C" __global__ void cast_f16_to_f32(TensorLayout in, const __half* x, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __half2float(x[layout_index(in, i)]);
    }
}

extern "C" __global__ void cast_bf16_to_f32(TensorLayout in, const __nv_bfloat16* x, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __bfloat162float(x[layout_index(in, i)]);
    }
}
