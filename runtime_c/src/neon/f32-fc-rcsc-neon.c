/*
 * The column-major fc layer that skips zero inputs (docs/FORMAT.md "Column-major fc layers") on the NEON targets
 * (Armv8-A; Armv7-A with VFPv4): prunec_rcsc_fma (prunec_rcsc_fma.h), scalar fused multiply-adds; index widths
 * other than 8 bits go to the portable twin. Results agree with the twin to fp32 rounding (one rounding per FMA where it rounds twice).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include "prunec_kernels.h"
#include "prunec_rcsc_fma.h"

void prunec_f32_fc_rcsc__neon(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float out_min,
                              float out_max) {
  if (w->index_bits != 8u) { /* the widths without a path here */
    prunec_f32_fc_rcsc__portable(w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_rcsc_fma(w, bias, x, y, out_min, out_max);
}
#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rcsc_neon_unavailable;
#endif
