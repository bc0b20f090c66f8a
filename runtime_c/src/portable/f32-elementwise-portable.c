/*
 * Elementwise kernels, softmax and log_softmax, portable C99. All accept y == x (and y == a for add): each element is
 * read before it is written.
 */
#include <math.h>

#include "prunec_kernels.h"

void prunec_f32_clamp__portable(size_t n, const float *x, float *y, float out_min, float out_max) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i] < out_min ? out_min : x[i];
    y[i] = v > out_max ? out_max : v;
  }
}

/* 1 / (1 + e^-x), evaluated so that expf never overflows: e^-|x| is in (0, 1]. */
void prunec_f32_sigmoid__portable(size_t n, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i];
    const float e = expf(-fabsf(v));
    y[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  }
}

void prunec_f32_tanh__portable(size_t n, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    y[i] = tanhf(x[i]);
  }
}

/*
 * Softmax and log_softmax along a dimension of size n. Layout: element k of slice (o, j) is at (o*n + k)*inner + j,
 * for o < outer and j < inner (a contiguous tensor split around the dim). Numerically stable: the slice's maximum m
 * is subtracted before exponentiating, so every exponent is <= 0 and the sum is >= 1. softmax: e^(x - m) / sum;
 * log_softmax: (x - m) - log(sum), as PyTorch computes it (no exp of large values, no log of 0).
 */
static void prunec_softmax_slices(size_t outer, size_t n, size_t inner, const float *x, float *y, int log_out) {
  size_t o, j, k;
  if (n == 0) {
    return;
  }
  for (o = 0; o < outer; o++) {
    for (j = 0; j < inner; j++) {
      const float *xs = x + o * n * inner + j;
      float *ys = y + o * n * inner + j;
      float m = xs[0];
      float sum = 0.0f;
      for (k = 1; k < n; k++) {
        m = xs[k * inner] > m ? xs[k * inner] : m;
      }
      if (log_out) {
        float lse;
        for (k = 0; k < n; k++) {
          sum += expf(xs[k * inner] - m);
        }
        lse = logf(sum);
        for (k = 0; k < n; k++) {
          ys[k * inner] = (xs[k * inner] - m) - lse;
        }
      } else {
        float scale;
        for (k = 0; k < n; k++) {
          const float e = expf(xs[k * inner] - m);
          ys[k * inner] = e;
          sum += e;
        }
        scale = 1.0f / sum;
        for (k = 0; k < n; k++) {
          ys[k * inner] *= scale;
        }
      }
    }
  }
}

void prunec_f32_softmax__portable(size_t outer, size_t n, size_t inner, const float *x, float *y) {
  prunec_softmax_slices(outer, n, inner, x, y, 0);
}

void prunec_f32_log_softmax__portable(size_t outer, size_t n, size_t inner, const float *x, float *y) {
  prunec_softmax_slices(outer, n, inner, x, y, 1);
}

void prunec_f32_add__portable(size_t n, const float *a, const float *b, float *y, float out_min, float out_max) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float s = a[i] + b[i];
    const float v = s < out_min ? out_min : s;
    y[i] = v > out_max ? out_max : v;
  }
}

/* y = clamp(a - b), each element read before it is written: y may be a or b. */
void prunec_f32_sub__portable(size_t n, const float *a, const float *b, float *y, float out_min, float out_max) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float s = a[i] - b[i];
    const float v = s < out_min ? out_min : s;
    y[i] = v > out_max ? out_max : v;
  }
}

/* y = clamp(x * scale[c] + shift[c]) over `channels` runs of `inner` elements (NCHW: inner = H*W; a flat [N, F]
 * tensor: channels = F, inner = 1): a batch norm that cannot be folded into a layer, and arithmetic with constants
 * (input normalisation (x - m) / s, x * 0.1). Two roundings per element (product, then sum): ISO C99 builds do
 * not contract them into one FMA. */
void prunec_f32_affine__portable(size_t channels, size_t inner, const float *scale, const float *shift,
                                 const float *x, float *y, float out_min, float out_max) {
  size_t c, i;
  for (c = 0; c < channels; c++) {
    const float s = scale[c], t = shift[c];
    const float *xc = x + c * inner;
    float *yc = y + c * inner;
    for (i = 0; i < inner; i++) {
      const float p = xc[i] * s;
      const float v = p + t;
      const float lo = v < out_min ? out_min : v;
      yc[i] = lo > out_max ? out_max : lo;
    }
  }
}

/* One input of a concatenation: `outer` runs of n elements of x, run o to y + o * y_stride (torch.cat along dim d of
 * contiguous tensors: outer = the product of the dims before d, n = this input's product of the dims from d on,
 * y_stride = the output's; the caller offsets y by the inputs before this one). x and y do not overlap. */
void prunec_f32_concat__portable(size_t outer, size_t n, size_t y_stride, const float *x, float *y) {
  size_t o, i;
  for (o = 0; o < outer; o++) {
    for (i = 0; i < n; i++) {
      y[o * y_stride + i] = x[o * n + i];
    }
  }
}

/* y = a * b over `channels` runs of `inner` elements; b has the same shape (b_inner = inner) or one value per channel
 * (b_inner = 1: a squeeze-and-excitation gate [N, C, 1, 1] scaling [N, C, H, W]). y may be a. */
void prunec_f32_mul__portable(size_t channels, size_t inner, size_t b_inner, const float *a, const float *b,
                              float *y) {
  size_t c, i;
  for (c = 0; c < channels; c++) {
    const float *ac = a + c * inner;
    const float *bc = b + c * b_inner;
    float *yc = y + c * inner;
    if (b_inner == 1) {
      const float s = bc[0];
      for (i = 0; i < inner; i++) {
        yc[i] = ac[i] * s;
      }
    } else {
      for (i = 0; i < inner; i++) {
        yc[i] = ac[i] * bc[i];
      }
    }
  }
}

/* y = x > 0 ? x : x * slope (PyTorch's leaky_relu). y may be x. */
void prunec_f32_leaky_relu__portable(size_t n, float slope, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : v * slope;
  }
}

/* PyTorch's gelu: x/2 (1 + erf(x / sqrt 2)), or with tanh_approx (approximate='tanh')
 * x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). y may be x. */
void prunec_f32_gelu__portable(size_t n, uint32_t tanh_approx, const float *x, float *y) {
  size_t i;
  if (tanh_approx) {
    for (i = 0; i < n; i++) {
      const float v = x[i];
      const float cube = v * v * v;
      const float inner = 0.7978845608028654f * (v + 0.044715f * cube);
      y[i] = 0.5f * v * (1.0f + tanhf(inner));
    }
  } else {
    for (i = 0; i < n; i++) {
      const float v = x[i];
      y[i] = v * 0.5f * (1.0f + erff(v * 0.70710678118654752f));
    }
  }
}

/* PyTorch's elu with its scales: y = x > 0 ? x * scale : expm1(x * input_scale) * neg_scale. elu: scale 1,
 * input_scale 1, neg_scale alpha; celu: input_scale 1/alpha; selu: selu's constants. y may be x. */
void prunec_f32_elu__portable(size_t n, float scale, float input_scale, float neg_scale, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = v > 0.0f ? v * scale : expm1f(v * input_scale) * neg_scale;
  }
}

/* PyTorch's softplus: x * beta > threshold ? x : log1p(exp(x * beta)) / beta. y may be x. */
void prunec_f32_softplus__portable(size_t n, float beta, float threshold, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i];
    const float b = v * beta;
    y[i] = b > threshold ? v : log1pf(expf(b)) / beta;
  }
}

/* PyTorch's mish: x * tanh(log1p(exp(x))) (exp overflows to inf for large x: tanh(inf) = 1, y = x). y may be x. */
void prunec_f32_mish__portable(size_t n, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = v * tanhf(log1pf(expf(v)));
  }
}
