// matmul.cu — batched f32 GEMM, C[z] = op(A[z]) · op(B[z]), in three versions side by
// side (as llm.c's dev/cuda keeps them): a naive reference, a shared-memory tiled
// kernel, and the default shared-memory + register-blocked kernel.
//
// What it computes
//   For z in [0, gridDim.z), i in [0, M), j in [0, N):
//     C[z*strideC + i*ldc + j] = sum_{p<K} A_z(i, p) * B_z(p, j)
//   with A_z(i, p) = transA ? A[z*strideA + p*lda + i] : A[z*strideA + i*lda + p]
//        B_z(p, j) = transB ? B[z*strideB + j*ldb + p] : B[z*strideB + p*ldb + j]
//   i.e. A is row-major [M, K] (transA = 0) or column-major, the storage of a row-major
//   [K, M] (transA = 1); likewise B is [K, N] or the storage of [N, K]. A batch stride of 0
//   broadcasts that operand across the batch. K = 0 writes zeros. C is written, never
//   read (no alpha/beta); C must not alias A or B.
//   Sums are accumulated in f32 with fmaf, in increasing p order per output (all three
//   versions), so the versions agree with each other to rounding of the same sum order
//   except where a version splits K differently (none does: each walks p = 0..K-1).
//
// Launch shape (the launch layer, src/ops/matmul/simt.rs, computes these)
//   matmul_naive_f32     block (16, 16, 1), grid (ceil(N/16), ceil(M/16), batch);
//                        one thread per output element, no shared memory.
//   matmul_tiled_f32     block (16, 16, 1), grid (ceil(N/16), ceil(M/16), batch);
//                        16x16 output tile per block, one output per thread, K walked in
//                        steps of 16 through two 16x17 static shared tiles (2176 bytes).
//   matmul_regblock_f32  block (256, 1, 1), grid (ceil(N/64), ceil(M/64), batch);
//                        64x64 output tile per block, 4x4 outputs per thread held in
//                        registers, K walked in steps of 16 through two 16x68 static
//                        shared tiles (8704 bytes). Global loads of 4 consecutive floats
//                        are float4 when the operand's base pointer is 16-byte aligned and
//                        its leading dimension and batch stride are multiples of 4, and
//                        the 4 elements are in bounds; otherwise scalar with per-element
//                        bounds checks. Same for the float4 stores of C.
//   Split-K: for a product of few C tiles and a long K the launch layer passes one chunk
//   of K as K and runs the chunks over gridDim.z (the batch strides step along K) into a
//   workspace that it then sums; the kernels themselves are unchanged by it.
//   No dynamic shared memory. Every thread reaches every __syncthreads (out-of-range
//   loads are predicated to 0, stores are guarded; nothing returns early).
//
// Limits
//   M, N, K, leading dimensions and batch strides are ints; every operand's storage span
//   must be below 2^31 elements (the launch layer checks). gridDim.y and gridDim.z are at
//   most 65535: the launch layer splits larger M or batch counts into several launches
//   (offsetting the pointers), so the kernels themselves have no size limit beyond int.
//   Any M, N, K >= 0 (odd sizes are bounds-checked everywhere).
#include "common.cuh"

// Element (i, p) of op(A) and (p, j) of op(B), given the batch-offset base pointers.
__device__ __forceinline__ float mm_load_a(const float* A, int lda, int transA, int i, int p) {
    return transA ? A[(long long)p * lda + i] : A[(long long)i * lda + p];
}
__device__ __forceinline__ float mm_load_b(const float* B, int ldb, int transB, int p, int j) {
    return transB ? B[(long long)j * ldb + p] : B[(long long)p * ldb + j];
}

// ---------------------------------------------------------------------------------------
// Version 1: naive. One thread per output, K walked straight from global memory. The
// reference the other versions are checked against on a GPU; slow (no reuse).
extern "C" __global__ void matmul_naive_f32(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const long long z = blockIdx.z;
    A += z * strideA;
    B += z * strideB;
    C += z * strideC;
    if (i < M && j < N) {
        float acc = 0.0f;
        for (int p = 0; p < K; ++p) {
            acc = fmaf(mm_load_a(A, lda, transA, i, p), mm_load_b(B, ldb, transB, p, j), acc);
        }
        C[(long long)i * ldc + j] = acc;
    }
}

// ---------------------------------------------------------------------------------------
// Version 2: shared-memory tiles. A block computes a 16x16 tile of C; for each 16-wide
// slice of K it stages a 16x16 tile of op(A) and of op(B) in shared memory (each global
// element read once per block instead of 16 times). Loads are coalesced for both
// storage orders: the thread index that varies fastest (x) walks the operand's
// contiguous axis. The +1 column pads away bank conflicts on the transposed writes.
#define MM_TILE 16
extern "C" __global__ void __launch_bounds__(256) matmul_tiled_f32(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC) {
    __shared__ float As[MM_TILE][MM_TILE + 1];  // As[m][k]
    __shared__ float Bs[MM_TILE][MM_TILE + 1];  // Bs[k][n]
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int bm = blockIdx.y * MM_TILE;
    const int bn = blockIdx.x * MM_TILE;
    const long long z = blockIdx.z;
    A += z * strideA;
    B += z * strideB;
    C += z * strideC;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += MM_TILE) {
        // op(A) tile: rows bm.., cols k0..; x walks the contiguous axis of A's storage.
        if (transA) {
            const int i = bm + tx, p = k0 + ty;
            As[tx][ty] = (i < M && p < K) ? A[(long long)p * lda + i] : 0.0f;
        } else {
            const int i = bm + ty, p = k0 + tx;
            As[ty][tx] = (i < M && p < K) ? A[(long long)i * lda + p] : 0.0f;
        }
        if (transB) {
            const int p = k0 + tx, j = bn + ty;
            Bs[tx][ty] = (p < K && j < N) ? B[(long long)j * ldb + p] : 0.0f;
        } else {
            const int p = k0 + ty, j = bn + tx;
            Bs[ty][tx] = (p < K && j < N) ? B[(long long)p * ldb + j] : 0.0f;
        }
        __syncthreads();
        // Zero padding past K adds exact zeros, so the sum order over real p is 0..K-1.
        const int kmax = min(MM_TILE, K - k0);
        for (int kk = 0; kk < kmax; ++kk) {
            acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
        }
        __syncthreads();
    }
    const int i = bm + ty, j = bn + tx;
    if (i < M && j < N) {
        C[(long long)i * ldc + j] = acc;
    }
}

// ---------------------------------------------------------------------------------------
// Version 3 (default): shared-memory tiles + register blocking. A block of 256 threads
// computes a 64x64 tile of C; thread (tx, ty) = (t % 16, t / 16) owns the 4x4 outputs at
// rows ty*4.., cols tx*4.., kept in 16 registers. Per 16-wide slice of K, the block stages
// op(A) as As[k][m] (64x16) and op(B) as Bs[k][n] (16x64); each thread then reads 4 + 4
// values from shared memory (as float4) per k and does 16 FMAs — 4x the arithmetic
// intensity of version 2. Each thread loads 4 consecutive elements of A's and of B's
// contiguous storage axis per slice (float4 when aligned, see the header).
#define RB_BM 64
#define RB_BN 64
#define RB_BK 16
#define RB_TM 4
#define RB_TN 4
#define RB_PAD 4  // keeps rows 16-byte aligned for the float4 shared reads

__device__ __forceinline__ bool mm_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}

// Four consecutive floats at src[0..3], those at index >= limit read as 0.
__device__ __forceinline__ float4 mm_load4(const float* src, int limit, bool vec) {
    if (vec && limit >= 4) {
        return *reinterpret_cast<const float4*>(src);
    }
    float4 v;
    v.x = limit > 0 ? src[0] : 0.0f;
    v.y = limit > 1 ? src[1] : 0.0f;
    v.z = limit > 2 ? src[2] : 0.0f;
    v.w = limit > 3 ? src[3] : 0.0f;
    return v;
}

extern "C" __global__ void __launch_bounds__(256) matmul_regblock_f32(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC) {
    __shared__ __align__(16) float As[RB_BK][RB_BM + RB_PAD];  // As[k][m]
    __shared__ __align__(16) float Bs[RB_BK][RB_BN + RB_PAD];  // Bs[k][n]
    const int t = threadIdx.x;
    const int tx = t % 16;
    const int ty = t / 16;
    const int bm = blockIdx.y * RB_BM;
    const int bn = blockIdx.x * RB_BN;
    const long long z = blockIdx.z;
    A += z * strideA;
    B += z * strideB;
    C += z * strideC;
    // float4 global access is legal when every 4-aligned element index is 16-byte aligned.
    const bool vecA = mm_aligned16(A) && (lda & 3) == 0;
    const bool vecB = mm_aligned16(B) && (ldb & 3) == 0;
    const bool vecC = mm_aligned16(C) && (ldc & 3) == 0;

    float acc[RB_TM][RB_TN];
#pragma unroll
    for (int a = 0; a < RB_TM; ++a) {
#pragma unroll
        for (int b = 0; b < RB_TN; ++b) {
            acc[a][b] = 0.0f;
        }
    }

    for (int k0 = 0; k0 < K; k0 += RB_BK) {
        // ---- stage op(A): 64 x 16 elements, 4 per thread.
        if (transA) {
            // Storage is [K, M] row-major: thread loads m = mq..mq+3 of row p.
            const int p = k0 + t / 16, mq = (t % 16) * 4;
            const int i = bm + mq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (p < K) {
                v = mm_load4(A + (long long)p * lda + i, M - i, vecA);
            }
            *reinterpret_cast<float4*>(&As[t / 16][mq]) = v;
        } else {
            // Storage is [M, K] row-major: thread loads p = kq..kq+3 of row i.
            const int r = t / 4, kq = (t % 4) * 4;
            const int i = bm + r, p = k0 + kq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < M) {
                v = mm_load4(A + (long long)i * lda + p, K - p, vecA);
            }
            As[kq + 0][r] = v.x;
            As[kq + 1][r] = v.y;
            As[kq + 2][r] = v.z;
            As[kq + 3][r] = v.w;
        }
        // ---- stage op(B): 16 x 64 elements, 4 per thread.
        if (transB) {
            // Storage is [N, K] row-major: thread loads p = kq..kq+3 of row j.
            const int c = t / 4, kq = (t % 4) * 4;
            const int j = bn + c, p = k0 + kq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (j < N) {
                v = mm_load4(B + (long long)j * ldb + p, K - p, vecB);
            }
            Bs[kq + 0][c] = v.x;
            Bs[kq + 1][c] = v.y;
            Bs[kq + 2][c] = v.z;
            Bs[kq + 3][c] = v.w;
        } else {
            // Storage is [K, N] row-major: thread loads n = nq..nq+3 of row p.
            const int p = k0 + t / 16, nq = (t % 16) * 4;
            const int j = bn + nq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (p < K) {
                v = mm_load4(B + (long long)p * ldb + j, N - j, vecB);
            }
            *reinterpret_cast<float4*>(&Bs[t / 16][nq]) = v;
        }
        __syncthreads();

        // ---- 4x4 outer products from shared memory. Slots past K hold zeros, but the
        // loop stops at K so every version sums the same terms in the same order.
        const int kmax = min(RB_BK, K - k0);
        for (int kk = 0; kk < kmax; ++kk) {
            const float4 a4 = *reinterpret_cast<const float4*>(&As[kk][ty * RB_TM]);
            const float4 b4 = *reinterpret_cast<const float4*>(&Bs[kk][tx * RB_TN]);
            const float a[RB_TM] = {a4.x, a4.y, a4.z, a4.w};
            const float b[RB_TN] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
            for (int r = 0; r < RB_TM; ++r) {
#pragma unroll
                for (int c = 0; c < RB_TN; ++c) {
                    acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
                }
            }
        }
        __syncthreads();
    }

    // ---- store the 4x4 block: float4 rows when aligned and fully in bounds.
    const int j = bn + tx * RB_TN;
#pragma unroll
    for (int r = 0; r < RB_TM; ++r) {
        const int i = bm + ty * RB_TM + r;
        if (i < M) {
            float* dst = C + (long long)i * ldc + j;
            if (vecC && j + 3 < N) {
                *reinterpret_cast<float4*>(dst) = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
            } else {
#pragma unroll
                for (int c = 0; c < RB_TN; ++c) {
                    if (j + c < N) {
                        dst[c] = acc[r][c];
                    }
                }
            }
        }
    }
}
