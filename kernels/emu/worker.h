// worker.h — the emulator's per-worker state, shared by runtime.cpp (fibers, barriers,
// warps, the pool) and checks.cpp (checked memory, shared-memory arena, race detection).
// Internal to the runtime: kernels never include it.
#pragma once
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "runtime.h"
#include "shim.h"

#if !defined(__x86_64__) || defined(DUEL_EMU_UCONTEXT)
#define DUEL_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace duel_emu {

constexpr size_t kStackBytes = 64 * 1024;
constexpr unsigned kMaxThreads = 1024;
// Shared memory arena per worker: [redzone][dynamic][redzone][static vars, each followed
// by a redzone]. Room for the largest opt-in total (227 KiB on sm_90) in either part.
constexpr size_t kSharedMax = 228 * 1024;
constexpr size_t kArenaBytes = 2 * kSharedMax + 64 * 1024;

#ifndef DUEL_EMU_USE_UCONTEXT
struct Ctx {
    void* sp;
};
#else
struct Ctx {
    ucontext_t uc;
};
#endif

enum State : int { RUNNABLE, AT_BARRIER, IN_WARP, DONE, FAULTED };

struct Fiber {
    Ctx ctx;
    char* stack_map = nullptr;  // guard page + stack
    uintptr_t stack_lo = 0, stack_span = 0;
    uint3 idx{};
    unsigned linear = 0;
    State state = DONE;
    const char* file = "";  // where it waits
    int line = 0;
    int warp_inst = -1;
    unsigned converged = 0;  // lanes of its warp at its last warp op or barrier
};

// One warp operation in flight: the lanes of `mask` deposit values until all arrived.
struct WarpInst {
    bool used = false;
    bool collecting = false;
    unsigned mask = 0, arrived = 0, read = 0;
    const char* file = "";
    int line = 0;
    unsigned long long vals[32];
};

struct Warp {
    unsigned existing = 0, exited = 0;
    std::vector<WarpInst> insts;  // reserved up front: a waiting lane keeps an index
    // Race detection: completed warp operations are numbered; synced[a][b] is the number
    // of the last one lanes a and b both took part in.
    unsigned seq = 0;
    unsigned synced[32][32] = {};
};

struct Launch {
    const DuelEmuKernel* kernel;
    void** args;
    uint3 grid, block;
    size_t shared;
    DuelEmuLaunchOptions opt;
    unsigned long long nblocks;
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    std::string error;
    void fail(std::string msg) {
        std::lock_guard<std::mutex> g(mu);
        if (error.empty()) error = std::move(msg);
        failed = true;
    }
};

// One static __shared__ variable of the running block.
struct SharedVar {
    const duel_emu_shared_site* site;
    size_t offset, size;
};

// Race detection: what happened to 4 bytes of memory in the current barrier interval.
struct Access {
    unsigned tid = ~0u;  // linear thread id; ~0u: none
    unsigned seq = 0;    // the warp's operation count at the access
    unsigned char mask = 0;  // bytes of the granule touched
    bool atomic = false;
};
struct Granule {
    uintptr_t key = 0;
    unsigned long long interval = 0;  // 0: empty
    Access write, read[2];
    // The 4 bytes as the current fiber segment first read them (valid while `seen_segment`
    // is the worker's segment): the compiler checks a store that follows a load of the same
    // address only once, as the load, so a read-modify-write's store is found at the end of
    // the segment by the bytes having changed.
    uint32_t seen = 0;
    unsigned long long seen_segment = 0;
};

struct Worker {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    Ctx sched;
    Fiber* cur = nullptr;
    Launch* launch = nullptr;
    unsigned nthreads = 0;
    unsigned barrier_gen = 0;
    int bar_count[2] = {0, 0};
    unsigned n_barrier = 0, n_done = 0;  // fibers waiting at the barrier / finished
    std::string fault;  // set by a fiber that cannot go on (e.g. a warp op on exited lanes)
    size_t page;
    // Shared memory (checks.cpp).
    unsigned char* arena = nullptr;
    size_t static_base = 0, static_top = 0;  // offsets into the arena
    std::vector<SharedVar> shared_vars;
    // Race detection (checks.cpp).
    std::vector<Granule> shadow;
    size_t shadow_used = 0;
    unsigned long long interval = 0;
    unsigned long long segment = 0;    // one per resume of a fiber
    std::vector<uintptr_t> seg_reads;  // granules the running fiber read in this segment
    std::vector<unsigned> order;  // scheduling order of the current round

    Worker();
    ~Worker();
    bool ensure(unsigned n, std::string& err);
};

extern thread_local Worker* tls_worker;

// runtime.cpp: stops the current fiber with `msg` as the launch's error; never returns.
[[noreturn]] void fiber_fault(Worker& w, const std::string& msg);
std::string block_name(const Launch& L);
std::string thread_name(const Fiber& f);

// checks.cpp
void begin_block(Worker& w);     // poisons shared memory, forgets the last block's variables
void begin_interval(Worker& w);  // a barrier was released: a new race-detection interval
void warp_synced(Warp& wp, unsigned mask);  // a warp operation of `mask` completed
void begin_segment(Worker& w);  // a fiber is resumed
void end_segment(Worker& w);    // the running fiber is about to yield (races on): its hidden stores

}  // namespace duel_emu
