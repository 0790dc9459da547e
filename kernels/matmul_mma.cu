// matmul_mma.cu — batched GEMM on tensor cores with bf16 or f16 operands and f32
// accumulation: C[z] = op(A[z]) · op(B[z]), the mixed-precision product of
// `ops::precision` (Precision::Bf16 / Precision::F16).
//
// What it computes
//   The parameters and indexing are those of kernels/matmul.cu (A, B, C, M, N, K, lda,
//   ldb, ldc, transA, transB, strideA, strideB, strideC; batch over gridDim.z; a batch
//   stride of 0 broadcasts; K = 0 writes zeros; C is written, never read, and must not
//   alias A or B). A and B are f32 in global memory; every element is rounded to bf16
//   (matmul_mma_bf16) or f16 (matmul_mma_f16) to nearest even as it is staged into shared
//   memory (__float2bfloat16_rn / __float2half_rn: NaN stays NaN, f16 overflows to ±inf
//   beyond 65504 and keeps subnormals). Products of two rounded values are exact in f32
//   and are summed in f32 registers by mma.sync m16n8k16; the order of that sum is the
//   tensor core's (the emulator's order is stated in kernels/emu/shim.h), so results
//   agree with an f64 sum of the rounded operands to f32 accumulation error, not bitwise.
//
// Launch shape (src/ops/matmul/simt.rs)
//   block (128, 1, 1): 4 warps as 2x2, each computing a 32x32 piece of the block's 64x64
//   tile of C as 2x4 mma tiles of 16x8 (32 f32 accumulators per thread).
//   grid (ceil(N/64), ceil(M/64), batch); no dynamic shared memory. A product of few C
//   tiles and a long K is split along K by the launch layer exactly as for matmul.cu.
//   Static shared: two buffers (double buffering) of op(A) as As[m][k] and op(B) as
//   Bs[n][k], 64 rows x 32 k of 16-bit values each, rows padded to 40 elements (80 bytes:
//   16-byte aligned for ldmatrix, and the 8 rows of one 8x8 ldmatrix land on 8 distinct
//   bank groups): 2 x 2 x 64 x 40 x 2 = 20480 bytes.
//   K is walked in steps of 32 (two k16 mma steps per tile). While the warps multiply tile
//   t from one buffer, each thread's global loads of tile t+1 (4 float4 of A and 4 of B,
//   along each operand's contiguous storage axis: float4 when the base pointer is
//   16-byte aligned, the leading dimension a multiple of 4 and all 4 in bounds, else
//   scalar with per-element bounds checks) are in flight in registers; they are
//   converted and stored into the other buffer afterwards, so one __syncthreads per
//   tile suffices. cp.async is not used: the operands must be converted between global
//   and shared memory, and cp.async would only add an f32 staging copy (twice the
//   shared memory) and a second barrier per tile for the conversion pass. Fragments are
//   read with ldmatrix.x4 (A: one 16x16 tile; B: two 16x8 tiles), no .trans: both
//   shared tiles are stored k-contiguous, transposing while staging where the operand's
//   storage is not.
//   Every thread reaches every __syncthreads (out-of-range loads are predicated to 0,
//   stores are guarded; nothing returns early). Zero padding past K, M or N adds exact
//   zeros to the kept outputs.
//
// Limits
//   sm_80 or newer (ldmatrix, bf16 mma.sync m16n8k16); built for an older target the
//   kernels trap. Sizes as in kernels/matmul.cu: ints, storage spans below 2^31
//   elements, gridDim.y/z at most 65535 (the launch layer splits larger launches).
#include "mma.cuh"

#define MMA_BM 64
#define MMA_BN 64
#define MMA_BK 32
#define MMA_PITCH 40  // shared row pitch in 16-bit elements (MMA_BK + 8)
#define MMA_THREADS 128

__device__ __forceinline__ bool mma_aligned16(const void* p) {
    return (reinterpret_cast<size_t>(p) & 15) == 0;
}
__device__ __forceinline__ bool mma_aligned8(const void* p) {
    return (reinterpret_cast<size_t>(p) & 7) == 0;
}

// Four consecutive floats at src[0..3]; those at index >= limit read as 0 (limit may be
// <= 0: nothing is read).
__device__ __forceinline__ float4 mma_load4(const float* src, int limit, bool vec) {
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

// One operand as rows r (m of A, n of B) by k: element (r, p) is X[r*ld + p] when the
// storage is k-contiguous (A with transA = 0, B with transB = 1), else X[p*ld + r].
// Loads this thread's 16 elements of the 64 x 32 tile at (r0, k0) as 4 groups of 4
// consecutive storage elements: k-contiguous, 8 groups per row r; otherwise 16 groups per
// row p.
__device__ __forceinline__ void mma_fetch(float4 v[4], const float* X, int ld, bool kmajor, int R, int K, int r0, int k0, bool vec) {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
        const int idx = threadIdx.x + MMA_THREADS * g;
        v[g] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (kmajor) {
            const int r = r0 + idx / 8, p = k0 + (idx % 8) * 4;
            if (r < R) v[g] = mma_load4(X + (long long)r * ld + p, K - p, vec);
        } else {
            const int p = k0 + idx / 16, r = r0 + (idx % 16) * 4;
            if (p < K) v[g] = mma_load4(X + (long long)p * ld + r, R - r, vec);
        }
    }
}

// Stores 4 16-bit values packed in lo, hi at an 8-byte aligned dst. The host compiler
// gets a memcpy (checked like any access): a uint2 store into unsigned shorts would break
// its strict-aliasing rules.
__device__ __forceinline__ void mma_store4x16(unsigned short* dst, unsigned lo, unsigned hi) {
    const uint2 v = make_uint2(lo, hi);
#ifdef DUEL_EMU
    memcpy(dst, &v, sizeof v);
#else
    *reinterpret_cast<uint2*>(dst) = v;
#endif
}

__device__ __forceinline__ unsigned mma_round(float x, int bf16) {
    return bf16 ? (unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(x))
                : (unsigned)__half_as_ushort(__float2half_rn(x));
}

// Rounds the fetched groups and stores them as S[r][k] (the layout mma_fetch read).
__device__ __forceinline__ void mma_stage(unsigned short (*S)[MMA_PITCH], const float4 v[4], bool kmajor, int bf16) {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
        const int idx = threadIdx.x + MMA_THREADS * g;
        const unsigned e0 = mma_round(v[g].x, bf16), e1 = mma_round(v[g].y, bf16);
        const unsigned e2 = mma_round(v[g].z, bf16), e3 = mma_round(v[g].w, bf16);
        if (kmajor) {
            // 4 consecutive k of row r: one 8-byte store (row pitch 80 bytes, k multiple of 4).
            const int r = idx / 8, k = (idx % 8) * 4;
            mma_store4x16(&S[r][k], e0 | (e1 << 16), e2 | (e3 << 16));
        } else {
            const int k = idx / 16, r = (idx % 16) * 4;
            S[r + 0][k] = (unsigned short)e0;
            S[r + 1][k] = (unsigned short)e1;
            S[r + 2][k] = (unsigned short)e2;
            S[r + 3][k] = (unsigned short)e3;
        }
    }
}

// The kernel body; `bf16` is a constant at each call, so each entry point keeps one mma.
__device__ __forceinline__ void matmul_mma(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC, int bf16, unsigned short (*As)[MMA_BM][MMA_PITCH], unsigned short (*Bs)[MMA_BN][MMA_PITCH]) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // this warp's 32x32 of the tile
    const int bm = blockIdx.y * MMA_BM, bn = blockIdx.x * MMA_BN;
    const long long z = blockIdx.z;
    A += z * strideA;
    B += z * strideB;
    C += z * strideC;
    const bool kmA = !transA, kmB = transB != 0;
    const bool vecA = mma_aligned16(A) && (lda & 3) == 0;
    const bool vecB = mma_aligned16(B) && (ldb & 3) == 0;

    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;

    float4 ra[4], rb[4];
    const int tiles = (K + MMA_BK - 1) / MMA_BK;
    if (tiles > 0) {
        mma_fetch(ra, A, lda, kmA, M, K, bm, 0, vecA);
        mma_fetch(rb, B, ldb, kmB, N, K, bn, 0, vecB);
        mma_stage(As[0], ra, kmA, bf16);
        mma_stage(Bs[0], rb, kmB, bf16);
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < tiles;
        if (more) {  // tile t+1's loads overlap the multiplies below
            mma_fetch(ra, A, lda, kmA, M, K, bm, (t + 1) * MMA_BK, vecA);
            mma_fetch(rb, B, ldb, kmB, N, K, bn, (t + 1) * MMA_BK, vecB);
        }
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) {
            unsigned af[2][4], bfr[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                // Lanes 0-15 name rows 0-15 at k, lanes 16-31 the same rows at k+8: the
                // four 8x8 matrices come back as a[0..3].
                ldmatrix_x4(af[mi], &As[cur][wm + mi * 16 + lane % 16][kk + (lane / 16) * 8]);
            }
#pragma unroll
            for (int nj = 0; nj < 2; ++nj) {
                // Matrices (n 0-7, k), (n 0-7, k+8), (n 8-15, k), (n 8-15, k+8): the b[0..1]
                // of two 16x8 tiles.
                unsigned r[4];
                ldmatrix_x4(r, &Bs[cur][wn + nj * 16 + lane % 8 + (lane / 16) * 8][kk + ((lane / 8) % 2) * 8]);
                bfr[2 * nj][0] = r[0];
                bfr[2 * nj][1] = r[1];
                bfr[2 * nj + 1][0] = r[2];
                bfr[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) {
                    if (bf16) {
                        mma_m16n8k16_bf16(acc[mi][ni], af[mi], bfr[ni], acc[mi][ni]);
                    } else {
                        mma_m16n8k16_f16(acc[mi][ni], af[mi], bfr[ni], acc[mi][ni]);
                    }
                }
        }
        if (more) {  // the other buffer was last read before the previous barrier
            mma_stage(As[cur ^ 1], ra, kmA, bf16);
            mma_stage(Bs[cur ^ 1], rb, kmB, bf16);
        }
        __syncthreads();
    }

    // D fragment of lane (g, t): rows g and g+8, columns 2t and 2t+1 of each 16x8 tile.
    const bool vecC = mma_aligned8(C) && (ldc & 1) == 0;
    const int g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int i = bm + wm + mi * 16 + g + 8 * h;
                const int j = bn + wn + ni * 8 + 2 * tq;
                if (i < M) {
                    float* dst = C + (long long)i * ldc + j;
                    const float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
                    if (vecC && j + 1 < N) {
                        *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
                    } else {
                        if (j < N) dst[0] = v0;
                        if (j + 1 < N) dst[1] = v1;
                    }
                }
            }
}

extern "C" __global__ void __launch_bounds__(128) matmul_mma_bf16(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC) {
    __shared__ __align__(16) unsigned short As[2][MMA_BM][MMA_PITCH];
    __shared__ __align__(16) unsigned short Bs[2][MMA_BN][MMA_PITCH];
    matmul_mma(A, B, C, M, N, K, lda, ldb, ldc, transA, transB, strideA, strideB, strideC, 1, As, Bs);
}

extern "C" __global__ void __launch_bounds__(128) matmul_mma_f16(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int strideA, int strideB, int strideC) {
    __shared__ __align__(16) unsigned short As[2][MMA_BM][MMA_PITCH];
    __shared__ __align__(16) unsigned short Bs[2][MMA_BN][MMA_PITCH];
    matmul_mma(A, B, C, M, N, K, lda, ldb, ldc, transA, transB, strideA, strideB, strideC, 0, As, Bs);
}
