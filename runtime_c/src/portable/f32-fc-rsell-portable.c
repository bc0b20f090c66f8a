/*
 * Sparse fully connected layer over the relative-indexed sliced layout (prunec_rsell_f32, docs/FORMAT.md "Sliced fc
 * layers"), portable C99: y = clamp(W x + bias). The reference the AVX-512 kernel is compared against and what a
 * build runs where that kernel is not compiled in.
 *
 * For each slice of 16 rows (lane l: row perm[16s + l]), 16 accumulators start from the biases and 16 columns from
 * -1; step j moves lane l's column on by index[slot] + 1 and adds values[slot] * x[column]; lane l's sum goes to
 * y[perm[16s + l]]. Each row is summed in column order, fillers included (value 0 times x at a column the row has
 * no weight in), like the relative-indexed CSR kernels; the AVX-512 kernel sums in another order (results agree to
 * fp32 rounding). The encoder keeps every column below cols, so no read passes x[cols - 1].
 */
#include "prunec_kernels.h"

void prunec_f32_fc_rsell__portable(const prunec_rsell_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_RSELL_ROWS - 1u) / PRUNEC_RSELL_ROWS;
  const uint8_t *index = w->index;
  const float *values = w->values;
  uint32_t s, j, l;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_RSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_RSELL_ROWS ? w->rows - r0 : PRUNEC_RSELL_ROWS;
    const uint16_t *perm = w->perm + r0;
    const uint32_t k = w->steps[s];
    float acc[PRUNEC_RSELL_ROWS];
    uint32_t col[PRUNEC_RSELL_ROWS];
    for (l = 0; l < PRUNEC_RSELL_ROWS; l++) {
      acc[l] = bias != NULL && l < n ? bias[perm[l]] : 0.0f;
      col[l] = 0xFFFFFFFFu; /* -1: the first entry's code is its column */
    }
    for (j = 0; j < k; j++, index += PRUNEC_RSELL_ROWS, values += PRUNEC_RSELL_ROWS) {
      for (l = 0; l < PRUNEC_RSELL_ROWS; l++) {
        col[l] += (uint32_t)index[l] + 1u;
        acc[l] += values[l] * x[col[l]];
      }
    }
    for (l = 0; l < n; l++) {
      y[perm[l]] = prunec_clampf(acc[l], out_min, out_max);
    }
  }
}
