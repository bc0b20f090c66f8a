/*
 * Dense fully connected layer for Armv8.1-M Helium (MVE-F): y = clamp(W x + bias), W row-major.
 * Twin of the portable kernel.
 *
 * Four rows at a time share each 4-float load of x (4 accumulators, one per row, each lane a partial sum). The
 * main loop runs unpredicated over whole vectors and only the last cols % 4 columns are predicated (VCTP;
 * inactive lanes load zeros and touch no memory), so nothing is read past a row. The 4 accumulators are then
 * transposed through a 64-byte stack buffer (VST4: lane k of the sum is row k) and summed in one vector, so
 * bias, clamp and store take one vector instruction each for 4 rows.
 *
 * Instruction count (QEMU, benchmarks/bench_arm.py): GCC 12 turns the predicated-in-the-loop form into
 * VPR saves/restores and spills (1.8 per MAC on cortex-m55, more than the scalar cortexm kernel's 1.24), and
 * its float32x4x4_t handling stores and reloads the accumulators around VST4. The 4-row block is therefore
 * one inline-assembly block on GCC-compatible compilers: per 8 columns 2 x loads + 8 weight loads + 8 VFMA +
 * LE = 19 instructions for 32 MACs (0.59 per MAC), the last cols % 8 columns in a tail-predicated loop
 * (WLSTP/LETP, at most 2 passes), the transpose as VST40..VST43 + 4 loads + 3 adds. The C block below
 * (intrinsics, the same sums in another lane order; PRUNEC_MVE_NO_ASM or no GNU asm) is the reference path.
 * Rows left over after the 4-row blocks (rows % 4) run 2- and 1-row intrinsic loops.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include "prunec_kernels.h"

/* The fused clamp of the portable kernel, `a < lo ? lo : a` then `a > hi ? hi : a`: VCMP gt with the bound
 * first + VPSEL keeps NaN of both signs and -0.0 (see prunec_mve_clamp in f32-rcsr-mve.c). */
static inline float32x4_t prunec_mve_dense_clamp4(float32x4_t a, float lo, float hi) {
  const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
  a = vpselq_f32(vlo, a, vcmpgtq_f32(vlo, a));
  return vpselq_f32(vhi, a, vcmpgtq_f32(a, vhi));
}

static inline float prunec_mve_dense_hsum(float32x4_t v) {
  return (vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1)) + (vgetq_lane_f32(v, 2) + vgetq_lane_f32(v, 3));
}

#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
/* Row sums of the 4 rows w0, w0 + cols, w0 + 2 cols, w0 + 3 cols times x: lane k of the result is row k. */
static inline __attribute__((always_inline)) float32x4_t prunec_mve_dense_4rows(const float *w0, const float *x,
                                                                                uint32_t cols) {
  float buf[16];
  const float *w1, *w2, *w3;
  uint32_t n8 = cols >> 3, rem = cols & 7u;
  __asm__("add %[w1], %[w0], %[st]\n\t"
          "add %[w2], %[w1], %[st]\n\t"
          "add %[w3], %[w2], %[st]\n\t"
          "vmov.i32 q0, #0\n\t"
          "vmov.i32 q1, #0\n\t"
          "vmov.i32 q2, #0\n\t"
          "vmov.i32 q3, #0\n\t"
          "wls lr, %[n8], 2f\n"
          "1:\n\t"
          "vldrw.32 q4, [%[x]], #16\n\t"
          "vldrw.32 q6, [%[w0]], #16\n\t"
          "vldrw.32 q5, [%[x]], #16\n\t"
          "vfma.f32 q0, q6, q4\n\t"
          "vldrw.32 q7, [%[w1]], #16\n\t"
          "vfma.f32 q1, q7, q4\n\t"
          "vldrw.32 q6, [%[w2]], #16\n\t"
          "vfma.f32 q2, q6, q4\n\t"
          "vldrw.32 q7, [%[w3]], #16\n\t"
          "vfma.f32 q3, q7, q4\n\t"
          "vldrw.32 q6, [%[w0]], #16\n\t"
          "vfma.f32 q0, q6, q5\n\t"
          "vldrw.32 q7, [%[w1]], #16\n\t"
          "vfma.f32 q1, q7, q5\n\t"
          "vldrw.32 q6, [%[w2]], #16\n\t"
          "vfma.f32 q2, q6, q5\n\t"
          "vldrw.32 q7, [%[w3]], #16\n\t"
          "vfma.f32 q3, q7, q5\n\t"
          "le lr, 1b\n"
          "2:\n\t"
          "wlstp.32 lr, %[rem], 4f\n"
          "3:\n\t"
          "vldrw.32 q4, [%[x]], #16\n\t"
          "vldrw.32 q6, [%[w0]], #16\n\t"
          "vldrw.32 q7, [%[w1]], #16\n\t"
          "vfma.f32 q0, q6, q4\n\t"
          "vldrw.32 q6, [%[w2]], #16\n\t"
          "vfma.f32 q1, q7, q4\n\t"
          "vldrw.32 q7, [%[w3]], #16\n\t"
          "vfma.f32 q2, q6, q4\n\t"
          "vfma.f32 q3, q7, q4\n\t"
          "letp lr, 3b\n"
          "4:\n\t"
          "vst40.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vst41.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vst42.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vst43.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vldrw.32 q4, [%[buf]]\n\t"
          "vldrw.32 q5, [%[buf], #16]\n\t"
          "vldrw.32 q6, [%[buf], #32]\n\t"
          "vldrw.32 q7, [%[buf], #48]\n\t"
          "vadd.f32 q4, q4, q5\n\t"
          "vadd.f32 q6, q6, q7\n\t"
          "vadd.f32 q4, q4, q6\n\t"
          "vstrw.32 q4, [%[buf]]"
          : [x] "+r"(x), [w0] "+r"(w0), [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3), [n8] "+r"(n8),
            [rem] "+r"(rem), "=m"(buf)
          : [st] "r"(cols * 4u), [buf] "r"(buf), "m"(*(const float(*)[cols])x),
            "m"(*(const float(*)[4u * cols])w0)
          : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "lr");
  return vld1q_f32(buf);
}
#else
static inline float32x4_t prunec_mve_dense_4rows(const float *w0, const float *x, uint32_t cols) {
  const float *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
  const uint32_t tail = cols & 3u;
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0, s = a0;
  uint32_t i;
  for (i = cols >> 2; i > 0; i--) {
    const float32x4_t xv = vld1q_f32(x);
    a0 = vfmaq_f32(a0, vld1q_f32(w0), xv);
    a1 = vfmaq_f32(a1, vld1q_f32(w1), xv);
    a2 = vfmaq_f32(a2, vld1q_f32(w2), xv);
    a3 = vfmaq_f32(a3, vld1q_f32(w3), xv);
    x += 4;
    w0 += 4;
    w1 += 4;
    w2 += 4;
    w3 += 4;
  }
  if (tail != 0) {
    const mve_pred16_t p = vctp32q(tail);
    const float32x4_t xv = vldrwq_z_f32(x, p);
    a0 = vfmaq_f32(a0, vldrwq_z_f32(w0, p), xv);
    a1 = vfmaq_f32(a1, vldrwq_z_f32(w1, p), xv);
    a2 = vfmaq_f32(a2, vldrwq_z_f32(w2, p), xv);
    a3 = vfmaq_f32(a3, vldrwq_z_f32(w3, p), xv);
  }
  s = vsetq_lane_f32(prunec_mve_dense_hsum(a0), s, 0);
  s = vsetq_lane_f32(prunec_mve_dense_hsum(a1), s, 1);
  s = vsetq_lane_f32(prunec_mve_dense_hsum(a2), s, 2);
  return vsetq_lane_f32(prunec_mve_dense_hsum(a3), s, 3);
}
#endif

void prunec_f32_fc_dense__mve(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  const uint32_t cols = w->cols;
  const uint32_t rows = w->rows;
  const uint32_t tail = cols & 3u;
  uint32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    float32x4_t s = prunec_mve_dense_4rows(w->values + (size_t)r * cols, x, cols);
    if (bias != NULL) {
      s = vaddq_f32(s, vld1q_f32(bias + r));
    }
    vst1q_f32(y + r, prunec_mve_dense_clamp4(s, out_min, out_max));
  }
  if (r + 2 <= rows) {
    const float *w0 = w->values + (size_t)r * cols, *w1 = w0 + cols, *xp = x;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, s = a0;
    uint32_t i;
    for (i = cols >> 2; i > 0; i--) {
      const float32x4_t xv = vld1q_f32(xp);
      a0 = vfmaq_f32(a0, vld1q_f32(w0), xv);
      a1 = vfmaq_f32(a1, vld1q_f32(w1), xv);
      xp += 4;
      w0 += 4;
      w1 += 4;
    }
    if (tail != 0) {
      const mve_pred16_t p = vctp32q(tail);
      const float32x4_t xv = vldrwq_z_f32(xp, p);
      a0 = vfmaq_f32(a0, vldrwq_z_f32(w0, p), xv);
      a1 = vfmaq_f32(a1, vldrwq_z_f32(w1, p), xv);
    }
    s = vsetq_lane_f32(prunec_mve_dense_hsum(a0), s, 0);
    s = vsetq_lane_f32(prunec_mve_dense_hsum(a1), s, 1);
    if (bias != NULL) {
      s = vaddq_f32(s, vldrwq_z_f32(bias + r, vctp32q(2)));
    }
    vstrwq_p_f32(y + r, prunec_mve_dense_clamp4(s, out_min, out_max), vctp32q(2));
    r += 2;
  }
  if (r < rows) {
    const float *w0 = w->values + (size_t)r * cols, *xp = x;
    float32x4_t a0 = vdupq_n_f32(0.0f);
    float s;
    uint32_t i;
    for (i = cols >> 2; i > 0; i--) {
      a0 = vfmaq_f32(a0, vld1q_f32(w0), vld1q_f32(xp));
      xp += 4;
      w0 += 4;
    }
    if (tail != 0) {
      const mve_pred16_t p = vctp32q(tail);
      a0 = vfmaq_f32(a0, vldrwq_z_f32(w0, p), vldrwq_z_f32(xp, p));
    }
    s = prunec_mve_dense_hsum(a0) + (bias != NULL ? bias[r] : 0.0f);
    s = s < out_min ? out_min : s;
    y[r] = s > out_max ? out_max : s;
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
