// checks.cpp — what the emulator checks on every memory access a kernel makes.
//
// Kernels are compiled with out-of-line AddressSanitizer hooks and UBSan's alignment check
// (build.rs, checked_kernel_flags); this file implements the hooks, no sanitizer runtime:
// - bounds: an access must lie in a buffer of the launch (a pointer argument's
//   allocation, up to the bytes lent to it), in the block's shared memory (dynamic, or one
//   static __shared__ variable), in the thread's own stack, or in the program's static
//   image (constant tables). A buffer's redzones and unlent tail, the gaps between shared
//   variables and anything else stop the launch naming kernel, block, thread and offset;
// - alignment: a pointer dereferenced at an address its type's alignment does not divide;
// - races (when the launch asks): two threads of a block touching the same bytes of
//   shared or global memory in one barrier interval, at least one writing, not both
//   atomically, not ordered by a warp operation both took part in (a store the compiler
//   checked only as the load before it, as in `x += v`, is found when the fiber yields:
//   the bytes it read changed while only it ran);
// - static __shared__ variables live in a per-block arena, placed with no more alignment
//   than they declare and filled with 0xFF bytes (NaN as float) when the block starts.

#include <link.h>

#include <algorithm>
#include <cstdarg>

#include "worker.h"

namespace duel_emu {
namespace {

constexpr uintptr_t RZ = DUEL_EMU_REDZONE;
constexpr size_t kVarGap = 64;  // redzone after each static shared variable

enum Kind { READ, WRITE, ATOMIC };
const char* verb(Kind k) { return k == READ ? "read" : k == WRITE ? "write" : "atomic update"; }
const char* a_verb(Kind k) { return k == READ ? "a read" : k == WRITE ? "a write" : "an atomic update"; }

// ---- the program's static image (PT_LOAD segments of every loaded object) -----------------
struct Span {
    uintptr_t lo, hi;
};
std::vector<Span> g_image;
std::once_flag g_image_once;

int add_segments(dl_phdr_info* info, size_t, void*) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type == PT_LOAD) g_image.push_back({info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz});
    }
    return 0;
}

bool in_image(uintptr_t a) {
    std::call_once(g_image_once, [] { dl_iterate_phdr(add_segments, nullptr); });
    for (const Span& s : g_image)
        if (a - s.lo < s.hi - s.lo) return true;
    return false;
}

// ---- naming what an address belongs to ----------------------------------------------------
std::string param_name(const Launch& L, size_t param) {
    const DuelEmuKernel& k = *L.kernel;
    return param < k.nparams ? std::string(k.param_names[param]) : "?";
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// "byte offset 4096 of parameter 1 `float* y` (4096 bytes)" and the like.
std::string where(const Worker& w, uintptr_t a) {
    const Launch& L = *w.launch;
    for (size_t i = 0; i < L.opt.nbuffers; ++i) {
        const DuelEmuBuffer& b = L.opt.buffers[i];
        if (a - (b.base - RZ) < b.size + 2 * RZ)
            return fmt("byte offset %lld of parameter %zu `%s` (a %llu-byte buffer)", (long long)(a - b.base), b.param,
                       param_name(L, b.param).c_str(), (unsigned long long)b.lent);
    }
    const uintptr_t arena = reinterpret_cast<uintptr_t>(w.arena);
    if (a - arena < kArenaBytes) {
        const uintptr_t off = a - arena;
        if (off < w.static_base)
            return fmt("byte offset %lld of dynamic shared memory (%zu bytes)", (long long)(off - RZ), L.shared);
        const SharedVar* near = nullptr;
        for (const SharedVar& v : w.shared_vars)
            if (w.static_base + v.offset <= off && (!near || v.offset > near->offset)) near = &v;
        if (near)
            return fmt("byte offset %lld of static __shared__ `%s` (%zu bytes, %s:%d)",
                       (long long)(off - w.static_base - near->offset), near->site->name, near->size,
                       strrchr(near->site->file, '/') ? strrchr(near->site->file, '/') + 1 : near->site->file,
                       near->site->line);
        return "static shared memory before its first variable";
    }
    return fmt("address 0x%llx, outside every buffer of the launch, shared memory and the thread's stack",
               (unsigned long long)a);
}

[[noreturn]] void out_of_bounds(Worker& w, uintptr_t a, size_t n, Kind k) {
    fiber_fault(w, fmt("out-of-bounds %s of %zu bytes in ", verb(k), n) + block_name(*w.launch) + " " +
                       thread_name(*w.cur) + ": " + where(w, a));
}

// ---- race detection -----------------------------------------------------------------------
Granule& granule(Worker& w, uintptr_t key);

void grow(Worker& w) {
    std::vector<Granule> old;
    old.swap(w.shadow);
    w.shadow.resize(old.size() * 2);
    w.shadow_used = 0;
    for (const Granule& g : old)
        if (g.interval == w.interval) granule(w, g.key) = g;
}

Granule& granule(Worker& w, uintptr_t key) {
    if (w.shadow.empty()) w.shadow.resize(1 << 14);
    if (2 * (w.shadow_used + 1) > w.shadow.size()) grow(w);
    const size_t mask = w.shadow.size() - 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask;; i = (i + 1) & mask) {
        Granule& g = w.shadow[i];
        // Entries of earlier intervals count as empty; nothing is deleted within one, so a
        // probe never skips past a current entry.
        if (g.interval != w.interval) {
            g = Granule{};
            g.key = key;
            g.interval = w.interval;
            w.shadow_used++;
            return g;
        }
        if (g.key == key) return g;
    }
}

bool ordered(const Worker& w, const Access& p, unsigned tid) {
    if ((p.tid >> 5) != (tid >> 5)) return false;
    return w.warps[tid >> 5].synced[p.tid & 31][tid & 31] > p.seq;
}

[[noreturn]] void race(Worker& w, const Access& p, Kind pk, Kind k, uintptr_t a) {
    const Fiber& other = w.fibers[p.tid];
    fiber_fault(w, "data race in " + block_name(*w.launch) + ": " + thread_name(other) + " did " + a_verb(pk) +
                       " and " + thread_name(*w.cur) + " " + a_verb(k) + " of " + where(w, a) +
                       " in one barrier interval (no __syncthreads or warp operation orders them)");
}

void record(Worker& w, uintptr_t a, size_t n, Kind k) {
    const unsigned tid = w.cur->linear;
    const unsigned seq = w.warps[tid >> 5].seq;
    for (uintptr_t key = a >> 2; key <= (a + n - 1) >> 2; ++key) {
        const uintptr_t lo = std::max(a, key << 2) - (key << 2), hi = std::min(a + n, (key << 2) + 4) - (key << 2);
        const unsigned char mask = (unsigned char)(((1u << hi) - 1) & ~((1u << lo) - 1));
        Granule& g = granule(w, key);
        const uintptr_t at = std::max(a, key << 2);
        const Access& wr = g.write;
        if (wr.tid != ~0u && wr.tid != tid && (wr.mask & mask) && !(wr.atomic && k == ATOMIC) && !ordered(w, wr, tid))
            race(w, wr, wr.atomic ? ATOMIC : WRITE, k, at);
        if (k == ATOMIC) g.seen_segment = 0;  // its change is the atomic's, not a store's
        if (k == READ) {
            if (g.seen_segment != w.segment) {
                // SAFETY of the read: the granule is inside a buffer with its redzones, or
                // the shared arena (check() placed `a` there).
                memcpy(&g.seen, reinterpret_cast<const void*>(key << 2), 4);
                g.seen_segment = w.segment;
                w.seg_reads.push_back(key);
            }
            Access* slot = &g.read[1];
            if (g.read[0].tid == ~0u || g.read[0].tid == tid) slot = &g.read[0];
            const unsigned char keep = slot->tid == tid ? slot->mask : 0;
            *slot = Access{tid, seq, (unsigned char)(keep | mask), false};
            continue;
        }
        for (const Access& r : g.read)
            if (r.tid != ~0u && r.tid != tid && (r.mask & mask) && !ordered(w, r, tid)) race(w, r, READ, k, at);
        const unsigned char keep = wr.tid == tid ? wr.mask : 0;
        g.write = Access{tid, seq, (unsigned char)(keep | mask), k == ATOMIC};
    }
}

// ---- the check behind every access --------------------------------------------------------
inline void check(uintptr_t a, size_t n, Kind k) {
    Worker* w = tls_worker;
    if (!w || !w->launch || !w->cur) return;
    const Fiber& f = *w->cur;
    if (a - f.stack_lo < f.stack_span) return;
    const Launch& L = *w->launch;
    for (size_t i = 0; i < L.opt.nbuffers; ++i) {
        const DuelEmuBuffer& b = L.opt.buffers[i];
        if (a - (b.base - RZ) < b.size + 2 * RZ) {
            if (a < b.base || a + n > b.base + b.lent) out_of_bounds(*w, a, n, k);
            if (L.opt.races) record(*w, a, n, k);
            return;
        }
    }
    const uintptr_t off = a - reinterpret_cast<uintptr_t>(w->arena);
    if (off < kArenaBytes) {
        bool ok = off >= RZ && off + n <= RZ + L.shared;
        for (size_t i = 0; !ok && i < w->shared_vars.size(); ++i) {
            const SharedVar& v = w->shared_vars[i];
            const size_t lo = w->static_base + v.offset;
            ok = off >= lo && off + n <= lo + v.size;
        }
        if (!ok) out_of_bounds(*w, a, n, k);
        if (L.opt.races) record(*w, a, n, k);
        return;
    }
    if (k == READ && in_image(a)) return;
    out_of_bounds(*w, a, n, k);
}

}  // namespace

void begin_block(Worker& w) {
    const Launch& L = *w.launch;
    duel_emu_dynamic_shared = w.arena + RZ;
    if (L.shared) memset(w.arena + RZ, 0xFF, L.shared);
    w.static_base = (RZ + L.shared + RZ + 255) & ~size_t(255);
    w.static_top = 0;
    w.shared_vars.clear();
    begin_interval(w);
}

void begin_segment(Worker& w) {
    w.segment++;
    w.seg_reads.clear();
}

void end_segment(Worker& w) {
    for (size_t i = 0; i < w.seg_reads.size(); ++i) {
        const uintptr_t key = w.seg_reads[i];
        Granule& g = granule(w, key);
        if (g.seen_segment != w.segment) continue;
        g.seen_segment = 0;
        uint32_t now;
        memcpy(&now, reinterpret_cast<const void*>(key << 2), 4);
        if (now == g.seen) continue;
        unsigned lo = 0, hi = 4;
        const uint32_t diff = now ^ g.seen;  // little-endian: byte j is bits 8j..8j+7
        while (!((diff >> (8 * lo)) & 0xFFu)) ++lo;
        while (!((diff >> (8 * (hi - 1))) & 0xFFu)) --hi;
        record(w, (key << 2) + lo, hi - lo, WRITE);
    }
    w.seg_reads.clear();
}

void begin_interval(Worker& w) {
    w.interval++;
    w.shadow_used = 0;
}

void warp_synced(Warp& wp, unsigned mask) {
    const unsigned seq = ++wp.seq;
    for (unsigned a = 0; a < 32; ++a)
        if ((mask >> a) & 1u)
            for (unsigned b = 0; b < 32; ++b)
                if ((mask >> b) & 1u) wp.synced[a][b] = seq;
}

}  // namespace duel_emu

using namespace duel_emu;

// ---- static __shared__ (DUEL_EMU_STATIC_SHARED in shim.h) -------------------------------------
// The first thread of a block to reach a declaration places the variable; the others get
// the same address. Placement: the declared alignment and no more (offset = align modulo
// 2 * align), so a vector access the declaration does not allow is misaligned here too.
extern "C" void* duel_emu_static_shared(const duel_emu_shared_site* site, size_t size, size_t align) {
    Worker& w = *tls_worker;
    for (const SharedVar& v : w.shared_vars)
        if (v.site == site) return w.arena + w.static_base + v.offset;
    align = std::min<size_t>(std::max<size_t>(align, 1), 256);
    const size_t offset = ((w.static_top + 2 * align - 1) / (2 * align)) * (2 * align) + (align < 256 ? align : 0);
    size_t total = size;
    for (const SharedVar& v : w.shared_vars) total += v.size;
    const Launch& L = *w.launch;
    if (total + L.shared > L.opt.shared_limit || w.static_base + offset + size + kVarGap > kArenaBytes)
        fiber_fault(w, "too much shared memory in " +
                           block_name(L) + ": static __shared__ `" + site->name + "` brings the static total to " +
                           std::to_string(total) + " bytes, plus " + std::to_string(L.shared) +
                           " dynamic; the launch may use " + std::to_string(L.opt.shared_limit));
    unsigned char* p = w.arena + w.static_base + offset;
    memset(p, 0xFF, size);
    w.shared_vars.push_back(SharedVar{site, offset, size});
    w.static_top = offset + size + kVarGap;
    return p;
}

// Whether `p` lies in the running block's shared-memory arena (ldmatrix's state space);
// the access itself is then bounds-checked like any other.
extern "C" int duel_emu_in_shared(const void* p) {
    const Worker* w = tls_worker;
    return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(w->arena) < kArenaBytes;
}

// ---- AddressSanitizer hooks (-fsanitize=kernel-address, outline instrumentation) -------------
#define DUEL_EMU_HOOKS(N)                                                                           \
    extern "C" void __asan_load##N##_noabort(uintptr_t a) { check(a, N, READ); }                    \
    extern "C" void __asan_store##N##_noabort(uintptr_t a) { check(a, N, WRITE); }                  \
    extern "C" void __asan_load##N(uintptr_t a) { check(a, N, READ); }                              \
    extern "C" void __asan_store##N(uintptr_t a) { check(a, N, WRITE); }
DUEL_EMU_HOOKS(1)
DUEL_EMU_HOOKS(2)
DUEL_EMU_HOOKS(4)
DUEL_EMU_HOOKS(8)
DUEL_EMU_HOOKS(16)
#undef DUEL_EMU_HOOKS
extern "C" void __asan_loadN_noabort(uintptr_t a, size_t n) { if (n) check(a, n, READ); }
extern "C" void __asan_storeN_noabort(uintptr_t a, size_t n) { if (n) check(a, n, WRITE); }
extern "C" void __asan_loadN(uintptr_t a, size_t n) { if (n) check(a, n, READ); }
extern "C" void __asan_storeN(uintptr_t a, size_t n) { if (n) check(a, n, WRITE); }
extern "C" void __asan_handle_no_return() {}

// Atomics (shim.h) are not instrumented; they report here, with their alignment.
extern "C" void duel_emu_atomic_access(const void* p, size_t n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    Worker* w = tls_worker;
    if (w && w->launch && w->cur && a % n)
        fiber_fault(*w, fmt("misaligned atomic of %zu bytes in ", n) + block_name(*w->launch) + " " +
                            thread_name(*w->cur) + ": " + where(*w, a));
    check(a, n, ATOMIC);
}

// ---- UBSan's alignment check (-fsanitize=alignment) ---------------------------------------------
namespace {
struct SourceLocation {
    const char* file;
    uint32_t line, column;
};
struct TypeDescriptor {
    uint16_t kind, info;
    char name[1];
};
struct TypeMismatchData {
    SourceLocation loc;
    const TypeDescriptor* type;
    unsigned char log_alignment;
    unsigned char check_kind;
};
const char* const kCheckKinds[] = {"load of",         "store to",       "reference binding to", "member access within",
                                   "member call on",  "constructor call on", "downcast of",   "downcast of",
                                   "upcast of",       "cast to virtual base of", "nonnull binding to",
                                   "dynamic operation on"};

void misaligned(TypeMismatchData* d, uintptr_t ptr) {
    const char* file = strrchr(d->loc.file, '/') ? strrchr(d->loc.file, '/') + 1 : d->loc.file;
    const char* what = d->check_kind < sizeof kCheckKinds / sizeof *kCheckKinds ? kCheckKinds[d->check_kind] : "access to";
    const std::string msg = fmt("misaligned address at %s:%u:%u: %s 0x%llx, which needs %u-byte alignment for type %s",
                                file, d->loc.line, d->loc.column, what, (unsigned long long)ptr,
                                1u << d->log_alignment, d->type->name);
    Worker* w = tls_worker;
    if (!w || !w->launch || !w->cur) {
        fprintf(stderr, "emu: %s (outside a kernel)\n", msg.c_str());
        abort();
    }
    fiber_fault(*w, msg + " in " + block_name(*w->launch) + " " + thread_name(*w->cur) + " (" + where(*w, ptr) + ")");
}
}  // namespace

extern "C" void __ubsan_handle_type_mismatch_v1(TypeMismatchData* d, uintptr_t ptr) { misaligned(d, ptr); }
extern "C" void __ubsan_handle_type_mismatch_v1_abort(TypeMismatchData* d, uintptr_t ptr) { misaligned(d, ptr); }
