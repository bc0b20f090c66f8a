/*
 * 2-D max pooling, x86-64 AVX-512 (F), NCHW, batch 1. Twin of prunec_f32_maxpool2d__portable (exact: max is
 * exact, and NaN propagates as in PyTorch).
 *
 * Fast path, the 2x2 window with stride 2 and no padding whose windows all lie inside the input (LeNet-5,
 * VGG-16): per output row, 16 outputs at a time, the two input rows' 32 cells are maxed elementwise, then
 * even and odd lanes are paired by two permutes and maxed again (masked loads and stores for the tail).
 * Every other geometry takes the portable algorithm (window clipped to the input, padding never wins).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512
#include <immintrin.h>
#include <math.h>

#include "prunec_kernels.h"

/* max(a, b) with NaN propagation: a + b is NaN where either is. */
static inline __m512 max_nan(__m512 a, __m512 b) {
  const __mmask16 unordered = _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
  return _mm512_mask_blend_ps(unordered, _mm512_max_ps(a, b), _mm512_add_ps(a, b));
}

static void clip(long start, uint32_t k, uint32_t n, uint32_t *lo, uint32_t *hi) {
  long l = start < 0 ? 0 : start;
  long h = start + (long)k;
  if (h > (long)n) {
    h = (long)n;
  }
  if (h < l) {
    h = l;
  }
  *lo = (uint32_t)l;
  *hi = (uint32_t)h;
}

static void maxpool_generic(const prunec_pool2d_params *p, const float *x, float *y) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  uint32_t c, oy, ox, iy, ix;
  for (c = 0; c < p->channels; c++) {
    const float *xc = x + (size_t)c * in_plane;
    for (oy = 0; oy < p->out_h; oy++) {
      uint32_t y0, y1;
      clip((long)oy * (long)p->stride_h - (long)p->pad_h, p->kh, p->in_h, &y0, &y1);
      for (ox = 0; ox < p->out_w; ox++) {
        uint32_t x0, x1;
        float m = -INFINITY;
        clip((long)ox * (long)p->stride_w - (long)p->pad_w, p->kw, p->in_w, &x0, &x1);
        for (iy = y0; iy < y1; iy++) {
          const float *xr = xc + (size_t)iy * p->in_w;
          for (ix = x0; ix < x1; ix++) {
            const float v = xr[ix];
            if (v > m || v != v) {
              m = v;
            }
          }
        }
        *y++ = m;
      }
    }
  }
}

void prunec_f32_maxpool2d__avx512x4(const prunec_pool2d_params *p, const float *x, float *y) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  uint32_t c, oy, ox;
  if (p->kh != 2 || p->kw != 2 || p->stride_h != 2 || p->stride_w != 2 || p->pad_h != 0 || p->pad_w != 0 ||
      2u * p->out_h > p->in_h || 2u * p->out_w > p->in_w) {
    maxpool_generic(p, x, y);
    return;
  }
  for (c = 0; c < p->channels; c++) {
    const float *xc = x + (size_t)c * in_plane;
    for (oy = 0; oy < p->out_h; oy++) {
      const float *r0 = xc + (size_t)(2u * oy) * p->in_w;
      const float *r1 = r0 + p->in_w;
      for (ox = 0; ox < p->out_w; ox += 16) {
        const uint32_t n = p->out_w - ox < 16 ? p->out_w - ox : 16; /* outputs in this block */
        const __mmask16 mlo = (__mmask16)(n >= 8 ? 0xFFFFu : (1u << (2u * n)) - 1u);
        const __mmask16 mhi = (__mmask16)(n <= 8 ? 0u : (n >= 16 ? 0xFFFFu : (1u << (2u * (n - 8))) - 1u));
        const __mmask16 mout = (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
        const __m512 a0 = _mm512_maskz_loadu_ps(mlo, r0 + 2u * ox);
        const __m512 a1 = _mm512_maskz_loadu_ps(mhi, r0 + 2u * ox + 16u);
        const __m512 b0 = _mm512_maskz_loadu_ps(mlo, r1 + 2u * ox);
        const __m512 b1 = _mm512_maskz_loadu_ps(mhi, r1 + 2u * ox + 16u);
        const __m512 v0 = max_nan(a0, b0), v1 = max_nan(a1, b1);
        const __m512 m = max_nan(_mm512_permutex2var_ps(v0, even, v1), _mm512_permutex2var_ps(v0, odd, v1));
        _mm512_mask_storeu_ps(y + ((size_t)c * p->out_h + oy) * p->out_w + ox, mout, m);
      }
    }
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_maxpool2d_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 */
