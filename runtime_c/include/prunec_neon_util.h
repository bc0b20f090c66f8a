/*
 * prunec runtime: small helpers shared by the NEON kernels of runtime_c/src/neon/. Empty unless the compiler targets
 * NEON with FMA (PRUNEC_HAVE_NEON_FMA, prunec_isa.h).
 *
 * prunec_neon_clamp: the fused clamp exactly as the portable kernels compute it: `a < lo ? lo : a`, then
 * `a > hi ? hi : a`. An ordered compare is false for NaN, so NaN of either sign passes, and -0.0 passes relu
 * (lo = +0.0) unchanged, as in PyTorch; vmaxq/vminq would store max(-0.0, +0.0) as +0.0 (and the default NaN on
 * Armv7-A).
 */
#ifndef PRUNEC_NEON_UTIL_H
#define PRUNEC_NEON_UTIL_H

#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include <arm_neon.h>

#if PRUNEC_HAVE_AARCH64
static inline uint32x4_t prunec_neon_gt(float32x4_t a, float32x4_t b) { return vcgtq_f32(a, b); }
#else
/* GCC lowers vcgtq_f32 to 4 scalar VFP compares on Armv7-A (the NEON compare flushes denormals, so it is used
 * only with -funsafe-math-optimizations); VCGT.F32 directly, which flushes like the VFMA before it. */
static inline uint32x4_t prunec_neon_gt(float32x4_t a, float32x4_t b) {
  uint32x4_t m;
  __asm__("vcgt.f32 %q0, %q1, %q2" : "=w"(m) : "w"(a), "w"(b));
  return m;
}
#endif
static inline float32x4_t prunec_neon_clamp(float32x4_t a, float32x4_t lo, float32x4_t hi) {
  a = vbslq_f32(prunec_neon_gt(lo, a), lo, a);
  return vbslq_f32(prunec_neon_gt(a, hi), hi, a);
}

#endif /* PRUNEC_HAVE_NEON_FMA */
#endif /* PRUNEC_NEON_UTIL_H */
