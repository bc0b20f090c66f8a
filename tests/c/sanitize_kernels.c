/*
 * Runs every portable kernel on edge shapes, for a build with -fsanitize=address,undefined
 * (tests/test_kernels_portable.py). Numerical correctness is tested from Python against PyTorch; here the
 * checks are structural: no sanitizer report, every output written (outputs start as NaN), and sparse and
 * dense twins agree on the same weights. The relative-indexed CSR encoder below is a plain C restatement of
 * toolchain/prunec/encode.py. Prints failures to stdout and exits 1; stderr stays for the sanitizers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prunec_kernels.h"

static int failures = 0;
static uint32_t rng_state = 12345u;

static float rnd(void) { /* xorshift32, uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (p == NULL) {
    printf("out of memory\n");
    exit(2);
  }
  return p;
}

static float *nan_buffer(size_t n) {
  float *p = xcalloc(n, sizeof(float));
  size_t i;
  for (i = 0; i < n; i++) p[i] = NAN;
  return p;
}

static void expect_written(const char *what, const float *y, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (isnan(y[i])) {
      printf("FAIL %s: output %lu not written\n", what, (unsigned long)i);
      failures++;
      return;
    }
  }
}

static void expect_close(const char *what, const float *a, const float *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (!(fabsf(a[i] - b[i]) <= 1e-4f * (1.0f + fabsf(b[i])))) {
      printf("FAIL %s: index %lu: %g vs %g\n", what, (unsigned long)i, (double)a[i], (double)b[i]);
      failures++;
      return;
    }
  }
}

/* Relative-indexed CSR of a dense [rows x cols] matrix, arrays sized exactly. */
typedef struct {
  prunec_rcsr_f32 m;
  float *values;
  uint8_t *index;
  uint32_t *row_ptr;
} owned_rcsr;

static owned_rcsr encode(const float *w, uint32_t rows, uint32_t cols, uint32_t bits) {
  owned_rcsr o;
  const uint32_t span = 1u << bits;
  size_t n = 0, e = 0;
  uint32_t r, c;
  for (r = 0; r < rows; r++) { /* count entries, fillers included */
    long prev = -1;
    for (c = 0; c < cols; c++) {
      if (w[(size_t)r * cols + c] != 0.0f) {
        n += (size_t)((c - prev - 1) >> bits) + 1;
        prev = c;
      }
    }
  }
  o.values = xcalloc(n, sizeof(float));
  o.index = xcalloc((n * bits + 7) / 8, 1);
  o.row_ptr = xcalloc(rows + 1, sizeof(uint32_t));
  for (r = 0; r < rows; r++) {
    long prev = -1;
    o.row_ptr[r] = (uint32_t)e;
    for (c = 0; c < cols; c++) {
      const float v = w[(size_t)r * cols + c];
      uint32_t gap;
      if (v == 0.0f) continue;
      gap = (uint32_t)((long)c - prev);
      while (1) {
        const uint32_t code = gap > span ? span - 1 : gap - 1;
        { /* the LSB-first bit stream of docs/FORMAT.md (b = 4, 8, 16: nibbles, bytes, little-endian halfwords) */
          uint32_t k;
          for (k = 0; k < bits; k++) {
            if ((code >> k) & 1u) o.index[(e * bits + k) / 8] |= (uint8_t)(1u << ((e * bits + k) % 8));
          }
        }
        if (gap > span) {
          o.values[e++] = 0.0f;
          gap -= span;
        } else {
          o.values[e++] = v;
          break;
        }
      }
      prev = c;
    }
  }
  o.row_ptr[rows] = (uint32_t)e;
  o.m.rows = rows;
  o.m.cols = cols;
  o.m.index_bits = bits;
  o.m.values = o.values;
  o.m.index = o.index;
  o.m.row_ptr = o.row_ptr;
  return o;
}

static void release(owned_rcsr *o) {
  free(o->values);
  free(o->index);
  free(o->row_ptr);
}

/* pattern: 0 random (density 40%), 1 all zero, 2 first and last column only, 3 every other row empty */
static float *weights(uint32_t rows, uint32_t cols, int pattern) {
  float *w = xcalloc((size_t)rows * cols, sizeof(float));
  uint32_t r, c;
  for (r = 0; r < rows; r++) {
    for (c = 0; c < cols; c++) {
      float v = rnd();
      int keep = pattern == 0 ? (v > 0.2f) : pattern == 2 ? (c == 0 || c + 1 == cols)
                                             : pattern == 3 ? (r % 2 == 1 && v > 0.0f) : 0;
      w[(size_t)r * cols + c] = keep ? v : 0.0f;
    }
  }
  return w;
}

static float *random_buffer(size_t n) {
  float *p = xcalloc(n, sizeof(float));
  size_t i;
  for (i = 0; i < n; i++) p[i] = rnd() * 4.0f;
  return p;
}

/* the fast widths and widths decoded through the generic bit stream (1: a filler every other column) */
#define NBITS 8
static const uint32_t bits[NBITS] = {4, 8, 16, 1, 3, 5, 6, 12};

static void fc_case(uint32_t rows, uint32_t cols, int pattern) {
  float *w = weights(rows, cols, pattern);
  float *x = random_buffer(cols);
  float *bias = random_buffer(rows);
  float *ref = nan_buffer(rows);
  prunec_dense_f32 d;
  int i;
  d.rows = rows;
  d.cols = cols;
  d.values = w;
  prunec_f32_fc_dense__portable(&d, bias, x, ref, -INFINITY, INFINITY);
  expect_written("fc_dense", ref, rows);
  for (i = 0; i < NBITS; i++) {
    owned_rcsr o = encode(w, rows, cols, bits[i]);
    float *y = nan_buffer(rows);
    prunec_f32_fc_rcsr__portable(&o.m, i == 1 ? NULL : bias, x, y, 0.0f, 6.0f);
    expect_written("fc_rcsr", y, rows);
    if (i != 1) {
      uint32_t r;
      for (r = 0; r < rows; r++) ref[r] = ref[r] < 0.0f ? 0.0f : ref[r] > 6.0f ? 6.0f : ref[r];
      expect_close("fc_rcsr vs fc_dense", y, ref, rows);
    }
    free(y);
    release(&o);
  }
  free(w);
  free(x);
  free(bias);
  free(ref);
}

static void conv_case(uint32_t in_c, uint32_t out_c, uint32_t h, uint32_t w_, uint32_t k, uint32_t stride,
                      uint32_t pad, uint32_t dil, uint32_t groups, int pattern) {
  prunec_conv2d_params p;
  prunec_dense_f32 d;
  uint32_t cols = in_c / groups * k * k;
  float *w = weights(out_c, cols, pattern);
  float *x, *bias, *ref;
  size_t n_out;
  int i;
  p.in_c = in_c;
  p.in_h = h;
  p.in_w = w_;
  p.out_c = out_c;
  p.out_h = (h + 2 * pad - dil * (k - 1) - 1) / stride + 1;
  p.out_w = (w_ + 2 * pad - dil * (k - 1) - 1) / stride + 1;
  p.kh = p.kw = k;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dil_h = p.dil_w = dil;
  p.groups = groups;
  n_out = (size_t)out_c * p.out_h * p.out_w;
  x = random_buffer((size_t)in_c * h * w_);
  bias = random_buffer(out_c);
  ref = nan_buffer(n_out);
  d.rows = out_c;
  d.cols = cols;
  d.values = w;
  prunec_f32_conv2d_dense__portable(&p, &d, bias, x, ref, -INFINITY, INFINITY);
  expect_written("conv2d_dense", ref, n_out);
  for (i = 0; i < NBITS; i++) {
    owned_rcsr o = encode(w, out_c, cols, bits[i]);
    float *y = nan_buffer(n_out);
    prunec_f32_conv2d_rcsr__portable(&p, &o.m, bias, x, y, -INFINITY, INFINITY);
    expect_written("conv2d_rcsr", y, n_out);
    expect_close("conv2d_rcsr vs conv2d_dense", y, ref, n_out);
    free(y);
    release(&o);
  }
  free(w);
  free(x);
  free(bias);
  free(ref);
}

static void pool_case(uint32_t c, uint32_t h, uint32_t w, uint32_t k, uint32_t s, uint32_t pad, int ceil_mode) {
  prunec_pool2d_params p;
  float *x = random_buffer((size_t)c * h * w);
  float *y;
  size_t n;
  int include;
  p.channels = c;
  p.in_h = h;
  p.in_w = w;
  p.kh = p.kw = k;
  p.stride_h = p.stride_w = s;
  p.pad_h = p.pad_w = pad;
  p.out_h = (h + 2 * pad - k + (ceil_mode ? s - 1 : 0)) / s + 1;
  p.out_w = (w + 2 * pad - k + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (ceil_mode && (p.out_h - 1) * s >= h + pad) p.out_h--;
  if (ceil_mode && (p.out_w - 1) * s >= w + pad) p.out_w--;
  n = (size_t)c * p.out_h * p.out_w;
  y = nan_buffer(n);
  prunec_f32_maxpool2d__portable(&p, x, y);
  expect_written("maxpool2d", y, n);
  for (include = 0; include < 2; include++) {
    size_t i;
    p.count_include_pad = (uint32_t)include;
    for (i = 0; i < n; i++) y[i] = NAN;
    prunec_f32_avgpool2d__portable(&p, x, y);
    expect_written("avgpool2d", y, n);
  }
  free(y);
  free(x);
}

static void adaptive_case(uint32_t in_h, uint32_t in_w, uint32_t out_h, uint32_t out_w) {
  float *x = random_buffer((size_t)2 * in_h * in_w);
  float *y = nan_buffer((size_t)2 * out_h * out_w);
  prunec_f32_adaptive_avgpool2d__portable(2, in_h, in_w, out_h, out_w, x, y);
  expect_written("adaptive_avgpool2d", y, (size_t)2 * out_h * out_w);
  free(x);
  free(y);
}

static void elementwise_case(size_t n) {
  float *x = random_buffer(n);
  float *b = random_buffer(n);
  float *y = nan_buffer(n);
  size_t i;
  for (i = 0; i < n; i++) x[i] *= 40.0f; /* saturate sigmoid/tanh, overflow expf if done naively */
  prunec_f32_clamp__portable(n, x, y, 0.0f, 6.0f);
  expect_written("clamp", y, n);
  prunec_f32_sigmoid__portable(n, x, y);
  expect_written("sigmoid", y, n);
  prunec_f32_tanh__portable(n, x, y);
  expect_written("tanh", y, n);
  prunec_f32_add__portable(n, x, b, y, -INFINITY, INFINITY);
  expect_written("add", y, n);
  prunec_f32_add__portable(n, y, b, y, 0.0f, 6.0f); /* in place */
  prunec_f32_sigmoid__portable(n, y, y);
  prunec_f32_gelu__portable(n, 0u, x, y);
  expect_written("gelu", y, n);
  prunec_f32_gelu__portable(n, 1u, y, y);
  prunec_f32_elu__portable(n, 1.0507f, 1.0f, 1.7581f, x, y);
  expect_written("elu", y, n);
  prunec_f32_softplus__portable(n, 0.5f, 20.0f, x, y);
  expect_written("softplus", y, n);
  prunec_f32_mish__portable(n, x, y);
  expect_written("mish", y, n);
  prunec_f32_softmax__portable(1, n, 1, x, y);
  expect_written("softmax", y, n);
  if (n > 0) {
    float sum = 0.0f;
    for (i = 0; i < n; i++) sum += y[i];
    if (!(fabsf(sum - 1.0f) < 1e-4f)) {
      printf("FAIL softmax: sum %g\n", (double)sum);
      failures++;
    }
  }
  if (n % 6 == 0 && n > 0) {
    prunec_f32_softmax__portable(2, 3, n / 6, x, x); /* in place, strided */
    expect_written("softmax in place", x, n);
  }
  free(x);
  free(b);
  free(y);
}

/* pad2d (crops too), both upsamplings and a permutation, on buffers of exactly their sizes. */
static void layout_case(uint32_t h, uint32_t w, int32_t top, int32_t bottom, int32_t left, int32_t right) {
  const size_t oh = (size_t)((int32_t)h + top + bottom), ow = (size_t)((int32_t)w + left + right);
  float *x = random_buffer((size_t)3 * h * w);
  float *y = nan_buffer(3 * oh * ow);
  float *u = nan_buffer((size_t)3 * h * w * 6);
  const uint32_t shape[4] = {w, 1u, 3u, h}, stride[4] = {1u, 0u, h * w, w};
  prunec_f32_pad2d__portable(3, h, w, oh, ow, top, left, -INFINITY, x, y);
  expect_written("pad2d", y, 3 * oh * ow);
  prunec_f32_upsample_nearest2d__portable(3, h, w, 2, 3, x, u);
  expect_written("upsample_nearest2d", u, (size_t)3 * h * w * 6);
  prunec_f32_upsample_bilinear2d__portable(3, h, w, 2 * h, 3 * w, 0.5f, 1.0f / 3.0f, 0u, x, u);
  expect_written("upsample_bilinear2d", u, (size_t)3 * h * w * 6);
  prunec_f32_upsample_bilinear2d__portable(3, h, w, 3 * h, 2 * w, h > 1 ? (float)(h - 1) / (float)(3 * h - 1) : 0.0f,
                                           (float)(w - 1) / (float)(2 * w - 1), 1u, x, u);
  prunec_f32_permute__portable(shape, stride, x, u);
  expect_written("permute", u, (size_t)3 * h * w);
  free(x);
  free(y);
  free(u);
}

int main(void) {
  static const uint32_t widths[] = {1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33};
  size_t i;
  fc_case(0, 5, 0);
  fc_case(3, 0, 0);
  fc_case(1, 1, 0);
  fc_case(1, 1, 1);
  fc_case(1, 100, 2);   /* gap 99 > 2^4 */
  fc_case(3, 600, 2);   /* gap 599 > 2^8 */
  fc_case(2, 70000, 2); /* gap 69999 > 2^16 */
  fc_case(17, 17, 1);
  fc_case(9, 33, 3);
  for (i = 0; i < sizeof widths / sizeof widths[0]; i++) {
    fc_case(widths[i], 33, 0);
    fc_case(5, widths[i], 0);
    conv_case(2, 2, 5, widths[i], 3, 1, 1, 1, 1, 0);
    pool_case(2, 4, widths[i], 2, 2, 0, 1);
    elementwise_case(widths[i]);
    layout_case(3, widths[i], 1, 2, 2, 1);
    layout_case(widths[i], 2, -1, 0, 3, -1);
  }
  layout_case(1, 1, 0, 0, 0, 0);
  layout_case(4, 4, -4, 1, 0, 0); /* every input row cropped */
  layout_case(4, 4, 0, 0, -4, 1); /* every input column cropped */
  conv_case(1, 1, 1, 1, 1, 1, 0, 1, 1, 0);
  conv_case(3, 4, 9, 9, 3, 2, 1, 1, 1, 0);
  conv_case(3, 4, 11, 10, 3, 2, 2, 2, 1, 0);
  conv_case(4, 6, 8, 8, 3, 1, 1, 1, 2, 0);
  conv_case(4, 8, 7, 7, 3, 2, 1, 1, 4, 0);
  conv_case(3, 2, 5, 5, 5, 1, 0, 1, 1, 0);
  conv_case(3, 2, 3, 3, 5, 1, 1, 1, 1, 0); /* kernel larger than the input, padding makes it fit */
  conv_case(4, 5, 6, 6, 3, 1, 1, 1, 1, 1);
  conv_case(4, 5, 6, 6, 3, 1, 1, 1, 1, 3);
  conv_case(32, 3, 5, 5, 3, 1, 1, 1, 1, 2);
  conv_case(8192, 2, 3, 3, 3, 1, 1, 1, 1, 2);
  pool_case(1, 1, 1, 1, 1, 0, 0);
  pool_case(2, 5, 5, 2, 2, 0, 1);
  pool_case(2, 7, 9, 3, 2, 1, 1);
  pool_case(2, 6, 6, 3, 2, 1, 1);
  pool_case(1, 4, 4, 4, 4, 2, 1);
  adaptive_case(1, 1, 1, 1);
  adaptive_case(7, 7, 1, 1);
  adaptive_case(5, 7, 3, 2);
  adaptive_case(3, 3, 5, 5);
  elementwise_case(0);
  elementwise_case(1000);
  if (failures) {
    printf("%d failures\n", failures);
    return 1;
  }
  return 0;
}
