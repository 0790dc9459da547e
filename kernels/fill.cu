// fill.cu — creation kernels: constant fill and arithmetic sequences.
//
// Computes:
//   fill_f32(out, value, n):  out[i] = value.
//   fill_u16(out, bits, n):   out[i] = bits, for f16/bf16 (the host rounds the value
//                             once, exactly as the cpu backend does).
//   arange_f32(out, start, step, n): out[i] = (float)(start + (double)i * step), the
//                             multiply and add in f64 without contraction (__dmul_rn,
//                             __dadd_rn) so every backend gets the same bits.
// Launch: 1-D, one thread per element, any block size (256 used), grid ceil(n / block).
// Limits: n < 2^31.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* out, float value, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = value;
    }
}

extern "C" __global__ void fill_u16(unsigned short* out, unsigned short bits, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = bits;
    }
}

extern "C" __global__ void arange_f32(float* out, double start, double step, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = (float)__dadd_rn(start, __dmul_rn((double)i, step));
    }
}
