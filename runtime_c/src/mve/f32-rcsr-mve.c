/*
 * Sparse fc and conv2d over relative-indexed CSR for Armv8.1-M with Helium (MVE with floating point,
 * Cortex-M55/M85). Twins of the portable kernels.
 *
 * fc: decoded in vectors, 4 entries per block, no column buffer. The x addresses of a block's 4 entries are a
 * vector A (x + 4 col), and col(e) = col(e-4) + gap(e-3) + .. + gap(e), so per block: one widening load of
 * the 4 codes (VLDRB.U32; b = 16: VLDRH.U32), A += 4 c, then three VSHLC #32 (the whole vector shifted by
 * one lane, the previous block's last codes carried in from 3 core registers that are 0 at a row start, so
 * no block needs a special case) each followed by A += 4 * shifted codes (VMLA), and the gather with
 * writeback VLDRW.U32 q, [A, #16]! adds the 4 gaps' +1 and loads x; one VLDRW of 4 contiguous values and
 * one VFMA. The row's entries run as a tail-predicated loop (WLSTP/LETP): the last block's lanes past the row
 * load nothing. 12 instructions per 4 entries; fillers are ordinary entries. b = 4: a byte gather with the
 * offsets {0,0,1,1} (row on an odd entry: {0,1,1,2}), a per-lane shift and >> 28 (+3 per block); b = 16 at
 * an odd index address (VLDRH needs 2-byte alignment): two byte gathers + VSLI (+3). Each row leaves its 4
 * lane sums in a 16-float buffer; per 4 rows VLD4 transposes them, so bias, clamp and store are one vector
 * instruction each. b = 8 and b = 16 run the rows of a group in one asm loop (14 instructions per row
 * besides its blocks). GCC 12 does not get there from intrinsics (it copies the vector around each
 * VSHLC, evaluates VSHLC and the writeback gather twice, and spills VPR), hence inline asm; the C path
 * (PRUNEC_MVE_NO_ASM or no GNU asm) computes the same columns with scalar code extraction. Other index widths
 * (1 .. 15 but 4, 8) are widened per group of rows into a buffer of bytes / halfwords first
 * (prunec_mve_fc_group_any), then run the b = 8 / 16 steps.
 *
 * conv2d (NCHW, batch 1): vectorised across output pixels, 4 lanes; nonzeros of an output channel are
 * decoded (64 at a time, fillers dropped, division-free through the per-call tap table of prunec_rcsr_util.h, any
 * index width) into (weight, input offset, ky*dil_h, kx*dil_w). Interior blocks with stride 1 use plain loads
 * (8 pixels, then 4); in output rows whose taps all lie in the input the 8-pixel tap loop is inline asm (9 instructions
 * per tap, prunec_mve_conv_taps8). Blocks of 4 with stride_w > 1 whose taps all read inside the row gather lanes
 * l*stride_w without column checks. Border blocks, the other strided ones and the last partial block use a
 * predicated gather (lanes outside the input or past the row are off) and a predicated store.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_mve_util.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_MVE_CHUNK 64u

/* x addresses of the 4 lanes before a row's first block: lane k of the first block is x[k + (codes 0..k)]. */
static const int32_t prunec_mve_fc_a0[4] = {-16, -12, -8, -4};
/* b = 4: byte offsets and left shifts (then >> 28) of 4 nibbles from a row's even or odd first entry. */
static const uint32_t prunec_mve_fc_nib[4][4] = {{0, 0, 1, 1}, {28, 24, 28, 24}, {0, 1, 1, 2}, {24, 28, 24, 28}};
/* b = 16 on an odd index address: byte offsets of 4 codes' low and high bytes. */
static const uint32_t prunec_mve_fc_b16u[2][4] = {{0, 2, 4, 6}, {1, 3, 5, 7}};

#define PRUNEC_MVE_FC_B8 8u
#define PRUNEC_MVE_FC_B16 16u   /* index 2-aligned: VLDRH */
#define PRUNEC_MVE_FC_B16U 17u  /* index at an odd address: bytewise */
#define PRUNEC_MVE_FC_B4 4u
#define PRUNEC_MVE_FC_ANY 1u    /* other widths: widened into a buffer first */

#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
/* q0: x addresses of the block's 4 entries; q1: codes; q2: x; q3: values; q4: accumulator; q5, q6: b = 4 and
 * unaligned b = 16 offsets/shifts. Per block: the codes, q0 += 4 * (c_k + c_k-1 + c_k-2 + c_k-3) through VSHLC
 * (whole-vector shift by one lane; k1..k3 carry the previous block's last codes, 0 at a row start), then the
 * gather with writeback adds 16 (the 4 gaps' +1) and loads x. */
#define PRUNEC_MVE_FC_PREFIX                                                                                   \
  "vmla.u32 q0, q1, %[four]\n\t"                                                                               \
  "vshlc q1, %[k1], #32\n\t"                                                                                   \
  "vmla.u32 q0, q1, %[four]\n\t"                                                                               \
  "vshlc q1, %[k2], #32\n\t"                                                                                   \
  "vmla.u32 q0, q1, %[four]\n\t"                                                                               \
  "vshlc q1, %[k3], #32\n\t"                                                                                   \
  "vmla.u32 q0, q1, %[four]\n\t"                                                                               \
  "vldrw.u32 q2, [q0, #16]!\n\t"                                                                               \
  "vldrw.32 q3, [%[vp]], #16\n\t"                                                                              \
  "vfma.f32 q4, q3, q2\n\t"

/* b = 8 and aligned b = 16: the m (1..4) rows starting at row_ptr[r] (e = row_ptr[r], rp = row_ptr + r + 1),
 * lane sums of row k into slot[4k .. 4k+3]. Per row: 14 instructions besides the blocks. k3 holds the row's end
 * until the carries are zeroed; e is reloaded from row_ptr after the row. */
static inline __attribute__((always_inline)) void prunec_mve_fc_group(const uint32_t *rp, uint32_t e, uint32_t m,
                                                                     const uint8_t *index, const float *values,
                                                                     uint32x4_t a0, float *slot,
                                                                     const uint32_t kind) {
  const uint8_t *ip;
  const float *vp;
  uint32_t k1, k2, k3;
#define PRUNEC_MVE_FC_GROUP(IPADD, CODES)                                                                      \
  __asm__("5:\n\t"                                                                                             \
          "ldr %[k3], [%[rp]], #4\n\t" IPADD                                                                   \
          "add %[vp], %[values], %[e], lsl #2\n\t"                                                             \
          "sub %[e], %[k3], %[e]\n\t"                                                                          \
          "vmov q0, %q[a0]\n\t"                                                                                \
          "vmov.i32 q4, #0\n\t"                                                                                \
          "mov %[k1], #0\n\t"                                                                                  \
          "mov %[k2], #0\n\t"                                                                                  \
          "mov %[k3], #0\n\t"                                                                                  \
          "wlstp.32 lr, %[e], 2f\n"                                                                            \
          "1:\n\t" CODES PRUNEC_MVE_FC_PREFIX "letp lr, 1b\n"                                                  \
          "2:\n\t"                                                                                             \
          "vstrw.32 q4, [%[slot]], #16\n\t"                                                                    \
          "ldr %[e], [%[rp], #-4]\n\t"                                                                         \
          "subs %[m], %[m], #1\n\t"                                                                            \
          "bne 5b"                                                                                             \
          : [rp] "+r"(rp), [e] "+r"(e), [m] "+r"(m), [slot] "+r"(slot), [ip] "=&l"(ip), [vp] "=&r"(vp),      \
            [k1] "=&r"(k1), [k2] "=&r"(k2), [k3] "=&r"(k3), "=m"(*(float(*)[16])slot)                         \
          : [index] "r"(index), [values] "r"(values), [four] "r"(4u), [a0] "w"(a0)                           \
          : "q0", "q1", "q2", "q3", "q4", "lr", "cc", "memory")
  if (kind == PRUNEC_MVE_FC_B8) {
    PRUNEC_MVE_FC_GROUP("add %[ip], %[index], %[e]\n\t", "vldrb.u32 q1, [%[ip]], #4\n\t");
  } else {
    PRUNEC_MVE_FC_GROUP("add %[ip], %[index], %[e], lsl #1\n\t", "vldrh.u32 q1, [%[ip]], #8\n\t");
  }
#undef PRUNEC_MVE_FC_GROUP
}

/* b = 4 and b = 16 at an odd index address: one row, entries ip/vp[0 .. n) (ip at the row's first code byte),
 * lane sums into slot[0..3]; tab: the byte offsets (and b = 4: shifts) of the row's first 4 codes. */
static inline __attribute__((always_inline)) void prunec_mve_fc_row(const uint8_t *ip, const float *vp, uint32_t n,
                                                                   uint32x4_t a0, float *slot, const uint32_t *tab,
                                                                   const uint32_t kind) {
  uint32_t k1, k2, k3;
#define PRUNEC_MVE_FC_ROW(CODES)                                                                               \
  __asm__("vmov q0, %q[a0]\n\t"                                                                                \
          "vmov.i32 q4, #0\n\t"                                                                                \
          "mov %[k1], #0\n\t"                                                                                  \
          "mov %[k2], #0\n\t"                                                                                  \
          "mov %[k3], #0\n\t"                                                                                  \
          "vldrw.u32 q5, [%[tab]]\n\t"                                                                         \
          "vldrw.u32 q6, [%[tab], #16]\n\t"                                                                    \
          "wlstp.32 lr, %[n], 2f\n"                                                                            \
          "1:\n\t" CODES PRUNEC_MVE_FC_PREFIX "letp lr, 1b\n"                                                  \
          "2:\n\t"                                                                                             \
          "vstrw.32 q4, [%[slot]]"                                                                             \
          : [ip] "+l"(ip), [vp] "+r"(vp), [k1] "=&r"(k1), [k2] "=&r"(k2), [k3] "=&r"(k3),                    \
            "=m"(*(float(*)[4])slot)                                                                           \
          : [n] "r"(n), [four] "r"(4u), [a0] "w"(a0), [tab] "r"(tab), [slot] "r"(slot)                       \
          : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "lr", "memory")
  if (kind == PRUNEC_MVE_FC_B16U) {
    PRUNEC_MVE_FC_ROW("vldrb.u32 q1, [%[ip], q5]\n\t"
                      "vldrb.u32 q2, [%[ip], q6]\n\t"
                      "add %[ip], %[ip], #8\n\t"
                      "vsli.32 q1, q2, #8\n\t");
  } else {
    PRUNEC_MVE_FC_ROW("vldrb.u32 q1, [%[ip], q5]\n\t"
                      "add %[ip], %[ip], #2\n\t"
                      "vshl.u32 q1, q1, q6\n\t"
                      "vshr.u32 q1, q1, #28\n\t");
  }
#undef PRUNEC_MVE_FC_ROW
}

#else
/* The same computation with intrinsics (codes extracted in scalar C): one row, lane sums into slot[0..3]. */
static inline __attribute__((always_inline)) void prunec_mve_fc_row(const uint8_t *ip, const float *vp, uint32_t n,
                                                                   uint32x4_t a, float *slot, const uint32_t *tab,
                                                                   const uint32_t kind) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  uint32_t c[4], prev[3] = {0, 0, 0}, j = 0, k;
  while (j < n) {
    const mve_pred16_t p = vctp32q(n - j);
    for (k = 0; k < 4; k++) {
      const uint32_t e = j + k;
      c[k] = 0;
      if (e < n) {
        if (kind == PRUNEC_MVE_FC_B8) {
          c[k] = ip[e];
        } else if (kind == PRUNEC_MVE_FC_B4) {
          c[k] = prunec_rcsr_code(ip, (uint32_t)(tab == prunec_mve_fc_nib[2]) + e, 4);
        } else {
          c[k] = prunec_rcsr_code(ip, e, 16);
        }
      }
    }
    a = prunec_mve_addr_step(a, c, prev); /* col_k = col_(k-4) + gaps k-3 .. k */
    acc = vfmaq_f32(acc, vldrwq_z_f32(vp + j, p), vldrwq_gather_base_z_f32(a, 0, p));
    j += 4;
  }
  vst1q_f32(slot, acc);
}

static inline __attribute__((always_inline)) void prunec_mve_fc_group(const uint32_t *rp, uint32_t e, uint32_t m,
                                                                     const uint8_t *index, const float *values,
                                                                     uint32x4_t a0, float *slot,
                                                                     const uint32_t kind) {
  for (; m > 0; m--, rp++, slot += 4) {
    const uint32_t end = *rp;
    prunec_mve_fc_row(index + (kind == PRUNEC_MVE_FC_B8 ? e : 2u * e), values + e, end - e, a0, slot, 0, kind);
    e = end;
  }
}

#endif

#if PRUNEC_RCSR_ODD_WIDTHS /* prunec_config.h: a build with only 4/8/16-bit layers leaves these out */
/* Other widths (1 .. 15): a group of rows is first widened into a buffer of PRUNEC_MVE_FC_CAP codes (bytes for
 * b <= 8, halfwords for 9 .. 15), then runs the b = 8 / b = 16 steps above from there. b <= 8: 8 codes (exactly
 * b bytes, so every block starts at the same bit s0 of a byte) per step: two byte gathers into 16-bit lanes (the
 * code's byte and the next one, or the same one when the code does not cross it: no byte past the code is read),
 * VSLI, a per-lane shift right by its bit, AND and a narrowing byte store (the last 1 .. 8 codes
 * predicated): about 9 instructions per 8 codes. b = 9 .. 15 (rare in fc layers) code by code. */
#define PRUNEC_MVE_FC_CAP 512u

static void prunec_mve_widen(const uint8_t *index, uint32_t b, uint32_t e, uint32_t n, uint16_t *buf) {
  uint32_t i = 0, j;
  if (b <= 8u) {
    const uint64_t bit0 = (uint64_t)e * b;
    const uint8_t *p = index + (size_t)(bit0 >> 3);
    const uint32_t s0 = (uint32_t)(bit0 & 7u);
    uint16_t lo[8], hi[8];
    int16_t sh[8];
    uint16x8_t vlo, vhi, mask;
    int16x8_t vsh;
    uint8_t *out = (uint8_t *)buf;
    for (j = 0; j < 8u; j++) {
      const uint32_t at = s0 + j * b;
      lo[j] = (uint16_t)(at >> 3);
      hi[j] = (uint16_t)((at + b - 1u) >> 3);
      sh[j] = (int16_t)-(int16_t)(at & 7u);
    }
    vlo = vld1q_u16(lo);
    vhi = vld1q_u16(hi);
    vsh = vld1q_s16(sh);
    mask = vdupq_n_u16((uint16_t)((1u << b) - 1u));
    for (; i + 8u <= n; i += 8u, p += b) {
      const uint16x8_t v = vsliq_n_u16(vldrbq_gather_offset_u16(p, vlo), vldrbq_gather_offset_u16(p, vhi), 8);
      vstrbq_u16(out + i, vandq_u16(vshlq_u16(v, vsh), mask));
    }
    if (i < n) {
      const mve_pred16_t pr = vctp16q(n - i);
      uint16x8_t v = vsliq_n_u16(vldrbq_gather_offset_z_u16(p, vlo, pr), vldrbq_gather_offset_z_u16(p, vhi, pr), 8);
      v = vandq_u16(vshlq_u16(v, vsh), mask);
      vstrbq_p_u16(out + i, v, pr);
    }
  } else {
    for (; i < n; i++) {
      buf[i] = (uint16_t)prunec_rcsr_code_any(index, e + i, b);
    }
  }
}

/* One row of more than PRUNEC_MVE_FC_CAP entries, any width: its sum into slot[0] (slot[1..3] = 0). */
static void prunec_mve_fc_long_row(const prunec_rcsr_f32 *w, uint32_t e, uint32_t end, const float *x, float *slot) {
  const float *xp = x; /* x + column after the previous entry */
  float a = 0.0f;
  for (; e < end; e++) {
    xp += prunec_rcsr_code_any(w->index, e, w->index_bits);
    a = __builtin_fmaf(w->values[e], xp[0], a);
    xp++;
  }
  slot[0] = a;
  slot[1] = slot[2] = slot[3] = 0.0f;
}

/* The m rows from r as prunec_mve_fc_group does them, any width: widened first (in one piece when the m rows
 * fit the buffer, else row by row). */
static void prunec_mve_fc_group_any(const prunec_rcsr_f32 *w, uint32_t r, uint32_t m, const float *x,
                                    uint32x4_t a0, float *slot) {
  uint16_t cb[PRUNEC_MVE_FC_CAP];
  const uint32_t *row_ptr = w->row_ptr, b = w->index_bits;
  const uint32_t kind = b <= 8u ? PRUNEC_MVE_FC_B8 : PRUNEC_MVE_FC_B16, scale = b <= 8u ? 1u : 2u;
  uint32_t k;
  if (row_ptr[r + m] - row_ptr[r] <= PRUNEC_MVE_FC_CAP) {
    const uint32_t e = row_ptr[r];
    prunec_mve_widen(w->index, b, e, row_ptr[r + m] - e, cb);
    /* the group reads code e' at cb + (e' - e) * scale */
    prunec_mve_fc_group(row_ptr + r + 1, e, m, (const uint8_t *)((uintptr_t)cb - (uintptr_t)e * scale), w->values,
                        a0, slot, kind);
    return;
  }
  for (k = 0; k < m; k++) {
    const uint32_t e = row_ptr[r + k], end = row_ptr[r + k + 1];
    if (end - e <= PRUNEC_MVE_FC_CAP) {
      prunec_mve_widen(w->index, b, e, end - e, cb);
      prunec_mve_fc_group(row_ptr + r + k + 1, e, 1, (const uint8_t *)((uintptr_t)cb - (uintptr_t)e * scale),
                          w->values, a0, slot + 4 * k, kind);
    } else {
      prunec_mve_fc_long_row(w, e, end, x, slot + 4 * k);
    }
  }
}
#endif /* PRUNEC_RCSR_ODD_WIDTHS */

static inline __attribute__((always_inline)) void prunec_mve_fc_rows(const prunec_rcsr_f32 *w, const float *bias,
                                                                    const float *x, float *y, float lo, float hi,
                                                                    const uint32_t kind) {
  static const float zeros[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float buf[16] = {0.0f};
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  const uint32_t rows = w->rows;
  const uint32x4_t a0 = vaddq_n_u32(vreinterpretq_u32_s32(vld1q_s32(prunec_mve_fc_a0)), (uint32_t)(uintptr_t)x);
  const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
  uint32_t r;
  for (r = 0; r < rows; r += 4) {
    const uint32_t m = rows - r < 4u ? rows - r : 4u;
    if (kind == PRUNEC_MVE_FC_B8 || kind == PRUNEC_MVE_FC_B16) {
      prunec_mve_fc_group(row_ptr + r + 1, row_ptr[r], m, index, values, a0, buf, kind);
#if PRUNEC_RCSR_ODD_WIDTHS
    } else if (kind == PRUNEC_MVE_FC_ANY) {
      prunec_mve_fc_group_any(w, r, m, x, a0, buf);
#endif
    } else {
      uint32_t k;
      for (k = 0; k < m; k++) {
        const uint32_t e = row_ptr[r + k], n = row_ptr[r + k + 1] - e;
        if (kind == PRUNEC_MVE_FC_B4) {
          prunec_mve_fc_row(index + (e >> 1), values + e, n, a0, buf + 4 * k, prunec_mve_fc_nib[2u * (e & 1u)],
                            kind);
        } else {
          prunec_mve_fc_row(index + 2u * e, values + e, n, a0, buf + 4 * k, prunec_mve_fc_b16u[0], kind);
        }
      }
    }
    prunec_mve_fc_out(buf, bias != NULL ? bias + r : zeros, y + r, m, vlo, vhi);
  }
}

void prunec_f32_fc_rcsr__mve(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                             float out_min, float out_max) {
  if (prunec_rcsr_bad_bits(w, y, w->rows)) {
    return;
  }
  switch (w->index_bits) {
    case 4:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, PRUNEC_MVE_FC_B4);
      break;
    case 8:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, PRUNEC_MVE_FC_B8);
      break;
    case 16:
      if (((uintptr_t)w->index & 1u) == 0) {
        prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, PRUNEC_MVE_FC_B16);
      } else {
        prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, PRUNEC_MVE_FC_B16U);
      }
      break;
#if PRUNEC_RCSR_ODD_WIDTHS
    default:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, PRUNEC_MVE_FC_ANY);
      break;
#else
    default: /* not reached: prunec_rcsr_bad_bits took every other width */
      break;
#endif
  }
}

/* 8 output pixels of one row, every tap inside the input: acc0/acc1 += w[k] * xs[off[k] .. off[k] + 7] for
 * k < nt. GCC's loop is 15 instructions per tap (it keeps the taps' row test and recomputes the address);
 * this one is 9 (2 loads of the tap, the address, 2 VLDRW, 2 VFMA by a core register, LE). */
#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
static inline __attribute__((always_inline)) void prunec_mve_conv_taps8(const float *xs, const float *w,
                                                                       const int32_t *off, uint32_t nt,
                                                                       float32x4_t *acc0, float32x4_t *acc1) {
  float32x4_t a0 = *acc0, a1 = *acc1, t0, t1;
  const float *xp;
  uint32_t o, wv;
  __asm__("wls lr, %[nt], 2f\n"
          "1:\n\t"
          "ldr %[o], [%[off]], #4\n\t"
          "ldr %[wv], [%[w]], #4\n\t"
          "add %[xp], %[xs], %[o], lsl #2\n\t"
          "vldrw.32 %q[t0], [%[xp]]\n\t"
          "vldrw.32 %q[t1], [%[xp], #16]\n\t"
          "vfma.f32 %q[a0], %q[t0], %[wv]\n\t"
          "vfma.f32 %q[a1], %q[t1], %[wv]\n\t"
          "le lr, 1b\n"
          "2:"
          : [a0] "+w"(a0), [a1] "+w"(a1), [t0] "=&w"(t0), [t1] "=&w"(t1), [off] "+r"(off), [w] "+r"(w),
            [o] "=&r"(o), [wv] "=&r"(wv), [xp] "=&r"(xp)
          : [xs] "r"(xs), [nt] "r"(nt)
          : "lr", "memory");
  *acc0 = a0;
  *acc1 = a1;
}
#else
static inline void prunec_mve_conv_taps8(const float *xs, const float *w, const int32_t *off, uint32_t nt,
                                         float32x4_t *acc0, float32x4_t *acc1) {
  uint32_t k;
  for (k = 0; k < nt; k++) {
    *acc0 = vfmaq_n_f32(*acc0, vld1q_f32(xs + off[k]), w[k]);
    *acc1 = vfmaq_n_f32(*acc1, vld1q_f32(xs + off[k] + 4), w[k]);
  }
}
#endif

typedef struct prunec_mve_taps {
  float w[PRUNEC_MVE_CHUNK];
  int32_t off[PRUNEC_MVE_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_MVE_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_MVE_CHUNK];  /* kx*dil_w */
} prunec_mve_taps;

/* The tiled kernel (the entry below hands it every layer but depthwise ones on small planes). */
static __attribute__((noinline)) void prunec_conv_impl_mve(const prunec_conv2d_params *p0, const prunec_rcsr_f32 *w,
                                                          const float *bias, const float *x, float *y,
                                                          float out_min, float out_max) {
  static const int32_t lane_ids[4] = {0, 1, 2, 3};
  prunec_conv2d_params flat;
  const prunec_conv2d_params *const p = prunec_conv_plane_as_row(p0, &flat); /* narrow 1x1 planes as one row */
  prunec_mve_taps t;
  prunec_conv_tap_table tab;
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  const int32_t in_h = (int32_t)p->in_h, in_w = (int32_t)p->in_w;
  const int32_t out_w = (int32_t)p->out_w;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w;
  const int32_t ph = (int32_t)p->pad_h, pw = (int32_t)p->pad_w;
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  int32_t ow_lo, ow_hi, oh_lo, oh_hi; /* output columns / rows whose taps all read inside the input row / rows */
  const int32x4_t lane = vld1q_s32(lane_ids);
  const uint32x4_t soff = vreinterpretq_u32_s32(vmulq_n_s32(lane, sw)); /* lane l reads cell l*sw */
  uint32_t oc;
  if (prunec_rcsr_bad_bits(w, y, (size_t)p->out_c * p->out_h * p->out_w)) {
    return;
  }
  prunec_conv_interior(p, &ow_lo, &ow_hi, &oh_lo, &oh_hi);
  for (oc = 0; oc < p->out_c; oc++) {
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    float *yp = y + (size_t)oc * out_plane;
    const float32x4_t vb = vdupq_n_f32(bias != NULL ? bias[oc] : 0.0f);
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    uint32_t last = (uint32_t)-1;
    int first = 1;
    do {
      const uint32_t n = end - e < PRUNEC_MVE_CHUNK ? end - e : PRUNEC_MVE_CHUNK;
      const uint32_t nt = use_tab ? prunec_conv_decode_taps_tab(&tab, w, e, n, &last, t.w, t.off, t.dy, t.dx)
                                  : prunec_conv_decode_taps(p, w, e, n, &last, t.w, t.off, t.dy, t.dx);
      const int final = e + n >= end;
      int32_t oh;
      for (oh = 0; oh < (int32_t)p->out_h; oh++) {
        const int32_t iy0 = oh * sh - ph;
        const ptrdiff_t rbase = (ptrdiff_t)iy0 * in_w - pw; /* xg[rbase + off[k] + ow]: tap k's input (stride 1) */
        float *yr = yp + (size_t)oh * (size_t)out_w;
        const int rows_in = oh >= oh_lo && oh < oh_hi; /* every tap's input row exists */
        int32_t ow = 0;
        while (ow < out_w) {
          uint32_t k;
          if (sw == 1 && ow >= ow_lo && ow + 8 <= ow_hi) {
            float32x4_t acc0 = first ? vb : vld1q_f32(yr + ow);
            float32x4_t acc1 = first ? vb : vld1q_f32(yr + ow + 4);
            if (rows_in) {
              prunec_mve_conv_taps8(xg + (rbase + ow), t.w, t.off, nt, &acc0, &acc1);
            } else {
              for (k = 0; k < nt; k++) {
                if ((uint32_t)(iy0 + t.dy[k]) < (uint32_t)in_h) {
                  const float *xs = xg + (rbase + t.off[k] + ow);
                  acc0 = vfmaq_n_f32(acc0, vld1q_f32(xs), t.w[k]);
                  acc1 = vfmaq_n_f32(acc1, vld1q_f32(xs + 4), t.w[k]);
                }
              }
            }
            if (final) {
              acc0 = prunec_mve_clamp(acc0, out_min, out_max);
              acc1 = prunec_mve_clamp(acc1, out_min, out_max);
            }
            vst1q_f32(yr + ow, acc0);
            vst1q_f32(yr + ow + 4, acc1);
            ow += 8;
          } else if (sw == 1 && ow >= ow_lo && ow + 4 <= ow_hi) {
            float32x4_t acc = first ? vb : vld1q_f32(yr + ow);
            for (k = 0; k < nt; k++) {
              if ((uint32_t)(iy0 + t.dy[k]) < (uint32_t)in_h) {
                acc = vfmaq_n_f32(acc, vld1q_f32(xg + (rbase + t.off[k] + ow)), t.w[k]);
              }
            }
            if (final) {
              acc = prunec_mve_clamp(acc, out_min, out_max);
            }
            vst1q_f32(yr + ow, acc);
            ow += 4;
          } else if (sw > 1 && ow >= ow_lo && ow + 4 <= ow_hi) {
            /* stride_w > 1, every tap inside the row: one gather of lanes l*sw per tap, no column checks */
            const ptrdiff_t base = (ptrdiff_t)iy0 * in_w - pw + (ptrdiff_t)ow * sw;
            float32x4_t acc = first ? vb : vld1q_f32(yr + ow);
            for (k = 0; k < nt; k++) {
              if ((uint32_t)(iy0 + t.dy[k]) < (uint32_t)in_h) {
                acc = vfmaq_n_f32(acc, vldrwq_gather_shifted_offset_f32(xg + (base + t.off[k]), soff), t.w[k]);
              }
            }
            if (final) {
              acc = prunec_mve_clamp(acc, out_min, out_max);
            }
            vst1q_f32(yr + ow, acc);
            ow += 4;
          } else {
            const int32x4_t ox = vaddq_n_s32(lane, ow);
            const mve_pred16_t out_ok = vctp32q((uint32_t)(out_w - ow));
            const int32x4_t ix = vsubq_n_s32(vmulq_n_s32(ox, sw), pw);
            float32x4_t acc = first ? vb : vldrwq_z_f32(yr + ow, out_ok);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                const int32x4_t c = vaddq_n_s32(ix, t.dx[k]);
                const mve_pred16_t ok = out_ok & vcmpgeq_n_s32(c, 0) & vcmpltq_n_s32(c, in_w);
                const float *xr = xg + (t.off[k] - t.dx[k] + (ptrdiff_t)(iy - t.dy[k]) * in_w); /* input row iy */
                const float32x4_t xv = vldrwq_gather_shifted_offset_z_f32(xr, vreinterpretq_u32_s32(c), ok);
                acc = vfmaq_n_f32(acc, xv, t.w[k]);
              }
            }
            if (final) {
              acc = prunec_mve_clamp(acc, out_min, out_max);
            }
            vstrwq_p_f32(yr + ow, acc, out_ok);
            ow += 4;
          }
        }
      }
      first = 0;
      e += n;
    } while (e < end);
  }
}

/* The entry: depthwise layers on small planes go to the portable kernel from here, before the frame of the tiled kernel (its
 * tap tables) is taken, so that the two frames never nest (the stack bound counts the deeper of the two paths). */
void prunec_f32_conv2d_rcsr__mve(const prunec_conv2d_params *p0, const prunec_rcsr_f32 *w, const float *bias,
                                 const float *x, float *y, float out_min, float out_max) {
  /* depthwise 3x3 on planes up to 10x10 or narrower than 8 columns: the portable kernel's tap rectangles (6x6 at
   * 20 %: 208,065 -> 144,666 instructions; DS-CNN's 25x5 layers: the model 3,517,954 -> 2,905,467; 12x12 ties,
   * 249,880 against 255,188; 16x16 loses, 87,112 against 114,552) */
  if (prunec_conv_few_taps(p0, p0->out_w < 8 ? UINT32_MAX : 100u)) {
    prunec_f32_conv2d_rcsr__portable(p0, w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_conv_impl_mve(p0, w, bias, x, y, out_min, out_max);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
