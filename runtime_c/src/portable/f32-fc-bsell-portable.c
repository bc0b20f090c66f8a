/*
 * Sparse fully connected layer over the blocked sliced layout (prunec_bsell_f32, docs/FORMAT.md "Blocked fc
 * layers"), portable C99: y = clamp(W x + bias). The reference the AVX-512 kernel is compared against and what a
 * build runs where that kernel is not compiled in.
 *
 * For each slice of 16 rows (lane l: row perm[16s + l]), 16 accumulators start from the biases; for each column
 * block b, step j adds, in lane l, values[slot] * x[32b + index[slot]]; lane l's sum goes to y[perm[16s + l]]. Each row is thus summed in column order (blocks ascending, columns
 * ascending within a block), fillers included (value 0 times x at the block's first column), like the
 * relative-indexed CSR kernels; the AVX-512 kernel sums in another order (results agree to fp32 rounding).
 * A filler reads x[32b] only: every index is inside the block and block b holds column 32b, so no read passes
 * x[cols - 1].
 */
#include "prunec_kernels.h"

void prunec_f32_fc_bsell__portable(const prunec_bsell_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_BSELL_ROWS - 1u) / PRUNEC_BSELL_ROWS;
  const uint32_t blocks = (w->cols + PRUNEC_BSELL_COLS - 1u) / PRUNEC_BSELL_COLS;
  const uint8_t *steps = w->steps, *index = w->index;
  const float *values = w->values;
  uint32_t s, b, j, l;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_BSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_BSELL_ROWS ? w->rows - r0 : PRUNEC_BSELL_ROWS;
    const uint16_t *perm = w->perm + r0;
    float acc[PRUNEC_BSELL_ROWS];
    for (l = 0; l < PRUNEC_BSELL_ROWS; l++) {
      acc[l] = bias != NULL && l < n ? bias[perm[l]] : 0.0f;
    }
    for (b = 0; b < blocks; b++) {
      const float *xb = x + (size_t)b * PRUNEC_BSELL_COLS;
      const uint32_t k = *steps++;
      for (j = 0; j < k; j++, index += PRUNEC_BSELL_ROWS, values += PRUNEC_BSELL_ROWS) {
        for (l = 0; l < PRUNEC_BSELL_ROWS; l++) {
          acc[l] += values[l] * xb[index[l]];
        }
      }
    }
    for (l = 0; l < n; l++) {
      y[perm[l]] = prunec_clampf(acc[l], out_min, out_max);
    }
  }
}
