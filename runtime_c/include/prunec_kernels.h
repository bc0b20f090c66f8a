/*
 * prunec runtime: every kernel, one declaration each. Names: prunec_<type>_<op>[_<format>]__<isa>.
 * The list of kernels and their source files is runtime_c/kernels.inc (the registry used by codegen and
 * by the tests). ISA variants have the signature of their portable twin and compute the same result
 * (up to fp32 summation order).
 *
 * Fused output clamp: y = min(max(y, out_min), out_max); relu is [0, +inf], relu6 [0, 6], none [-inf, +inf].
 * In-place: elementwise kernels accept y == x (and y == a for add); fc/conv/pool need y disjoint from x.
 */
#ifndef PRUNEC_KERNELS_H
#define PRUNEC_KERNELS_H

#include "prunec_config.h"
#include "prunec_types.h"

/* The fused output clamp of the portable kernels: NaN passes through (both comparisons are false), as in PyTorch. */
static inline float prunec_clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

/* A runtime compiled without the other index widths (PRUNEC_RCSR_ODD_WIDTHS 0 in prunec_config.h, what
 * `prunec build` writes when every layer uses 4, 8 or 16 bits) gives its relative-indexed CSR kernels other link
 * names (suffix _w3: three widths), so that two builds of different configurations linked into one program each
 * call their own kernels instead of the linker taking one build's for both. Sources, generated code and tests
 * use the plain names; this header maps them. Every registered rcsr kernel has its line (tested). */
#if !PRUNEC_RCSR_ODD_WIDTHS
#define prunec_f32_fc_rcsr__portable prunec_f32_fc_rcsr__portable_w3
#define prunec_f32_fc_rcsc__portable prunec_f32_fc_rcsc__portable_w3
#define prunec_f32_conv2d_rcsr__portable prunec_f32_conv2d_rcsr__portable_w3
#define prunec_f32_conv2d_rcsr_maxpool2d__portable prunec_f32_conv2d_rcsr_maxpool2d__portable_w3
#define prunec_f32_fc_rcsr__avx512 prunec_f32_fc_rcsr__avx512_w3
#define prunec_f32_conv2d_rcsr__avx512 prunec_f32_conv2d_rcsr__avx512_w3
#define prunec_f32_fc_rcsr__avx2 prunec_f32_fc_rcsr__avx2_w3
#define prunec_f32_conv2d_rcsr__avx2 prunec_f32_conv2d_rcsr__avx2_w3
#define prunec_f32_fc_rcsr__neon prunec_f32_fc_rcsr__neon_w3
#define prunec_f32_conv2d_rcsr__neon prunec_f32_conv2d_rcsr__neon_w3
#define prunec_f32_fc_rcsr__cortexm prunec_f32_fc_rcsr__cortexm_w3
#define prunec_f32_fc_rcsc__cortexm prunec_f32_fc_rcsc__cortexm_w3
#define prunec_f32_fc_rcsc__avx2 prunec_f32_fc_rcsc__avx2_w3
#define prunec_f32_fc_rcsc__neon prunec_f32_fc_rcsc__neon_w3
#define prunec_f32_fc_rcsc__mve prunec_f32_fc_rcsc__mve_w3
#define prunec_f32_conv2d_rcsr__cortexm prunec_f32_conv2d_rcsr__cortexm_w3
#define prunec_f32_fc_rcsr__mve prunec_f32_fc_rcsr__mve_w3
#define prunec_f32_conv2d_rcsr__mve prunec_f32_conv2d_rcsr__mve_w3
#define prunec_f32_fc_rcsr__avx512x4 prunec_f32_fc_rcsr__avx512x4_w3
#define prunec_f32_conv2d_rcsr__avx512x4 prunec_f32_conv2d_rcsr__avx512x4_w3
#define prunec_f32_conv2d_rcsr_maxpool2d__avx512x4 prunec_f32_conv2d_rcsr_maxpool2d__avx512x4_w3
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PRUNEC_DECLARE_FC_RCSR(isa) \
  void prunec_f32_fc_rcsr__##isa(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, \
                                 float out_min, float out_max);
/* The column-major twin (docs/FORMAT.md "Column-major fc layers"): w is the relative-indexed CSR of W^T (w->rows
 * inputs, w->cols outputs), and inputs equal to zero are skipped. */
#define PRUNEC_DECLARE_FC_RCSC(isa) \
  void prunec_f32_fc_rcsc__##isa(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, \
                                 float out_min, float out_max);
/* The blocked sliced layout (prunec_bsell_f32, docs/FORMAT.md "Blocked fc layers"). */
#define PRUNEC_DECLARE_FC_BSELL(isa) \
  void prunec_f32_fc_bsell__##isa(const prunec_bsell_f32 *w, const float *bias, const float *x, float *y, \
                                  float out_min, float out_max);
/* The windowed sliced layout (prunec_wsell_f32, docs/FORMAT.md "Windowed fc layers"). */
#define PRUNEC_DECLARE_FC_WSELL(isa) \
  void prunec_f32_fc_wsell__##isa(const prunec_wsell_f32 *w, const float *bias, const float *x, float *y, \
                                  float out_min, float out_max);
/* Absolute-indexed CSR (prunec_acsr_f32, docs/FORMAT.md "Absolute-indexed fc layers"). */
#define PRUNEC_DECLARE_FC_ACSR(isa) \
  void prunec_f32_fc_acsr__##isa(const prunec_acsr_f32 *w, const float *bias, const float *x, float *y, \
                                 float out_min, float out_max);
/* The relative-indexed sliced layout (prunec_rsell_f32, docs/FORMAT.md "Sliced fc layers"). */
#define PRUNEC_DECLARE_FC_RSELL(isa) \
  void prunec_f32_fc_rsell__##isa(const prunec_rsell_f32 *w, const float *bias, const float *x, float *y, \
                                  float out_min, float out_max);
#define PRUNEC_DECLARE_FC_DENSE(isa) \
  void prunec_f32_fc_dense__##isa(const prunec_dense_f32 *w, const float *bias, const float *x, float *y, \
                                  float out_min, float out_max);
#define PRUNEC_DECLARE_CONV2D_RCSR(isa) \
  void prunec_f32_conv2d_rcsr__##isa(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias, \
                                     const float *x, float *y, float out_min, float out_max);
/* One input of a concatenation: outer runs of n elements, run o to y + o * y_stride (x and y disjoint). */
void prunec_f32_concat__portable(size_t outer, size_t n, size_t y_stride, const float *x, float *y);
/* y = a * b, b of a's shape (b_inner = inner) or one value per channel (b_inner = 1); y may be a. */
void prunec_f32_mul__portable(size_t channels, size_t inner, size_t b_inner, const float *a, const float *b,
                              float *y);
void prunec_f32_leaky_relu__portable(size_t n, float slope, const float *x, float *y);
/* PyTorch's gelu, exact (erf) or, tanh_approx, approximate='tanh'; y may be x. */
void prunec_f32_gelu__portable(size_t n, uint32_t tanh_approx, const float *x, float *y);
/* y = x > 0 ? x * scale : expm1(x * input_scale) * neg_scale (elu, celu, selu); y may be x. */
void prunec_f32_elu__portable(size_t n, float scale, float input_scale, float neg_scale, const float *x, float *y);
/* y = x * beta > threshold ? x : log1p(exp(x * beta)) / beta; y may be x. */
void prunec_f32_softplus__portable(size_t n, float beta, float threshold, const float *x, float *y);
/* y = x * tanh(softplus(x)); y may be x. */
void prunec_f32_mish__portable(size_t n, const float *x, float *y);
/* Constant padding (negative top / left: cropping) of the last two dims of `planes` planes (x and y disjoint). */
void prunec_f32_pad2d__portable(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w, int32_t top,
                                int32_t left, float value, const float *x, float *y);
/* Nearest upsampling of `planes` planes by integer factors (x and y disjoint). */
void prunec_f32_upsample_nearest2d__portable(size_t planes, size_t in_h, size_t in_w, size_t scale_h, size_t scale_w,
                                             const float *x, float *y);
/* PyTorch's bilinear upsampling with its float scales (x and y disjoint). */
void prunec_f32_upsample_bilinear2d__portable(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w,
                                              float scale_h, float scale_w, uint32_t align_corners, const float *x,
                                              float *y);
/* y = x with its (up to 4) dims permuted: y[i0][i1][i2][i3] = x[sum_k i_k * stride[k]], y contiguous of `shape`. */
void prunec_f32_permute__portable(const uint32_t shape[4], const uint32_t stride[4], const float *x, float *y);
/* A convolution with the max pool after it fused: per output channel, the conv (clamp included) into `plane`
 * (one channel's output), then the max pool of that plane into channel c of y; pp->channels is not read. */
#define PRUNEC_DECLARE_CONV2D_RCSR_MAXPOOL2D(isa) \
  void prunec_f32_conv2d_rcsr_maxpool2d__##isa(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, \
                                               const float *bias, const prunec_pool2d_params *pp, const float *x, \
                                               float *plane, float *y, float out_min, float out_max);
#define PRUNEC_DECLARE_CONV2D_DENSE(isa) \
  void prunec_f32_conv2d_dense__##isa(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias, \
                                      const float *x, float *y, float out_min, float out_max);

/* bias may be NULL (no bias). */
PRUNEC_DECLARE_FC_RCSR(portable)
PRUNEC_DECLARE_FC_RCSC(portable)
PRUNEC_DECLARE_FC_DENSE(portable)
PRUNEC_DECLARE_FC_BSELL(portable)
PRUNEC_DECLARE_FC_RSELL(portable)
PRUNEC_DECLARE_FC_WSELL(portable)
PRUNEC_DECLARE_FC_ACSR(portable)
PRUNEC_DECLARE_CONV2D_RCSR(portable)
PRUNEC_DECLARE_CONV2D_DENSE(portable)
PRUNEC_DECLARE_CONV2D_RCSR_MAXPOOL2D(portable)

void prunec_f32_maxpool2d__portable(const prunec_pool2d_params *p, const float *x, float *y);
void prunec_f32_avgpool2d__portable(const prunec_pool2d_params *p, const float *x, float *y);
/* PyTorch adaptive_avg_pool2d: window i spans [floor(i*in/out), ceil((i+1)*in/out)). */
void prunec_f32_adaptive_avgpool2d__portable(uint32_t channels, uint32_t in_h, uint32_t in_w, uint32_t out_h,
                                             uint32_t out_w, const float *x, float *y);
void prunec_f32_clamp__portable(size_t n, const float *x, float *y, float out_min, float out_max);
void prunec_f32_sigmoid__portable(size_t n, const float *x, float *y);
void prunec_f32_tanh__portable(size_t n, const float *x, float *y);
/* softmax over `n` elements with stride `inner`, for each of `outer` x `inner` slices (dim of size n). */
void prunec_f32_softmax__portable(size_t outer, size_t n, size_t inner, const float *x, float *y);
/* log_softmax, the same layout: x - max - log(sum(exp(x - max))) over each slice. */
void prunec_f32_log_softmax__portable(size_t outer, size_t n, size_t inner, const float *x, float *y);
void prunec_f32_add__portable(size_t n, const float *a, const float *b, float *y, float out_min, float out_max);
/* y = clamp(a - b); y may be a or b. */
void prunec_f32_sub__portable(size_t n, const float *a, const float *b, float *y, float out_min, float out_max);
/* y = clamp(x * scale[c] + shift[c]) for c < channels, over runs of `inner` elements (y may be x). */
void prunec_f32_affine__portable(size_t channels, size_t inner, const float *scale, const float *shift,
                                 const float *x, float *y, float out_min, float out_max);

/* ISA variants (declared for every ISA; only those compiled for the target are linked). */
PRUNEC_DECLARE_FC_RCSR(avx2)
PRUNEC_DECLARE_FC_RCSR(avx512)
PRUNEC_DECLARE_FC_RCSR(neon)
PRUNEC_DECLARE_FC_RCSR(cortexm)
PRUNEC_DECLARE_FC_RCSR(mve)
PRUNEC_DECLARE_FC_RCSC(avx2)
PRUNEC_DECLARE_FC_RCSC(neon)
PRUNEC_DECLARE_FC_RCSC(cortexm)
PRUNEC_DECLARE_FC_RCSC(mve)
PRUNEC_DECLARE_CONV2D_RCSR(avx2)
PRUNEC_DECLARE_CONV2D_DENSE(avx2)
PRUNEC_DECLARE_CONV2D_RCSR(avx512)
PRUNEC_DECLARE_CONV2D_RCSR(neon)
PRUNEC_DECLARE_CONV2D_RCSR(cortexm)
PRUNEC_DECLARE_CONV2D_RCSR(mve)
PRUNEC_DECLARE_FC_DENSE(avx2)
PRUNEC_DECLARE_FC_RSELL(avx2)
PRUNEC_DECLARE_FC_WSELL(neon)
PRUNEC_DECLARE_FC_DENSE(neon)
PRUNEC_DECLARE_FC_DENSE(cortexm)
PRUNEC_DECLARE_FC_ACSR(cortexm)
PRUNEC_DECLARE_FC_ACSR(mve)
PRUNEC_DECLARE_FC_DENSE(mve)
PRUNEC_DECLARE_CONV2D_DENSE(neon)
PRUNEC_DECLARE_CONV2D_DENSE(cortexm)

/* AVX-512 register-tiled variants (fc: 4 rows interleaved; conv: 8 output rows x 16 columns per tile). */
PRUNEC_DECLARE_FC_RCSR(avx512x4)
PRUNEC_DECLARE_FC_BSELL(avx512x4)
PRUNEC_DECLARE_FC_RSELL(avx512x4)
PRUNEC_DECLARE_CONV2D_RCSR(avx512x4)
void prunec_f32_maxpool2d__avx512x4(const prunec_pool2d_params *p, const float *x, float *y);
void prunec_f32_maxpool2d__avx2(const prunec_pool2d_params *p, const float *x, float *y);
PRUNEC_DECLARE_CONV2D_RCSR_MAXPOOL2D(avx512x4)
PRUNEC_DECLARE_CONV2D_DENSE(avx512x4)

#ifdef __cplusplus
}
#endif

#endif /* PRUNEC_KERNELS_H */
