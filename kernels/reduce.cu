// reduce.cu — sum, mean and max over the trailing "row" of a permuted strided view.
//
// Computes: the launcher passes the input layout permuted so the kept axes come first
// and the reduced axes last (a view, no copy). Output element `row` reduces the k
// elements at row-major positions row*k .. row*k + k of that layout (read through
// layout_index, so any strides / broadcasts / offsets work).
//   op 0 = sum, 1 = mean (sum / divisor; 0/0 = NaN for an empty row), 2 = max (NaN
//   propagates; -inf identity — the launcher refuses max over empty rows).
// Accumulation is in f32: per-thread running value, then a warp shuffle tree
// (__shfl_down_sync, full mask) and, in the block kernel, a shared-memory step across
// warps. The order differs from the cpu reference (f64), so sums agree to a tolerance.
// Kernels and launch shapes:
//   reduce_block_f32:  grid (rows, segments), block 256 (any multiple of 32 up to 1024),
//                      dynamic shared memory blockDim/32 floats. With segments > 1 block
//                      (row, s) writes the partial of its slice of the row to
//                      out[row * segments + s] (no division) for a second pass.
//   reduce_warp_f32:   one warp per row, grid ceil(rows / (blockDim/32)); short rows.
//   reduce_thread_f32: one thread per row, grid ceil(rows / blockDim); many rows whose
//                      reduced axes are outer (adjacent threads read adjacent memory).
//   reduce_max_backward_warp_f32 / reduce_max_backward_block_f32: the gradient of max
//                      (ties share it evenly; see the section at the end of this file).
// Limits: rows * k < 2^31 and the layout's storage span < 2^31 (checked by the launcher).
// All threads reach every __syncthreads (work is guarded by `if`, never an early return).
#include "common.cuh"

#define DUEL_REDUCE_SUM 0
#define DUEL_REDUCE_MEAN 1
#define DUEL_REDUCE_MAX 2

// max that propagates NaN from either side
__device__ __forceinline__ float duel_max_nan(float a, float b) {
    return (a > b || a != a) ? a : b;
}

__device__ __forceinline__ float duel_reduce_identity(int op) {
    return op == DUEL_REDUCE_MAX ? __uint_as_float(0xff800000u) : 0.0f;
}

__device__ __forceinline__ float duel_reduce_combine(int op, float a, float b) {
    return op == DUEL_REDUCE_MAX ? duel_max_nan(a, b) : a + b;
}

__device__ __forceinline__ float duel_reduce_finish(int op, float acc, int divisor) {
    return op == DUEL_REDUCE_MEAN ? acc / (float)divisor : acc;
}

// Lane 0 ends with the combination of all 32 lanes' values.
__device__ __forceinline__ float duel_warp_reduce(int op, float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = duel_reduce_combine(op, v, __shfl_down_sync(0xffffffffu, v, offset));
    }
    return v;
}

extern "C" __global__ void reduce_block_f32(TensorLayout in, const float* x, float* out, int rows, int k, int op, int segments, int divisor) {
    DYNAMIC_SHARED(float, warp_part);
    const int row = blockIdx.x;
    const int seg = blockIdx.y;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    const long long chunk = ((long long)k + segments - 1) / segments;
    const long long lo = (long long)seg * chunk;
    const long long hi = lo + chunk < (long long)k ? lo + chunk : (long long)k;
    float acc = duel_reduce_identity(op);
    if (row < rows) {
        const long long base = (long long)row * k;
        for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            acc = duel_reduce_combine(op, acc, x[layout_index(in, (int)(base + i))]);
        }
    }
    acc = duel_warp_reduce(op, acc);
    if (lane == 0) {
        warp_part[warp] = acc;
    }
    __syncthreads();
    if (warp == 0) {
        float v = lane < nwarps ? warp_part[lane] : duel_reduce_identity(op);
        v = duel_warp_reduce(op, v);
        if (lane == 0 && row < rows) {
            if (segments == 1) {
                out[row] = duel_reduce_finish(op, v, divisor);
            } else {
                out[(long long)row * segments + seg] = v;
            }
        }
    }
}

extern "C" __global__ void reduce_warp_f32(TensorLayout in, const float* x, float* out, int rows, int k, int op, int divisor) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    float acc = duel_reduce_identity(op);
    if (row < rows) {
        const long long base = (long long)row * k;
        for (int i = lane; i < k; i += 32) {
            acc = duel_reduce_combine(op, acc, x[layout_index(in, (int)(base + i))]);
        }
    }
    acc = duel_warp_reduce(op, acc);
    if (lane == 0 && row < rows) {
        out[row] = duel_reduce_finish(op, acc, divisor);
    }
}

extern "C" __global__ void reduce_thread_f32(TensorLayout in, const float* x, float* out, int rows, int k, int op, int divisor) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row < rows) {
        float acc = duel_reduce_identity(op);
        const long long base = (long long)row * k;
        for (int i = 0; i < k; ++i) {
            acc = duel_reduce_combine(op, acc, x[layout_index(in, (int)(base + i))]);
        }
        out[row] = duel_reduce_finish(op, acc, divisor);
    }
}

// ---- backward of max ------------------------------------------------------------------
// reduce_max_backward_{warp,block}_f32: the gradient of y = max over each row of the
// permuted view (as in the forward: `xl` is the input's layout permuted kept-first, row
// `row` is positions row*k .. row*k + k). With m = y[row], an element is a maximum when
// x == m, or when both are NaN (a NaN maximum sends the gradient to the NaN entries, as
// PyTorch's max does). With c = the number of maxima in the row (c >= 1 since y came from
// x), dx = dy[row] / c at maxima and 0 elsewhere: ties share the gradient evenly, as
// PyTorch's amax. dx is written through `dxl` (the contiguous input-shaped gradient's
// layout, permuted the same way), so every element of dx is written exactly once.
// y and dy are contiguous, `rows` elements. Two passes over the row: count, then write.
//   reduce_max_backward_warp_f32:  one warp per row, grid ceil(rows / (blockDim/32)),
//                                  block 256 (a multiple of 32); rows up to ~1024 long.
//   reduce_max_backward_block_f32: one block per row, grid rows, block 256 (a multiple
//                                  of 32 up to 1024), dynamic shared blockDim/32 ints.
// Limits: rows * k < 2^31 (checked by the launcher).

__device__ __forceinline__ int duel_is_max(float v, float m) {
    return (v == m || (v != v && m != m)) ? 1 : 0;
}

extern "C" __global__ void reduce_max_backward_warp_f32(TensorLayout xl, const float* x, const float* y, const float* dy, TensorLayout dxl, float* dx, int rows, int k) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    const long long base = (long long)row * k;
    float m = 0.0f;
    int count = 0;
    if (row < rows) {
        m = y[row];
        for (int i = lane; i < k; i += 32) {
            count += duel_is_max(x[layout_index(xl, (int)(base + i))], m);
        }
    }
    // every lane of the warp shares `row`, so the whole warp takes the same branches
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        count += __shfl_xor_sync(0xffffffffu, count, offset);
    }
    if (row < rows) {
        const float g = count > 0 ? dy[row] / (float)count : 0.0f;
        for (int i = lane; i < k; i += 32) {
            const int p = (int)(base + i);
            dx[layout_index(dxl, p)] = duel_is_max(x[layout_index(xl, p)], m) ? g : 0.0f;
        }
    }
}

extern "C" __global__ void reduce_max_backward_block_f32(TensorLayout xl, const float* x, const float* y, const float* dy, TensorLayout dxl, float* dx, int rows, int k) {
    DYNAMIC_SHARED(int, warp_count);
    const int row = blockIdx.x;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    const long long base = (long long)row * k;
    float m = 0.0f;
    int count = 0;
    if (row < rows) {
        m = y[row];
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            count += duel_is_max(x[layout_index(xl, (int)(base + i))], m);
        }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        count += __shfl_xor_sync(0xffffffffu, count, offset);
    }
    if (lane == 0) {
        warp_count[warp] = count;
    }
    __syncthreads();
    int total = 0;
    for (int w = 0; w < nwarps; ++w) {
        total += warp_count[w];
    }
    if (row < rows) {
        const float g = total > 0 ? dy[row] / (float)total : 0.0f;
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            const int p = (int)(base + i);
            dx[layout_index(dxl, p)] = duel_is_max(x[layout_index(xl, p)], m) ? g : 0.0f;
        }
    }
}
