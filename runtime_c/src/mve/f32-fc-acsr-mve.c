/*
 * Sparse fully connected layer over absolute-indexed CSR (prunec_acsr_f32, docs/FORMAT.md "Absolute-indexed fc
 * layers") for Armv8.1-M with Helium (MVE with floating point, Cortex-M55/M85): y = clamp(W x + bias). Twin of the
 * portable kernel.
 *
 * A row's entries come in whole vectors of 4 (the format pads every row to a multiple of 4), so per 4 entries: one
 * VLDRW of their 4 columns, one gather VLDRW.U32 q, [x, q, UXTW #2] of their inputs, one VLDRW of their 4 values,
 * one VFMA, and the low-overhead loop's LETP: 5 instructions (relative-indexed CSR: 12, the columns being summed
 * from the gaps). Rows run in groups of 4: each leaves its 4 lane sums in a buffer, and prunec_mve_fc_out
 * (prunec_mve_util.h) transposes them so that bias, clamp and store are one vector instruction each for 4 rows.
 * A full group of 4 rows is one asm block (6 instructions per row besides its steps). Results agree with the
 * portable twin to fp32 reassociation (lane sums, (l0 + l1) + (l2 + l3)). The C path (PRUNEC_MVE_NO_ASM, compilers
 * without GNU asm) computes the same with intrinsics.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include "prunec_kernels.h"
#include "prunec_mve_util.h"

#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
/* One row: its count from row_ptr (rp at its start, left at its end), the 4-entry steps in a tail-predicated
 * low-overhead loop, its lane sums to slot (advanced by 16 bytes). 6 instructions besides the steps. */
#define PRUNEC_ACSR_MVE_ROW                                                                                    \
  "ldr %[e], [%[rp]], #4\n\t"                                                                                  \
  "ldr %[n], [%[rp]]\n\t"                                                                                      \
  "vmov.i32 q4, #0\n\t"                                                                                        \
  "sub %[n], %[n], %[e]\n\t"                                                                                   \
  "wlstp.32 lr, %[n], 2f\n"                                                                                    \
  "1:\n\t"                                                                                                     \
  "vldrw.u32 q1, [%[cp]], #16\n\t"                                                                             \
  "vldrw.u32 q2, [%[x], q1, uxtw #2]\n\t"                                                                      \
  "vldrw.32 q3, [%[vp]], #16\n\t"                                                                              \
  "vfma.f32 q4, q3, q2\n\t"                                                                                    \
  "letp lr, 1b\n"                                                                                              \
  "2:\n\t"                                                                                                     \
  "vstrw.32 q4, [%[slot]], #16\n\t"
#define PRUNEC_ACSR_MVE_OPERANDS                                                                               \
  [rp] "+r"(rp), [cp] "+r"(cp), [vp] "+r"(vp), [slot] "+r"(slot), [e] "=&r"(e), [n] "=&r"(n),                 \
      "=m"(*(float(*)[16])slot)
#define PRUNEC_ACSR_MVE_CLOBBERS "q1", "q2", "q3", "q4", "lr", "memory"
#endif

/* The m (1..4) rows from *rpp (their row_ptr entries) on, entries at *cpp / *vpp: lane sums of row k into
 * slot[4k .. 4k+3]; the pointers are left after the group. A full group runs its 4 rows straight. */
static inline __attribute__((always_inline)) void prunec_acsr_mve_group(const uint32_t **rpp, const uint32_t **cpp,
                                                                       const float **vpp, const float *x, uint32_t m,
                                                                       float *slot) {
  const uint32_t *rp = *rpp, *cp = *cpp;
  const float *vp = *vpp;
#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
  uint32_t e, n;
  if (m == 4u) {
    __asm__(PRUNEC_ACSR_MVE_ROW PRUNEC_ACSR_MVE_ROW PRUNEC_ACSR_MVE_ROW PRUNEC_ACSR_MVE_ROW
            : PRUNEC_ACSR_MVE_OPERANDS
            : [x] "r"(x), "m"(*(const struct { float v[1]; } *)x)
            : PRUNEC_ACSR_MVE_CLOBBERS);
  } else {
    __asm__("5:\n\t" PRUNEC_ACSR_MVE_ROW
            "subs %[m], %[m], #1\n\t"
            "bne 5b"
            : PRUNEC_ACSR_MVE_OPERANDS, [m] "+r"(m)
            : [x] "r"(x), "m"(*(const struct { float v[1]; } *)x)
            : PRUNEC_ACSR_MVE_CLOBBERS, "cc");
  }
#else
  for (; m > 0; m--, rp++, slot += 4) {
    const uint32_t n = rp[1] - rp[0];
    float32x4_t acc = vdupq_n_f32(0.0f);
    uint32_t j;
    for (j = 0; j < n; j += 4, cp += 4, vp += 4) {
      acc = vfmaq_f32(acc, vldrwq_f32(vp), vldrwq_gather_shifted_offset_f32(x, vldrwq_u32(cp)));
    }
    vst1q_f32(slot, acc);
  }
#endif
  *rpp = rp;
  *cpp = cp;
  *vpp = vp;
}

void prunec_f32_fc_acsr__mve(const prunec_acsr_f32 *w, const float *bias, const float *x, float *y, float out_min,
                             float out_max) {
  static const float zeros[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  const float32x4_t vlo = vdupq_n_f32(out_min), vhi = vdupq_n_f32(out_max);
  const uint32_t rows = w->rows;
  const uint32_t *rp = w->row_ptr;
  const uint32_t *cp = w->columns + rp[0];
  const float *vp = w->values + rp[0];
  const float *bp = bias != NULL ? bias : zeros; /* 4 zeros per group without a bias */
  const size_t bstep = bias != NULL ? 4u : 0u;
  float *const y4 = y + (rows & ~3u);
  float buf[16] = {0.0f};
  for (; y != y4; y += 4, bp += bstep) {
    prunec_acsr_mve_group(&rp, &cp, &vp, x, 4u, buf);
    prunec_mve_fc_out(buf, bp, y, 4u, vlo, vhi);
  }
  if (rows & 3u) {
    prunec_acsr_mve_group(&rp, &cp, &vp, x, rows & 3u, buf);
    prunec_mve_fc_out(buf, bp, y, rows & 3u, vlo, vhi);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_acsr_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
