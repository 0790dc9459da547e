// conv.cu — the data-movement and bias kernels of conv2d and conv_transpose2d (f32).
// The products themselves run through matmul_regblock_f32 (kernels/matmul.cu), launched
// by the matmul family's launch layer; src/ops/conv/simt.rs strings them together:
//   conv2d forward      col = im2col(x);   y = W·col (+ bias)
//   conv2d backward     dx = col2im(Wᵀ·dy);  dW = Σ_n dy·colᵀ;  db = Σ dy
//   conv_transpose2d    y = col2im(Wᵀ·x) (+ bias);  dx = W·im2col(dy);  dW = Σ_n x·im2col(dy)ᵀ
//
// What it computes
//   Geometry (ConvGeom, mirrored by `ConvGeom` in src/ops/conv/simt.rs): an "image" of
//   N x C x H x W, a kernel kh x kw with stride (sh, sw), zero padding (ph, pw) and
//   dilation (dh, dw), and the output grid Ho x Wo the kernel window visits. Column
//   matrices are [N, C*kh*kw, Ho*Wo] row-major; row r = (c*kh + i)*kw + j, column
//   l = oh*Wo + ow; the image pixel of (r, l) is ih = oh*sh - ph + i*dh,
//   iw = ow*sw - pw + j*dw (zero when outside the image).
//   conv_im2col_f32     col[n, r, l] = image[n, c, ih, iw] (or 0 outside).
//   conv_col2im_f32     image[n, c, ih, iw] = Σ over every (r, l) that maps to the pixel
//                       of col[n, r, l]: a gather per image pixel (no atomics), summed in
//                       increasing (i, j) order, so the result is deterministic.
//   conv_bias_add_f32   y[n, c, l] += bias[c] in place, y of shape [N, C, L].
//   conv_bias_grad_f32  db[c] = Σ_{n, l} dy[n, c, l]: one block per channel, each thread
//                       sums a strided subset in order, then a fixed-shape tree in shared
//                       memory (deterministic for a fixed block size).
//
// Launch shape (src/ops/conv/simt.rs)
//   im2col, col2im, bias_add: 1-D grid-stride loops, block (256, 1, 1), grid (min(ceil(
//   items/256), 2048), 1, 1); items = N*C*kh*kw*Ho*Wo, N*C*H*W, N*C*L respectively.
//   bias_grad: block (256, 1, 1), grid (C, 1, 1), 1 KiB static shared memory. Its
//   __syncthreads are reached by every thread (no early return).
//   No dynamic shared memory.
//
// Limits
//   Every size, and every tensor's element count, must be below 2^31 (the launch layer
//   checks). Strides and dilations >= 1, padding >= 0. Pointers are to contiguous
//   buffers (the launch layer makes inputs contiguous first).
#include "common.cuh"

// Mirror of `ConvGeom` in src/ops/conv/simt.rs (14 ints, passed by value).
struct ConvGeom {
    int N, C, H, W;    // image
    int Ho, Wo;        // grid of window positions
    int kh, kw;
    int sh, sw;
    int ph, pw;
    int dh, dw;
};

extern "C" __global__ void conv_im2col_f32(const float* image, float* col, ConvGeom g) {
    const int L = g.Ho * g.Wo;
    const int rows = g.C * g.kh * g.kw;
    const long long total = (long long)g.N * rows * L;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int l = (int)(t % L);
        const long long nr = t / L;
        const int r = (int)(nr % rows);
        const int n = (int)(nr / rows);
        const int j = r % g.kw;
        const int i = (r / g.kw) % g.kh;
        const int c = r / (g.kw * g.kh);
        const int ow = l % g.Wo;
        const int oh = l / g.Wo;
        const int ih = oh * g.sh - g.ph + i * g.dh;
        const int iw = ow * g.sw - g.pw + j * g.dw;
        float v = 0.0f;
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
            v = image[(((long long)n * g.C + c) * g.H + ih) * g.W + iw];
        }
        col[t] = v;
    }
}

extern "C" __global__ void conv_col2im_f32(const float* col, float* image, ConvGeom g) {
    const int L = g.Ho * g.Wo;
    const int rows = g.C * g.kh * g.kw;
    const long long total = (long long)g.N * g.C * g.H * g.W;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int iw = (int)(t % g.W);
        const int ih = (int)((t / g.W) % g.H);
        const long long nc = t / ((long long)g.W * g.H);
        const int c = (int)(nc % g.C);
        const int n = (int)(nc / g.C);
        const float* base = col + ((long long)n * rows + (long long)c * g.kh * g.kw) * L;
        float acc = 0.0f;
        for (int i = 0; i < g.kh; ++i) {
            const int y = ih + g.ph - i * g.dh;  // = oh * sh
            if (y < 0 || y % g.sh != 0) continue;
            const int oh = y / g.sh;
            if (oh >= g.Ho) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int x = iw + g.pw - j * g.dw;  // = ow * sw
                if (x < 0 || x % g.sw != 0) continue;
                const int ow = x / g.sw;
                if (ow >= g.Wo) continue;
                acc += base[(long long)(i * g.kw + j) * L + oh * g.Wo + ow];
            }
        }
        image[t] = acc;
    }
}

extern "C" __global__ void conv_bias_add_f32(float* y, const float* bias, int C, int L, int total) {
    const int step = gridDim.x * blockDim.x;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        y[t] += bias[(t / L) % C];
    }
}

extern "C" __global__ void __launch_bounds__(256) conv_bias_grad_f32(const float* dy, float* db, int N, int C, int L) {
    __shared__ float partial[256];
    const int c = blockIdx.x;
    const int count = N * L;
    float acc = 0.0f;
    if (c < C) {
        for (int t = threadIdx.x; t < count; t += blockDim.x) {
            const int n = t / L;
            const int l = t - n * L;
            acc += dy[((long long)n * C + c) * L + l];
        }
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int half = 128; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0 && c < C) db[c] = partial[0];
}
