// elementwise.cu — unary and binary elementwise ops on f32, plus dtype-agnostic strided
// copies (what Tensor::contiguous() runs on a simt device).
//
// What it computes
//   unary_*   y[i] = f(x[i]) for f selected by `op` (codes below, mirrored by
//             `UnaryCode` in src/ops/elementwise/mod.rs), with scalar parameters p0, p1:
//             COPY, NEG, EXP, LOG, SQRT, ABS, RELU, LEAKY_RELU(p0 = slope), SIGMOID,
//             TANH, CLAMP(p0 = min, p1 = max), POWF(p0 = exponent), AFFINE(x*p0 + p1).
//   binary_*  y[i] = g(a[i], b[i]) for g selected by `op` (the discriminants of `BinaryOp`
//             in src/ops/elementwise/mod.rs, `BinaryOp::code`):
//             ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM. Broadcasting is done by the
//             launch layer: it hands the strided kernel each input's layout already
//             broadcast to the output shape (stride 0 on expanded dims).
//   copy_strided_b16/b64  y[i] = x[layout_index(xl, i)] for 2- and 8-byte elements
//             (f16/bf16 and f64 storage); f32 copies use unary_* with op COPY.
//   unary_backward_f32   dx[i] = dy[i] * f'(x[i]) for the unary op `op` (same codes and
//             parameters as the forward), computed from the saved input x or the saved
//             output y: each op reads at most one of them (EXP, SQRT, RELU, SIGMOID, TANH
//             read y; LOG, ABS, LEAKY_RELU, CLAMP, POWF read x; COPY, NEG, AFFINE read
//             neither), and the unread pointer may be null. All four arrays are contiguous.
//   binary_backward_f32  da[i] = dy[i] * dg/da and db[i] = dy[i] * dg/db at the OUTPUT
//             shape: a and b are read through their layouts broadcast to the output shape,
//             dy/da/db are contiguous with n elements. The launch layer then sums da/db
//             down to each operand's shape (the backward of broadcasting). da or db may be
//             null (not wanted); a and/or b may be null when the op does not read them
//             (ADD, SUB; MUL's da reads only b and its db only a).
// Derivative conventions (PyTorch's; the cpu backend matches):
//   relu'(x) = 0 for y <= 0 else 1 (0 at 0, 1 for NaN: torch's threshold_backward);
//   abs'(x) = sign(x), 0 at 0 and for NaN (torch's sgn); leaky_relu'(x) = 1 for x > 0
//   else slope (slope at 0); clamp passes dy where min < x < max (0 at a bound and for
//   NaN, as torch 2.15's clamp and hardtanh); powf with exponent 0 has gradient 0;
//   sigmoid' = y(1 - y), tanh' = 1 - y^2, sqrt' = 1/(2y), exp' = y, log' = 1/x;
//   div: da = dy/b, db = -dy*a/(b*b); pow: da = dy*b*a^(b-1) (0 where b == 0),
//   db = dy*a^b*ln(a) (0 where a == 0 and b >= 0); maximum/minimum: the operand that
//   wins gets dy, the other 0, a tie gives each dy/2, NaN in either gives both dy.
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
//   The *_backward_f32 kernels use plain scalar grid-stride loops (one element per
//   thread per step). No shared memory, no __syncthreads.
//
// Limits
//   n and every layout's storage span must be below 2^31 (the launch layer checks);
//   rank <= DUEL_MAX_RANK. Output y is contiguous and must not alias an input that is
//   read at a different index (in-place with identical contiguous x and y is fine).
//   The backward kernels compute in f32 only; outputs dx/da/db must not alias inputs.
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

// Binary op codes (the discriminants of `BinaryOp` in Rust).
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

// ---- backward -------------------------------------------------------------------------

// dy * f'(x) for unary op `op`, from the saved input x or output y (conventions in the
// header). Kept in the same operation order as the cpu backend's `unary_backward`.
__device__ __forceinline__ float ew_unary_grad(int op, float p0, float p1, float x, float y, float g) {
    switch (op) {
        case EW_COPY: return g;
        case EW_NEG: return -g;
        case EW_EXP: return g * y;
        case EW_LOG: return g / x;
        case EW_SQRT: return g / (2.0f * y);
        // sign(x) * g, with sign(0) = sign(NaN) = 0 (PyTorch).
        case EW_ABS: return x > 0.0f ? g : (x < 0.0f ? -g : 0.0f);
        // PyTorch's threshold_backward: the gradient passes unless y <= 0 (so it passes NaN).
        case EW_RELU: return y <= 0.0f ? 0.0f : g;
        case EW_LEAKY_RELU: return x > 0.0f ? g : g * p0;
        case EW_SIGMOID: return g * ((1.0f - y) * y);
        case EW_TANH: return g * (1.0f - y * y);
        case EW_CLAMP: return (x > p0 && x < p1) ? g : 0.0f;
        case EW_POWF: return p0 == 0.0f ? 0.0f : g * (p0 * powf(x, p0 - 1.0f));
        case EW_AFFINE: return g * p0;
        default: return g;
    }
}

// dy * dg(a, b)/da for binary op `op`.
__device__ __forceinline__ float ew_binary_grad_a(int op, float a, float b, float g) {
    switch (op) {
        case EW_ADD: return g;
        case EW_SUB: return g;
        case EW_MUL: return g * b;
        case EW_DIV: return g / b;
        case EW_POW: return b == 0.0f ? 0.0f : g * (b * powf(a, b - 1.0f));
        case EW_MAXIMUM: return a < b ? 0.0f : (a == b ? g * 0.5f : g);
        case EW_MINIMUM: return a > b ? 0.0f : (a == b ? g * 0.5f : g);
        default: return g;
    }
}

// dy * dg(a, b)/db for binary op `op`.
__device__ __forceinline__ float ew_binary_grad_b(int op, float a, float b, float g) {
    switch (op) {
        case EW_ADD: return g;
        case EW_SUB: return -g;
        case EW_MUL: return g * a;
        case EW_DIV: return (-g * a) / (b * b);
        case EW_POW: return (a == 0.0f && b >= 0.0f) ? 0.0f : g * (powf(a, b) * logf(a));
        case EW_MAXIMUM: return a > b ? 0.0f : (a == b ? g * 0.5f : g);
        case EW_MINIMUM: return a < b ? 0.0f : (a == b ? g * 0.5f : g);
        default: return g;
    }
}

extern "C" __global__ void unary_backward_f32(int op, float p0, float p1, const float* x, const float* y, const float* dy, float* dx, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xv = x != nullptr ? x[i] : 0.0f;
        const float yv = y != nullptr ? y[i] : 0.0f;
        dx[i] = ew_unary_grad(op, p0, p1, xv, yv, dy[i]);
    }
}

extern "C" __global__ void binary_backward_f32(int op, const float* a, TensorLayout al, const float* b, TensorLayout bl, const float* dy, float* da, float* db, int n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float av = a != nullptr ? a[layout_index(al, (int)i)] : 0.0f;
        const float bv = b != nullptr ? b[layout_index(bl, (int)i)] : 0.0f;
        const float g = dy[i];
        if (da != nullptr) {
            da[i] = ew_binary_grad_a(op, av, bv, g);
        }
        if (db != nullptr) {
            db[i] = ew_binary_grad_b(op, av, bv, g);
        }
    }
}
