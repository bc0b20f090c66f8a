/*
 * The column-major fc layer that skips zero inputs (docs/FORMAT.md "Column-major fc layers") for Armv8.1-M with
 * Helium (MVE with floating point, Cortex-M55/M85). Twin of prunec_f32_fc_rcsc__portable.
 *
 * 8-bit codes, four entries per block, in vectors, the address arithmetic of the row kernel (f32-rcsr-mve.c):
 * the block's 4 codes widened by one load (VLDRB.U32), the output addresses q0 advanced by 4 x the codes and by 4 x
 * three whole-vector shifts of them (VSHLC #32, the previous block's codes carried in), the 4 outputs gathered with
 * the writeback that adds the entries' + 1 (VLDRW.U32 q, [q0, #16]!), one VFMA with x[j] (a core register), and
 * scattered back (a column's outputs are distinct: no conflicts). A tail-predicated loop (WLSTP/LETP): lanes past
 * the column load and store nothing. 13 instructions per 4 entries visited, inline asm (GCC 12 evaluates the
 * writeback gather and the shifts twice from intrinsics); the C path (PRUNEC_MVE_NO_ASM) computes the same. Other index widths go to the portable
 * twin. The FMA rounds once where the twin rounds twice: results agree to fp32 rounding.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include <string.h>

#include "prunec_kernels.h"
#include "prunec_mve_util.h"
#include "prunec_rcsr_util.h"

static void fc_rcsc_mve_b8(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  /* byte addresses of the 4 outputs of a virtual block before each column's first: outputs -4 .. -1 */
  const uint32x4_t a0 = vaddq_n_u32(vidupq_n_u32(0u, 4), (uint32_t)(uintptr_t)y - 16u);
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    const uint32_t e0 = ptr[j], n = ptr[j + 1] - e0;
    if (xj == 0.0f || n == 0u) {
      continue;
    }
#if defined(__GNUC__) && !defined(PRUNEC_MVE_NO_ASM)
    {
      const uint8_t *c = w->index + e0;
      const float *v = w->values + e0;
      uint32_t k1, k2, k3, xb;
      memcpy(&xb, &xj, 4);
      /* q0: the block's output addresses (out_k = out_(k-4) + 4 + c_(k-3) + .. + c_k, the previous block's
       * codes carried into the shifts by k1..k3), q2: the outputs, q3: the values; a tail-predicated loop */
      __asm__ volatile("vmov q0, %q[a0]\n\t"
                       "mov %[k1], #0\n\t"
                       "mov %[k2], #0\n\t"
                       "mov %[k3], #0\n\t"
                       "wlstp.32 lr, %[n], 2f\n"
                       "1:\n\t"
                       "vldrb.u32 q1, [%[c]], #4\n\t"
                       "vmla.u32 q0, q1, %[four]\n\t"
                       "vshlc q1, %[k1], #32\n\t"
                       "vmla.u32 q0, q1, %[four]\n\t"
                       "vshlc q1, %[k2], #32\n\t"
                       "vmla.u32 q0, q1, %[four]\n\t"
                       "vshlc q1, %[k3], #32\n\t"
                       "vmla.u32 q0, q1, %[four]\n\t"
                       "vldrw.u32 q2, [q0, #16]!\n\t"
                       "vldrw.32 q3, [%[v]], #16\n\t"
                       "vfma.f32 q2, q3, %[xb]\n\t"
                       "vstrw.32 q2, [q0]\n\t"
                       "letp lr, 1b\n"
                       "2:"
                       : [c] "+r"(c), [v] "+r"(v), [k1] "=&r"(k1), [k2] "=&r"(k2), [k3] "=&r"(k3)
                       : [n] "r"(n), [four] "r"(4u), [a0] "w"(a0), [xb] "r"(xb)
                       : "q0", "q1", "q2", "q3", "lr", "memory");
    }
#else
    {
      const uint8_t *c = w->index + e0;
      const float *v = w->values + e0;
      uint32_t k;
      uint32x4_t a = a0;
      uint32_t ca[4] = {0, 0, 0, 0}, prev[3] = {0, 0, 0};
      for (k = 0; k < n; k += 4u, c += 4, v += 4) {
        const mve_pred16_t p = vctp32q(n - k);
        uint32_t i;
        for (i = 0; i < 4; i++) {
          ca[i] = k + i < n ? c[i] : 0u;
        }
        a = prunec_mve_addr_step(a, ca, prev);
        vstrwq_scatter_base_p_f32(a, 0, vfmaq_n_f32(vldrwq_gather_base_z_f32(a, 0, p), vldrwq_z_f32(v, p), xj), p);
      }
    }
#endif
  }
}

void prunec_f32_fc_rcsc__mve(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float out_min,
                             float out_max) {
  const uint32_t n = w->cols;
  if (w->index_bits != 8u) { /* the widths without a path here */
    prunec_f32_fc_rcsc__portable(w, bias, x, y, out_min, out_max);
    return;
  }
  prunec_rcsc_start(y, bias, n);
  fc_rcsc_mve_b8(w, x, y);
  prunec_rcsc_finish(y, n, out_min, out_max);
}
#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rcsc_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
