/*
 * Sparse fully connected layer over the blocked sliced layout (prunec_bsell_f32, docs/FORMAT.md "Blocked fc
 * layers"), x86-64 AVX-512 (F, VL, BW). Twin of prunec_f32_fc_bsell__portable (same result up to fp32 summation
 * order).
 *
 * One slice of 16 rows at a time, its 16 sums in the lanes of four accumulators (steps taken four at a time:
 * four FMA chains, so the FMA latency (4 cycles) does not bound the step rate; with two it did, 2 cycles per step). Per column block: its 32 inputs in two registers (the last block loaded masked, so nothing past
 * x[cols - 1] is read), then per step one 16-byte load of the slot indices widened to 32-bit lanes, one
 * two-register permute (vpermt2ps) that gives lane l the input of its column, one 64-byte load of the weights
 * and an FMA: 16 slots for about 4 instructions and no gather. The slice's biases gathered by perm, clamp, and a
 * scatter to y[perm[...]] end the slice (the rows are stored by nonzero count, not in order).
 * On this project's Intel Xeon (docs/BENCHMARKS.md, "Twelfth session"): LeNet-300-100 fc1's shape at 8 % (300x784,
 * random mask) 2.5 us against 8.8 us for the relative-indexed CSR kernel (its gather path there), although the slots
 * are ~2.3x the nonzeros. The bound is the bytes read from L2: the real LeNet-300-100 fc1 (2,695 steps, 216 KB of
 * slots) takes 1.77 us in a C loop, against 1.47 us for 216 KB at this core's measured L2 read rate (147 GB/s); 32-bit
 * indices (no widening, no port-5 work for them, 8 bytes per slot) ran slower, 2.26 us, and four steps' index bytes
 * in one load with shifts instead of the widening the same, 1.82 us (docs/BENCHMARKS.md, "Thirteenth session").
 * Blocks sorted by step count (predictable loop exits) changed nothing, and a flattened loop with a block number per
 * step (two more loads per step) was slower.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512 && defined(__AVX512VL__) && defined(__AVX512BW__)
#include <immintrin.h>

#include "prunec_avx512_util.h"
#include "prunec_kernels.h"

/* acc + the step at slot offset o: weights times the inputs their indices pick from the block (xl, xh) */
#define BSELL_STEP(acc, o)                                                                                   \
  _mm512_fmadd_ps(_mm512_loadu_ps(values + (o)),                                                             \
                  _mm512_permutex2var_ps(                                                                    \
                      xl, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(index + (o)))), xh), \
                  acc)

void prunec_f32_fc_bsell__avx512x4(const prunec_bsell_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_BSELL_ROWS - 1u) / PRUNEC_BSELL_ROWS;
  const uint32_t blocks = (w->cols + PRUNEC_BSELL_COLS - 1u) / PRUNEC_BSELL_COLS;
  const uint32_t tail = w->cols - (blocks > 0u ? blocks - 1u : 0u) * PRUNEC_BSELL_COLS; /* columns of the last block */
  const __mmask16 tlo = (__mmask16)(tail >= 16u ? 0xFFFFu : (1u << tail) - 1u);
  const __mmask16 thi = (__mmask16)(tail >= 32u ? 0xFFFFu : tail > 16u ? (1u << (tail - 16u)) - 1u : 0u);
  const __m512 lo = _mm512_set1_ps(out_min), hi = _mm512_set1_ps(out_max);
  const uint8_t *steps = w->steps, *index = w->index;
  const float *values = w->values;
  uint32_t s, b;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_BSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_BSELL_ROWS ? w->rows - r0 : PRUNEC_BSELL_ROWS;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    __m512 sum;
    for (b = 0; b < blocks; b++) {
      const float *xb = x + (size_t)b * PRUNEC_BSELL_COLS;
      const uint32_t k = *steps++;
      uint32_t j = 0;
      __m512 xl, xh;
      if (k == 0u) {
        continue;
      }
      if (b + 1u < blocks) {
        xl = _mm512_loadu_ps(xb);
        xh = _mm512_loadu_ps(xb + 16);
      } else {
        xl = _mm512_maskz_loadu_ps(tlo, xb);
        xh = _mm512_maskz_loadu_ps(thi, xb + 16);
      }
      for (; j + 4u <= k; j += 4u, index += 64, values += 64) {
        a0 = BSELL_STEP(a0, 0);
        a1 = BSELL_STEP(a1, 16);
        a2 = BSELL_STEP(a2, 32);
        a3 = BSELL_STEP(a3, 48);
      }
      if (j + 2u <= k) {
        a0 = BSELL_STEP(a0, 0);
        a1 = BSELL_STEP(a1, 16);
        j += 2u;
        index += 32;
        values += 32;
      }
      if (j < k) {
        a2 = BSELL_STEP(a2, 0);
        index += 16;
        values += 16;
      }
    }
    sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    prunec_avx512_slice_store(w->perm + r0, n, sum, bias, lo, hi, y);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_bsell_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 && __AVX512VL__ && __AVX512BW__ */
