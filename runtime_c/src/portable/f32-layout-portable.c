/*
 * Data movement, portable C99: constant padding, nearest and bilinear upsampling, permutation. Every kernel works
 * on the contiguous tensor of one sample; x and y do not overlap.
 */
#include <math.h>

#include "prunec_kernels.h"

/* Constant padding of the last two dims (F.pad, mode 'constant'): `planes` planes of in_h x in_w become out_h x
 * out_w, input element (r, c) landing at (r + top, c + left); every other output is `value`. A negative top / left
 * (or an output smaller than input + top) crops. */
void prunec_f32_pad2d__portable(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w, int32_t top,
                                int32_t left, float value, const float *x, float *y) {
  const ptrdiff_t ih = (ptrdiff_t)in_h, iw = (ptrdiff_t)in_w, ow = (ptrdiff_t)out_w;
  /* output columns [c0, c1) come from the input, the others are `value` */
  const ptrdiff_t c0 = left > 0 ? (ptrdiff_t)left : 0;
  const ptrdiff_t c1 = (ptrdiff_t)left + iw < ow ? (ptrdiff_t)left + iw : ow;
  size_t p;
  ptrdiff_t r, c;
  for (p = 0; p < planes; p++) {
    const float *xp = x + p * in_h * in_w;
    float *yp = y + p * out_h * out_w;
    for (r = 0; r < (ptrdiff_t)out_h; r++) {
      const ptrdiff_t sr = r - (ptrdiff_t)top;
      float *yr = yp + r * ow;
      if (sr < 0 || sr >= ih || c0 >= c1) {
        for (c = 0; c < ow; c++) {
          yr[c] = value;
        }
        continue;
      }
      for (c = 0; c < c0; c++) {
        yr[c] = value;
      }
      for (c = c0; c < c1; c++) {
        yr[c] = xp[sr * iw + c - (ptrdiff_t)left];
      }
      for (c = c1; c < ow; c++) {
        yr[c] = value;
      }
    }
  }
}

/* Nearest upsampling by integer factors: output (r, c) of each plane is input (r / scale_h, c / scale_w), the
 * output in_h * scale_h x in_w * scale_w. */
void prunec_f32_upsample_nearest2d__portable(size_t planes, size_t in_h, size_t in_w, size_t scale_h, size_t scale_w,
                                             const float *x, float *y) {
  const size_t ow = in_w * scale_w;
  size_t p, r, c, k;
  for (p = 0; p < planes; p++) {
    for (r = 0; r < in_h; r++) {
      const float *xr = x + (p * in_h + r) * in_w;
      float *yr = y + (p * in_h + r) * scale_h * ow;
      for (c = 0; c < in_w; c++) {
        for (k = 0; k < scale_w; k++) {
          yr[c * scale_w + k] = xr[c];
        }
      }
      for (k = 1; k < scale_h; k++) {
        for (c = 0; c < ow; c++) {
          yr[k * ow + c] = yr[c];
        }
      }
    }
  }
}

/* PyTorch's source index and weight of output index i along one dim (area_pixel_compute_source_index, then
 * guard_index_and_lambda): *i0 and *i1 = *i0 + 1 (or *i0 at the last input), weights 1 - *lam and *lam. */
static void linear_source(size_t i, size_t in, float scale, uint32_t align_corners, size_t *i0, size_t *i1,
                          float *lam) {
  float real = align_corners ? scale * (float)i : scale * ((float)i + 0.5f) - 0.5f;
  float l;
  size_t j;
  if (real < 0.0f) {
    real = 0.0f;
  }
  j = (size_t)floorf(real);
  if (j > in - 1) {
    j = in - 1;
  }
  l = real - (float)j;
  *i0 = j;
  *i1 = j + (j < in - 1 ? 1u : 0u);
  *lam = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);
}

/* Bilinear upsampling as PyTorch's upsample_bilinear2d: scale_h, scale_w are its float scales (align_corners:
 * (in - 1) / (out - 1), 0 for an output of 1; otherwise 1 / scale_factor, or in / out when a size was given). */
void prunec_f32_upsample_bilinear2d__portable(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w,
                                              float scale_h, float scale_w, uint32_t align_corners, const float *x,
                                              float *y) {
  size_t p, r, c;
  for (p = 0; p < planes; p++) {
    const float *xp = x + p * in_h * in_w;
    float *yp = y + p * out_h * out_w;
    for (r = 0; r < out_h; r++) {
      size_t r0, r1;
      float lr;
      linear_source(r, in_h, scale_h, align_corners, &r0, &r1, &lr);
      for (c = 0; c < out_w; c++) {
        size_t c0, c1;
        float lc, top, bottom;
        linear_source(c, in_w, scale_w, align_corners, &c0, &c1, &lc);
        top = xp[r0 * in_w + c0] * (1.0f - lc) + xp[r0 * in_w + c1] * lc;
        bottom = xp[r1 * in_w + c0] * (1.0f - lc) + xp[r1 * in_w + c1] * lc;
        yp[r * out_w + c] = top * (1.0f - lr) + bottom * lr;
      }
    }
  }
}

/* y = x with its dims permuted: y is the contiguous shape[0] x .. x shape[3] tensor, y[i0][i1][i2][i3] =
 * x[i0 * stride[0] + i1 * stride[1] + i2 * stride[2] + i3 * stride[3]], stride[k] being x's stride (in elements)
 * along the dim that becomes dim k of y (fewer dims: leading ones of size 1). */
void prunec_f32_permute__portable(const uint32_t shape[4], const uint32_t stride[4], const float *x, float *y) {
  size_t i0, i1, i2, i3;
  for (i0 = 0; i0 < shape[0]; i0++) {
    for (i1 = 0; i1 < shape[1]; i1++) {
      for (i2 = 0; i2 < shape[2]; i2++) {
        const float *xs = x + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
        for (i3 = 0; i3 < shape[3]; i3++) {
          *y++ = xs[i3 * stride[3]];
        }
      }
    }
  }
}
