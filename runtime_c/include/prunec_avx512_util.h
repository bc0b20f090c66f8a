/*
 * prunec runtime: helpers shared by the avx512x4 kernels (static inline, AVX-512 F/VL/BW intrinsics). Include it
 * after <immintrin.h>, inside the kernel file's AVX-512 guard (prunec_isa.h).
 */
#ifndef PRUNEC_AVX512_UTIL_H
#define PRUNEC_AVX512_UTIL_H

#include "prunec_rcsr_util.h"

/* Bytes of a layer's index stream, (entries*b + 7)/8: the wide loads below stay inside them. */
static inline size_t prunec_avx512_index_len(const prunec_rcsr_f32 *w) {
  return ((size_t)w->row_ptr[w->rows] * w->index_bits + 7u) / 8u;
}

/* Codes of entries e .. e+n-1 of a b-bit stream, b <= 7 (docs/FORMAT.md: one LSB-first bit stream), widened to
 * bytes for the avx512x4 fc and conv kernels' 8-bit paths: 4-bit ones by nibble unpacking, others 32 per step in
 * 16-bit lanes (codes 0..15 from a 16-byte window at the group's first byte, 16..31 from one 2b bytes on; a byte
 * shuffle puts code j's two bytes in word j, a shift per word and a mask leave the code). No load reaches past the
 * stream's last byte, `len` ((entries*b + 7)/8): the last codes are read one by one. */
static inline void prunec_avx512_widen8(const uint8_t *index, size_t len, uint32_t b, uint32_t e, uint32_t n,
                                        uint8_t *out) {
  uint32_t i = 0;
  if (b == 4u) {
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    const uint8_t *src;
    if (n > 0 && (e & 1u)) {
      out[i++] = (uint8_t)(index[e >> 1] >> 4);
    }
    src = index + ((e + i) >> 1);
    for (; i + 32u <= n; i += 32u, src += 16) {
      const __m128i v = _mm_loadu_si128((const __m128i *)src);
      const __m128i l = _mm_and_si128(v, lo4), h = _mm_and_si128(_mm_srli_epi16(v, 4), lo4);
      _mm_storeu_si128((__m128i *)(out + i), _mm_unpacklo_epi8(l, h));
      _mm_storeu_si128((__m128i *)(out + i + 16u), _mm_unpackhi_epi8(l, h));
    }
  } else {
    const uint64_t bit = (uint64_t)e * b;
    const uint32_t s = (uint32_t)(bit & 7u);
    size_t pos = (size_t)(bit >> 3);
    uint8_t c[64] __attribute__((aligned(64)));
    uint16_t sh[32] __attribute__((aligned(64)));
    uint32_t j;
    __m512i ctrl, shv, mask;
    for (j = 0; j < 32u; j++) {
      const uint32_t rel = s + j * b - (j >= 16u ? 16u * b : 0u);
      c[2u * j] = (uint8_t)(rel >> 3);
      c[2u * j + 1u] = (uint8_t)((rel >> 3) + 1u);
      sh[j] = (uint16_t)(rel & 7u);
    }
    ctrl = _mm512_load_si512((const void *)c);
    shv = _mm512_load_si512((const void *)sh);
    mask = _mm512_set1_epi16((short)((1u << b) - 1u));
    for (; i + 32u <= n && pos + 2u * b + 16u <= len; i += 32u, pos += 4u * b) {
      const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(index + pos)));
      const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(index + pos + 2u * b)));
      __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      v = _mm512_and_si512(_mm512_srlv_epi16(_mm512_shuffle_epi8(v, ctrl), shv), mask);
      _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi16_epi8(v));
    }
  }
  for (; i < n; i++) {
    out[i] = (uint8_t)prunec_rcsr_code(index, e + i, b);
  }
}

/* The end of a sliced fc layout's slice (docs/FORMAT.md "Blocked fc layers", "Sliced fc layers"): lane l of `sum` is
 * row perm[l]'s dot product; the first n lanes get bias[perm[l]] added (bias may be NULL), are clamped to [lo, hi]
 * (max(lo, s) keeps s where s is NaN, as prunec_clampf does) and go to y[perm[l]]. Unoptimised, GCC's gather and
 * scatter intrinsics are macros that pass the mask and scale through builtins taking signed types
 * (-Wsign-conversion under -Wconversion -Werror at -O0); no code changes with the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
static inline void prunec_avx512_slice_store(const uint16_t *perm, uint32_t n, __m512 sum, const float *bias,
                                             __m512 lo, __m512 hi, float *y) {
  const __mmask16 m = (__mmask16)(n >= 16u ? 0xFFFFu : (1u << n) - 1u);
  const __m512i rows = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)perm));
  if (bias != NULL) {
    sum = _mm512_add_ps(sum, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, rows, bias, 4));
  }
  sum = _mm512_min_ps(hi, _mm512_max_ps(lo, sum));
  _mm512_mask_i32scatter_ps(y, m, rows, sum, 4); /* lane l to y[perm[l]] */
}
#pragma GCC diagnostic pop

#endif /* PRUNEC_AVX512_UTIL_H */
