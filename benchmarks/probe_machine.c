/*
 * Machine limits for the benchmark's roofline bounds, one core: streaming read bandwidth (DRAM-, L3-, L2- and
 * L1-sized buffers) and peak fp32 FMA throughput. Prints one `key value` line per figure.
 *
 * Bandwidth: sum a float buffer with 128 independent lanes (8 zmm / 16 ymm accumulators: the compiler
 * vectorises the loop under -O3 -march=native without reassociating); best of several passes.
 * Peak: 12 independent chains of a*x+b on vectors (enough to hide the FMA latency), best of several runs.
 * Build: cc -O3 -march=native benchmarks/probe_machine.c -o probe_machine
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Sums `reps` passes over a: 128 lanes of partial sums, which the compiler keeps as 8 zmm (or 16 ymm) registers,
   so the adds form 8 (16) independent chains. With 16 lanes (one zmm register) every add waited for the previous
   one: the probe measured the add latency (~64 bytes per 2-3 cycles, 130-150 GB/s), not the L1 / L2 bandwidth.
   The partial sums are reduced once per call, after all passes (a reduction per pass cost as much as a 16 KB pass). */
static float sum_buffer(const float *a, size_t n, int reps) {
  float s[128] = {0};
  size_t i, j, k;
  int r;
  for (r = 0; r < reps; r++) {
    for (i = 0; i + 128 <= n; i += 128) {
      for (j = 0; j < 128; j++) {
        s[j] += a[i + j];
      }
    }
  }
  for (j = 64; j > 0; j /= 2) {
    for (k = 0; k < j; k++) {
      s[k] += s[k + j];
    }
  }
  return s[0];
}

/* GB/s reading `bytes`, best of `passes` (each pass may repeat the buffer to last >= ~2 ms). */
static double read_bw(size_t bytes, int passes, volatile float *sink) {
  const size_t n = bytes / sizeof(float);
  float *a = aligned_alloc(64, n * sizeof(float));
  size_t i;
  int p, inner;
  double best = 0.0;
  for (i = 0; i < n; i++) {
    a[i] = (float)(i & 7);
  }
  inner = bytes >= (64u << 20) ? 1 : (int)((64u << 20) / bytes);
  for (p = 0; p < passes; p++) {
    double t0 = now(), dt, gbs;
    *sink += sum_buffer(a, n, inner);
    dt = now() - t0;
    gbs = (double)bytes * inner / dt * 1e-9;
    if (gbs > best) {
      best = gbs;
    }
  }
  free(a);
  return best;
}

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* GFLOP/s of independent FMA chains (2 flops per lane per FMA). */
static double peak_fma(int reps, volatile float *sink) {
  const long iters = 20 * 1000 * 1000;
  double best = 0.0;
  int r;
  for (r = 0; r < reps; r++) {
    double t0, dt, gf;
    long i;
#if defined(__AVX512F__)
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    /* Distinct starting values, so that the compiler cannot merge identical chains. */
    __m512 c0 = _mm512_set1_ps(1), c1 = _mm512_set1_ps(2), c2 = _mm512_set1_ps(3), c3 = _mm512_set1_ps(4),
           c4 = _mm512_set1_ps(5), c5 = _mm512_set1_ps(6), c6 = _mm512_set1_ps(7), c7 = _mm512_set1_ps(8),
           c8 = _mm512_set1_ps(9), c9 = _mm512_set1_ps(10), c10 = _mm512_set1_ps(11), c11 = _mm512_set1_ps(12);
    const int lanes = 16;
    t0 = now();
    for (i = 0; i < iters; i++) {
      c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b); c2 = _mm512_fmadd_ps(c2, a, b);
      c3 = _mm512_fmadd_ps(c3, a, b); c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
      c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b); c8 = _mm512_fmadd_ps(c8, a, b);
      c9 = _mm512_fmadd_ps(c9, a, b); c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
    }
    dt = now() - t0;
    c0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                       _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    c0 = _mm512_add_ps(c0, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    *sink += _mm512_reduce_add_ps(c0);
#elif defined(__AVX2__)
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(1), c1 = _mm256_set1_ps(2), c2 = _mm256_set1_ps(3), c3 = _mm256_set1_ps(4),
           c4 = _mm256_set1_ps(5), c5 = _mm256_set1_ps(6), c6 = _mm256_set1_ps(7), c7 = _mm256_set1_ps(8),
           c8 = _mm256_set1_ps(9), c9 = _mm256_set1_ps(10), c10 = _mm256_set1_ps(11), c11 = _mm256_set1_ps(12);
    float out[8];
    const int lanes = 8;
    t0 = now();
    for (i = 0; i < iters; i++) {
      c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b); c2 = _mm256_fmadd_ps(c2, a, b);
      c3 = _mm256_fmadd_ps(c3, a, b); c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
      c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b); c8 = _mm256_fmadd_ps(c8, a, b);
      c9 = _mm256_fmadd_ps(c9, a, b); c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
    }
    dt = now() - t0;
    c0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                       _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    c0 = _mm256_add_ps(c0, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    _mm256_storeu_ps(out, c0);
    *sink += out[0];
#else
    float c[12];
    const int lanes = 1;
    int j;
    for (j = 0; j < 12; j++) c[j] = 1.0f + (float)j;
    t0 = now();
    for (i = 0; i < iters; i++) {
      for (j = 0; j < 12; j++) c[j] = c[j] * 0.999999f + 1e-7f;
    }
    dt = now() - t0;
    for (j = 0; j < 12; j++) *sink += c[j];
#endif
    gf = 2.0 * lanes * 12.0 * (double)iters / dt * 1e-9;
    if (gf > best) {
      best = gf;
    }
  }
  return best;
}

int main(int argc, char **argv) {
  volatile float sink = 0.0f;
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  printf("dram_read_gbs %.2f\n", read_bw((size_t)256 << 20, quick ? 3 : 7, &sink));
  printf("l3_read_gbs %.2f\n", read_bw((size_t)8 << 20, quick ? 3 : 7, &sink));
  printf("l2_read_gbs %.2f\n", read_bw((size_t)512 << 10, quick ? 3 : 7, &sink));
  printf("l1_read_gbs %.2f\n", read_bw((size_t)16 << 10, quick ? 3 : 7, &sink));
  printf("peak_fma_gflops %.2f\n", peak_fma(quick ? 3 : 7, &sink));
  return sink == 12345.0f;
}
