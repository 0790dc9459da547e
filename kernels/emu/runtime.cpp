// runtime.cpp — executes kernels with CUDA semantics on the CPU.
//
// A block is a set of cooperative fibers on one OS worker thread, one fiber per CUDA
// thread. A scheduler loop resumes the fibers in order (forward), reverse order, or a
// seeded random order drawn afresh for every round; each runs until it blocks at
// __syncthreads, at a warp operation whose lanes have not all arrived, or exits. When no
// fiber can run the scheduler either releases the barrier (every thread waits at the same
// __syncthreads) or reports what is stuck. Blocks are pulled from a shared counter by the
// launching thread and the pool threads. Memory checks, shared memory and race detection
// are in checks.cpp.
//
// Context switches are hand-written on x86_64 (callee-saved registers, rsp, MXCSR and the
// x87 control word; no signal mask syscall as in swapcontext) and ucontext elsewhere.

#include <condition_variable>
#include <map>
#include <memory>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

#include "worker.h"

__thread uint3 duel_emu_thread_idx;
__thread uint3 duel_emu_block_idx;
__thread uint3 duel_emu_block_dim;
__thread uint3 duel_emu_grid_dim;
__thread unsigned char* duel_emu_dynamic_shared;

namespace duel_emu {

// ---- context switch -------------------------------------------------------------------------
#ifndef DUEL_EMU_USE_UCONTEXT
extern "C" void duel_emu_ctx_switch(void** save_sp, void* load_sp);
extern "C" void duel_emu_ctx_start();
// Saved frame, from the saved sp upwards: MXCSR (4 bytes) and x87 control word (2 + 2
// pad), r15, r14, r13, r12, rbx, rbp, return address. A fresh fiber "returns" into
// duel_emu_ctx_start, which calls r13(r12).
asm(R"(
    .text
    .globl duel_emu_ctx_switch
    .hidden duel_emu_ctx_switch
    .type duel_emu_ctx_switch,@function
duel_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    # Reloading MXCSR / the x87 control word stalls the pipeline; do it only on change
    # (scratch below rsp is the red zone, ours in this leaf).
    stmxcsr -8(%rsp)
    movl (%rsp), %eax
    cmpl -8(%rsp), %eax
    je 1f
    ldmxcsr (%rsp)
1:
    fnstcw -8(%rsp)
    movw 4(%rsp), %ax
    cmpw -8(%rsp), %ax
    je 2f
    fldcw 4(%rsp)
2:
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size duel_emu_ctx_switch,.-duel_emu_ctx_switch

    .globl duel_emu_ctx_start
    .hidden duel_emu_ctx_start
    .type duel_emu_ctx_start,@function
duel_emu_ctx_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size duel_emu_ctx_start,.-duel_emu_ctx_start
)");

inline void ctx_init(Ctx* c, char* stack_top, void (*fn)(void*), void* arg) {
    uint64_t* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15));
    top[-1] = reinterpret_cast<uint64_t>(&duel_emu_ctx_start);  // rsp = top after ret: call aligns
    top[-2] = 0;                                                 // rbp
    top[-3] = 0;                                                 // rbx
    top[-4] = reinterpret_cast<uint64_t>(arg);                   // r12
    top[-5] = reinterpret_cast<uint64_t>(fn);                    // r13
    top[-6] = 0;                                                 // r14
    top[-7] = 0;                                                 // r15
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    uint32_t* fp = reinterpret_cast<uint32_t*>(&top[-8]);
    fp[0] = mxcsr;  // fibers start with the worker's floating-point environment
    fp[1] = fpucw;
    c->sp = &top[-8];
}
inline void ctx_switch(Ctx* from, Ctx* to) { duel_emu_ctx_switch(&from->sp, to->sp); }
#else
inline void ctx_init(Ctx* c, char* stack_top, void (*fn)(void*), void* arg) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack_top - kStackBytes;
    c->uc.uc_stack.ss_size = kStackBytes;
    c->uc.uc_link = nullptr;
    // makecontext passes int arguments only: split the pointers.
    const uintptr_t f = reinterpret_cast<uintptr_t>(fn), a = reinterpret_cast<uintptr_t>(arg);
    makecontext(&c->uc, (void (*)()) + [](unsigned fl, unsigned fh, unsigned al, unsigned ah) {
                    auto f = reinterpret_cast<void (*)(void*)>((uintptr_t(fh) << 32) | fl);
                    f(reinterpret_cast<void*>((uintptr_t(ah) << 32) | al));
                },
                4, unsigned(f), unsigned(uint64_t(f) >> 32), unsigned(a), unsigned(uint64_t(a) >> 32));
}
inline void ctx_switch(Ctx* from, Ctx* to) { swapcontext(&from->uc, &to->uc); }
#endif

// ---- per-worker state ----------------------------------------------------------------------
Worker::Worker() : page((size_t)sysconf(_SC_PAGESIZE)) { fibers.reserve(kMaxThreads); }
Worker::~Worker() {
    for (Fiber& f : fibers)
        if (f.stack_map) munmap(f.stack_map, kStackBytes + page);
    if (arena) munmap(arena, kArenaBytes);
}
// Stacks and the shared-memory arena are mapped once per worker and reused by every
// later block.
bool Worker::ensure(unsigned n, std::string& err) {
    while (fibers.size() < n) {
        void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            err = "emulator: cannot map a fiber stack";
            return false;
        }
        mprotect(m, page, PROT_NONE);  // guard: a stack overflow faults instead of corrupting
        fibers.emplace_back();
        Fiber& f = fibers.back();
        f.stack_map = static_cast<char*>(m);
        f.stack_lo = reinterpret_cast<uintptr_t>(m) + page;
        f.stack_span = kStackBytes;
    }
    const size_t nwarps = (n + 31) / 32;
    while (warps.size() < nwarps) {
        warps.emplace_back();
        warps.back().insts.reserve(40);
    }
    if (!arena) {
        void* m = mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) {
            err = "emulator: cannot map shared memory";
            return false;
        }
        arena = static_cast<unsigned char*>(m);
    }
    return true;
}

thread_local Worker* tls_worker = nullptr;

Worker& this_worker() {
    thread_local std::unique_ptr<Worker> owner;
    if (!owner) {
        owner.reset(new Worker());
        tls_worker = owner.get();
    }
    return *owner;
}

std::string site(const char* file, int line);

void fiber_main(void* arg) {
    Fiber* f = static_cast<Fiber*>(arg);
    Worker* w = tls_worker;
    w->launch->kernel->thunk(w->launch->args);
    if (w->launch->opt.races) end_segment(*w);
    // A lane that returns while lanes of its warp wait for it in a warp operation is the
    // misuse `duel_emu_warp_sync` reports when the exit comes first; say so in either
    // order, not as a deadlock, so the message does not depend on the schedule.
    const unsigned bit = 1u << (f->linear & 31);
    for (const WarpInst& in : w->warps[f->linear >> 5].insts)
        if (in.used && in.collecting && (in.mask & bit) && !(in.arrived & bit))
            fiber_fault(*w, "invalid warp operation in " + block_name(*w->launch) + ": thread " +
                                std::to_string(f->linear) + " exited while lanes of its warp wait for it at " +
                                site(in.file, in.line));
    f->state = DONE;
    w->n_done++;
    w->warps[f->linear >> 5].exited |= bit;
    ctx_switch(&f->ctx, &w->sched);
    __builtin_trap();  // a finished fiber is never resumed
}

const char* base_name(const char* path) {
    const char* s = strrchr(path, '/');
    return s ? s + 1 : path;
}

std::string site(const char* file, int line) { return std::string(base_name(file)) + ":" + std::to_string(line); }

std::string thread_name(const Fiber& f) {
    char buf[64];
    snprintf(buf, sizeof buf, "thread (%u,%u,%u)", f.idx.x, f.idx.y, f.idx.z);
    return buf;
}

[[noreturn]] void fiber_fault(Worker& w, const std::string& msg) {
    Fiber* f = w.cur;
    if (w.fault.empty()) w.fault = msg;
    f->state = FAULTED;
    ctx_switch(&f->ctx, &w.sched);
    __builtin_trap();  // a faulted fiber is never resumed
}

std::string block_name(const Launch& L) {
    char buf[160];
    snprintf(buf, sizeof buf, "kernel %s block (%u,%u,%u)", L.kernel->name, duel_emu_block_idx.x,
             duel_emu_block_idx.y, duel_emu_block_idx.z);
    return buf;
}

// Describes a block in which no fiber can run and the barrier cannot be released.
std::string describe_stuck(Worker& w) {
    std::map<std::string, unsigned> barrier, warp;
    unsigned exited = 0;
    for (unsigned i = 0; i < w.nthreads; ++i) {
        const Fiber& f = w.fibers[i];
        if (f.state == AT_BARRIER) barrier[site(f.file, f.line)]++;
        else if (f.state == IN_WARP) warp[site(f.file, f.line)]++;
        else if (f.state == DONE) exited++;
    }
    std::string msg = barrier.empty() ? "warp operation deadlock in " : "divergent __syncthreads in ";
    msg += block_name(*w.launch) + ":";
    const char* sep = " ";
    for (auto& [s, n] : barrier) {
        msg += sep + std::to_string(n) + " of " + std::to_string(w.nthreads) + " threads waiting at __syncthreads " + s;
        sep = ", ";
    }
    for (auto& [s, n] : warp) {
        msg += sep + std::to_string(n) + " of " + std::to_string(w.nthreads) +
               " threads waiting in a warp operation at " + s + " for lanes that never arrive";
        sep = ", ";
    }
    if (exited) msg += sep + std::to_string(exited) + " exited";
    return msg;
}

bool warp_ready(Worker& w, const Fiber& f) { return !w.warps[f.linear >> 5].insts[f.warp_inst].collecting; }

void resume(Worker& w, Fiber& f) {
    f.state = RUNNABLE;
    duel_emu_thread_idx = f.idx;
    w.cur = &f;
    if (w.launch->opt.races) begin_segment(w);
    ctx_switch(&w.sched, &f.ctx);
}

// splitmix64: the random schedule's generator (seeded per block, so a block's order does
// not depend on which worker runs it).
uint64_t mix(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The order in which the fibers run in the next round.
void next_order(Worker& w, const Launch& L, uint64_t& rng) {
    const unsigned n = w.nthreads;
    w.order.resize(n);
    for (unsigned k = 0; k < n; ++k) w.order[k] = L.opt.schedule == DUEL_EMU_REVERSE ? n - 1 - k : k;
    if (L.opt.schedule != DUEL_EMU_RANDOM) return;
    for (unsigned k = n; k > 1; --k) std::swap(w.order[k - 1], w.order[mix(rng) % k]);
}

// Runs one block to completion; false with an error in `err`.
bool run_block(Worker& w, Launch& L, unsigned long long b, std::string& err) {
    const unsigned n = L.block.x * L.block.y * L.block.z;
    duel_emu_block_idx = uint3{unsigned(b % L.grid.x), unsigned((b / L.grid.x) % L.grid.y),
                               unsigned(b / (unsigned long long)(L.grid.x * L.grid.y))};
    duel_emu_block_dim = L.block;
    duel_emu_grid_dim = L.grid;
    w.launch = &L;
    w.nthreads = n;
    w.barrier_gen = 0;
    w.bar_count[0] = w.bar_count[1] = 0;
    w.n_barrier = w.n_done = 0;
    w.fault.clear();
    begin_block(w);
    uint64_t rng = L.opt.seed ^ (b * 0xD1B54A32D192ED03ull);
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = w.fibers[i];
        f.linear = i;
        f.idx = uint3{i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y)};
        f.state = RUNNABLE;
        f.converged = 0;
        ctx_init(&f.ctx, f.stack_map + w.page + kStackBytes, fiber_main, &f);
    }
    for (unsigned i = 0; i < (n + 31) / 32; ++i) {
        Warp& wp = w.warps[i];
        const unsigned lanes = n - i * 32 >= 32 ? 32 : n - i * 32;
        wp.existing = lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1);
        wp.exited = 0;
        wp.insts.clear();
    }
    for (;;) {
        bool progress = false;
        next_order(w, L, rng);
        for (unsigned k = 0; k < n; ++k) {
            Fiber& f = w.fibers[w.order[k]];
            if (f.state == RUNNABLE || (f.state == IN_WARP && warp_ready(w, f))) {
                resume(w, f);
                progress = true;
                if (f.state == FAULTED) {
                    err = w.fault;
                    return false;
                }
            }
        }
        if (w.n_done == n) return true;
        if (w.n_barrier != n) {
            if (progress) continue;  // warp operations may have completed
            err = describe_stuck(w);
            return false;
        }
        bool same_site = true;
        for (unsigned i = 1; same_site && i < n; ++i) {
            const Fiber &a = w.fibers[0], &c = w.fibers[i];
            same_site = a.line == c.line && (a.file == c.file || strcmp(a.file, c.file) == 0);
        }
        if (!same_site) {
            err = describe_stuck(w);
            return false;
        }
        // Release: counters of the next barrier start at zero; this one's stay readable
        // until every thread has passed the next barrier.
        w.bar_count[(w.barrier_gen + 1) & 1] = 0;
        w.barrier_gen++;
        w.n_barrier = 0;
        begin_interval(w);
        for (unsigned i = 0; i < n; ++i) {
            w.fibers[i].state = RUNNABLE;
            w.fibers[i].converged = w.warps[i >> 5].existing;
        }
    }
}

void run_blocks(Launch& L) {
    Worker& w = this_worker();
    std::string err;
    if (!w.ensure(L.block.x * L.block.y * L.block.z, err)) {
        L.fail(err);
        return;
    }
    while (!L.failed.load(std::memory_order_relaxed)) {
        const unsigned long long b = L.next.fetch_add(1);
        if (b >= L.nblocks) break;
        if (!run_block(w, L, b, err)) {
            L.fail(err);
            break;
        }
    }
}

struct Pool {
    size_t workers;
    std::vector<std::thread> threads;
    std::mutex launch_mu;  // one launch at a time, like one CUDA stream
    std::mutex mu;
    std::condition_variable cv, done_cv;
    Launch* current = nullptr;
    unsigned long long gen = 0;
    size_t busy = 0;
    bool stop = false;

    void helper() {
        unsigned long long seen = 0;
        for (;;) {
            Launch* L;
            {
                std::unique_lock<std::mutex> lk(mu);
                cv.wait(lk, [&] { return stop || gen != seen; });
                if (stop) return;
                seen = gen;
                L = current;
            }
            run_blocks(*L);
            std::lock_guard<std::mutex> lk(mu);
            if (--busy == 0) done_cv.notify_all();
        }
    }
    void run(Launch& L) {
        std::lock_guard<std::mutex> g(launch_mu);
        if (L.nblocks < 2 || workers < 2) {  // no hand-off latency for one block
            run_blocks(L);
            return;
        }
        if (threads.empty())  // started on first use: most runtimes in tests launch little
            for (size_t i = 1; i < workers; ++i) threads.emplace_back([this] { helper(); });
        {
            std::lock_guard<std::mutex> lk(mu);
            current = &L;
            gen++;
            busy = threads.size();
        }
        cv.notify_all();
        run_blocks(L);
        std::unique_lock<std::mutex> lk(mu);
        done_cv.wait(lk, [&] { return busy == 0; });
        current = nullptr;
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(mu);
            stop = true;
        }
        cv.notify_all();
        for (auto& t : threads) t.join();
    }
};

void copy_error(const std::string& msg, char* err, size_t err_len) {
    if (!err || err_len == 0) return;
    const size_t n = msg.size() < err_len - 1 ? msg.size() : err_len - 1;
    memcpy(err, msg.data(), n);
    err[n] = 0;
}

}  // namespace duel_emu

using namespace duel_emu;

// ---- called from kernels (through shim.h) ---------------------------------------------------
extern "C" int duel_emu_syncthreads(const char* file, int line, int predicate) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    if (w->launch->opt.races) end_segment(*w);
    const unsigned g = w->barrier_gen;
    w->bar_count[g & 1] += predicate;
    f->state = AT_BARRIER;
    w->n_barrier++;
    f->file = file;
    f->line = line;
    ctx_switch(&f->ctx, &w->sched);
    return w->bar_count[g & 1];
}

extern "C" unsigned duel_emu_warp_sync(unsigned mask, unsigned long long value, unsigned long long* out,
                                       const char* file, int line) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    const unsigned lane = f->linear & 31;
    Warp& wp = w->warps[f->linear >> 5];
    const unsigned part = mask & wp.existing;
    auto fault = [&](const std::string& what) {
        char buf[64];
        snprintf(buf, sizeof buf, " (mask 0x%08x)", mask);
        fiber_fault(*w, "invalid warp operation in " + block_name(*w->launch) + ": thread " +
                            std::to_string(f->linear) + " at " + site(file, line) + buf + " " + what);
    };
    if (!((part >> lane) & 1u)) fault("is not in its own mask");
    if (part & wp.exited) fault("names lanes that have already exited");
    int idx = -1;
    for (size_t i = 0; i < wp.insts.size(); ++i) {
        const WarpInst& in = wp.insts[i];
        if (in.used && in.collecting && in.mask == part) idx = (int)i;
    }
    if (idx < 0) {
        for (size_t i = 0; i < wp.insts.size() && idx < 0; ++i)
            if (!wp.insts[i].used) idx = (int)i;
        if (idx < 0) {
            if (wp.insts.size() == wp.insts.capacity()) fault("overflows the warp operation table");
            wp.insts.emplace_back();
            idx = (int)wp.insts.size() - 1;
        }
        WarpInst& in = wp.insts[idx];
        in.used = in.collecting = true;
        in.mask = part;
        in.arrived = in.read = 0;
        in.file = file;
        in.line = line;
    }
    {
        WarpInst& in = wp.insts[idx];
        in.vals[lane] = value;
        if (++in.arrived == (unsigned)__builtin_popcount(part)) {
            in.collecting = false;
            if (w->launch->opt.races) warp_synced(wp, part);
        } else {
            if (w->launch->opt.races) end_segment(*w);
            f->state = IN_WARP;
            f->warp_inst = idx;
            f->file = file;
            f->line = line;
            ctx_switch(&f->ctx, &w->sched);
        }
    }
    WarpInst& in = wp.insts[idx];
    memcpy(out, in.vals, sizeof in.vals);
    f->converged = part;
    if (++in.read == (unsigned)__builtin_popcount(part)) in.used = false;
    return part;
}

// A warp-wide instruction a lane cannot take part in (shim.h: ldmatrix, mma.sync).
extern "C" void duel_emu_warp_fault(const char* what, const char* file, int line) {
    Worker* w = tls_worker;
    fiber_fault(*w, "invalid warp operation in " + block_name(*w->launch) + ": thread " +
                        std::to_string(w->cur->linear) + " at " + site(file, line) + " " + what);
}

// Lanes not exited, plus those that met this lane at its last warp op or barrier and may
// have run on to exit since (on a GPU they would still be converged with it).
extern "C" unsigned duel_emu_active_mask(void) {
    Worker* w = tls_worker;
    const Warp& wp = w->warps[w->cur->linear >> 5];
    return (wp.existing & ~wp.exited) | w->cur->converged;
}

// ---- called from Rust -----------------------------------------------------------------------
extern "C" const DuelEmuKernel* duel_emu_kernels(size_t* count) {
    *count = duel_emu_registry_len;
    return duel_emu_registry;
}

extern "C" void* duel_emu_pool_new(size_t workers) {
    try {
        Pool* p = new Pool();
        p->workers = workers ? workers : 1;
        return p;
    } catch (...) {
        return nullptr;
    }
}

extern "C" void duel_emu_pool_free(void* pool) { delete static_cast<Pool*>(pool); }

extern "C" int duel_emu_launch(void* pool, size_t kernel, const unsigned* grid, const unsigned* block,
                               size_t shared_bytes, void** args, const DuelEmuLaunchOptions* options, char* err,
                               size_t err_len) {
    try {
        if (kernel >= duel_emu_registry_len) {
            copy_error("emulator: kernel index out of range", err, err_len);
            return 1;
        }
        // The launch rules (src/device/simt/limits.rs) were checked by the caller; these
        // keep the runtime's own arrays in bounds whatever it is called with.
        const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
        if (threads == 0 || threads > kMaxThreads || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 ||
            shared_bytes > kSharedMax || options->shared_limit > kSharedMax) {
            copy_error(std::string("invalid configuration argument launching ") + duel_emu_registry[kernel].name,
                       err, err_len);
            return 1;
        }
        Launch L;
        L.kernel = &duel_emu_registry[kernel];
        L.args = args;
        L.grid = uint3{grid[0], grid[1], grid[2]};
        L.block = uint3{block[0], block[1], block[2]};
        L.shared = shared_bytes;
        L.opt = *options;
        L.nblocks = (unsigned long long)grid[0] * grid[1] * grid[2];
        static_cast<Pool*>(pool)->run(L);
        if (L.failed) {
            copy_error(L.error, err, err_len);
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        copy_error(std::string("emulator: ") + e.what(), err, err_len);
        return 1;
    } catch (...) {
        copy_error("emulator: unknown C++ exception", err, err_len);
        return 1;
    }
}
