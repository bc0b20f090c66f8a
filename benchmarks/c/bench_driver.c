/*
 * Timing loops for the layer benchmarks: call one kernel `iters` times and return the mean seconds per
 * inference (one inference = `batch` calls on consecutive inputs, the kernel API being batch 1).
 * Clock: CLOCK_MONOTONIC around the whole loop; the caller takes medians over interleaved repetitions.
 */
#define _POSIX_C_SOURCE 199309L
#include <time.h>

#include "bench_driver.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The fc loops, one per weight storage (the kernel signatures differ only in the weight struct). */
#define BENCH_FC(name, fn_type, w_type)                                                                        \
  double name(fn_type f, const w_type *w, const float *bias, const float *x, float *y, int batch, long iters,   \
              float lo, float hi) {                                                                            \
    const double t0 = now();                                                                                   \
    long i;                                                                                                    \
    int b;                                                                                                     \
    for (i = 0; i < iters; i++) {                                                                              \
      for (b = 0; b < batch; b++) {                                                                            \
        f(w, bias, x + (size_t)b * w->cols, y + (size_t)b * w->rows, lo, hi);                                  \
      }                                                                                                        \
    }                                                                                                          \
    return (now() - t0) / (double)iters;                                                                       \
  }

BENCH_FC(bench_fc_rcsr, bench_fc_rcsr_fn, prunec_rcsr_f32)
BENCH_FC(bench_fc_dense, bench_fc_dense_fn, prunec_dense_f32)
BENCH_FC(bench_fc_bsell, bench_fc_bsell_fn, prunec_bsell_f32)
BENCH_FC(bench_fc_rsell, bench_fc_rsell_fn, prunec_rsell_f32)

double bench_conv_rcsr(bench_conv_rcsr_fn f, const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                       const float *bias, const float *x, float *y, long iters, float lo, float hi) {
  const double t0 = now();
  long i;
  for (i = 0; i < iters; i++) {
    f(p, w, bias, x, y, lo, hi);
  }
  return (now() - t0) / (double)iters;
}

double bench_conv_dense(bench_conv_dense_fn f, const prunec_conv2d_params *p, const prunec_dense_f32 *w,
                        const float *bias, const float *x, float *y, long iters, float lo, float hi) {
  const double t0 = now();
  long i;
  for (i = 0; i < iters; i++) {
    f(p, w, bias, x, y, lo, hi);
  }
  return (now() - t0) / (double)iters;
}
