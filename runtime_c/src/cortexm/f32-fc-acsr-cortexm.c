/*
 * Sparse fully connected layer over absolute-indexed CSR (prunec_acsr_f32, docs/FORMAT.md "Absolute-indexed fc
 * layers") for Cortex-M with a single-precision FPU: y = clamp(W x + bias). Twin of the portable kernel.
 *
 * Every row holds a multiple of 4 entries, each with its column as a uint32, so a group of 8 entries is one LDM of
 * their 8 columns, one VLDM of their 8 values, per entry one register-offset LDR of x[column] (the FPU load has no
 * register-offset form) and one VFMA, per two entries one VMOV of two core registers into two FPU registers: 22
 * instructions, 24 with the loop's compare and branch, 3 per entry (relative-indexed CSR with 8-bit codes: 35 per 8,
 * the code's extract-and-add UXTAB being the difference). A row's last 4 entries, where its count is not a multiple
 * of 8, are one group of 4 (12 instructions), run before the groups of 8. One accumulator takes the entries in order
 * (Cortex-M4's VFMA does not pipeline back to back anyway), so results differ from the portable twin only by the
 * fused multiply-add's single rounding. The rows' overhead is ~18 instructions: the clamp's sides that do nothing
 * (-inf, +inf) and the bias pointer's step are compiled out of the row loop. The C steps (PRUNEC_CORTEXM_NO_ASM,
 * compilers without GNU asm for Thumb-2) compute the same in the same order.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_CORTEXM_FPU
#include <math.h>

#include "prunec_kernels.h"

/* a += the products of the next 8 (eight) or 4 entries, in entry order; the column and value pointers move on. */
static inline __attribute__((always_inline)) void prunec_acsr_step(const uint32_t **cpp, const float **vpp,
                                                                  const float *x, float *ap, const int eight) {
  const uint32_t *cp = *cpp;
  const float *vp = *vpp;
  float a = *ap;
#if defined(__GNUC__) && defined(__thumb2__) && !defined(PRUNEC_CORTEXM_NO_ASM)
/* The columns go to r1-r6, r8 and r10 (LDM takes its registers in ascending order, so they are named here; r7 is
 * the Thumb frame pointer and r9 may be the platform register, so neither is used). Two entries: their inputs by
 * register-offset loads, one VMOV into s24.. (the FPU load has no register-offset form), two VFMAs. */
#define PRUNEC_ACSR_PAIR(ra, rb, sx, sy, wa, wb)                                                               \
  "ldr " ra ", [%[x], " ra ", lsl #2]\n\t"                                                                     \
  "ldr " rb ", [%[x], " rb ", lsl #2]\n\t"                                                                     \
  "vmov " sx ", " sy ", " ra ", " rb "\n\t"                                                                    \
  "vfma.f32 %[a], " wa ", " sx "\n\t"                                                                          \
  "vfma.f32 %[a], " wb ", " sy "\n\t"
  if (eight) {
    __asm__("ldmia %[cp]!, {r1, r2, r3, r4, r5, r6, r8, r10}\n\t"
            "vldmia %[vp]!, {s16-s23}\n\t"
            PRUNEC_ACSR_PAIR("r1", "r2", "s24", "s25", "s16", "s17")
            PRUNEC_ACSR_PAIR("r3", "r4", "s26", "s27", "s18", "s19")
            PRUNEC_ACSR_PAIR("r5", "r6", "s28", "s29", "s20", "s21")
            PRUNEC_ACSR_PAIR("r8", "r10", "s30", "s31", "s22", "s23")
            : [cp] "+r"(cp), [vp] "+r"(vp), [a] "+t"(a)
            : [x] "r"(x), "m"(*(const struct { uint32_t v[8]; } *)cp), "m"(*(const struct { float v[8]; } *)vp),
              "m"(*(const struct { float v[1]; } *)x)
            : "r1", "r2", "r3", "r4", "r5", "r6", "r8", "r10", "s16", "s17", "s18", "s19", "s20", "s21", "s22",
              "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31", "memory");
  } else {
    __asm__("ldmia %[cp]!, {r1, r2, r3, r4}\n\t"
            "vldmia %[vp]!, {s16-s19}\n\t"
            PRUNEC_ACSR_PAIR("r1", "r2", "s24", "s25", "s16", "s17")
            PRUNEC_ACSR_PAIR("r3", "r4", "s26", "s27", "s18", "s19")
            : [cp] "+r"(cp), [vp] "+r"(vp), [a] "+t"(a)
            : [x] "r"(x), "m"(*(const struct { uint32_t v[4]; } *)cp), "m"(*(const struct { float v[4]; } *)vp),
              "m"(*(const struct { float v[1]; } *)x)
            : "r1", "r2", "r3", "r4", "s16", "s17", "s18", "s19", "s24", "s25", "s26", "s27", "memory");
  }
#undef PRUNEC_ACSR_PAIR
#else
  const uint32_t n = eight ? 8u : 4u;
  uint32_t k;
  for (k = 0; k < n; k++) {
    a = __builtin_fmaf(vp[k], x[cp[k]], a);
  }
  cp += n;
  vp += n;
#endif
  *cpp = cp;
  *vpp = vp;
  *ap = a;
}

/* The rows, with the clamp's sides known at compile time where they do nothing (lo = -inf, hi = +inf: no compare)
   and whether there is a bias (none: every row starts from 0). A row's group of 4 runs first, so that its count is
   not live across the loop of groups of 8. */
static inline __attribute__((always_inline)) void prunec_acsr_rows(const prunec_acsr_f32 *w, const float *bias,
                                                                  const float *x, float *y, float lo, float hi,
                                                                  const int has_bias, const int clamp_lo,
                                                                  const int clamp_hi) {
  const uint32_t *const row_ptr = w->row_ptr;
  const uint32_t *cp = w->columns + row_ptr[0];
  const float *vp = w->values + row_ptr[0];
  const uint32_t rows = w->rows;
  uint32_t r, prev = row_ptr[0];
  /* the entries are contiguous from row to row, so the column and value pointers carry on; a row's count is a
     multiple of 4 (prunec_acsr_f32) */
  for (r = 0; r < rows; r++) {
    const uint32_t end = row_ptr[r + 1];
    const uint32_t n = end - prev;
    float a = has_bias ? bias[r] : 0.0f;
    uint32_t g;
    prev = end;
    if (n & 4u) {
      prunec_acsr_step(&cp, &vp, x, &a, 0);
    }
    for (g = n >> 3; g != 0u; g--) {
      prunec_acsr_step(&cp, &vp, x, &a, 1);
    }
    if (clamp_lo) {
      a = a < lo ? lo : a;
    }
    if (clamp_hi) {
      a = a > hi ? hi : a;
    }
    y[r] = a;
  }
}

void prunec_f32_fc_acsr__cortexm(const prunec_acsr_f32 *w, const float *bias, const float *x, float *y,
                                 float out_min, float out_max) {
  const int lo = !(out_min == -INFINITY), hi = !(out_max == INFINITY); /* a NaN bound compares like the twin's */
  if (bias == NULL) {
    prunec_acsr_rows(w, bias, x, y, out_min, out_max, 0, 1, 1);
  } else if (!lo && !hi) {
    prunec_acsr_rows(w, bias, x, y, out_min, out_max, 1, 0, 0);
  } else if (!hi) {
    prunec_acsr_rows(w, bias, x, y, out_min, out_max, 1, 1, 0);
  } else {
    prunec_acsr_rows(w, bias, x, y, out_min, out_max, 1, 1, 1);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_acsr_cortexm_unavailable;
#endif /* PRUNEC_HAVE_CORTEXM_FPU */
