// mma.cuh — warp-level tensor-core wrappers used by kernels/matmul_mma.cu:
//   ldmatrix_x4(r, row) / ldmatrix_x2(r, row)   ldmatrix.sync.aligned.m8n8.x{4,2}.shared.b16
//   mma_m16n8k16_bf16(d, a, b, c)                mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
//   mma_m16n8k16_f16(d, a, b, c)                 the same with .f16 operands
// with `unsigned r[4]` / `r[2]`, `float d[4]`, `const unsigned a[4]`, `const unsigned b[2]`,
// `const float c[4]` (d may be c). Every lane of a full warp must call them together, with
// the fragment layouts of the PTX ISA (written out in kernels/emu/shim.h). `row` is this
// lane's 16-byte aligned row address in shared memory (lanes 0-7 give matrix 0's rows,
// 8-15 matrix 1's, ...; x2 reads the addresses of lanes 0-15 only).
// nvcc: inline PTX, sm_80 and newer. Emulator: the warp collectives of kernels/emu/shim.h
// (macros, so an error names the calling line).
#pragma once
#include "common.cuh"

#ifdef DUEL_EMU
#define ldmatrix_x4(r, row) duel_emu_ldmatrix(4, (r), (row), __FILE__, __LINE__)
#define ldmatrix_x2(r, row) duel_emu_ldmatrix(2, (r), (row), __FILE__, __LINE__)
#define mma_m16n8k16_bf16(d, a, b, c) duel_emu_mma_m16n8k16(1, (d), (a), (b), (c), __FILE__, __LINE__)
#define mma_m16n8k16_f16(d, a, b, c) duel_emu_mma_m16n8k16(0, (d), (a), (b), (c), __FILE__, __LINE__)
#else
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
// bf16 mma and m16n8k16 need sm_80: compiled for an older target these kernels trap.
#define DUEL_MMA_UNSUPPORTED 1
#endif

__device__ __forceinline__ void ldmatrix_x4(unsigned r[4], const void* row) {
#ifdef DUEL_MMA_UNSUPPORTED
    (void)r; (void)row;
    __trap();
#else
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x2(unsigned r[2], const void* row) {
#ifdef DUEL_MMA_UNSUPPORTED
    (void)r; (void)row;
    __trap();
#else
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr)
                 : "memory");
#endif
}

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const unsigned a[4], const unsigned b[2], const float c[4]) {
#ifdef DUEL_MMA_UNSUPPORTED
    (void)d; (void)a; (void)b; (void)c;
    __trap();
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

__device__ __forceinline__ void mma_m16n8k16_f16(float d[4], const unsigned a[4], const unsigned b[2], const float c[4]) {
#ifdef DUEL_MMA_UNSUPPORTED
    (void)d; (void)a; (void)b; (void)c;
    __trap();
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}
#endif
