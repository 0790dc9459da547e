// dropout.cu — inverted dropout with a Philox mask (the same mask on every backend).
//
// Computes: element i (row-major position of the contiguous input) is kept iff
//   uniform(seed, offset + i) >= p, where uniform(seed, q) = (w >> 8) * 2^-24 and w is
//   word q of the Philox4x32-10 stream of `seed` (word q = word q%4 of
//   philox4x32_10(counter = [q/4 lo, q/4 hi, 0, 0], key = [seed lo, seed hi]), exactly
//   as kernels/rng.cu and src/ops/rng/cpu.rs). out[i] = kept ? x[i] * scale : 0, with
//   scale = 1/(1-p) (0 when p = 1: nothing is kept).
//   The backward is the same map applied to the output gradient (dx = mask * scale * dy):
//   the launcher calls dropout_f32 again with dy, regenerating the mask from Philox
//   (nothing is saved).
// Launch: 1-D, one thread per Philox block of 4 positions touched by offset .. offset+n:
//   ceil((offset % 4 + n) / 4) threads, any block size (256 used).
// Limits: n < 2^31; offset + n must not overflow 2^64 (checked by the launcher).
#include "common.cuh"

static __device__ __forceinline__ void dropout_philox(unsigned long long seed, unsigned long long block, unsigned int w[4]) {
    unsigned int c0 = (unsigned int)block;
    unsigned int c1 = (unsigned int)(block >> 32);
    unsigned int c2 = 0u;
    unsigned int c3 = 0u;
    unsigned int k0 = (unsigned int)seed;
    unsigned int k1 = (unsigned int)(seed >> 32);
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const unsigned int hi0 = __umulhi(0xD2511F53u, c0);
        const unsigned int lo0 = 0xD2511F53u * c0;
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, c2);
        const unsigned int lo1 = 0xCD9E8D57u * c2;
        const unsigned int n0 = hi1 ^ c1 ^ k0;
        const unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    w[0] = c0;
    w[1] = c1;
    w[2] = c2;
    w[3] = c3;
}

extern "C" __global__ void dropout_f32(unsigned long long seed, unsigned long long offset, float p, float scale, const float* x, float* out, int n) {
    const unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long first = offset >> 2;
    const unsigned long long last = (offset + (unsigned long long)n - 1ull) >> 2;
    if (n > 0 && g <= last - first) {
        const unsigned long long block = first + g;
        unsigned int w[4];
        dropout_philox(seed, block, w);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const unsigned long long q = block * 4ull + (unsigned long long)j;
            if (q >= offset && q - offset < (unsigned long long)n) {
                const int i = (int)(q - offset);
                const float u = __fmul_rn((float)(w[j] >> 8), 5.9604645e-08f);
                out[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
            }
        }
    }
}
