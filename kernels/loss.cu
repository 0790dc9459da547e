// loss.cu — fused GAN / image-to-image losses: per-element loss + mean reduction
// (forward), and the elementwise gradient scaled by the incoming scalar gradient
// (backward). x, t, dx, dt are contiguous f32 arrays of n elements.
//
// Per-element losses (kinds), with the target t either the tensor t[i] (has_t != 0) or
// the scalar t_scalar (has_t == 0; t is then any valid pointer and never read):
//   bce_with_logits: max(x,0) - x*t + log1p(exp(-|x|))   (stable for any finite x)
//                    d/dx = sigmoid(x) - t,  d/dt = -x
//   least_squares:   (x - t)^2   (the launcher's scale 0.5/n gives 1/2 mean)
//                    d/dx = 2(x - t), d/dt = -2(x - t)
//   l1:              |x - t|     d/dx = sign(x - t) (0 at 0),   d/dt = -d/dx
//   mse:             (x - t)^2   d/dx = 2(x - t),               d/dt = -d/dx
//
// Kernels and launch shapes:
//   *_forward_f32 (bce_with_logits, least_squares, l1_loss, mse_loss):
//     grid (blocks), block 256 (a multiple of 32, at most 1024), dynamic shared memory
//     blockDim/32 floats. Grid-stride loop; each thread sums its elements in f32, then a
//     warp shuffle tree (__shfl_down_sync, full mask) and a shared-memory step across
//     warps; block b writes its partial sum to partial[b] (no atomics).
//   loss_finish_f32: grid 1, block 256 (a power of two, 32..1024), dynamic shared memory
//     blockDim doubles. out[0] = scale * sum(partial[0..parts]) summed in double in a
//     fixed order: the result only depends on the launch shape (reproducible).
//   *_backward_f32: 1-D grid-stride, any block size (256 used). With go = g[0] * scale:
//     dx[i] = go * d/dx; when want_dt != 0 also dt[i] = go * d/dt (dt is otherwise any
//     valid pointer and never written).
// Limits: n < 2^31 (checked by the launcher). All threads reach every __syncthreads
// (work is guarded by `if`, never an early return).
#include "common.cuh"

#define DUEL_LOSS_BCE 0
#define DUEL_LOSS_SQUARE 1
#define DUEL_LOSS_L1 2

static __device__ __forceinline__ float loss_elem(int kind, float x, float t) {
    if (kind == DUEL_LOSS_BCE) {
        return fmaxf(x, 0.0f) - x * t + log1pf(expf(-fabsf(x)));
    }
    const float d = x - t;
    return kind == DUEL_LOSS_L1 ? fabsf(d) : d * d;
}

// d loss / d x; the gradient with respect to t is -x (bce) or the negation (others).
static __device__ __forceinline__ float loss_grad_x(int kind, float x, float t) {
    if (kind == DUEL_LOSS_BCE) {
        // sigmoid without overflow: exp of a non-positive argument only
        const float e = expf(-fabsf(x));
        const float s = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        return s - t;
    }
    const float d = x - t;
    if (kind == DUEL_LOSS_L1) {
        return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
    }
    return 2.0f * d;
}

static __device__ __forceinline__ void loss_forward(int kind, const float* x, const float* t, int has_t, float t_scalar, float* partial, int n) {
    DYNAMIC_SHARED(float, warp_part);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    float acc = 0.0f;
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        acc += loss_elem(kind, x[i], has_t ? t[i] : t_scalar);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }
    if (lane == 0) {
        warp_part[warp] = acc;
    }
    __syncthreads();
    if (warp == 0) {
        float v = lane < warps ? warp_part[lane] : 0.0f;
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) {
            v += __shfl_down_sync(0xffffffffu, v, offset);
        }
        if (lane == 0) {
            partial[blockIdx.x] = v;
        }
    }
}

static __device__ __forceinline__ void loss_backward(int kind, const float* x, const float* t, int has_t, float t_scalar, const float* g, float scale, float* dx, float* dt, int want_dt, int n) {
    const float go = g[0] * scale;
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        const float ti = has_t ? t[i] : t_scalar;
        const float gx = loss_grad_x(kind, xi, ti);
        dx[i] = go * gx;
        if (want_dt) {
            dt[i] = go * (kind == DUEL_LOSS_BCE ? -xi : -gx);
        }
    }
}

extern "C" __global__ void bce_with_logits_forward_f32(const float* x, const float* t, int has_t, float t_scalar, float* partial, int n) {
    loss_forward(DUEL_LOSS_BCE, x, t, has_t, t_scalar, partial, n);
}

extern "C" __global__ void least_squares_forward_f32(const float* x, const float* t, int has_t, float t_scalar, float* partial, int n) {
    loss_forward(DUEL_LOSS_SQUARE, x, t, has_t, t_scalar, partial, n);
}

extern "C" __global__ void l1_loss_forward_f32(const float* x, const float* t, int has_t, float t_scalar, float* partial, int n) {
    loss_forward(DUEL_LOSS_L1, x, t, has_t, t_scalar, partial, n);
}

extern "C" __global__ void mse_loss_forward_f32(const float* x, const float* t, int has_t, float t_scalar, float* partial, int n) {
    loss_forward(DUEL_LOSS_SQUARE, x, t, has_t, t_scalar, partial, n);
}

extern "C" __global__ void loss_finish_f32(const float* partial, int parts, float scale, float* out) {
    DYNAMIC_SHARED(double, part);
    double acc = 0.0;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) {
        acc += (double)partial[i];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x >> 1; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) {
            part[threadIdx.x] += part[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[0] = (float)(part[0] * (double)scale);
    }
}

extern "C" __global__ void bce_with_logits_backward_f32(const float* x, const float* t, int has_t, float t_scalar, const float* g, float scale, float* dx, float* dt, int want_dt, int n) {
    loss_backward(DUEL_LOSS_BCE, x, t, has_t, t_scalar, g, scale, dx, dt, want_dt, n);
}

extern "C" __global__ void least_squares_backward_f32(const float* x, const float* t, int has_t, float t_scalar, const float* g, float scale, float* dx, float* dt, int want_dt, int n) {
    loss_backward(DUEL_LOSS_SQUARE, x, t, has_t, t_scalar, g, scale, dx, dt, want_dt, n);
}

extern "C" __global__ void l1_loss_backward_f32(const float* x, const float* t, int has_t, float t_scalar, const float* g, float scale, float* dx, float* dt, int want_dt, int n) {
    loss_backward(DUEL_LOSS_L1, x, t, has_t, t_scalar, g, scale, dx, dt, want_dt, n);
}

extern "C" __global__ void mse_loss_backward_f32(const float* x, const float* t, int has_t, float t_scalar, const float* g, float scale, float* dx, float* dt, int want_dt, int n) {
    loss_backward(DUEL_LOSS_SQUARE, x, t, has_t, t_scalar, g, scale, dx, dt, want_dt, n);
}
