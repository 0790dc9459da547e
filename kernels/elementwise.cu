// elementwise.cu — unary and binary elementwise ops on f32, plus dtype-agnostic strided
// copies (what Tensor::contiguous() runs on a simt device).
//
// What it computes
//   unary_*   y[i] = f(x[i]) for f selected by `op` (codes below, mirrored by
//             `UnaryCode` in src/ops/elementwise/mod.rs), with scalar parameters p0, p1:
//             COPY, NEG, EXP, LOG, SQRT, ABS, RELU, LEAKY_RELU(p0 = slope), SIGMOID,
//             TANH, CLAMP(p0 = min, p1 = max), POWF(p0 = exponent), AFFINE(x*p0 + p1).
//   binary_*  y[i] = g(a[i], b[i]) for g selected by `op` (`BinaryCode` in Rust):
//             ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM. Broadcasting is done by the
//             launch layer: it hands the strided kernel each input's layout already
//             broadcast to the output shape (stride 0 on expanded dims).
//   copy_strided_b16/b64  y[i] = x[layout_index(xl, i)] for 2- and 8-byte elements
//             (f16/bf16 and f64 storage); f32 copies use unary_* with op COPY.
// Semantics follow PyTorch and the cpu backend: NaN propagates through relu, clamp,
// maximum and minimum; sigmoid uses the overflow-free two-branch form; precise libm-style
// functions only (expf, logf, tanhf, powf), no fast-math intrinsics, so the emulator and
// the cpu backend agree to a few ulp. AFFINE is computed with fmaf (one rounding).
//
// Launch shape
//   1-D grid of 1-D blocks (the launch layer uses 256 threads and caps the grid), each
//   thread walks a grid-stride loop, so any grid size covers any n. The *_contiguous
//   kernels read x/a/b and write y as float4 when every pointer is 16-byte aligned
//   (a uniform branch), then finish the n % 4 tail with scalar accesses.
//   No shared memory, no __syncthreads.
//
// Limits
//   n and every layout's storage span must be below 2^31 (the launch layer checks);
//   rank <= DUEL_MAX_RANK. Output y is contiguous and must not alias an input that is
//   read at a different index (in-place with identical contiguous x and y is fine).
#include "common.cuh"

// Unary op codes (UnaryCode in Rust).
#define EW_COPY 0
#define EW_NEG 1
#define EW_EXP 2
#define EW_LOG 3
#define EW_SQRT 4
#define EW_ABS 5
#define EW_RELU 6
#define EW_LEAKY_RELU 7
#define EW_SIGMOID 8
#define EW_TANH 9
#define EW_CLAMP 10
#define EW_POWF 11
#define EW_AFFINE 12

// Binary op codes (BinaryCode in Rust).
#define EW_ADD 0
#define EW_SUB 1
#define EW_MUL 2
#define EW_DIV 3
#define EW_POW 4
#define EW_MAXIMUM 5
#define EW_MINIMUM 6

__device__ __forceinline__ float ew_unary(int op, float p0, float p1, float x) {
    switch (op) {
        case EW_COPY: return x;
        case EW_NEG: return -x;
        case EW_EXP: return expf(x);
        case EW_LOG: return logf(x);
        case EW_SQRT: return sqrtf(x);
        case EW_ABS: return fabsf(x);
        // Comparisons are false for NaN, so NaN passes through unchanged.
        case EW_RELU: return x < 0.0f ? 0.0f : x;
        case EW_LEAKY_RELU: return x < 0.0f ? x * p0 : x;
        case EW_SIGMOID: {
            if (x >= 0.0f) {
                return 1.0f / (1.0f + expf(-x));
            }
            const float e = expf(x);  // x < 0 or NaN: e in [0, 1) or NaN
            return e / (1.0f + e);
        }
        case EW_TANH: return tanhf(x);
        case EW_CLAMP: {
            // PyTorch order: max with the lower bound first, then min with the upper.
            const float lo = x < p0 ? p0 : x;
            return lo > p1 ? p1 : lo;
        }
        case EW_POWF: return powf(x, p0);
        case EW_AFFINE: return fmaf(x, p0, p1);
        default: return x;
    }
}

__device__ __forceinline__ float ew_binary(int op, float a, float b) {
    switch (op) {
        case EW_ADD: return a + b;
        case EW_SUB: return a - b;
        case EW_MUL: return a * b;
        case EW_DIV: return a / b;
        case EW_POW: return powf(a, b);
        // NaN in either operand gives NaN (fmaxf/fminf would drop it).
        case EW_MAXIMUM: return (a > b || a != a) ? a : b;
        case EW_MINIMUM: return (a < b || a != a) ? a : b;
        default: return a;
    }
}

__device__ __forceinline__ bool ew_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}

extern "C" __global__ void unary_contiguous_f32(int op, float p0, float p1, const float* x, float* y, int n) {
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long done = 0;
    if (ew_aligned16(x) && ew_aligned16(y)) {
        const long long n4 = n / 4;
        const float4* x4 = reinterpret_cast<const float4*>(x);
        float4* y4 = reinterpret_cast<float4*>(y);
        for (long long i = start; i < n4; i += stride) {
            float4 v = x4[i];
            v.x = ew_unary(op, p0, p1, v.x);
            v.y = ew_unary(op, p0, p1, v.y);
            v.z = ew_unary(op, p0, p1, v.z);
            v.w = ew_unary(op, p0, p1, v.w);
            y4[i] = v;
        }
        done = n4 * 4;
    }
    for (long long i = done + start; i < n; i += stride) {
        y[i] = ew_unary(op, p0, p1, x[i]);
    }
}

extern "C" __global__ void unary_strided_f32(int op, float p0, float p1, const float* x, TensorLayout xl, float* y, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = ew_unary(op, p0, p1, x[layout_index(xl, (int)i)]);
    }
}

extern "C" __global__ void binary_contiguous_f32(int op, const float* a, const float* b, float* y, int n) {
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long done = 0;
    if (ew_aligned16(a) && ew_aligned16(b) && ew_aligned16(y)) {
        const long long n4 = n / 4;
        const float4* a4 = reinterpret_cast<const float4*>(a);
        const float4* b4 = reinterpret_cast<const float4*>(b);
        float4* y4 = reinterpret_cast<float4*>(y);
        for (long long i = start; i < n4; i += stride) {
            const float4 u = a4[i];
            const float4 v = b4[i];
            float4 r;
            r.x = ew_binary(op, u.x, v.x);
            r.y = ew_binary(op, u.y, v.y);
            r.z = ew_binary(op, u.z, v.z);
            r.w = ew_binary(op, u.w, v.w);
            y4[i] = r;
        }
        done = n4 * 4;
    }
    for (long long i = done + start; i < n; i += stride) {
        y[i] = ew_binary(op, a[i], b[i]);
    }
}

extern "C" __global__ void binary_strided_f32(int op, const float* a, TensorLayout al, const float* b, TensorLayout bl, float* y, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = ew_binary(op, a[layout_index(al, (int)i)], b[layout_index(bl, (int)i)]);
    }
}

extern "C" __global__ void copy_strided_b16(const short* x, TensorLayout xl, short* y, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = x[layout_index(xl, (int)i)];
    }
}

// 8-byte elements are moved as double loads/stores: plain moves, bit-exact.
extern "C" __global__ void copy_strided_b64(const double* x, TensorLayout xl, double* y, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = x[layout_index(xl, (int)i)];
    }
}
