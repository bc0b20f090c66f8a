/*
 * prunec runtime: the column-major fc layer's 8-bit path for ISAs whose FPU has a fused multiply-add (x86 FMA,
 * Armv8-A, Armv7-A VFPv4, Cortex-M4F and later), shared by their kernels (src/avx2/f32-fc-rcsc-avx2.c,
 * src/neon/f32-fc-rcsc-neon.c, src/cortexm/f32-fc-rcsc-cortexm.c). Scalar: the work is a scatter of updates, which
 * SIMD does not speed up (x86 gathers and scatters cost more per element than these loads and stores). The step of
 * four entries is assembly on Arm (GCC wastes ~3 instructions per entry on its counters and single loads there).
 *
 * w is the relative-indexed CSR of W^T (docs/FORMAT.md "Column-major fc layers"); y must already hold the bias.
 * For each input j with x[j] != 0, y[out] += value * x[j] over column j's entries, four entries per step: one
 * 32-bit load of their codes, the pointer p kept at y + out(previous entry) + 1 - k for the step's k-th entry (so
 * entry k is p[k]), the four outputs (distinct) loaded before any is stored: the compiler need not order a value's
 * load after the previous store, and no FMA waits for another.
 */
#ifndef PRUNEC_RCSC_FMA_H
#define PRUNEC_RCSC_FMA_H

#include <string.h>

#include "prunec_rcsr_util.h"

/* One step of four entries: p, c, v advance past them. Assembly on Arm (GCC-compatible compilers, optimised builds:
 * at -O0 GCC cannot allocate the operands), C elsewhere; both compute the same, in the same order. */
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(PRUNEC_RCSC_NO_ASM) && defined(__aarch64__)
/* A64: the first code added with an extended-register add (uxtb #2), the others extracted first; 23 instructions. */
#define PRUNEC_RCSC_STEP4(p, c, v, xj)                                                                           \
  do {                                                                                                           \
    uint32_t q_, t_;                                                                                             \
    float *p1_, *p2_, *p3_;                                                                                      \
    __asm__ volatile("ldr %w[q], [%[c]], #4\n\t"                                                                 \
                     "ldp s16, s17, [%[v]], #8\n\t"                                                              \
                     "ldp s18, s19, [%[v]], #8\n\t"                                                              \
                     "add %[p], %[p], %w[q], uxtb #2\n\t"                                                         \
                     "ubfx %w[t], %w[q], #8, #8\n\t"                                                              \
                     "ldr s20, [%[p]]\n\t"                                                                        \
                     "add %[p1], %[p], %w[t], uxtw #2\n\t"                                                        \
                     "ubfx %w[t], %w[q], #16, #8\n\t"                                                             \
                     "ldr s21, [%[p1], #4]\n\t"                                                                   \
                     "add %[p2], %[p1], %w[t], uxtw #2\n\t"                                                       \
                     "lsr %w[t], %w[q], #24\n\t"                                                                  \
                     "ldr s22, [%[p2], #8]\n\t"                                                                   \
                     "add %[p3], %[p2], %w[t], uxtw #2\n\t"                                                       \
                     "ldr s23, [%[p3], #12]\n\t"                                                                  \
                     "fmadd s20, s16, %s[xj], s20\n\t"                                                            \
                     "fmadd s21, s17, %s[xj], s21\n\t"                                                            \
                     "fmadd s22, s18, %s[xj], s22\n\t"                                                            \
                     "fmadd s23, s19, %s[xj], s23\n\t"                                                            \
                     "str s20, [%[p]]\n\t"                                                                        \
                     "str s21, [%[p1], #4]\n\t"                                                                   \
                     "str s22, [%[p2], #8]\n\t"                                                                   \
                     "str s23, [%[p3], #12]\n\t"                                                                  \
                     "add %[p], %[p3], #16\n\t"                                                                   \
                     : [q] "=&r"(q_), [t] "=&r"(t_), [p] "+&r"(p), [p1] "=&r"(p1_), [p2] "=&r"(p2_),             \
                       [p3] "=&r"(p3_), [c] "+&r"(c), [v] "+&r"(v)                                                 \
                     : [xj] "w"(xj)                                                                              \
                     : "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "memory");                         \
  } while (0)
#elif defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(PRUNEC_RCSC_NO_ASM) && defined(__arm__) && \
    defined(__ARM_FP) && defined(__ARM_FEATURE_FMA)
/* A32 / T32 with VFPv4 (Armv7-A NEON targets, Cortex-M4F and later): one word of codes, one VLDM of the values,
 * the four outputs' loads first; 23 instructions. */
#define PRUNEC_RCSC_STEP4(p, c, v, xj)                                                                           \
  do {                                                                                                           \
    uint32_t q_, t_;                                                                                             \
    float *p1_, *p2_, *p3_;                                                                                      \
    __asm__ volatile("ldr %[q], [%[c]], #4\n\t"                                                                  \
                     "vldmia %[v]!, {s8-s11}\n\t"                                                                 \
                     "uxtb %[t], %[q]\n\t"                                                                        \
                     "add %[p], %[p], %[t], lsl #2\n\t"                                                           \
                     "ubfx %[t], %[q], #8, #8\n\t"                                                                \
                     "vldr s12, [%[p]]\n\t"                                                                       \
                     "add %[p1], %[p], %[t], lsl #2\n\t"                                                          \
                     "ubfx %[t], %[q], #16, #8\n\t"                                                               \
                     "vldr s13, [%[p1], #4]\n\t"                                                                  \
                     "add %[p2], %[p1], %[t], lsl #2\n\t"                                                         \
                     "lsr %[t], %[q], #24\n\t"                                                                    \
                     "vldr s14, [%[p2], #8]\n\t"                                                                  \
                     "add %[p3], %[p2], %[t], lsl #2\n\t"                                                         \
                     "vldr s15, [%[p3], #12]\n\t"                                                                 \
                     "vfma.f32 s12, s8, %[xj]\n\t"                                                                \
                     "vfma.f32 s13, s9, %[xj]\n\t"                                                                \
                     "vfma.f32 s14, s10, %[xj]\n\t"                                                               \
                     "vfma.f32 s15, s11, %[xj]\n\t"                                                               \
                     "vstr s12, [%[p]]\n\t"                                                                       \
                     "vstr s13, [%[p1], #4]\n\t"                                                                  \
                     "vstr s14, [%[p2], #8]\n\t"                                                                  \
                     "vstr s15, [%[p3], #12]\n\t"                                                                 \
                     "add %[p], %[p3], #16\n\t"                                                                   \
                     : [q] "=&r"(q_), [t] "=&r"(t_), [p] "+&r"(p), [p1] "=&r"(p1_), [p2] "=&r"(p2_),             \
                       [p3] "=&r"(p3_), [c] "+&r"(c), [v] "+&r"(v)                                                 \
                     : [xj] "t"(xj)                                                                              \
                     : "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "memory");                           \
  } while (0)
#else
#define PRUNEC_RCSC_STEP4(p, c, v, xj)                                                                           \
  do {                                                                                                           \
    uint32_t q_;                                                                                                 \
    float *p0_, *p1_, *p2_, *p3_;                                                                                \
    float a0_, a1_, a2_, a3_;                                                                                    \
    memcpy(&q_, (c), 4);                                                                                         \
    PRUNEC_RCSC_LE32(q_);                                                                                        \
    p0_ = (p) + (q_ & 0xFFu);                                                                                    \
    p1_ = p0_ + ((q_ >> 8) & 0xFFu);                                                                             \
    p2_ = p1_ + ((q_ >> 16) & 0xFFu);                                                                            \
    p3_ = p2_ + (q_ >> 24);                                                                                      \
    a0_ = p0_[0], a1_ = p1_[1], a2_ = p2_[2], a3_ = p3_[3];                                                      \
    p0_[0] = __builtin_fmaf((v)[0], (xj), a0_);                                                                  \
    p1_[1] = __builtin_fmaf((v)[1], (xj), a1_);                                                                  \
    p2_[2] = __builtin_fmaf((v)[2], (xj), a2_);                                                                  \
    p3_[3] = __builtin_fmaf((v)[3], (xj), a3_);                                                                  \
    (p) = p3_ + 4;                                                                                               \
    (c) += 4;                                                                                                    \
    (v) += 4;                                                                                                    \
  } while (0)
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PRUNEC_RCSC_LE32(q) ((q) = __builtin_bswap32(q))
#else
#define PRUNEC_RCSC_LE32(q) ((void)0)
#endif

PRUNEC_ALWAYS_INLINE void prunec_rcsc_fma_b8(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    const uint32_t end = ptr[j + 1];
    uint32_t e = ptr[j];
    const float *v = w->values + e;
    const uint8_t *c = w->index + e, *cend;
    float *p = y; /* y + out(previous entry) + 1 */
    if (xj == 0.0f) {
      continue;
    }
    for (cend = c + ((end - e) & ~3u); c != cend;) {
      PRUNEC_RCSC_STEP4(p, c, v, xj);
    }
    e = end - ((end - e) & 3u);
    for (; e < end; e++) {
      p += *c++;
      *p = __builtin_fmaf(*v++, xj, *p);
      p++;
    }
  }
}

/* The whole kernel around it, for 8-bit codes: y = bias, the scatter, the clamp. */
PRUNEC_ALWAYS_INLINE void prunec_rcsc_fma(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                          float out_min, float out_max) {
  const uint32_t n = w->cols;
  prunec_rcsc_start(y, bias, n);
  prunec_rcsc_fma_b8(w, x, y);
  prunec_rcsc_finish(y, n, out_min, out_max);
}

#endif /* PRUNEC_RCSC_FMA_H */
