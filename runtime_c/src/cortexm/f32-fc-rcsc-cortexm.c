/*
 * The column-major fc layer that skips zero inputs (docs/FORMAT.md "Column-major fc layers") for Cortex-M with a
 * single-precision FPU: prunec_rcsc_fma (prunec_rcsc_fma.h), whose step of four entries is Thumb-2 assembly (one
 * word of codes, one VLDM of the values, per entry an extract, a scaled add, VLDR / VFMA / VSTR with the four loads
 * first); index widths other than 8 bits go to the portable twin. ~8 instructions per visited entry, column
 * overhead included, against ~5 per entry for the row kernel, which visits all of them (docs/BUILD.md "Skipping zero
 * inputs"). Results agree with the twin to fp32 rounding (one rounding per FMA where it rounds twice).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_CORTEXM_FPU
#include "prunec_kernels.h"
#include "prunec_rcsc_fma.h"

void prunec_f32_fc_rcsc__cortexm(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                 float out_min, float out_max) {
  if (w->index_bits != 8u) { /* the widths without a path here */
    prunec_f32_fc_rcsc__portable(w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_rcsc_fma(w, bias, x, y, out_min, out_max);
}
#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rcsc_cortexm_unavailable;
#endif /* PRUNEC_HAVE_CORTEXM_FPU */
