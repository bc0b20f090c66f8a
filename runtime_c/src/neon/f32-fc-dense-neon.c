/*
 * Dense fully connected layer, Arm NEON with FMA (AArch64, Armv7-A neon-vfpv4): y = clamp(W x + bias).
 * Four rows at a time share each 4-float load of x; each row's 4 lane sums are added horizontally at the
 * end, then a scalar column tail. Twin of the portable kernel.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include <arm_neon.h>

#include "prunec_kernels.h"

#if PRUNEC_HAVE_AARCH64
static inline float prunec_neon_dense_hsum(float32x4_t v) { return vaddvq_f32(v); }
#else
static inline float prunec_neon_dense_hsum(float32x4_t v) {
  float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
  return vget_lane_f32(vpadd_f32(s, s), 0);
}
#endif

void prunec_f32_fc_dense__neon(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                               float out_min, float out_max) {
  const size_t cols = w->cols;
  const uint32_t rows = w->rows;
  uint32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *w0 = w->values + (size_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float s0, s1, s2, s3;
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      const float32x4_t xv = vld1q_f32(x + c);
      a0 = vfmaq_f32(a0, vld1q_f32(w0 + c), xv);
      a1 = vfmaq_f32(a1, vld1q_f32(w1 + c), xv);
      a2 = vfmaq_f32(a2, vld1q_f32(w2 + c), xv);
      a3 = vfmaq_f32(a3, vld1q_f32(w3 + c), xv);
    }
    s0 = prunec_neon_dense_hsum(a0);
    s1 = prunec_neon_dense_hsum(a1);
    s2 = prunec_neon_dense_hsum(a2);
    s3 = prunec_neon_dense_hsum(a3);
    for (; c < cols; c++) {
      s0 += w0[c] * x[c];
      s1 += w1[c] * x[c];
      s2 += w2[c] * x[c];
      s3 += w3[c] * x[c];
    }
    if (bias != NULL) {
      s0 += bias[r];
      s1 += bias[r + 1];
      s2 += bias[r + 2];
      s3 += bias[r + 3];
    }
    y[r] = prunec_clampf(s0, out_min, out_max);
    y[r + 1] = prunec_clampf(s1, out_min, out_max);
    y[r + 2] = prunec_clampf(s2, out_min, out_max);
    y[r + 3] = prunec_clampf(s3, out_min, out_max);
  }
  for (; r < rows; r++) {
    const float *wr = w->values + (size_t)r * cols;
    float32x4_t a0 = vdupq_n_f32(0.0f);
    float s;
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      a0 = vfmaq_f32(a0, vld1q_f32(wr + c), vld1q_f32(x + c));
    }
    s = prunec_neon_dense_hsum(a0);
    for (; c < cols; c++) {
      s += wr[c] * x[c];
    }
    s += bias != NULL ? bias[r] : 0.0f;
    y[r] = prunec_clampf(s, out_min, out_max);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_neon_unavailable;
#endif /* PRUNEC_HAVE_NEON_FMA */
