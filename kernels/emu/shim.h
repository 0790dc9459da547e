// shim.h — makes CUDA C++ kernels compile with the host C++ compiler for the `emu` device.
// build.rs includes it first in every generated wrapper (`#include "emu/shim.h"` before the
// .cu), so it plays the role of `-include`. Semantics come from kernels/emu/runtime.cpp:
// the threads of a block are cooperative fibers on one OS worker thread, blocks run on a
// pool of worker threads.
#pragma once
#ifndef DUEL_EMU
#define DUEL_EMU 1
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// ---- qualifiers -------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __grid_constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// gcc knows __restrict__ natively.

// Static shared memory is per block: build.rs rewrites every `__shared__ T name[dims];` of
// a kernel source into DUEL_EMU_STATIC_SHARED, a reference into the running block's arena
// (kernels/emu/checks.cpp), which is poisoned with 0xFF bytes at block start, bounds-checked
// and watched for races. A `__shared__` the rewrite did not see fails to compile.
// `extern __shared__` does not compile here on purpose: use DYNAMIC_SHARED.
#define __shared__ __shared___must_be_one_declaration_per_line_see_kernels_README
struct duel_emu_shared_site {
    const char* name;
    const char* file;
    int line;
};
extern "C" void* duel_emu_static_shared(const duel_emu_shared_site* site, size_t size, size_t align);
#define DUEL_EMU_STATIC_SHARED(ALIGN, T, NAME, DIMS)                                                   \
    typedef T duel_emu_shared_type_##NAME DIMS;                                                        \
    static constexpr duel_emu_shared_site duel_emu_site_##NAME{#NAME, __FILE__, __LINE__};             \
    duel_emu_shared_type_##NAME& NAME = *static_cast<duel_emu_shared_type_##NAME*>(duel_emu_static_shared( \
        &duel_emu_site_##NAME, sizeof(duel_emu_shared_type_##NAME),                                    \
        (ALIGN) > alignof(T) ? (ALIGN) : alignof(T)))

// ---- built-in vector types and indices ----------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct float3 { float x, y, z; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct int3 { int x, y, z; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }

// Set by the runtime: block values per block, threadIdx before every switch into a fiber.
extern __thread uint3 duel_emu_thread_idx;
extern __thread uint3 duel_emu_block_idx;
extern __thread uint3 duel_emu_block_dim;
extern __thread uint3 duel_emu_grid_dim;
extern __thread unsigned char* duel_emu_dynamic_shared;
// Read-only views, so a kernel cannot assign to threadIdx by mistake.
#define threadIdx (static_cast<const uint3&>(duel_emu_thread_idx))
#define blockIdx (static_cast<const uint3&>(duel_emu_block_idx))
#define blockDim (static_cast<const uint3&>(duel_emu_block_dim))
#define gridDim (static_cast<const uint3&>(duel_emu_grid_dim))
static constexpr int warpSize = 32;

// Dynamic shared memory: one buffer per block, sized by the launch, filled with 0xFF bytes
// (NaN as float) at block start so reads of never-written shared memory show up.
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(duel_emu_dynamic_shared)

// ---- barriers and warp operations (kernels/emu/runtime.cpp) ------------------------------
extern "C" int duel_emu_syncthreads(const char* file, int line, int predicate);
// Waits until every lane of `mask` (restricted to lanes that exist) has arrived, copies
// the 32 lane values into `out` and returns the participating lanes.
extern "C" unsigned duel_emu_warp_sync(unsigned mask, unsigned long long value,
                                       unsigned long long* out, const char* file, int line);
extern "C" unsigned duel_emu_active_mask(void);

#define __syncthreads() ((void)duel_emu_syncthreads(__FILE__, __LINE__, 0))
#define __syncthreads_count(p) duel_emu_syncthreads(__FILE__, __LINE__, (p) ? 1 : 0)
#define __syncthreads_and(p) (duel_emu_syncthreads(__FILE__, __LINE__, (p) ? 0 : 1) == 0)
#define __syncthreads_or(p) (duel_emu_syncthreads(__FILE__, __LINE__, (p) ? 1 : 0) != 0)

inline unsigned duel_emu_lane() {
    const uint3 t = duel_emu_thread_idx, d = duel_emu_block_dim;
    return (t.x + t.y * d.x + t.z * d.x * d.y) & 31u;
}

template <class T>
inline unsigned long long duel_emu_bits(const T& v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    unsigned long long b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T duel_emu_from_bits(unsigned long long b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

// One call site of a warp intrinsic; carries file/line into deadlock messages.
struct duel_emu_site {
    const char* file;
    int line;
    // Source lane rules of PTX shfl.sync (idx/up/down/bfly with the `c` operand CUDA's
    // headers derive from width): out-of-segment sources return the caller's own value.
    template <class T>
    T shfl(int mode, unsigned mask, T var, int b, int width) const {
        unsigned long long vals[32];
        const unsigned part = duel_emu_warp_sync(mask, duel_emu_bits(var), vals, file, line);
        const int lane = (int)duel_emu_lane();
        b &= 31;  // PTX reads the low 5 bits of the lane operand
        const int seg = (~(width - 1)) & 31;  // segment mask
        const int min_lane = lane & seg;
        const int max_lane = min_lane | (31 & ~seg);
        int j = 0;
        bool ok = false;
        switch (mode) {
            case 0: j = min_lane | (b & ~seg); ok = j <= max_lane; break;  // idx
            case 1: j = lane - b; ok = j >= min_lane; break;                 // up
            case 2: j = lane + b; ok = j <= max_lane; break;                 // down
            default: j = lane ^ b; ok = j <= max_lane; break;                // xor
        }
        if (!ok || j < 0 || j > 31 || !((part >> j) & 1u)) return var;
        return duel_emu_from_bits<T>(vals[j]);
    }
    template <class T>
    T shfl_idx(unsigned mask, T var, int src, int width = 32) const { return shfl(0, mask, var, src, width); }
    template <class T>
    T shfl_up(unsigned mask, T var, unsigned d, int width = 32) const { return shfl(1, mask, var, (int)d, width); }
    template <class T>
    T shfl_down(unsigned mask, T var, unsigned d, int width = 32) const { return shfl(2, mask, var, (int)d, width); }
    template <class T>
    T shfl_xor(unsigned mask, T var, int m, int width = 32) const { return shfl(3, mask, var, m, width); }
    unsigned ballot(unsigned mask, int pred) const {
        unsigned long long vals[32];
        const unsigned part = duel_emu_warp_sync(mask, pred ? 1 : 0, vals, file, line);
        unsigned r = 0;
        for (int i = 0; i < 32; ++i)
            if (((part >> i) & 1u) && vals[i]) r |= 1u << i;
        return r;
    }
    int any(unsigned mask, int pred) const { return ballot(mask, pred) != 0; }
    int all(unsigned mask, int pred) const {
        unsigned long long vals[32];
        const unsigned part = duel_emu_warp_sync(mask, pred ? 1 : 0, vals, file, line);
        for (int i = 0; i < 32; ++i)
            if (((part >> i) & 1u) && !vals[i]) return 0;
        return 1;
    }
    void syncwarp(unsigned mask = 0xffffffffu) const {
        unsigned long long vals[32];
        duel_emu_warp_sync(mask, 0, vals, file, line);
    }
};
#define DUEL_EMU_SITE (duel_emu_site{__FILE__, __LINE__})
#define __shfl_sync(...) DUEL_EMU_SITE.shfl_idx(__VA_ARGS__)
#define __shfl_up_sync(...) DUEL_EMU_SITE.shfl_up(__VA_ARGS__)
#define __shfl_down_sync(...) DUEL_EMU_SITE.shfl_down(__VA_ARGS__)
#define __shfl_xor_sync(...) DUEL_EMU_SITE.shfl_xor(__VA_ARGS__)
#define __ballot_sync(mask, pred) DUEL_EMU_SITE.ballot((mask), (pred))
#define __any_sync(mask, pred) DUEL_EMU_SITE.any((mask), (pred))
#define __all_sync(mask, pred) DUEL_EMU_SITE.all((mask), (pred))
#define __syncwarp(...) DUEL_EMU_SITE.syncwarp(__VA_ARGS__)
#define __activemask() duel_emu_active_mask()

// ---- memory ordering and loads ------------------------------------------------------------
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T>
inline T __ldg(const T* p) { return *p; }

// ---- atomics: real ones, blocks run concurrently on worker threads ------------------------
// Not instrumented by the memory checks (they would count as plain accesses and race);
// each reports itself to the runtime as an atomic access instead.
extern "C" void duel_emu_atomic_access(const void* p, size_t n);
#define DUEL_EMU_ATOMIC_FN inline __attribute__((no_sanitize_address))
#define DUEL_EMU_AT(a) duel_emu_atomic_access((a), sizeof *(a))
#define DUEL_EMU_ATOMIC_INT(T)                                                                     \
    DUEL_EMU_ATOMIC_FN T atomicAdd(T* a, T v) { DUEL_EMU_AT(a); return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }           \
    DUEL_EMU_ATOMIC_FN T atomicSub(T* a, T v) { DUEL_EMU_AT(a); return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }           \
    DUEL_EMU_ATOMIC_FN T atomicExch(T* a, T v) { DUEL_EMU_AT(a); return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }         \
    DUEL_EMU_ATOMIC_FN T atomicAnd(T* a, T v) { DUEL_EMU_AT(a); return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }           \
    DUEL_EMU_ATOMIC_FN T atomicOr(T* a, T v) { DUEL_EMU_AT(a); return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }             \
    DUEL_EMU_ATOMIC_FN T atomicXor(T* a, T v) { DUEL_EMU_AT(a); return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }           \
    DUEL_EMU_ATOMIC_FN T atomicCAS(T* a, T cmp, T v) {                                             \
        DUEL_EMU_AT(a);                                                                            \
        __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
        return cmp;                                                                                \
    }                                                                                              \
    DUEL_EMU_ATOMIC_FN T atomicMax(T* a, T v) {                                                    \
        DUEL_EMU_AT(a);                                                                            \
        T old = __atomic_load_n(a, __ATOMIC_SEQ_CST);                                              \
        while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_SEQ_CST,         \
                                                       __ATOMIC_SEQ_CST)) {}                       \
        return old;                                                                                \
    }                                                                                              \
    DUEL_EMU_ATOMIC_FN T atomicMin(T* a, T v) {                                                    \
        DUEL_EMU_AT(a);                                                                            \
        T old = __atomic_load_n(a, __ATOMIC_SEQ_CST);                                              \
        while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_SEQ_CST,         \
                                                       __ATOMIC_SEQ_CST)) {}                       \
        return old;                                                                                \
    }
DUEL_EMU_ATOMIC_INT(int)
DUEL_EMU_ATOMIC_INT(unsigned int)
DUEL_EMU_ATOMIC_INT(unsigned long long)
DUEL_EMU_ATOMIC_INT(long long)
#undef DUEL_EMU_ATOMIC_INT

// Floating-point atomics as CAS loops on the bit pattern (CUDA has add and exch only).
template <class F, class U>
DUEL_EMU_ATOMIC_FN F duel_emu_atomic_float_add(F* a, F v) {
    DUEL_EMU_AT(a);
    U* p = reinterpret_cast<U*>(a);
    U old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    for (;;) {
        F f;
        memcpy(&f, &old, sizeof f);
        F n = f + v;
        U nb;
        memcpy(&nb, &n, sizeof nb);
        if (__atomic_compare_exchange_n(p, &old, nb, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return f;
    }
}
inline float atomicAdd(float* a, float v) { return duel_emu_atomic_float_add<float, uint32_t>(a, v); }
inline double atomicAdd(double* a, double v) { return duel_emu_atomic_float_add<double, uint64_t>(a, v); }
DUEL_EMU_ATOMIC_FN float atomicExch(float* a, float v) {
    DUEL_EMU_AT(a);
    uint32_t b;
    memcpy(&b, &v, 4);
    b = __atomic_exchange_n(reinterpret_cast<uint32_t*>(a), b, __ATOMIC_SEQ_CST);
    float r;
    memcpy(&r, &b, 4);
    return r;
}
DUEL_EMU_ATOMIC_FN unsigned atomicInc(unsigned* a, unsigned limit) {
    DUEL_EMU_AT(a);
    unsigned old = __atomic_load_n(a, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(a, &old, old >= limit ? 0u : old + 1, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    return old;
}
DUEL_EMU_ATOMIC_FN unsigned atomicDec(unsigned* a, unsigned limit) {
    DUEL_EMU_AT(a);
    unsigned old = __atomic_load_n(a, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(a, &old, (old == 0 || old > limit) ? limit : old - 1, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    return old;
}

// ---- integer and bit intrinsics ----------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return (int)((long long)(a << 8 >> 8) * (b << 8 >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- float intrinsics -------------------------------------------------------------------
// Fast-math variants are the accurate libm functions: kernels must not depend on the
// approximation error of the GPU versions, and parity tests compare with tolerances.
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float sinpif(float x) { return sinf(3.14159265358979f * x); }
inline float cospif(float x) { return cosf(3.14159265358979f * x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline unsigned __float_as_uint(float x) { unsigned u; memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned u) { float x; memcpy(&x, &u, 4); return x; }
inline int __float_as_int(float x) { int u; memcpy(&u, &x, 4); return u; }
inline float __int_as_float(int u) { float x; memcpy(&x, &u, 4); return x; }
inline long long __double_as_longlong(double x) { long long u; memcpy(&u, &x, 8); return u; }
inline double __longlong_as_double(long long u) { double x; memcpy(&x, &u, 8); return x; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
inline unsigned __float2uint_rz(float x) { return (unsigned)x; }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }

// ---- __half and __nv_bfloat16 -----------------------------------------------------------
// Round to nearest even; NaN stays NaN with its upper payload bits and the quiet bit set.
// Bit-for-bit the conversions of the Rust `half` crate (tests/emu_selftest.rs checks).
inline unsigned short duel_emu_f32_to_f16(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    const uint32_t sign = x & 0x80000000u, exp = x & 0x7F800000u, man = x & 0x007FFFFFu;
    if (exp == 0x7F800000u) {
        const uint32_t nan_bit = man == 0 ? 0 : 0x0200u;
        return (unsigned short)((sign >> 16) | 0x7C00u | nan_bit | (man >> 13));
    }
    const uint32_t half_sign = sign >> 16;
    const int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) return (unsigned short)(half_sign | 0x7C00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (unsigned short)half_sign;
        const uint32_t m = man | 0x00800000u;
        uint32_t half_man = m >> (14 - half_exp);
        const uint32_t round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) half_man += 1;
        return (unsigned short)(half_sign | half_man);
    }
    const uint32_t bits = half_sign | ((uint32_t)half_exp << 10) | (man >> 13);
    const uint32_t round_bit = 0x00001000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) return (unsigned short)(bits + 1);
    return (unsigned short)bits;
}
inline float duel_emu_f16_to_f32(unsigned short h) {
    uint32_t out;
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = h & 0x7C00u, man = h & 0x03FFu;
    if ((h & 0x7FFFu) == 0) {
        out = sign;
    } else if (exp == 0x7C00u) {
        out = man == 0 ? (sign | 0x7F800000u) : (sign | 0x7FC00000u | (man << 13));
    } else if (exp == 0) {  // subnormal: normalise
        const int e = __builtin_clz(man) - 16 - 6;
        out = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man << (14 + e)) & 0x7FFFFFu);
    } else {
        out = sign | (((exp >> 10) + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &out, 4);
    return f;
}
inline unsigned short duel_emu_f32_to_bf16(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((x >> 16) | 0x0040u);
    const uint32_t round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0) return (unsigned short)((x >> 16) + 1);
    return (unsigned short)(x >> 16);
}
inline float duel_emu_bf16_to_f32(unsigned short b) {
    uint32_t x = (b & 0x7FFFu) > 0x7F80u ? ((uint32_t)(b | 0x0040u) << 16) : ((uint32_t)b << 16);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// Like cuda_fp16.h: trivially constructible (usable in __shared__), implicit conversions
// to and from float, arithmetic rounds the float result once.
#define DUEL_EMU_HALF_TYPE(H, TO, FROM)                                                     \
    struct H {                                                                              \
        unsigned short __x;                                                                 \
        H() = default;                                                                      \
        H(float f) : __x(TO(f)) {}                                                          \
        H(double f) : __x(TO((float)f)) {}                                                  \
        H(int i) : __x(TO((float)i)) {}                                                     \
        operator float() const { return FROM(__x); }                                        \
        H& operator+=(const H& o) { *this = H(float(*this) + float(o)); return *this; }     \
        H& operator-=(const H& o) { *this = H(float(*this) - float(o)); return *this; }     \
        H& operator*=(const H& o) { *this = H(float(*this) * float(o)); return *this; }     \
        H& operator/=(const H& o) { *this = H(float(*this) / float(o)); return *this; }     \
    };                                                                                      \
    inline H operator+(const H& a, const H& b) { return H(float(a) + float(b)); }           \
    inline H operator-(const H& a, const H& b) { return H(float(a) - float(b)); }           \
    inline H operator*(const H& a, const H& b) { return H(float(a) * float(b)); }           \
    inline H operator/(const H& a, const H& b) { return H(float(a) / float(b)); }           \
    inline H operator-(const H& a) { H r; r.__x = (unsigned short)(a.__x ^ 0x8000u); return r; } \
    inline bool operator==(const H& a, const H& b) { return float(a) == float(b); }         \
    inline bool operator!=(const H& a, const H& b) { return float(a) != float(b); }         \
    inline bool operator<(const H& a, const H& b) { return float(a) < float(b); }           \
    inline bool operator<=(const H& a, const H& b) { return float(a) <= float(b); }         \
    inline bool operator>(const H& a, const H& b) { return float(a) > float(b); }           \
    inline bool operator>=(const H& a, const H& b) { return float(a) >= float(b); }
DUEL_EMU_HALF_TYPE(__half, duel_emu_f32_to_f16, duel_emu_f16_to_f32)
DUEL_EMU_HALF_TYPE(__nv_bfloat16, duel_emu_f32_to_bf16, duel_emu_bf16_to_f32)
#undef DUEL_EMU_HALF_TYPE
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
inline short __half_as_short(__half h) { return (short)h.__x; }
inline __half __short_as_half(short u) { __half h; h.__x = (unsigned short)u; return h; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 h; h.__x = u; return h; }
#define DUEL_EMU_HALF_FNS(H)                                                        \
    inline H __hadd(H a, H b) { return a + b; }                                     \
    inline H __hsub(H a, H b) { return a - b; }                                     \
    inline H __hmul(H a, H b) { return a * b; }                                     \
    inline H __hdiv(H a, H b) { return a / b; }                                     \
    inline H __hneg(H a) { return -a; }                                             \
    inline H __habs(H a) { H r; r.__x = (unsigned short)(a.__x & 0x7FFFu); return r; } \
    inline H __hfma(H a, H b, H c) { return H(fmaf(float(a), float(b), float(c))); } \
    inline H __hmax(H a, H b) { return H(fmaxf(float(a), float(b))); }             \
    inline H __hmin(H a, H b) { return H(fminf(float(a), float(b))); }             \
    inline bool __heq(H a, H b) { return a == b; }                                  \
    inline bool __hne(H a, H b) { return a != b; }                                  \
    inline bool __hlt(H a, H b) { return a < b; }                                   \
    inline bool __hle(H a, H b) { return a <= b; }                                  \
    inline bool __hgt(H a, H b) { return a > b; }                                   \
    inline bool __hge(H a, H b) { return a >= b; }                                  \
    inline bool __hisnan(H a) { return (a.__x & 0x7FFFu) > (std::is_same<H, __half>::value ? 0x7C00u : 0x7F80u); }
DUEL_EMU_HALF_FNS(__half)
DUEL_EMU_HALF_FNS(__nv_bfloat16)
#undef DUEL_EMU_HALF_FNS

// ---- tensor-core warp collectives: ldmatrix and mma.sync (kernels/mma.cuh wraps them) -----
// Both are whole-warp operations, like the shuffles: every lane of a full warp (32 existing
// threads) must arrive at the same call; an exited or absent lane is reported by
// duel_emu_warp_sync like any warp operation. Fragment layouts are those of the PTX ISA
// ("Matrix Fragments for mma.m16n8k16 with floating point type", "ldmatrix"), with
// groupID = lane >> 2 and threadID_in_group = lane % 4; the lower-indexed 16-bit element
// of a register is its low half.
extern "C" void duel_emu_warp_fault(const char* what, const char* file, int line);
extern "C" int duel_emu_in_shared(const void* p);

// A warp with fewer than 32 threads cannot run a .aligned warp-wide instruction.
inline void duel_emu_full_warp(const char* op, const char* file, int line) {
    const uint3 t = duel_emu_thread_idx, d = duel_emu_block_dim;
    const unsigned linear = t.x + t.y * d.x + t.z * d.x * d.y, n = d.x * d.y * d.z;
    if (n - (linear & ~31u) < 32) {
        char buf[160];
        snprintf(buf, sizeof buf, "%s needs a full warp of 32 threads (the block has %u)", op, n);
        duel_emu_warp_fault(buf, file, line);
    }
}

// ldmatrix.sync.aligned.m8n8.x{num}.shared.b16: lanes 8j..8j+7 give the row addresses of
// matrix j (j < num; the other lanes' addresses are not read). Each row is 16 bytes of
// shared memory at a 16-byte aligned address, read by the lane that names it (so bounds
// and races are checked as that lane's reads). Lane l receives in r[j] the elements
// 2(l%4) and 2(l%4)+1 of row l/4 of matrix j.
inline void duel_emu_ldmatrix(int num, unsigned* r, const void* row, const char* file, int line) {
    duel_emu_full_warp("ldmatrix", file, line);
    const unsigned lane = duel_emu_lane();
    unsigned long long lo = 0, hi = 0;
    if (lane < 8u * (unsigned)num) {
        char buf[160];
        if (!duel_emu_in_shared(row)) {
            snprintf(buf, sizeof buf, "ldmatrix: lane %u's row address %p is not in shared memory", lane, row);
            duel_emu_warp_fault(buf, file, line);
        }
        if (reinterpret_cast<uintptr_t>(row) & 15u) {
            snprintf(buf, sizeof buf, "ldmatrix: lane %u's row address %p is not 16-byte aligned", lane, row);
            duel_emu_warp_fault(buf, file, line);
        }
        // memcpy: the row holds 16-bit values (no strict-aliasing pun); checked as reads.
        memcpy(&lo, row, 8);
        memcpy(&hi, static_cast<const char*>(row) + 8, 8);
    }
    unsigned long long rows_lo[32], rows_hi[32];
    duel_emu_warp_sync(0xffffffffu, lo, rows_lo, file, line);
    duel_emu_warp_sync(0xffffffffu, hi, rows_hi, file, line);
    const unsigned q = lane >> 2, e = lane & 3;  // row q, 32-bit word e of it (little-endian)
    for (int j = 0; j < num; ++j) {
        const unsigned long long w = e < 2 ? rows_lo[8 * j + q] : rows_hi[8 * j + q];
        r[j] = (unsigned)(w >> (32 * (e & 1)));
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: D = A·B + C, A 16x16,
// B 16x8, C and D 16x8 f32. Fragments of lane l (g = l/4, t = l%4):
//   A: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B: b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g)
//   C, D: c[i] = (g + 8*(i/2), 2t + i%2)
// Each lane's D elements are summed in a fixed order: acc = c, then acc = fmaf(a_k, b_k,
// acc) for k = 0..15 (each product of two bf16 or two f16 values is exact in f32, so
// every step rounds once). A GPU's tensor core sums in an order of its own.
inline void duel_emu_mma_m16n8k16(int bf16, float* d, const unsigned* a, const unsigned* b, const float* c,
                                  const char* file, int line) {
    duel_emu_full_warp("mma.sync", file, line);
    unsigned long long a01[32], a23[32], b01[32];
    duel_emu_warp_sync(0xffffffffu, a[0] | (unsigned long long)a[1] << 32, a01, file, line);
    duel_emu_warp_sync(0xffffffffu, a[2] | (unsigned long long)a[3] << 32, a23, file, line);
    duel_emu_warp_sync(0xffffffffu, b[0] | (unsigned long long)b[1] << 32, b01, file, line);
    auto value = [bf16](unsigned long long pair, int reg, int high) {
        const unsigned short bits = (unsigned short)(pair >> (32 * reg + 16 * high));
        return bf16 ? duel_emu_bf16_to_f32(bits) : duel_emu_f16_to_f32(bits);
    };
    // Element (row, k) of A is in lane (row%8)*4 + (k%8)/2, register (row/8) + 2*(k/8),
    // half k%2; element (k, n) of B in lane n*4 + (k%8)/2, register k/8, half k%2.
    auto a_at = [&](int row, int k) {
        const int src = (row % 8) * 4 + (k % 8) / 2, reg = (row / 8) + 2 * (k / 8);
        return value(reg < 2 ? a01[src] : a23[src], reg & 1, k & 1);
    };
    auto b_at = [&](int k, int n) { return value(b01[n * 4 + (k % 8) / 2], k / 8, k & 1); };
    const int lane = (int)duel_emu_lane(), g = lane >> 2, t = lane & 3;
    float out[4];
    for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
        float acc = c[i];
        for (int k = 0; k < 16; ++k) acc = fmaf(a_at(row, k), b_at(k, col), acc);
        out[i] = acc;
    }
    for (int i = 0; i < 4; ++i) d[i] = out[i];  // d may alias c
}
