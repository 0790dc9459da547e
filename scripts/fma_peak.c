/* fma_peak.c: the f32 FMA peak of this CPU measured by a plain C loop, the outside
 * reference `duel bench`'s header is checked against (scripts/fma-peak-check.sh).
 *
 * Each thread runs ITERS rounds of 24 independent AVX-512 FMA chains acc = acc*a + b
 * (24 chains cover 2 FMA ports x 4-cycle latency x 3 with room). The multiplier and
 * addend come from volatile loads and every accumulator feeds the printed sum, so the
 * compiler can neither fold the loop nor drop a chain; -O2 without -ffast-math keeps each
 * FMA. FLOPs = threads * ITERS * 24 chains * 16 lanes * 2. Prints the best of REPS
 * repetitions, measured from the first thread's start to the last thread's end.
 *
 * Build: gcc -O2 -mavx512f -pthread scripts/fma_peak.c -o fma_peak
 * Run:   ./fma_peak THREADS [ITERS] [REPS]
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 24

static volatile float va = 0.9999f, vb = 1e-4f;
static long iters = 2000000;
static pthread_barrier_t barrier;

struct span { double start, end; float sum; };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
    struct span *s = arg;
    __m512 a = _mm512_set1_ps(va), b = _mm512_set1_ps(vb);
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps(i * 1e-3f * va);
    pthread_barrier_wait(&barrier);
    s->start = now();
    for (long n = 0; n < iters; n++) {
        /* Written out so each chain stays in its own zmm register. */
        acc[0] = _mm512_fmadd_ps(acc[0], a, b);   acc[1] = _mm512_fmadd_ps(acc[1], a, b);
        acc[2] = _mm512_fmadd_ps(acc[2], a, b);   acc[3] = _mm512_fmadd_ps(acc[3], a, b);
        acc[4] = _mm512_fmadd_ps(acc[4], a, b);   acc[5] = _mm512_fmadd_ps(acc[5], a, b);
        acc[6] = _mm512_fmadd_ps(acc[6], a, b);   acc[7] = _mm512_fmadd_ps(acc[7], a, b);
        acc[8] = _mm512_fmadd_ps(acc[8], a, b);   acc[9] = _mm512_fmadd_ps(acc[9], a, b);
        acc[10] = _mm512_fmadd_ps(acc[10], a, b); acc[11] = _mm512_fmadd_ps(acc[11], a, b);
        acc[12] = _mm512_fmadd_ps(acc[12], a, b); acc[13] = _mm512_fmadd_ps(acc[13], a, b);
        acc[14] = _mm512_fmadd_ps(acc[14], a, b); acc[15] = _mm512_fmadd_ps(acc[15], a, b);
        acc[16] = _mm512_fmadd_ps(acc[16], a, b); acc[17] = _mm512_fmadd_ps(acc[17], a, b);
        acc[18] = _mm512_fmadd_ps(acc[18], a, b); acc[19] = _mm512_fmadd_ps(acc[19], a, b);
        acc[20] = _mm512_fmadd_ps(acc[20], a, b); acc[21] = _mm512_fmadd_ps(acc[21], a, b);
        acc[22] = _mm512_fmadd_ps(acc[22], a, b); acc[23] = _mm512_fmadd_ps(acc[23], a, b);
    }
    s->end = now();
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < CHAINS; i++) sum = _mm512_add_ps(sum, acc[i]);
    s->sum = _mm512_reduce_add_ps(sum);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s THREADS [ITERS] [REPS]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]);
    if (argc > 2) iters = atol(argv[2]);
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (threads < 1 || threads > 256 || iters < 1 || reps < 1) {
        fprintf(stderr, "THREADS must be 1..256, ITERS and REPS positive\n");
        return 2;
    }
    pthread_t tid[256];
    struct span spans[256];
    double best = 0, check = 0;
    for (int r = 0; r < reps; r++) {
        pthread_barrier_init(&barrier, NULL, threads);
        for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, worker, &spans[t]);
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        pthread_barrier_destroy(&barrier);
        double first = spans[0].start, last = spans[0].end;
        for (int t = 0; t < threads; t++) {
            if (spans[t].start < first) first = spans[t].start;
            if (spans[t].end > last) last = spans[t].end;
            check += spans[t].sum;
        }
        double gflops = (double)threads * iters * CHAINS * 16 * 2 / (last - first) / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("%.1f GFLOP/s f32 on %d threads (c loop, best of %d; checksum %g)\n", best, threads,
           reps, check);
    return 0;
}
