/*
 * Sparse fc and conv2d over relative-indexed CSR for Armv8.1-M with Helium (MVE with floating point,
 * Cortex-M55/M85). Twins of the portable kernels.
 *
 * fc: a row's codes are decoded into absolute columns (64 at a time, scalar running sum), then 4 entries
 * per step: the columns are loaded as a vector, x is fetched with one gather (VLDRW with shifted offsets),
 * and one VFMA multiplies it with 4 contiguous values. The last step of a row is tail-predicated (VCTP):
 * inactive lanes load zeros and touch no memory. The row is the sum of the 4 lanes.
 *
 * conv2d (NCHW, batch 1): vectorised across output pixels, 4 lanes; nonzeros of an output channel are
 * decoded (64 at a time, fillers dropped) into (weight, input offset, ky*dil_h, kx*dil_w). Interior blocks
 * with stride 1 use plain loads (8 pixels, then 4); border blocks, stride > 1 and the last partial block use
 * a predicated gather (lanes outside the input or past the row are off) and a predicated store.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_MVE_F
#include <arm_mve.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

#define PRUNEC_MVE_CHUNK 64u

static inline float prunec_mve_hsum(float32x4_t v) {
  return (vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 1)) + (vgetq_lane_f32(v, 2) + vgetq_lane_f32(v, 3));
}

/* The fused clamp exactly as the portable kernels compute it: `a < lo ? lo : a`, then `a > hi ? hi : a`, as
 * VCMP gt + VPSEL with the bound as the first operand. VCMP.F32 gt is false for unordered lanes (lt and le are
 * true: "less than or unordered"), so NaN of either sign passes, and -0.0 passes relu (lo = +0.0), as in
 * PyTorch. VMAXNM/VMINNM would return the bound for a NaN (relu: 0; none: -inf) and +0.0 for -0.0. */
static inline float32x4_t prunec_mve_clamp(float32x4_t a, float lo, float hi) {
  const float32x4_t vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
  a = vpselq_f32(vlo, a, vcmpgtq_f32(vlo, a));
  return vpselq_f32(vhi, a, vcmpgtq_f32(a, vhi));
}

/* Columns of entries e .. e+n-1 into cols[]; `c` is the column before entry e. Returns the last column. */
static inline __attribute__((always_inline)) uint32_t prunec_mve_decode(const uint8_t *index, uint32_t e,
                                                                       uint32_t n, uint32_t c, uint32_t *cols,
                                                                       const uint32_t bits) {
  uint32_t i;
  for (i = 0; i < n; i++) {
    c += prunec_rcsr_code(index, e + i, bits) + 1u;
    cols[i] = c;
  }
  return c;
}

static inline __attribute__((always_inline)) void prunec_mve_fc_rows(const prunec_rcsr_f32 *w, const float *bias,
                                                                    const float *x, float *y, float lo, float hi,
                                                                    const uint32_t bits) {
  uint32_t cols[PRUNEC_MVE_CHUNK];
  const float *values = w->values;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    const uint32_t end = row_ptr[r + 1];
    uint32_t e = row_ptr[r];
    uint32_t last = (uint32_t)-1;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    float s;
    while (e < end) {
      const uint32_t n = end - e < PRUNEC_MVE_CHUNK ? end - e : PRUNEC_MVE_CHUNK;
      const float *v = values + e;
      uint32_t i = 0;
      last = prunec_mve_decode(w->index, e, n, last, cols, bits);
      for (; i + 8 <= n; i += 8) {
        const float32x4_t x0 = vldrwq_gather_shifted_offset_f32(x, vld1q_u32(cols + i));
        const float32x4_t x1 = vldrwq_gather_shifted_offset_f32(x, vld1q_u32(cols + i + 4));
        a0 = vfmaq_f32(a0, vld1q_f32(v + i), x0);
        a1 = vfmaq_f32(a1, vld1q_f32(v + i + 4), x1);
      }
      for (; i < n; i += 4) {
        const mve_pred16_t p = vctp32q(n - i);
        const float32x4_t x0 = vldrwq_gather_shifted_offset_z_f32(x, vldrwq_z_u32(cols + i, p), p);
        a0 = vfmaq_f32(a0, vldrwq_z_f32(v + i, p), x0);
      }
      e += n;
    }
    s = prunec_mve_hsum(vaddq_f32(a0, a1)) + (bias != NULL ? bias[r] : 0.0f);
    s = s < lo ? lo : s;
    y[r] = s > hi ? hi : s;
  }
}

void prunec_f32_fc_rcsr__mve(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                             float out_min, float out_max) {
  switch (w->index_bits) {
    case 4:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, 4);
      break;
    case 8:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, 8);
      break;
    default:
      prunec_mve_fc_rows(w, bias, x, y, out_min, out_max, 16);
      break;
  }
}

typedef struct prunec_mve_taps {
  float w[PRUNEC_MVE_CHUNK];
  int32_t off[PRUNEC_MVE_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_MVE_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_MVE_CHUNK];  /* kx*dil_w */
} prunec_mve_taps;

void prunec_f32_conv2d_rcsr__mve(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                 const float *x, float *y, float out_min, float out_max) {
  static const int32_t lane_ids[4] = {0, 1, 2, 3};
  prunec_mve_taps t;
  const int32_t in_h = (int32_t)p->in_h, in_w = (int32_t)p->in_w;
  const int32_t out_w = (int32_t)p->out_w;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w;
  const int32_t ph = (int32_t)p->pad_h, pw = (int32_t)p->pad_w;
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const int32_t span = (int32_t)((p->kw - 1) * p->dil_w);
  const int32_t ow_lo = pw;
  int32_t ow_hi = in_w - span + pw;
  const int32x4_t lane = vld1q_s32(lane_ids);
  uint32_t oc;
  if (ow_hi > out_w) {
    ow_hi = out_w;
  }
  for (oc = 0; oc < p->out_c; oc++) {
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    float *yp = y + (size_t)oc * out_plane;
    const float32x4_t vb = vdupq_n_f32(bias != NULL ? bias[oc] : 0.0f);
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    uint32_t last = (uint32_t)-1;
    int first = 1;
    do {
      const uint32_t n = end - e < PRUNEC_MVE_CHUNK ? end - e : PRUNEC_MVE_CHUNK;
      const uint32_t nt = prunec_conv_decode_taps(p, w, e, n, &last, t.w, t.off, t.dy, t.dx);
      const int final = e + n >= end;
      int32_t oh;
      for (oh = 0; oh < (int32_t)p->out_h; oh++) {
        const int32_t iy0 = oh * sh - ph;
        const ptrdiff_t rbase = (ptrdiff_t)iy0 * in_w - pw; /* xg[rbase + off[k] + ow]: tap k's input (stride 1) */
        float *yr = yp + (size_t)oh * (size_t)out_w;
        int32_t ow = 0;
        while (ow < out_w) {
          uint32_t k;
          if (sw == 1 && ow >= ow_lo && ow + 8 <= ow_hi) {
            float32x4_t acc0 = first ? vb : vld1q_f32(yr + ow);
            float32x4_t acc1 = first ? vb : vld1q_f32(yr + ow + 4);
            for (k = 0; k < nt; k++) {
              if ((uint32_t)(iy0 + t.dy[k]) < (uint32_t)in_h) {
                const float *xs = xg + (rbase + t.off[k] + ow);
                acc0 = vfmaq_n_f32(acc0, vld1q_f32(xs), t.w[k]);
                acc1 = vfmaq_n_f32(acc1, vld1q_f32(xs + 4), t.w[k]);
              }
            }
            if (final) {
              acc0 = prunec_mve_clamp(acc0, out_min, out_max);
              acc1 = prunec_mve_clamp(acc1, out_min, out_max);
            }
            vst1q_f32(yr + ow, acc0);
            vst1q_f32(yr + ow + 4, acc1);
            ow += 8;
          } else if (sw == 1 && ow >= ow_lo && ow + 4 <= ow_hi) {
            float32x4_t acc = first ? vb : vld1q_f32(yr + ow);
            for (k = 0; k < nt; k++) {
              if ((uint32_t)(iy0 + t.dy[k]) < (uint32_t)in_h) {
                acc = vfmaq_n_f32(acc, vld1q_f32(xg + (rbase + t.off[k] + ow)), t.w[k]);
              }
            }
            if (final) {
              acc = prunec_mve_clamp(acc, out_min, out_max);
            }
            vst1q_f32(yr + ow, acc);
            ow += 4;
          } else {
            const int32x4_t ox = vaddq_n_s32(lane, ow);
            const mve_pred16_t out_ok = vctp32q((uint32_t)(out_w - ow));
            const int32x4_t ix = vsubq_n_s32(vmulq_n_s32(ox, sw), pw);
            float32x4_t acc = first ? vb : vldrwq_z_f32(yr + ow, out_ok);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                const int32x4_t c = vaddq_n_s32(ix, t.dx[k]);
                const mve_pred16_t ok = out_ok & vcmpgeq_n_s32(c, 0) & vcmpltq_n_s32(c, in_w);
                const float *xr = xg + (t.off[k] - t.dx[k] + (ptrdiff_t)(iy - t.dy[k]) * in_w); /* input row iy */
                const float32x4_t xv = vldrwq_gather_shifted_offset_z_f32(xr, vreinterpretq_u32_s32(c), ok);
                acc = vfmaq_n_f32(acc, xv, t.w[k]);
              }
            }
            if (final) {
              acc = prunec_mve_clamp(acc, out_min, out_max);
            }
            vstrwq_p_f32(yr + ow, acc, out_ok);
            ow += 4;
          }
        }
      }
      first = 0;
      e += n;
    } while (e < end);
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_rcsr_mve_unavailable;
#endif /* PRUNEC_HAVE_MVE_F */
