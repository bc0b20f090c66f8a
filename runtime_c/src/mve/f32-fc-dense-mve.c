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
 * The rows left over after the 4-row blocks (rows % 4) take prunec_mve_dense_rows with n = 2 and 1, the same
 * intrinsics as the C 4-row path; every block's bias load, clamp and store are vector instructions predicated
 * to its rows.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include "prunec_kernels.h"
#include "prunec_mve_util.h"
#include "prunec_rcsr_util.h"

/* Row sums of n (1, 2 or 4) rows w0, w0 + cols, .. times x, in intrinsics: lane k is row k, lanes >= n are 0. n = 4
 * is the C path of prunec_mve_dense_4rows; n = 2 and 1 take the rows left over after the 4-row blocks. */
PRUNEC_ALWAYS_INLINE float32x4_t prunec_mve_dense_rows(const float *w0, const float *x, uint32_t cols,
                                                       const uint32_t n) {
  const uint32_t tail = cols & 3u;
  const float *w[4];
  float32x4_t a[4], s = vdupq_n_f32(0.0f);
  uint32_t i, k;
  for (k = 0; k < n; k++) {
    w[k] = w0 + (size_t)k * cols;
    a[k] = s;
  }
  for (i = cols >> 2; i > 0; i--, x += 4) {
    const float32x4_t xv = vld1q_f32(x);
    for (k = 0; k < n; k++) {
      a[k] = vfmaq_f32(a[k], vld1q_f32(w[k]), xv);
      w[k] += 4;
    }
  }
  if (tail != 0) {
    const mve_pred16_t p = vctp32q(tail);
    const float32x4_t xv = vldrwq_z_f32(x, p);
    for (k = 0; k < n; k++) {
      a[k] = vfmaq_f32(a[k], vldrwq_z_f32(w[k], p), xv);
    }
  }
  s = vsetq_lane_f32(prunec_mve_hsum(a[0]), s, 0); /* the lane of vsetq_lane must be a constant */
  if (n > 1) {
    s = vsetq_lane_f32(prunec_mve_hsum(a[1]), s, 1);
  }
  if (n > 2) {
    s = vsetq_lane_f32(prunec_mve_hsum(a[2]), s, 2);
    s = vsetq_lane_f32(prunec_mve_hsum(a[3]), s, 3);
  }
  return s;
}

#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
/* Row sums of the 4 rows w0, w0 + cols, w0 + 2 cols, w0 + 3 cols times x: lane k of the result is row k. */
static inline __attribute__((always_inline)) float32x4_t prunec_mve_dense_4rows(const float *w0, const float *x,
                                                                                uint32_t cols) {
  float buf[16];
  const float *w1, *w2, *w3;
  uint32_t n8 = cols >> 3, rem = cols & 7u;
  /* The memory inputs are runtime-sized arrays (a struct cannot hold one), whose cast GCC reports under
   * -Wcast-qual although no qualifier is dropped. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
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
#pragma GCC diagnostic pop
  return vld1q_f32(buf);
}
#else
static inline float32x4_t prunec_mve_dense_4rows(const float *w0, const float *x, uint32_t cols) {
  return prunec_mve_dense_rows(w0, x, cols, 4);
}
#endif

void prunec_f32_fc_dense__mve(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  const uint32_t cols = w->cols;
  const uint32_t rows = w->rows;
  uint32_t r = 0, n;
  for (; r < rows; r += n) {
    /* 4 rows per block; the rows % 4 left over as 2 + 1 (stores and bias loads predicated to n lanes) */
    float32x4_t s;
    mve_pred16_t p;
    n = rows - r >= 4u ? 4u : rows - r >= 2u ? 2u : 1u;
    p = vctp32q(n);
    s = n == 4u ? prunec_mve_dense_4rows(w->values + (size_t)r * cols, x, cols)
        : n == 2u ? prunec_mve_dense_rows(w->values + (size_t)r * cols, x, cols, 2)
                  : prunec_mve_dense_rows(w->values + (size_t)r * cols, x, cols, 1);
    if (bias != NULL) {
      s = vaddq_f32(s, vldrwq_z_f32(bias + r, p));
    }
    vstrwq_p_f32(y + r, prunec_mve_clamp(s, out_min, out_max), p);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
