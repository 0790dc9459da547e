// checks.cu — kernels with the bugs the emulator's checks must catch (tests/emu_checks.rs):
// each takes a flag that plants the bug or leaves the kernel correct, so a test shows the
// check fires on the bug and stays quiet without it. Emulator only (product: false).
// Launch shapes are given per kernel.
#include "common.cuh"

// Copies n floats with float4 loads; with `overrun`, the last load runs past the end when
// n is not a multiple of 4 (the vectorised-tail bug). One thread.
extern "C" __global__ void emu_check_float4_tail(const float* x, float* y, int n, int overrun) {
    const int n4 = overrun ? (n + 3) / 4 : n / 4;
    for (int i = 0; i < n4; ++i) {
        const float4 v = reinterpret_cast<const float4*>(x)[i];
        y[4 * i] = v.x + v.y + v.z + v.w;
    }
}

// One float4 load at x + offset floats: misaligned unless offset % 4 == 0. One thread.
extern "C" __global__ void emu_check_misaligned(const float* x, float* y, int offset) {
    const float4 v = *reinterpret_cast<const float4*>(x + offset);
    y[0] = v.x + v.y + v.z + v.w;
}

// Thread t writes dynamic shared slot t + shift (one past the end for the last thread when
// shift is 1), then reads its own. One block of n threads, n * 4 bytes dynamic.
extern "C" __global__ void emu_check_shared_overflow(float* y, int shift) {
    DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x;
    s[t + shift] = (float)t;
    __syncthreads();
    y[t] = s[t];
}

// Static shared: the first `written` of 64 slots are written, then every thread reads its
// slot: slots nobody wrote read as poison. One block of 64 threads.
extern "C" __global__ void emu_check_static_poison(float* y, int written) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    if (t < written) s[t] = (float)t;
    __syncthreads();
    y[t] = s[t];
}

// Thread t writes static shared slot t + shift (one past the array for the last thread
// when shift is 1). One block of 64 threads.
extern "C" __global__ void emu_check_static_overflow(float* y, int shift) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t + shift] = (float)t;
    __syncthreads();
    y[t] = s[t];
}

// Every thread adds 1 to one shared counter: mode 0 with a plain `+=` (a race, lost
// updates on a GPU), mode 1 with atomicAdd. One block of any size; y[0] = the count.
extern "C" __global__ void emu_check_shared_counter(float* y, int mode) {
    __shared__ float total;
    if (threadIdx.x == 0) total = 0.0f;
    __syncthreads();
    if (mode == 0) total += 1.0f;
    else atomicAdd(&total, 1.0f);
    __syncthreads();
    if (threadIdx.x == 0) y[0] = total;
}

// Every thread of the block writes y[0] (mode 0: a global write-write race) or its own
// slot (mode 1). One block of any size.
extern "C" __global__ void emu_check_global_race(int* y, int mode) {
    y[mode == 0 ? 0 : threadIdx.x] = (int)threadIdx.x;
}

// Lanes write their shared slot and read their neighbour's within one warp: ordered by
// __syncwarp when `sync`, a race without. One block of 32 threads.
extern "C" __global__ void emu_check_warp_sync(float* y, int sync) {
    __shared__ float s[32];
    const int lane = threadIdx.x;
    s[lane] = (float)lane;
    if (sync) __syncwarp();
    y[lane] = s[(lane + 1) % 32];
}

// Reads x[i] at a signed offset: far before the buffer with i = -1000. One thread.
extern "C" __global__ void emu_check_wild(const float* x, float* y, int i) { y[0] = x[i]; }

// Declares `__launch_bounds__(64)`; any shape up to 64 threads.
extern "C" __global__ void __launch_bounds__(64) emu_check_bounded(int* y) { y[threadIdx.x] = 1; }

// 40 KiB of static shared memory; with more than 8 KiB of dynamic shared memory the block
// exceeds 48 KiB. One block of 32 threads.
extern "C" __global__ void emu_check_big_static(float* y) {
    __shared__ float big[10240];
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = big[(threadIdx.x + 1) % 32];
}
