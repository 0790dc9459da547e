// pad.cu — 2-D padding of [N, C, H, W] (zero and reflect, PyTorch semantics).
//
// Computes (x contiguous [N, C, H, W], y contiguous [N, C, H+top+bottom, W+left+right]):
//   pad2d_f32: y[n,c,oy,ox] = x[n,c,src(oy - top, H), src(ox - left, W)] where for
//     mode 0 (zero) an out-of-range index gives 0, and for mode 1 (reflect, no edge
//     repeat) src(i, D) = -i for i < 0 and 2(D-1) - i for i >= D (the launcher requires
//     pad < D, so one reflection suffices).
//   pad2d_backward_f32: dx[n,c,h,w] = sum of dy over every output position whose source
//     is (h, w): a gather per input pixel (deterministic, no atomics). Per axis an input
//     index i has at most three sources: the direct one i + before, and in reflect mode
//     the mirror in the leading pad (before - i, for 1 <= i <= before) and in the trailing
//     pad (before + 2(D-1) - i, for D-1-after <= i <= D-2); dx sums the products of both
//     axes' candidate lists (up to 9 terms) in a fixed order.
// Launch: 1-D, one thread per output element (forward) / input element (backward),
//   grid-stride loop, any block size (256 used).
// Limits: element counts < 2^31 (checked by the launcher).
#include "common.cuh"

static __device__ __forceinline__ int pad_source(int i, int d, int mode) {
    if (i >= 0 && i < d) {
        return i;
    }
    if (mode == 0) {
        return -1;
    }
    return i < 0 ? -i : 2 * (d - 1) - i;
}

// Output indices along one axis whose source is input index i; returns how many (1..3).
static __device__ __forceinline__ int pad_candidates(int i, int d, int before, int after, int mode, int out[3]) {
    int k = 0;
    out[k++] = i + before;
    if (mode == 1) {
        if (i >= 1 && i <= before) {
            out[k++] = before - i;
        }
        if (i <= d - 2 && i >= d - 1 - after) {
            out[k++] = before + 2 * (d - 1) - i;
        }
    }
    return k;
}

extern "C" __global__ void pad2d_f32(const float* x, float* y, int planes, int h, int w, int left, int right, int top, int bottom, int mode) {
    const int oh = h + top + bottom;
    const int ow = w + left + right;
    const int n = planes * oh * ow;
    const int stride = blockDim.x * gridDim.x;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int ox = idx % ow;
        const int rest = idx / ow;
        const int oy = rest % oh;
        const int plane = rest / oh;
        const int sy = pad_source(oy - top, h, mode);
        const int sx = pad_source(ox - left, w, mode);
        y[idx] = (sy >= 0 && sx >= 0) ? x[(plane * h + sy) * w + sx] : 0.0f;
    }
}

extern "C" __global__ void pad2d_backward_f32(const float* dy, float* dx, int planes, int h, int w, int left, int right, int top, int bottom, int mode) {
    const int oh = h + top + bottom;
    const int ow = w + left + right;
    const int n = planes * h * w;
    const int stride = blockDim.x * gridDim.x;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int ix = idx % w;
        const int rest = idx / w;
        const int iy = rest % h;
        const int plane = rest / h;
        int ys[3];
        int xs[3];
        const int ny = pad_candidates(iy, h, top, bottom, mode, ys);
        const int nx = pad_candidates(ix, w, left, right, mode, xs);
        float acc = 0.0f;
        for (int a = 0; a < ny; ++a) {
            for (int b = 0; b < nx; ++b) {
                acc += dy[((long long)plane * oh + ys[a]) * ow + xs[b]];
            }
        }
        dx[idx] = acc;
    }
}
