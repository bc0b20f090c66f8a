/*
 * prunec runtime: the column-major fc layer's 8-bit path for ISAs whose FPU has a fused multiply-add (x86 FMA,
 * Armv8-A, Armv7-A VFPv4), shared by their kernels (src/avx2/f32-fc-rcsc-avx2.c, src/neon/f32-fc-rcsc-neon.c).
 * Plain C: the work is a scatter of scalar updates, which SIMD does not speed up (x86 gathers and scatters cost
 * more per element than these loads and stores).
 *
 * w is the relative-indexed CSR of W^T (docs/FORMAT.md "Column-major fc layers"); y must already hold the bias.
 * For each input j with x[j] != 0, y[out] += value * x[j] over column j's entries, four entries per step: one
 * 32-bit load of their codes, the pointer p kept at y + out(previous entry) + 1 - k for the step's k-th entry (so
 * entry k is p[k]), the four outputs (distinct) loaded before any is stored: the compiler need not order a value's
 * load after the previous store, and no FMA waits for another.
 */
#ifndef PRUNEC_RCSC_FMA_H
#define PRUNEC_RCSC_FMA_H

#include <string.h>

#include "prunec_rcsr_util.h"

PRUNEC_ALWAYS_INLINE void prunec_rcsc_fma_b8(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    const uint32_t end = ptr[j + 1];
    uint32_t e = ptr[j];
    const float *v = w->values + e;
    const uint8_t *c = w->index + e;
    float *p = y; /* y + out(previous entry) + 1 */
    if (xj == 0.0f) {
      continue;
    }
    for (; e + 4u <= end; e += 4u, c += 4, v += 4) {
      uint32_t q;
      float *p0, *p1, *p2, *p3;
      float a0, a1, a2, a3;
      memcpy(&q, c, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      q = __builtin_bswap32(q);
#endif
      p0 = p + (q & 0xFFu);
      p1 = p0 + ((q >> 8) & 0xFFu);
      p2 = p1 + ((q >> 16) & 0xFFu);
      p3 = p2 + (q >> 24);
      a0 = p0[0], a1 = p1[1], a2 = p2[2], a3 = p3[3];
      p0[0] = __builtin_fmaf(v[0], xj, a0);
      p1[1] = __builtin_fmaf(v[1], xj, a1);
      p2[2] = __builtin_fmaf(v[2], xj, a2);
      p3[3] = __builtin_fmaf(v[3], xj, a3);
      p = p3 + 4;
    }
    for (; e < end; e++) {
      p += *c++;
      *p = __builtin_fmaf(*v++, xj, *p);
      p++;
    }
  }
}

/* The whole kernel around it, for 8-bit codes: y = bias, the scatter, the clamp. */
PRUNEC_ALWAYS_INLINE void prunec_rcsc_fma(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                          float out_min, float out_max) {
  const uint32_t n = w->cols;
  uint32_t r;
  for (r = 0; r < n; r++) {
    y[r] = bias != NULL ? bias[r] : 0.0f;
  }
  prunec_rcsc_fma_b8(w, x, y);
  for (r = 0; r < n; r++) {
    float t = y[r];
    t = t < out_min ? out_min : t;
    y[r] = t > out_max ? out_max : t;
  }
}

#endif /* PRUNEC_RCSC_FMA_H */
