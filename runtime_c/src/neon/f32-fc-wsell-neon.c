/*
 * Sparse fully connected layer over the windowed sliced layout (prunec_wsell_f32, docs/FORMAT.md "Windowed fc
 * layers"), AArch64 NEON. Twin of prunec_f32_fc_wsell__portable (same result up to fp32 summation order).
 *
 * A slice's 4 rows are the 4 lanes of an accumulator. Per step: one LD1 of the 64-byte window into four registers,
 * its pointer post-incremented by the step's advance; one TBL whose 16 index bytes pick each lane's float out of
 * the window; one FMLA with the step's 4 weights. Indices, weights and advances come two steps per LDP
 * (PRUNEC_WSELL_PAIR), so the main loop, four steps per pass into four accumulators (the FMA latency), is 20
 * instructions: 5 per step of 4 slots, no per-entry address arithmetic and no gather. The relative-indexed CSR kernel takes ~3 per nonzero
 * here; at LeNet densities the layout holds ~1.4-1.6 slots per nonzero, so ~1.8-2 instructions per nonzero
 * (docs/BENCHMARKS.md "Windowed fc layers on AArch64"). A full slice's sum gets its 4 biases by lane loads, one
 * vector clamp (prunec_neon_clamp: the portable kernels' NaN and -0.0 behaviour) and 4 lane stores to y[perm[...]];
 * a last, partial slice goes lane by lane.
 *
 * Armv7-A has NEON too, but its VTBL reaches 32 bytes (8 floats), not a 16-float window: there this entry calls the
 * portable kernel, and the build does not choose the layout (armv7a-neon has no fc_wsell_max_bytes).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include <arm_neon.h>

#include "prunec_kernels.h"
#include "prunec_neon_util.h"

#if PRUNEC_HAVE_AARCH64
/* one step into accumulator A: window (post-increment ADV) into T0-T3, lookup with index register I, FMA with V */
#define PRUNEC_WSELL_STEP(A, T, I, V, ADV)                                  \
  "ld1 {" T "}, [%[xp]], " ADV "\n\t"                                       \
  "tbl " I ".16b, {" T "}, " I ".16b\n\t"                                   \
  "fmla %[" A "].4s, " V ".4s, " I ".4s\n\t"

#define PRUNEC_WSELL_T0 "v16.16b, v17.16b, v18.16b, v19.16b"
#define PRUNEC_WSELL_T1 "v20.16b, v21.16b, v22.16b, v23.16b"

/* two steps into accumulators CA, CB: their advances into AA, AB, their indices into vI0, vI1 and their weights into
 * vV0, vV1 (one LDP each), then the two steps */
#define PRUNEC_WSELL_PAIR(CA, CB, AA, AB, I0, I1, V0, V1)                   \
  "ldp %w[" AA "], %w[" AB "], [%[ap]], #8\n\t"                              \
  "ldp q" I0 ", q" I1 ", [%[ip]], #32\n\t"                                  \
  "ldp q" V0 ", q" V1 ", [%[vp]], #32\n\t"                                  \
  PRUNEC_WSELL_STEP(CA, PRUNEC_WSELL_T0, "v" I0, "v" V0, "%[" AA "]")       \
  PRUNEC_WSELL_STEP(CB, PRUNEC_WSELL_T1, "v" I1, "v" V1, "%[" AB "]")

void prunec_f32_fc_wsell__neon(const prunec_wsell_f32 *w, const float *bias, const float *x, float *y,
                               float out_min, float out_max) {
  const uint32_t slices = (w->rows + PRUNEC_WSELL_ROWS - 1u) / PRUNEC_WSELL_ROWS;
  const uint32_t *ap = w->advance;
  const uint8_t *ip = w->index;
  const float *vp = w->values;
  const float32x4_t lo = vdupq_n_f32(out_min), hi = vdupq_n_f32(out_max);
  uint32_t s, l;
  for (s = 0; s < slices; s++) {
    const uint32_t r0 = s * PRUNEC_WSELL_ROWS;
    const uint32_t n = w->rows - r0 < PRUNEC_WSELL_ROWS ? w->rows - r0 : PRUNEC_WSELL_ROWS;
    const uint16_t *perm = w->perm + r0;
    const uint32_t k = w->steps[s];
    const char *xp = (const char *)(x + w->start[s]);
    uint64_t quads = k >> 2, a0, a1, a2, a3;
    float32x4_t c0 = vdupq_n_f32(0.0f), c1 = c0, c2 = c0, c3 = c0, sum;
    float o[PRUNEC_WSELL_ROWS];
    __asm__ __volatile__(
        "cbz %[q], 2f\n"
        "1:\n\t"
        PRUNEC_WSELL_PAIR("c0", "c1", "a0", "a1", "0", "1", "4", "5")
        PRUNEC_WSELL_PAIR("c2", "c3", "a2", "a3", "2", "3", "6", "7")
        "subs %[q], %[q], #1\n\t"
        "b.ne 1b\n"
        "2:\n\t"
        "tbz %w[k], #1, 3f\n\t"
        PRUNEC_WSELL_PAIR("c0", "c1", "a0", "a1", "0", "1", "4", "5")
        "3:\n\t"
        "tbz %w[k], #0, 4f\n\t"
        "ldr %w[a0], [%[ap]], #4\n\t"
        "ldr q0, [%[ip]], #16\n\t"
        "ldr q4, [%[vp]], #16\n\t"
        PRUNEC_WSELL_STEP("c2", PRUNEC_WSELL_T0, "v0", "v4", "%[a0]")
        "4:\n\t"
        : [c0] "+w"(c0), [c1] "+w"(c1), [c2] "+w"(c2), [c3] "+w"(c3), [xp] "+r"(xp), [ap] "+r"(ap), [ip] "+r"(ip),
          [vp] "+r"(vp), [q] "+r"(quads), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3)
        : [k] "r"(k)
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20", "v21",
          "v22", "v23");
    sum = vaddq_f32(vaddq_f32(c0, c1), vaddq_f32(c2, c3));
    if (n == PRUNEC_WSELL_ROWS) { /* a full slice: biases by lane loads, one vector clamp, stores by lane */
      const uint32_t p0 = perm[0], p1 = perm[1], p2 = perm[2], p3 = perm[3];
      if (bias != NULL) {
        float32x4_t b = vld1q_dup_f32(bias + p0);
        b = vld1q_lane_f32(bias + p1, b, 1);
        b = vld1q_lane_f32(bias + p2, b, 2);
        b = vld1q_lane_f32(bias + p3, b, 3);
        sum = vaddq_f32(sum, b);
      }
      sum = prunec_neon_clamp(sum, lo, hi);
      vst1q_lane_f32(y + p0, sum, 0);
      vst1q_lane_f32(y + p1, sum, 1);
      vst1q_lane_f32(y + p2, sum, 2);
      vst1q_lane_f32(y + p3, sum, 3);
      continue;
    }
    vst1q_f32(o, sum);
    for (l = 0; l < n; l++) {
      const uint32_t r = perm[l];
      y[r] = prunec_clampf(o[l] + (bias != NULL ? bias[r] : 0.0f), out_min, out_max);
    }
  }
}

#else
void prunec_f32_fc_wsell__neon(const prunec_wsell_f32 *w, const float *bias, const float *x, float *y,
                               float out_min, float out_max) {
  prunec_f32_fc_wsell__portable(w, bias, x, y, out_min, out_max);
}
#endif /* PRUNEC_HAVE_AARCH64 */

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_wsell_neon_unavailable;
#endif /* PRUNEC_HAVE_NEON_FMA */
