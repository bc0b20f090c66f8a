/*
 * Sparse fully connected layer over absolute-indexed CSR (prunec_acsr_f32, docs/FORMAT.md "Absolute-indexed fc
 * layers"), portable C99: y = clamp(W x + bias). The reference the Cortex-M kernel is compared against and what a
 * build runs on the other targets. Each row is summed in entry order (columns ascending, fillers last: value 0 times
 * the input of the row's last nonzero) into one accumulator starting from the bias.
 */
#include "prunec_kernels.h"

void prunec_f32_fc_acsr__portable(const prunec_acsr_f32 *w, const float *bias, const float *x, float *y,
                                  float out_min, float out_max) {
  const float *values = w->values;
  const uint32_t *columns = w->columns;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r, e;
  for (r = 0; r < w->rows; r++) {
    float acc = bias != NULL ? bias[r] : 0.0f;
    for (e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
      acc += values[e] * x[columns[e]];
    }
    y[r] = prunec_clampf(acc, out_min, out_max);
  }
}
