/*
 * prunec runtime: small helpers shared by the ISA kernels (plain C99, static inline; no ISA code here).
 *
 * prunec_rcsr_code reads the code of entry e from the packed index stream (prunec_types.h has the layout), any
 * width 1..16; prunec_rcsr_fast_bits says whether a width is one of the three (4, 8, 16) that ISA kernels have
 * their own paths for (the others go through prunec_rcsr_code, or to the portable kernel).
 * prunec_conv_decode_taps turns entries e .. e+n-1 of one output channel's row into the taps of a direct
 * sparse convolution, fillers dropped: the weight, the input offset ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w,
 * and the row and column shifts ky*dil_h and kx*dil_w that the kernels' border tests need. Each kernel keeps
 * a chunk of taps on its stack (the chunk size suits the ISA) and runs its vector pixel loops over them.
 * prunec_rcsr_bad_bits refuses an index width outside 1..16 the way the portable kernels do (docs/FORMAT.md), and
 * outside 4/8/16 in a build configured without the other widths (PRUNEC_RCSR_ODD_WIDTHS 0, prunec_config.h).
 */
#ifndef PRUNEC_RCSR_UTIL_H
#define PRUNEC_RCSR_UTIL_H

#include <math.h>
#include <string.h>

#include "prunec_config.h"
#include "prunec_types.h"

#if defined(__GNUC__)
#define PRUNEC_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define PRUNEC_ALWAYS_INLINE static inline
#endif

/* 1 for the widths ISA kernels decode on their own fast paths. */
static inline int prunec_rcsr_fast_bits(uint32_t bits) {
  return bits == 4u || bits == 8u || bits == 16u;
}

/* 1 for an index width the format allows (1..16) and this build decodes (only 4/8/16 when it was compiled with
 * PRUNEC_RCSR_ODD_WIDTHS 0, prunec_config.h). */
static inline int prunec_rcsr_valid_bits(uint32_t bits) {
#if PRUNEC_RCSR_ODD_WIDTHS
  return bits >= 1u && bits <= 16u;
#else
  return prunec_rcsr_fast_bits(bits);
#endif
}

/* An index_bits outside 1..16 is not a valid encoding: like the portable kernels, fill the output with NaN
 * (n floats) instead of decoding it with some other width. Returns 1 when it did. */
static inline int prunec_rcsr_bad_bits(const prunec_rcsr_f32 *w, float *y, size_t n) {
  size_t i;
  if (prunec_rcsr_valid_bits(w->index_bits)) {
    return 0;
  }
  for (i = 0; i < n; i++) {
    y[i] = NAN;
  }
  return 1;
}

/* The code of entry e of a b-bit stream, b in 1..16: the (up to 3) bytes that hold bits b*e .. b*e+b-1 are read
 * one by one (no read past the stream's last byte, no alignment assumed). */
PRUNEC_ALWAYS_INLINE uint32_t prunec_rcsr_code_any(const uint8_t *index, uint32_t e, const uint32_t bits) {
  const uint64_t bit = (uint64_t)e * bits;
  const uint8_t *p = index + (size_t)(bit >> 3);
  const uint32_t s = (uint32_t)(bit & 7u);
  uint32_t v = p[0];
  if (s + bits > 8u) {
    v |= (uint32_t)p[1] << 8;
  }
  if (s + bits > 16u) {
    v |= (uint32_t)p[2] << 16;
  }
  return (v >> s) & ((1u << bits) - 1u);
}

/* Sequential reading of n codes of a b-bit stream from entry e on (any b in 1..16): `buf` holds `have` unread
 * bits, refilled a byte at a time and only when the next code needs it, so nothing past the byte of the last code
 * is touched (with n = 0, not even entry e's byte). */
typedef struct prunec_rcsr_bitreader {
  const uint8_t *p;
  uint32_t buf, have;
} prunec_rcsr_bitreader;

PRUNEC_ALWAYS_INLINE void prunec_rcsr_bits_init(prunec_rcsr_bitreader *r, const uint8_t *index, uint32_t e,
                                                uint32_t n, const uint32_t bits) {
  const uint64_t bit = (uint64_t)e * bits;
  r->p = index + (size_t)(bit >> 3);
  r->buf = 0;
  r->have = 0;
  if (n > 0) {
    r->buf = (uint32_t)*r->p++ >> (uint32_t)(bit & 7u);
    r->have = 8u - (uint32_t)(bit & 7u);
  }
}

PRUNEC_ALWAYS_INLINE uint32_t prunec_rcsr_bits_next(prunec_rcsr_bitreader *r, const uint32_t bits) {
  uint32_t code;
  while (r->have < bits) {
    r->buf |= (uint32_t)*r->p++ << r->have;
    r->have += 8u;
  }
  code = r->buf & ((1u << bits) - 1u);
  r->buf >>= bits;
  r->have -= bits;
  return code;
}

PRUNEC_ALWAYS_INLINE uint32_t prunec_rcsr_code(const uint8_t *index, uint32_t e, const uint32_t bits) {
  if (bits == 8) {
    return index[e];
  }
  if (bits == 16) {
    return (uint32_t)index[2u * e] | ((uint32_t)index[2u * e + 1u] << 8);
  }
#if PRUNEC_RCSR_ODD_WIDTHS
  if (bits == 4) {
    return (uint32_t)(index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
  }
  return prunec_rcsr_code_any(index, e, bits);
#else
  return (uint32_t)(index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu; /* 4: the only width left (valid_bits) */
#endif
}

#if PRUNEC_RCSR_ODD_WIDTHS
/* Columns of entries e .. e+n-1 of a b-bit stream, any b in 1..16 (docs/FORMAT.md: one LSB-first bit stream),
 * continuing from column `last`; returns the last column. Per code one unaligned 32-bit load at its first byte (its
 * bits end within 7 + 16 bits of it), shifted and masked; the codes whose 4 bytes would reach past the stream's
 * last byte ((entries*b + 7)/8) are read bytewise. (The x86 avx2 / avx512 kernels' decode for the other widths.) */
static inline int32_t prunec_rcsr_decode_cols_any(const prunec_rcsr_f32 *w, uint32_t e, uint32_t n, int32_t last,
                                                  int32_t *cols) {
  const uint8_t *index = w->index;
  const uint32_t b = w->index_bits, mask = (1u << b) - 1u;
  const size_t len = ((size_t)w->row_ptr[w->rows] * b + 7u) / 8u;
  uint64_t bit = (uint64_t)e * b;
  uint32_t i = 0;
  for (; i < n && (size_t)(bit >> 3) + 4u <= len; i++, bit += b) {
    uint32_t v;
    memcpy(&v, index + (size_t)(bit >> 3), 4);
    last += (int32_t)((v >> (uint32_t)(bit & 7u)) & mask) + 1;
    cols[i] = last;
  }
  for (; i < n; i++) {
    last += (int32_t)prunec_rcsr_code_any(index, e + i, b) + 1;
    cols[i] = last;
  }
  return last;
}
#endif

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

/* Division-free decoding for kernels that keep a small table of one input channel's kh*kw taps (offset
 * ky*dil_h*in_w + kx*dil_w, dy, dx; filled once per call by prunec_conv_set_tap). The column is tracked as
 * (channel base ci*in_h*in_w, tap t); a gap below kh*kw crosses at most one channel (one subtraction), longer
 * gaps divide. Same taps, in the same order, as prunec_conv_decode_taps. */
#define PRUNEC_CONV_TAB_MAX 64u
typedef struct prunec_conv_tap_table {
  float w[PRUNEC_CONV_TAB_MAX]; /* unused (prunec_conv_set_tap writes it) */
  int32_t off[PRUNEC_CONV_TAB_MAX], dy[PRUNEC_CONV_TAB_MAX], dx[PRUNEC_CONV_TAB_MAX];
  uint32_t taps;
  int32_t plane;
} prunec_conv_tap_table;

/* Returns 0 (table unusable: call prunec_conv_decode_taps) when kh*kw > PRUNEC_CONV_TAB_MAX. */
static inline int prunec_conv_tap_table_init(const prunec_conv2d_params *p, prunec_conv_tap_table *tab) {
  uint32_t t;
  tab->taps = p->kh * p->kw;
  tab->plane = (int32_t)(p->in_h * p->in_w);
  if (tab->taps > PRUNEC_CONV_TAB_MAX) {
    return 0;
  }
  for (t = 0; t < tab->taps; t++) {
    prunec_conv_set_tap(p, t, 0.0f, t, tab->w, tab->off, tab->dy, tab->dx);
  }
  return 1;
}

PRUNEC_ALWAYS_INLINE uint32_t prunec_conv_decode_taps_tab_b(const prunec_conv_tap_table *tab, const prunec_rcsr_f32 *wt,
                                                            uint32_t e, uint32_t n, uint32_t *last, float *w,
                                                            int32_t *off, int32_t *dy, int32_t *dx,
                                                            const uint32_t bits) {
  const uint32_t taps = tab->taps;
  const int32_t plane = tab->plane;
  /* widths other than 4/8/16: the codes are read through a bit reader instead of per-entry address arithmetic */
  const int any = !prunec_rcsr_fast_bits(bits);
  prunec_rcsr_bitreader rd;
  uint32_t c = *last, t, i, k = 0;
  int32_t cib;
  prunec_rcsr_bits_init(&rd, wt->index, e, any ? n : 0u, bits);
  if (c == (uint32_t)-1) {
    t = (uint32_t)-1; /* the first gap (>= 1) wraps it to its tap */
    cib = 0;
  } else {
    const uint32_t ci = c / taps;
    t = c - ci * taps;
    cib = (int32_t)ci * plane;
  }
  for (i = 0; i < n; i++) {
    const float v = wt->values[e + i];
    uint32_t g;
    if (any) {
      g = prunec_rcsr_bits_next(&rd, bits) + 1u;
    } else {
      g = prunec_rcsr_code(wt->index, e + i, bits) + 1u;
    }
    c += g;
    t += g;
    if (t >= taps) {
      if (t - taps < taps) {
        t -= taps;
        cib += plane;
      } else {
        const uint32_t q = t / taps;
        t -= q * taps;
        cib += (int32_t)q * plane;
      }
    }
    if (v != 0.0f) {
      w[k] = v;
      off[k] = cib + tab->off[t];
      dy[k] = tab->dy[t];
      dx[k] = tab->dx[t];
      k++;
    }
  }
  *last = c;
  return k;
}

static inline uint32_t prunec_conv_decode_taps_tab(const prunec_conv_tap_table *tab, const prunec_rcsr_f32 *wt,
                                                   uint32_t e, uint32_t n, uint32_t *last, float *w, int32_t *off,
                                                   int32_t *dy, int32_t *dx) {
  switch (wt->index_bits) {
    case 8:
      return prunec_conv_decode_taps_tab_b(tab, wt, e, n, last, w, off, dy, dx, 8);
    case 16:
      return prunec_conv_decode_taps_tab_b(tab, wt, e, n, last, w, off, dy, dx, 16);
#if PRUNEC_RCSR_ODD_WIDTHS
    case 4:
      return prunec_conv_decode_taps_tab_b(tab, wt, e, n, last, w, off, dy, dx, 4);
    default:
      return prunec_conv_decode_taps_tab_b(tab, wt, e, n, last, w, off, dy, dx, wt->index_bits);
#else
    default:
      return prunec_conv_decode_taps_tab_b(tab, wt, e, n, last, w, off, dy, dx, 4);
#endif
  }
}

/* Dense conv kernels: the taps of columns col .. col+n-1 of a dense weight row wr (zeros included), in order.
 * With a tap table (use_tab), *tp / *cib carry the tap index and the input channel's offset from one call to
 * the next (both 0 at a row start); consecutive columns wrap the tap index to the next input channel. */
static inline void prunec_conv_dense_taps(const prunec_conv2d_params *p, const prunec_conv_tap_table *tab, int use_tab,
                                          const float *wr, uint32_t col, uint32_t n, uint32_t *tp, int32_t *cib,
                                          float *w, int32_t *off, int32_t *dy, int32_t *dx) {
  uint32_t i;
  if (use_tab) {
    uint32_t t = *tp;
    int32_t b = *cib;
    for (i = 0; i < n; i++) {
      w[i] = wr[col + i];
      off[i] = b + tab->off[t];
      dy[i] = tab->dy[t];
      dx[i] = tab->dx[t];
      if (++t == tab->taps) {
        t = 0;
        b += tab->plane;
      }
    }
    *tp = t;
    *cib = b;
  } else {
    for (i = 0; i < n; i++) {
      prunec_conv_set_tap(p, col + i, wr[col + i], i, w, off, dy, dx);
    }
  }
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

/* 1 for a depthwise convolution (one input channel per group, several groups) of fewer than 16 taps (3x3) with at most max_plane
 * output pixels: the Arm conv kernels hand those to prunec_f32_conv2d_rcsr__portable, whose loop over each nonzero's
 * valid output rectangle does less per output channel than their tiles, border runs and tap tables around the one
 * or two nonzeros such a channel keeps (bench_arm.py counts, MobileNetV1 depthwise shapes at 20 %: 6x6 on Cortex-M4
 * 262,566 -> 147,486, on AArch64 207,529 -> 93,179; 3x3 315,614 -> 106,882 and 436,102 -> 97,569). With more
 * nonzeros per channel the tiles win (1 -> 8 3x3 on 28x28 at 66 %, one group: 127,276 against 363,907 on Cortex-M4).
 * The callers pass the largest plane for their ISA (planes narrower than their tiles: any size). */
static inline int prunec_conv_few_taps(const prunec_conv2d_params *p, uint32_t max_plane) {
  return p->groups > 1 && p->in_c == p->groups && (uint64_t)p->kh * p->kw < 16 &&
         (uint64_t)p->out_h * p->out_w <= max_plane;
}

/* A 1x1, stride-1, unpadded convolution on a plane narrower than 8 columns (MobileNet's 6x6 and 3x3 pointwise
 * layers): input and output planes share one layout, so the Arm conv kernels run the plane as one row of
 * out_h*out_w pixels (runs of 8 across rows instead of one short run per row: 64->64 1x1 on 6x6 at 20 % on
 * Cortex-M4 10.2 -> 6.8 instructions per nonzero MAC). Returns that one-row view in *flat, else p itself. */
static inline const prunec_conv2d_params *prunec_conv_plane_as_row(const prunec_conv2d_params *p,
                                                                   prunec_conv2d_params *flat) {
  if (p->kh != 1u || p->kw != 1u || p->stride_h != 1u || p->stride_w != 1u || p->pad_h != 0u || p->pad_w != 0u ||
      p->out_w >= 8u) {
    return p;
  }
  *flat = *p;
  flat->in_w = flat->out_w = p->out_h * p->out_w;
  flat->in_h = flat->out_h = 1u;
  return flat;
}

/* Output columns [*ow_lo, *ow_hi) and rows [*oh_lo, *oh_hi) of p whose taps all read inside their input row / inside
 * the input's rows (any stride and dilation): there the Arm conv kernels skip the per-tap column / row checks.
 * ow_lo, ow_hi and oh_hi are clamped to the plane; an empty range has hi <= lo. */
static inline void prunec_conv_interior(const prunec_conv2d_params *p, int32_t *ow_lo, int32_t *ow_hi, int32_t *oh_lo,
                                        int32_t *oh_hi) {
  const int32_t sw = (int32_t)p->stride_w, sh = (int32_t)p->stride_h, pw = (int32_t)p->pad_w;
  const int32_t ph = (int32_t)p->pad_h, out_w = (int32_t)p->out_w, out_h = (int32_t)p->out_h;
  const int32_t hw = (int32_t)p->in_w - 1 + pw - (int32_t)((p->kw - 1) * p->dil_w); /* ow*sw <= hw */
  const int32_t hh = (int32_t)p->in_h - 1 + ph - (int32_t)((p->kh - 1) * p->dil_h); /* oh*sh <= hh */
  *ow_lo = (pw + sw - 1) / sw < out_w ? (pw + sw - 1) / sw : out_w; /* ow*sw >= pw */
  *ow_hi = hw < 0 ? 0 : (hw / sw + 1 < out_w ? hw / sw + 1 : out_w);
  *oh_lo = (ph + sh - 1) / sh;
  *oh_hi = hh < 0 ? 0 : (hh / sh + 1 < out_h ? hh / sh + 1 : out_h);
}

/* One output plane's geometry as the Arm conv kernels (Cortex-M, NEON) use it, signed for tap offsets that go
 * negative: the planes' sizes (a narrow 1x1 plane as one row, prunec_conv_plane_as_row), stride, padding, and the
 * interior column and row ranges of prunec_conv_interior. */
typedef struct prunec_conv_geom {
  int32_t in_h, in_w, out_h, out_w, sh, sw, ph, pw;
  int32_t ow_lo, ow_hi; /* output columns whose taps all lie inside their input row (any stride_w) */
  int32_t oh_lo, oh_hi; /* output rows whose taps all lie inside the input (any stride_h) */
} prunec_conv_geom;

static inline void prunec_conv_geom_init(const prunec_conv2d_params *p, prunec_conv_geom *g) {
  prunec_conv2d_params flat;
  const prunec_conv2d_params *q = prunec_conv_plane_as_row(p, &flat); /* narrow 1x1 planes as one row */
  g->in_h = (int32_t)q->in_h;
  g->in_w = (int32_t)q->in_w;
  g->out_h = (int32_t)q->out_h;
  g->out_w = (int32_t)q->out_w;
  g->sh = (int32_t)p->stride_h;
  g->sw = (int32_t)p->stride_w;
  g->ph = (int32_t)p->pad_h;
  g->pw = (int32_t)p->pad_w;
  prunec_conv_interior(q, &g->ow_lo, &g->ow_hi, &g->oh_lo, &g->oh_hi);
}

/* The frame of every column-major fc kernel (docs/FORMAT.md "Column-major fc layers"): y = bias (0 without one)
 * before the scatter of the columns, the fused clamp (as in the row kernels) after it. */
static inline void prunec_rcsc_start(float *y, const float *bias, uint32_t n) {
  uint32_t r;
  for (r = 0; r < n; r++) {
    y[r] = bias != NULL ? bias[r] : 0.0f;
  }
}

static inline void prunec_rcsc_finish(float *y, uint32_t n, float lo, float hi) {
  uint32_t r;
  for (r = 0; r < n; r++) {
    float t = y[r];
    t = t < lo ? lo : t;
    y[r] = t > hi ? hi : t;
  }
}

#endif /* PRUNEC_RCSR_UTIL_H */
