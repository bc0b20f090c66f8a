/*
 * prunec runtime: ISA feature macros, derived once from the compiler's predefined macros. Users never set
 * them; kernels test only these (and only around whole functions, never inside a kernel body).
 */
#ifndef PRUNEC_ISA_H
#define PRUNEC_ISA_H

#if defined(__AVX2__) && defined(__FMA__)
#define PRUNEC_HAVE_AVX2 1
#else
#define PRUNEC_HAVE_AVX2 0
#endif

#if defined(__AVX512F__)
#define PRUNEC_HAVE_AVX512 1
#else
#define PRUNEC_HAVE_AVX512 0
#endif

#if defined(__ARM_NEON) && defined(__ARM_FEATURE_FMA)
#define PRUNEC_HAVE_NEON_FMA 1
#else
#define PRUNEC_HAVE_NEON_FMA 0
#endif

#if defined(__aarch64__)
#define PRUNEC_HAVE_AARCH64 1
#else
#define PRUNEC_HAVE_AARCH64 0
#endif

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)
#define PRUNEC_HAVE_MVE_F 1
#else
#define PRUNEC_HAVE_MVE_F 0
#endif

#if defined(__ARM_ARCH_PROFILE) && (__ARM_ARCH_PROFILE == 'M') && defined(__ARM_FP)
#define PRUNEC_HAVE_CORTEXM_FPU 1
#else
#define PRUNEC_HAVE_CORTEXM_FPU 0
#endif

/* Unoptimised builds (-O0, e.g. `make CFLAGS="-O0 -g"` to debug): GCC cannot give the Cortex-M and Helium
 * kernels' inline assembly the registers it asks for ("impossible constraints"), so those kernels take their C
 * steps, which compute the same in the same order (the NO_ASM switches). */
#if !defined(__OPTIMIZE__)
#ifndef PRUNEC_CORTEXM_NO_ASM
#define PRUNEC_CORTEXM_NO_ASM 1
#endif
#ifndef PRUNEC_MVE_NO_ASM
#define PRUNEC_MVE_NO_ASM 1
#endif
#endif

#endif /* PRUNEC_ISA_H */
