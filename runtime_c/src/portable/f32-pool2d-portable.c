/*
 * 2-D pooling, portable C99 (NCHW, batch 1, each channel independently).
 *
 * Window of output (oy, ox): rows [oy*sh - ph, oy*sh - ph + kh), columns likewise. With ceil_mode a window
 * may hang over the padded border; the caller's out_h/out_w already say how many windows there are.
 *   max: maximum over the window's cells inside the input (padding never wins); NaN propagates as in
 *        PyTorch. A window with no input cell (impossible for PyTorch's shapes) gives -inf.
 *   avg: sum over the window's cells inside the input, divided by (PyTorch's rule) the window clipped to
 *        the padded input [-pad, in + pad) when count_include_pad, else by the number of input cells.
 *   adaptive avg: window i spans [floor(i*in/out), ceil((i+1)*in/out)), divided by its size.
 */
#include <math.h>

#include "prunec_kernels.h"

/* The window [start, start + k) as a signed range, and its intersection [*lo, *hi) with [0, n). */
static void clip(long start, uint32_t k, uint32_t n, uint32_t *lo, uint32_t *hi) {
  long l = start < 0 ? 0 : start;
  long h = start + (long)k;
  if (h > (long)n) {
    h = (long)n;
  }
  if (h < l) {
    h = l;
  }
  *lo = (uint32_t)l;
  *hi = (uint32_t)h;
}

void prunec_f32_maxpool2d__portable(const prunec_pool2d_params *p, const float *x, float *y) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  uint32_t c, oy, ox, iy, ix;
  for (c = 0; c < p->channels; c++) {
    const float *xc = x + (size_t)c * in_plane;
    for (oy = 0; oy < p->out_h; oy++) {
      uint32_t y0, y1;
      clip((long)oy * (long)p->stride_h - (long)p->pad_h, p->kh, p->in_h, &y0, &y1);
      for (ox = 0; ox < p->out_w; ox++) {
        uint32_t x0, x1;
        float m = -INFINITY;
        clip((long)ox * (long)p->stride_w - (long)p->pad_w, p->kw, p->in_w, &x0, &x1);
        for (iy = y0; iy < y1; iy++) {
          const float *xr = xc + (size_t)iy * p->in_w;
          for (ix = x0; ix < x1; ix++) {
            const float v = xr[ix];
            if (v > m || v != v) {
              m = v;
            }
          }
        }
        *y++ = m;
      }
    }
  }
}

void prunec_f32_avgpool2d__portable(const prunec_pool2d_params *p, const float *x, float *y) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  uint32_t c, oy, ox, iy, ix;
  for (c = 0; c < p->channels; c++) {
    const float *xc = x + (size_t)c * in_plane;
    for (oy = 0; oy < p->out_h; oy++) {
      const long sy = (long)oy * (long)p->stride_h - (long)p->pad_h;
      /* Window height clipped to the padded input: its end may not pass in_h + pad_h. */
      const long ey = sy + (long)p->kh < (long)(p->in_h + p->pad_h) ? sy + (long)p->kh : (long)(p->in_h + p->pad_h);
      uint32_t y0, y1;
      clip(sy, p->kh, p->in_h, &y0, &y1);
      for (ox = 0; ox < p->out_w; ox++) {
        const long sx = (long)ox * (long)p->stride_w - (long)p->pad_w;
        const long ex = sx + (long)p->kw < (long)(p->in_w + p->pad_w) ? sx + (long)p->kw : (long)(p->in_w + p->pad_w);
        uint32_t x0, x1;
        float sum = 0.0f;
        long count;
        clip(sx, p->kw, p->in_w, &x0, &x1);
        for (iy = y0; iy < y1; iy++) {
          const float *xr = xc + (size_t)iy * p->in_w;
          for (ix = x0; ix < x1; ix++) {
            sum += xr[ix];
          }
        }
        count = p->count_include_pad ? (ey - sy) * (ex - sx) : (long)(y1 - y0) * (long)(x1 - x0);
        *y++ = count > 0 ? sum / (float)count : 0.0f;
      }
    }
  }
}

void prunec_f32_adaptive_avgpool2d__portable(uint32_t channels, uint32_t in_h, uint32_t in_w, uint32_t out_h,
                                             uint32_t out_w, const float *x, float *y) {
  const size_t in_plane = (size_t)in_h * in_w;
  uint32_t c, oy, ox, iy, ix;
  for (c = 0; c < channels; c++) {
    const float *xc = x + (size_t)c * in_plane;
    for (oy = 0; oy < out_h; oy++) {
      const uint32_t y0 = (uint32_t)(((uint64_t)oy * in_h) / out_h);
      const uint32_t y1 = (uint32_t)(((uint64_t)(oy + 1) * in_h + out_h - 1) / out_h);
      for (ox = 0; ox < out_w; ox++) {
        const uint32_t x0 = (uint32_t)(((uint64_t)ox * in_w) / out_w);
        const uint32_t x1 = (uint32_t)(((uint64_t)(ox + 1) * in_w + out_w - 1) / out_w);
        float sum = 0.0f;
        for (iy = y0; iy < y1; iy++) {
          const float *xr = xc + (size_t)iy * in_w;
          for (ix = x0; ix < x1; ix++) {
            sum += xr[ix];
          }
        }
        *y++ = sum / (float)((y1 - y0) * (x1 - x0));
      }
    }
  }
}
