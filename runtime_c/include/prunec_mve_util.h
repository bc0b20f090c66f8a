/*
 * prunec runtime: small helpers shared by the Helium (MVE-F) kernels of runtime_c/src/mve/. Empty unless the
 * compiler targets MVE with floating point (PRUNEC_HAVE_MVE_F, prunec_isa.h).
 *
 * prunec_mve_hsum: the sum of the 4 lanes, (l0 + l1) + (l2 + l3).
 * prunec_mve_clamp: the fused clamp exactly as the portable kernels compute it: `a < lo ? lo : a`, then
 * `a > hi ? hi : a`, as VCMP gt + VPSEL with the bound as the first operand. VCMP.F32 gt is false for
 * unordered lanes (lt and le are true: "less than or unordered"), so NaN of either sign passes, and -0.0
 * passes relu (lo = +0.0), as in PyTorch. VMAXNM/VMINNM would return the bound for a NaN (relu: 0; none: -inf)
 * and +0.0 for -0.0.
 */
#ifndef PRUNEC_MVE_UTIL_H
#define PRUNEC_MVE_UTIL_H

#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

/* The C paths' address step over four 8-bit codes c[0..3] (PRUNEC_MVE_NO_ASM): lane k of a advances by 4 bytes
 * per code of entries k-3 .. k (prev: the previous step's last three codes, updated) and by 16 for the four
 * entries themselves, so that lane k addresses entry k's float. */
static inline uint32x4_t prunec_mve_addr_step(uint32x4_t a, const uint32_t c[4], uint32_t prev[3]) {
  const uint32_t s1[4] = {prev[2], c[0], c[1], c[2]}, s2[4] = {prev[1], prev[2], c[0], c[1]},
                 s3[4] = {prev[0], prev[1], prev[2], c[0]};
  a = vaddq_u32(a, vmulq_n_u32(vld1q_u32(c), 4));
  a = vaddq_u32(a, vmulq_n_u32(vld1q_u32(s1), 4));
  a = vaddq_u32(a, vmulq_n_u32(vld1q_u32(s2), 4));
  a = vaddq_u32(a, vmulq_n_u32(vld1q_u32(s3), 4));
  prev[0] = c[1];
  prev[1] = c[2];
  prev[2] = c[3];
  return vaddq_n_u32(a, 16u);
}

static inline float prunec_mve_hsum(float32x4_t v) {
  return (vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1)) + (vgetq_lane_f32(v, 2) + vgetq_lane_f32(v, 3));
}

static inline float32x4_t prunec_mve_clamp(float32x4_t a, float lo, float hi) {
  const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
  a = vpselq_f32(vlo, a, vcmpgtq_f32(vlo, a));
  return vpselq_f32(vhi, a, vcmpgtq_f32(a, vhi));
}
#endif /* PRUNEC_HAVE_MVE_F */

#endif /* PRUNEC_MVE_UTIL_H */
