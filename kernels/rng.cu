// rng.cu — counter-based random numbers: Philox4x32-10 (Salmon et al. 2011).
//
// Computes: the stream of a 64-bit seed is an infinite sequence of u32 words; word p is
// word (p % 4) of philox4x32_10(counter = [p/4 lo, p/4 hi, 0, 0], key = [seed lo, hi]).
// A draw of n values at `offset` uses positions offset .. offset+n.
//   rng_uniform_f32: (w >> 8) * 2^-24 in [0, 1).
//   rng_normal_f32:  Box–Muller on word pairs (2*(p/2), 2*(p/2)+1):
//                    u1 = ((w0 >> 8) + 1) * 2^-24 in (0, 1], u2 = (w1 >> 8) * 2^-24,
//                    r = sqrt(-2 ln u1); even p -> r cos(2 pi u2), odd p -> r sin(2 pi u2).
// Bitwise identical to the Rust reference (src/ops/rng/cpu.rs): ln and sincos are our own,
// built only from __fmul_rn/__fadd_rn/__fsub_rn/__fmaf_rn/__fsqrt_rn and exact integer /
// bit operations, in exactly the Rust order, so nvcc cannot contract or reorder them.
// Launch: 1-D, one thread per Philox block touched: ceil((offset % 4 + n) / 4) threads,
// any block size (256 used). Limits: n < 2^31; offset + n must not overflow 2^64 (checked
// by the launcher).
#include "common.cuh"

#define DUEL_PHILOX_M0 0xD2511F53u
#define DUEL_PHILOX_M1 0xCD9E8D57u
#define DUEL_PHILOX_W0 0x9E3779B9u
#define DUEL_PHILOX_W1 0xBB67AE85u

struct DuelU4 {
    unsigned int x, y, z, w;
};

__device__ __forceinline__ DuelU4 duel_philox4x32_10(DuelU4 c, unsigned int k0, unsigned int k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += DUEL_PHILOX_W0;
            k1 += DUEL_PHILOX_W1;
        }
        const unsigned int hi0 = __umulhi(DUEL_PHILOX_M0, c.x);
        const unsigned int lo0 = DUEL_PHILOX_M0 * c.x;
        const unsigned int hi1 = __umulhi(DUEL_PHILOX_M1, c.z);
        const unsigned int lo1 = DUEL_PHILOX_M1 * c.z;
        DuelU4 n;
        n.x = hi1 ^ c.y ^ k0;
        n.y = lo1;
        n.z = hi0 ^ c.w ^ k1;
        n.w = lo0;
        c = n;
    }
    return c;
}

__device__ __forceinline__ DuelU4 duel_philox_block(unsigned long long seed,
                                                    unsigned long long block) {
    DuelU4 c;
    c.x = (unsigned int)block;
    c.y = (unsigned int)(block >> 32);
    c.z = 0u;
    c.w = 0u;
    return duel_philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
}

#define DUEL_TWO_POW_M24 5.9604645e-08f  // 2^-24, exact
#define DUEL_TWO_POW_M22 2.3841858e-07f  // 2^-22, exact

__device__ __forceinline__ float duel_uniform_from_word(unsigned int w) {
    return __fmul_rn((float)(w >> 8), DUEL_TWO_POW_M24);
}

// Natural log of a positive normal finite float (Box–Muller feeds (0, 1]).
// x = 2^e m, m in [sqrt(1/2), sqrt(2)); log x = e ln2 + log1p(f), f = m - 1 (exact);
// Cephes logf polynomial by fma Horner; ln2 = 0.693359375 - 2.12194440e-4.
__device__ __forceinline__ float duel_logf(float x) {
    const unsigned int bits = __float_as_uint(x);
    int e = (int)((bits >> 23) & 0xffu) - 127;
    unsigned int mbits = (bits & 0x007fffffu) | 0x3f800000u;
    if (mbits > 0x3fb504f3u) {
        mbits -= 0x00800000u;
        e += 1;
    }
    const float f = __fsub_rn(__uint_as_float(mbits), 1.0f);
    const float ef = (float)e;
    const float z = __fmul_rn(f, f);
    float p = 7.0376836e-02f;
    p = __fmaf_rn(p, f, -1.151461e-01f);
    p = __fmaf_rn(p, f, 1.16769987e-01f);
    p = __fmaf_rn(p, f, -1.2420141e-01f);
    p = __fmaf_rn(p, f, 1.4249323e-01f);
    p = __fmaf_rn(p, f, -1.6668058e-01f);
    p = __fmaf_rn(p, f, 2.0000714e-01f);
    p = __fmaf_rn(p, f, -2.4999994e-01f);
    p = __fmaf_rn(p, f, 3.333333e-01f);
    float y = __fmul_rn(__fmul_rn(f, z), p);
    y = __fmaf_rn(ef, -2.1219444e-04f, y);
    y = __fmaf_rn(z, -0.5f, y);
    const float r = __fadd_rn(f, y);
    return __fmaf_rn(ef, 0.693359375f, r);
}

// sin and cos of 2 pi u for u = k 2^-24, k < 2^24. Quadrant j = round(4u) and
// t = 4u - j in [-1/2, 1/2] by exact integer arithmetic; Taylor polynomials of
// sin(pi/2 t), cos(pi/2 t) in t^2 by fma Horner.
__device__ __forceinline__ void duel_sincos2pi(unsigned int k, float* sin_out, float* cos_out) {
    const unsigned int j = (k + (1u << 21)) >> 22;
    const int tk = (int)k - (int)(j << 22);
    const float t = __fmul_rn((float)tk, DUEL_TWO_POW_M22);
    const float t2 = __fmul_rn(t, t);
    float ps = 1.6044118e-04f;
    ps = __fmaf_rn(ps, t2, -4.681754e-03f);
    ps = __fmaf_rn(ps, t2, 7.9692625e-02f);
    ps = __fmaf_rn(ps, t2, -6.459641e-01f);
    const float t3 = __fmul_rn(t2, t);
    const float s = __fmaf_rn(t, 1.5707964e+00f, __fmaf_rn(t, -4.371139e-08f, __fmul_rn(t3, ps)));
    float pc = -2.5202042e-05f;
    pc = __fmaf_rn(pc, t2, 9.1926026e-04f);
    pc = __fmaf_rn(pc, t2, -2.086348e-02f);
    pc = __fmaf_rn(pc, t2, 2.536695e-01f);
    pc = __fmaf_rn(pc, t2, -1.2337005e+00f);
    const float c = __fmaf_rn(t2, pc, 1.0f);
    switch (j & 3u) {
    case 0u: *sin_out = s;  *cos_out = c;  break;
    case 1u: *sin_out = c;  *cos_out = -s; break;
    case 2u: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s;  break;
    }
}

// (r cos 2 pi u2, r sin 2 pi u2), r = sqrt(-2 ln u1).
__device__ __forceinline__ void duel_box_muller(unsigned int w0, unsigned int w1, float* a, float* b) {
    const float u1 = __fmul_rn((float)((w0 >> 8) + 1u), DUEL_TWO_POW_M24);
    const float r = __fsqrt_rn(__fmul_rn(-2.0f, duel_logf(u1)));
    float s, c;
    duel_sincos2pi(w1 >> 8, &s, &c);
    *a = __fmul_rn(r, c);
    *b = __fmul_rn(r, s);
}

// Write the 4 values of Philox block `block` that fall in out[0, n) (position p maps to
// out[p - offset]).
__device__ __forceinline__ void duel_store4(float* out, int n, unsigned long long offset,
                                            unsigned long long block, const float v[4]) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const unsigned long long p = block * 4ull + (unsigned long long)j;
        if (p >= offset && p - offset < (unsigned long long)n) {
            out[p - offset] = v[j];
        }
    }
}

extern "C" __global__ void rng_uniform_f32(unsigned long long seed, unsigned long long offset, float* out, int n) {
    const unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long first = offset >> 2;
    const unsigned long long last = (offset + (unsigned long long)n - 1ull) >> 2;
    if (n > 0 && g <= last - first) {
        const unsigned long long block = first + g;
        const DuelU4 w = duel_philox_block(seed, block);
        float v[4];
        v[0] = duel_uniform_from_word(w.x);
        v[1] = duel_uniform_from_word(w.y);
        v[2] = duel_uniform_from_word(w.z);
        v[3] = duel_uniform_from_word(w.w);
        duel_store4(out, n, offset, block, v);
    }
}

extern "C" __global__ void rng_normal_f32(unsigned long long seed, unsigned long long offset, float* out, int n) {
    const unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long first = offset >> 2;
    const unsigned long long last = (offset + (unsigned long long)n - 1ull) >> 2;
    if (n > 0 && g <= last - first) {
        const unsigned long long block = first + g;
        const DuelU4 w = duel_philox_block(seed, block);
        float v[4];
        duel_box_muller(w.x, w.y, &v[0], &v[1]);
        duel_box_muller(w.z, w.w, &v[2], &v[3]);
        duel_store4(out, n, offset, block, v);
    }
}
