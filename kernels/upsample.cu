// upsample.cu — nearest-neighbour 2-D upsampling by an integer factor s (generators: s=2).
//
// Computes (x contiguous [N, C, H, W], y contiguous [N, C, H*s, W*s]):
//   upsample_nearest2d_f32:          y[n,c,h,w] = x[n,c,h/s,w/s]
//   upsample_nearest2d_backward_f32: dx[n,c,h,w] = sum of dy over the s x s block
//     dy[n,c, h*s .. h*s+s, w*s .. w*s+s] (a gather per input pixel: deterministic, no
//     atomics; summed in row-major order).
// Launch: 1-D, one thread per output element (forward) / per input element (backward),
//   grid-stride loop, any block size (256 used).
// Limits: element counts < 2^31 (checked by the launcher).
#include "common.cuh"

extern "C" __global__ void upsample_nearest2d_f32(const float* x, float* y, int planes, int h, int w, int s) {
    const int oh = h * s;
    const int ow = w * s;
    const int n = planes * oh * ow;
    const int stride = blockDim.x * gridDim.x;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int ox = idx % ow;
        const int rest = idx / ow;
        const int oy = rest % oh;
        const int plane = rest / oh;
        y[idx] = x[(plane * h + oy / s) * w + ox / s];
    }
}

extern "C" __global__ void upsample_nearest2d_backward_f32(const float* dy, float* dx, int planes, int h, int w, int s) {
    const int oh = h * s;
    const int ow = w * s;
    const int n = planes * h * w;
    const int stride = blockDim.x * gridDim.x;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int ix = idx % w;
        const int rest = idx / w;
        const int iy = rest % h;
        const int plane = rest / h;
        float acc = 0.0f;
        for (int a = 0; a < s; ++a) {
            const float* row = dy + ((long long)plane * oh + iy * s + a) * ow + ix * s;
            for (int b = 0; b < s; ++b) {
                acc += row[b];
            }
        }
        dx[idx] = acc;
    }
}
