/*
 * Sparse fully connected layer over the windowed sliced layout (prunec_wsell_f32, docs/FORMAT.md "Windowed fc
 * layers"), portable C99: y = clamp(W x + bias). The reference the NEON kernel is compared against and what a build
 * runs where that kernel is not compiled in (Armv7-A: its table lookup reaches 32 bytes, not a 64-byte window).
 *
 * For each slice of 4 rows (lane l: row perm[4s + l]), 4 accumulators start from the biases; the window starts at
 * x + start[s]; step t adds values[4t + l] * window[index[16t + 4l] / 4] to lane l (the first of the slot's 4 table
 * bytes names its float) and moves the window on by advance[t] bytes. Each row is summed in column order, fillers
 * included (value 0 times an input of the window). The encoder keeps every window inside x.
 */
#include "prunec_kernels.h"

void prunec_f32_fc_wsell__portable(const prunec_wsell_f32 *w, const float *bias, const float *x, float *y,
                                   float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_WSELL_ROWS - 1u) / PRUNEC_WSELL_ROWS;
  const uint32_t *advance = w->advance;
  const uint8_t *index = w->index;
  const float *values = w->values;
  uint32_t s, j, l;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_WSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_WSELL_ROWS ? w->rows - r0 : PRUNEC_WSELL_ROWS;
    const uint16_t *perm = w->perm + r0;
    const uint32_t k = w->steps[s];
    const float *win = x + w->start[s];
    float acc[PRUNEC_WSELL_ROWS];
    for (l = 0; l < PRUNEC_WSELL_ROWS; l++) {
      acc[l] = bias != NULL && l < n ? bias[perm[l]] : 0.0f;
    }
    for (j = 0; j < k; j++, index += 4u * PRUNEC_WSELL_ROWS, values += PRUNEC_WSELL_ROWS) {
      for (l = 0; l < PRUNEC_WSELL_ROWS; l++) {
        acc[l] += values[l] * win[index[4u * l] / 4u];
      }
      win += *advance++ / sizeof(float);
    }
    for (l = 0; l < n; l++) {
      y[perm[l]] = prunec_clampf(acc[l], out_min, out_max);
    }
  }
}
