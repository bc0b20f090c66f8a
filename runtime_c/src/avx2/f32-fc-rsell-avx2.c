/*
 * Sparse fully connected layer over the relative-indexed sliced layout (prunec_rsell_f32, docs/FORMAT.md "Sliced fc
 * layers"), x86-64 AVX2 + FMA. Twin of prunec_f32_fc_rsell__portable (same result up to fp32 summation order), and of
 * the AVX-512 kernel with each 16-lane step taken as two 8-lane halves: per half one 8-byte load of codes widened and
 * added to the lanes' running sums t, one 8-lane gather of x at base x + j, one FMA. On this project's Intel Xeon
 * (Golden Cove class cores, as in Alder Lake / Raptor Lake P-cores, which lack AVX-512) the gathers deliver elements
 * at the rate of the AVX-512 kernel's (4096x4096 at 10 %: 362 against 351 us in one C loop), 2.2-2.5x faster than the
 * AVX2 relative-indexed CSR kernel (793 us; LeNet-300-100 fc1's shape 4.2 against 9.8 us): for x86 machines without
 * AVX-512 this is the layout of every sparse fc layer (`prunec build`, build.rsell_allowed: Intel CPUs whose gathers
 * are not slowed by the Gather Data Sampling mitigation).
 * Lanes end in y[perm[...]] one by one (AVX2 has no scatter): bias, clamp, store.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX2
#include <immintrin.h>

#include "prunec_kernels.h"

/* the two halves of the step at slot offset o, gather base xj: lanes 0-7 into (tl, acc_l), 8-15 into (th, acc_h) */
#define RSELL_STEP2(al, ah, o, xj)                                                                           \
  do {                                                                                                       \
    tl = _mm256_add_epi32(tl, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(index + (o))))); \
    th = _mm256_add_epi32(th, _mm256_cvtepu8_epi32(                                                          \
                                  _mm_loadl_epi64((const __m128i *)(const void *)(index + (o) + 8))));       \
    al = _mm256_fmadd_ps(_mm256_loadu_ps(values + (o)), _mm256_i32gather_ps((xj), tl, 4), al);              \
    ah = _mm256_fmadd_ps(_mm256_loadu_ps(values + (o) + 8), _mm256_i32gather_ps((xj), th, 4), ah);          \
  } while (0)

void prunec_f32_fc_rsell__avx2(const prunec_rsell_f32 *w, const float *bias, const float *x, float *y,
                               float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_RSELL_ROWS - 1u) / PRUNEC_RSELL_ROWS;
  const uint8_t *index = w->index;
  const float *values = w->values;
  uint32_t s;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_RSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_RSELL_ROWS ? w->rows - r0 : PRUNEC_RSELL_ROWS;
    const uint32_t k = w->steps[s];
    const float *xj = x;
    __m256i tl = _mm256_setzero_si256(), th = _mm256_setzero_si256();
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sum[PRUNEC_RSELL_ROWS];
    uint32_t j = 0, l;
    for (; j + 2u <= k; j += 2u, index += 32, values += 32, xj += 2) {
      RSELL_STEP2(a0, a1, 0, xj);
      RSELL_STEP2(a2, a3, 16, xj + 1);
    }
    if (j < k) {
      RSELL_STEP2(a0, a1, 0, xj);
      index += 16;
      values += 16;
    }
    _mm256_storeu_ps(sum, _mm256_add_ps(a0, a2));
    _mm256_storeu_ps(sum + 8, _mm256_add_ps(a1, a3));
    for (l = 0; l < n; l++) {
      const uint32_t r = w->perm[r0 + l];
      y[r] = prunec_clampf(sum[l] + (bias != NULL ? bias[r] : 0.0f), out_min, out_max);
    }
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rsell_avx2_unavailable;
#endif /* PRUNEC_HAVE_AVX2 */
