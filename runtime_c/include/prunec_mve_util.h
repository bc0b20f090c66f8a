/*
 * prunec runtime: small helpers shared by the Helium (MVE-F) kernels of runtime_c/src/mve/. Empty unless the
 * compiler targets MVE with floating point (PRUNEC_HAVE_MVE_F, prunec_isa.h).
 *
 * prunec_mve_hsum: the sum of the 4 lanes, (l0 + l1) + (l2 + l3).
 * prunec_mve_fc_out: the outputs of a group of up to 4 fc rows from their lane sums (below).
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

#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
/* prunec_mve_fc_out (the fc kernels over relative- and absolute-indexed CSR): the m (1..4) rows' outputs: row k of the group left its lane sums in buf[4k .. 4k+3]; VLD4 deinterleaves them
 * so that lane k of q0+q1+q2+q3 is row k's sum; + bias (4 zeros without one: a sum of lanes that start at +0.0
 * is never -0.0, so adding +0.0 changes nothing), the clamp as prunec_mve_clamp, predicated store. It writes VPR,
 * which GCC 12 cannot be told (no "vpr" clobber): the asm path holds no intrinsic predicate across it. */
static inline __attribute__((always_inline)) void prunec_mve_fc_out(const float *buf, const float *b, float *y,
                                                                   uint32_t m, float32x4_t lo, float32x4_t hi) {
  __asm__("vld40.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vld41.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vld42.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vld43.32 {q0, q1, q2, q3}, [%[buf]]\n\t"
          "vctp.32 %[m]\n\t"
          "vpst\n\t"
          "vldrwt.32 q4, [%[b]]\n\t"
          "vadd.f32 q0, q0, q1\n\t"
          "vadd.f32 q2, q2, q3\n\t"
          "vadd.f32 q0, q0, q2\n\t"
          "vadd.f32 q0, q0, q4\n\t"
          "vcmp.f32 gt, %q[lo], q0\n\t"
          "vpsel q0, %q[lo], q0\n\t"
          "vcmp.f32 gt, q0, %q[hi]\n\t"
          "vpsel q0, %q[hi], q0\n\t"
          "vctp.32 %[m]\n\t"
          "vpst\n\t"
          "vstrwt.32 q0, [%[y]]"
          : "=m"(*(float(*)[4])y)
          : [buf] "r"(buf), [b] "r"(b), [y] "r"(y), [m] "r"(m), [lo] "w"(lo), [hi] "w"(hi),
            "m"(*(const struct { float v[16]; } *)buf), "m"(*(const struct { float v[4]; } *)b)
          : "q0", "q1", "q2", "q3", "q4");
}
#else
static inline void prunec_mve_fc_out(const float *buf, const float *b, float *y, uint32_t m, float32x4_t lo,
                                     float32x4_t hi) {
  const mve_pred16_t p = vctp32q(m);
  float32x4_t s = vdupq_n_f32(0.0f);
  s = vsetq_lane_f32(prunec_mve_hsum(vld1q_f32(buf)), s, 0);
  s = vsetq_lane_f32(prunec_mve_hsum(vld1q_f32(buf + 4)), s, 1);
  s = vsetq_lane_f32(prunec_mve_hsum(vld1q_f32(buf + 8)), s, 2);
  s = vsetq_lane_f32(prunec_mve_hsum(vld1q_f32(buf + 12)), s, 3);
  s = vaddq_f32(s, vldrwq_z_f32(b, p));
  s = vpselq_f32(lo, s, vcmpgtq_f32(lo, s));
  s = vpselq_f32(hi, s, vcmpgtq_f32(s, hi));
  vstrwq_p_f32(y, s, p);
}
#endif
#endif /* PRUNEC_HAVE_MVE_F */

#endif /* PRUNEC_MVE_UTIL_H */
