// mma_selftest.cu — the emulator's tensor-core built-ins (kernels/mma.cuh, implemented in
// kernels/emu/shim.h) checked by tests/matmul_mma.rs against the PTX ISA fragment layouts
// written out independently in Rust. Emulator only (product: false). Launch shapes are
// given per kernel.
#include "mma.cuh"

// Lane l's ldmatrix.x4 and .x2 registers, from a 32x8 shared array whose 16-bit element
// (row, col) holds row*8 + col: lane l names row l (x4: matrix l/8 is rows 8(l/8)..+7).
// out[l*6 + 0..3] = x4 registers, out[l*6 + 4..5] = x2 registers. One block of 32 threads.
extern "C" __global__ void emu_ldmatrix_raw(unsigned* out) {
    __shared__ __align__(16) unsigned short s[32][8];
    const int l = threadIdx.x;
    for (int c = 0; c < 8; ++c) s[l][c] = (unsigned short)(l * 8 + c);
    __syncthreads();
    unsigned r4[4], r2[2];
    ldmatrix_x4(r4, &s[l][0]);
    ldmatrix_x2(r2, &s[l][0]);
    for (int j = 0; j < 4; ++j) out[l * 6 + j] = r4[j];
    for (int j = 0; j < 2; ++j) out[l * 6 + 4 + j] = r2[j];
}

// One mma.sync m16n8k16 on raw fragments: lane l passes a = regs[l*10 + 0..3], b =
// regs[l*10 + 4..5] and c = the floats regs[l*10 + 6..9] (bit patterns), and writes its
// d to d[l*4 + 0..3]. bf16 selects the operand type. Blocks of 32 threads; `d` per block
// at d + blockIdx.x*128 (several blocks run the same fragments).
extern "C" __global__ void emu_mma_raw(const unsigned* regs, float* d, int bf16) {
    const int l = threadIdx.x;
    const unsigned* r = regs + l * 10;
    const unsigned a[4] = {r[0], r[1], r[2], r[3]};
    const unsigned b[2] = {r[4], r[5]};
    const float c[4] = {__uint_as_float(r[6]), __uint_as_float(r[7]), __uint_as_float(r[8]),
                        __uint_as_float(r[9])};
    float o[4];
    if (bf16) {
        mma_m16n8k16_bf16(o, a, b, c);
    } else {
        mma_m16n8k16_f16(o, a, b, c);
    }
    for (int i = 0; i < 4; ++i) d[blockIdx.x * 128 + l * 4 + i] = o[i];
}

// Misuses the emulator must report as errors (each is undefined behaviour on a GPU):
// mode 0: lane 5 returns before an mma.sync the other lanes execute;
// mode 1: ldmatrix from a global-memory address; mode 2: a row address that is not
// 16-byte aligned; mode 3: lane 31 names a row past the end of the shared array.
// out: 64 floats of global memory. One block of 32 threads (mode 4: launch it with 16
// threads: a partial warp runs an mma.sync).
extern "C" __global__ void emu_mma_misuse(float* out, int mode) {
    __shared__ __align__(16) unsigned short s[32][8];
    const int l = threadIdx.x;
    for (int c = 0; c < 8; ++c) s[l % 32][c] = 0;
    __syncthreads();
    unsigned r[4] = {0, 0, 0, 0};
    const unsigned b[2] = {0, 0};
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (mode == 0 || mode == 4) {
        if (mode == 0 && l == 5) return;
        mma_m16n8k16_bf16(c, r, b, c);
    } else if (mode == 1) {
        ldmatrix_x4(r, out + 4 * l);
    } else if (mode == 2) {
        ldmatrix_x4(r, &s[l][l == 3 ? 1 : 0]);
    } else {
        ldmatrix_x4(r, &s[l == 31 ? 32 : l][0]);
    }
    out[l] = c[0] + (float)r[0];
}
