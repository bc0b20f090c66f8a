/*
 * Sparse 2-D convolution, portable C99 (NCHW, batch 1), weights in relative-indexed CSR.
 *
 * Weight matrix: row oc = output channel, [out_c x (in_c/groups)*kh*kw]; column k = (ci*kh + ky)*kw + kx
 * where ci is the input channel within the group of oc (group g = oc / (out_c/groups) reads input channels
 * g*(in_c/groups) ..). Column decoding as in the sparse fc kernel: col(e) = col(e-1) + c_e + 1 from -1.
 *
 * Direct convolution, one output plane at a time: the plane starts as the bias; then every nonzero weight
 * w at (ci, ky, kx) adds w * x[ci][oy*sh - ph + ky*dh][ox*sw - pw + kx*dw] to every output (oy, ox) whose
 * input cell lies inside the image. That set is a rectangle [oy0, oy1) x [ox0, ox1) computed once per
 * weight, so the inner loop is a bounds-check-free strided axpy. Padding contributes zeros, i.e. nothing.
 * Fillers (value 0) are skipped. The fused clamp is applied to the finished plane.
 */
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

#define RECTS 49 /* taps whose output rectangles are computed once per call (7x7) */

/* Outputs o in [*lo, *hi) with 0 <= o*stride - pad + off < n_in, clipped to [0, n_out). */
static void valid_range(uint32_t n_out, uint32_t n_in, uint32_t stride, uint32_t pad, uint32_t off,
                        uint32_t *lo, uint32_t *hi) {
  const long first = (long)pad - (long)off;               /* o*stride >= first */
  const long last = (long)n_in - 1 + (long)pad - (long)off; /* o*stride <= last */
  long l = first <= 0 ? 0 : (first + (long)stride - 1) / (long)stride;
  long h = last < 0 ? 0 : last / (long)stride + 1;
  if (h > (long)n_out) {
    h = (long)n_out;
  }
  if (l > h) {
    l = h;
  }
  *lo = (uint32_t)l;
  *hi = (uint32_t)h;
}

/* The valid output rectangle of tap (ky, kx), [oy0, oy1) x [ox0, ox1), and the input cell its first output reads
 * (relative to the input channel's plane). */
typedef struct tap_rect {
  uint32_t oy0, oy1, ox0, n; /* n = ox1 - ox0, 0 when the rectangle is empty */
  size_t x0;
} tap_rect;

static void tap_rect_init(const prunec_conv2d_params *p, uint32_t ky, uint32_t kx, tap_rect *r) {
  uint32_t ox1;
  valid_range(p->out_h, p->in_h, p->stride_h, p->pad_h, ky * p->dil_h, &r->oy0, &r->oy1);
  valid_range(p->out_w, p->in_w, p->stride_w, p->pad_w, kx * p->dil_w, &r->ox0, &ox1);
  r->n = r->oy0 < r->oy1 ? ox1 - r->ox0 : 0;
  r->x0 = r->n ? ((size_t)r->oy0 * p->stride_h + ky * p->dil_h - p->pad_h) * p->in_w +
                     (size_t)r->ox0 * p->stride_w + kx * p->dil_w - p->pad_w
               : 0;
}

/* y_plane += v * (input plane xc sampled at the tap of rectangle r) over r. */
static void accumulate_tap(const prunec_conv2d_params *p, const float *xc, float *y_plane, float v, const tap_rect *r) {
  const size_t sw = p->stride_w, xs = (size_t)p->stride_h * p->in_w, n = r->n;
  const float *xr = xc + r->x0;
  float *yr = y_plane + (size_t)r->oy0 * p->out_w + r->ox0;
  uint32_t oy;
  size_t ox;
  if (n == 0) {
    return;
  }
  for (oy = r->oy0; oy < r->oy1; oy++, xr += xs, yr += p->out_w) {
    for (ox = 0; ox < n; ox++) {
      yr[ox] += v * xr[ox * sw];
    }
  }
}

static uint32_t code_at(const prunec_rcsr_f32 *w, uint32_t e) {
  switch (w->index_bits) {
    case 4:
      return (uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
    case 8:
      return w->index[e];
    case 16:
      return (uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8);
    default:
      return prunec_rcsr_code_any(w->index, e, w->index_bits);
  }
}

void prunec_f32_conv2d_rcsr__portable(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                      const float *x, float *y, float out_min, float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  const size_t out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups;
  const uint32_t cout_g = p->out_c / p->groups;
  const uint32_t taps = p->kh * p->kw;
  const int valid_bits = prunec_rcsr_valid_bits(w->index_bits);
  tap_rect rects[RECTS];
  uint32_t oc;
  size_t i;
  if (!valid_bits) {
    /* Not a valid encoding: make the output visibly wrong rather than leave it stale. */
    for (i = 0; i < (size_t)p->out_c * out_plane; i++) {
      y[i] = NAN;
    }
    return;
  }
  /* the taps' rectangles once per call when the kernel has at most RECTS taps (3x3, 5x5, 7x7: every layer of the
   * model zoo and MLPerf Tiny but DS-CNN's 10x4 stem) and the call has at least as many entries (not the one-channel
   * calls of the fused conv + pool), else per nonzero: depthwise layers, one or two nonzeros per output channel on
   * small planes, spent most of their instructions recomputing them (MobileNetV1's 3x3 planes) */
  const int use_rects = taps <= RECTS && w->row_ptr[p->out_c] - w->row_ptr[0] >= taps; /* amortised */
  if (use_rects) {
    uint32_t ky, kx;
    for (ky = 0; ky < p->kh; ky++) {
      for (kx = 0; kx < p->kw; kx++) {
        tap_rect_init(p, ky, kx, &rects[ky * p->kw + kx]);
      }
    }
  }
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const float b = bias != NULL ? bias[oc] : 0.0f;
    uint32_t next = 0;
    uint32_t e;
    for (i = 0; i < out_plane; i++) {
      yp[i] = b;
    }
    /* The per-entry switch in code_at is cheap next to the plane pass each nonzero drives. */
    for (e = w->row_ptr[oc]; e < w->row_ptr[oc + 1]; e++) {
      const uint32_t col = next + code_at(w, e);
      const float v = w->values[e];
      next = col + 1;
      if (v != 0.0f) {
        const uint32_t ci = col / taps;
        const uint32_t t = col - ci * taps;
        if (use_rects) {
          accumulate_tap(p, xg + (size_t)ci * in_plane, yp, v, &rects[t]);
        } else {
          tap_rect r;
          tap_rect_init(p, t / p->kw, t % p->kw, &r);
          accumulate_tap(p, xg + (size_t)ci * in_plane, yp, v, &r);
        }
      }
    }
    for (i = 0; i < out_plane; i++) {
      float v = yp[i] < out_min ? out_min : yp[i];
      yp[i] = v > out_max ? out_max : v;
    }
  }
}
