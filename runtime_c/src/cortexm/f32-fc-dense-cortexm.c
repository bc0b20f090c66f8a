/*
 * Dense fully connected layer for Cortex-M with a single-precision FPU: y = clamp(W x + bias).
 * 4x8 register blocking: per step 8 x values and 8 consecutive weights of each of 4 rows feed 32 VFMAs into
 * 4 accumulators. Twin of the portable kernel.
 *
 * Instruction count (Cortex-M4, QEMU, benchmarks/bench_arm_bits.py): GCC does not merge the float loads into
 * VLDM, so the plain C step costs one load per VFMA plus pointer updates (2.7 instructions per MAC). The
 * step is therefore one inline-assembly block on GCC-compatible compilers for Thumb-2 (5 VLDM of 8 registers
 * + 32 VFMA; with the loop's compare and branch 39 instructions for 32 MACs, ~1.25 per MAC, against 1.26 for
 * the probe's hand-scheduled kernel in NOTES.md). The C step below is the same computation in the same order
 * (results are bit-identical); define PRUNEC_CORTEXM_NO_ASM to use it. The last 1-3 rows of a layer run one at a
 * time, 8 columns per step (2 VLDM + 8 VFMA; before, a C loop at ~3.5 instructions per MAC: LeNet-5's fc2, 10 rows,
 * counted 2.04 per MAC overall, above the 1.5 a good dense kernel takes).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_CORTEXM_FPU
#include <math.h>

#include "prunec_kernels.h"

#if defined(__GNUC__) && defined(__thumb2__) && !defined(PRUNEC_CORTEXM_NO_ASM)
/* a_i += sum_k w_i[k] * x[k], k = 0..7, in order k = 0..7 (w0/w1 and w2/w3 interleaved). */
static inline __attribute__((always_inline)) void prunec_cortexm_dense_4x8(const float **xp, const float **wp0,
                                                                          const float **wp1, const float **wp2,
                                                                          const float **wp3, float *a0, float *a1,
                                                                          float *a2, float *a3) {
  const float *x = *xp, *w0 = *wp0, *w1 = *wp1, *w2 = *wp2, *w3 = *wp3;
  float r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3;
  __asm__("vldmia %[x]!, {s16-s23}\n\t"
          "vldmia %[w0]!, {s24-s31}\n\t"
          "vldmia %[w1]!, {s8-s15}\n\t"
          "vfma.f32 %[r0], s24, s16\n\t"
          "vfma.f32 %[r1], s8, s16\n\t"
          "vfma.f32 %[r0], s25, s17\n\t"
          "vfma.f32 %[r1], s9, s17\n\t"
          "vfma.f32 %[r0], s26, s18\n\t"
          "vfma.f32 %[r1], s10, s18\n\t"
          "vfma.f32 %[r0], s27, s19\n\t"
          "vfma.f32 %[r1], s11, s19\n\t"
          "vfma.f32 %[r0], s28, s20\n\t"
          "vfma.f32 %[r1], s12, s20\n\t"
          "vfma.f32 %[r0], s29, s21\n\t"
          "vfma.f32 %[r1], s13, s21\n\t"
          "vfma.f32 %[r0], s30, s22\n\t"
          "vfma.f32 %[r1], s14, s22\n\t"
          "vfma.f32 %[r0], s31, s23\n\t"
          "vfma.f32 %[r1], s15, s23\n\t"
          "vldmia %[w2]!, {s24-s31}\n\t"
          "vldmia %[w3]!, {s8-s15}\n\t"
          "vfma.f32 %[r2], s24, s16\n\t"
          "vfma.f32 %[r3], s8, s16\n\t"
          "vfma.f32 %[r2], s25, s17\n\t"
          "vfma.f32 %[r3], s9, s17\n\t"
          "vfma.f32 %[r2], s26, s18\n\t"
          "vfma.f32 %[r3], s10, s18\n\t"
          "vfma.f32 %[r2], s27, s19\n\t"
          "vfma.f32 %[r3], s11, s19\n\t"
          "vfma.f32 %[r2], s28, s20\n\t"
          "vfma.f32 %[r3], s12, s20\n\t"
          "vfma.f32 %[r2], s29, s21\n\t"
          "vfma.f32 %[r3], s13, s21\n\t"
          "vfma.f32 %[r2], s30, s22\n\t"
          "vfma.f32 %[r3], s14, s22\n\t"
          "vfma.f32 %[r2], s31, s23\n\t"
          "vfma.f32 %[r3], s15, s23"
          : [r0] "+t"(r0), [r1] "+t"(r1), [r2] "+t"(r2), [r3] "+t"(r3), [x] "+r"(x), [w0] "+r"(w0),
            [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3)
          : "m"(*(const struct { float v[8]; } *)x),
            "m"(*(const struct { float v[8]; } *)w0), "m"(*(const struct { float v[8]; } *)w1), "m"(*(const struct { float v[8]; } *)w2),
            "m"(*(const struct { float v[8]; } *)w3)
          : "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22",
            "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31");
  *xp = x;
  *wp0 = w0;
  *wp1 = w1;
  *wp2 = w2;
  *wp3 = w3;
  *a0 = r0;
  *a1 = r1;
  *a2 = r2;
  *a3 = r3;
}

/* One row (the last 1-3 rows of a layer): a0 += w[k] * x[k] for k = 0, 2, 4, 6 and a1 for k = 1, 3, 5, 7, in that
 * order (as the C loop of those rows sums them); the pointers advance by 8. 2 VLDM + 8 VFMA. */
static inline __attribute__((always_inline)) void prunec_cortexm_dense_1x8(const float **xp, const float **wp,
                                                                          float *a0, float *a1) {
  const float *x = *xp, *w = *wp;
  float r0 = *a0, r1 = *a1;
  __asm__("vldmia %[x]!, {s16-s23}\n\t"
          "vldmia %[w]!, {s24-s31}\n\t"
          "vfma.f32 %[r0], s24, s16\n\t"
          "vfma.f32 %[r1], s25, s17\n\t"
          "vfma.f32 %[r0], s26, s18\n\t"
          "vfma.f32 %[r1], s27, s19\n\t"
          "vfma.f32 %[r0], s28, s20\n\t"
          "vfma.f32 %[r1], s29, s21\n\t"
          "vfma.f32 %[r0], s30, s22\n\t"
          "vfma.f32 %[r1], s31, s23"
          : [r0] "+t"(r0), [r1] "+t"(r1), [x] "+r"(x), [w] "+r"(w)
          : "m"(*(const struct { float v[8]; } *)x), "m"(*(const struct { float v[8]; } *)w)
          : "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30",
            "s31");
  *xp = x;
  *wp = w;
  *a0 = r0;
  *a1 = r1;
}
#else
/* One row: a0 += w[k] * x[k] for even k, a1 for odd k, in order; the pointers advance by 8. */
static inline void prunec_cortexm_dense_1x8(const float **xp, const float **wp, float *a0, float *a1) {
  const float *x = *xp, *w = *wp;
  int k;
  for (k = 0; k < 8; k += 2) {
    *a0 = __builtin_fmaf(w[k], x[k], *a0);
    *a1 = __builtin_fmaf(w[k + 1], x[k + 1], *a1);
  }
  *xp = x + 8;
  *wp = w + 8;
}

/* a_i += sum_k w_i[k] * x[k], k = 0..7, in order k = 0..7; the pointers advance by 8. */
static inline void prunec_cortexm_dense_4x8(const float **xp, const float **wp0, const float **wp1,
                                            const float **wp2, const float **wp3, float *a0, float *a1, float *a2,
                                            float *a3) {
  const float *x = *xp, *w0 = *wp0, *w1 = *wp1, *w2 = *wp2, *w3 = *wp3;
  float r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3;
  int k;
  for (k = 0; k < 8; k++) {
    r0 = __builtin_fmaf(w0[k], x[k], r0);
    r1 = __builtin_fmaf(w1[k], x[k], r1);
    r2 = __builtin_fmaf(w2[k], x[k], r2);
    r3 = __builtin_fmaf(w3[k], x[k], r3);
  }
  *xp = x + 8;
  *wp0 = w0 + 8;
  *wp1 = w1 + 8;
  *wp2 = w2 + 8;
  *wp3 = w3 + 8;
  *a0 = r0;
  *a1 = r1;
  *a2 = r2;
  *a3 = r3;
}
#endif

void prunec_f32_fc_dense__cortexm(const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                                  float out_min, float out_max) {
  const size_t cols = w->cols;
  const uint32_t rows = w->rows;
  uint32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *w0 = w->values + (size_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    size_t c = 0;
    if (bias != NULL) {
      a0 = bias[r];
      a1 = bias[r + 1];
      a2 = bias[r + 2];
      a3 = bias[r + 3];
    }
    {
      const float *xp = x, *p0 = w0, *p1 = w1, *p2 = w2, *p3 = w3;
      const float *const xend = x + (cols & ~(size_t)7);
      while (xp != xend) {
        prunec_cortexm_dense_4x8(&xp, &p0, &p1, &p2, &p3, &a0, &a1, &a2, &a3);
      }
      c = cols & ~(size_t)7;
    }
    for (; c < cols; c++) {
      const float xc = x[c];
      a0 = __builtin_fmaf(w0[c], xc, a0);
      a1 = __builtin_fmaf(w1[c], xc, a1);
      a2 = __builtin_fmaf(w2[c], xc, a2);
      a3 = __builtin_fmaf(w3[c], xc, a3);
    }
    y[r] = prunec_clampf(a0, out_min, out_max);
    y[r + 1] = prunec_clampf(a1, out_min, out_max);
    y[r + 2] = prunec_clampf(a2, out_min, out_max);
    y[r + 3] = prunec_clampf(a3, out_min, out_max);
  }
  for (; r < rows; r++) {
    const float *wr = w->values + (size_t)r * cols;
    float a0 = bias != NULL ? bias[r] : 0.0f, a1 = 0.0f;
    size_t c = cols & ~(size_t)7;
    {
      const float *xp = x, *wp = wr;
      while (xp != x + c) {
        prunec_cortexm_dense_1x8(&xp, &wp, &a0, &a1);
      }
    }
    for (; c + 2 <= cols; c += 2) {
      a0 = __builtin_fmaf(wr[c], x[c], a0);
      a1 = __builtin_fmaf(wr[c + 1], x[c + 1], a1);
    }
    if (c < cols) {
      a0 = __builtin_fmaf(wr[c], x[c], a0);
    }
    y[r] = prunec_clampf(a0 + a1, out_min, out_max);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_dense_cortexm_unavailable;
#endif /* PRUNEC_HAVE_CORTEXM_FPU */
