/*
 * 2-D max pooling, x86-64 AVX2, NCHW, batch 1. Twin of prunec_f32_maxpool2d__portable (exact: max is exact, and
 * NaN propagates as in PyTorch), and of the AVX-512 kernel for x86 machines without AVX-512.
 *
 * Fast path, the 2x2 window with stride 2 and no padding whose windows all lie inside the input (LeNet-5, VGG-16):
 * per output row, its two input rows; per 8 outputs the rows' 16 cells maxed elementwise, then even and odd cells
 * paired by two in-lane shuffles, maxed, and put in order by one cross-lane permute; then 4 outputs the same way
 * from 8 cells per row where out_w mod 8 >= 4, and the last ones one at a time. Every max keeps NaN (MAXPS returns its second operand when either is NaN, so lanes where
 * the first is NaN are blended back). Every other geometry is handed to prunec_f32_maxpool2d__portable (registered
 * in kernels.inc with PRUNEC_KERNEL_USES). Without it, an x86 build on a machine without AVX-512 ran LeNet-5's pools
 * in the portable kernel: pool1 (20 x 24 x 24) 47 us of the network's 128 us (docs/BENCHMARKS.md, "Thirteenth
 * session").
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX2
#include <immintrin.h>

#include "prunec_kernels.h"

/* max(a, b), NaN in either giving NaN */
static inline __m256 nmax8(__m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

static inline float nmax1(float a, float b) {
  return (a > b || a != a) ? a : b; /* b where b is NaN (a > NaN is false) */
}

void prunec_f32_maxpool2d__avx2(const prunec_pool2d_params *p, const float *x, float *y) {
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  const uint32_t full = p->out_w / 8u;
  uint32_t c, oy, b, ox;
  if (p->kh != 2 || p->kw != 2 || p->stride_h != 2 || p->stride_w != 2 || p->pad_h != 0 || p->pad_w != 0 ||
      2u * p->out_h > p->in_h || 2u * p->out_w > p->in_w) {
    prunec_f32_maxpool2d__portable(p, x, y);
    return;
  }
  for (c = 0; c < p->channels; c++) {
    for (oy = 0; oy < p->out_h; oy++, y += p->out_w) {
      const float *r0 = x + (size_t)c * in_plane + (size_t)(2u * oy) * p->in_w, *r1 = r0 + p->in_w;
      for (b = 0; b < full; b++) {
        const __m256 v0 = nmax8(_mm256_loadu_ps(r0 + 16u * b), _mm256_loadu_ps(r1 + 16u * b));
        const __m256 v1 = nmax8(_mm256_loadu_ps(r0 + 16u * b + 8u), _mm256_loadu_ps(r1 + 16u * b + 8u));
        /* cells 0,2,4,6 | 8,10,12,14 per 128-bit lane as [v0 0,2 v1 0,2 | v0 4,6 v1 4,6]; then lanes in order */
        const __m256 m = nmax8(_mm256_shuffle_ps(v0, v1, 0x88), _mm256_shuffle_ps(v0, v1, 0xDD));
        _mm256_storeu_ps(y + 8u * b, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8)));
      }
      ox = 8u * full;
      if (ox + 4u <= p->out_w) { /* 4 more outputs from 8 cells of each row (LeNet-5 pool2: 8 -> 4 wide) */
        const __m256 v = nmax8(_mm256_loadu_ps(r0 + 2u * ox), _mm256_loadu_ps(r1 + 2u * ox));
        const __m256 m = nmax8(_mm256_shuffle_ps(v, v, 0x88), _mm256_shuffle_ps(v, v, 0xDD)); /* o0 o1 . . | o2 o3 . . */
        _mm_storeu_ps(y + ox, _mm256_castps256_ps128(_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0x08))));
        ox += 4u;
      }
      for (; ox < p->out_w; ox++) {
        y[ox] = nmax1(nmax1(r0[2u * ox], r0[2u * ox + 1u]), nmax1(r1[2u * ox], r1[2u * ox + 1u]));
      }
    }
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_maxpool2d_avx2_unavailable;
#endif /* PRUNEC_HAVE_AVX2 */
