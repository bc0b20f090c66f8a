/*
 * Sparse 2-D convolution over relative-indexed CSR, x86-64 AVX-512 (F, VL), NCHW, batch 1: register tiles of
 * the output plane. Twin of prunec_f32_conv2d_rcsr__portable (same signature, same result up to fp32
 * summation order).
 *
 * Per output channel oc, the row's nonzeros are decoded once into (input offset, value) pairs, the offset of
 * weight (ci, ky, kx) being ci*in_h*in_w + ky*in_w + kx (fillers dropped), through a per-call table indexed
 * by column. The output plane is cut into tiles
 * of 8 output rows x 16 output columns; a tile's accumulators stay in 8 zmm registers while every
 * nonzero adds value * (16 contiguous input cells of each of the tile's rows), the value broadcast and the
 * input read by one masked load per row. The mask keeps lanes that are inside both the input row (padding
 * reads nothing) and the output row, from a table per (kx, column tile). Rows of a border tile whose input
 * row lies in the padding load nothing (all-false mask).
 * Nonzeros are processed in chunks of CHUNK (the tile is stored and reloaded between chunks).
 *
 * This is the fast path for stride 1 and dilation 1 (the paper's LeNet-5, AlexNet conv2-5, VGG-16); other
 * geometries take a plain direct loop, the portable algorithm.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512 && defined(__AVX512VL__)
#include <immintrin.h>

#include "prunec_kernels.h"

#define ROWS 8      /* output rows per tile: 8 zmm accumulators */
#define CHUNK 512u  /* nonzeros decoded per pass */
#define MAX_KW 16   /* larger kernels or wider planes take the generic loop */
#define MAX_TILES 32
#define MAX_COLS 4608 /* in_c/groups*kh*kw of VGG-16's 3x3x512; larger rows take the generic loop */

static uint32_t code_at(const prunec_rcsr_f32 *w, uint32_t e) {
  switch (w->index_bits) {
    case 4:
      return (uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
    case 8:
      return w->index[e];
    default:
      return (uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8);
  }
}

static inline __mmask16 lane_range(int32_t lo, int32_t hi) {
  /* lanes l with lo <= l < hi, 0 <= l < 16 */
  uint32_t m;
  lo = lo < 0 ? 0 : lo;
  hi = hi > 16 ? 16 : hi;
  if (hi <= lo) {
    return 0;
  }
  m = (hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u)) & ~((1u << lo) - 1u);
  return (__mmask16)m;
}

/* Direct loop for strided or dilated convolutions (the portable algorithm, no tiling). */
static void conv_generic(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias, const float *x,
                         float *y, float lo, float hi) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups, taps = p->kh * p->kw;
  uint32_t oc, oy, ox;
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const float b = bias != NULL ? bias[oc] : 0.0f;
    uint32_t next = 0, e;
    size_t i;
    for (i = 0; i < out_plane; i++) {
      yp[i] = b;
    }
    for (e = w->row_ptr[oc]; e < w->row_ptr[oc + 1]; e++) {
      const uint32_t col = next + code_at(w, e);
      const float v = w->values[e];
      next = col + 1;
      if (v != 0.0f) {
        const uint32_t ci = col / taps, t = col % taps, ky = t / p->kw, kx = t % p->kw;
        const float *xc = xg + (size_t)ci * in_plane;
        for (oy = 0; oy < p->out_h; oy++) {
          const long iy = (long)oy * p->stride_h + (long)ky * p->dil_h - (long)p->pad_h;
          if (iy < 0 || iy >= (long)p->in_h) {
            continue;
          }
          for (ox = 0; ox < p->out_w; ox++) {
            const long ix = (long)ox * p->stride_w + (long)kx * p->dil_w - (long)p->pad_w;
            if (ix >= 0 && ix < (long)p->in_w) {
              yp[(size_t)oy * p->out_w + ox] += v * xc[(size_t)iy * p->in_w + (size_t)ix];
            }
          }
        }
      }
    }
    for (i = 0; i < out_plane; i++) {
      const float v = yp[i] < lo ? lo : yp[i];
      yp[i] = v > hi ? hi : v;
    }
  }
}

/* Masks of the valid lanes of column tile t for a tap at kx: inside the input row and the output row. */
static __mmask16 col_mask(int32_t kx, int32_t ox0, int32_t in_w, int32_t out_w, int32_t pad_w) {
  return lane_range(0, out_w - ox0) & lane_range(pad_w - kx - ox0, in_w + pad_w - kx - ox0);
}

/* Output planes at most 8 wide (LeNet-5's conv2): tiles of 8 rows x 8 columns in ymm registers, so that no
 * lane is wasted and each load is half as wide. Same algorithm as the 16-wide tiles below. */
static void tiles8(const prunec_conv2d_params *p, const float *xg, float *yp, uint32_t n, const int32_t *off,
                   const uint8_t *eky, const __mmask8 *mtab8, const uint8_t *ekx, const float *val, int first,
                   int last, float b, float out_min, float out_max) {
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t out_h = (int32_t)p->out_h, pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h;
  const __mmask8 out_mask = (__mmask8)((1u << out_w) - 1u);
  const __m256 vb = _mm256_set1_ps(b), vlo = _mm256_set1_ps(out_min), vhi = _mm256_set1_ps(out_max);
  int32_t oy0, r;
  uint32_t j;
  for (oy0 = 0; oy0 < out_h; oy0 += ROWS) {
    const int32_t nrows = out_h - oy0 < ROWS ? out_h - oy0 : ROWS;
    const int interior = nrows == ROWS && oy0 - pad_h >= 0 && oy0 + ROWS - 1 + (int32_t)p->kh - 1 - pad_h < in_h;
    float *yt = yp + (size_t)oy0 * p->out_w;
    const float *base = xg + (long)(oy0 - pad_h) * in_w - pad_w;
    __m256 acc[ROWS];
    for (r = 0; r < ROWS; r++) {
      acc[r] = first || r >= nrows ? vb : _mm256_maskz_loadu_ps(out_mask, yt + (long)r * out_w);
    }
    if (interior) {
      for (j = 0; j < n; j++) {
        const __mmask8 m = mtab8[ekx[j]];
        const float *src = base + off[j];
        const __m256 v = _mm256_set1_ps(val[j]);
#pragma GCC unroll 8
        for (r = 0; r < ROWS; r++) {
          acc[r] = _mm256_fmadd_ps(v, _mm256_maskz_loadu_ps(m, src + (long)r * in_w), acc[r]);
        }
      }
    } else {
      for (j = 0; j < n; j++) {
        const __mmask8 m = mtab8[ekx[j]];
        const float *src = base + off[j];
        const int32_t iy0 = oy0 - pad_h + eky[j];
        const __m256 v = _mm256_set1_ps(val[j]);
#pragma GCC unroll 8
        for (r = 0; r < ROWS; r++) {
          const __mmask8 mr = (uint32_t)(iy0 + r) < (uint32_t)in_h ? m : 0;
          acc[r] = _mm256_fmadd_ps(v, _mm256_maskz_loadu_ps(mr, src + (long)r * in_w), acc[r]);
        }
      }
    }
    for (r = 0; r < nrows; r++) {
      __m256 a = acc[r];
      if (last) {
        a = _mm256_min_ps(_mm256_max_ps(a, vlo), vhi);
      }
      _mm256_mask_storeu_ps(yt + (long)r * out_w, out_mask, a);
    }
  }
}

void prunec_f32_conv2d_rcsr__avx512x4(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                      const float *x, float *y, float out_min, float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups, taps = p->kh * p->kw;
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t out_h = (int32_t)p->out_h, pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h;
  const int32_t ntiles = (out_w + 15) / 16;
  const __m512 vlo = _mm512_set1_ps(out_min), vhi = _mm512_set1_ps(out_max);
  __mmask16 mtab[MAX_KW][MAX_TILES];
  __mmask8 mtab8[MAX_KW];
  int32_t col_off[MAX_COLS];
  uint8_t col_ky[MAX_COLS], col_kx[MAX_COLS];
  int32_t off[CHUNK];
  uint8_t eky[CHUNK], ekx[CHUNK];
  float val[CHUNK];
  uint32_t oc;
  if (w->index_bits != 4 && w->index_bits != 8 && w->index_bits != 16) {
    size_t i, n = (size_t)p->out_c * out_plane;
    for (i = 0; i < n; i++) {
      y[i] = __builtin_nanf("");
    }
    return;
  }
  if (p->stride_w != 1 || p->stride_h != 1 || p->dil_w != 1 || p->dil_h != 1 || p->kw > MAX_KW ||
      ntiles > MAX_TILES || cin_g * taps > MAX_COLS) {
    conv_generic(p, w, bias, x, y, out_min, out_max);
    return;
  }
  {
    int32_t kx, t;
    uint32_t ci, ky, c = 0;
    for (kx = 0; kx < (int32_t)p->kw; kx++) {
      for (t = 0; t < ntiles; t++) {
        mtab[kx][t] = col_mask(kx, 16 * t, in_w, out_w, pad_w);
      }
      mtab8[kx] = (__mmask8)mtab[kx][0];
    }
    /* Column -> (input offset, ky, kx), once per call: decoding a nonzero is then table look-ups, without
     * the divisions or the data-dependent carry loops that mispredict on random gaps. */
    for (ci = 0; ci < cin_g; ci++) {
      for (ky = 0; ky < p->kh; ky++) {
        for (kx = 0; kx < (int32_t)p->kw; kx++, c++) {
          col_off[c] = (int32_t)(ci * in_plane + ky * p->in_w + (uint32_t)kx);
          col_ky[c] = (uint8_t)ky;
          col_kx[c] = (uint8_t)kx;
        }
      }
    }
  }
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const __m512 vb = _mm512_set1_ps(bias != NULL ? bias[oc] : 0.0f);
    uint32_t e = w->row_ptr[oc];
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t next = 0;
    int first = 1;
    do {
      /* Decode up to CHUNK nonzeros of this output channel. */
      uint32_t n = 0, j;
      int32_t oy0, t, r;
      int last;
#define PRUNEC_X4_DECODE(CODE)                                                            \
  for (; e < end && n < CHUNK; e++) {                                                     \
    const uint32_t col = next + (CODE);                                                   \
    const float v = w->values[e];                                                         \
    next = col + 1;                                                                       \
    off[n] = col_off[col];                                                                \
    eky[n] = col_ky[col];                                                                 \
    ekx[n] = col_kx[col];                                                                 \
    val[n] = v;                                                                           \
    n += v != 0.0f; /* fillers are overwritten by the next entry */                       \
  }
      if (w->index_bits == 8) {
        PRUNEC_X4_DECODE(w->index[e])
      } else if (w->index_bits == 4) {
        PRUNEC_X4_DECODE((uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu)
      } else {
        PRUNEC_X4_DECODE((uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8))
      }
#undef PRUNEC_X4_DECODE
      last = e >= end;
      if (out_w <= 8) {
        tiles8(p, xg, yp, n, off, eky, mtab8, ekx, val, first, last, bias != NULL ? bias[oc] : 0.0f, out_min, out_max);
        first = 0;
        continue;
      }
      for (oy0 = 0; oy0 < out_h; oy0 += ROWS) {
        const int32_t nrows = out_h - oy0 < ROWS ? out_h - oy0 : ROWS;
        const int interior = nrows == ROWS && oy0 - pad_h >= 0 && oy0 + ROWS - 1 + (int32_t)p->kh - 1 - pad_h < in_h;
        for (t = 0; t < ntiles; t++) {
          const int32_t ox0 = 16 * t;
          const __mmask16 out_mask = lane_range(0, out_w - ox0);
          float *yt = yp + (size_t)oy0 * p->out_w + ox0;
          const float *base = xg + (long)(oy0 - pad_h) * in_w + (ox0 - pad_w);
          __m512 acc[ROWS];
          for (r = 0; r < ROWS; r++) {
            acc[r] = first || r >= nrows ? vb : _mm512_maskz_loadu_ps(out_mask, yt + (long)r * out_w);
          }
          if (interior) {
            for (j = 0; j < n; j++) {
              const __mmask16 m = mtab[ekx[j]][t];
              const float *src = base + off[j];
              const __m512 v = _mm512_set1_ps(val[j]);
#pragma GCC unroll 8
              for (r = 0; r < ROWS; r++) {
                acc[r] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, src + (long)r * in_w), acc[r]);
              }
            }
          } else {
            for (j = 0; j < n; j++) {
              const __mmask16 m = mtab[ekx[j]][t];
              const float *src = base + off[j];
              const int32_t iy0 = oy0 - pad_h + eky[j]; /* input row of the tile's first row */
              const __m512 v = _mm512_set1_ps(val[j]);
#pragma GCC unroll 8
              for (r = 0; r < ROWS; r++) {
                /* Rows in the padding (or past the plane) read nothing: an all-false mask. */
                const __mmask16 mr = (uint32_t)(iy0 + r) < (uint32_t)in_h ? m : 0;
                acc[r] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mr, src + (long)r * in_w), acc[r]);
              }
            }
          }
          for (r = 0; r < nrows; r++) {
            __m512 a = acc[r];
            if (last) {
              a = _mm512_min_ps(_mm512_max_ps(a, vlo), vhi);
            }
            _mm512_mask_storeu_ps(yt + (long)r * out_w, out_mask, a);
          }
        }
      }
      first = 0;
    } while (e < end);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_conv2d_rcsr_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 && __AVX512VL__ */
