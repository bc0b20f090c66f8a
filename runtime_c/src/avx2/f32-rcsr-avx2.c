/*
 * Sparse fc and conv2d over relative-indexed CSR, x86-64 AVX2 + FMA. Twins of the portable kernels
 * (same signatures, same results up to fp32 summation order).
 *
 * fc (NOTES.md, "What a sparse fc kernel can do on this CPU"): no gathers. A row's codes are first decoded
 * into absolute columns, 256 at a time (8-bit and 16-bit codes with a SIMD prefix sum, 4-bit ones in
 * scalar). Other index widths (1..16, docs/FORMAT.md) go to the portable fc kernel; the conv kernel decodes them
 * with one 32-bit load per code. Then for each group of 8 entries with values v[0..7], accumulator j += v * broadcast(x[col_j]):
 * one x load (the broadcast) and one FMA per entry, one value load per 8. Lane j of accumulator j is the
 * partial sum of entry j of every group; the row is the sum of those diagonal lanes. A last partial group
 * loads its values masked (zeros beyond the row) and runs only the FMAs of its entries.
 *
 * conv2d (NCHW, batch 1): vectorised across output pixels. Layers of at least 16 taps per output whose one input
 * channel packs into 16384 floats (any stride, padding and dilation: LeNet-5, ResNet-8, DS-CNN's first conv) take
 * the packed path below (the input packed into kw shifted copies laid out like the output plane, in chunks of input
 * channels; every nonzero an aligned axpy of the plane held in registers). Layers of fewer taps (depthwise 3x3) on
 * planes of at most 1024 pixels whose rows are as wide as the input's take the flat path (every tap an axpy of the
 * plane read from the input itself under column and row masks). Otherwise (larger depthwise planes, huge planes):
 * the nonzeros of an output channel are decoded
 * (256 at a time; through a table of one input channel's taps, no division, when kh*kw <= 64) into (weight,
 * input offset, ky*dil_h, kx*dil_w); then for each output row and each block
 * of 8 output columns, acc += broadcast(weight) * input row segment. Blocks whose every tap lies inside
 * the input with stride 1 use plain unaligned loads (two blocks at a time); border blocks, stride > 1 and
 * the last partial block use a masked gather (masked-off lanes are not read) and a masked store. Rows whose
 * taps all lie inside the input go four (or eight) at a time through their interior columns, up to 12
 * accumulators per tile (independent FMA chains; one row alone is bound by the FMA latency). With more than 256 nonzeros in a channel, later chunks
 * accumulate onto the stored partial sums.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX2
#include <immintrin.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_AVX2_CHUNK 256u

static inline __m256i prunec_avx2_prefix_sum_epi32(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_slli_si256(v, 4));
  v = _mm256_add_epi32(v, _mm256_slli_si256(v, 8));
  const __m256i carry = _mm256_permutevar8x32_epi32(v, _mm256_set1_epi32(3));
  return _mm256_add_epi32(v, _mm256_blend_epi32(_mm256_setzero_si256(), carry, 0xF0));
}


/* Columns of entries e .. e+n-1 of one row into cols[]; `last` is the column before entry e (-1 at a row
 * start). Returns the column of the last entry decoded. */
static int32_t prunec_avx2_decode_cols(const prunec_rcsr_f32 *w, uint32_t e, uint32_t n, int32_t last,
                                       int32_t *cols) {
  const uint8_t *index = w->index;
  uint32_t i = 0;
  if (w->index_bits == 8) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i base = _mm256_set1_epi32(last);
    for (; i + 8 <= n; i += 8) {
      const __m256i g = _mm256_add_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(index + e + i))), one);
      const __m256i c = _mm256_add_epi32(prunec_avx2_prefix_sum_epi32(g), base);
      _mm256_storeu_si256((__m256i *)(cols + i), c);
      base = _mm256_permutevar8x32_epi32(c, _mm256_set1_epi32(7));
    }
    last = i > 0 ? cols[i - 1] : last;
    for (; i < n; i++) {
      last += (int32_t)index[e + i] + 1;
      cols[i] = last;
    }
  } else if (w->index_bits == 16) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i base = _mm256_set1_epi32(last);
    for (; i + 8 <= n; i += 8) {
      const __m256i g = _mm256_add_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(index + 2u * (e + i)))), one);
      const __m256i c = _mm256_add_epi32(prunec_avx2_prefix_sum_epi32(g), base);
      _mm256_storeu_si256((__m256i *)(cols + i), c);
      base = _mm256_permutevar8x32_epi32(c, _mm256_set1_epi32(7));
    }
    last = i > 0 ? cols[i - 1] : last;
    for (; i < n; i++) {
      const uint32_t k = 2u * (e + i);
      last += (int32_t)((uint32_t)index[k] | ((uint32_t)index[k + 1] << 8)) + 1;
      cols[i] = last;
    }
#if PRUNEC_RCSR_ODD_WIDTHS
  } else if (w->index_bits != 4) {
    last = prunec_rcsr_decode_cols_any(w, e, n, last, cols);
#endif
  } else { /* 4 (with PRUNEC_RCSR_ODD_WIDTHS 0 the only width left: prunec_rcsr_bad_bits took the others) */
    for (; i < n; i++) {
      const uint32_t k = e + i;
      last += (int32_t)((index[k >> 1] >> ((k & 1u) << 2)) & 0x0Fu) + 1;
      cols[i] = last;
    }
  }
  return last;
}

static inline float prunec_avx2_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline __m256i prunec_avx2_lane_mask(uint32_t m) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void prunec_f32_fc_rcsr__avx2(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  int32_t cols[PRUNEC_AVX2_CHUNK];
  const float *values = w->values;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  if (prunec_rcsr_bad_bits(w, y, w->rows)) {
    return;
  }
  if (!prunec_rcsr_fast_bits(w->index_bits)) {
    /* other widths: the portable kernel (its bit-buffer decoder beat this kernel's decode pass with the generic
     * reader: LeNet-5 fc1 at b = 6, 28 against 33-35 us; x86_64-avx2 selects avx512x4 for fc, which has its own) */
    prunec_f32_fc_rcsr__portable(w, bias, x, y, out_min, out_max);
    return;
  }
  for (r = 0; r < w->rows; r++) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const uint32_t end = row_ptr[r + 1];
    int32_t last = -1;
    uint32_t e;
    for (e = row_ptr[r]; e < end; e += PRUNEC_AVX2_CHUNK) {
      const uint32_t n = end - e < PRUNEC_AVX2_CHUNK ? end - e : PRUNEC_AVX2_CHUNK;
      const float *v = values + e;
      uint32_t i = 0;
      last = prunec_avx2_decode_cols(w, e, n, last, cols);
      for (; i + 8 <= n; i += 8) {
        const __m256 vv = _mm256_loadu_ps(v + i);
        a0 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 0]), a0);
        a1 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 1]), a1);
        a2 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 2]), a2);
        a3 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 3]), a3);
        a4 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 4]), a4);
        a5 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 5]), a5);
        a6 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 6]), a6);
        a7 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 7]), a7);
      }
      if (i < n) {
        const uint32_t m = n - i;
        const __m256 vv = _mm256_maskload_ps(v + i, prunec_avx2_lane_mask(m));
        switch (m) {
          case 7: a6 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 6]), a6); /* fall through */
          case 6: a5 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 5]), a5); /* fall through */
          case 5: a4 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 4]), a4); /* fall through */
          case 4: a3 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 3]), a3); /* fall through */
          case 3: a2 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 2]), a2); /* fall through */
          case 2: a1 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 1]), a1); /* fall through */
          default: a0 = _mm256_fmadd_ps(vv, _mm256_broadcast_ss(x + cols[i + 0]), a0);
        }
      }
    }
    {
      __m256 d = _mm256_blend_ps(a0, a1, 0x02);
      d = _mm256_blend_ps(d, a2, 0x04);
      d = _mm256_blend_ps(d, a3, 0x08);
      d = _mm256_blend_ps(d, a4, 0x10);
      d = _mm256_blend_ps(d, a5, 0x20);
      d = _mm256_blend_ps(d, a6, 0x40);
      d = _mm256_blend_ps(d, a7, 0x80);
      float acc = prunec_avx2_hsum(d) + (bias != NULL ? bias[r] : 0.0f);
      acc = acc < out_min ? out_min : acc;
      y[r] = acc > out_max ? out_max : acc;
    }
  }
}

/* One output channel's nonzeros, decoded for the pixel loops. */
typedef struct prunec_avx2_taps {
  float w[PRUNEC_AVX2_CHUNK];
  int32_t off[PRUNEC_AVX2_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_AVX2_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_AVX2_CHUNK];  /* kx*dil_w */
} prunec_avx2_taps;

/* Decodes entries e .. e+n-1 (fillers dropped) into t; returns the number of taps. */
static uint32_t prunec_avx2_decode_taps(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, uint32_t e,
                                        uint32_t n, int32_t *last, prunec_avx2_taps *t) {
  int32_t cols[PRUNEC_AVX2_CHUNK];
  uint32_t i, k = 0;
  *last = prunec_avx2_decode_cols(w, e, n, *last, cols);
  for (i = 0; i < n; i++) {
    const float v = w->values[e + i];
    if (v != 0.0f) {
      prunec_conv_set_tap(p, (uint32_t)cols[i], v, k++, t->w, t->off, t->dy, t->dx);
    }
  }
  return k;
}

/* What one chunk of an output channel's taps needs, shared by the row and tile loops below. */
typedef struct prunec_avx2_conv_ctx {
  const prunec_avx2_taps *t;
  uint32_t nt;
  const float *xg; /* the channel group's input planes */
  float *yp;       /* the output plane */
  int32_t in_h, in_w, out_w, sh, sw, ph, pw;
  int32_t ow_lo, ow_hi; /* columns whose taps all lie inside their input row (stride 1) */
  __m256 vb, vmin, vmax;
  int first, final; /* the chunk starts from the bias / ends with the clamp */
} prunec_avx2_conv_ctx;

/* Columns [from, to) of output row oh, every tap of the chunk: interior blocks (stride 1, all taps inside the
 * row) by plain loads, 16 or 8 columns at a time; the rest by masked gathers (lanes past `to` neither read nor
 * written). Rows whose taps fall above or below the input skip those taps. */
static void prunec_avx2_conv_cols(const prunec_avx2_conv_ctx *c, int32_t oh, int32_t from, int32_t to) {
  const prunec_avx2_taps *t = c->t;
  const int32_t iy0 = oh * c->sh - c->ph;
  const ptrdiff_t rbase = (ptrdiff_t)iy0 * c->in_w - c->pw; /* xg[rbase + off[k] + ow]: tap k's input (stride 1) */
  float *yr = c->yp + (size_t)oh * (size_t)c->out_w;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int32_t ow = from;
  while (ow < to) {
    uint32_t k;
    if (c->sw == 1 && ow >= c->ow_lo && ow + 16 <= c->ow_hi && ow + 16 <= to) {
      __m256 acc0 = c->first ? c->vb : _mm256_loadu_ps(yr + ow);
      __m256 acc1 = c->first ? c->vb : _mm256_loadu_ps(yr + ow + 8);
      for (k = 0; k < c->nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->in_h) {
          const float *xs = c->xg + (rbase + t->off[k] + ow);
          const __m256 wv = _mm256_broadcast_ss(t->w + k);
          acc0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs), acc0);
          acc1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs + 8), acc1);
        }
      }
      if (c->final) {
        acc0 = _mm256_min_ps(c->vmax, _mm256_max_ps(c->vmin, acc0));
        acc1 = _mm256_min_ps(c->vmax, _mm256_max_ps(c->vmin, acc1));
      }
      _mm256_storeu_ps(yr + ow, acc0);
      _mm256_storeu_ps(yr + ow + 8, acc1);
      ow += 16;
    } else if (c->sw == 1 && ow >= c->ow_lo && ow + 8 <= c->ow_hi && ow + 8 <= to) {
      __m256 acc = c->first ? c->vb : _mm256_loadu_ps(yr + ow);
      for (k = 0; k < c->nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->in_h) {
          acc = _mm256_fmadd_ps(_mm256_broadcast_ss(t->w + k), _mm256_loadu_ps(c->xg + (rbase + t->off[k] + ow)), acc);
        }
      }
      if (c->final) {
        acc = _mm256_min_ps(c->vmax, _mm256_max_ps(c->vmin, acc));
      }
      _mm256_storeu_ps(yr + ow, acc);
      ow += 8;
    } else {
      /* Lanes: output column ow+l, valid when < to; its input column for tap k is ix + dx[k]. */
      const __m256i ox = _mm256_add_epi32(_mm256_set1_epi32(ow), lane);
      const __m256i out_ok = _mm256_cmpgt_epi32(_mm256_set1_epi32(to), ox);
      const __m256i ix = _mm256_sub_epi32(_mm256_mullo_epi32(ox, _mm256_set1_epi32(c->sw)), _mm256_set1_epi32(c->pw));
      __m256 acc = c->first ? c->vb : _mm256_maskload_ps(yr + ow, out_ok);
      for (k = 0; k < c->nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->in_h) {
          const __m256i col = _mm256_add_epi32(ix, _mm256_set1_epi32(t->dx[k]));
          const __m256i ok = _mm256_and_si256(
              out_ok, _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), col),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(c->in_w), col)));
          const float *xr = c->xg + (t->off[k] - t->dx[k] + (ptrdiff_t)(iy - t->dy[k]) * c->in_w); /* input row iy */
          const __m256 xv = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xr, col, _mm256_castsi256_ps(ok), 4);
          acc = _mm256_fmadd_ps(_mm256_broadcast_ss(t->w + k), xv, acc);
        }
      }
      if (c->final) {
        acc = _mm256_min_ps(c->vmax, _mm256_max_ps(c->vmin, acc));
      }
      _mm256_maskstore_ps(yr + ow, out_ok, acc);
      ow += 8;
    }
  }
}

/* R output rows oh .. oh+R-1 whose taps all lie inside the input rows, stride 1 across, B blocks of 8 interior
 * columns from ow: R*B accumulators (at most 12 of the 16 registers), each tap broadcast once and FMAed into all of
 * them, so that R*B FMA chains run side by side (one row's chain alone is bound by the FMA latency: LeNet-5 conv2, 8
 * columns wide, ran at one FMA per 4 cycles). Each output sums its taps in tap order, as in prunec_avx2_conv_cols.
 * R and B are constants at every call (the loops unroll). */
PRUNEC_ALWAYS_INLINE void prunec_avx2_conv_tile(const prunec_avx2_conv_ctx *c, int32_t oh, int32_t ow, const uint32_t R,
                                                const uint32_t B) {
  const prunec_avx2_taps *t = c->t;
  const ptrdiff_t rs = (ptrdiff_t)c->sh * c->in_w; /* input rows between two output rows */
  const ptrdiff_t rbase = (ptrdiff_t)(oh * c->sh - c->ph) * c->in_w - c->pw + ow;
  float *yr = c->yp + (size_t)oh * (size_t)c->out_w + (size_t)ow;
  const size_t ys = (size_t)c->out_w;
  __m256 a[12];
  uint32_t i, r, b, k;
  for (r = 0; r < R; r++) {
    for (b = 0; b < B; b++) {
      a[r * B + b] = c->first ? c->vb : _mm256_loadu_ps(yr + r * ys + 8u * b);
    }
  }
  for (k = 0; k < c->nt; k++) {
    const float *xs = c->xg + (rbase + t->off[k]);
    const __m256 wv = _mm256_broadcast_ss(t->w + k);
    for (r = 0; r < R; r++) {
      for (b = 0; b < B; b++) {
        a[r * B + b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs + (ptrdiff_t)r * rs + 8 * (ptrdiff_t)b), a[r * B + b]);
      }
    }
  }
  for (i = 0; i < R * B; i++) {
    if (c->final) {
      a[i] = _mm256_min_ps(c->vmax, _mm256_max_ps(c->vmin, a[i]));
    }
    _mm256_storeu_ps(yr + (i / B) * ys + 8u * (i % B), a[i]);
  }
}

/* Rows oh .. oh+R-1 (R = 8 or 4) of the tiles: their interior columns from ow_lo, 24, 16 or 8 at a time (8 rows: 8 at
 * a time, for planes whose interior is narrower than 16 columns). Returns the first column not done. */
static int32_t prunec_avx2_conv_tiles(const prunec_avx2_conv_ctx *c, int32_t oh, uint32_t R) {
  int32_t ow = c->ow_lo;
  if (R == 8u) {
    for (; ow + 8 <= c->ow_hi; ow += 8) {
      prunec_avx2_conv_tile(c, oh, ow, 8u, 1u);
    }
    return ow;
  }
  for (; ow + 24 <= c->ow_hi; ow += 24) {
    prunec_avx2_conv_tile(c, oh, ow, 4u, 3u);
  }
  if (ow + 16 <= c->ow_hi) {
    prunec_avx2_conv_tile(c, oh, ow, 4u, 2u);
    ow += 16;
  }
  if (ow + 8 <= c->ow_hi) {
    prunec_avx2_conv_tile(c, oh, ow, 4u, 1u);
    ow += 8;
  }
  return ow;
}

/* ---- Packed path: the input packed into kw shifted copies (the avx512x4 kernel's conv_packed, in 8-float vectors,
 * in chunks of input channels) ----
 *
 * For input channels c0 .. c1-1 of a group, pk holds per (ci, kx) the input rows that tap column kx reads, cut to
 * out_w columns and laid out like the output plane: in stride_h phases of R = out_h + (kh-1)*dil_h/stride_h rows,
 * pk[(((ci-c0)*kw + kx)*stride_h + q)*R*out_w + j*out_w + ox] = x[ci][j*stride_h + q - pad_h][ox*stride_w +
 * kx*dil_w - pad_w] (0 in the padding). The input of tap (ci, ky, kx) for the whole output plane is then the
 * contiguous block of out_h*out_w floats from row (ky*dil_h)/stride_h of phase (ky*dil_h) % stride_h: every nonzero is
 * an axpy of the plane in unmasked 8-lane loads, its segment (up to PK_SEG vectors) held in registers while all of
 * the chunk's nonzeros of the output channel pass; no border, stride or narrow-plane case is left to per-pixel code.
 * Where out_w is a multiple of 8 (LeNet-5: 24 and 8) every block starts on a 32-byte boundary, so that no load is split
 * across two cache lines (the row tiles above load unaligned input rows, about half of them split: their bound). The
 * plane's last vector over-reads into the next block or zeroed slack; those lanes are not stored.
 * A group whose copies exceed PK_MAX floats is packed PK_MAX at a time, in whole input channels: the first chunk's
 * sums start from the bias, later ones from the stored partial sums, the last one is clamped. Each output channel's
 * entries are decoded once (its position in the row kept from one chunk to the next). */
#define PK_MAX 16384  /* floats of packed input per chunk (64 KB) */
#define PK_COLS 2048  /* entries of one chunk of one output channel (their decoded block offsets) */
#define PK_OC 1024    /* output channels per group (the per-channel row positions) */
#define PK_SEG 12     /* accumulators of one plane segment (of the 16 ymm registers) */
/* CALL(K) for the segment size S (1 .. PK_SEG) as a constant, so that the segment's loops unroll into registers */
#define PRUNEC_AVX2_BY_SEGMENT(S, CALL)                                                                      \
  do {                                                                                                       \
    switch (S) {                                                                                             \
      case 1: CALL(1); break;                                                                                \
      case 2: CALL(2); break;                                                                                \
      case 3: CALL(3); break;                                                                                \
      case 4: CALL(4); break;                                                                                \
      case 5: CALL(5); break;                                                                                \
      case 6: CALL(6); break;                                                                                \
      case 7: CALL(7); break;                                                                                \
      case 8: CALL(8); break;                                                                                \
      case 9: CALL(9); break;                                                                                \
      case 10: CALL(10); break;                                                                              \
      case 11: CALL(11); break;                                                                              \
      default: CALL(PK_SEG); break;                                                                          \
    }                                                                                                        \
  } while (0)
#define PK_MIN_TAPS 16 /* the avx512x4 kernel's bound: fewer taps per output (depthwise 3x3) pack as many floats as
                        * they compute with (per tap, 1 to 2 with 80 % of the weights pruned), and run faster in the
                        * row tiles (MobileNetV1-0.25's and DS-CNN's depthwise layers: 2-3x) */

/* Rows of one phase of one (ci, kx) copy (64-bit: the fit test below runs on any geometry). */
static uint64_t prunec_avx2_pk_rows(const prunec_conv2d_params *p) {
  return (uint64_t)p->out_h + ((uint64_t)(p->kh - 1) * p->dil_h) / p->stride_h;
}

/* Floats of one input channel's copies. */
static uint64_t prunec_avx2_pk_chan(const prunec_conv2d_params *p) {
  return (uint64_t)p->kw * p->stride_h * prunec_avx2_pk_rows(p) * p->out_w;
}

static int prunec_avx2_packed_fits(const prunec_conv2d_params *p) {
  const uint64_t khkw = (uint64_t)p->kh * p->kw;
  return p->out_h > 0 && p->out_w > 0 && p->out_c / p->groups <= PK_OC && khkw <= PK_COLS &&
         (uint64_t)(p->in_c / p->groups) * khkw >= PK_MIN_TAPS && prunec_avx2_pk_chan(p) <= PK_MAX;
}

/* Input channels per chunk: whole channels within PK_MAX floats and PK_COLS taps. */
static uint32_t prunec_avx2_pk_chunk(const prunec_conv2d_params *p) {
  const uint32_t cin_g = p->in_c / p->groups;
  uint32_t n = (uint32_t)(PK_MAX / prunec_avx2_pk_chan(p));
  if (n > PK_COLS / (p->kh * p->kw)) {
    n = PK_COLS / (p->kh * p->kw);
  }
  return n < cin_g ? n : cin_g;
}

/* pk (the layout above) for input channels c0 .. c1-1 of the group at xg. Rows of stride_w 1 are copied in full
 * 8-lane stores in increasing address order, so that a row's last store, spilling past out_w, is overwritten by the
 * next row's first (the last row spills into the slack); stride_w 2 from pairs of loads (even lanes by a shuffle and
 * a permute), larger strides column by column. */
static void prunec_avx2_pack(const prunec_conv2d_params *p, const float *xg, uint32_t c0, uint32_t c1, float *pk) {
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h, kw = (int32_t)p->kw;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w, dw = (int32_t)p->dil_w;
  const int32_t rows = (int32_t)prunec_avx2_pk_rows(p);
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 zero = _mm256_setzero_ps();
  float *dst = pk;
  uint32_t ci;
  int32_t kx, q, j, ox;
  for (ci = c0; ci < c1; ci++) {
    const float *xc = xg + ci * in_plane;
    for (kx = 0; kx < kw; kx++) {
      const int32_t dx = kx * dw - pad_w;
      /* output columns whose input column ox*sw + dx lies inside the row */
      const int32_t lo = dx >= 0 ? 0 : (-dx + sw - 1) / sw, hi = in_w - dx <= 0 ? 0 : (in_w - dx + sw - 1) / sw;
      for (q = 0; q < sh; q++) {
        /* rows j_lo .. j_hi-1 of this phase read input rows (0 <= j*sh + q - pad_h < in_h) */
        const int32_t j_lo = pad_h - q <= 0 ? 0 : (pad_h - q + sh - 1) / sh;
        const int32_t j_end = in_h + pad_h - q <= 0 ? 0 : (in_h + pad_h - q + sh - 1) / sh;
        const int32_t j_hi = j_end < rows ? j_end : rows, j_mid = j_lo < j_hi ? j_lo : j_hi;
        const float *src = xc + (ptrdiff_t)(j_mid * sh + q - pad_h) * in_w + dx;
        for (j = 0; j < j_mid; j++, dst += out_w) {
          for (ox = 0; ox < out_w; ox += 8) {
            _mm256_storeu_ps(dst + ox, zero);
          }
        }
        if (sw == 1) {
          for (; j < j_hi; j++, dst += out_w, src += (ptrdiff_t)sh * in_w) {
            for (ox = 0; ox < out_w; ox += 8) {
              if (ox >= lo && ox + 8 <= hi) {
                _mm256_storeu_ps(dst + ox, _mm256_loadu_ps(src + ox));
              } else {
                const __m256i o = _mm256_add_epi32(_mm256_set1_epi32(ox), lane);
                const __m256i ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), o),
                                                       _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), o));
                _mm256_storeu_ps(dst + ox, _mm256_maskload_ps(src + ox, ok)); /* masked-off lanes: 0, not read */
              }
            }
          }
        } else if (sw == 2) { /* 8 columns from 16 cells read whole: even lanes, by one shuffle and one permute */
          for (; j < j_hi; j++, dst += out_w, src += (ptrdiff_t)sh * in_w) {
            for (ox = 0; ox < out_w; ox += 8) {
              if (ox >= lo && 2 * ox + 15 + dx < in_w) {
                const __m256 e =
                    _mm256_shuffle_ps(_mm256_loadu_ps(src + 2 * ox), _mm256_loadu_ps(src + 2 * ox + 8), 0x88);
                _mm256_storeu_ps(dst + ox, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
              } else {
                int32_t k;
                for (k = ox; k < ox + 8 && k < out_w; k++) {
                  dst[k] = k >= lo && k < hi ? src[2 * k] : 0.0f;
                }
              }
            }
          }
        } else {
          for (; j < j_hi; j++, dst += out_w, src += (ptrdiff_t)sh * in_w) {
            for (ox = 0; ox < out_w; ox++) {
              dst[ox] = ox >= lo && ox < hi ? src[(ptrdiff_t)ox * sw] : 0.0f;
            }
          }
        }
        for (; j < rows; j++, dst += out_w) {
          for (ox = 0; ox < out_w; ox += 8) {
            _mm256_storeu_ps(dst + ox, zero);
          }
        }
      }
    }
  }
  _mm256_storeu_ps(dst, zero); /* slack: what the last block's last vector over-reads */
  _mm256_storeu_ps(dst + 8, zero);
}

/* Lane masks of the plane's last vector (vector nv - 1): -1 for the lanes inside the out_plane pixels. */
static void prunec_avx2_tail_mask(size_t out_plane, uint32_t nv, int32_t *tail) {
  uint32_t l;
  for (l = 0; l < 8; l++) {
    tail[l] = 8 * (size_t)(nv - 1) + l < out_plane ? -1 : 0;
  }
}

/* One segment of S vectors of the output plane (S a constant after inlining): acc = bias (first chunk) or the stored
 * partial sums, then y += val[j] * pk[off[j] ..] for the n taps; with S <= 6 two taps at a time into two accumulator
 * sets and with S <= 3 four, so that at least 8 FMA chains are in flight (the extra sets start at -0.0, the additive
 * identity that keeps a -0.0 sum). Clamped on the last chunk and stored; the last vector's lanes past the plane
 * (`tail`) are neither loaded nor stored. */
PRUNEC_ALWAYS_INLINE void prunec_avx2_pk_segment(const uint32_t S, const float *pk, const int32_t *off,
                                                 const float *val, uint32_t n, float *yt, int last_seg,
                                                 const int32_t *tail, int first, int final, const float *b3) {
  __m256 a[PK_SEG], c[PK_SEG], d[PK_SEG], f[PK_SEG];
  uint32_t i, j = 0;
  /* b3: bias, min, max; tail: the last vector's lane mask. Broadcast where used, so that no constant holds one of the
   * 16 registers through the tap loops (12 accumulators + the broadcast value: a constant kept there spilled an
   * accumulator in every iteration) */
#pragma GCC unroll 12
  for (i = 0; i < S; i++) {
    a[i] = first ? _mm256_broadcast_ss(b3)
                 : (last_seg && i == S - 1 ? _mm256_maskload_ps(yt + 8 * i, _mm256_loadu_si256((const __m256i *)tail))
                                           : _mm256_loadu_ps(yt + 8 * i));
    c[i] = d[i] = f[i] = _mm256_set1_ps(-0.0f);
  }
  if (S <= 3) {
    for (; j + 3 < n; j += 4) {
      const float *s0 = pk + off[j], *s1 = pk + off[j + 1], *s2 = pk + off[j + 2], *s3 = pk + off[j + 3];
      const __m256 v0 = _mm256_broadcast_ss(val + j), v1 = _mm256_broadcast_ss(val + j + 1);
      const __m256 v2 = _mm256_broadcast_ss(val + j + 2), v3 = _mm256_broadcast_ss(val + j + 3);
#pragma GCC unroll 12
      for (i = 0; i < S; i++) {
        a[i] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(s0 + 8 * i), a[i]);
        c[i] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(s1 + 8 * i), c[i]);
        d[i] = _mm256_fmadd_ps(v2, _mm256_loadu_ps(s2 + 8 * i), d[i]);
        f[i] = _mm256_fmadd_ps(v3, _mm256_loadu_ps(s3 + 8 * i), f[i]);
      }
    }
  }
  if (S <= 6) {
    for (; j + 1 < n; j += 2) {
      const float *s0 = pk + off[j], *s1 = pk + off[j + 1];
      const __m256 v0 = _mm256_broadcast_ss(val + j), v1 = _mm256_broadcast_ss(val + j + 1);
#pragma GCC unroll 12
      for (i = 0; i < S; i++) {
        a[i] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(s0 + 8 * i), a[i]);
        c[i] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(s1 + 8 * i), c[i]);
      }
    }
  }
  for (; j < n; j++) {
    const float *s0 = pk + off[j];
    const __m256 v0 = _mm256_broadcast_ss(val + j);
#pragma GCC unroll 12
    for (i = 0; i < S; i++) {
      a[i] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(s0 + 8 * i), a[i]);
    }
  }
#pragma GCC unroll 12
  for (i = 0; i < S; i++) {
    __m256 v = a[i];
    if (S <= 6) {
      v = S <= 3 ? _mm256_add_ps(_mm256_add_ps(v, c[i]), _mm256_add_ps(d[i], f[i])) : _mm256_add_ps(v, c[i]);
    }
    if (final) {
      v = _mm256_min_ps(_mm256_broadcast_ss(b3 + 2), _mm256_max_ps(_mm256_broadcast_ss(b3 + 1), v));
    }
    if (last_seg && i == S - 1) {
      _mm256_maskstore_ps(yt + 8 * i, _mm256_loadu_si256((const __m256i *)tail), v);
    } else {
      _mm256_storeu_ps(yt + 8 * i, v);
    }
  }
}

/* Where an output channel's row stands between chunks: the next entry, the column before it. */
typedef struct prunec_avx2_pk_pos {
  uint32_t e;
  int32_t last;
} prunec_avx2_pk_pos;

/* The row's entries from *pos up to the first one of column >= hi (the next chunk's), end at most: their blocks
 * col_off[column - lo] into off; *pos moves past them. Fillers are multiplied like the others (0 * x, FORMAT.md),
 * which costs less than testing every value. Returns their number. */
static uint32_t prunec_avx2_pk_decode(const prunec_rcsr_f32 *w, uint32_t end, int32_t lo, int32_t hi,
                                      const int32_t *col_off, prunec_avx2_pk_pos *pos, int32_t *cols, int32_t *off) {
  uint32_t e = pos->e, n = 0;
  int32_t last = pos->last;
  while (e < end) {
    const uint32_t m = end - e < PRUNEC_AVX2_CHUNK ? end - e : PRUNEC_AVX2_CHUNK;
    const int32_t before = last;
    uint32_t i;
    last = prunec_avx2_decode_cols(w, e, m, last, cols);
    for (i = 0; i < m && cols[i] < hi; i++) {
      off[n + i] = col_off[cols[i] - lo];
    }
    n += i;
    if (i < m) { /* stopped at the next chunk's first entry */
      last = i > 0 ? cols[i - 1] : before;
      e += i;
      break;
    }
    e += m;
  }
  pos->e = e;
  pos->last = last;
  return n;
}

/* w (relative-indexed CSR) or, w NULL, wd (dense: every column an entry, read in place) */
static __attribute__((noinline)) void prunec_avx2_conv_packed(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                              const prunec_dense_f32 *wd, const float *bias,
                                                              const float *x, float *y, float out_min,
                                                              float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const size_t chan = (size_t)prunec_avx2_pk_chan(p);
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups, cpc = prunec_avx2_pk_chunk(p);
  const uint32_t kw = p->kw, kh = p->kh, khkw = p->kh * p->kw, rows = (uint32_t)prunec_avx2_pk_rows(p);
  const uint32_t out_w = p->out_w;
  const uint32_t nv = (uint32_t)((out_plane + 7) / 8);
  const uint32_t nseg = (nv + PK_SEG - 1) / PK_SEG, seg = (nv + nseg - 1) / nseg;
  float pk[PK_MAX + 16] __attribute__((aligned(32)));
  int32_t col_off[PK_COLS], off[PK_COLS], cols[PRUNEC_AVX2_CHUNK], tail[8];
  prunec_avx2_pk_pos pos[PK_OC];
  uint32_t g, oc, c0;
  {
    /* column -> block of a chunk's columns (k*kh*kw + ky*kw + kx for its k-th channel), the same for every chunk (a
     * shorter last chunk uses a prefix) */
    uint32_t k, ky, kx;
    for (k = 0; k < cpc; k++) {
      for (ky = 0; ky < kh; ky++) {
        for (kx = 0; kx < kw; kx++) {
          const uint32_t dy = ky * p->dil_h; /* phase dy % stride_h, from its row dy / stride_h */
          col_off[(k * kh + ky) * kw + kx] =
              (int32_t)(k * chan + ((kx * p->stride_h + dy % p->stride_h) * rows + dy / p->stride_h) * out_w);
        }
      }
    }
  }
  prunec_avx2_tail_mask(out_plane, nv, tail);
  for (g = 0; g < p->groups; g++) {
    for (oc = 0; oc < cout_g && w != NULL; oc++) {
      pos[oc].e = w->row_ptr[g * cout_g + oc];
      pos[oc].last = -1;
    }
    for (c0 = 0; c0 < cin_g; c0 += cpc) {
      const uint32_t c1 = c0 + cpc < cin_g ? c0 + cpc : cin_g;
      const int32_t lo = (int32_t)(c0 * khkw), hi = (int32_t)(c1 * khkw); /* the chunk's columns */
      const int first = c0 == 0, final = c1 == cin_g;
      prunec_avx2_pack(p, x + (size_t)g * cin_g * in_plane, c0, c1, pk);
      for (oc = 0; oc < cout_g; oc++) {
        float *yp = y + (size_t)(g * cout_g + oc) * out_plane;
        const float b3[3] = {bias != NULL ? bias[g * cout_g + oc] : 0.0f, out_min, out_max};
        const int32_t *offs = off;
        const float *vals;
        uint32_t n, v0;
        if (wd != NULL) { /* the chunk's columns of the dense row: the table itself, the values in place */
          offs = col_off;
          vals = wd->values + (size_t)(g * cout_g + oc) * wd->cols + (uint32_t)lo;
          n = (uint32_t)(hi - lo);
        } else { /* the chunk's entries: their values in place (contiguous), their blocks looked up */
          vals = w->values + pos[oc].e;
          n = prunec_avx2_pk_decode(w, w->row_ptr[g * cout_g + oc + 1], lo, hi, col_off, &pos[oc], cols, off);
        }
        for (v0 = 0; v0 < nv; v0 += seg) {
          const uint32_t S = nv - v0 < seg ? nv - v0 : seg;
          const int last_seg = v0 + S == nv;
          const float *pks = pk + 8 * (size_t)v0;
          float *yt = yp + 8 * (size_t)v0;
#define PK_CALL(K) prunec_avx2_pk_segment(K, pks, offs, vals, n, yt, last_seg, tail, first, final, b3)
          PRUNEC_AVX2_BY_SEGMENT(S, PK_CALL);
#undef PK_CALL
        }
      }
    }
  }
}

/* ---- Flat planes: fewer than 16 taps per output (depthwise 3x3), stride 1, rows as wide as the input's ----
 *
 * With stride 1, no dilation and out_w == in_w (padding 2*pad_w = kw - 1), output pixel f = oy*out_w + ox of the
 * flattened plane reads, for tap (ci, ky, kx), the input cell ci*in_h*in_w + f + (ky - pad_h)*in_w + (kx - pad_w): a
 * constant shift of the flat index. Every tap is then an axpy of the plane from the input itself (no packing, which
 * costs depthwise layers as much as their one or two taps), each lane loaded under a mask: its column (the shift
 * wraps into the neighbouring row at the left and right borders; a mask per kx, made once per call) and its row
 * (taps above or below the input: a range of f per tap). Masked-off lanes are not read and add 0. The plane's
 * segments (up to PK_SEG vectors) stay in registers while the channel's taps pass; planes of any width, 6x6 and
 * 3x3 included, use every lane (the row tiles need 8 interior columns and run narrower planes pixel-gather by
 * pixel-gather). */
#define FL_TAPS 16       /* taps per output channel: below the packed path's PK_MIN_TAPS */
#define FL_MASK 8192     /* kw * (plane rounded up to 8) column-mask words (32 KB) */
#define FL_PLANE 1024    /* output pixels: larger planes keep the row tiles (MobileNetV1's 48x48 depthwise layer 8.9 us
                          * there against 31 us flat, its 24x24 one 15.7 against 11.1, 12x12 13.9 against 4.7) */

static int prunec_avx2_flat_fits(const prunec_conv2d_params *p) {
  const uint64_t plane = ((uint64_t)p->out_h * p->out_w + 7) / 8 * 8;
  return p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 && p->out_w == p->in_w &&
         p->out_h > 0 && p->out_w > 0 && (uint64_t)(p->in_c / p->groups) * p->kh * p->kw < FL_TAPS &&
         (uint64_t)p->out_h * p->out_w <= FL_PLANE && (uint64_t)p->kw * plane <= FL_MASK;
}

/* One tap of the flat path: value, input shift, the flat range of output pixels whose input row exists, kx. */
typedef struct prunec_avx2_fl_tap {
  float v;
  int32_t shift, f_lo, f_hi, kx;
} prunec_avx2_fl_tap;

PRUNEC_ALWAYS_INLINE void prunec_avx2_fl_segment(const uint32_t S, const float *xg, const prunec_avx2_fl_tap *t,
                                                 uint32_t n, const int32_t *cmask, size_t nv8, uint32_t v0, float *yt,
                                                 int last_seg, const int32_t *tail, const float *b3) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 a[PK_SEG];
  uint32_t i, j;
#pragma GCC unroll 12
  for (i = 0; i < S; i++) {
    a[i] = _mm256_broadcast_ss(b3);
  }
  for (j = 0; j < n; j++) {
    const __m256 v = _mm256_broadcast_ss(&t[j].v);
    const float *src = xg + t[j].shift + 8 * (ptrdiff_t)v0;
    const int32_t *cm = cmask + (size_t)t[j].kx * nv8 + 8 * (size_t)v0;
    /* lanes l of vector i are flat pixel 8*(v0 + i) + l: inside [f_lo, f_hi) */
    const __m256i lo = _mm256_set1_epi32(t[j].f_lo - 1 - 8 * (int32_t)v0);
    const __m256i hi = _mm256_set1_epi32(t[j].f_hi - 8 * (int32_t)v0);
#pragma GCC unroll 12
    for (i = 0; i < S; i++) {
      const __m256i f = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * (int32_t)i));
      const __m256i m = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(cm + 8 * i)),
                                         _mm256_and_si256(_mm256_cmpgt_epi32(f, lo), _mm256_cmpgt_epi32(hi, f)));
      a[i] = _mm256_fmadd_ps(v, _mm256_maskload_ps(src + 8 * i, m), a[i]);
    }
  }
#pragma GCC unroll 12
  for (i = 0; i < S; i++) {
    const __m256 r = _mm256_min_ps(_mm256_broadcast_ss(b3 + 2), _mm256_max_ps(_mm256_broadcast_ss(b3 + 1), a[i]));
    if (last_seg && i == S - 1) {
      _mm256_maskstore_ps(yt + 8 * i, _mm256_loadu_si256((const __m256i *)tail), r);
    } else {
      _mm256_storeu_ps(yt + 8 * i, r);
    }
  }
}

static __attribute__((noinline)) void prunec_avx2_conv_flat(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                            const float *bias, const float *x, float *y, float out_min,
                                                            float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups, kw = p->kw, khkw = p->kh * p->kw;
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w, out_h = (int32_t)p->out_h;
  const int32_t pad_h = (int32_t)p->pad_h, pad_w = (int32_t)p->pad_w;
  const uint32_t nv = (uint32_t)((out_plane + 7) / 8);
  const uint32_t nseg = (nv + PK_SEG - 1) / PK_SEG, seg = (nv + nseg - 1) / nseg;
  const size_t nv8 = 8 * (size_t)nv;
  int32_t cmask[FL_MASK], tail[8], cols[FL_TAPS + 8];
  prunec_avx2_fl_tap t[FL_TAPS + 8];
  uint32_t oc, kx;
  size_t f;
  for (kx = 0; kx < kw; kx++) { /* lane f reads column f % out_w + kx - pad_w of its row */
    for (f = 0; f < nv8; f++) {
      const int32_t ix = (int32_t)(f % (size_t)out_w) + (int32_t)kx - pad_w;
      cmask[kx * nv8 + f] = ix >= 0 && ix < in_w && f < out_plane ? -1 : 0;
    }
  }
  prunec_avx2_tail_mask(out_plane, nv, tail);
  for (oc = 0; oc < p->out_c; oc++) {
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const float b3[3] = {bias != NULL ? bias[oc] : 0.0f, out_min, out_max};
    const uint32_t e0 = w->row_ptr[oc], m = w->row_ptr[oc + 1] - e0;
    uint32_t n = 0, i, v0;
    /* a row holds at most cin_g*kh*kw < FL_TAPS entries, fillers included (a gap never exceeds the row) */
    prunec_avx2_decode_cols(w, e0, m, -1, cols);
    for (i = 0; i < m; i++) {
      const float v = w->values[e0 + i];
      if (v != 0.0f) {
        const int32_t c = cols[i], ci = c / (int32_t)khkw, r = c % (int32_t)khkw;
        const int32_t ky = r / (int32_t)kw, kxx = r % (int32_t)kw;
        const int32_t oy_lo = pad_h - ky > 0 ? pad_h - ky : 0;
        const int32_t oy_hi = in_h + pad_h - ky < out_h ? in_h + pad_h - ky : out_h;
        t[n].v = v;
        t[n].shift = ci * (int32_t)in_plane + (ky - pad_h) * in_w + (kxx - pad_w);
        t[n].f_lo = oy_lo * out_w;
        t[n].f_hi = oy_hi > oy_lo ? oy_hi * out_w : oy_lo * out_w;
        t[n++].kx = kxx;
      }
    }
    for (v0 = 0; v0 < nv; v0 += seg) {
      const uint32_t S = nv - v0 < seg ? nv - v0 : seg;
      const int last_seg = v0 + S == nv;
      float *yt = y + (size_t)oc * out_plane + 8 * (size_t)v0;
#define FL_CALL(K) prunec_avx2_fl_segment(K, xg, t, n, cmask, nv8, v0, yt, last_seg, tail, b3)
      PRUNEC_AVX2_BY_SEGMENT(S, FL_CALL);
#undef FL_CALL
    }
  }
}

void prunec_f32_conv2d_rcsr__avx2(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                  const float *x, float *y, float out_min, float out_max) {
  prunec_avx2_taps t;
  prunec_avx2_conv_ctx c;
  prunec_conv_tap_table tab; /* division-free decoding of the taps (kh*kw <= 64) */
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const int32_t out_h = (int32_t)p->out_h;
  int32_t oh_lo, oh_hi; /* rows whose taps all lie inside the input (the four-row tiles) */
  uint32_t oc;
  if (prunec_rcsr_bad_bits(w, y, (size_t)p->out_c * out_plane)) {
    return;
  }
  if (prunec_avx2_packed_fits(p)) {
    prunec_avx2_conv_packed(p, w, NULL, bias, x, y, out_min, out_max);
    return;
  }
  if (prunec_avx2_flat_fits(p)) {
    prunec_avx2_conv_flat(p, w, bias, x, y, out_min, out_max);
    return;
  }
  /* ow_lo, ow_hi: the output columns whose every tap column lies inside the input (the unmasked paths, stride 1) */
  prunec_conv_interior(p, &c.ow_lo, &c.ow_hi, &oh_lo, &oh_hi);
  c.t = &t;
  c.in_h = (int32_t)p->in_h, c.in_w = (int32_t)p->in_w, c.out_w = (int32_t)p->out_w;
  c.sh = (int32_t)p->stride_h, c.sw = (int32_t)p->stride_w, c.ph = (int32_t)p->pad_h, c.pw = (int32_t)p->pad_w;
  c.vmin = _mm256_set1_ps(out_min), c.vmax = _mm256_set1_ps(out_max);
  for (oc = 0; oc < p->out_c; oc++) {
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    int32_t last = -1;
    uint32_t ulast = (uint32_t)-1;
    c.xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    c.yp = y + (size_t)oc * out_plane;
    c.vb = _mm256_set1_ps(bias != NULL ? bias[oc] : 0.0f);
    c.first = 1;
    do {
      const uint32_t n = end - e < PRUNEC_AVX2_CHUNK ? end - e : PRUNEC_AVX2_CHUNK;
      int32_t oh = 0;
      c.nt = use_tab ? prunec_conv_decode_taps_tab(&tab, w, e, n, &ulast, t.w, t.off, t.dy, t.dx)
                     : prunec_avx2_decode_taps(p, w, e, n, &last, &t);
      c.final = e + n >= end;
      while (oh < out_h) {
        if (c.sw == 1 && oh >= oh_lo && oh + 4 <= oh_hi && c.ow_lo + 8 <= c.ow_hi) {
          /* 8 rows where the interior is too narrow for 16 columns per tile, else 4 */
          const uint32_t R = c.ow_hi - c.ow_lo < 16 && oh + 8 <= oh_hi ? 8u : 4u;
          const int32_t done = prunec_avx2_conv_tiles(&c, oh, R); /* columns ow_lo .. done-1 of the R rows */
          int32_t r;
          for (r = oh; r < oh + (int32_t)R; r++) {
            prunec_avx2_conv_cols(&c, r, 0, c.ow_lo);
            prunec_avx2_conv_cols(&c, r, done, c.out_w);
          }
          oh += (int32_t)R;
        } else {
          prunec_avx2_conv_cols(&c, oh, 0, c.out_w);
          oh++;
        }
      }
      c.first = 0;
      e += n;
    } while (e < end);
  }
}

/* Dense conv2d (a layer stored dense: denser than relative-indexed CSR pays): the packed path over every weight of the
 * row, zeros included, where it applies (>= 16 taps per output, one input channel's copies within 16384 floats);
 * else the portable kernel. */
void prunec_f32_conv2d_dense__avx2(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias,
                                   const float *x, float *y, float out_min, float out_max) {
  if (prunec_avx2_packed_fits(p)) {
    prunec_avx2_conv_packed(p, NULL, w, bias, x, y, out_min, out_max);
  } else {
    prunec_f32_conv2d_dense__portable(p, w, bias, x, y, out_min, out_max);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_avx2_unavailable;
#endif /* PRUNEC_HAVE_AVX2 */
