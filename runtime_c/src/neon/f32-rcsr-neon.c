/*
 * Sparse fc and conv2d over relative-indexed CSR, Arm NEON with fused multiply-add: AArch64 (Armv8-A) and
 * Armv7-A with -mfpu=neon-vfpv4 (vfmaq_f32 exists on both). Twins of the portable kernels.
 *
 * fc: codes are decoded on the fly (one loop per code width, the width a compile-time constant). For
 * each group of 8 entries the 8 x values are loaded into the lanes of two vectors (one load-to-lane per
 * entry: NEON has no gather) and multiplied with the 8 contiguous values by two FMAs into two
 * accumulators; the row is their horizontal sum plus a scalar tail of up to 7 entries.
 *
 * conv2d (NCHW, batch 1): vectorised across output pixels, 4 lanes. The nonzeros of an output channel are
 * decoded (256 at a time) into (weight, input offset, ky*dil_h, kx*dil_w); for each output row and each
 * block of output columns, acc += weight * input row segment. Blocks whose taps all lie inside the input
 * with stride 1 use plain loads (8 pixels at a time, then 4); border blocks, stride > 1 and the last
 * partial block fill their lanes in scalar code with bounds checks.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_NEON_FMA
#include <arm_neon.h>

#include "prunec_kernels.h"

#define PRUNEC_NEON_CHUNK 256u

#if PRUNEC_HAVE_AARCH64
static inline float prunec_neon_hsum(float32x4_t v) { return vaddvq_f32(v); }
#else
static inline float prunec_neon_hsum(float32x4_t v) {
  float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
  return vget_lane_f32(vpadd_f32(s, s), 0);
}
#endif

static inline __attribute__((always_inline)) uint32_t prunec_neon_code(const uint8_t *index, uint32_t e,
                                                                      const uint32_t bits) {
  if (bits == 8) {
    return index[e];
  }
  if (bits == 16) {
    return (uint32_t)index[2u * e] | ((uint32_t)index[2u * e + 1u] << 8);
  }
  return (uint32_t)(index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
}

static inline __attribute__((always_inline)) void prunec_neon_fc_rows(const prunec_rcsr_f32 *w, const float *bias,
                                                                     const float *x, float *y, float lo, float hi,
                                                                     const uint32_t bits) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    const uint32_t end = row_ptr[r + 1];
    uint32_t e = row_ptr[r];
    uint32_t c = (uint32_t)-1; /* column of the previous entry */
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    float s;
    for (; e + 8 <= end; e += 8) {
      float32x4_t x0, x1;
      c += prunec_neon_code(index, e + 0, bits) + 1u;
      x0 = vld1q_dup_f32(x + c);
      c += prunec_neon_code(index, e + 1, bits) + 1u;
      x0 = vld1q_lane_f32(x + c, x0, 1);
      c += prunec_neon_code(index, e + 2, bits) + 1u;
      x0 = vld1q_lane_f32(x + c, x0, 2);
      c += prunec_neon_code(index, e + 3, bits) + 1u;
      x0 = vld1q_lane_f32(x + c, x0, 3);
      c += prunec_neon_code(index, e + 4, bits) + 1u;
      x1 = vld1q_dup_f32(x + c);
      c += prunec_neon_code(index, e + 5, bits) + 1u;
      x1 = vld1q_lane_f32(x + c, x1, 1);
      c += prunec_neon_code(index, e + 6, bits) + 1u;
      x1 = vld1q_lane_f32(x + c, x1, 2);
      c += prunec_neon_code(index, e + 7, bits) + 1u;
      x1 = vld1q_lane_f32(x + c, x1, 3);
      a0 = vfmaq_f32(a0, vld1q_f32(values + e), x0);
      a1 = vfmaq_f32(a1, vld1q_f32(values + e + 4), x1);
    }
    s = prunec_neon_hsum(vaddq_f32(a0, a1));
    for (; e < end; e++) {
      c += prunec_neon_code(index, e, bits) + 1u;
      s += values[e] * x[c];
    }
    s += bias != NULL ? bias[r] : 0.0f;
    s = s < lo ? lo : s;
    y[r] = s > hi ? hi : s;
  }
}

void prunec_f32_fc_rcsr__neon(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                              float out_min, float out_max) {
  switch (w->index_bits) {
    case 4:
      prunec_neon_fc_rows(w, bias, x, y, out_min, out_max, 4);
      break;
    case 8:
      prunec_neon_fc_rows(w, bias, x, y, out_min, out_max, 8);
      break;
    default:
      prunec_neon_fc_rows(w, bias, x, y, out_min, out_max, 16);
      break;
  }
}

typedef struct prunec_neon_taps {
  float w[PRUNEC_NEON_CHUNK];
  int32_t off[PRUNEC_NEON_CHUNK]; /* ci*in_h*in_w + ky*dil_h*in_w + kx*dil_w */
  int32_t dy[PRUNEC_NEON_CHUNK];  /* ky*dil_h */
  int32_t dx[PRUNEC_NEON_CHUNK];  /* kx*dil_w */
} prunec_neon_taps;

static uint32_t prunec_neon_decode_taps(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, uint32_t e,
                                        uint32_t n, uint32_t *last, prunec_neon_taps *t) {
  const uint32_t taps = p->kh * p->kw;
  const int32_t in_plane = (int32_t)(p->in_h * p->in_w);
  uint32_t c = *last, i, k = 0;
  for (i = 0; i < n; i++) {
    const float v = w->values[e + i];
    c += prunec_neon_code(w->index, e + i, w->index_bits) + 1u;
    if (v != 0.0f) {
      const uint32_t ci = c / taps, tap = c - ci * taps;
      const uint32_t ky = tap / p->kw, kx = tap - ky * p->kw;
      t->w[k] = v;
      t->dy[k] = (int32_t)(ky * p->dil_h);
      t->dx[k] = (int32_t)(kx * p->dil_w);
      t->off[k] = (int32_t)ci * in_plane + t->dy[k] * (int32_t)p->in_w + t->dx[k];
      k++;
    }
  }
  *last = c;
  return k;
}

void prunec_f32_conv2d_rcsr__neon(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                  const float *x, float *y, float out_min, float out_max) {
  prunec_neon_taps t;
  const int32_t in_h = (int32_t)p->in_h, in_w = (int32_t)p->in_w;
  const int32_t out_w = (int32_t)p->out_w;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w;
  const int32_t ph = (int32_t)p->pad_h, pw = (int32_t)p->pad_w;
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const int32_t span = (int32_t)((p->kw - 1) * p->dil_w);
  const int32_t ow_lo = pw;
  int32_t ow_hi = in_w - span + pw;
  const float32x4_t vmin = vdupq_n_f32(out_min), vmax = vdupq_n_f32(out_max);
  uint32_t oc;
  if (ow_hi > out_w) {
    ow_hi = out_w;
  }
  for (oc = 0; oc < p->out_c; oc++) {
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    float *yp = y + (size_t)oc * out_plane;
    const float b = bias != NULL ? bias[oc] : 0.0f;
    const float32x4_t vb = vdupq_n_f32(b);
    const uint32_t end = w->row_ptr[oc + 1];
    uint32_t e = w->row_ptr[oc];
    uint32_t last = (uint32_t)-1;
    int first = 1;
    do {
      const uint32_t n = end - e < PRUNEC_NEON_CHUNK ? end - e : PRUNEC_NEON_CHUNK;
      const uint32_t nt = prunec_neon_decode_taps(p, w, e, n, &last, &t);
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
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                const float *xs = xg + (rbase + t.off[k] + ow);
                const float32x4_t wv = vld1q_dup_f32(t.w + k);
                acc0 = vfmaq_f32(acc0, vld1q_f32(xs), wv);
                acc1 = vfmaq_f32(acc1, vld1q_f32(xs + 4), wv);
              }
            }
            if (final) {
              acc0 = vminq_f32(vmaxq_f32(acc0, vmin), vmax);
              acc1 = vminq_f32(vmaxq_f32(acc1, vmin), vmax);
            }
            vst1q_f32(yr + ow, acc0);
            vst1q_f32(yr + ow + 4, acc1);
            ow += 8;
          } else if (sw == 1 && ow >= ow_lo && ow + 4 <= ow_hi) {
            float32x4_t acc = first ? vb : vld1q_f32(yr + ow);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                acc = vfmaq_f32(acc, vld1q_f32(xg + (rbase + t.off[k] + ow)), vld1q_dup_f32(t.w + k));
              }
            }
            if (final) {
              acc = vminq_f32(vmaxq_f32(acc, vmin), vmax);
            }
            vst1q_f32(yr + ow, acc);
            ow += 4;
          } else {
            const int32_t m = out_w - ow < 4 ? out_w - ow : 4;
            float buf[4];
            int32_t l;
            float32x4_t acc;
            for (l = 0; l < 4; l++) {
              buf[l] = (first || l >= m) ? b : yr[ow + l];
            }
            acc = vld1q_f32(buf);
            for (k = 0; k < nt; k++) {
              const int32_t iy = iy0 + t.dy[k];
              if ((uint32_t)iy < (uint32_t)in_h) {
                const float *xr = xg + (t.off[k] - t.dx[k] + (ptrdiff_t)(iy - t.dy[k]) * in_w); /* input row iy */
                float xv[4];
                for (l = 0; l < 4; l++) {
                  const int32_t ix = (ow + l) * sw - pw + t.dx[k];
                  xv[l] = (l < m && (uint32_t)ix < (uint32_t)in_w) ? xr[ix] : 0.0f;
                }
                acc = vfmaq_f32(acc, vld1q_f32(xv), vld1q_dup_f32(t.w + k));
              }
            }
            if (final) {
              acc = vminq_f32(vmaxq_f32(acc, vmin), vmax);
            }
            vst1q_f32(buf, acc);
            for (l = 0; l < m; l++) {
              yr[ow + l] = buf[l];
            }
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
typedef int prunec_f32_rcsr_neon_unavailable;
#endif /* PRUNEC_HAVE_NEON_FMA */
