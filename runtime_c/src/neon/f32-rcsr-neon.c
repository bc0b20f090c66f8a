/*
 * Sparse fc and conv2d over relative-indexed CSR, Arm NEON with fused multiply-add: AArch64 (Armv8-A) and
 * Armv7-A with -mfpu=neon-vfpv4 (vfmaq_f32 exists on both). Twins of the portable kernels.
 *
 * fc: the codes are decoded in a SIMD pre-pass, a window of entries at a time, into byte steps of x; the
 * main loop's x loads are lane loads whose register post-increment steps the x pointer to the next entry's
 * column (no column arithmetic, no gather); 8 values per load, 2 FMAs per 8 entries; 4 rows per reduction.
 * Index widths other than 4/8/16 are widened in the same pre-pass by table lookups (prunec_neon_fill_any).
 * Details above prunec_f32_fc_rcsr__neon.
 *
 * conv2d (NCHW, batch 1): vectorised across output pixels. The nonzeros of an output channel are decoded
 * (256 at a time, division-free through a per-call tap table; any index width) into (weight, input offset, ky*dil_h, kx*dil_w)
 * and reused over the whole plane. Interior blocks of output rows (stride_w 1) run register tiles without
 * bounds checks: AArch64 8 rows x 8 columns, Armv7-A 4 x 8 (asm tap loops), then 4-column tiles; the other pixels
 * whose taps all read inside their input row (border rows, stride_w > 1, column tails) take 8/4-pixel blocks
 * with plain loads (stride_w 1) or lane loads (stride_w > 1) and one input-row check per tap; border columns of
 * the interior rows run 4 rows per vector down the column with one column check per tap; only the corners fill
 * their lanes tap by tap with bounds checks (before, every pixel outside the tiles with a border tap or a stride
 * did: AArch64 ResNet-8 at 80 % 23.3 M -> 12.2 M instructions per inference, MobileNetV1-0.25 19.1 M -> 11.5 M,
 * DS-CNN 8.6 M -> 5.2 M; benchmarks/bench_tiny.py --arm aarch64-neon). prunec_f32_conv2d_dense__neon runs the same tiles
 * over every weight.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include <arm_neon.h>
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_neon_util.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_NEON_CHUNK 256u

#if PRUNEC_HAVE_AARCH64
static inline float prunec_neon_hsum(float32x4_t v) { return vaddvq_f32(v); }
#else
static inline float prunec_neon_hsum(float32x4_t v) {
  float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
  return vget_lane_f32(vpadd_f32(s, s), 0);
}
#endif

/* ---- fc ---- */

#ifndef PRUNEC_NEON_FC_WINDOW
#define PRUNEC_NEON_FC_WINDOW 2048u /* entries per decoded window (overridable to test its boundaries; >= 9) */
#endif

/* The decoded window: d[i] = 4 * (code(cs + i) + 1), the byte step of x from entry cs + i - 1 to entry
 * cs + i, for i < m; d[m] = 0 (read, never used: the step after the last entry). Rows [e, end) with
 * end <= lim = cs + m run from it. */
typedef struct prunec_neon_window {
  const uint8_t *index;
  uint32_t bits, total, cs, lim;
  uint32_t d[PRUNEC_NEON_FC_WINDOW + 8];
} prunec_neon_window;

/* 16 codes of 8 bits -> 16 byte steps: 2 VADDL (+1, widen to 16 bits), 4 VSHLL (x4, widen to 32 bits). */
#if PRUNEC_HAVE_AARCH64
static inline __attribute__((always_inline)) void prunec_neon_steps16(uint8x16_t v, uint32_t *d) {
  const uint16x8_t lo = vaddl_u8(vget_low_u8(v), vdup_n_u8(1)), hi = vaddl_high_u8(v, vdupq_n_u8(1));
  vst1q_u32(d, vshll_n_u16(vget_low_u16(lo), 2));
  vst1q_u32(d + 4, vshll_high_n_u16(lo, 2));
  vst1q_u32(d + 8, vshll_n_u16(vget_low_u16(hi), 2));
  vst1q_u32(d + 12, vshll_high_n_u16(hi, 2));
}
#else
static inline __attribute__((always_inline)) void prunec_neon_steps16(uint8x16_t v, uint32_t *d) {
  const uint16x8_t lo = vaddl_u8(vget_low_u8(v), vdup_n_u8(1)), hi = vaddl_u8(vget_high_u8(v), vdup_n_u8(1));
  vst1q_u32(d, vshll_n_u16(vget_low_u16(lo), 2));
  vst1q_u32(d + 4, vshll_n_u16(vget_high_u16(lo), 2));
  vst1q_u32(d + 8, vshll_n_u16(vget_low_u16(hi), 2));
  vst1q_u32(d + 12, vshll_n_u16(vget_high_u16(hi), 2));
}
#endif

/* k >= 1 blocks of 32 codes of 8 bits -> byte steps, 19 instructions per block: one load of 32 codes,
 * 4 VADDL/UADDL (+1, widen to 16 bits), 8 VSHLL/USHLL (x4, widen to 32 bits), 4 stores of 8 steps, loop. */
#if PRUNEC_HAVE_AARCH64
static inline __attribute__((always_inline)) void prunec_neon_steps32(const uint8_t *c, uint32_t *d, uint32_t k) {
  uint8x16_t one = vdupq_n_u8(1), t0, t1, t2, t3, t4, t5, t6, t7;
  __asm__ __volatile__("1:\n\t"
                       "ldp %q[t0], %q[t1], [%[c]], #32\n\t"
          "uaddl %[t2].8h, %[t0].8b, %[one].8b\n\t"
          "uaddl2 %[t3].8h, %[t0].16b, %[one].16b\n\t"
          "uaddl %[t4].8h, %[t1].8b, %[one].8b\n\t"
          "uaddl2 %[t5].8h, %[t1].16b, %[one].16b\n\t"
          "ushll %[t0].4s, %[t2].4h, #2\n\t"
          "ushll2 %[t1].4s, %[t2].8h, #2\n\t"
          "ushll %[t6].4s, %[t3].4h, #2\n\t"
          "ushll2 %[t7].4s, %[t3].8h, #2\n\t"
          "stp %q[t0], %q[t1], [%[d]], #128\n\t"
          "stp %q[t6], %q[t7], [%[d], #-96]\n\t"
          "ushll %[t0].4s, %[t4].4h, #2\n\t"
          "ushll2 %[t1].4s, %[t4].8h, #2\n\t"
          "ushll %[t6].4s, %[t5].4h, #2\n\t"
          "ushll2 %[t7].4s, %[t5].8h, #2\n\t"
          "stp %q[t0], %q[t1], [%[d], #-64]\n\t"
          "stp %q[t6], %q[t7], [%[d], #-32]\n\t"
          "subs %w[k], %w[k], #1\n\t"
          "b.ne 1b\n\t"
          : [c] "+r"(c), [d] "+r"(d), [k] "+r"(k), [t0] "=&w"(t0), [t1] "=&w"(t1), [t2] "=&w"(t2),
            [t3] "=&w"(t3), [t4] "=&w"(t4), [t5] "=&w"(t5), [t6] "=&w"(t6), [t7] "=&w"(t7)
          : [one] "w"(one)
          : "cc", "memory");
}
#else
static inline __attribute__((always_inline)) void prunec_neon_steps32(const uint8_t *c, uint32_t *d, uint32_t k) {
  __asm__ __volatile__("vmov.i8 d31, #1\n"
          "1:\n\t"
          "vld1.8 {d0-d3}, [%[c]]!\n\t"
          "vaddl.u8 q2, d0, d31\n\t"
          "vaddl.u8 q3, d1, d31\n\t"
          "vshll.u16 q8, d4, #2\n\t"
          "vshll.u16 q9, d5, #2\n\t"
          "vshll.u16 q10, d6, #2\n\t"
          "vshll.u16 q11, d7, #2\n\t"
          "vst1.32 {d16-d19}, [%[d]]!\n\t"
          "vst1.32 {d20-d23}, [%[d]]!\n\t"
          "vaddl.u8 q2, d2, d31\n\t"
          "vaddl.u8 q3, d3, d31\n\t"
          "vshll.u16 q8, d4, #2\n\t"
          "vshll.u16 q9, d5, #2\n\t"
          "vshll.u16 q10, d6, #2\n\t"
          "vshll.u16 q11, d7, #2\n\t"
          "vst1.32 {d16-d19}, [%[d]]!\n\t"
          "vst1.32 {d20-d23}, [%[d]]!\n\t"
          "subs %[k], %[k], #1\n\t"
          "bne 1b\n\t"
          : [c] "+r"(c), [d] "+r"(d), [k] "+r"(k)
          :
          : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d16", "d17", "d18", "d19", "d20", "d21", "d22",
            "d23", "d31", "cc", "memory");
}
#endif

#if PRUNEC_RCSR_ODD_WIDTHS /* prunec_config.h: a build with only 4/8/16-bit layers leaves these out */
/* Any other width b (1 .. 15): m codes from entry `from` into byte steps d[0 .. m-1]. g codes (16 for b <= 7, else
 * 8) take exactly g*b/8 bytes, so every block of g codes starts at the same bit s0 of a byte: one 16-byte load per
 * block (only while it stays inside the index array), table lookups (TBL / VTBL) that put the up to 3 bytes of
 * code j into 32-bit lane j, AND with the code's mask shifted to its bit, a per-lane shift by 2 - its bit (USHL)
 * and + 4: the step 4 * (code + 1). AArch64: 23 instructions per 16 codes at b <= 7; the codes after the last
 * whole load one by one. */
PRUNEC_ALWAYS_INLINE uint32_t prunec_neon_fill_blocks(const uint8_t *p, const uint8_t *stop, uint32_t s0, uint32_t b,
                                                      uint32_t m, uint32_t *d, const uint32_t g) {
  uint8_t idx[64];
  uint32_t msk[16];
  int32_t shl[16];
  uint8x16_t iv[4];
  uint32x4_t mv[4];
  int32x4_t hv[4];
  const uint32x4_t four = vdupq_n_u32(4);
  const size_t step = g * b / 8u;
  size_t n = (size_t)(m / g), fit;
  uint32_t j;
  if (n == 0u || (size_t)(stop - p) < 16u) {
    return 0;
  }
  fit = ((size_t)(stop - p) - 16u) / step + 1u; /* blocks whose 16-byte load ends inside the array */
  n = n < fit ? n : fit;
  for (j = 0; j < g; j++) {
    const uint32_t at = s0 + j * b;
    uint32_t q;
    for (q = 0; q < 4u; q++) {
      idx[4u * j + q] = (uint8_t)((at >> 3) + q); /* >= 16 (bytes no code needs): TBL gives 0 */
    }
    msk[j] = ((1u << b) - 1u) << (at & 7u);
    shl[j] = 2 - (int32_t)(at & 7u);
  }
  for (j = 0; j < g / 4u; j++) {
    iv[j] = vld1q_u8(idx + 16u * j);
    mv[j] = vld1q_u32(msk + 4u * j);
    hv[j] = vld1q_s32(shl + 4u * j);
  }
  for (; n > 0u; n--, p += step, d += g) {
    const uint8x16_t v = vld1q_u8(p);
#if !PRUNEC_HAVE_AARCH64
    uint8x8x2_t t;
    t.val[0] = vget_low_u8(v);
    t.val[1] = vget_high_u8(v);
#endif
    for (j = 0; j < g / 4u; j++) {
#if PRUNEC_HAVE_AARCH64
      const uint32x4_t w = vreinterpretq_u32_u8(vqtbl1q_u8(v, iv[j]));
#else
      const uint32x4_t w =
          vreinterpretq_u32_u8(vcombine_u8(vtbl2_u8(t, vget_low_u8(iv[j])), vtbl2_u8(t, vget_high_u8(iv[j]))));
#endif
      vst1q_u32(d + 4u * j, vaddq_u32(vshlq_u32(vandq_u32(w, mv[j]), hv[j]), four));
    }
  }
  return (uint32_t)(m / g < fit ? m / g : fit) * g;
}

static void prunec_neon_fill_any(const prunec_neon_window *s, uint32_t from, uint32_t m, uint32_t *d) {
  const uint32_t b = s->bits;
  const uint64_t bit0 = (uint64_t)from * b;
  const uint8_t *const p = s->index + (size_t)(bit0 >> 3);
  const uint8_t *const stop = s->index + (size_t)(((uint64_t)s->total * b + 7u) >> 3); /* the array's end */
  const uint32_t s0 = (uint32_t)(bit0 & 7u);
  uint32_t i = b <= 7u ? prunec_neon_fill_blocks(p, stop, s0, b, m, d, 16u)
                       : prunec_neon_fill_blocks(p, stop, s0, b, m, d, 8u);
  for (; i < m; i++) {
    d[i] = (prunec_rcsr_code_any(s->index, from + i, b) + 1u) << 2;
  }
}
#endif /* PRUNEC_RCSR_ODD_WIDTHS */

/* Decodes the codes of entries from .. from + m - 1 (m = min(WINDOW + 1, total - from)) into byte steps,
 * 32 codes per vector step (b = 16: 8; other widths: 16 or 8). Vector loads stay inside the index array. */
static __attribute__((noinline)) void prunec_neon_fc_fill(prunec_neon_window *s, uint32_t from) {
  const uint32_t left = s->total - from;
  const uint32_t m = left < PRUNEC_NEON_FC_WINDOW + 1u ? left : PRUNEC_NEON_FC_WINDOW + 1u;
  uint32_t *d = s->d;
  uint32_t i = 0;
  if (s->bits == 8) {
    const uint8_t *c = s->index + from;
    if (m >= 32u) {
      i = m & ~31u;
      prunec_neon_steps32(c, d, m >> 5);
    }
    for (; i < m; i++) {
      d[i] = ((uint32_t)c[i] + 1u) << 2;
    }
  } else if (s->bits == 16) {
    const uint8_t *c = s->index + 2u * from;
    const uint32x4_t four = vdupq_n_u32(4);
    for (; i + 8u <= m; i += 8u) {
      const uint16x8_t v = vreinterpretq_u16_u8(vld1q_u8(c + 2u * i)); /* little-endian codes */
      vst1q_u32(d + i, vaddq_u32(vshll_n_u16(vget_low_u16(v), 2), four));
      vst1q_u32(d + i + 4, vaddq_u32(vshll_n_u16(vget_high_u16(v), 2), four));
    }
    for (; i < m; i++) {
      d[i] = (((uint32_t)c[2u * i] | ((uint32_t)c[2u * i + 1u] << 8)) + 1u) << 2;
    }
#if PRUNEC_RCSR_ODD_WIDTHS
  } else if (s->bits != 4u) {
    prunec_neon_fill_any(s, from, m, d);
#endif
  } else { /* 4 (with PRUNEC_RCSR_ODD_WIDTHS 0 the only width left: prunec_rcsr_bad_bits took the others) */
    const uint8x16_t nib = vdupq_n_u8(0x0F);
    if ((from & 1u) != 0 && m != 0) {
      d[0] = (uint32_t)((s->index[from >> 1] >> 4) + 1u) << 2;
      i = 1;
    }
    for (; i + 32u <= m; i += 32u) {
      const uint8x16_t v = vld1q_u8(s->index + ((from + i) >> 1));
      const uint8x16x2_t z = vzipq_u8(vandq_u8(v, nib), vshrq_n_u8(v, 4)); /* entries in order */
      prunec_neon_steps16(z.val[0], d + i);
      prunec_neon_steps16(z.val[1], d + i + 16);
    }
    for (; i < m; i++) {
      const uint32_t e = from + i;
      d[i] = ((uint32_t)((s->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu) + 1u) << 2;
    }
  }
  d[m] = 0;
  s->cs = from;
  s->lim = from + m;
}

/*
 * The steps of one row: n entries into ACC. On entry xp = x + col(first entry) in bytes, dp points at the
 * step of the entry after it, vp at its value; on exit all three have moved past the n entries (dp past the
 * step that follows the last). Each x load is a lane load whose register post-increment is the next entry's
 * step. Groups of 8 entries in a loop, then 4, 2, 1 entries on the bits of n.
 *
 * AArch64, per 8 entries: 4 LDP of steps, 8 LD1 lane loads, one LDP of 8 values, 2 FMLA, SUBS + B.NE = 17.
 * The 2- and 1-entry steps load into the low lanes of registers whose upper lanes are zero (LD1R .2S then a
 * lane load; MOVI then a lane load; LDR D / LDR S), so the unused lanes add 0 x 0. (Not LD1R .2S alone for the
 * 1-entry step: its lane 1 would add 0 x x[col], NaN where x[col] is an infinity, where the portable kernel
 * gives the infinity.)
 */
#define PRUNEC_NEON_A64_STEPS(ACC, N)                  \
  "lsr %w[g], %w[" N "], #3\n\t"                       \
  "cbz %w[g], 2f\n"                                    \
  "1:\n\t"                                             \
  "ldp %w[s0], %w[s1], [%[dp]], #32\n\t"               \
  "ldp %w[s2], %w[s3], [%[dp], #-24]\n\t"              \
  "ldp %w[s4], %w[s5], [%[dp], #-16]\n\t"              \
  "ldp %w[s6], %w[s7], [%[dp], #-8]\n\t"               \
  "ld1 {%[x0].s}[0], [%[xp]], %[s0]\n\t"               \
  "ld1 {%[x0].s}[1], [%[xp]], %[s1]\n\t"               \
  "ld1 {%[x0].s}[2], [%[xp]], %[s2]\n\t"               \
  "ld1 {%[x0].s}[3], [%[xp]], %[s3]\n\t"               \
  "ld1 {%[x1].s}[0], [%[xp]], %[s4]\n\t"               \
  "ld1 {%[x1].s}[1], [%[xp]], %[s5]\n\t"               \
  "ld1 {%[x1].s}[2], [%[xp]], %[s6]\n\t"               \
  "ld1 {%[x1].s}[3], [%[xp]], %[s7]\n\t"               \
  "ldp %q[v0], %q[v1], [%[vp]], #32\n\t"               \
  "fmla %[" ACC "].4s, %[v0].4s, %[x0].4s\n\t"         \
  "fmla %[" ACC "].4s, %[v1].4s, %[x1].4s\n\t"         \
  "subs %w[g], %w[g], #1\n\t"                          \
  "b.ne 1b\n"                                          \
  "2:\n\t"                                             \
  "tbz %w[" N "], #2, 3f\n\t"                          \
  "ldp %w[s0], %w[s1], [%[dp]], #16\n\t"               \
  "ldp %w[s2], %w[s3], [%[dp], #-8]\n\t"               \
  "ld1 {%[x0].s}[0], [%[xp]], %[s0]\n\t"               \
  "ld1 {%[x0].s}[1], [%[xp]], %[s1]\n\t"               \
  "ld1 {%[x0].s}[2], [%[xp]], %[s2]\n\t"               \
  "ld1 {%[x0].s}[3], [%[xp]], %[s3]\n\t"               \
  "ldr %q[v0], [%[vp]], #16\n\t"                       \
  "fmla %[" ACC "].4s, %[v0].4s, %[x0].4s\n"           \
  "3:\n\t"                                             \
  "tbz %w[" N "], #1, 4f\n\t"                          \
  "ldp %w[s0], %w[s1], [%[dp]], #8\n\t"                \
  "ld1r {%[x0].2s}, [%[xp]], %[s0]\n\t"                \
  "ld1 {%[x0].s}[1], [%[xp]], %[s1]\n\t"               \
  "ldr %d[v0], [%[vp]], #8\n\t"                        \
  "fmla %[" ACC "].4s, %[v0].4s, %[x0].4s\n"           \
  "4:\n\t"                                             \
  "tbz %w[" N "], #0, 5f\n\t"                          \
  "ldr %w[s0], [%[dp]], #4\n\t"                        \
  "movi %[x0].2d, #0\n\t"                              \
  "ld1 {%[x0].s}[0], [%[xp]], %[s0]\n\t"               \
  "ldr %s[v0], [%[vp]], #4\n\t"                        \
  "fmla %[" ACC "].4s, %[v0].4s, %[x0].4s\n"           \
  "5:\n\t"

/* Starts a row: xp = x + col(first entry) from the step before dp; ACC = 0. */
#define PRUNEC_NEON_A64_ROW(ACC, N)                    \
  "ldur %w[s0], [%[dp], #-4]\n\t"                      \
  "add %[xp], %[xm4], %[s0]\n\t"                       \
  "movi %[" ACC "].4s, #0\n\t" PRUNEC_NEON_A64_STEPS(ACC, N)

#define PRUNEC_NEON_A64_TEMPS                                                                              \
  [g] "=&r"(g), [x0] "=&w"(x0), [x1] "=&w"(x1), [v0] "=&w"(v0), [v1] "=&w"(v1), [s0] "=&r"(s0),           \
      [s1] "=&r"(s1), [s2] "=&r"(s2), [s3] "=&r"(s3), [s4] "=&r"(s4), [s5] "=&r"(s5), [s6] "=&r"(s6),     \
      [s7] "=&r"(s7)

/*
 * Armv7-A: per 8 entries 2 LDM of 4 steps, 8 VLD1 lane loads, one VLD1 of 8 values, 2 VFMA, SUBS + BNE =
 * 15. The 2- and 1-entry steps use a 64-bit VFMA on the low half of ACC. x and values live in q8-q11, the
 * steps in r4-r6, r8.
 */
#define PRUNEC_NEON_V7_STEPS(ACC, N)                   \
  "lsrs %[g], %[" N "], #3\n\t"                        \
  "beq 2f\n"                                           \
  "1:\n\t"                                             \
  "ldm %[dp]!, {r4, r5, r6, r8}\n\t"                   \
  "vld1.32 {d16[0]}, [%[xp]], r4\n\t"                  \
  "vld1.32 {d16[1]}, [%[xp]], r5\n\t"                  \
  "vld1.32 {d17[0]}, [%[xp]], r6\n\t"                  \
  "vld1.32 {d17[1]}, [%[xp]], r8\n\t"                  \
  "ldm %[dp]!, {r4, r5, r6, r8}\n\t"                   \
  "vld1.32 {d18[0]}, [%[xp]], r4\n\t"                  \
  "vld1.32 {d18[1]}, [%[xp]], r5\n\t"                  \
  "vld1.32 {d19[0]}, [%[xp]], r6\n\t"                  \
  "vld1.32 {d19[1]}, [%[xp]], r8\n\t"                  \
  "vld1.32 {d20-d23}, [%[vp]]!\n\t"                    \
  "vfma.f32 %q[" ACC "], q10, q8\n\t"                  \
  "vfma.f32 %q[" ACC "], q11, q9\n\t"                  \
  "subs %[g], %[g], #1\n\t"                            \
  "bne 1b\n"                                           \
  "2:\n\t"                                             \
  "tst %[" N "], #4\n\t"                               \
  "beq 3f\n\t"                                         \
  "ldm %[dp]!, {r4, r5, r6, r8}\n\t"                   \
  "vld1.32 {d16[0]}, [%[xp]], r4\n\t"                  \
  "vld1.32 {d16[1]}, [%[xp]], r5\n\t"                  \
  "vld1.32 {d17[0]}, [%[xp]], r6\n\t"                  \
  "vld1.32 {d17[1]}, [%[xp]], r8\n\t"                  \
  "vld1.32 {d20-d21}, [%[vp]]!\n\t"                    \
  "vfma.f32 %q[" ACC "], q10, q8\n"                    \
  "3:\n\t"                                             \
  "tst %[" N "], #2\n\t"                               \
  "beq 4f\n\t"                                         \
  "ldm %[dp]!, {r4, r5}\n\t"                           \
  "vld1.32 {d16[0]}, [%[xp]], r4\n\t"                  \
  "vld1.32 {d16[1]}, [%[xp]], r5\n\t"                  \
  "vld1.32 {d20}, [%[vp]]!\n\t"                        \
  "vfma.f32 %e[" ACC "], d20, d16\n"                   \
  "4:\n\t"                                             \
  "tst %[" N "], #1\n\t"                               \
  "beq 5f\n\t"                                         \
  "ldr r4, [%[dp]], #4\n\t"                            \
  "vmov.i32 d16, #0\n\t"                               \
  "vld1.32 {d16[0]}, [%[xp]], r4\n\t"                  \
  "vld1.32 {d20[]}, [%[vp]]!\n\t"                      \
  "vfma.f32 %e[" ACC "], d20, d16\n"                   \
  "5:\n\t"

/* Starts a row: n = rp[1] - rp[0], rp += 1; xp = x + col(first entry) from the step before dp; ACC = 0. */
#define PRUNEC_NEON_V7_ROW(ACC)                        \
  "ldr %[g], [%[rp]], #4\n\t"                          \
  "ldr %[n], [%[rp]]\n\t"                              \
  "sub %[n], %[n], %[g]\n\t"                           \
  "ldr %[g], [%[dp], #-4]\n\t"                         \
  "add %[xp], %[xm4], %[g]\n\t"                        \
  "vmov.i32 %q[" ACC "], #0\n\t" PRUNEC_NEON_V7_STEPS(ACC, "n")

#define PRUNEC_NEON_V7_CLOBBERS \
  "r4", "r5", "r6", "r8", "d16", "d17", "d18", "d19", "d20", "d21", "d22", "d23", "cc", "memory"

#if PRUNEC_HAVE_AARCH64
/* n entries (any n) of a row, continuing from xp. */
static inline __attribute__((always_inline)) float32x4_t prunec_neon_fc_run(float32x4_t acc, const char **xpp,
                                                                           const uint32_t **dpp,
                                                                           const float **vpp, uint32_t n) {
  const char *xp = *xpp;
  const uint32_t *dp = *dpp;
  const float *vp = *vpp;
  float32x4_t x0, x1, v0, v1;
  uint64_t s0, s1, s2, s3, s4, s5, s6, s7;
  uint32_t g;
  __asm__ __volatile__(PRUNEC_NEON_A64_STEPS("acc", "n")
          : [acc] "+w"(acc), [xp] "+r"(xp), [dp] "+r"(dp), [vp] "+r"(vp), PRUNEC_NEON_A64_TEMPS
          : [n] "r"(n)
          : "cc", "memory");
  *xpp = xp;
  *dpp = dp;
  *vpp = vp;
  return acc;
}

/* 4 whole rows rp[0] .. rp[4] whose steps are all in the window: their 4 partial-sum vectors. */
static inline __attribute__((always_inline)) void prunec_neon_fc_rows4(float32x4_t a[4], const uint32_t *rp,
                                                                      const char *xm4, const uint32_t **dpp,
                                                                      const float **vpp) {
  const uint32_t *dp = *dpp;
  const float *vp = *vpp;
  const char *xp;
  float32x4_t a0, a1, a2, a3, x0, x1, v0, v1;
  uint64_t s0, s1, s2, s3, s4, s5, s6, s7;
  uint32_t g, n0, n1, n2, n3;
  __asm__ __volatile__("ldp %w[n0], %w[n1], [%[rp]]\n\t"
          "ldp %w[n2], %w[n3], [%[rp], #8]\n\t"
          "ldr %w[g], [%[rp], #16]\n\t"
          "sub %w[n0], %w[n1], %w[n0]\n\t"
          "sub %w[n1], %w[n2], %w[n1]\n\t"
          "sub %w[n2], %w[n3], %w[n2]\n\t"
          "sub %w[n3], %w[g], %w[n3]\n\t"
          PRUNEC_NEON_A64_ROW("a0", "n0")
          PRUNEC_NEON_A64_ROW("a1", "n1")
          PRUNEC_NEON_A64_ROW("a2", "n2")
          PRUNEC_NEON_A64_ROW("a3", "n3")
          : [a0] "=&w"(a0), [a1] "=&w"(a1), [a2] "=&w"(a2), [a3] "=&w"(a3), [xp] "=&r"(xp), [dp] "+r"(dp),
            [vp] "+r"(vp), [n0] "=&r"(n0), [n1] "=&r"(n1), [n2] "=&r"(n2), [n3] "=&r"(n3), PRUNEC_NEON_A64_TEMPS
          : [rp] "r"(rp), [xm4] "r"(xm4)
          : "cc", "memory");
  a[0] = a0;
  a[1] = a1;
  a[2] = a2;
  a[3] = a3;
  *dpp = dp;
  *vpp = vp;
}
#else
static inline __attribute__((always_inline)) float32x4_t prunec_neon_fc_run(float32x4_t acc, const char **xpp,
                                                                           const uint32_t **dpp,
                                                                           const float **vpp, uint32_t n) {
  const char *xp = *xpp;
  const uint32_t *dp = *dpp;
  const float *vp = *vpp;
  uint32_t g;
  __asm__ __volatile__(PRUNEC_NEON_V7_STEPS("acc", "n")
          : [acc] "+w"(acc), [xp] "+r"(xp), [dp] "+r"(dp), [vp] "+r"(vp), [g] "=&r"(g)
          : [n] "r"(n)
          : PRUNEC_NEON_V7_CLOBBERS);
  *xpp = xp;
  *dpp = dp;
  *vpp = vp;
  return acc;
}

static inline __attribute__((always_inline)) void prunec_neon_fc_rows4(float32x4_t a[4], const uint32_t *rp,
                                                                      const char *xm4, const uint32_t **dpp,
                                                                      const float **vpp) {
  const uint32_t *dp = *dpp;
  const float *vp = *vpp;
  const char *xp;
  float32x4_t a0, a1, a2, a3;
  uint32_t g, n;
  __asm__ __volatile__(PRUNEC_NEON_V7_ROW("a0") PRUNEC_NEON_V7_ROW("a1") PRUNEC_NEON_V7_ROW("a2") PRUNEC_NEON_V7_ROW("a3")
          : [a0] "=&w"(a0), [a1] "=&w"(a1), [a2] "=&w"(a2), [a3] "=&w"(a3), [xp] "=&r"(xp), [dp] "+r"(dp),
            [vp] "+r"(vp), [rp] "+r"(rp), [g] "=&r"(g), [n] "=&r"(n)
          : [xm4] "r"(xm4)
          : PRUNEC_NEON_V7_CLOBBERS);
  a[0] = a0;
  a[1] = a1;
  a[2] = a2;
  a[3] = a3;
  *dpp = dp;
  *vpp = vp;
}
#endif

/* Where the fc loop stands: dp points at the step after the first entry of the next row (past the step of
 * the previous row's last entry), vp at the next row's first value; rows ending at or before lim have all
 * their steps in the window. */
typedef struct prunec_neon_fc_pos {
  const uint32_t *dp;
  const float *vp;
  uint32_t lim;
} prunec_neon_fc_pos;

/* One row [e, end), refilling the window first when the row's steps are not all in it: 4 partial sums.
 * xm4 = x - 1 entry, in bytes. */
static inline __attribute__((always_inline)) float32x4_t prunec_neon_fc_row(prunec_neon_window *s,
                                                                           prunec_neon_fc_pos *p,
                                                                           const char *xm4, uint32_t e,
                                                                           const uint32_t end) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  const char *xp;
  if (end > p->lim) { /* refill from this row; a row longer than the window goes in pieces */
    prunec_neon_fc_fill(s, e);
    p->lim = s->lim;
    p->dp = s->d + 1;
    xp = xm4 + s->d[0];
    while (end > p->lim) {
      const uint32_t n = (p->lim - 1u - e) & ~7u; /* the step after the piece must be decoded */
      acc = prunec_neon_fc_run(acc, &xp, &p->dp, &p->vp, n);
      e += n;
      prunec_neon_fc_fill(s, e);
      p->lim = s->lim;
      p->dp = s->d + 1;
    }
  } else {
    xp = xm4 + p->dp[-1];
  }
  return prunec_neon_fc_run(acc, &xp, &p->dp, &p->vp, end - e);
}

#if PRUNEC_HAVE_AARCH64
static inline float32x4_t prunec_neon_sum4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
  return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
}
#else
static inline float32x4_t prunec_neon_sum4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
  const float32x2_t s0 = vpadd_f32(vget_low_f32(a0), vget_high_f32(a0));
  const float32x2_t s1 = vpadd_f32(vget_low_f32(a1), vget_high_f32(a1));
  const float32x2_t s2 = vpadd_f32(vget_low_f32(a2), vget_high_f32(a2));
  const float32x2_t s3 = vpadd_f32(vget_low_f32(a3), vget_high_f32(a3));
  return vcombine_f32(vpadd_f32(s0, s1), vpadd_f32(s2, s3));
}
#endif

/*
 * Sparse fc. The codes are decoded in a SIMD pre-pass (prunec_neon_fc_fill, ~0.6 instructions per entry at
 * b = 8) into byte steps of x, a window of up to WINDOW + 1 = 2049 entries (8 KB) on the stack, reused across
 * rows. The main loop does no column arithmetic: each x load is a lane load whose register post-increment
 * steps the x pointer to the next entry's column; 8 values per load, 2 FMAs per 8 entries. Rows go 4 at a
 * time, in one asm block when all 4 are in the window (one horizontal reduction, bias add, clamp and store
 * per 4 rows); a row's last 1-7 entries take 4-, 2- and 1-entry steps.
 */
void prunec_f32_fc_rcsr__neon(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  prunec_neon_window s;
  prunec_neon_fc_pos p;
  const uint32_t *row_ptr = w->row_ptr;
  const char *xm4 = (const char *)x - 4;
  const float32x4_t vlo = vdupq_n_f32(out_min), vhi = vdupq_n_f32(out_max);
  const uint32_t rows = w->rows;
  uint32_t r;
  if (prunec_rcsr_bad_bits(w, y, w->rows)) {
    return;
  }
  s.index = w->index;
  s.bits = w->index_bits;
  s.total = row_ptr[rows];
  s.cs = 0;
  s.lim = 0;
  s.d[0] = 0;
  p.dp = s.d + 1;
  p.vp = w->values + row_ptr[0];
  p.lim = 0;
  for (r = 0; r + 4u <= rows; r += 4u) {
    float32x4_t a[4], v;
    if (row_ptr[r + 4] <= p.lim) {
      prunec_neon_fc_rows4(a, row_ptr + r, xm4, &p.dp, &p.vp);
    } else {
      uint32_t k;
      for (k = 0; k < 4u; k++) {
        a[k] = prunec_neon_fc_row(&s, &p, xm4, row_ptr[r + k], row_ptr[r + k + 1]);
      }
    }
    v = prunec_neon_sum4(a[0], a[1], a[2], a[3]);
    if (bias != NULL) {
      v = vaddq_f32(v, vld1q_f32(bias + r));
    }
    vst1q_f32(y + r, prunec_neon_clamp(v, vlo, vhi));
  }
  for (; r < rows; r++) {
    float v = prunec_neon_hsum(prunec_neon_fc_row(&s, &p, xm4, row_ptr[r], row_ptr[r + 1]));
    v += bias != NULL ? bias[r] : 0.0f;
    v = v < out_min ? out_min : v;
    y[r] = v > out_max ? out_max : v;
  }
}

/* ---- conv2d ---- */

/* Output rows per register tile: AArch64 has 32 vector registers (8 rows x 8 columns = 16 accumulators),
 * Armv7-A 16 (4 rows x 8 columns = 8 accumulators). */
#if PRUNEC_HAVE_AARCH64
#define PRUNEC_NEON_TR 8
#else
#define PRUNEC_NEON_TR 4
#endif

typedef struct prunec_neon_taps {
  float w[PRUNEC_NEON_CHUNK];
  int32_t off[PRUNEC_NEON_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_NEON_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_NEON_CHUNK];  /* kx*dil_w */
} prunec_neon_taps;

/* One output channel's geometry and epilogue, shared by the sparse and the dense kernel. */
typedef struct prunec_neon_conv {
  const float *xg; /* the channel's group of input planes */
  float *yp;       /* the output plane */
  prunec_conv_geom g; /* the plane's geometry (prunec_rcsr_util.h) */
  float b;
  float32x4_t vb, vmin, vmax;
  uint32_t clamp_lo, clamp_hi; /* out_min > -inf, out_max < +inf */
} prunec_neon_conv;

/* The first m lanes of acc (clamped on the final chunk) to y[0 .. m). */
static inline void prunec_neon_store_lanes(float *y, float32x4_t acc, int32_t m, int final, float32x4_t vmin,
                                           float32x4_t vmax) {
  float buf[4];
  int32_t l;
  if (final) {
    acc = prunec_neon_clamp(acc, vmin, vmax);
  }
  vst1q_f32(buf, acc);
  for (l = 0; l < m; l++) {
    y[l] = buf[l];
  }
}

/* Input cells xs[0], xs[sw], xs[2 sw], xs[3 sw] (four lane loads: nothing read beyond the last one). */
static inline float32x4_t prunec_neon_ld_strided(const float *xs, int32_t sw) {
  float32x4_t v = vld1q_dup_f32(xs);
  v = vld1q_lane_f32(xs + sw, v, 1);
  v = vld1q_lane_f32(xs + 2 * sw, v, 2);
  return vld1q_lane_f32(xs + 3 * sw, v, 3);
}

/* Columns [ow, ow_end) of output row oh, every tap checked against the input rows; blocks of 8 and 4 columns
 * inside [ow_lo, ow_hi) (their taps all read inside the row) use plain loads (stride_w 1) or lane loads (stride_w
 * > 1: these ran the checked lane fills below before, ~5x the instructions), the others fill their lanes in scalar
 * code. */
static void prunec_neon_conv_row(const prunec_neon_conv *c, const prunec_neon_taps *t, uint32_t nt, int32_t oh,
                                 int32_t ow, int32_t ow_end, int first, int final) {
  const int32_t iy0 = oh * c->g.sh - c->g.ph;
  const ptrdiff_t rbase = (ptrdiff_t)iy0 * c->g.in_w - c->g.pw; /* xg[rbase + off[k] + ow]: tap k's input (stride 1) */
  const float *xg = c->xg;
  float *yr = c->yp + (size_t)oh * (size_t)c->g.out_w;
  const float32x4_t vb = c->vb, vmin = c->vmin, vmax = c->vmax;
  while (ow < ow_end) {
    uint32_t k;
    if (c->g.sw == 1 && ow >= c->g.ow_lo && ow + 8 <= c->g.ow_hi && ow + 8 <= ow_end) {
      float32x4_t acc0 = first ? vb : vld1q_f32(yr + ow);
      float32x4_t acc1 = first ? vb : vld1q_f32(yr + ow + 4);
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->g.in_h) {
          const float *xs = xg + (rbase + t->off[k] + ow);
          const float32x4_t wv = vld1q_dup_f32(t->w + k);
          acc0 = vfmaq_f32(acc0, vld1q_f32(xs), wv);
          acc1 = vfmaq_f32(acc1, vld1q_f32(xs + 4), wv);
        }
      }
      if (final) {
        acc0 = prunec_neon_clamp(acc0, vmin, vmax);
        acc1 = prunec_neon_clamp(acc1, vmin, vmax);
      }
      vst1q_f32(yr + ow, acc0);
      vst1q_f32(yr + ow + 4, acc1);
      ow += 8;
    } else if (c->g.sw > 1 && ow >= c->g.ow_lo && ow + 4 <= c->g.ow_hi && ow + 4 <= ow_end) {
      const int32_t sw = c->g.sw;
      const ptrdiff_t base = rbase + (ptrdiff_t)ow * sw; /* xg[base + off[k]]: the block's first input cell */
      const int two = ow + 8 <= c->g.ow_hi && ow + 8 <= ow_end;
      float32x4_t acc0 = first ? vb : vld1q_f32(yr + ow);
      float32x4_t acc1 = two ? (first ? vb : vld1q_f32(yr + ow + 4)) : vb;
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->g.in_h) {
          const float *xs = xg + (base + t->off[k]);
          const float32x4_t wv = vld1q_dup_f32(t->w + k);
          acc0 = vfmaq_f32(acc0, prunec_neon_ld_strided(xs, sw), wv);
          if (two) {
            acc1 = vfmaq_f32(acc1, prunec_neon_ld_strided(xs + 4 * sw, sw), wv);
          }
        }
      }
      if (final) {
        acc0 = prunec_neon_clamp(acc0, vmin, vmax);
        acc1 = prunec_neon_clamp(acc1, vmin, vmax);
      }
      vst1q_f32(yr + ow, acc0);
      if (two) {
        vst1q_f32(yr + ow + 4, acc1);
      }
      ow += two ? 8 : 4;
    } else if (c->g.sw == 1 && ow >= c->g.ow_lo && ow + 4 <= c->g.ow_hi && ow + 4 <= ow_end) {
      float32x4_t acc = first ? vb : vld1q_f32(yr + ow);
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->g.in_h) {
          acc = vfmaq_f32(acc, vld1q_f32(xg + (rbase + t->off[k] + ow)), vld1q_dup_f32(t->w + k));
        }
      }
      if (final) {
        acc = prunec_neon_clamp(acc, vmin, vmax);
      }
      vst1q_f32(yr + ow, acc);
      ow += 4;
    } else if (ow >= c->g.ow_lo && ow < c->g.ow_hi) {
      /* 1-3 interior pixels (a block's tail): their taps read inside the row, lanes loaded one by one */
      const int32_t sw = c->g.sw, hi = c->g.ow_hi < ow_end ? c->g.ow_hi : ow_end;
      const int32_t m = hi - ow < 4 ? hi - ow : 4;
      const ptrdiff_t base = rbase + (ptrdiff_t)ow * sw;
      float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      float32x4_t acc;
      int32_t l;
      for (l = 0; l < m; l++) {
        buf[l] = first ? c->b : yr[ow + l];
      }
      acc = vld1q_f32(buf);
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->g.in_h) {
          const float *xs = xg + (base + t->off[k]);
          float32x4_t xv = vld1q_dup_f32(xs);
          if (m > 1) {
            xv = vld1q_lane_f32(xs + sw, xv, 1);
          }
          if (m > 2) {
            xv = vld1q_lane_f32(xs + 2 * sw, xv, 2);
          }
          acc = vfmaq_f32(acc, xv, vld1q_dup_f32(t->w + k));
        }
      }
      prunec_neon_store_lanes(yr + ow, acc, m, final, vmin, vmax);
      ow += m;
    } else {
      const int32_t m0 = ow_end - ow < 4 ? ow_end - ow : 4;
      /* border pixels only: stop at the first interior one */
      const int32_t m = ow < c->g.ow_lo && c->g.ow_lo - ow < m0 ? c->g.ow_lo - ow : m0;
      float buf[4];
      int32_t l;
      float32x4_t acc;
      for (l = 0; l < 4; l++) {
        buf[l] = (first || l >= m) ? c->b : yr[ow + l];
      }
      acc = vld1q_f32(buf);
      for (k = 0; k < nt; k++) {
        const int32_t iy = iy0 + t->dy[k];
        if ((uint32_t)iy < (uint32_t)c->g.in_h) {
          const float *xr = xg + (t->off[k] - t->dx[k] + (ptrdiff_t)(iy - t->dy[k]) * c->g.in_w); /* input row iy */
          float xv[4];
          for (l = 0; l < 4; l++) {
            const int32_t ix = (ow + l) * c->g.sw - c->g.pw + t->dx[k];
            xv[l] = (l < m && (uint32_t)ix < (uint32_t)c->g.in_w) ? xr[ix] : 0.0f;
          }
          acc = vfmaq_f32(acc, vld1q_f32(xv), vld1q_dup_f32(t->w + k));
        }
      }
      prunec_neon_store_lanes(yr + ow, acc, m, final, vmin, vmax);
      ow += m;
    }
  }
}

/* Output column ow (outside [ow_lo, ow_hi)) of rows [oh, oh_end), which all read inside the input's rows: 4 rows per
 * vector (lane loads down the column), one column check per tap; the last 1-3 rows through prunec_neon_conv_row. */
static void prunec_neon_conv_col(const prunec_neon_conv *c, const prunec_neon_taps *t, uint32_t nt, int32_t ow,
                                 int32_t oh, int32_t oh_end, int first, int final) {
  const int32_t ix0 = ow * c->g.sw - c->g.pw, in_w = c->g.in_w;
  const ptrdiff_t vs = (ptrdiff_t)c->g.sh * in_w;
  const size_t ys = (size_t)c->g.out_w;
  for (; oh + 4 <= oh_end; oh += 4) {
    const float *xb = c->xg + ((ptrdiff_t)(oh * c->g.sh - c->g.ph) * in_w + ix0);
    float *y0 = c->yp + (size_t)oh * ys + (size_t)ow;
    float32x4_t acc;
    uint32_t k;
    if (first) {
      acc = c->vb;
    } else {
      acc = vld1q_dup_f32(y0);
      acc = vld1q_lane_f32(y0 + ys, acc, 1);
      acc = vld1q_lane_f32(y0 + 2 * ys, acc, 2);
      acc = vld1q_lane_f32(y0 + 3 * ys, acc, 3);
    }
    for (k = 0; k < nt; k++) {
      if ((uint32_t)(ix0 + t->dx[k]) < (uint32_t)in_w) {
        const float *xs = xb + t->off[k];
        float32x4_t xv = vld1q_dup_f32(xs);
        xv = vld1q_lane_f32(xs + vs, xv, 1);
        xv = vld1q_lane_f32(xs + 2 * vs, xv, 2);
        xv = vld1q_lane_f32(xs + 3 * vs, xv, 3);
        acc = vfmaq_f32(acc, xv, vld1q_dup_f32(t->w + k));
      }
    }
    if (final) {
      acc = prunec_neon_clamp(acc, c->vmin, c->vmax);
    }
    vst1q_lane_f32(y0, acc, 0);
    vst1q_lane_f32(y0 + ys, acc, 1);
    vst1q_lane_f32(y0 + 2 * ys, acc, 2);
    vst1q_lane_f32(y0 + 3 * ys, acc, 3);
  }
  for (; oh < oh_end; oh++) {
    prunec_neon_conv_row(c, t, nt, oh, ow, ow + 1, first, final);
  }
}

#if !defined(PRUNEC_NEON_NO_ASM)
/* The tap loop of a full tile (PRUNEC_NEON_TR rows x 8 columns), nt >= 1 taps, accumulators in registers.
 * Per tap: the input offset and the weight (post-incremented loads), one address add, then per row one
 * 8-float load (AArch64 LDP of 2 q; Armv7-A VLD1 of 4 d with the row step as register post-increment) and two
 * FMAs. AArch64: 8 rows, 5 + 8*4 - 1 = 36 instructions per 64 MACs; Armv7-A (FMA has no by-scalar form: the
 * weight is loaded duplicated): 4 rows, 5 + 4*3 = 17 per 32 MACs. Same FMA order as the C loop. */
#if PRUNEC_HAVE_AARCH64
/* AArch64: the whole tile in one block (16 accumulators v16-v31 would need more than GCC's 30 asm operands):
 * accumulators loaded from src (rows src_step bytes apart; the bias row with step 0), the tap loop, the
 * clamp (lower and upper bound each only when finite) and the store. */
#define PRUNEC_NEON_ROW(a, b) \
  "ldp q0, q1, [%[p]]\n\t" \
  "add %[p], %[p], %[rs]\n\t" \
  "fmla v" #a ".4s, v0.4s, v2.s[0]\n\t" \
  "fmla v" #b ".4s, v1.4s, v2.s[0]\n\t"
#define PRUNEC_NEON_LD(a, b) "ldp q" #a ", q" #b ", [%[src]]\n\tadd %[src], %[src], %[ss]\n\t"
#define PRUNEC_NEON_ST(a, b) "stp q" #a ", q" #b ", [%[dst]]\n\tadd %[dst], %[dst], %[ds]\n\t"
/* The clamp is the portable `a < lo ? lo : a`, `a > hi ? hi : a`: an ordered compare (false for NaN) and a bit
 * insert, so NaN and -0.0 pass relu unchanged as in PyTorch (FMAX/FMIN give +0.0 for max(-0.0, +0.0)). */
#define PRUNEC_NEON_MAX2(a, b) \
  "fcmgt v0.4s, %[vmin].4s, v" #a ".4s\n\tfcmgt v1.4s, %[vmin].4s, v" #b ".4s\n\t" \
  "bit v" #a ".16b, %[vmin].16b, v0.16b\n\tbit v" #b ".16b, %[vmin].16b, v1.16b\n\t"
#define PRUNEC_NEON_MIN2(a, b) \
  "fcmgt v0.4s, v" #a ".4s, %[vmax].4s\n\tfcmgt v1.4s, v" #b ".4s, %[vmax].4s\n\t" \
  "bit v" #a ".16b, %[vmax].16b, v0.16b\n\tbit v" #b ".16b, %[vmax].16b, v1.16b\n\t"
#define PRUNEC_NEON_MAX4(a, b, c, d) PRUNEC_NEON_MAX2(a, b) PRUNEC_NEON_MAX2(c, d)
#define PRUNEC_NEON_MIN4(a, b, c, d) PRUNEC_NEON_MIN2(a, b) PRUNEC_NEON_MIN2(c, d)
static inline void prunec_neon_conv_tile_asm(const float *xb, ptrdiff_t rs, const float *w, const int32_t *off,
                                             uint32_t nt, const float *src, ptrdiff_t src_step, float *dst,
                                             ptrdiff_t dst_step, float32x4_t vmin, float32x4_t vmax, uint32_t lo,
                                             uint32_t hi) {
  const int64_t rsb = (int64_t)rs * 4, ssb = (int64_t)src_step * 4, dsb = (int64_t)dst_step * 4;
  const float *p;
  int64_t o;
  __asm__ volatile(
      PRUNEC_NEON_LD(16, 17) PRUNEC_NEON_LD(18, 19) PRUNEC_NEON_LD(20, 21) PRUNEC_NEON_LD(22, 23)
      PRUNEC_NEON_LD(24, 25) PRUNEC_NEON_LD(26, 27) PRUNEC_NEON_LD(28, 29) PRUNEC_NEON_LD(30, 31)
      "cbz %w[n], 2f\n\t"
      "1:\n\t"
      "ldrsw %[o], [%[off]], #4\n\t"
      "ldr s2, [%[w]], #4\n\t"
      "add %[p], %[xb], %[o], lsl #2\n\t"
      PRUNEC_NEON_ROW(16, 17) PRUNEC_NEON_ROW(18, 19) PRUNEC_NEON_ROW(20, 21) PRUNEC_NEON_ROW(22, 23)
      PRUNEC_NEON_ROW(24, 25) PRUNEC_NEON_ROW(26, 27) PRUNEC_NEON_ROW(28, 29)
      "ldp q0, q1, [%[p]]\n\t"
      "fmla v30.4s, v0.4s, v2.s[0]\n\t"
      "fmla v31.4s, v1.4s, v2.s[0]\n\t"
      "subs %w[n], %w[n], #1\n\t"
      "b.ne 1b\n\t"
      "2:\n\t"
      "cbz %w[lo], 3f\n\t"
      PRUNEC_NEON_MAX4(16, 17, 18, 19) PRUNEC_NEON_MAX4(20, 21, 22, 23)
      PRUNEC_NEON_MAX4(24, 25, 26, 27) PRUNEC_NEON_MAX4(28, 29, 30, 31)
      "3:\n\t"
      "cbz %w[hi], 4f\n\t"
      PRUNEC_NEON_MIN4(16, 17, 18, 19) PRUNEC_NEON_MIN4(20, 21, 22, 23)
      PRUNEC_NEON_MIN4(24, 25, 26, 27) PRUNEC_NEON_MIN4(28, 29, 30, 31)
      "4:\n\t"
      PRUNEC_NEON_ST(16, 17) PRUNEC_NEON_ST(18, 19) PRUNEC_NEON_ST(20, 21) PRUNEC_NEON_ST(22, 23)
      PRUNEC_NEON_ST(24, 25) PRUNEC_NEON_ST(26, 27) PRUNEC_NEON_ST(28, 29) PRUNEC_NEON_ST(30, 31)
      : [off] "+r"(off), [w] "+r"(w), [n] "+r"(nt), [src] "+r"(src), [dst] "+r"(dst), [p] "=&r"(p), [o] "=&r"(o)
      : [xb] "r"(xb), [rs] "r"(rsb), [ss] "r"(ssb), [ds] "r"(dsb), [vmin] "w"(vmin), [vmax] "w"(vmax),
        [lo] "r"(lo), [hi] "r"(hi)
      : "v0", "v1", "v2", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
        "v28", "v29", "v30", "v31", "cc", "memory");
}
#undef PRUNEC_NEON_ROW
#undef PRUNEC_NEON_LD
#undef PRUNEC_NEON_ST
#undef PRUNEC_NEON_MAX2
#undef PRUNEC_NEON_MIN2
#undef PRUNEC_NEON_MAX4
#undef PRUNEC_NEON_MIN4
#else
#define PRUNEC_NEON_ROW(a, b) \
  "vld1.32 {d0-d3}, [%[p]], %[rs]\n\t" \
  "vfma.f32 %q[" #a "], q0, q2\n\t" \
  "vfma.f32 %q[" #b "], q1, q2\n\t"
static inline void prunec_neon_conv_taps_asm(const float *xb, ptrdiff_t rs, const float *w, const int32_t *off,
                                             uint32_t nt, float32x4_t acc[PRUNEC_NEON_TR][2]) {
  float32x4_t a00 = acc[0][0], a01 = acc[0][1], a10 = acc[1][0], a11 = acc[1][1];
  float32x4_t a20 = acc[2][0], a21 = acc[2][1], a30 = acc[3][0], a31 = acc[3][1];
  const int32_t rsb = (int32_t)rs * 4;
  const float *p;
  int32_t o;
  __asm__("1:\n\t"
          "ldr %[o], [%[off]], #4\n\t"
          "vld1.32 {d4[], d5[]}, [%[w]]!\n\t"
          "add %[p], %[xb], %[o], lsl #2\n\t"
          PRUNEC_NEON_ROW(a00, a01) PRUNEC_NEON_ROW(a10, a11) PRUNEC_NEON_ROW(a20, a21) PRUNEC_NEON_ROW(a30, a31)
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          : [a00] "+w"(a00), [a01] "+w"(a01), [a10] "+w"(a10), [a11] "+w"(a11), [a20] "+w"(a20), [a21] "+w"(a21),
            [a30] "+w"(a30), [a31] "+w"(a31), [off] "+r"(off), [w] "+r"(w), [n] "+r"(nt), [p] "=&r"(p),
            [o] "=&r"(o)
          : [xb] "r"(xb), [rs] "r"(rsb)
          : "d0", "d1", "d2", "d3", "d4", "d5", "cc", "memory");
  acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11;
  acc[2][0] = a20; acc[2][1] = a21; acc[3][0] = a30; acc[3][1] = a31;
}
#undef PRUNEC_NEON_ROW
#endif
#endif /* !PRUNEC_NEON_NO_ASM */

/* A register tile of R output rows (oh .. oh+R-1, all inside [oh_lo, oh_hi)) x 4*V columns (ow .. ow+4V-1,
 * inside [ow_lo, ow_hi), stride_w 1): no bounds checks; per tap one weight broadcast and R*V loads + FMAs. */
PRUNEC_ALWAYS_INLINE void prunec_neon_conv_tile(const prunec_neon_conv *c, const prunec_neon_taps *t, uint32_t nt,
                                                int32_t oh, int32_t ow, int first, int final, const int R,
                                                const int V) {
  const ptrdiff_t rs = (ptrdiff_t)c->g.sh * c->g.in_w;
  const float *xb = c->xg + ((ptrdiff_t)(oh * c->g.sh - c->g.ph) * c->g.in_w + (ow - c->g.pw));
  float *yb = c->yp + (size_t)oh * (size_t)c->g.out_w + (size_t)ow;
  float32x4_t acc[PRUNEC_NEON_TR][2];
  uint32_t k;
  int r, v;
#if !defined(PRUNEC_NEON_NO_ASM) && PRUNEC_HAVE_AARCH64
  if (R == PRUNEC_NEON_TR && V == 2) {
    float bb[8];
    vst1q_f32(bb, c->vb);
    vst1q_f32(bb + 4, c->vb);
    prunec_neon_conv_tile_asm(xb, rs, t->w, t->off, nt, first ? bb : yb, first ? 0 : c->g.out_w, yb, c->g.out_w,
                              c->vmin, c->vmax, final && c->clamp_lo, final && c->clamp_hi);
    return;
  }
#endif
  for (r = 0; r < R; r++) {
    for (v = 0; v < V; v++) {
      acc[r][v] = first ? c->vb : vld1q_f32(yb + (size_t)r * (size_t)c->g.out_w + 4 * v);
    }
  }
#if !defined(PRUNEC_NEON_NO_ASM) && !PRUNEC_HAVE_AARCH64
  if (R == PRUNEC_NEON_TR && V == 2) {
    prunec_neon_conv_taps_asm(xb, rs, t->w, t->off, nt, acc);
  } else
#endif
  {
    for (k = 0; k < nt; k++) {
      const float *xs = xb + t->off[k];
      const float32x4_t wk = vld1q_dup_f32(t->w + k);
      for (r = 0; r < R; r++) {
        for (v = 0; v < V; v++) {
          acc[r][v] = vfmaq_f32(acc[r][v], vld1q_f32(xs + 4 * v), wk);
        }
        xs += rs;
      }
    }
  }
  for (r = 0; r < R; r++) {
    for (v = 0; v < V; v++) {
      float32x4_t a = acc[r][v];
      if (final) {
        a = prunec_neon_clamp(a, c->vmin, c->vmax);
      }
      vst1q_f32(yb + (size_t)r * (size_t)c->g.out_w + 4 * v, a);
    }
  }
}

/* The output plane for one chunk of taps: interior blocks of PRUNEC_NEON_TR rows go through register tiles
 * (8 columns, then 4), everything else (border rows and columns, stride_w > 1, short tails) through
 * prunec_neon_conv_row. */
static void prunec_neon_conv_plane(const prunec_neon_conv *c, const prunec_neon_taps *t, uint32_t nt, int first,
                                   int final) {
  const int32_t out_h = c->g.out_h, out_w = c->g.out_w;
  const int32_t oh_lo = c->g.oh_lo < out_h ? c->g.oh_lo : out_h;
  const int32_t oh_hi = c->g.oh_hi < oh_lo ? oh_lo : c->g.oh_hi;           /* interior rows [oh_lo, oh_hi) */
  const int32_t ow_lo = c->g.ow_lo, ow_hi = c->g.ow_hi < ow_lo ? ow_lo : c->g.ow_hi; /* interior columns */
  int32_t oh = 0, ow;
  for (; oh < oh_lo; oh++) { /* border rows */
    prunec_neon_conv_row(c, t, nt, oh, 0, out_w, first, final);
  }
  while (oh < oh_hi) { /* interior rows, interior columns */
    if (c->g.sw == 1 && nt > 0 && oh + PRUNEC_NEON_TR <= oh_hi && ow_lo + 4 <= ow_hi) {
      int32_t r;
      for (ow = ow_lo; ow + 8 <= ow_hi; ow += 8) {
        prunec_neon_conv_tile(c, t, nt, oh, ow, first, final, PRUNEC_NEON_TR, 2);
      }
      if (ow + 4 <= ow_hi) {
        prunec_neon_conv_tile(c, t, nt, oh, ow, first, final, PRUNEC_NEON_TR, 1);
        ow += 4;
      }
      for (r = 0; r < PRUNEC_NEON_TR; r++) {
        prunec_neon_conv_row(c, t, nt, oh + r, ow, ow_hi, first, final);
      }
      oh += PRUNEC_NEON_TR;
    } else {
      prunec_neon_conv_row(c, t, nt, oh, ow_lo, ow_hi, first, final);
      oh++;
    }
  }
  for (ow = 0; ow < out_w; ow++) { /* interior rows, border columns: down the column */
    if (ow == ow_lo && ow_hi > ow_lo) {
      ow = ow_hi;
      if (ow >= out_w) {
        break;
      }
    }
    prunec_neon_conv_col(c, t, nt, ow, oh_lo, oh_hi, first, final);
  }
  for (oh = oh_hi; oh < out_h; oh++) { /* border rows */
    prunec_neon_conv_row(c, t, nt, oh, 0, out_w, first, final);
  }
}

static void prunec_neon_conv_channel_setup(const prunec_conv2d_params *p, prunec_neon_conv *c, const float *x,
                                           float *y, const float *bias, uint32_t oc) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  c->xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
  c->yp = y + (size_t)oc * out_plane;
  c->b = bias != NULL ? bias[oc] : 0.0f;
  c->vb = vdupq_n_f32(c->b);
}

/* The tiled kernel (the entry below hands it every layer but depthwise ones on small planes). */
static __attribute__((noinline)) void prunec_conv_impl_neon(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                          const float *bias, const float *x, float *y,
                                                          float out_min, float out_max) {
  prunec_neon_taps t;
  prunec_neon_conv c;
  prunec_conv_tap_table tab;
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  uint32_t oc;
  if (prunec_rcsr_bad_bits(w, y, (size_t)p->out_c * p->out_h * p->out_w)) {
    return;
  }
  prunec_conv_geom_init(p, &c.g);
  c.vmin = vdupq_n_f32(out_min);
  c.vmax = vdupq_n_f32(out_max);
  c.clamp_lo = !(out_min < -3.4028235e38f);
  c.clamp_hi = !(out_max > 3.4028235e38f);
  for (oc = 0; oc < p->out_c; oc++) {
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    uint32_t last = (uint32_t)-1;
    int first = 1;
    prunec_neon_conv_channel_setup(p, &c, x, y, bias, oc);
    do {
      const uint32_t n = end - e < PRUNEC_NEON_CHUNK ? end - e : PRUNEC_NEON_CHUNK;
      const uint32_t nt = use_tab ? prunec_conv_decode_taps_tab(&tab, w, e, n, &last, t.w, t.off, t.dy, t.dx)
                                  : prunec_conv_decode_taps(p, w, e, n, &last, t.w, t.off, t.dy, t.dx);
      prunec_neon_conv_plane(&c, &t, nt, first, e + n >= end);
      first = 0;
      e += n;
    } while (e < end);
  }
}

/* The entry: depthwise layers on small planes go to the portable kernel from here, before the frame of the tiled kernel (its
 * tap tables) is taken, so that the two frames never nest (the stack bound counts the deeper of the two paths). */
void prunec_f32_conv2d_rcsr__neon(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                  const float *x, float *y, float out_min, float out_max) {
  /* depthwise 3x3: the portable kernel's tap rectangles, on every plane on AArch64 (GCC vectorises their rows; at
   * 20 %: 6x6 207,529 -> 92,981 instructions, 48x48 158,666 -> 147,518), on planes up to 12x12 on Armv7-A (6x6
   * 198,944 -> 132,035; 16x16 ties; 24x24 loses, 309,363 against 443,540) and on narrower planes than 8 columns */
  if (prunec_conv_few_taps(p, PRUNEC_HAVE_AARCH64 || p->out_w < 8 ? UINT32_MAX : 144u)) {
    prunec_f32_conv2d_rcsr__portable(p, w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_conv_impl_neon(p, w, bias, x, y, out_min, out_max);
}

/* Dense conv2d: the same tiles over every weight of the row (zeros included), PRUNEC_NEON_CHUNK at a time. */
void prunec_f32_conv2d_dense__neon(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias,
                                   const float *x, float *y, float out_min, float out_max) {
  prunec_neon_taps t;
  prunec_neon_conv c;
  const uint32_t cols = w->cols;
  prunec_conv_tap_table tab;
  const int use_tab = prunec_conv_tap_table_init(p, &tab);
  uint32_t oc;
  prunec_conv_geom_init(p, &c.g);
  c.vmin = vdupq_n_f32(out_min);
  c.vmax = vdupq_n_f32(out_max);
  c.clamp_lo = !(out_min < -3.4028235e38f);
  c.clamp_hi = !(out_max > 3.4028235e38f);
  for (oc = 0; oc < p->out_c; oc++) {
    const float *wr = w->values + (size_t)oc * cols;
    uint32_t col = 0, tp = 0;
    int32_t cib = 0;
    int first = 1;
    prunec_neon_conv_channel_setup(p, &c, x, y, bias, oc);
    do {
      const uint32_t n = cols - col < PRUNEC_NEON_CHUNK ? cols - col : PRUNEC_NEON_CHUNK;
      prunec_conv_dense_taps(p, &tab, use_tab, wr, col, n, &tp, &cib, t.w, t.off, t.dy, t.dx);
      prunec_neon_conv_plane(&c, &t, n, first, col + n >= cols);
      first = 0;
      col += n;
    } while (col < cols);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_neon_unavailable;
#endif /* PRUNEC_HAVE_NEON_FMA */
