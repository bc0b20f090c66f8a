/*
 * Sparse fc and conv2d over relative-indexed CSR for Cortex-M with a single-precision FPU (M4F, M7, M33,
 * M55 scalar path). Twins of the portable kernels. Written for an in-order core that issues one load per
 * cycle (NOTES.md, "Cortex-M4 instruction counts"):
 *
 * fc: codes are decoded on the fly, 4 entries per step. One integer load fetches the 4 codes (8-bit: one
 * word; 4-bit: one halfword; 16-bit: two words; unaligned loads are legal on Armv7-M and later), the 4
 * values come from consecutive addresses (one VLDM), and x is walked with a pointer `xp` kept at
 * x + col(prev) + 1 - k for the k-th entry of the step, so entry k is read as xp[k]: each x load is an FPU
 * load with an immediate offset after one add of the code (the FPU load has no register-offset form).
 * Two accumulators alternate to cover the VFMA latency. b = 5, 6, 7 (what size-first builds pick for fc layers)
 * run groups of 8 entries with the x pointer walked by VLDM with writeback (~4.9 instructions per entry, see
 * "Other widths" below); the other widths (1, 2, 3, 9 .. 15) decode code by code in C.
 *
 * conv2d (NCHW, batch 1): direct, per output channel; its nonzeros are decoded (96 at a time, fillers
 * dropped, division-free through a per-call tap table; any index width) into (weight, input offset, ky*dil_h,
 * kx*dil_w).
 * Interior pairs of output rows with stride_w 1 run 2 x 8 register tiles (asm: 16 accumulators in s16-s31, one
 * VLDM of 8 inputs and 8 VFMA per row and tap). The other pixels whose taps all read inside their input row (any
 * stride_w: strided convolutions, planes too narrow for a tile, column tails, border rows) run in 8- or 4-pixel
 * runs along the row with one input-row check per tap; border columns of the interior rows in runs down the
 * column with one column check per tap; only corner pixels and narrow remainders are checked tap by tap (before,
 * every pixel outside the tiles was: Cortex-M4 ResNet-8 at 80 % 26.6 M -> 14.2 M instructions per inference,
 * MobileNetV1-0.25 23.8 M -> 16.2 M, DS-CNN 9.4 M -> 7.5 M, for ~4 KB more code; benchmarks/bench_tiny.py --arm
 * cortex-m4). Runs are 8, 4, 2 or 1 pixels long, so that an interior pixel is never checked tap by tap. prunec_f32_conv2d_dense__cortexm runs the same
 * tiles over every weight.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_CORTEXM_FPU
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_CORTEXM_CHUNK 96u /* taps decoded per pass: 1.5 KB of stack (+ 0.8 KB tap table) */

typedef uint32_t __attribute__((aligned(1), may_alias)) prunec_cortexm_u32u;
typedef uint16_t __attribute__((aligned(1), may_alias)) prunec_cortexm_u16u;

static inline __attribute__((always_inline)) void prunec_cortexm_fc_rows(const prunec_rcsr_f32 *w,
                                                                        const float *bias, const float *x,
                                                                        float *y, float lo, float hi,
                                                                        const uint32_t bits) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    const uint32_t end = row_ptr[r + 1];
    uint32_t e = row_ptr[r];
    const float *xp = x; /* x + col(previous entry) + 1 */
    float a0 = bias != NULL ? bias[r] : 0.0f, a1 = 0.0f;
    if (bits == 4 && (e & 1u) && e < end) {
      xp += prunec_rcsr_code(index, e, 4);
      a0 = __builtin_fmaf(values[e], xp[0], a0);
      xp += 1;
      e++;
    }
    for (; e + 4 <= end; e += 4) {
      const float *v = values + e;
      uint32_t c0, c1, c2, c3;
      float x0, x1, x2, x3;
      if (bits == 8) {
        const uint32_t q = *(const prunec_cortexm_u32u *)(index + e);
        c0 = q & 0xFFu;
        c1 = (q >> 8) & 0xFFu;
        c2 = (q >> 16) & 0xFFu;
        c3 = q >> 24;
      } else if (bits == 16) {
        const uint32_t q0 = *(const prunec_cortexm_u32u *)(index + 2u * e);
        const uint32_t q1 = *(const prunec_cortexm_u32u *)(index + 2u * e + 4u);
        c0 = q0 & 0xFFFFu;
        c1 = q0 >> 16;
        c2 = q1 & 0xFFFFu;
        c3 = q1 >> 16;
      } else {
        const uint32_t q = *(const prunec_cortexm_u16u *)(index + (e >> 1));
        c0 = q & 0x0Fu;
        c1 = (q >> 4) & 0x0Fu;
        c2 = (q >> 8) & 0x0Fu;
        c3 = q >> 12;
      }
      xp += c0;
      x0 = xp[0];
      xp += c1;
      x1 = xp[1];
      xp += c2;
      x2 = xp[2];
      xp += c3;
      x3 = xp[3];
      xp += 4;
      a0 = __builtin_fmaf(v[0], x0, a0);
      a1 = __builtin_fmaf(v[1], x1, a1);
      a0 = __builtin_fmaf(v[2], x2, a0);
      a1 = __builtin_fmaf(v[3], x3, a1);
    }
    for (; e < end; e++) {
      xp += prunec_rcsr_code(index, e, bits);
      a0 = __builtin_fmaf(values[e], xp[0], a0);
      xp += 1;
    }
    a0 += a1;
    a0 = a0 < lo ? lo : a0;
    y[r] = a0 > hi ? hi : a0;
  }
}

/*
 * b = 8 and b = 16: x is read at a running column `c` (the column after the previous entry, 0 at the start of
 * a row) from 4 base pointers x, x+1, x+2, x+3: entry k of a group of 4 adds its code to c and reads
 * xk[c] = x[c + k], and c += 4 after the group. On Armv7E-M and later each entry is one UXTAB/UXTAH (extract
 * the code and add it), one register-offset LDR of x[c + k] and half a VMOV (two core registers into two
 * FPU registers; the FPU load has no register-offset form), plus one VFMA; a group of 8 also costs two code
 * loads, one VLDM of 8 values, two `c += 4` and the loop's compare and branch: 35 instructions for 8
 * nonzeros (~4.4 per nonzero). GCC does not find UXTAB + LDR + paired VMOV + VLDM from C (7.6 per nonzero
 * measured), hence the inline assembly; the C steps after it compute the same in the same order and are
 * used with PRUNEC_CORTEXM_NO_ASM or without a DSP-capable Thumb-2 GCC-compatible compiler.
 */
#if defined(__GNUC__) && defined(__thumb2__) && defined(__ARM_FEATURE_DSP) && !defined(PRUNEC_CORTEXM_NO_ASM)
#define PRUNEC_CORTEXM_X4_OPERANDS                                                                             \
  [c] "+r"(c), [ip] "+r"(ip), [vp] "+r"(vp), [a0] "+t"(a0), [a1] "+t"(a1), [q0] "=&r"(q0), [t0] "=&r"(t0),       \
      [t1] "=&r"(t1)

/* 8 entries, b = 8: a0 += entries 0, 2, 4, 6; a1 += entries 1, 3, 5, 7 (in that order). */
static inline __attribute__((always_inline)) void prunec_cortexm_b8_x8(const uint8_t **ipp, const float **vpp,
                                                                      uint32_t *cp, const float *x, float *a0p,
                                                                      float *a1p) {
  const uint8_t *ip = *ipp;
  const float *vp = *vpp;
  uint32_t c = *cp, q0, q1, t0, t1;
  float a0 = *a0p, a1 = *a1p;
  __asm__("ldr %[q0], [%[ip]], #4\n\t"
          "ldr %[q1], [%[ip]], #4\n\t"
          "vldmia %[vp]!, {s16-s23}\n\t"
          "uxtab %[c], %[c], %[q0]\n\t"
          "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
          "uxtab %[c], %[c], %[q0], ror #8\n\t"
          "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
          "vmov s24, s25, %[t0], %[t1]\n\t"
          "uxtab %[c], %[c], %[q0], ror #16\n\t"
          "ldr %[t0], [%[x2], %[c], lsl #2]\n\t"
          "uxtab %[c], %[c], %[q0], ror #24\n\t"
          "ldr %[t1], [%[x3], %[c], lsl #2]\n\t"
          "vfma.f32 %[a0], s16, s24\n\t"
          "vfma.f32 %[a1], s17, s25\n\t"
          "vmov s26, s27, %[t0], %[t1]\n\t"
          "add %[c], %[c], #4\n\t"
          "uxtab %[c], %[c], %[q1]\n\t"
          "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
          "uxtab %[c], %[c], %[q1], ror #8\n\t"
          "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
          "vfma.f32 %[a0], s18, s26\n\t"
          "vfma.f32 %[a1], s19, s27\n\t"
          "vmov s28, s29, %[t0], %[t1]\n\t"
          "uxtab %[c], %[c], %[q1], ror #16\n\t"
          "ldr %[t0], [%[x2], %[c], lsl #2]\n\t"
          "uxtab %[c], %[c], %[q1], ror #24\n\t"
          "ldr %[t1], [%[x3], %[c], lsl #2]\n\t"
          "vfma.f32 %[a0], s20, s28\n\t"
          "vfma.f32 %[a1], s21, s29\n\t"
          "vmov s30, s31, %[t0], %[t1]\n\t"
          "add %[c], %[c], #4\n\t"
          "vfma.f32 %[a0], s22, s30\n\t"
          "vfma.f32 %[a1], s23, s31"
          : PRUNEC_CORTEXM_X4_OPERANDS, [q1] "=&r"(q1)
          : [x0] "r"(x), [x1] "r"(x + 1), [x2] "r"(x + 2), [x3] "r"(x + 3), "m"(*(const struct { uint8_t v[8]; } *)ip),
            "m"(*(const struct { float v[8]; } *)vp), "m"(*(const struct { float v[1]; } *)x)
          : "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30",
            "s31", "memory");
  *ipp = ip;
  *vpp = vp;
  *cp = c;
  *a0p = a0;
  *a1p = a1;
}

/* 4 entries with codes in the 4 bytes (b = 8) or 2 halfwords of 2 words (b = 16). */
static inline __attribute__((always_inline)) void prunec_cortexm_x4(const uint8_t **ipp, const float **vpp,
                                                                   uint32_t *cp, const float *x, float *a0p,
                                                                   float *a1p, const uint32_t bits) {
  const uint8_t *ip = *ipp;
  const float *vp = *vpp;
  uint32_t c = *cp, q0, t0, t1;
  float a0 = *a0p, a1 = *a1p;
  if (bits == 8) {
    __asm__("ldr %[q0], [%[ip]], #4\n\t"
            "vldmia %[vp]!, {s16-s19}\n\t"
            "uxtab %[c], %[c], %[q0]\n\t"
            "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
            "uxtab %[c], %[c], %[q0], ror #8\n\t"
            "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
            "vmov s24, s25, %[t0], %[t1]\n\t"
            "uxtab %[c], %[c], %[q0], ror #16\n\t"
            "ldr %[t0], [%[x2], %[c], lsl #2]\n\t"
            "uxtab %[c], %[c], %[q0], ror #24\n\t"
            "ldr %[t1], [%[x3], %[c], lsl #2]\n\t"
            "vfma.f32 %[a0], s16, s24\n\t"
            "vfma.f32 %[a1], s17, s25\n\t"
            "vmov s26, s27, %[t0], %[t1]\n\t"
            "add %[c], %[c], #4\n\t"
            "vfma.f32 %[a0], s18, s26\n\t"
            "vfma.f32 %[a1], s19, s27"
            : PRUNEC_CORTEXM_X4_OPERANDS
            : [x0] "r"(x), [x1] "r"(x + 1), [x2] "r"(x + 2), [x3] "r"(x + 3), "m"(*(const struct { uint8_t v[4]; } *)ip),
              "m"(*(const struct { float v[4]; } *)vp), "m"(*(const struct { float v[1]; } *)x)
            : "s16", "s17", "s18", "s19", "s24", "s25", "s26", "s27", "memory");
  } else {
    __asm__("ldr %[q0], [%[ip]], #4\n\t"
            "vldmia %[vp]!, {s16-s19}\n\t"
            "uxtah %[c], %[c], %[q0]\n\t"
            "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
            "uxtah %[c], %[c], %[q0], ror #16\n\t"
            "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
            "ldr %[q0], [%[ip]], #4\n\t"
            "vmov s24, s25, %[t0], %[t1]\n\t"
            "uxtah %[c], %[c], %[q0]\n\t"
            "ldr %[t0], [%[x2], %[c], lsl #2]\n\t"
            "uxtah %[c], %[c], %[q0], ror #16\n\t"
            "ldr %[t1], [%[x3], %[c], lsl #2]\n\t"
            "vfma.f32 %[a0], s16, s24\n\t"
            "vfma.f32 %[a1], s17, s25\n\t"
            "vmov s26, s27, %[t0], %[t1]\n\t"
            "add %[c], %[c], #4\n\t"
            "vfma.f32 %[a0], s18, s26\n\t"
            "vfma.f32 %[a1], s19, s27"
            : PRUNEC_CORTEXM_X4_OPERANDS
            : [x0] "r"(x), [x1] "r"(x + 1), [x2] "r"(x + 2), [x3] "r"(x + 3), "m"(*(const struct { uint8_t v[8]; } *)ip),
              "m"(*(const struct { float v[4]; } *)vp), "m"(*(const struct { float v[1]; } *)x)
            : "s16", "s17", "s18", "s19", "s24", "s25", "s26", "s27", "memory");
  }
  *ipp = ip;
  *vpp = vp;
  *cp = c;
  *a0p = a0;
  *a1p = a1;
}

/* 2 entries (b = 8: one halfword of codes; b = 16: one word). */
static inline __attribute__((always_inline)) void prunec_cortexm_x2(const uint8_t **ipp, const float **vpp,
                                                                   uint32_t *cp, const float *x, float *a0p,
                                                                   float *a1p, const uint32_t bits) {
  const uint8_t *ip = *ipp;
  const float *vp = *vpp;
  uint32_t c = *cp, q0, t0, t1;
  float a0 = *a0p, a1 = *a1p;
  if (bits == 8) {
    __asm__("ldrh %[q0], [%[ip]], #2\n\t"
            "vldmia %[vp]!, {s16-s17}\n\t"
            "uxtab %[c], %[c], %[q0]\n\t"
            "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
            "uxtab %[c], %[c], %[q0], ror #8\n\t"
            "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
            "vmov s24, s25, %[t0], %[t1]\n\t"
            "add %[c], %[c], #2\n\t"
            "vfma.f32 %[a0], s16, s24\n\t"
            "vfma.f32 %[a1], s17, s25"
            : PRUNEC_CORTEXM_X4_OPERANDS
            : [x0] "r"(x), [x1] "r"(x + 1), "m"(*(const struct { uint8_t v[2]; } *)ip), "m"(*(const struct { float v[2]; } *)vp),
              "m"(*(const struct { float v[1]; } *)x)
            : "s16", "s17", "s24", "s25", "memory");
  } else {
    __asm__("ldr %[q0], [%[ip]], #4\n\t"
            "vldmia %[vp]!, {s16-s17}\n\t"
            "uxtah %[c], %[c], %[q0]\n\t"
            "ldr %[t0], [%[x0], %[c], lsl #2]\n\t"
            "uxtah %[c], %[c], %[q0], ror #16\n\t"
            "ldr %[t1], [%[x1], %[c], lsl #2]\n\t"
            "vmov s24, s25, %[t0], %[t1]\n\t"
            "add %[c], %[c], #2\n\t"
            "vfma.f32 %[a0], s16, s24\n\t"
            "vfma.f32 %[a1], s17, s25"
            : PRUNEC_CORTEXM_X4_OPERANDS
            : [x0] "r"(x), [x1] "r"(x + 1), "m"(*(const struct { uint8_t v[4]; } *)ip), "m"(*(const struct { float v[2]; } *)vp),
              "m"(*(const struct { float v[1]; } *)x)
            : "s16", "s17", "s24", "s25", "memory");
  }
  *ipp = ip;
  *vpp = vp;
  *cp = c;
  *a0p = a0;
  *a1p = a1;
}
#undef PRUNEC_CORTEXM_X4_OPERANDS
#else
/* 4 entries with codes in the 4 bytes (b = 8) or 2 halfwords of 2 words (b = 16). */
static inline __attribute__((always_inline)) void prunec_cortexm_x4(const uint8_t **ipp, const float **vpp,
                                                                   uint32_t *cp, const float *x, float *a0p,
                                                                   float *a1p, const uint32_t bits) {
  const float *v = *vpp;
  uint32_t c = *cp, c0, c1, c2, c3;
  if (bits == 8) {
    const uint32_t q = *(const prunec_cortexm_u32u *)*ipp;
    c0 = q & 0xFFu;
    c1 = (q >> 8) & 0xFFu;
    c2 = (q >> 16) & 0xFFu;
    c3 = q >> 24;
    *ipp += 4;
  } else {
    const uint32_t q0 = *(const prunec_cortexm_u32u *)*ipp;
    const uint32_t q1 = *(const prunec_cortexm_u32u *)(*ipp + 4);
    c0 = q0 & 0xFFFFu;
    c1 = q0 >> 16;
    c2 = q1 & 0xFFFFu;
    c3 = q1 >> 16;
    *ipp += 8;
  }
  c += c0;
  *a0p = __builtin_fmaf(v[0], x[c], *a0p);
  c += c1;
  *a1p = __builtin_fmaf(v[1], x[c + 1], *a1p);
  c += c2;
  *a0p = __builtin_fmaf(v[2], x[c + 2], *a0p);
  c += c3;
  *a1p = __builtin_fmaf(v[3], x[c + 3], *a1p);
  *cp = c + 4;
  *vpp = v + 4;
}

/* 8 entries, b = 8: a0 += entries 0, 2, 4, 6; a1 += entries 1, 3, 5, 7 (in that order). */
static inline __attribute__((always_inline)) void prunec_cortexm_b8_x8(const uint8_t **ipp, const float **vpp,
                                                                      uint32_t *cp, const float *x, float *a0p,
                                                                      float *a1p) {
  prunec_cortexm_x4(ipp, vpp, cp, x, a0p, a1p, 8);
  prunec_cortexm_x4(ipp, vpp, cp, x, a0p, a1p, 8);
}

/* 2 entries (b = 8: one halfword of codes; b = 16: one word). */
static inline __attribute__((always_inline)) void prunec_cortexm_x2(const uint8_t **ipp, const float **vpp,
                                                                   uint32_t *cp, const float *x, float *a0p,
                                                                   float *a1p, const uint32_t bits) {
  const float *v = *vpp;
  const uint8_t *ip = *ipp;
  uint32_t c = *cp;
  if (bits == 8) {
    c += ip[0];
    *a0p = __builtin_fmaf(v[0], x[c], *a0p);
    c += ip[1];
    *a1p = __builtin_fmaf(v[1], x[c + 1], *a1p);
  } else {
    c += (uint32_t)ip[0] | ((uint32_t)ip[1] << 8);
    *a0p = __builtin_fmaf(v[0], x[c], *a0p);
    c += (uint32_t)ip[2] | ((uint32_t)ip[3] << 8);
    *a1p = __builtin_fmaf(v[1], x[c + 1], *a1p);
  }
  *ipp = ip + bits / 4u;
  *cp = c + 2;
  *vpp = v + 2;
}
#endif

/* Rows with b = 8 or 16 (see above): groups of 8 (b = 8) or 4, then 4 (b = 8), 2 and 1 entries. The rows' entries are
 * contiguous, so the code and value pointers simply carry on from one row to the next. */
static inline __attribute__((always_inline)) void prunec_cortexm_fc_rows_c(const prunec_rcsr_f32 *w,
                                                                          const float *bias, const float *x,
                                                                          float *y, float lo, float hi,
                                                                          const uint32_t bits) {
  static const float zero = 0.0f;
  const uint32_t code_bytes = bits / 8u;
  const uint32_t *rp = w->row_ptr;
  const uint32_t *const rp_end = rp + w->rows;
  const uint8_t *ip = w->index + (size_t)rp[0] * code_bytes;
  const float *vp = w->values + rp[0];
  const float *bp = bias != NULL ? bias : &zero;
  const size_t bstep = bias != NULL ? 1u : 0u;
  while (rp != rp_end) {
    const uint32_t n = rp[1] - rp[0];
    uint32_t c = 0; /* column after the previous entry */
    float a0 = *bp, a1 = 0.0f;
    rp++;
    bp += bstep;
    if (bits == 8) {
      const float *const v8 = vp + (n & ~7u);
      while (vp != v8) {
        prunec_cortexm_b8_x8(&ip, &vp, &c, x, &a0, &a1);
      }
      if (n & 4u) {
        prunec_cortexm_x4(&ip, &vp, &c, x, &a0, &a1, 8);
      }
    } else {
      const float *const v4 = vp + (n & ~3u);
      while (vp != v4) {
        prunec_cortexm_x4(&ip, &vp, &c, x, &a0, &a1, 16);
      }
    }
    if (n & 2u) {
      prunec_cortexm_x2(&ip, &vp, &c, x, &a0, &a1, bits);
    }
    if (n & 1u) {
      c += bits == 8 ? ip[0] : (uint32_t)ip[0] | ((uint32_t)ip[1] << 8);
      ip += code_bytes;
      a0 = __builtin_fmaf(vp[0], x[c], a0);
      vp++;
    }
    a0 += a1;
    a0 = a0 < lo ? lo : a0;
    *y++ = a0 > hi ? hi : a0;
  }
}

#if PRUNEC_RCSR_ODD_WIDTHS /* prunec_config.h: a build with only 4/8/16-bit layers leaves these out */
/*
 * Other widths. b = 5, 6, 7 (the widths a size-first encoding picks for fc layers): 8 entries take exactly b
 * bytes, so the groups of 8 entries of a row all start at the same bit s (0..7) of a byte. A group's codes are
 * read as two or three 32-bit words at fixed byte offsets from its first byte (b = 5: 0, 2; 6: 0, 3; 7: 0, 2,
 * 4), each shifted right by s once; code j is then the b bits at a fixed position of one of them (one UBFX).
 * x is walked with a pointer p (x + column after the previous entry - k for entry k of the group): per entry
 * UBFX, ADD p, p, code, LSL #2, then VLDR of p[k] straight into the FPU (its immediate offset adds the k) and
 * VFMA: 4 instructions, against 3.5 for UXTAB + LDR + half a VMOV + VFMA at b = 8. Per group of 8 also the word
 * loads and shifts (b = 5, 6: 2 + 2), one VLDM of 8 values, p += 8 and the loop's compare and branch: 40
 * instructions (b = 7: 42). Other widths (1, 2, 3, 9 .. 15) decode code by code in C (prunec_cortexm_fc_any).
 *
 * A row of n entries runs as ceil(n / 8) groups ending at its last entry: its first group starts k = -n mod 8
 * entries before the row (codes and values of the previous row are loaded, not used) and is entered at entry k
 * (TBB). The words never reach past the group's last byte, except one byte when s = 0: that byte holds the next
 * entry's code, so only a row ending at the last entry of the layer with s = 0 (and a first group that would
 * start before entry 0) takes the generic C loop below instead. The C steps (PRUNEC_CORTEXM_NO_ASM, compilers
 * without GNU asm) read the same words in the same order.
 */

/* Byte offset (from the group's first byte) of the word that holds code j of a group, b = 5, 6, 7. */
static inline __attribute__((always_inline)) uint32_t prunec_cortexm_odd_off(const uint32_t b, const uint32_t j) {
  if (b == 5u) {
    return j < 5u ? 0u : 2u;
  }
  if (b == 6u) {
    return j < 4u ? 0u : 3u;
  }
  return j < 3u ? 0u : j < 5u ? 2u : 4u;
}

#if defined(__GNUC__) && defined(__thumb2__) && !defined(PRUNEC_CORTEXM_NO_ASM)
/* Entry K of a group: its code is bits LSB .. LSB+B-1 of word W; x into sK (VLDM with writeback: p += 1 entry),
 * value s(16+K), accumulator A. */
#define PRUNEC_CORTEXM_E(K, VK, W, LSB, B, A)                                                                  \
  "1" #K ":\n\t"                                                                                               \
  "ubfx %[t], %[" W "], #" #LSB ", #" #B "\n\t"                                                                \
  "add %[p], %[p], %[t], lsl #2\n\t"                                                                           \
  "vldmia %[p]!, {s" #K "}\n\t"                                                                                \
  "vfma.f32 %[" A "], s" #VK ", s" #K "\n"
/* The groups of one row: LOADS reads a group's words (advancing ip by b bytes) and 8 values and shifts the
 * words right by s, ENTRIES are the 8 entry blocks (labels 10 .. 17); the first group is entered at entry k (t
 * holds k until the jump). The arguments after ENTRIES: the word registers. */
#define PRUNEC_CORTEXM_ODD_ASM(LOADS, ENTRIES, ...)                                                            \
  __asm__(LOADS                                                                                                \
          "tbb [pc, %[t]]\n"                                                                                   \
          "9:\n\t"                                                                                             \
          ".byte (10f-9b)/2, (11f-9b)/2, (12f-9b)/2, (13f-9b)/2, (14f-9b)/2, (15f-9b)/2, (16f-9b)/2, (17f-9b)/2\n\t" \
          ".p2align 1\n"                                                                                       \
          "1:\n\t" LOADS ENTRIES                                                                               \
          "cmp %[vp], %[ve]\n\t"                                                                               \
          "bne 1b"                                                                                             \
          : [p] "+r"(p), [ip] "+r"(ip), [vp] "+r"(vp), [t] "+r"(k), __VA_ARGS__, [a0] "+t"(a0), [a1] "+t"(a1)         \
          : [s] "r"(s), [ve] "r"(ve)                                                                           \
          : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s16", "s17", "s18", "s19", "s20", "s21", "s22",     \
            "s23", "cc", "memory")
#define PRUNEC_CORTEXM_VLDM "vldmia %[vp]!, {s16-s23}\n\t"
#define PRUNEC_CORTEXM_SHR(W) "lsr %[" W "], %[" W "], %[s]\n\t"

static inline __attribute__((always_inline)) void prunec_cortexm_odd(const uint8_t **ipp, uint32_t s,
                                                                    const float **vpp, const float *ve,
                                                                    const float *x, uint32_t k, float *a0p,
                                                                    float *a1p, const uint32_t b) {
  const uint8_t *ip = *ipp;
  const float *vp = *vpp, *p = x;
  uint32_t qa, qm, qb;
  float a0 = *a0p, a1 = *a1p;
  if (b == 6u) {
    PRUNEC_CORTEXM_ODD_ASM("ldr %[qb], [%[ip], #3]\n\t"
                           "ldr %[qa], [%[ip]], #6\n\t" PRUNEC_CORTEXM_VLDM PRUNEC_CORTEXM_SHR("qa")
                               PRUNEC_CORTEXM_SHR("qb"),
                           PRUNEC_CORTEXM_E(0, 16, "qa", 0, 6, "a0") PRUNEC_CORTEXM_E(1, 17, "qa", 6, 6, "a1")
                               PRUNEC_CORTEXM_E(2, 18, "qa", 12, 6, "a0") PRUNEC_CORTEXM_E(3, 19, "qa", 18, 6, "a1")
                                   PRUNEC_CORTEXM_E(4, 20, "qb", 0, 6, "a0") PRUNEC_CORTEXM_E(5, 21, "qb", 6, 6, "a1")
                                       PRUNEC_CORTEXM_E(6, 22, "qb", 12, 6, "a0")
                                           PRUNEC_CORTEXM_E(7, 23, "qb", 18, 6, "a1"),
                           [qa] "=&r"(qa), [qb] "=&r"(qb));
  } else if (b == 5u) {
    PRUNEC_CORTEXM_ODD_ASM("ldr %[qb], [%[ip], #2]\n\t"
                           "ldr %[qa], [%[ip]], #5\n\t" PRUNEC_CORTEXM_VLDM PRUNEC_CORTEXM_SHR("qa")
                               PRUNEC_CORTEXM_SHR("qb"),
                           PRUNEC_CORTEXM_E(0, 16, "qa", 0, 5, "a0") PRUNEC_CORTEXM_E(1, 17, "qa", 5, 5, "a1")
                               PRUNEC_CORTEXM_E(2, 18, "qa", 10, 5, "a0") PRUNEC_CORTEXM_E(3, 19, "qa", 15, 5, "a1")
                                   PRUNEC_CORTEXM_E(4, 20, "qa", 20, 5, "a0") PRUNEC_CORTEXM_E(5, 21, "qb", 9, 5, "a1")
                                       PRUNEC_CORTEXM_E(6, 22, "qb", 14, 5, "a0")
                                           PRUNEC_CORTEXM_E(7, 23, "qb", 19, 5, "a1"),
                           [qa] "=&r"(qa), [qb] "=&r"(qb));
  } else {
    PRUNEC_CORTEXM_ODD_ASM("ldr %[qm], [%[ip], #2]\n\t"
                           "ldr %[qb], [%[ip], #4]\n\t"
                           "ldr %[qa], [%[ip]], #7\n\t" PRUNEC_CORTEXM_VLDM PRUNEC_CORTEXM_SHR("qa")
                               PRUNEC_CORTEXM_SHR("qm") PRUNEC_CORTEXM_SHR("qb"),
                           PRUNEC_CORTEXM_E(0, 16, "qa", 0, 7, "a0") PRUNEC_CORTEXM_E(1, 17, "qa", 7, 7, "a1")
                               PRUNEC_CORTEXM_E(2, 18, "qa", 14, 7, "a0") PRUNEC_CORTEXM_E(3, 19, "qm", 5, 7, "a1")
                                   PRUNEC_CORTEXM_E(4, 20, "qm", 12, 7, "a0") PRUNEC_CORTEXM_E(5, 21, "qb", 3, 7, "a1")
                                       PRUNEC_CORTEXM_E(6, 22, "qb", 10, 7, "a0")
                                           PRUNEC_CORTEXM_E(7, 23, "qb", 17, 7, "a1"),
                           [qa] "=&r"(qa), [qm] "=&r"(qm), [qb] "=&r"(qb));
  }
  (void)qm;
  *ipp = ip;
  *vpp = vp;
  *a0p = a0;
  *a1p = a1;
}
#undef PRUNEC_CORTEXM_E
#undef PRUNEC_CORTEXM_ODD_ASM
#undef PRUNEC_CORTEXM_VLDM
#undef PRUNEC_CORTEXM_SHR
#else
static inline __attribute__((always_inline)) void prunec_cortexm_odd(const uint8_t **ipp, uint32_t s,
                                                                    const float **vpp, const float *ve,
                                                                    const float *x, uint32_t k, float *a0p,
                                                                    float *a1p, const uint32_t b) {
  const uint8_t *ip = *ipp;
  const float *vp = *vpp, *xp = x; /* x + column after the previous entry */
  float a0 = *a0p, a1 = *a1p;
  do {
    for (; k < 8u; k++) {
      const uint32_t o = prunec_cortexm_odd_off(b, k);
      const uint32_t q = *(const prunec_cortexm_u32u *)(ip + o) >> s;
      xp += (q >> (k * b - 8u * o)) & ((1u << b) - 1u);
      if (k & 1u) {
        a1 = __builtin_fmaf(vp[k], xp[0], a1);
      } else {
        a0 = __builtin_fmaf(vp[k], xp[0], a0);
      }
      xp++;
    }
    k = 0;
    vp += 8;
    ip += b;
  } while (vp != ve);
  *ipp = ip;
  *vpp = vp;
  *a0p = a0;
  *a1p = a1;
}
#endif

/* Entries [e, end) of a row, any width b in 1..16, code by code (bytes read one by one, none past the code). */
static void prunec_cortexm_fc_any(const uint8_t *index, uint32_t e, uint32_t end, const float *values,
                                  const float *x, float *ap, uint32_t b) {
  const uint32_t mask = (1u << b) - 1u;
  uint32_t bit = e * b;
  const float *xp = x; /* x + column after the previous entry */
  float a = *ap;
  for (; e < end; e++, bit += b) {
    const uint8_t *p = index + (bit >> 3);
    const uint32_t sh = bit & 7u;
    uint32_t v = p[0];
    if (sh + b > 8u) {
      v |= (uint32_t)p[1] << 8;
      if (sh + b > 16u) {
        v |= (uint32_t)p[2] << 16;
      }
    }
    xp += (v >> sh) & mask;
    a = __builtin_fmaf(values[e], xp[0], a);
    xp++;
  }
  *ap = a;
}

/* Rows of width b = 5, 6 or 7 in groups of 8 (above). (ip, s, vp) is the position of entry e0 (its code's byte
 * and bit, its value), carried from row to row (a row's groups end at its last entry); a row's first group
 * starts k entries earlier, 64 - k*b + s >= 8 bits back from ip + 8 (no signed shift needed). */
static inline __attribute__((always_inline)) void prunec_cortexm_fc_rows_odd(const prunec_rcsr_f32 *w,
                                                                            const float *bias, const float *x,
                                                                            float *y, float lo, float hi,
                                                                            const uint32_t b) {
  static const float zero = 0.0f;
  const uint32_t *rp = w->row_ptr;
  const uint32_t *const rp_end = rp + w->rows;
  const uint32_t total = *rp_end;
  const uint8_t *const index = w->index;
  const float *const values = w->values;
  const float *bp = bias != NULL ? bias : &zero;
  const size_t bstep = bias != NULL ? 1u : 0u;
  const uint8_t *ip = index + (size_t)(rp[0] >> 3) * b + (((rp[0] & 7u) * b) >> 3);
  const float *vp = values + rp[0];
  uint32_t s = ((rp[0] & 7u) * b) & 7u;
  for (; rp != rp_end; rp++, bp += bstep) {
    const uint32_t e0 = rp[0], end = rp[1];
    float a0 = *bp, a1 = 0.0f;
    if (end != e0) {
      const uint32_t k = (e0 - end) & 7u; /* entries of the first group before the row */
      const uint32_t u = s + 64u - k * b; /* the first group's bit, counted from ip - 8 */
      if (((u & 7u) != 0u || end != total) && e0 >= k) {
        const float *const ve = vp + (end - e0);
        ip += (ptrdiff_t)(u >> 3) - 8;
        s = u & 7u;
        vp -= k;
        prunec_cortexm_odd(&ip, s, &vp, ve, x, k, &a0, &a1, b);
      } else { /* a first group before entry 0, or one byte past the index array: code by code */
        prunec_cortexm_fc_any(index, e0, end, values, x, &a0, b);
        ip = index + (size_t)(end >> 3) * b + (((end & 7u) * b) >> 3);
        vp = values + end;
        s = ((end & 7u) * b) & 7u;
      }
    }
    a0 += a1;
    a0 = a0 < lo ? lo : a0;
    *y++ = a0 > hi ? hi : a0;
  }
}

/* Rows of any other width (1, 2, 3, 9 .. 15): prunec_cortexm_fc_any. */
static void prunec_cortexm_fc_rows_any(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                       float lo, float hi) {
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    float a = bias != NULL ? bias[r] : 0.0f;
    prunec_cortexm_fc_any(w->index, w->row_ptr[r], w->row_ptr[r + 1], w->values, x, &a, w->index_bits);
    a = a < lo ? lo : a;
    y[r] = a > hi ? hi : a;
  }
}
#endif /* PRUNEC_RCSR_ODD_WIDTHS */

void prunec_f32_fc_rcsr__cortexm(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                 float out_min, float out_max) {
  if (prunec_rcsr_bad_bits(w, y, w->rows)) {
    return;
  }
  switch (w->index_bits) {
    case 4:
      prunec_cortexm_fc_rows(w, bias, x, y, out_min, out_max, 4);
      break;
    case 8:
      prunec_cortexm_fc_rows_c(w, bias, x, y, out_min, out_max, 8);
      break;
    case 16:
      prunec_cortexm_fc_rows_c(w, bias, x, y, out_min, out_max, 16);
      break;
#if PRUNEC_RCSR_ODD_WIDTHS
    case 6:
      prunec_cortexm_fc_rows_odd(w, bias, x, y, out_min, out_max, 6);
      break;
    case 5:
      prunec_cortexm_fc_rows_odd(w, bias, x, y, out_min, out_max, 5);
      break;
    case 7:
      prunec_cortexm_fc_rows_odd(w, bias, x, y, out_min, out_max, 7);
      break;
    default:
      prunec_cortexm_fc_rows_any(w, bias, x, y, out_min, out_max);
      break;
#else
    default: /* not reached: prunec_rcsr_bad_bits took every other width */
      break;
#endif
  }
}

typedef struct prunec_cortexm_taps {
  float w[PRUNEC_CORTEXM_CHUNK];
  int32_t off[PRUNEC_CORTEXM_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_CORTEXM_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_CORTEXM_CHUNK];  /* kx*dil_w */
} prunec_cortexm_taps;

/* One output channel's geometry and epilogue, shared by the sparse and the dense kernel. */
typedef struct prunec_cortexm_conv {
  const float *xg; /* the channel's group of input planes */
  float *yp;       /* the output plane */
  prunec_conv_geom g; /* the plane's geometry (prunec_rcsr_util.h) */
  float b, out_min, out_max;
  float bb[8]; /* the bias, 8 times: a tile's starting row */
  int relu;    /* out_min == +0.0, out_max == +inf */
} prunec_cortexm_conv;

static void prunec_cortexm_conv_geometry(const prunec_conv2d_params *p, prunec_cortexm_conv *c, float out_min,
                                         float out_max) {
  prunec_conv_geom_init(p, &c->g);
  c->out_min = out_min;
  c->out_max = out_max;
  c->relu = out_min == 0.0f && !signbit(out_min) && out_max > 3.4028235e38f; /* not -0.0: a < -0 gives -0 */
}

static inline float prunec_cortexm_clamp(const prunec_cortexm_conv *c, float a) {
  a = a < c->out_min ? c->out_min : a;
  return a > c->out_max ? c->out_max : a;
}

/* A run of N (8, 4, 2 or 1, compile-time after inlining) output pixels ow .. ow+N-1 of row oh whose taps all read inside
 * their input row (ow .. ow+N-1 inside [ow_lo, ow_hi)), any stride_w: per tap one input-row check, then N loads
 * and FMAs. Each pixel sums its taps in order, as the tiles and the portable kernel do. */
static inline __attribute__((always_inline)) void prunec_cortexm_conv_run(const prunec_cortexm_conv *c,
                                                                         const prunec_cortexm_taps *t, uint32_t nt,
                                                                         const int N, const int32_t sw, int32_t iy0,
                                                                         float *yr, int32_t ow, int first, int final) {
  const uint32_t in_h = (uint32_t)c->g.in_h;
  const float *xb = c->xg + ((ptrdiff_t)iy0 * c->g.in_w - c->g.pw + (ptrdiff_t)ow * sw);
  float a0, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f, a7 = 0.0f;
  uint32_t k;
  if (first) {
    a0 = c->b;
    if (N > 1) {
      a1 = c->b;
    }
    if (N > 2) {
      a2 = a3 = c->b;
    }
    if (N > 4) {
      a4 = a5 = a6 = a7 = c->b;
    }
  } else {
    a0 = yr[ow];
    if (N > 1) {
      a1 = yr[ow + 1];
    }
    if (N > 2) {
      a2 = yr[ow + 2], a3 = yr[ow + 3];
    }
    if (N > 4) {
      a4 = yr[ow + 4], a5 = yr[ow + 5], a6 = yr[ow + 6], a7 = yr[ow + 7];
    }
  }
  for (k = 0; k < nt; k++) {
    if ((uint32_t)(iy0 + t->dy[k]) < in_h) {
      const float *xs = xb + t->off[k];
      const float wk = t->w[k];
      a0 = __builtin_fmaf(wk, xs[0], a0);
      if (N > 1) {
        a1 = __builtin_fmaf(wk, xs[sw], a1);
      }
      if (N > 2) {
        a2 = __builtin_fmaf(wk, xs[2 * sw], a2);
        a3 = __builtin_fmaf(wk, xs[3 * sw], a3);
      }
      if (N > 4) {
        a4 = __builtin_fmaf(wk, xs[4 * sw], a4);
        a5 = __builtin_fmaf(wk, xs[5 * sw], a5);
        a6 = __builtin_fmaf(wk, xs[6 * sw], a6);
        a7 = __builtin_fmaf(wk, xs[7 * sw], a7);
      }
    }
  }
  if (final) {
    a0 = prunec_cortexm_clamp(c, a0);
    if (N > 1) {
      a1 = prunec_cortexm_clamp(c, a1);
    }
    if (N > 2) {
      a2 = prunec_cortexm_clamp(c, a2), a3 = prunec_cortexm_clamp(c, a3);
    }
    if (N > 4) {
      a4 = prunec_cortexm_clamp(c, a4), a5 = prunec_cortexm_clamp(c, a5);
      a6 = prunec_cortexm_clamp(c, a6), a7 = prunec_cortexm_clamp(c, a7);
    }
  }
  yr[ow] = a0;
  if (N > 1) {
    yr[ow + 1] = a1;
  }
  if (N > 2) {
    yr[ow + 2] = a2, yr[ow + 3] = a3;
  }
  if (N > 4) {
    yr[ow + 4] = a4, yr[ow + 5] = a5, yr[ow + 6] = a6, yr[ow + 7] = a7;
  }
}

/* The longest run (8, 4, 2 or 1 pixels, at most n) from ow: its length. stride_w 1 has its own instances, whose loads
 * take immediate offsets. */
static inline __attribute__((always_inline)) int32_t prunec_cortexm_conv_runs(const prunec_cortexm_conv *c,
                                                                             const prunec_cortexm_taps *t,
                                                                             uint32_t nt, int32_t n, int32_t sw,
                                                                             int32_t iy0, float *yr, int32_t ow,
                                                                             int first, int final) {
#define PRUNEC_CM_RUNS(SW)                                                    \
  do {                                                                        \
    if (n >= 8) {                                                             \
      prunec_cortexm_conv_run(c, t, nt, 8, SW, iy0, yr, ow, first, final);    \
      return 8;                                                               \
    }                                                                         \
    if (n >= 4) {                                                             \
      prunec_cortexm_conv_run(c, t, nt, 4, SW, iy0, yr, ow, first, final);    \
      return 4;                                                               \
    }                                                                         \
    if (n >= 2) {                                                             \
      prunec_cortexm_conv_run(c, t, nt, 2, SW, iy0, yr, ow, first, final);    \
      return 2;                                                               \
    }                                                                         \
    prunec_cortexm_conv_run(c, t, nt, 1, SW, iy0, yr, ow, first, final);      \
    return 1;                                                                 \
  } while (0)
  if (sw == 1) {
    PRUNEC_CM_RUNS(1);
  }
  PRUNEC_CM_RUNS(sw);
#undef PRUNEC_CM_RUNS
}

/* Columns [ow, ow_end) of output row oh outside the register tiles (border rows and columns, planes too narrow for a
 * tile, stride_w > 1, column tails): pixels whose taps all read inside their input row ([ow_lo, ow_hi), any stride)
 * in runs of 8, then 4 (one input-row check per tap and run), the others one at a time with full bounds checks.
 * Strided convolutions and planes narrower than a tile ran every pixel through the checked path before (~12
 * instructions per MAC on Cortex-M4: ResNet-8, DS-CNN and MobileNet had most of their pixels there). */
static void prunec_cortexm_conv_row(const prunec_cortexm_conv *c, const prunec_cortexm_taps *t, uint32_t nt,
                                    int32_t oh, int32_t ow, int32_t ow_end, int first, int final) {
  const int32_t iy0 = oh * c->g.sh - c->g.ph, in_h = c->g.in_h, in_w = c->g.in_w, sw = c->g.sw;
  const int32_t run_end = ow_end < c->g.ow_hi ? ow_end : c->g.ow_hi;
  const float *xg = c->xg;
  const float b = c->b;
  float *yr = c->yp + (size_t)oh * (size_t)c->g.out_w;
  while (ow < ow_end) {
    uint32_t k;
    if (ow >= c->g.ow_lo && ow < run_end) {
      ow += prunec_cortexm_conv_runs(c, t, nt, run_end - ow, sw, iy0, yr, ow, first, final);
    } else {
      float a = first ? b : yr[ow];
      const int32_t ix0 = ow * sw - c->g.pw;
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k], ix = ix0 + t->dx[k];
        if ((uint32_t)iy < (uint32_t)in_h && (uint32_t)ix < (uint32_t)in_w) {
          a = __builtin_fmaf(t->w[k], xg[t->off[k] - t->dx[k] - t->dy[k] * in_w + (ptrdiff_t)iy * in_w + ix], a);
        }
      }
      yr[ow] = final ? prunec_cortexm_clamp(c, a) : a;
      ow += 1;
    }
  }
}

/* Output column ow (outside [ow_lo, ow_hi): a tap may read left or right of its input row) of the rows [oh0, oh1),
 * which all read inside the input's rows: runs of 8, then 4 rows, one column check per tap and run (the mirror of
 * prunec_cortexm_conv_run), then single pixels. */
static inline __attribute__((always_inline)) void prunec_cortexm_conv_colrun(const prunec_cortexm_conv *c,
                                                                            const prunec_cortexm_taps *t,
                                                                            uint32_t nt, const int N, int32_t ow,
                                                                            int32_t oh, int first, int final) {
  const int32_t ix0 = ow * c->g.sw - c->g.pw, in_w = c->g.in_w;
  const ptrdiff_t vs = (ptrdiff_t)c->g.sh * in_w; /* input floats from one output row to the next */
  const float *xb = c->xg + ((ptrdiff_t)(oh * c->g.sh - c->g.ph) * in_w + ix0);
  float *y0 = c->yp + (size_t)oh * (size_t)c->g.out_w + ow;
  const size_t ys = (size_t)c->g.out_w;
  float a[8];
  uint32_t k;
  int j;
  for (j = 0; j < N; j++) {
    a[j] = first ? c->b : y0[(size_t)j * ys];
  }
  for (k = 0; k < nt; k++) {
    if ((uint32_t)(ix0 + t->dx[k]) < (uint32_t)in_w) {
      const float *xs = xb + t->off[k];
      const float wk = t->w[k];
#pragma GCC unroll 8
      for (j = 0; j < N; j++) {
        a[j] = __builtin_fmaf(wk, xs[j * vs], a[j]);
      }
    }
  }
#pragma GCC unroll 8
  for (j = 0; j < N; j++) {
    y0[(size_t)j * ys] = final ? prunec_cortexm_clamp(c, a[j]) : a[j];
  }
}

static void prunec_cortexm_conv_col(const prunec_cortexm_conv *c, const prunec_cortexm_taps *t, uint32_t nt,
                                    int32_t ow, int32_t oh, int32_t oh_end, int first, int final) {
  for (; oh + 8 <= oh_end; oh += 8) {
    prunec_cortexm_conv_colrun(c, t, nt, 8, ow, oh, first, final);
  }
  for (; oh + 4 <= oh_end; oh += 4) {
    prunec_cortexm_conv_colrun(c, t, nt, 4, ow, oh, first, final);
  }
  for (; oh < oh_end; oh++) {
    prunec_cortexm_conv_row(c, t, nt, oh, ow, ow + 1, first, final);
  }
}

/* A register tile of 2 output rows (oh, oh+1, inside [oh_lo, oh_hi)) x 8 columns (ow .. ow+7 inside
 * [ow_lo, ow_hi), stride_w 1), nt >= 1 taps, no bounds checks: 16 accumulators. mode bit 0: start from the
 * bias (first chunk), else from y; bit 1: store relu(acc) (final chunk) computed on the bits, else store as is
 * (other clamps: applied by the caller).
 *
 * The relu store is the portable `a < 0 ? 0 : a` on the bit pattern u: it clears exactly the negative non-NaN
 * nonzero values, u in [0x80000001, 0xff800000], and keeps NaNs of either sign and -0.0 (as PyTorch does).
 * With t = u - 1 (wrapping: -0.0 becomes 0x7fffffff), those are the u with t < -0x800000 (signed), i.e.
 * QADD(t, 0x800000) < 0 (saturating: no wrap for the positive NaNs): SUB, QADD, BIC r, r, t, ASR #31, 3
 * instructions per pixel, plus half a VMOV and half an STRD. Without the DSP extension (no QADD) the same
 * test is (t & (t + 0x800000)) < 0: 4 per pixel. (A plain BIC of the sign stores -NaN and -0.0 as +0.0.)
 * Checked against the C expression on all 2^32 bit patterns. */
#if defined(__GNUC__) && defined(__thumb2__) && !defined(PRUNEC_CORTEXM_NO_ASM)
/* Per tap: LDR of the offset, VLDM of the weight (both post-incremented), the address add, then per row one
 * VLDM of 8 inputs and 8 VFMA (the second row one ADD of the row step further), SUBS/BNE: 24 instructions per
 * 16 MACs. The FMA order per accumulator is the C loop's. */
#define PRUNEC_CORTEXM_FMA8(a0, a1, a2, a3, a4, a5, a6, a7) \
  "vfma.f32 s" #a0 ", s0, s8\n\tvfma.f32 s" #a1 ", s1, s8\n\tvfma.f32 s" #a2 ", s2, s8\n\t" \
  "vfma.f32 s" #a3 ", s3, s8\n\tvfma.f32 s" #a4 ", s4, s8\n\tvfma.f32 s" #a5 ", s5, s8\n\t" \
  "vfma.f32 s" #a6 ", s6, s8\n\tvfma.f32 s" #a7 ", s7, s8\n\t"
#if defined(__ARM_FEATURE_DSP)
/* %[n] holds 0x800000 (set after the tap loop, which leaves it 0); %[off] and %[w] are free by then. */
#define PRUNEC_CORTEXM_RELU2(sa, sb, d, ofs) \
  "vmov %[p], %[o], " #sa ", " #sb "\n\t" \
  "sub %[off], %[p], #1\n\t" \
  "sub %[w], %[o], #1\n\t" \
  "qadd %[off], %[off], %[n]\n\t" \
  "qadd %[w], %[w], %[n]\n\t" \
  "bic %[p], %[p], %[off], asr #31\n\t" \
  "bic %[o], %[o], %[w], asr #31\n\t" \
  "strd %[p], %[o], [%[" #d "], #" #ofs "]\n\t"
#else
#define PRUNEC_CORTEXM_RELU1(r) \
  "sub %[off], %[" #r "], #1\n\t" \
  "add %[w], %[off], %[n]\n\t" \
  "and %[off], %[off], %[w]\n\t" \
  "bic %[" #r "], %[" #r "], %[off], asr #31\n\t"
#define PRUNEC_CORTEXM_RELU2(sa, sb, d, ofs) \
  "vmov %[p], %[o], " #sa ", " #sb "\n\t" PRUNEC_CORTEXM_RELU1(p) PRUNEC_CORTEXM_RELU1(o) \
  "strd %[p], %[o], [%[" #d "], #" #ofs "]\n\t"
#endif
static __attribute__((noinline)) void prunec_cortexm_conv_tile(const prunec_cortexm_conv *c, const prunec_cortexm_taps *t,
                                            uint32_t nt, int32_t oh, int32_t ow, int first, int final) {
  const float *xb = c->xg + ((ptrdiff_t)(oh * c->g.sh - c->g.ph) * c->g.in_w + (ow - c->g.pw));
  const int32_t rs = c->g.sh * c->g.in_w * 4;
  float *y0 = c->yp + (size_t)oh * (size_t)c->g.out_w + (size_t)ow, *y1 = y0 + c->g.out_w;
  const float *w = t->w;
  const int32_t *off = t->off;
  const float *p = c->bb;
  const uint32_t mode = (first ? 1u : 0u) | (final && c->relu ? 2u : 0u);
  int32_t o;
  /* The accumulators are s16-s23 (row oh) and s24-s31 (row oh+1), inputs s0-s7, the weight s8. */
  __asm__ volatile(
      "tst %[mode], #1\n\t"
      "beq 5f\n\t"
      "vldmia %[p], {s16-s23}\n\t"
      "vldmia %[p], {s24-s31}\n\t"
      "b 1f\n\t"
      "5:\n\t"
      "vldmia %[y0], {s16-s23}\n\t"
      "vldmia %[y1], {s24-s31}\n\t"
      "1:\n\t"
      "ldr %[o], [%[off]], #4\n\t"
      "vldmia %[w]!, {s8}\n\t"
      "add %[p], %[xb], %[o], lsl #2\n\t"
      "vldmia %[p], {s0-s7}\n\t"
      PRUNEC_CORTEXM_FMA8(16, 17, 18, 19, 20, 21, 22, 23)
      "add %[p], %[p], %[rs]\n\t"
      "vldmia %[p], {s0-s7}\n\t"
      PRUNEC_CORTEXM_FMA8(24, 25, 26, 27, 28, 29, 30, 31)
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      "tst %[mode], #2\n\t"
      "bne 7f\n\t"
      "vstmia %[y0], {s16-s23}\n\t"
      "vstmia %[y1], {s24-s31}\n\t"
      "b 8f\n\t"
      "7:\n\t"
      "mov %[n], #0x800000\n\t"
      PRUNEC_CORTEXM_RELU2(s16, s17, y0, 0) PRUNEC_CORTEXM_RELU2(s18, s19, y0, 8)
      PRUNEC_CORTEXM_RELU2(s20, s21, y0, 16) PRUNEC_CORTEXM_RELU2(s22, s23, y0, 24)
      PRUNEC_CORTEXM_RELU2(s24, s25, y1, 0) PRUNEC_CORTEXM_RELU2(s26, s27, y1, 8)
      PRUNEC_CORTEXM_RELU2(s28, s29, y1, 16) PRUNEC_CORTEXM_RELU2(s30, s31, y1, 24)
      "8:\n\t"
      : [off] "+r"(off), [w] "+r"(w), [n] "+r"(nt), [p] "+&r"(p), [o] "=&r"(o)
      : [xb] "r"(xb), [rs] "r"(rs), [y0] "r"(y0), [y1] "r"(y1), [mode] "r"(mode)
      : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s16", "s17", "s18", "s19", "s20", "s21", "s22",
        "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31", "cc", "memory");
  if (final && !c->relu) {
    int j;
    for (j = 0; j < 8; j++) {
      y0[j] = prunec_cortexm_clamp(c, y0[j]);
      y1[j] = prunec_cortexm_clamp(c, y1[j]);
    }
  }
}
#undef PRUNEC_CORTEXM_FMA8
#undef PRUNEC_CORTEXM_RELU1
#undef PRUNEC_CORTEXM_RELU2
#else
static inline void prunec_cortexm_conv_tile(const prunec_cortexm_conv *c, const prunec_cortexm_taps *t,
                                            uint32_t nt, int32_t oh, int32_t ow, int first, int final) {
  const float *xb = c->xg + ((ptrdiff_t)(oh * c->g.sh - c->g.ph) * c->g.in_w + (ow - c->g.pw));
  const ptrdiff_t rs = (ptrdiff_t)c->g.sh * c->g.in_w;
  float *y0 = c->yp + (size_t)oh * (size_t)c->g.out_w + (size_t)ow, *y1 = y0 + c->g.out_w;
  float a[16];
  uint32_t k;
  int j;
  for (j = 0; j < 8; j++) {
    a[j] = first ? c->b : y0[j];
    a[8 + j] = first ? c->b : y1[j];
  }
  for (k = 0; k < nt; k++) {
    const float *xs = xb + t->off[k];
    const float wk = t->w[k];
    for (j = 0; j < 8; j++) {
      a[j] = __builtin_fmaf(wk, xs[j], a[j]);
    }
    for (j = 0; j < 8; j++) {
      a[8 + j] = __builtin_fmaf(wk, xs[rs + j], a[8 + j]);
    }
  }
  for (j = 0; j < 8; j++) {
    y0[j] = final ? prunec_cortexm_clamp(c, a[j]) : a[j];
    y1[j] = final ? prunec_cortexm_clamp(c, a[8 + j]) : a[8 + j];
  }
}
#endif

/* The output plane for one chunk of taps: interior pairs of rows go through 2 x 8 register tiles, everything
 * else (border rows and columns, stride_w > 1, column tails) through prunec_cortexm_conv_row. */
static void prunec_cortexm_conv_plane(const prunec_cortexm_conv *c, const prunec_cortexm_taps *t, uint32_t nt,
                                      int first, int final) {
  const int32_t out_h = c->g.out_h, out_w = c->g.out_w;
  const int32_t oh_lo = c->g.oh_lo < out_h ? c->g.oh_lo : out_h;
  const int32_t oh_hi = c->g.oh_hi < oh_lo ? oh_lo : c->g.oh_hi;           /* interior rows [oh_lo, oh_hi) */
  const int32_t ow_lo = c->g.ow_lo, ow_hi = c->g.ow_hi < ow_lo ? ow_lo : c->g.ow_hi; /* interior columns */
  int32_t oh, ow;
  for (oh = 0; oh < oh_lo; oh++) { /* border rows: every column, one input-row check per tap and run */
    prunec_cortexm_conv_row(c, t, nt, oh, 0, out_w, first, final);
  }
  oh = oh_lo;
  while (oh < oh_hi) { /* interior rows, interior columns */
    if (c->g.sw == 1 && nt > 0 && oh + 2 <= oh_hi && ow_lo + 8 <= ow_hi) {
      int32_t r;
      for (ow = ow_lo; ow + 8 <= ow_hi; ow += 8) {
        prunec_cortexm_conv_tile(c, t, nt, oh, ow, first, final);
      }
      for (r = 0; r < 2; r++) {
        prunec_cortexm_conv_row(c, t, nt, oh + r, ow, ow_hi, first, final);
      }
      oh += 2;
    } else {
      prunec_cortexm_conv_row(c, t, nt, oh, ow_lo, ow_hi, first, final);
      oh++;
    }
  }
  for (ow = 0; ow < out_w; ow++) { /* interior rows, border columns: runs down the column */
    if (ow == ow_lo && ow_hi > ow_lo) {
      ow = ow_hi;
      if (ow >= out_w) {
        break;
      }
    }
    prunec_cortexm_conv_col(c, t, nt, ow, oh_lo, oh_hi, first, final);
  }
  for (oh = oh_hi; oh < out_h; oh++) {
    prunec_cortexm_conv_row(c, t, nt, oh, 0, out_w, first, final);
  }
}

static void prunec_cortexm_conv_channel_setup(const prunec_conv2d_params *p, prunec_cortexm_conv *c,
                                              const float *x, float *y, const float *bias, uint32_t oc) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  c->xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
  c->yp = y + (size_t)oc * out_plane;
  int j;
  c->b = bias != NULL ? bias[oc] : 0.0f;
  for (j = 0; j < 8; j++) {
    c->bb[j] = c->b;
  }
}

/* The tiled kernel (the entry below hands it every layer but depthwise ones on small planes). */
static __attribute__((noinline)) void prunec_conv_impl_cortexm(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                          const float *bias, const float *x, float *y,
                                                          float out_min, float out_max) {
  prunec_cortexm_taps t;
  prunec_cortexm_conv c;
  prunec_conv_tap_table tab;
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  uint32_t oc;
  if (prunec_rcsr_bad_bits(w, y, (size_t)p->out_c * p->out_h * p->out_w)) {
    return;
  }
  prunec_cortexm_conv_geometry(p, &c, out_min, out_max);
  for (oc = 0; oc < p->out_c; oc++) {
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    uint32_t last = (uint32_t)-1;
    int first = 1;
    prunec_cortexm_conv_channel_setup(p, &c, x, y, bias, oc);
    do {
      const uint32_t n = end - e < PRUNEC_CORTEXM_CHUNK ? end - e : PRUNEC_CORTEXM_CHUNK;
      const uint32_t nt = use_tab ? prunec_conv_decode_taps_tab(&tab, w, e, n, &last, t.w, t.off, t.dy, t.dx)
                                  : prunec_conv_decode_taps(p, w, e, n, &last, t.w, t.off, t.dy, t.dx);
      prunec_cortexm_conv_plane(&c, &t, nt, first, e + n >= end);
      first = 0;
      e += n;
    } while (e < end);
  }
}

/* The entry: depthwise layers on small planes go to the portable kernel from here, before the frame of the tiled kernel (its
 * tap tables) is taken, so that the two frames never nest (the stack bound counts the deeper of the two paths). */
void prunec_f32_conv2d_rcsr__cortexm(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                     const float *x, float *y, float out_min, float out_max) {
  /* depthwise 3x3 on planes up to 10x10 or narrower than the 8-column tiles: the portable kernel's tap rectangles
   * (6x6 at 20 % 262,566 -> 147,305 instructions, at 50 % 348,522 -> 260,723; DS-CNN's 25x5 layers: the model
   * 5,483,595 -> 4,260,629; 12x12 wins at 20 %, 312k -> 271k, but loses at 50 %, 400,854 against 471,829; 24x24
   * loses, 452,850 against 545,966) */
  if (prunec_conv_few_taps(p, p->out_w < 8 ? UINT32_MAX : 100u)) {
    prunec_f32_conv2d_rcsr__portable(p, w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_conv_impl_cortexm(p, w, bias, x, y, out_min, out_max);
}

/* Dense conv2d: the same tiles over every weight of the row (zeros included), PRUNEC_CORTEXM_CHUNK at a time. */
void prunec_f32_conv2d_dense__cortexm(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias,
                                      const float *x, float *y, float out_min, float out_max) {
  prunec_cortexm_taps t;
  prunec_cortexm_conv c;
  const uint32_t cols = w->cols;
  prunec_conv_tap_table tab;
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  uint32_t oc;
  prunec_cortexm_conv_geometry(p, &c, out_min, out_max);
  for (oc = 0; oc < p->out_c; oc++) {
    const float *wr = w->values + (size_t)oc * cols;
    uint32_t col = 0, tp = 0;
    int32_t cib = 0;
    int first = 1;
    prunec_cortexm_conv_channel_setup(p, &c, x, y, bias, oc);
    do {
      const uint32_t n = cols - col < PRUNEC_CORTEXM_CHUNK ? cols - col : PRUNEC_CORTEXM_CHUNK;
      prunec_conv_dense_taps(p, &tab, use_tab, wr, col, n, &tp, &cib, t.w, t.off, t.dy, t.dx);
      prunec_cortexm_conv_plane(&c, &t, n, first, col + n >= cols);
      first = 0;
      col += n;
    } while (col < cols);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_cortexm_unavailable;
#endif /* PRUNEC_HAVE_CORTEXM_FPU */
