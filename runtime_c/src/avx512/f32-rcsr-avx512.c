/*
 * Sparse fc and conv2d over relative-indexed CSR, x86-64 AVX-512 (F, VL, BW, DQ). Twins of the portable
 * kernels. Same algorithms as the AVX2 variants (see src/avx2/f32-rcsr-avx2.c) at 16 lanes:
 *
 * fc: codes decoded into absolute columns (256 at a time, 16-lane SIMD prefix sums for 8/16-bit codes; other
 * widths than 4/8/16 go to the portable fc kernel, the conv kernel reads them with one 32-bit load per code);
 * per group of 16 entries, accumulator j += values * broadcast(x[col_j]) with the broadcast folded into
 * the FMA's memory operand; the row is the sum of lane j of accumulator j (mask blends, one reduction).
 *
 * conv2d: across output pixels, 16 at a time; unmasked loads where every tap is inside the input with
 * stride 1, otherwise masked gathers and masked stores (masked-off lanes are not read or written).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512
#include <immintrin.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_AVX512_CHUNK 256u

static inline __m512i prunec_avx512_prefix_sum_epi32(__m512i v) {
  const __m512i z = _mm512_setzero_si512();
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 15));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 14));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 12));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 8));
  return v;
}


static int32_t prunec_avx512_decode_cols(const prunec_rcsr_f32 *w, uint32_t e, uint32_t n, int32_t last,
                                         int32_t *cols) {
  const uint8_t *index = w->index;
  uint32_t i = 0;
  if (w->index_bits == 8) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i base = _mm512_set1_epi32(last);
    for (; i + 16 <= n; i += 16) {
      const __m512i g = _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(index + e + i))), one);
      const __m512i c = _mm512_add_epi32(prunec_avx512_prefix_sum_epi32(g), base);
      _mm512_storeu_si512((void *)(cols + i), c);
      base = _mm512_permutexvar_epi32(_mm512_set1_epi32(15), c);
    }
    last = i > 0 ? cols[i - 1] : last;
    for (; i < n; i++) {
      last += (int32_t)index[e + i] + 1;
      cols[i] = last;
    }
  } else if (w->index_bits == 16) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i base = _mm512_set1_epi32(last);
    for (; i + 16 <= n; i += 16) {
      const __m512i g = _mm512_add_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(index + 2u * (e + i)))), one);
      const __m512i c = _mm512_add_epi32(prunec_avx512_prefix_sum_epi32(g), base);
      _mm512_storeu_si512((void *)(cols + i), c);
      base = _mm512_permutexvar_epi32(_mm512_set1_epi32(15), c);
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

#define PRUNEC_AVX512_FMA(j) a##j = _mm512_fmadd_ps(vv, _mm512_set1_ps(x[cols[i + j]]), a##j)

void prunec_f32_fc_rcsr__avx512(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                float out_min, float out_max) {
  int32_t cols[PRUNEC_AVX512_CHUNK];
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
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m512 a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
    const uint32_t end = row_ptr[r + 1];
    int32_t last = -1;
    uint32_t e;
    for (e = row_ptr[r]; e < end; e += PRUNEC_AVX512_CHUNK) {
      const uint32_t n = end - e < PRUNEC_AVX512_CHUNK ? end - e : PRUNEC_AVX512_CHUNK;
      const float *v = values + e;
      uint32_t i = 0;
      last = prunec_avx512_decode_cols(w, e, n, last, cols);
      for (; i + 16 <= n; i += 16) {
        const __m512 vv = _mm512_loadu_ps(v + i);
        PRUNEC_AVX512_FMA(0); PRUNEC_AVX512_FMA(1); PRUNEC_AVX512_FMA(2); PRUNEC_AVX512_FMA(3);
        PRUNEC_AVX512_FMA(4); PRUNEC_AVX512_FMA(5); PRUNEC_AVX512_FMA(6); PRUNEC_AVX512_FMA(7);
        PRUNEC_AVX512_FMA(8); PRUNEC_AVX512_FMA(9); PRUNEC_AVX512_FMA(10); PRUNEC_AVX512_FMA(11);
        PRUNEC_AVX512_FMA(12); PRUNEC_AVX512_FMA(13); PRUNEC_AVX512_FMA(14); PRUNEC_AVX512_FMA(15);
      }
      if (i < n) {
        const uint32_t m = n - i;
        const __m512 vv = _mm512_maskz_loadu_ps((__mmask16)((1u << m) - 1u), v + i);
        switch (m) {
          case 15: PRUNEC_AVX512_FMA(14); /* fall through */
          case 14: PRUNEC_AVX512_FMA(13); /* fall through */
          case 13: PRUNEC_AVX512_FMA(12); /* fall through */
          case 12: PRUNEC_AVX512_FMA(11); /* fall through */
          case 11: PRUNEC_AVX512_FMA(10); /* fall through */
          case 10: PRUNEC_AVX512_FMA(9); /* fall through */
          case 9: PRUNEC_AVX512_FMA(8); /* fall through */
          case 8: PRUNEC_AVX512_FMA(7); /* fall through */
          case 7: PRUNEC_AVX512_FMA(6); /* fall through */
          case 6: PRUNEC_AVX512_FMA(5); /* fall through */
          case 5: PRUNEC_AVX512_FMA(4); /* fall through */
          case 4: PRUNEC_AVX512_FMA(3); /* fall through */
          case 3: PRUNEC_AVX512_FMA(2); /* fall through */
          case 2: PRUNEC_AVX512_FMA(1); /* fall through */
          default: PRUNEC_AVX512_FMA(0);
        }
      }
    }
    {
      __m512 d = _mm512_mask_blend_ps(0x0002, a0, a1);
      d = _mm512_mask_blend_ps(0x0004, d, a2);
      d = _mm512_mask_blend_ps(0x0008, d, a3);
      d = _mm512_mask_blend_ps(0x0010, d, a4);
      d = _mm512_mask_blend_ps(0x0020, d, a5);
      d = _mm512_mask_blend_ps(0x0040, d, a6);
      d = _mm512_mask_blend_ps(0x0080, d, a7);
      d = _mm512_mask_blend_ps(0x0100, d, a8);
      d = _mm512_mask_blend_ps(0x0200, d, a9);
      d = _mm512_mask_blend_ps(0x0400, d, a10);
      d = _mm512_mask_blend_ps(0x0800, d, a11);
      d = _mm512_mask_blend_ps(0x1000, d, a12);
      d = _mm512_mask_blend_ps(0x2000, d, a13);
      d = _mm512_mask_blend_ps(0x4000, d, a14);
      d = _mm512_mask_blend_ps(0x8000, d, a15);
      float acc = _mm512_reduce_add_ps(d) + (bias != NULL ? bias[r] : 0.0f);
      acc = acc < out_min ? out_min : acc;
      y[r] = acc > out_max ? out_max : acc;
    }
  }
}

#undef PRUNEC_AVX512_FMA

typedef struct prunec_avx512_taps {
  float w[PRUNEC_AVX512_CHUNK];
  int32_t off[PRUNEC_AVX512_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_AVX512_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_AVX512_CHUNK];  /* kx*dil_w */
} prunec_avx512_taps;

static uint32_t prunec_avx512_decode_taps(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, uint32_t e,
                                          uint32_t n, int32_t *last, prunec_avx512_taps *t) {
  int32_t cols[PRUNEC_AVX512_CHUNK];
  uint32_t i, k = 0;
  *last = prunec_avx512_decode_cols(w, e, n, *last, cols);
  for (i = 0; i < n; i++) {
    const float v = w->values[e + i];
    if (v != 0.0f) {
      prunec_conv_set_tap(p, (uint32_t)cols[i], v, k++, t->w, t->off, t->dy, t->dx);
    }
  }
  return k;
}

void prunec_f32_conv2d_rcsr__avx512(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                    const float *x, float *y, float out_min, float out_max) {
  prunec_avx512_taps t;
  const int32_t in_h = (int32_t)p->in_h, in_w = (int32_t)p->in_w;
  const int32_t out_w = (int32_t)p->out_w;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w;
  const int32_t ph = (int32_t)p->pad_h, pw = (int32_t)p->pad_w;
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const int32_t span = (int32_t)((p->kw - 1) * p->dil_w);
  const int32_t ow_lo = pw;
  int32_t ow_hi = in_w - span + pw;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 vmin = _mm512_set1_ps(out_min), vmax = _mm512_set1_ps(out_max);
  uint32_t oc;
  if (prunec_rcsr_bad_bits(w, y, (size_t)p->out_c * out_plane)) {
    return;
  }
  if (ow_hi > out_w) {
    ow_hi = out_w;
  }
  for (oc = 0; oc < p->out_c; oc++) {
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    float *yp = y + (size_t)oc * out_plane;
    const __m512 vb = _mm512_set1_ps(bias != NULL ? bias[oc] : 0.0f);
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    int32_t last = -1;
    int first = 1;
    do {
      const uint32_t n = end - e < PRUNEC_AVX512_CHUNK ? end - e : PRUNEC_AVX512_CHUNK;
      const uint32_t nt = prunec_avx512_decode_taps(p, w, e, n, &last, &t);
      const int final = e + n >= end;
      int32_t oh;
      for (oh = 0; oh < (int32_t)p->out_h; oh++) {
        const int32_t iy0 = oh * sh - ph;
        const ptrdiff_t rbase = (ptrdiff_t)iy0 * in_w - pw; /* xg[rbase + off[k] + ow]: tap k's input (stride 1) */
        float *yr = yp + (size_t)oh * (size_t)out_w;
        int32_t ow = 0;
        while (ow < out_w) {
          uint32_t k;
          if (sw == 1 && ow >= ow_lo && ow + 16 <= ow_hi) {
            __m512 acc = first ? vb : _mm512_loadu_ps(yr + ow);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(t.w[k]), _mm512_loadu_ps(xg + (rbase + t.off[k] + ow)), acc);
              }
            }
            if (final) {
              acc = _mm512_min_ps(vmax, _mm512_max_ps(vmin, acc));
            }
            _mm512_storeu_ps(yr + ow, acc);
          } else {
            const __m512i ox = _mm512_add_epi32(_mm512_set1_epi32(ow), lane);
            const __mmask16 out_ok = _mm512_cmplt_epi32_mask(ox, _mm512_set1_epi32(out_w));
            const __m512i ix = _mm512_sub_epi32(_mm512_mullo_epi32(ox, _mm512_set1_epi32(sw)), _mm512_set1_epi32(pw));
            __m512 acc = first ? vb : _mm512_maskz_loadu_ps(out_ok, yr + ow);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                const __m512i c = _mm512_add_epi32(ix, _mm512_set1_epi32(t.dx[k]));
                const __mmask16 ok = out_ok & _mm512_cmpge_epi32_mask(c, _mm512_setzero_si512()) &
                                     _mm512_cmplt_epi32_mask(c, _mm512_set1_epi32(in_w));
                const float *xr = xg + (t.off[k] - t.dx[k] + (ptrdiff_t)(iy - t.dy[k]) * in_w); /* input row iy */
                /* Unoptimised, GCC's gather intrinsic is a macro passing the mask to a builtin that takes a signed
                 * short (-Wsign-conversion under -Wconversion -Werror); no code changes with the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
                const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, c, xr, 4);
#pragma GCC diagnostic pop
                acc = _mm512_fmadd_ps(_mm512_set1_ps(t.w[k]), xv, acc);
              }
            }
            if (final) {
              acc = _mm512_min_ps(vmax, _mm512_max_ps(vmin, acc));
            }
            _mm512_mask_storeu_ps(yr + ow, out_ok, acc);
          }
          ow += 16;
        }
      }
      first = 0;
      e += n;
    } while (e < end);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_avx512_unavailable;
#endif /* PRUNEC_HAVE_AVX512 */
