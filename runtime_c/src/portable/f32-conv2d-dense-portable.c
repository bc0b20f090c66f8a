/*
 * Dense 2-D convolution, portable C99 (NCHW, batch 1), for layers the encoder stores dense.
 *
 * Weights are PyTorch's weight.reshape(out_c, -1): row oc, column k = (ci*kh + ky)*kw + kx with ci the input
 * channel within oc's group (groups divide in_c and out_c; depthwise is groups == in_c).
 *
 * Same direct algorithm as the sparse twin (f32-conv2d-rcsr-portable.c): the output plane starts as the
 * bias, then each weight adds w * (shifted, strided input plane) over the rectangle of outputs whose input
 * cell is inside the image, so the inner loop has no bounds checks and padding costs nothing. Weights are
 * visited in column order, the order of the sparse kernel. The fused clamp is applied to the finished plane.
 */
#include "prunec_kernels.h"

/* Outputs o in [*lo, *hi) with 0 <= o*stride - pad + off < n_in, clipped to [0, n_out). */
static void valid_range(uint32_t n_out, uint32_t n_in, uint32_t stride, uint32_t pad, uint32_t off,
                        uint32_t *lo, uint32_t *hi) {
  const long first = (long)pad - (long)off;
  const long last = (long)n_in - 1 + (long)pad - (long)off;
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

void prunec_f32_conv2d_dense__portable(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias,
                                       const float *x, float *y, float out_min, float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  const size_t out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups;
  const uint32_t cout_g = p->out_c / p->groups;
  const size_t cols = (size_t)cin_g * p->kh * p->kw;
  uint32_t oc, ci, ky, kx, oy, ox;
  size_t i;
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const float *wr = w->values + (size_t)oc * cols;
    const float b = bias != NULL ? bias[oc] : 0.0f;
    for (i = 0; i < out_plane; i++) {
      yp[i] = b;
    }
    for (ci = 0; ci < cin_g; ci++) {
      const float *xc = xg + (size_t)ci * in_plane;
      for (ky = 0; ky < p->kh; ky++) {
        uint32_t oy0, oy1;
        valid_range(p->out_h, p->in_h, p->stride_h, p->pad_h, ky * p->dil_h, &oy0, &oy1);
        for (kx = 0; kx < p->kw; kx++) {
          const float v = *wr++;
          uint32_t ox0, ox1, n;
          valid_range(p->out_w, p->in_w, p->stride_w, p->pad_w, kx * p->dil_w, &ox0, &ox1);
          n = ox1 - ox0;
          for (oy = oy0; oy < oy1 && n > 0; oy++) {
            const size_t iy = (size_t)oy * p->stride_h + ky * p->dil_h - p->pad_h;
            const size_t ix0 = (size_t)ox0 * p->stride_w + kx * p->dil_w - p->pad_w;
            const float *xr = xc + iy * p->in_w + ix0;
            float *yr = yp + (size_t)oy * p->out_w + ox0;
            const size_t sw = p->stride_w;
            for (ox = 0; ox < n; ox++) {
              yr[ox] += v * xr[ox * sw];
            }
          }
        }
      }
    }
    for (i = 0; i < out_plane; i++) {
      float v = yp[i] < out_min ? out_min : yp[i];
      yp[i] = v > out_max ? out_max : v;
    }
  }
}
