/*
 * Sparse fc layer that skips zero inputs (column-major storage, docs/FORMAT.md "Column-major fc layers") for
 * Cortex-M with a single-precision FPU. Twin of prunec_f32_fc_rcsc__portable: y = bias, then for each input j
 * with x[j] != 0, y[out] += value * x[j] over column j's entries; then the clamp.
 *
 * 8-bit codes (what fc layers use at 4-25 % density), four entries per step in assembly: one word load of the 4
 * codes, one VLDM of the 4 values; per entry a byte extract, one add of the code (scaled by 4) to the output
 * pointer, and the output's VLDR / VFMA / VSTR. The step's four outputs are distinct, so their four loads come
 * first, then the four FMAs and the four stores (no FMA waits on the one before it). ~6 instructions per
 * entry visited against ~5 per entry for the row kernel, which visits every entry: the column kernel does
 * fewer from ~20 % zero inputs on (benchmarks/bench_arm.py --x-zeros). The pointer p is kept at
 * y + out(previous entry) + 1 - k for the step's k-th entry, so that entry k is p[k] (FPU loads take only
 * immediate offsets). Other widths, and a column's last 1-3 entries, take C.
 *
 * The FMA rounds once where the portable twin's multiply and add round twice (as the row kernels of this
 * ISA do): results agree with it to fp32 rounding, not bit for bit.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_CORTEXM_FPU
#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

typedef uint32_t __attribute__((aligned(1), may_alias)) prunec_cortexm_rcsc_u32u;

static void fc_rcsc_b8(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    const uint32_t end = ptr[j + 1];
    uint32_t e = ptr[j];
    const float *v = w->values + e;
    const uint8_t *c = w->index + e;
    float *p = y; /* y + out(previous entry) + 1 */
    if (xj == 0.0f) {
      continue;
    }
    for (; e + 4u <= end; e += 4u) {
#if defined(__GNUC__) && defined(__thumb2__) && !defined(PRUNEC_CORTEXM_NO_ASM)
      uint32_t q, t;
      float *p1, *p2, *p3;
      __asm__ volatile(
          "ldr %[q], [%[c]], #4\n\t"
          "vldmia %[v]!, {s8-s11}\n\t"
          "uxtb %[t], %[q]\n\t"
          "add %[p], %[p], %[t], lsl #2\n\t"
          "ubfx %[t], %[q], #8, #8\n\t"
          "vldr s12, [%[p]]\n\t"
          "add %[p1], %[p], %[t], lsl #2\n\t"
          "ubfx %[t], %[q], #16, #8\n\t"
          "vldr s13, [%[p1], #4]\n\t"
          "add %[p2], %[p1], %[t], lsl #2\n\t"
          "lsr %[t], %[q], #24\n\t"
          "vldr s14, [%[p2], #8]\n\t"
          "add %[p3], %[p2], %[t], lsl #2\n\t"
          "vldr s15, [%[p3], #12]\n\t"
          "vfma.f32 s12, s8, %[xj]\n\t"
          "vfma.f32 s13, s9, %[xj]\n\t"
          "vfma.f32 s14, s10, %[xj]\n\t"
          "vfma.f32 s15, s11, %[xj]\n\t"
          "vstr s12, [%[p]]\n\t"
          "vstr s13, [%[p1], #4]\n\t"
          "vstr s14, [%[p2], #8]\n\t"
          "vstr s15, [%[p3], #12]\n\t"
          "add %[p], %[p3], #16\n\t"
          : [q] "=&r"(q), [t] "=&r"(t), [p] "+&r"(p), [p1] "=&r"(p1), [p2] "=&r"(p2), [p3] "=&r"(p3),
            [c] "+&r"(c), [v] "+&r"(v)
          : [xj] "t"(xj)
          : "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "memory");
#else
      const uint32_t q = *(const prunec_cortexm_rcsc_u32u *)c; /* little-endian: code k in byte k */
      float *const p0 = p + (q & 0xFFu);
      float *const p1 = p0 + ((q >> 8) & 0xFFu);
      float *const p2 = p1 + ((q >> 16) & 0xFFu);
      float *const p3 = p2 + (q >> 24);
      const float a0 = p0[0], a1 = p1[1], a2 = p2[2], a3 = p3[3];
      p0[0] = __builtin_fmaf(v[0], xj, a0);
      p1[1] = __builtin_fmaf(v[1], xj, a1);
      p2[2] = __builtin_fmaf(v[2], xj, a2);
      p3[3] = __builtin_fmaf(v[3], xj, a3);
      p = p3 + 4;
      c += 4;
      v += 4;
#endif
    }
    for (; e < end; e++) {
      p += *c++;
      *p = __builtin_fmaf(*v++, xj, *p);
      p++;
    }
  }
}

void prunec_f32_fc_rcsc__cortexm(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                 float out_min, float out_max) {
  const uint32_t n = w->cols;
  uint32_t r;
  if (w->index_bits != 8u) { /* the widths without a path here */
    prunec_f32_fc_rcsc__portable(w, bias, x, y, out_min, out_max);
    return;
  }
  for (r = 0; r < n; r++) {
    y[r] = bias != NULL ? bias[r] : 0.0f;
  }
  fc_rcsc_b8(w, x, y);
  for (r = 0; r < n; r++) {
    float v = y[r];
    v = v < out_min ? out_min : v;
    y[r] = v > out_max ? out_max : v;
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rcsc_cortexm_unavailable;
#endif /* PRUNEC_HAVE_CORTEXM_FPU */
