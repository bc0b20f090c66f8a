/*
 * Dense fully connected layer for Armv8.1-M Helium (MVE-F): y = clamp(W x + bias), W row-major.
 * Four rows at a time share each 4-float load of x; the last columns are tail-predicated (VCTP), so
 * nothing is read past a row; each row's 4 lanes are summed at the end. Twin of the portable kernel.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include "prunec_kernels.h"

static inline float prunec_mve_dense_hsum(float32x4_t v) {
  return (vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1)) + (vgetq_lane_f32(v, 2) + vgetq_lane_f32(v, 3));
}

static inline float prunec_mve_dense_clamp(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

void prunec_f32_fc_dense__mve(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  const uint32_t cols = w->cols;
  const uint32_t rows = w->rows;
  uint32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *w0 = w->values + (size_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    uint32_t c;
    for (c = 0; c < cols; c += 4) {
      const mve_pred16_t p = vctp32q(cols - c);
      const float32x4_t xv = vldrwq_z_f32(x + c, p);
      a0 = vfmaq_f32(a0, vldrwq_z_f32(w0 + c, p), xv);
      a1 = vfmaq_f32(a1, vldrwq_z_f32(w1 + c, p), xv);
      a2 = vfmaq_f32(a2, vldrwq_z_f32(w2 + c, p), xv);
      a3 = vfmaq_f32(a3, vldrwq_z_f32(w3 + c, p), xv);
    }
    y[r] = prunec_mve_dense_clamp(prunec_mve_dense_hsum(a0) + (bias ? bias[r] : 0.0f), out_min, out_max);
    y[r + 1] = prunec_mve_dense_clamp(prunec_mve_dense_hsum(a1) + (bias ? bias[r + 1] : 0.0f), out_min, out_max);
    y[r + 2] = prunec_mve_dense_clamp(prunec_mve_dense_hsum(a2) + (bias ? bias[r + 2] : 0.0f), out_min, out_max);
    y[r + 3] = prunec_mve_dense_clamp(prunec_mve_dense_hsum(a3) + (bias ? bias[r + 3] : 0.0f), out_min, out_max);
  }
  for (; r < rows; r++) {
    const float *wr = w->values + (size_t)r * cols;
    float32x4_t a0 = vdupq_n_f32(0.0f);
    uint32_t c;
    for (c = 0; c < cols; c += 4) {
      const mve_pred16_t p = vctp32q(cols - c);
      a0 = vfmaq_f32(a0, vldrwq_z_f32(wr + c, p), vldrwq_z_f32(x + c, p));
    }
    y[r] = prunec_mve_dense_clamp(prunec_mve_dense_hsum(a0) + (bias ? bias[r] : 0.0f), out_min, out_max);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
