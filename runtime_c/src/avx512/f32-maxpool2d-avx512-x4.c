/*
 * 2-D max pooling, x86-64 AVX-512 (F), NCHW, batch 1. Twin of prunec_f32_maxpool2d__portable (exact: max is
 * exact, and NaN propagates as in PyTorch).
 *
 * Fast path, the 2x2 window with stride 2 and no padding whose windows all lie inside the input (LeNet-5,
 * VGG-16): the input is a run of row pairs (one run for all channels when the planes use all their rows),
 * each giving one output row: per 16 outputs, the two rows' 32 cells are maxed elementwise, then even and
 * odd lanes are paired by two permutes and maxed again (masked loads and stores for the last block, masks
 * computed once per call). Rows 8 wide (LeNet-5 pool2) take four row pairs per vector of 16 outputs.
 * Each max keeps NaN in 2 instructions (a NaN-test mask, a masked MAXPS).
 * Every other geometry is handed to prunec_f32_maxpool2d__portable (registered in kernels.inc with
 * PRUNEC_KERNEL_USES, so a build that selects this kernel ships the portable pool source too).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512
#include <immintrin.h>

#include "prunec_kernels.h"

/* max(a, b) with NaN propagation in 2 instructions: lanes where a is NaN keep a; elsewhere MAXPS, which
 * returns its second operand b when b is NaN. */
static inline __m512 nmax(__m512 a, __m512 b) {
  return _mm512_mask_max_ps(a, _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a, b);
}

/* n row pairs starting at x (pair k: rows x + 2k*in_w and the next), outputs y + k*out_w: blocks of 16
 * outputs, the last block's masks computed once. */
static void pool_pairs(const float *x, float *y, uint32_t n, uint32_t in_w, uint32_t out_w) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const uint32_t full = out_w / 16u, t = out_w % 16u; /* full blocks, outputs in the last partial block */
  const __mmask16 mlo = (__mmask16)(t >= 8 ? 0xFFFFu : (1u << (2u * t)) - 1u);
  const __mmask16 mhi = (__mmask16)(t <= 8 ? 0u : (1u << (2u * (t - 8))) - 1u);
  const __mmask16 mout = (__mmask16)((1u << t) - 1u);
  uint32_t k, b;
  for (k = 0; k < n; k++, x += 2u * in_w, y += out_w) {
    const float *r0 = x, *r1 = x + in_w;
    for (b = 0; b < full; b++) {
      const __m512 v0 = nmax(_mm512_loadu_ps(r0 + 32u * b), _mm512_loadu_ps(r1 + 32u * b));
      const __m512 v1 = nmax(_mm512_loadu_ps(r0 + 32u * b + 16u), _mm512_loadu_ps(r1 + 32u * b + 16u));
      _mm512_storeu_ps(y + 16u * b,
                       nmax(_mm512_permutex2var_ps(v0, even, v1), _mm512_permutex2var_ps(v0, odd, v1)));
    }
    if (t != 0) {
      const size_t o = 32u * full;
      const __m512 v0 = nmax(_mm512_maskz_loadu_ps(mlo, r0 + o), _mm512_maskz_loadu_ps(mlo, r1 + o));
      const __m512 v1 = nmax(_mm512_maskz_loadu_ps(mhi, r0 + o + 16u), _mm512_maskz_loadu_ps(mhi, r1 + o + 16u));
      const __m512 m = nmax(_mm512_permutex2var_ps(v0, even, v1), _mm512_permutex2var_ps(v0, odd, v1));
      if ((size_t)(n - k) * out_w >= 16u * full + 16u) { /* lanes past the row: rewritten by later rows */
        _mm512_storeu_ps(y + 16u * full, m);
      } else {
        _mm512_mask_storeu_ps(y + 16u * full, mout, m);
      }
    }
  }
}

/* Rows 8 wide (LeNet-5 pool2: 8x8 -> 4x4): a row pair is one vector; four pairs give one vector of 16
 * outputs: 128-bit-lane shuffles pair up the upper and lower rows, one max, then even/odd permutes and a
 * max. n pairs, contiguous from x. */
static void pool_pairs8(const float *x, float *y, uint32_t n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  uint32_t k = 0;
  for (; k + 4u <= n; k += 4u, x += 64, y += 16) {
    const __m512 p0 = _mm512_loadu_ps(x), p1 = _mm512_loadu_ps(x + 16), p2 = _mm512_loadu_ps(x + 32);
    const __m512 p3 = _mm512_loadu_ps(x + 48);
    /* [upper row of pair 0 | of pair 1] vs [lower rows]: 0x44 takes 128-bit lanes 0,1 of each, 0xEE 2,3 */
    const __m512 v01 = nmax(_mm512_shuffle_f32x4(p0, p1, 0x44), _mm512_shuffle_f32x4(p0, p1, 0xEE));
    const __m512 v23 = nmax(_mm512_shuffle_f32x4(p2, p3, 0x44), _mm512_shuffle_f32x4(p2, p3, 0xEE));
    _mm512_storeu_ps(y, nmax(_mm512_permutex2var_ps(v01, even, v23), _mm512_permutex2var_ps(v01, odd, v23)));
  }
  if (k < n) {
    pool_pairs(x, y, n - k, 8, 4);
  }
}

void prunec_f32_maxpool2d__avx512x4(const prunec_pool2d_params *p, const float *x, float *y) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  uint32_t c, nseg, npairs;
  size_t xs, ys;
  if (p->kh != 2 || p->kw != 2 || p->stride_h != 2 || p->stride_w != 2 || p->pad_h != 0 || p->pad_w != 0 ||
      2u * p->out_h > p->in_h || 2u * p->out_w > p->in_w) {
    prunec_f32_maxpool2d__portable(p, x, y);
    return;
  }
  if (2u * p->out_h == p->in_h) { /* planes use all their rows: one run of channels * out_h row pairs */
    nseg = 1, npairs = p->channels * p->out_h, xs = 0, ys = 0;
  } else {
    nseg = p->channels, npairs = p->out_h, xs = in_plane, ys = out_plane;
  }
  for (c = 0; c < nseg; c++) {
    if (p->in_w == 8 && p->out_w == 4) {
      pool_pairs8(x + c * xs, y + c * ys, npairs);
    } else {
      pool_pairs(x + c * xs, y + c * ys, npairs, p->in_w, p->out_w);
    }
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_maxpool2d_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 */
