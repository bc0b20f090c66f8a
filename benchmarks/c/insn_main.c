/*
 * One kernel on one layer, ITERS times: the program whose instructions QEMU's counter plugin counts.
 * Built twice (ITERS = 0 and ITERS = N); the difference over N is the count per inference, start-up excluded.
 * layer_data.h (generated) defines ROWS, COLS and, under SPARSE, the relative-indexed CSR arrays of STORE_ROWS x
 * STORE_COLS (W, or W^T for a column-major kernel) (else the dense matrix) and BIAS; KERNEL is the kernel's name.
 * Under WSELL, the windowed sliced layout's arrays instead (PERM, STEPS, START, ADVANCE, INDEX, VALUES); under ACSR,
 * absolute-indexed CSR's (VALUES, COLUMNS, ROW_PTR).
 * X_ZEROS_PERMILLE (default 0): that share of the inputs, in thousandths, is zero (a ReLU's output), spread
 * evenly; the calls' dependency chain never makes one of them nonzero.
 */
#include <math.h>

#include "prunec_kernels.h"
#include "layer_data.h"

#ifndef STORE_ROWS /* row-major storage */
#define STORE_ROWS ROWS
#define STORE_COLS COLS
#endif
#ifndef ITERS
#define ITERS 0
#endif

static float x[COLS];
static float y[ROWS];

int main(void) {
  volatile float sink = 0.0f;
  int i;
#if defined(WSELL) /* the windowed sliced layout (docs/FORMAT.md "Windowed fc layers") */
  static const prunec_wsell_f32 w = {ROWS, COLS, PERM, STEPS, START, ADVANCE, INDEX, VALUES};
#elif defined(ACSR) /* absolute-indexed CSR (docs/FORMAT.md "Absolute-indexed fc layers") */
  static const prunec_acsr_f32 w = {ROWS, COLS, VALUES, COLUMNS, ROW_PTR};
#elif defined(SPARSE)
  static const prunec_rcsr_f32 w = {STORE_ROWS, STORE_COLS, INDEX_BITS, VALUES, INDEX, ROW_PTR};
#else
  static const prunec_dense_f32 w = {ROWS, COLS, VALUES};
#endif
  for (i = 0; i < COLS; i++) {
    x[i] = (float)((i * 37) % 101) * 0.01f - 0.5f;
#ifdef X_ZEROS_PERMILLE
    if ((unsigned)(i * 7919) % 1000u < X_ZEROS_PERMILLE) {
      x[i] = 0.0f;
    }
#endif
  }
  /* x must be written in the ITERS = 0 build too: without this barrier the compiler drops the loop above there
     (x is then write-only), and (insns(N) - insns(0)) / N would count its iterations / N per inference; y must
     exist in both builds too (bare-metal start-up code zeroes .bss, and an unused y would shrink it). */
  __asm__ __volatile__("" : : "r"(x), "r"(y) : "memory");
  for (i = 0; i < ITERS; i++) {
    KERNEL(&w, BIAS, x, y, 0.0f, INFINITY);
    if (x[i % COLS] != 0.0f) {
      x[i % COLS] += y[i % ROWS] * 1e-6f; /* the next call depends on this one */
    }
  }
  sink = y[0];
  (void)sink;
  return 0;
}
