// optim.cu — fused optimizer updates and weight clipping, in place on f32 parameters.
//
// Computes, per element i < n (p: parameter, g: its gradient, state buffers as named),
// with PyTorch's torch.optim semantics; every product and sum is written with the
// __f*_rn intrinsics so nvcc never contracts them into FMAs: the arithmetic is the same
// IEEE f32 sequence as the cpu reference (src/optim/*.rs), so results match bit for bit.
//   sgd_f32:     d = g (+ wd*p); if momentum: buf = first ? d : momentum*buf + (1-dampening)*d,
//                d = nesterov ? d + momentum*buf : buf;  p = p - lr*d
//   adam_f32:    d = g (+ wd*p); m = beta1*m + (1-beta1)*d; v = beta2*v + (1-beta2)*d*d;
//                p = p - step_size * (m / (sqrt(v)/bc2_sqrt + eps))
//                (step_size = lr/(1-beta1^t), bc2_sqrt = sqrt(1-beta2^t): computed on the host)
//   rmsprop_f32: d = g (+ wd*p); sq = alpha*sq + (1-alpha)*d*d; a = sqrt(sq) + eps;
//                if momentum: buf = momentum*buf + d/a, p = p - lr*buf; else p = p - lr*(d/a)
//   clip_f32:    p = min(max(p, lo), hi)  (NaN stays NaN, as torch.clamp)
// Launch: 1-D, one thread per element, grid-stride loop, any grid/block (256 used).
// Limits: n < 2^31 (checked by the launcher); contiguous f32 buffers, the layout offset
// already applied to the pointers; p, g and the state buffers must not overlap. Flags
// (`has_wd`, `use_momentum`, ...) are 0/1 ints; unused state pointers may be null.
#include "common.cuh"

extern "C" __global__ void sgd_f32(float* p, const float* g, float* buf, int n, float lr,
                                   float momentum, float one_minus_dampening,
                                   float weight_decay, int has_wd, int use_momentum,
                                   int nesterov, int first) {
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float pi = p[i];
        float d = g[i];
        if (has_wd) {
            d = __fadd_rn(d, __fmul_rn(weight_decay, pi));
        }
        if (use_momentum) {
            float b;
            if (first) {
                b = d;
            } else {
                b = __fadd_rn(__fmul_rn(momentum, buf[i]), __fmul_rn(one_minus_dampening, d));
            }
            buf[i] = b;
            d = nesterov ? __fadd_rn(d, __fmul_rn(momentum, b)) : b;
        }
        p[i] = __fsub_rn(pi, __fmul_rn(lr, d));
    }
}

extern "C" __global__ void adam_f32(float* p, const float* g, float* m, float* v, int n,
                                    float beta1, float one_minus_beta1, float beta2,
                                    float one_minus_beta2, float step_size, float bc2_sqrt,
                                    float eps, float weight_decay, int has_wd) {
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float pi = p[i];
        float d = g[i];
        if (has_wd) {
            d = __fadd_rn(d, __fmul_rn(weight_decay, pi));
        }
        const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, d));
        const float vi =
            __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(one_minus_beta2, __fmul_rn(d, d)));
        m[i] = mi;
        v[i] = vi;
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        p[i] = __fsub_rn(pi, __fmul_rn(step_size, __fdiv_rn(mi, denom)));
    }
}

extern "C" __global__ void rmsprop_f32(float* p, const float* g, float* sq, float* buf, int n,
                                       float lr, float alpha, float one_minus_alpha, float eps,
                                       float momentum, float weight_decay, int has_wd,
                                       int use_momentum) {
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float pi = p[i];
        float d = g[i];
        if (has_wd) {
            d = __fadd_rn(d, __fmul_rn(weight_decay, pi));
        }
        const float s = __fadd_rn(__fmul_rn(alpha, sq[i]), __fmul_rn(one_minus_alpha, __fmul_rn(d, d)));
        sq[i] = s;
        const float a = __fadd_rn(__fsqrt_rn(s), eps);
        float u = __fdiv_rn(d, a);
        if (use_momentum) {
            u = __fadd_rn(__fmul_rn(momentum, buf[i]), u);
            buf[i] = u;
        }
        p[i] = __fsub_rn(pi, __fmul_rn(lr, u));
    }
}

extern "C" __global__ void clip_f32(float* p, int n, float lo, float hi) {
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float x = p[i];
        p[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}
