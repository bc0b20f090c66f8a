/*
 * Dense fully connected layer, x86-64 AVX2 + FMA: y = clamp(W x + bias), W row-major [rows x cols].
 * Four rows at a time share each 8-float load of x; two accumulators per row hide the FMA latency; the
 * last partial group of columns uses masked loads (nothing is read past a row). Twin of the portable kernel.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX2
#include <immintrin.h>

#include "prunec_kernels.h"

static inline float prunec_avx2_dense_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void prunec_f32_fc_dense__avx2(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                               float out_min, float out_max) {
  const size_t cols = w->cols;
  const uint32_t rows = w->rows;
  const size_t tail = cols & 7u;
  const __m256i tmask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  uint32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *w0 = w->values + (size_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), x0, a3);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c + 8), x1, b0);
      b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c + 8), x1, b1);
      b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c + 8), x1, b2);
      b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c + 8), x1, b3);
    }
    for (; c + 8 <= cols; c += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + c);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), x0, a3);
    }
    if (tail) {
      const __m256 x0 = _mm256_maskload_ps(x + c, tmask);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + c, tmask), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w1 + c, tmask), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(w2 + c, tmask), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_maskload_ps(w3 + c, tmask), x0, a3);
    }
    y[r] = prunec_clampf(prunec_avx2_dense_hsum(_mm256_add_ps(a0, b0)) + (bias ? bias[r] : 0.0f), out_min, out_max);
    y[r + 1] = prunec_clampf(prunec_avx2_dense_hsum(_mm256_add_ps(a1, b1)) + (bias ? bias[r + 1] : 0.0f), out_min, out_max);
    y[r + 2] = prunec_clampf(prunec_avx2_dense_hsum(_mm256_add_ps(a2, b2)) + (bias ? bias[r + 2] : 0.0f), out_min, out_max);
    y[r + 3] = prunec_clampf(prunec_avx2_dense_hsum(_mm256_add_ps(a3, b3)) + (bias ? bias[r + 3] : 0.0f), out_min, out_max);
  }
  for (; r < rows; r++) {
    const float *wr = w->values + (size_t)r * cols;
    __m256 a0 = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c), _mm256_loadu_ps(x + c), a0);
    }
    if (tail) {
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(wr + c, tmask), _mm256_maskload_ps(x + c, tmask), a0);
    }
    y[r] = prunec_clampf(prunec_avx2_dense_hsum(a0) + (bias ? bias[r] : 0.0f), out_min, out_max);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_avx2_unavailable;
#endif /* PRUNEC_HAVE_AVX2 */
