/*
 * Dense fully connected layer, portable C99: y = clamp(W x + bias), W row-major [rows x cols].
 *
 * Four rows are processed together so each x[c] load feeds four multiply-adds; each row still sums its
 * products in column order into one accumulator that starts from the bias (the same order as the sparse
 * kernel, so a layer gives the same result whichever storage the encoder picked, up to skipped zeros).
 */
#include "prunec_kernels.h"

void prunec_f32_fc_dense__portable(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const size_t cols = w->cols;
  const uint32_t rows = w->rows;
  uint32_t r = 0;
  size_t c;
  for (; r + 4 <= rows; r += 4) {
    const float *w0 = w->values + (size_t)r * cols;
    const float *w1 = w0 + cols;
    const float *w2 = w1 + cols;
    const float *w3 = w2 + cols;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    if (bias != NULL) {
      a0 = bias[r];
      a1 = bias[r + 1];
      a2 = bias[r + 2];
      a3 = bias[r + 3];
    }
    for (c = 0; c < cols; c++) {
      const float xc = x[c];
      a0 += w0[c] * xc;
      a1 += w1[c] * xc;
      a2 += w2[c] * xc;
      a3 += w3[c] * xc;
    }
    y[r] = prunec_clampf(a0, out_min, out_max);
    y[r + 1] = prunec_clampf(a1, out_min, out_max);
    y[r + 2] = prunec_clampf(a2, out_min, out_max);
    y[r + 3] = prunec_clampf(a3, out_min, out_max);
  }
  for (; r < rows; r++) {
    const float *wr = w->values + (size_t)r * cols;
    float acc = bias != NULL ? bias[r] : 0.0f;
    for (c = 0; c < cols; c++) {
      acc += wr[c] * x[c];
    }
    y[r] = prunec_clampf(acc, out_min, out_max);
  }
}
