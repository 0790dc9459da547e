// norm.cu — batch norm and instance norm (training and eval forward, fused closed-form
// backward), one kernel family for both.
//
// Computes: the contiguous input x is seen as [outer, G, inner]; group g normalises the
// M = outer*inner elements x[(o*G + g)*inner + i]. Batch norm of [N, C, *]: outer = N,
// G = C, inner = prod(*). Instance norm of [N, C, H, W]: outer = 1, G = N*C, inner = H*W.
// The affine parameters (weight, bias) of group g are indexed by g % C.
//   norm_train_forward_f32: per group, TWO-PASS statistics (mean = sum/M, then
//     var = sum((x - mean)^2)/M, the biased variance), y = (x - mean)*invstd*w + b with
//     invstd = 1/sqrt(var + eps); writes save_mean[g], save_invstd[g] for backward and,
//     when update_running != 0, running_mean[g] = (1-momentum)*running_mean[g] +
//     momentum*mean and running_var[g] = (1-momentum)*running_var[g] +
//     momentum*var*M/(M-1) (the unbiased variance), in place.
//   norm_eval_forward_f32: y = (x - rm[g])*invstd*w + b with invstd = 1/sqrt(rv[g] + eps)
//     (running statistics, elementwise); threads with index < G also write save_mean[g] =
//     rm[g], save_invstd[g] = invstd for backward.
//   norm_backward_f32: per group, x_hat = (x - mean)*invstd, sum_dy = sum(dy),
//     sum_dy_xhat = sum(dy*x_hat) (written per group: dbias and dweight, summed over n by
//     the launcher for instance norm), and
//     training: dx = (w*invstd/M) * (M*dy - sum_dy - x_hat*sum_dy_xhat)
//     eval:     dx = w*invstd*dy.
// weight / bias may be null (has_weight / has_bias = 0: w = 1, b = 0).
// Reductions: per-thread f32 accumulation, then a warp shuffle tree (__shfl_down_sync) and
// a shared-memory step across warps (static shared, 33 floats); every thread reaches
// every __syncthreads (work is guarded by `if`, no early return).
// Launch: train forward and backward: grid (G), block 256 (a multiple of 32, <= 1024),
//   no dynamic shared memory. Eval forward: 1-D, one thread per element (grid-stride),
//   any block size (256 used).
// Limits: outer*G*inner < 2^31 (checked by the launcher); x, dy, y, dx contiguous.
#include "common.cuh"

__device__ __forceinline__ float duel_norm_warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    return v;
}

// Sum of `v` over the block, returned to every thread. `part` holds 33 floats.
__device__ __forceinline__ float duel_norm_block_sum(float v, float* part) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    v = duel_norm_warp_sum(v);
    if (lane == 0) {
        part[warp] = v;
    }
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? part[lane] : 0.0f;
        t = duel_norm_warp_sum(t);
        if (lane == 0) {
            part[32] = t;
        }
    }
    __syncthreads();
    const float total = part[32];
    __syncthreads();  // `part` may be reused by the next call
    return total;
}

extern "C" __global__ void norm_train_forward_f32(const float* x, float* y, const float* weight, const float* bias, float* save_mean, float* save_invstd, float* running_mean, float* running_var, int outer, int groups, int inner, int channels, int has_weight, int has_bias, int update_running, float momentum, float eps) {
    __shared__ float part[33];
    const int g = blockIdx.x;
    const int m = outer * inner;
    const bool active = g < groups;
    float acc = 0.0f;
    if (active) {
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const int o = j / inner;
            const int i = j - o * inner;
            acc += x[(o * groups + g) * inner + i];
        }
    }
    const float mean = duel_norm_block_sum(acc, part) / (float)m;
    acc = 0.0f;
    if (active) {
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const int o = j / inner;
            const int i = j - o * inner;
            const float d = x[(o * groups + g) * inner + i] - mean;
            acc += d * d;
        }
    }
    const float var = duel_norm_block_sum(acc, part) / (float)m;
    const float invstd = 1.0f / sqrtf(var + eps);
    if (active) {
        const int c = g % channels;
        const float w = has_weight ? weight[c] : 1.0f;
        const float b = has_bias ? bias[c] : 0.0f;
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const int o = j / inner;
            const int i = j - o * inner;
            const int idx = (o * groups + g) * inner + i;
            y[idx] = (x[idx] - mean) * invstd * w + b;
        }
        if (threadIdx.x == 0) {
            save_mean[g] = mean;
            save_invstd[g] = invstd;
            if (update_running) {
                const float unbiased = m > 1 ? var * ((float)m / (float)(m - 1)) : var;
                running_mean[g] = (1.0f - momentum) * running_mean[g] + momentum * mean;
                running_var[g] = (1.0f - momentum) * running_var[g] + momentum * unbiased;
            }
        }
    }
}

extern "C" __global__ void norm_eval_forward_f32(const float* x, float* y, const float* weight, const float* bias, const float* running_mean, const float* running_var, float* save_mean, float* save_invstd, int outer, int groups, int inner, int channels, int has_weight, int has_bias, float eps) {
    const int n = outer * groups * inner;
    const int stride = blockDim.x * gridDim.x;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int g = (idx / inner) % groups;
        const int c = g % channels;
        const float invstd = 1.0f / sqrtf(running_var[g] + eps);
        const float w = has_weight ? weight[c] : 1.0f;
        const float b = has_bias ? bias[c] : 0.0f;
        y[idx] = (x[idx] - running_mean[g]) * invstd * w + b;
        if (idx < groups) {
            save_mean[idx] = running_mean[idx];
            save_invstd[idx] = 1.0f / sqrtf(running_var[idx] + eps);
        }
    }
}

extern "C" __global__ void norm_backward_f32(const float* x, const float* dy, const float* save_mean, const float* save_invstd, const float* weight, float* dx, float* sum_dy_out, float* sum_dy_xhat_out, int outer, int groups, int inner, int channels, int has_weight, int training) {
    __shared__ float part[33];
    const int g = blockIdx.x;
    const int m = outer * inner;
    const bool active = g < groups;
    const float mean = active ? save_mean[g] : 0.0f;
    const float invstd = active ? save_invstd[g] : 0.0f;
    float a_dy = 0.0f;
    float a_dyx = 0.0f;
    if (active) {
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const int o = j / inner;
            const int i = j - o * inner;
            const int idx = (o * groups + g) * inner + i;
            const float d = dy[idx];
            a_dy += d;
            a_dyx += d * ((x[idx] - mean) * invstd);
        }
    }
    const float sum_dy = duel_norm_block_sum(a_dy, part);
    const float sum_dy_xhat = duel_norm_block_sum(a_dyx, part);
    if (active) {
        const float w = has_weight ? weight[g % channels] : 1.0f;
        const float k = w * invstd;
        const float inv_m = 1.0f / (float)m;
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const int o = j / inner;
            const int i = j - o * inner;
            const int idx = (o * groups + g) * inner + i;
            if (training) {
                const float xhat = (x[idx] - mean) * invstd;
                dx[idx] = k * (dy[idx] - sum_dy * inv_m - xhat * (sum_dy_xhat * inv_m));
            } else {
                dx[idx] = k * dy[idx];
            }
        }
        if (threadIdx.x == 0) {
            sum_dy_out[g] = sum_dy;
            sum_dy_xhat_out[g] = sum_dy_xhat;
        }
    }
}
