// selftest.cu — kernels that prove the emulator has CUDA semantics (tests/emu_selftest.rs).
// Compiled into the emulator only (product: false in the manifest); it is valid CUDA and
// compiles with nvcc too. Launch shapes are given per kernel; none has limits beyond the
// ones stated.
#include "common.cuh"

// Does nothing: measures launch overhead. Any shape.
extern "C" __global__ void emu_empty() {}

// `iters` barriers in a row: measures the cost of __syncthreads. One block, any size.
extern "C" __global__ void emu_barrier_loop(int iters, int* out) {
    int acc = 0;
    for (int i = 0; i < iters; ++i) {
        acc += i;
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

// Each thread writes its slot of shared memory and reads its right neighbour's. Without
// the barrier (with_barrier == 0) the result depends on thread order: the deliberate bug
// the Reverse schedule must expose. One block of n <= 1024 threads, n * 4 bytes dynamic.
extern "C" __global__ void emu_missing_barrier(float* out, int with_barrier) {
    DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = (float)(t + 1);
    if (with_barrier) __syncthreads();
    out[t] = s[(t + 1) % n];
}

// mode 0: the first warp returns before a barrier the others wait at.
// mode 1: even and odd threads wait at different __syncthreads.
// Both are errors the emulator must report instead of hanging. One block of 64 threads.
extern "C" __global__ void emu_divergent_barrier(int* out, int mode) {
    const int t = threadIdx.x;
    if (mode == 0) {
        if (t < 32) return;
        __syncthreads();
    } else if (t % 2 == 0) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[t] = t;
}

// Half of each warp exits, the other half shuffles with a full mask: a deadlock on a GPU,
// an error here. One block of 64 threads.
extern "C" __global__ void emu_warp_deadlock(int* out) {
    const int t = threadIdx.x;
    if (t % 32 < 16) return;
    out[t] = __shfl_sync(0xffffffffu, t, 0);
}

// __syncthreads_count / _and / _or. One block of any size; out has 3 ints per thread.
extern "C" __global__ void emu_sync_reductions(int* out) {
    const int t = threadIdx.x;
    const int count = __syncthreads_count(t % 3 == 0);
    const int all = __syncthreads_and(t >= 0);
    const int any = __syncthreads_or(t == 5);
    out[3 * t + 0] = count;
    out[3 * t + 1] = all;
    out[3 * t + 2] = any;
}

#define EMU_WARP_RESULTS 16
// Every warp intrinsic on the values in[t]; results are checked against rules written
// out by hand in Rust. Full warps only (blockDim.x a multiple of 32), 1-D grid.
extern "C" __global__ void emu_warp_ops(const int* in, int* out) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32;
    const unsigned full = 0xffffffffu;
    const int v = in[t];
    int* o = out + t * EMU_WARP_RESULTS;
    o[0] = __shfl_sync(full, v, 3);
    o[1] = __shfl_sync(full, v, lane + 1, 8);
    o[2] = __shfl_up_sync(full, v, 2);
    o[3] = __shfl_up_sync(full, v, 1, 16);
    o[4] = __shfl_down_sync(full, v, 5);
    o[5] = __shfl_down_sync(full, v, 3, 8);
    o[6] = __shfl_xor_sync(full, v, 5);
    o[7] = __shfl_xor_sync(full, v, 9, 8);
    o[8] = (int)__ballot_sync(full, v % 3 == 0);
    o[9] = __any_sync(full, v > 1000);
    o[10] = __all_sync(full, v >= 0);
    const float f = __shfl_xor_sync(full, 0.5f * (float)v, 1);
    o[11] = (int)(f * 2.0f);
    int sum = v;  // butterfly reduction: every lane ends with the warp total
    for (int d = 16; d > 0; d /= 2) sum += __shfl_xor_sync(full, sum, d);
    o[12] = sum;
    o[13] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, v, 1) : -1;
    const double dv = __shfl_down_sync(full, (double)v * 0.25, 1);
    o[14] = (int)(dv * 4.0);
    __syncwarp();
    o[15] = (int)__activemask();
}

// Totals across many blocks running on several worker threads. 1-D, any shape.
extern "C" __global__ void emu_atomics(int* isum, float* fsum, unsigned* umax, int* cas_count, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(isum, i % 1000);
    atomicAdd(fsum, 1.0f);
    atomicMax(umax, (unsigned)((i * 7919) % 100003));
    int old = *cas_count, assumed;  // a CAS increment loop, the pattern behind custom atomics
    do {
        assumed = old;
        old = atomicCAS(cas_count, assumed, assumed + 1);
    } while (old != assumed);
}

// Records every index of a 3-D grid of 3-D blocks at its global (x, y, z) position:
// out[((z * H) + y) * W + x] = packed (blockIdx, threadIdx). W, H, D = grid * block dims.
extern "C" __global__ void emu_index3d(int* out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int z = blockIdx.z * blockDim.z + threadIdx.z;
    const int W = gridDim.x * blockDim.x, H = gridDim.y * blockDim.y;
    out[(z * H + y) * W + x] = (int)(blockIdx.x | (blockIdx.y << 4) | (blockIdx.z << 8) |
                                     (threadIdx.x << 12) | (threadIdx.y << 18) | (threadIdx.z << 24));
}

// Reverses each block's slice through dynamic shared memory and reports what the slot
// held before it was written (the poison pattern). Block of n threads, n * 4 bytes dynamic.
extern "C" __global__ void emu_dynamic_shared(const float* in, float* out, unsigned* before) {
    DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
    unsigned bits;
    memcpy(&bits, &s[t], 4);
    before[base + t] = bits;
    s[t] = in[base + t];
    __syncthreads();
    out[base + t] = s[n - 1 - t];
}

// C = A B with A (M x K), B (K x N), row-major, 16 x 16 tiles in static shared memory.
// Grid (ceil(N/16), ceil(M/16)), block (16, 16).
#define EMU_TILE 16
extern "C" __global__ void emu_matmul_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                            float* __restrict__ C, int M, int N, int K) {
    __shared__ float As[EMU_TILE][EMU_TILE];
    __shared__ float Bs[EMU_TILE][EMU_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * EMU_TILE + ty, col = blockIdx.x * EMU_TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += EMU_TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < EMU_TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

// float -> f16/bf16 bits and f16/bf16 bits -> float, grid-stride over n values.
extern "C" __global__ void emu_half_convert(const float* f, const unsigned short* bits, int n,
                                            unsigned short* f2h, unsigned short* f2bf, float* h2f,
                                            float* bf2f) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        f2h[i] = __half_as_ushort(__float2half_rn(f[i]));
        f2bf[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f[i]));
        h2f[i] = __half2float(__ushort_as_half(bits[i]));
        bf2f[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
    }
}

// __half / __nv_bfloat16 arithmetic: out = bits of (a * b + a) in each type, one value
// per thread. 1-D, any shape.
extern "C" __global__ void emu_half_arith(const float* a, const float* b, int n, unsigned short* h,
                                          unsigned short* bf) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __half ha = __float2half(a[i]), hb = __float2half(b[i]);
    h[i] = __half_as_ushort(__hadd(__hmul(ha, hb), ha));
    const __nv_bfloat16 ba = __float2bfloat16(a[i]), bb = __float2bfloat16(b[i]);
    bf[i] = __bfloat16_as_ushort(__hadd(__hmul(ba, bb), ba));
}

// float4 loads and stores through 16-byte aligned pointers: out[i] = in[i] * 2.
// 1-D over n4 float4 values.
extern "C" __global__ void emu_float4(const float4* in, float4* out, int n4) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 v = __ldg(&in[i]);
    out[i] = make_float4(v.x * 2.0f, v.y * 2.0f, v.z * 2.0f, v.w * 2.0f);
}
