/*
 * prunec runtime: small helpers shared by the ISA kernels (plain C99, static inline; no ISA code here).
 *
 * prunec_rcsr_code reads the code of entry e from the packed index stream (prunec_types.h has the layout).
 * prunec_conv_decode_taps turns entries e .. e+n-1 of one output channel's row into the taps of a direct
 * sparse convolution, fillers dropped: the weight, the input offset ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w,
 * and the row and column shifts ky*dil_h and kx*dil_w that the kernels' border tests need. Each kernel keeps
 * a chunk of taps on its stack (the chunk size suits the ISA) and runs its vector pixel loops over them.
 */
#ifndef PRUNEC_RCSR_UTIL_H
#define PRUNEC_RCSR_UTIL_H

#include "prunec_types.h"

#if defined(__GNUC__)
#define PRUNEC_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define PRUNEC_ALWAYS_INLINE static inline
#endif

PRUNEC_ALWAYS_INLINE uint32_t prunec_rcsr_code(const uint8_t *index, uint32_t e, const uint32_t bits) {
  if (bits == 8) {
    return index[e];
  }
  if (bits == 16) {
    return (uint32_t)index[2u * e] | ((uint32_t)index[2u * e + 1u] << 8);
  }
  return (uint32_t)(index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
}

/* Tap k of column `col` (= (ci*kh + ky)*kw + kx) with weight v. */
PRUNEC_ALWAYS_INLINE void prunec_conv_set_tap(const prunec_conv2d_params *p, uint32_t col, float v, uint32_t k,
                                              float *w, int32_t *off, int32_t *dy, int32_t *dx) {
  const uint32_t taps = p->kh * p->kw;
  const uint32_t ci = col / taps, tap = col - ci * taps;
  const uint32_t ky = tap / p->kw, kx = tap - ky * p->kw;
  w[k] = v;
  dy[k] = (int32_t)(ky * p->dil_h);
  dx[k] = (int32_t)(kx * p->dil_w);
  off[k] = (int32_t)(ci * p->in_h * p->in_w) + dy[k] * (int32_t)p->in_w + dx[k];
}

/* `last` is the column before entry e (UINT32_MAX, i.e. -1, at a row start) and is advanced past entry
 * e+n-1. Returns the number of taps written to w/off/dy/dx (each of room n). */
static inline uint32_t prunec_conv_decode_taps(const prunec_conv2d_params *p, const prunec_rcsr_f32 *wt, uint32_t e,
                                               uint32_t n, uint32_t *last, float *w, int32_t *off, int32_t *dy,
                                               int32_t *dx) {
  uint32_t c = *last, i, k = 0;
  for (i = 0; i < n; i++) {
    const float v = wt->values[e + i];
    c += prunec_rcsr_code(wt->index, e + i, wt->index_bits) + 1u;
    if (v != 0.0f) {
      prunec_conv_set_tap(p, c, v, k++, w, off, dy, dx);
    }
  }
  *last = c;
  return k;
}

#endif /* PRUNEC_RCSR_UTIL_H */
