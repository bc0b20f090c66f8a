/*
 * Sparse fully connected layer over the relative-indexed sliced layout (prunec_rsell_f32, docs/FORMAT.md "Sliced fc
 * layers"), x86-64 AVX-512 (F, VL, BW). Twin of prunec_f32_fc_rsell__portable (same result up to fp32 summation
 * order).
 *
 * One slice of 16 rows at a time, their 16 sums in the lanes of two accumulators. Lane l's column after step j is
 * j + t_l, where t_l is the sum of the lane's codes so far (each entry adds code + 1): so per step one 16-byte load
 * of the codes widened to 32-bit lanes and added to t, one 16-lane gather of x at base x + j with indices t, one
 * 64-byte load of the weights and an FMA; no prefix sum across lanes, no per-row tail and no reduction, unlike the
 * relative-indexed CSR kernel's gather path. The slice's biases gathered by perm, clamp, and a scatter to
 * y[perm[...]] end the slice (the rows are stored by entry count, not in order).
 * The bound is the gather: on this project's Intel Xeon (docs/BENCHMARKS.md, "Thirteenth session") a 16-lane gather
 * from L1 issues every ~11 cycles, 0.26 ns per entry, and the 4096x4096 layer at 10 % runs at ~0.26 ns per nonzero
 * (the relative-indexed CSR kernel's gather path: ~0.35-0.43). CPUs with slow gathers (AMD Zen; Intel cores with the
 * Gather Data Sampling microcode mitigation) are better served by that kernel's broadcast path: `prunec build`
 * chooses this layout only where the target and the build machine say so (build.rsell_allowed). The AVX2 twin
 * (src/avx2/f32-fc-rsell-avx2.c) runs as fast on the same cores.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512 && defined(__AVX512VL__) && defined(__AVX512BW__)
#include <immintrin.h>

#include "prunec_avx512_util.h"
#include "prunec_kernels.h"

/* acc + the step at slot offset o, its gather base xj: t moves on by the codes, then x[xj + t] times the weights */
#define RSELL_STEP(acc, o, xj)                                                                            \
  (t = _mm512_add_epi32(t, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(index + (o))))), \
   _mm512_fmadd_ps(_mm512_loadu_ps(values + (o)), _mm512_i32gather_ps(t, (xj), 4), acc))

/* Unoptimised, GCC's gather intrinsic is a macro that passes the scale through a builtin taking a signed type
 * (-Wsign-conversion under -Wconversion -Werror at -O0); no code changes with the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
void prunec_f32_fc_rsell__avx512x4(const prunec_rsell_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_RSELL_ROWS - 1u) / PRUNEC_RSELL_ROWS;
  const __m512 lo = _mm512_set1_ps(out_min), hi = _mm512_set1_ps(out_max);
  const uint8_t *index = w->index;
  const float *values = w->values; /* 64-byte aligned by the build and the blob (docs/FORMAT.md) */
  uint32_t s;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_RSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_RSELL_ROWS ? w->rows - r0 : PRUNEC_RSELL_ROWS;
    const uint32_t k = w->steps[s];
    const float *xj = x;
    __m512i t = _mm512_setzero_si512();
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    uint32_t j = 0;
    for (; j + 4u <= k; j += 4u, index += 64, values += 64, xj += 4) {
      a0 = RSELL_STEP(a0, 0, xj);
      a1 = RSELL_STEP(a1, 16, xj + 1);
      a0 = RSELL_STEP(a0, 32, xj + 2);
      a1 = RSELL_STEP(a1, 48, xj + 3);
    }
    for (; j < k; j++, index += 16, values += 16, xj++) {
      a0 = RSELL_STEP(a0, 0, xj);
    }
    prunec_avx512_slice_store(w->perm + r0, n, _mm512_add_ps(a0, a1), bias, lo, hi, y);
  }
}
#pragma GCC diagnostic pop

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rsell_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 && __AVX512VL__ && __AVX512BW__ */
