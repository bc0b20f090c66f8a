/*
 * Sparse fully connected layer over relative-indexed CSR, x86-64 AVX-512 (F, VL, BW), no gathers.
 * Twin of prunec_f32_fc_rcsr__portable (same signature, same result up to fp32 summation order).
 *
 * 8-bit codes (fc_rcsr_b8, what prunec chooses at 4-25% density): no decode pass. Two rows at once; per
 * group of 8 entries of a row, one 64-bit load of the codes and one 256-bit load of the values; per entry,
 * in inline assembly (the compiler turns the C form into 5 integer instructions per entry, this is 2.5):
 * the code's byte is taken from the code register (movzbl of the low or high byte, a 16-bit shift every
 * two entries), added to the row's running code sum s, and acc_j += v * broadcast(x[base + j + s]) with
 * base + j folded into the FMA's displacement (column of entry k = k + sum of codes 0..k, after the
 * row's first column - 1), one asm block per row and group (8 accumulators, its code word and code sum:
 * few enough operands for the compiler to keep everything in registers). 2 rows x 8 accumulators; lane j of
 * acc_j, summed, is the row's result. The part
 * of the longer row beyond the common length runs alone (also in assembly; there the code sums are
 * partial sums per 4 entries so that the loop-carried chain is one lea per 4 entries); the last < 8
 * entries of a row are a masked load and one FMA each (never met when the build pads rows to a multiple of
 * 8 entries, `[row_align_by_op] fc = 8` of x86_64-avx2: LeNet fc1 shapes -6 %, 4096x4096 -3 to -7 %). Layers
 * whose rows hold YLONG_ROW entries or more on average take 16 entries of each row per pass (a second
 * instance of the same code, fc_rcsr_b8_long): half the loop's own instructions per entry, 4096x4096 at 10 %
 * -5 %; on short rows (LeNet fc1) that pass was 10 % slower, so they keep the 8-entry one. Short rows of layers
 * that are not prefetched (fc_rows_t, below y_pair) leave each row as one vector and reduce, bias, clamp and store
 * eight rows at once (LeNet-5 fc1 6.65 -> 5.99 us, ~1.4 ns less per row; results bit-identical).
 * Shape tests at the top: x wider than 48 KB (an L1 here; VGG-16 fc6): four rows at once with 4
 * accumulators of 128 bits each, so that each line of x brought to L1 serves four rows. Layers of more
 * than 256 K entries (beyond L2): software prefetch of the value and code streams 32 KB / 8 KB ahead.
 * On this Zen 5 (docs/BENCHMARKS.md): 4096x4096 at 10% ~0.20 ns per entry against ~0.33 for the
 * decode-pass design below; a broadcast-from-memory FMA is limited to 2 per cycle here (0.12 ns), and
 * the kernel is bound by its ~4 instructions per entry. Column blocking of x (a per-slice SIMD count of
 * each row's entries) was tried and was slower than the four-row pass on VGG-16 fc6, so there is none.
 *
 * Codes of b <= 7 bits (docs/FORMAT.md: any width 1..16; 4 included, any layer size): widened to bytes on the
 * stack, a block of rows of at most WIDEN_MAX entries at a time (4-bit: nibble unpacking; others 32 codes per
 * step in 16-bit lanes), and the 8-bit path runs on each block (fc_rcsr_widened). LeNet-5 fc1 at b = 6 8.9 us
 * against 7.2 at b = 8 (the portable kernel: 31 us); b = 4 16.0 -> 10.2 us against the decode pass below.
 *
 * 9..16-bit codes (and rows longer than a block):
 * Algorithm (benchmarks: one x load and one FMA per nonzero, ~0.5 cycle per nonzero here):
 *  1. Pre-pass per row (per chunk of up to CHUNK entries): the b-bit codes are decoded into absolute
 *     columns, cols[i] = cols[i-1] + code_i + 1, with a 16-lane SIMD prefix sum (8/16-bit codes loaded and
 *     widened, 4-bit ones unpacked, others read 16 at a time by a byte shuffle and per-lane shifts). Lanes are padded to a multiple of 4 with column 0 and value 0.
 *  2. Main loop, four rows at once (rows r..r+3 advance through their entries in step, so with uniformly
 *     spread nonzeros they touch the same region of x: shared cache lines when x outgrows L1).
 *     For a group of 4 entries of one row with values v (one 128-bit load), accumulator j of that row
 *     does acc_j += v * broadcast(x[col_j]), the broadcast folded into the FMA's memory operand. Lane j
 *     of acc_j holds the row's j-th product; the other lanes are never used. The row's sum is the sum
 *     of lane j of acc_j (blends, then a horizontal add). 4 rows x 4 accumulators = 16 independent FMA
 *     chains, enough to hide the FMA latency.
 *  3. Rows of unequal length: the common prefix runs interleaved; each row's remainder runs alone.
 * Fillers are ordinary entries of value 0 (their product with a finite x is 0, as in the portable twin).
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512 && defined(__AVX512VL__) && defined(__AVX512BW__)
#include <cpuid.h>
#include <immintrin.h>

#include "prunec_kernels.h"
#include "prunec_avx512_util.h"
#include "prunec_rcsr_util.h"

#define CHUNK 1024u /* entries decoded per row and pass: 4 rows x 4 KB of columns stay in L1 */
#define YPF_HINT _MM_HINT_T0
#define YPF_V 32768 /* software prefetch distance (bytes) of the value stream of the 8-bit path */
#define YPF_C 8192 /* and of its code stream */
#define YPF_MIN_ENTRIES 262144u /* prefetch layers of more entries (1.3 MB: beyond L2; L3 is shared and contested) */
#define YQUAD_COLS 12288u /* x wider than this (48 KB, an L1 here): rows in fours, sharing the lines of x */
#define WIDEN_MAX 16384u /* entries widened to bytes per block (b <= 7 bits) */
#define YLONG_ROW 192u /* mean entries per row from which the pair loop takes 16 entries per pass */


/* ---- Codes of any width b in 1..16 (docs/FORMAT.md: one LSB-first bit stream), 16 at a time ----
 * 16 codes take 2b bytes, so from a group's first code on, every group of 16 starts at the same bit s (0..7)
 * of its first byte: one plan per run of groups (per block or chunk) holds, for lane j (code j of the group),
 * a byte shuffle that puts the 2 or 3 bytes holding bits s + j*b .. s + j*b + b - 1 into the lane, and the
 * shift s + j*b mod 8. b <= 7: the group's 2b + 1 bytes lie in one 16-byte load, broadcast to the four 128-bit
 * lanes; wider codes load each 128-bit lane (codes 4L .. 4L+3) from its own byte offset. A load never reaches
 * past the stream's last byte ((entries*b + 7)/8 bytes): the groups that would are read code by code. */
typedef struct x4_wplan {
  __m512i ctrl, shift, mask;
  uint32_t lane[4]; /* byte offsets of the 128-bit lanes' loads (b >= 8) */
  uint32_t need;    /* bytes a group reads from its first byte */
  uint32_t step;    /* bytes per group: 2b */
} x4_wplan;

static void x4_wplan_init(x4_wplan *pl, uint32_t s, uint32_t b) {
  uint8_t c[64] __attribute__((aligned(64)));
  uint32_t sh[16] __attribute__((aligned(64)));
  uint32_t l, k;
  for (l = 0; l < 4u; l++) {
    const uint32_t o = b <= 7u ? 0u : (s + 4u * l * b) >> 3;
    pl->lane[l] = o;
    for (k = 0; k < 4u; k++) {
      const uint32_t j = 4u * l + k, bit = s + j * b, q = (bit >> 3) - o;
      c[4u * j] = (uint8_t)q;
      c[4u * j + 1u] = (uint8_t)(q + 1u);
      c[4u * j + 2u] = (uint8_t)(b <= 7u ? 0x80u : q + 2u);
      c[4u * j + 3u] = 0x80u;
      sh[j] = bit & 7u;
    }
  }
  pl->ctrl = _mm512_load_si512((const void *)c);
  pl->shift = _mm512_load_si512((const void *)sh);
  pl->mask = _mm512_set1_epi32((int)((1u << b) - 1u));
  pl->need = b <= 7u ? 16u : pl->lane[3] + 16u;
  pl->step = 2u * b;
}

/* The 16 codes of the group at p (its first byte), as 32-bit lanes. */
static inline __attribute__((always_inline)) __m512i x4_codes16(const uint8_t *p, const x4_wplan *pl, const int bcast) {
  __m512i v;
  if (bcast) {
    v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
  } else {
    v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + pl->lane[0])));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + pl->lane[1])), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + pl->lane[2])), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + pl->lane[3])), 3);
  }
  v = _mm512_shuffle_epi8(v, pl->ctrl);
  return _mm512_and_si512(_mm512_srlv_epi32(v, pl->shift), pl->mask);
}


/* Inclusive prefix sum of the 16 lanes of v. */
static inline __m512i x4_prefix_sum(__m512i v) {
  const __m512i z = _mm512_setzero_si512();
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 15));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 14));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 12));
  return _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 8));
}

/* Columns of entries e .. e+n-1 of one row, continuing from column `last`; returns the last column. */
static int32_t decode_cols(const prunec_rcsr_f32 *w, uint32_t e, uint32_t n, int32_t last, int32_t *cols) {
  const uint8_t *index = w->index;
  uint32_t i = 0;
  if (w->index_bits == 8 || w->index_bits == 16) {
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i l15 = _mm512_set1_epi32(15);
    __m512i base = _mm512_set1_epi32(last);
    for (; i + 16 <= n; i += 16) {
      __m512i g = w->index_bits == 8
                      ? _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(index + e + i)))
                      : _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(index + 2u * (e + i))));
      g = _mm512_add_epi32(g, one);
      g = _mm512_add_epi32(x4_prefix_sum(g), base);
      _mm512_storeu_si512((void *)(cols + i), g);
      base = _mm512_permutexvar_epi32(l15, g);
    }
    if (i > 0) {
      last = cols[i - 1];
    }
    if (w->index_bits == 8) {
      for (; i < n; i++) {
        last += (int32_t)index[e + i] + 1;
        cols[i] = last;
      }
    } else {
      for (; i < n; i++) {
        const uint32_t k = 2u * (e + i);
        last += (int32_t)((uint32_t)index[k] | ((uint32_t)index[k + 1] << 8)) + 1;
        cols[i] = last;
      }
    }
  } else if (w->index_bits != 4) {
    /* any other width: 16 codes per step through a plan (above), the same prefix sum */
    const uint32_t b = w->index_bits;
    const size_t len = prunec_avx512_index_len(w);
    const uint64_t bit = (uint64_t)e * b;
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i l15 = _mm512_set1_epi32(15);
    __m512i base = _mm512_set1_epi32(last);
    size_t pos = (size_t)(bit >> 3);
    x4_wplan pl;
    x4_wplan_init(&pl, (uint32_t)(bit & 7u), b);
    for (; i + 16 <= n && pos + pl.need <= len; i += 16, pos += pl.step) {
      __m512i g = _mm512_add_epi32(x4_codes16(index + pos, &pl, b <= 7u), one);
      g = _mm512_add_epi32(x4_prefix_sum(g), base);
      _mm512_storeu_si512((void *)(cols + i), g);
      base = _mm512_permutexvar_epi32(l15, g);
    }
    if (i > 0) {
      last = cols[i - 1];
    }
    for (; i < n; i++) {
      last += (int32_t)prunec_rcsr_code_any(index, e + i, b) + 1;
      cols[i] = last;
    }
  } else {
    /* 4-bit codes: an odd first entry alone, then 16 codes (8 bytes) at a time: low and high nibbles
     * interleaved back into entry order, widened, prefix-summed. */
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i l15 = _mm512_set1_epi32(15);
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    __m512i base;
    if (n > 0 && ((e + i) & 1u)) {
      const uint32_t k = e + i;
      last += (int32_t)(index[k >> 1] >> 4) + 1;
      cols[i++] = last;
    }
    base = _mm512_set1_epi32(last);
    for (; i + 16 <= n; i += 16) {
      const __m128i b = _mm_loadl_epi64((const __m128i *)(index + ((e + i) >> 1)));
      const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(b, lo4), _mm_and_si128(_mm_srli_epi16(b, 4), lo4));
      __m512i g = _mm512_add_epi32(_mm512_cvtepu8_epi32(codes), one);
      g = _mm512_add_epi32(x4_prefix_sum(g), base);
      _mm512_storeu_si512((void *)(cols + i), g);
      base = _mm512_permutexvar_epi32(l15, g);
    }
    if (i > 0) {
      last = cols[i - 1];
    }
    for (; i < n; i++) {
      const uint32_t k = e + i;
      last += (int32_t)((index[k >> 1] >> ((k & 1u) << 2)) & 0x0Fu) + 1;
      cols[i] = last;
    }
  }
  return last;
}

/* Lane j of a_j, summed. */
static inline float diag_sum(__m128 a0, __m128 a1, __m128 a2, __m128 a3) {
  __m128 t = _mm_blend_ps(_mm_blend_ps(a0, a1, 0x2), _mm_blend_ps(a2, a3, 0x8), 0xC);
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

#define FMA4(a0, a1, a2, a3, v, c)                                  \
  do {                                                              \
    a0 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + (c)[0]), a0);         \
    a1 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + (c)[1]), a1);         \
    a2 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + (c)[2]), a2);         \
    a3 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + (c)[3]), a3);         \
  } while (0)

/* One row's entries [i, n) of the current chunk into its four accumulators. */
static inline void row_rest(const float *vals, const int32_t *cols, uint32_t i, uint32_t n, const float *x,
                            __m128 *acc) {
  __m128 a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(vals + i);
    FMA4(a0, a1, a2, a3, v, cols + i);
  }
  if (i < n) {
    const __mmask8 m = (__mmask8)((1u << (n - i)) - 1u);
    const __m128 v = _mm_maskz_loadu_ps(m, vals + i);
    a0 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + cols[i]), a0);
    if (i + 1 < n) a1 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + cols[i + 1]), a1);
    if (i + 2 < n) a2 = _mm_fmadd_ps(v, _mm_broadcast_ss(x + cols[i + 2]), a2);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* entry j of the current group of 8 of row R: s += code; acc_j += v * x[col] (col = base + j + s) */
#define YF(R, j)                                                                        \
  do {                                                                                  \
    s##R += q##R & 0xFFu;                                                               \
    q##R >>= 8;                                                                         \
    a##R##j = _mm256_fmadd_ps(v##R, _mm256_broadcast_ss(xp##R + (j) + s##R), a##R##j); \
  } while (0)


/* entry j of row R in assembly: t = byte of q (low or high), s += t, acc_j += v * x[xp + j + s] */
#define YA(R, j, OFF, HL)                                                              \
  "movzbl %" HL "[q" #R "], %k[t]\n\t"                                                 \
  "add %q[t], %q[s" #R "]\n\t"                                                         \
  "vfmadd231ps " OFF "(%q[xp],%q[s" #R "],4)%{1to8%}, %[v" #R "], %[a" #R #j "]\n\t"
#define YSHR(R) "shr $16, %q[q" #R "]\n\t"
/* All 8 entries of one row of a pair in one asm block (its own 8 accumulators, code sum and code word):
 * 13 operands, so the compiler keeps the values and codes in registers between the halves (two rows in one
 * block would need more than GCC's 30 operands; split by entries, the halves made it reload them). */
#define Y8(R)                                                                                   \
  YA(R, 0, "0", "b") YA(R, 1, "4", "h") YSHR(R) YA(R, 2, "8", "b") YA(R, 3, "12", "h") YSHR(R) \
  YA(R, 4, "16", "b") YA(R, 5, "20", "h") YSHR(R) YA(R, 6, "24", "b") YA(R, 7, "28", "h")
/* The same for entries 8..15 of a 16-entry pass (x displacements 32..60: column = base + 8 + j + code sum). */
#define Y8H(R)                                                                                   \
  YA(R, 0, "32", "b") YA(R, 1, "36", "h") YSHR(R) YA(R, 2, "40", "b") YA(R, 3, "44", "h") YSHR(R) \
  YA(R, 4, "48", "b") YA(R, 5, "52", "h") YSHR(R) YA(R, 6, "56", "b") YA(R, 7, "60", "h")
#define Y8_OPERANDS(R)                                                                            \
  [a00] "+v"(a##R##0), [a01] "+v"(a##R##1), [a02] "+v"(a##R##2), [a03] "+v"(a##R##3),              \
  [a04] "+v"(a##R##4), [a05] "+v"(a##R##5), [a06] "+v"(a##R##6), [a07] "+v"(a##R##7),              \
  [s0] "+r"(s##R), [q0] "+Q"(q##R), [t] "=&Q"(t)

#define YZERO(R)                                                          \
  __m256 a##R##0 = _mm256_setzero_ps(), a##R##1 = a##R##0, a##R##2 = a##R##0, a##R##3 = a##R##0, \
         a##R##4 = a##R##0, a##R##5 = a##R##0, a##R##6 = a##R##0, a##R##7 = a##R##0

static inline uint64_t y_load8(const uint8_t *p) {
  uint64_t q;
  __builtin_memcpy(&q, p, 8);
  return q;
}

static inline float y_diag(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6, __m256 a7) {
  __m256 t = _mm256_blend_ps(_mm256_blend_ps(_mm256_blend_ps(a0, a1, 0x02), _mm256_blend_ps(a2, a3, 0x08), 0x0C),
                             _mm256_blend_ps(_mm256_blend_ps(a4, a5, 0x20), _mm256_blend_ps(a6, a7, 0x80), 0xC0), 0xF0);
  __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  u = _mm_add_ps(u, _mm_movehl_ps(u, u));
  u = _mm_add_ss(u, _mm_movehdup_ps(u));
  return _mm_cvtss_f32(u);
}

/* Single row, four entries (codes in the low 4 bytes of q): running partial sums of the codes in ta/tb, so
 * that the loop-carried chain is one lea per four entries: entry k reads x at p + 4*(c0 + .. + ck) + D_k,
 * then p += 4*(c0 + .. + c3). */
#define Y1FMA(D, T, J) "vfmadd231ps " D "(%q[p],%q[" T "],4)%{1to8%}, %[v], %[a" J "]\n\t"
#define Y1G(D0, D1, D2, D3)                                                  \
  "movzbl %b[q], %k[ta]\n\t"                                                 \
  "movzbl %h[q], %k[tb]\n\t"                                                 \
  "shr $16, %q[q]\n\t" Y1FMA(D0, "ta", "0")                                  \
  "add %q[ta], %q[tb]\n\t" Y1FMA(D1, "tb", "1")                              \
  "movzbl %b[q], %k[ta]\n\t"                                                 \
  "add %q[tb], %q[ta]\n\t" Y1FMA(D2, "ta", "2")                              \
  "movzbl %h[q], %k[tb]\n\t"                                                 \
  "shr $16, %q[q]\n\t"                                                       \
  "add %q[ta], %q[tb]\n\t" Y1FMA(D3, "tb", "3")                              \
  "lea (%q[p],%q[tb],4), %q[p]\n\t"

/* One row, entries [0, n) from vals/codes (8-bit codes), xp0 at x[column before the first entry + 1], into
 * the row's 8 accumulators acc (lane j of acc[j] is the row's partial sum), so that a pair's rows are reduced
 * once, after their remainders (short rows: LeNet-5 fc1 has ~64 entries per row). The last 1-7 entries
 * branch on their count: a branch-free form (all 7 steps, masked x loads) was slower on LeNet-5 fc1. */
static inline __attribute__((always_inline)) void y_row1_acc(const float *vals, const uint8_t *codes, uint32_t n,
                                                            const float *xp0, __m256 *acc) {
  __m256 a00 = acc[0], a01 = acc[1], a02 = acc[2], a03 = acc[3], a04 = acc[4], a05 = acc[5], a06 = acc[6],
         a07 = acc[7];
  uint64_t s0 = 0;
  uint32_t i = 0;
  for (; i + 8u <= n; i += 8u, xp0 += 8) {
    const __m256 v0 = _mm256_loadu_ps(vals + i);
    uint64_t q0 = y_load8(codes + i), ta, tb;
    __asm__(Y1G("0", "4", "8", "12")
            : [a0] "+v"(a00), [a1] "+v"(a01), [a2] "+v"(a02), [a3] "+v"(a03), [p] "+r"(xp0), [q] "+Q"(q0),
              [ta] "=&r"(ta), [tb] "=&R"(tb)
            : [v] "v"(v0));
    __asm__(Y1G("16", "20", "24", "28")
            : [a0] "+v"(a04), [a1] "+v"(a05), [a2] "+v"(a06), [a3] "+v"(a07), [p] "+r"(xp0), [q] "+Q"(q0),
              [ta] "=&r"(ta), [tb] "=&R"(tb)
            : [v] "v"(v0));
  }
  if (i < n) {
    const uint32_t k = (1u << (n - i)) - 1u;
    const __m256 v0 = _mm256_maskz_loadu_ps((__mmask8)k, vals + i);
    uint64_t q0 = (uint64_t)_mm_cvtsi128_si64(_mm_maskz_loadu_epi8((__mmask16)k, codes + i));
YF(0, 0);
    if (n - i > 1) YF(0, 1);
    if (n - i > 2) YF(0, 2);
    if (n - i > 3) YF(0, 3);
    if (n - i > 4) YF(0, 4);
    if (n - i > 5) YF(0, 5);
    if (n - i > 6) YF(0, 6);
  }
  acc[0] = a00, acc[1] = a01, acc[2] = a02, acc[3] = a03, acc[4] = a04, acc[5] = a05, acc[6] = a06, acc[7] = a07;
}

/* One row from zero, plus init. */
static inline float y_row1(const float *vals, const uint8_t *codes, uint32_t n, const float *xp0, float init) {
  __m256 acc[8];
  int j;
  for (j = 0; j < 8; j++) {
    acc[j] = _mm256_setzero_ps();
  }
  y_row1_acc(vals, codes, n, xp0, acc);
  return y_diag(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + init;
}

/* Two rows at once (rows of 8-bit codes): entries [0, n0) of row 0 and [0, n1) of row 1; xp0/xp1 point at
 * x[column before the first entry + 1]. Adds the two dot products to out[0], out[1]. */
static inline __attribute__((always_inline)) void y_pair(const float *vl0, const uint8_t *cd0, uint32_t n0,
                                                        const float *vl1, const uint8_t *cd1, uint32_t n1,
                                                        const float *x, int prefetch, int unroll, float *out) {
  const uint32_t common = (n0 < n1 ? n0 : n1) & ~7u;
  const float *const end0 = vl0 + common;
  const float *xp = x;
  uint64_t s0 = 0, s1 = 0;
  YZERO(0);
  YZERO(1);
  if (unroll) { /* long rows: 16 entries of each row per pass, half the loop's own instructions per entry */
    const float *const end16 = vl0 + (common & ~15u);
    for (; vl0 != end16; vl0 += 16, vl1 += 16, cd0 += 16, cd1 += 16, xp += 16) {
      const __m256 v0 = _mm256_loadu_ps(vl0), w0 = _mm256_loadu_ps(vl0 + 8);
      const __m256 v1 = _mm256_loadu_ps(vl1), w1 = _mm256_loadu_ps(vl1 + 8);
      uint64_t q0 = y_load8(cd0), q1 = y_load8(cd1), t;
      if (prefetch) {
        _mm_prefetch((const char *)vl1 + YPF_V, YPF_HINT);
        _mm_prefetch((const char *)vl1 + YPF_V + 32, YPF_HINT);
        _mm_prefetch((const char *)cd1 + YPF_C, YPF_HINT);
      }
      __asm__(Y8(0) : Y8_OPERANDS(0) : [v0] "v"(v0), [xp] "r"(xp));
      __asm__(Y8(0) : Y8_OPERANDS(1) : [v0] "v"(v1), [xp] "r"(xp));
      q0 = y_load8(cd0 + 8);
      q1 = y_load8(cd1 + 8);
      __asm__(Y8H(0) : Y8_OPERANDS(0) : [v0] "v"(w0), [xp] "r"(xp));
      __asm__(Y8H(0) : Y8_OPERANDS(1) : [v0] "v"(w1), [xp] "r"(xp));
    }
  }
  for (; vl0 != end0; vl0 += 8, vl1 += 8, cd0 += 8, cd1 += 8, xp += 8) {
    const __m256 v0 = _mm256_loadu_ps(vl0);
    const __m256 v1 = _mm256_loadu_ps(vl1);
    uint64_t q0 = y_load8(cd0);
    uint64_t q1 = y_load8(cd1);
    uint64_t t;
    if (prefetch) {
      _mm_prefetch((const char *)vl1 + YPF_V, YPF_HINT);
      _mm_prefetch((const char *)cd1 + YPF_C, YPF_HINT);
    }
    __asm__(Y8(0) : Y8_OPERANDS(0) : [v0] "v"(v0), [xp] "r"(xp));
    __asm__(Y8(0) : Y8_OPERANDS(1) : [v0] "v"(v1), [xp] "r"(xp));
  }
  {
    __m256 r0[8] = {a00, a01, a02, a03, a04, a05, a06, a07}, r1[8] = {a10, a11, a12, a13, a14, a15, a16, a17};
    y_row1_acc(vl0, cd0, n0 - common, xp + s0, r0);
    y_row1_acc(vl1, cd1, n1 - common, xp + s1, r1);
    out[0] += y_diag(r0[0], r0[1], r0[2], r0[3], r0[4], r0[5], r0[6], r0[7]);
    out[1] += y_diag(r1[0], r1[1], r1[2], r1[3], r1[4], r1[5], r1[6], r1[7]);
  }
}


/* Entry j of row R of a quad (4 accumulators of 128 bits per row, groups of 4 entries). */
#define QA(R, j, OFF, HL)                                                                     \
  "movzbl %" HL "[q" #R "], %k[t]\n\t"                                                        \
  "add %q[t], %q[s" #R "]\n\t"                                                                \
  "vfmadd231ps " OFF "(%q[xp],%q[s" #R "],4)%{1to4%}, %[v" #R "], %[a" #R #j "]\n\t"
#define QSHR(R) "shr $16, %q[q" #R "]\n\t"
/* Four entries (bytes 0-3 of q0 / q1) of rows 0 and 1 of a quad, at x displacement D (bytes). */
#define QBLOCK(D0, D1, D2, D3)                                                                 \
  QA(0, 0, D0, "b") QA(1, 0, D0, "b") QA(0, 1, D1, "h") QA(1, 1, D1, "h") QSHR(0) QSHR(1)    \
  QA(0, 2, D2, "b") QA(1, 2, D2, "b") QA(0, 3, D3, "h") QA(1, 3, D3, "h") QSHR(0) QSHR(1)

/* Four rows at once (x wider than L1: the four rows walk through x together, so a line of x brought to L1
 * serves all four). Same scheme as y_pair with 4 accumulators of 4 lanes per row. */
static inline __attribute__((always_inline)) void y_quad(const float *vl[4], const uint8_t *cd[4], const uint32_t n[4], const float *x, int prefetch,
                   float *out) {
  uint32_t common = n[0] < n[1] ? n[0] : n[1], i, k;
  const float *v0p = vl[0], *v1p = vl[1], *v2p = vl[2], *v3p = vl[3];
  const uint8_t *c0p = cd[0], *c1p = cd[1], *c2p = cd[2], *c3p = cd[3];
  const float *xp = x;
  uint64_t s[4] = {0, 0, 0, 0};
  __m128 a00 = _mm_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m128 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  common = common < n[2] ? common : n[2];
  common = (common < n[3] ? common : n[3]) & ~7u;
  {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (i = 0; i < common; i += 8u, xp += 8) {
      uint64_t q0 = y_load8(c0p + i), q1 = y_load8(c1p + i), q2 = y_load8(c2p + i), q3 = y_load8(c3p + i), t;
      __m128 v0 = _mm_loadu_ps(v0p + i), v1 = _mm_loadu_ps(v1p + i);
      if (prefetch) {
        _mm_prefetch((const char *)(v0p + 4u * i) + YPF_V, YPF_HINT); /* 128 bytes of values per step */
        _mm_prefetch((const char *)(v0p + 4u * i) + YPF_V + 64, YPF_HINT);
        _mm_prefetch((const char *)(c0p + 4u * i) + YPF_C, YPF_HINT);
      }
      __asm__(QBLOCK("0", "4", "8", "12")
              : [a00] "+v"(a00), [a01] "+v"(a01), [a02] "+v"(a02), [a03] "+v"(a03), [a10] "+v"(a10),
                [a11] "+v"(a11), [a12] "+v"(a12), [a13] "+v"(a13), [s0] "+r"(s0), [s1] "+r"(s1), [q0] "+Q"(q0),
                [q1] "+Q"(q1), [t] "=&Q"(t)
              : [v0] "v"(v0), [v1] "v"(v1), [xp] "r"(xp));
      v0 = _mm_loadu_ps(v2p + i);
      v1 = _mm_loadu_ps(v3p + i);
      __asm__(QBLOCK("0", "4", "8", "12")
              : [a00] "+v"(a20), [a01] "+v"(a21), [a02] "+v"(a22), [a03] "+v"(a23), [a10] "+v"(a30),
                [a11] "+v"(a31), [a12] "+v"(a32), [a13] "+v"(a33), [s0] "+r"(s2), [s1] "+r"(s3), [q0] "+Q"(q2),
                [q1] "+Q"(q3), [t] "=&Q"(t)
              : [v0] "v"(v0), [v1] "v"(v1), [xp] "r"(xp));
      v0 = _mm_loadu_ps(v0p + i + 4);
      v1 = _mm_loadu_ps(v1p + i + 4);
      __asm__(QBLOCK("16", "20", "24", "28")
              : [a00] "+v"(a00), [a01] "+v"(a01), [a02] "+v"(a02), [a03] "+v"(a03), [a10] "+v"(a10),
                [a11] "+v"(a11), [a12] "+v"(a12), [a13] "+v"(a13), [s0] "+r"(s0), [s1] "+r"(s1), [q0] "+Q"(q0),
                [q1] "+Q"(q1), [t] "=&Q"(t)
              : [v0] "v"(v0), [v1] "v"(v1), [xp] "r"(xp));
      v0 = _mm_loadu_ps(v2p + i + 4);
      v1 = _mm_loadu_ps(v3p + i + 4);
      __asm__(QBLOCK("16", "20", "24", "28")
              : [a00] "+v"(a20), [a01] "+v"(a21), [a02] "+v"(a22), [a03] "+v"(a23), [a10] "+v"(a30),
                [a11] "+v"(a31), [a12] "+v"(a32), [a13] "+v"(a33), [s0] "+r"(s2), [s1] "+r"(s3), [q0] "+Q"(q2),
                [q1] "+Q"(q3), [t] "=&Q"(t)
              : [v0] "v"(v0), [v1] "v"(v1), [xp] "r"(xp));
    }
    s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
  }
  out[0] += diag_sum(a00, a01, a02, a03);
  out[1] += diag_sum(a10, a11, a12, a13);
  out[2] += diag_sum(a20, a21, a22, a23);
  out[3] += diag_sum(a30, a31, a32, a33);
  for (k = 0; k < 4u; k++) {
    out[k] = y_row1(vl[k] + i, cd[k] + i, n[k] - i, xp + s[k], out[k]);
  }
}

/* ---- Short rows without prefetch (LeNet fc1: ~64 entries per row): rows reduced eight at a time ----
 * A row's result is lane j of its accumulator j, summed. The pair loop below (y_pairs_blend) leaves each row as
 * one vector (its 8 accumulators blended: lane j from accumulator j) in a buffer; y_rows_out then sums eight
 * rows' vectors at once (transposing adds: 21 shuffles and adds for 8 rows, in the same order as y_diag's
 * single-row sum, so the results are bit for bit those of the one-row-at-a-time form), adds the bias, clamps and
 * stores eight outputs with one vector op each. The pair function holds only the pair loop's own state (row_ptr
 * walked by pointer, full pairs in the loop and an odd last row after it: fewer live registers, fewer spills),
 * so a pair costs far fewer instructions outside its entries' loop than with the per-row scalar sum, bias, clamp
 * and store. C loop on the real weights: LeNet-5 fc1 6.67 -> 6.00 us, ~1.4 ns less per row. Tried and slower:
 * the first group setting the accumulators with vmulps instead of zeroing them (+2-4 %). */
#define YT_ROWS 64u /* rows per pass of the pair loop (their vectors: 2 KB on the stack) */

/* Lane j of a_j (the row's 8 partial sums). */
static inline __m256 y_blend8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6, __m256 a7) {
  return _mm256_blend_ps(_mm256_blend_ps(_mm256_blend_ps(a0, a1, 0x02), _mm256_blend_ps(a2, a3, 0x08), 0x0C),
                         _mm256_blend_ps(_mm256_blend_ps(a4, a5, 0x20), _mm256_blend_ps(a6, a7, 0x80), 0xC0), 0xF0);
}

/* y_pair's 8-entry pass without prefetch; the rows' blended vectors to out[0], out[1]. */
static inline __attribute__((always_inline)) void y_pair_t(const float *vl0, const uint8_t *cd0, uint32_t n0,
                                                          const float *vl1, const uint8_t *cd1, uint32_t n1,
                                                          const float *x, __m256 *out) {
  const uint32_t common = (n0 < n1 ? n0 : n1) & ~7u;
  const float *const end0 = vl0 + common;
  const float *xp = x;
  uint64_t s0 = 0, s1 = 0;
  YZERO(0);
  YZERO(1);
  for (; vl0 != end0; vl0 += 8, vl1 += 8, cd0 += 8, cd1 += 8, xp += 8) {
    const __m256 v0 = _mm256_loadu_ps(vl0);
    const __m256 v1 = _mm256_loadu_ps(vl1);
    uint64_t q0 = y_load8(cd0);
    uint64_t q1 = y_load8(cd1);
    uint64_t t;
    __asm__(Y8(0) : Y8_OPERANDS(0) : [v0] "v"(v0), [xp] "r"(xp));
    __asm__(Y8(0) : Y8_OPERANDS(1) : [v0] "v"(v1), [xp] "r"(xp));
  }
  {
    __m256 r0[8] = {a00, a01, a02, a03, a04, a05, a06, a07}, r1[8] = {a10, a11, a12, a13, a14, a15, a16, a17};
    y_row1_acc(vl0, cd0, n0 - common, xp + s0, r0);
    y_row1_acc(vl1, cd1, n1 - common, xp + s1, r1);
    out[0] = y_blend8(r0[0], r0[1], r0[2], r0[3], r0[4], r0[5], r0[6], r0[7]);
    out[1] = y_blend8(r1[0], r1[1], r1[2], r1[3], r1[4], r1[5], r1[6], r1[7]);
  }
}

/* Rows r .. r1-1 in pairs (an odd last row paired with an empty one, its partner's vector written to t[r1 - r]);
 * entry e's code at index[e - base]. Row r's vector to t[0], and so on. noinline: see fc_rcsr_b8. */
static __attribute__((noinline)) void y_pairs_blend(const uint32_t *row_ptr, const float *values, const uint8_t *index,
                                                    uint32_t base, const float *x, uint32_t r, uint32_t r1, __m256 *t) {
  const uint32_t *rp = row_ptr + r, *const rp_end = row_ptr + r + ((r1 - r) & ~1u);
  /* entry e's code at cb[e] (e >= base); formed through an integer, as index - base may lie outside the buffer */
  const uint8_t *const cb = (const uint8_t *)((uintptr_t)index - base);
  for (; rp != rp_end; rp += 2, t += 2) {
    const uint32_t b0 = rp[0], b1 = rp[1], b2 = rp[2];
    y_pair_t(values + b0, cb + b0, b1 - b0, values + b1, cb + b1, b2 - b1, x, t);
  }
  if ((r1 - r) & 1u) { /* an odd last row, paired with an empty one */
    const uint32_t b0 = rp[0], b1 = rp[1];
    y_pair_t(values + b0, cb + b0, b1 - b0, values + b1, cb + b1, 0, x, t);
  }
}

/* Lane sums of t[0..7] (lane r: the sum of t[r]'s 8 lanes), each in y_diag's order: (u0 + u2) + (u1 + u3) with
 * u_j = lane j + lane j+4. */
static inline __m256 y_sum8(const __m256 *t) {
  const __m256 u04 = _mm256_add_ps(_mm256_permute2f128_ps(t[0], t[4], 0x20), _mm256_permute2f128_ps(t[0], t[4], 0x31));
  const __m256 u15 = _mm256_add_ps(_mm256_permute2f128_ps(t[1], t[5], 0x20), _mm256_permute2f128_ps(t[1], t[5], 0x31));
  const __m256 u26 = _mm256_add_ps(_mm256_permute2f128_ps(t[2], t[6], 0x20), _mm256_permute2f128_ps(t[2], t[6], 0x31));
  const __m256 u37 = _mm256_add_ps(_mm256_permute2f128_ps(t[3], t[7], 0x20), _mm256_permute2f128_ps(t[3], t[7], 0x31));
  /* rows 0, 1 | 4, 5 and 2, 3 | 6, 7: lanes (u0 + u2, u1 + u3) of each row */
  const __m256 a = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(u04), _mm256_castps_pd(u15))),
                                 _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(u04), _mm256_castps_pd(u15))));
  const __m256 b = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(u26), _mm256_castps_pd(u37))),
                                 _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(u26), _mm256_castps_pd(u37))));
  return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD));
}

/* y[i] = clamp(0 + sum of t[i] + bias[i]) for i < n (as clampf: a NaN sum stays NaN); t[n .. ] are scratch. */
static inline void y_rows_out(__m256 *t, uint32_t n, const float *bias, float *y, float out_min, float out_max) {
  const __m256 lo = _mm256_set1_ps(out_min), hi = _mm256_set1_ps(out_max), z = _mm256_setzero_ps();
  uint32_t i;
  for (i = n; i & 7u; i++) {
    t[i] = z;
  }
  for (i = 0; i < n; i += 8u) {
    const __mmask8 m = n - i >= 8u ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1u);
    __m256 s = _mm256_add_ps(z, y_sum8(t + i));
    if (bias != NULL) {
      s = _mm256_add_ps(s, _mm256_maskz_loadu_ps(m, bias + i));
    } else {
      s = _mm256_add_ps(s, z);
    }
    s = _mm256_min_ps(hi, _mm256_max_ps(lo, s)); /* max(lo, s): s where s is NaN, as clampf */
    _mm256_mask_storeu_ps(y + i, m, s);
  }
}

/* Rows r .. r1-1 (8-bit codes, entry e's at codes[e - base]) through y_pairs_blend and y_rows_out. */
static __attribute__((noinline)) void fc_rows_t(const prunec_rcsr_f32 *w, const uint8_t *codes, uint32_t base,
                                                uint32_t r, uint32_t r1, const float *bias, const float *x, float *y,
                                                float out_min, float out_max) {
  __m256 t[YT_ROWS + 8u];
  while (r < r1) {
    const uint32_t n = r1 - r < YT_ROWS ? r1 - r : YT_ROWS;
    y_pairs_blend(w->row_ptr, w->values, codes, base, x, r, r + n, t);
    y_rows_out(t, n, bias != NULL ? bias + r : NULL, y + r, out_min, out_max);
    r += n;
  }
}

/* 8-bit codes (the common case: b = 8 at 4-25% density): row pairs in order. `unroll` (a constant in each of
 * the two instances below): the pair loop takes 16 entries of each row per pass. */
static inline __attribute__((always_inline)) void fc_b8_body(const prunec_rcsr_f32 *w, const float *bias, const float *x,
                                                            float *y, float out_min, float out_max, int unroll) {
  const uint32_t *row_ptr = w->row_ptr;
  const float *values = w->values;
  const uint8_t *index = w->index;
  uint32_t r = 0;
  const int prefetch = w->row_ptr[w->rows] > YPF_MIN_ENTRIES;
  if (!unroll && !prefetch && w->cols <= YQUAD_COLS) { /* short rows, no prefetch: eight rows reduced at once */
    fc_rows_t(w, index, 0, 0, w->rows, bias, x, y, out_min, out_max);
    return;
  }
  if (w->cols > YQUAD_COLS) {
    for (; r + 4u <= w->rows; r += 4u) {
      const float *vl[4];
      const uint8_t *cd[4];
      uint32_t n[4], k;
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (k = 0; k < 4u; k++) {
        vl[k] = values + row_ptr[r + k];
        cd[k] = index + row_ptr[r + k];
        n[k] = row_ptr[r + k + 1] - row_ptr[r + k];
      }
      if (prefetch) {
        y_quad(vl, cd, n, x, 1, part);
      } else {
        y_quad(vl, cd, n, x, 0, part);
      }
      for (k = 0; k < 4u; k++) {
        y[r + k] = prunec_clampf(part[k] + (bias != NULL ? bias[r + k] : 0.0f), out_min, out_max);
      }
    }
  }
  for (; r < w->rows; r += 2u) {
    const uint32_t b0 = row_ptr[r], b1 = row_ptr[r + 1];
    const uint32_t b2 = r + 1u < w->rows ? row_ptr[r + 2] : b1; /* an odd last row is paired with an empty one */
    float part[2] = {0.0f, 0.0f};
    if (prefetch) { /* two copies of the loop, with and without the prefetches */
      y_pair(values + b0, index + b0, b1 - b0, values + b1, index + b1, b2 - b1, x, 1, unroll, part);
    } else {
      y_pair(values + b0, index + b0, b1 - b0, values + b1, index + b1, b2 - b1, x, 0, unroll, part);
    }
    y[r] = prunec_clampf(part[0] + (bias != NULL ? bias[r] : 0.0f), out_min, out_max);
    if (r + 1u < w->rows) {
      y[r + 1] = prunec_clampf(part[1] + (bias != NULL ? bias[r + 1] : 0.0f), out_min, out_max);
    }
  }
}

/* The asm statements read x through address operands and declare no memory input (a "m" operand for x cost
 * +0.7-1.4 % on whole LeNets: other register allocation in the loop). That is sound because they only run inside
 * these noinline functions, which also write y and read memory in C: to the compiler, link-time optimisation
 * included, a call to them may read any memory, so every store to x before the call (the previous layer's
 * output) is done before it, and nothing in them writes x. Keep them noinline. */
static __attribute__((noinline)) void fc_rcsr_b8(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                                 float out_min, float out_max) {
  fc_b8_body(w, bias, x, y, out_min, out_max, 0);
}

/* Rows of YLONG_ROW entries or more on average (4096x4096 at 10 %: 410): 16 entries per pass, 8 % faster there.
 * A separate instance, so that the short-row one (LeNet fc1, ~60 per row, where the 16-entry pass was 10 %
 * slower) stays as it was, code layout included. */
static __attribute__((noinline)) void fc_rcsr_b8_long(const prunec_rcsr_f32 *w, const float *bias, const float *x,
                                                      float *y, float out_min, float out_max) {
  fc_b8_body(w, bias, x, y, out_min, out_max, 1);
}

/* fc_b8_body on a block of widened codes: rows r0 .. r1-1, entry e's code at codes[e - base], the layer's
 * prefetch decision. A copy, not a parametrised fc_b8_body: with these parameters in the 8-bit layers' own
 * instances (constants there), 4096x4096 at b = 8 ran 3 % slower (code layout, register allocation). */
static inline __attribute__((always_inline)) void fc_b8_block_body(const prunec_rcsr_f32 *w, const uint8_t *codes, uint32_t base,
                                                            uint32_t r0, uint32_t r1, int prefetch, const float *bias,
                                                            const float *x, float *y, float out_min, float out_max,
                                                            int unroll) {
  const uint32_t *row_ptr = w->row_ptr;
  const float *values = w->values;
  const uint8_t *index = codes;
  uint32_t r = r0;
  if (!unroll && !prefetch && w->cols <= YQUAD_COLS) {
    fc_rows_t(w, codes, base, r0, r1, bias, x, y, out_min, out_max);
    return;
  }
  if (w->cols > YQUAD_COLS) {
    for (; r + 4u <= r1; r += 4u) {
      const float *vl[4];
      const uint8_t *cd[4];
      uint32_t n[4], k;
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (k = 0; k < 4u; k++) {
        vl[k] = values + row_ptr[r + k];
        cd[k] = index + (row_ptr[r + k] - base);
        n[k] = row_ptr[r + k + 1] - row_ptr[r + k];
      }
      if (prefetch) {
        y_quad(vl, cd, n, x, 1, part);
      } else {
        y_quad(vl, cd, n, x, 0, part);
      }
      for (k = 0; k < 4u; k++) {
        y[r + k] = prunec_clampf(part[k] + (bias != NULL ? bias[r + k] : 0.0f), out_min, out_max);
      }
    }
  }
  for (; r < r1; r += 2u) {
    const uint32_t b0 = row_ptr[r], b1 = row_ptr[r + 1];
    const uint32_t b2 = r + 1u < r1 ? row_ptr[r + 2] : b1; /* an odd last row is paired with an empty one */
    float part[2] = {0.0f, 0.0f};
    if (prefetch) { /* two copies of the loop, with and without the prefetches */
      y_pair(values + b0, index + (b0 - base), b1 - b0, values + b1, index + (b1 - base), b2 - b1, x, 1, unroll, part);
    } else {
      y_pair(values + b0, index + (b0 - base), b1 - b0, values + b1, index + (b1 - base), b2 - b1, x, 0, unroll, part);
    }
    y[r] = prunec_clampf(part[0] + (bias != NULL ? bias[r] : 0.0f), out_min, out_max);
    if (r + 1u < r1) {
      y[r + 1] = prunec_clampf(part[1] + (bias != NULL ? bias[r + 1] : 0.0f), out_min, out_max);
    }
  }
}

/* The same two on a block of widened codes (rows r0 .. r1-1; prefetch as the whole layer would). */
static __attribute__((noinline)) void fc_rcsr_b8_block(const prunec_rcsr_f32 *w, const uint8_t *codes, uint32_t base,
                                                       uint32_t r0, uint32_t r1, int prefetch, const float *bias,
                                                       const float *x, float *y, float out_min, float out_max) {
  fc_b8_block_body(w, codes, base, r0, r1, prefetch, bias, x, y, out_min, out_max, 0);
}

static __attribute__((noinline)) void fc_rcsr_b8_block_long(const prunec_rcsr_f32 *w, const uint8_t *codes,
                                                            uint32_t base, uint32_t r0, uint32_t r1, int prefetch,
                                                            const float *bias, const float *x, float *y,
                                                            float out_min, float out_max) {
  fc_b8_block_body(w, codes, base, r0, r1, prefetch, bias, x, y, out_min, out_max, 1);
}

/* Rows r0 .. r1-1 through the decode pass (16-bit codes; 4-bit ones of large layers; 9..15-bit ones; rows of
 * other widths too long to widen): columns decoded per chunk, four rows at once (the header's algorithm). */
static __attribute__((noinline)) void fc_rcsr_cols(const prunec_rcsr_f32 *w, uint32_t r0, uint32_t r1,
                                                   const float *bias, const float *x, float *y, float out_min,
                                                   float out_max) {
  int32_t cols[4][CHUNK] __attribute__((aligned(64)));
  const uint32_t *row_ptr = w->row_ptr;
  const float *values = w->values;
  uint32_t r = r0;
  for (; r < r1; r += 4) {
    const uint32_t nr = r1 - r < 4 ? r1 - r : 4;
    __m128 acc[4][4];
    uint32_t e[4], end[4];
    int32_t last[4];
    uint32_t k, j;
    int more = 1;
    for (k = 0; k < 4; k++) {
      for (j = 0; j < 4; j++) {
        acc[k][j] = _mm_setzero_ps();
      }
      e[k] = k < nr ? row_ptr[r + k] : 0;
      end[k] = k < nr ? row_ptr[r + k + 1] : 0;
      last[k] = -1;
    }
    while (more) {
      uint32_t n[4], common;
      more = 0;
      for (k = 0; k < 4; k++) {
        n[k] = end[k] - e[k] < CHUNK ? end[k] - e[k] : CHUNK;
        last[k] = decode_cols(w, e[k], n[k], last[k], cols[k]);
      }
      common = n[0] < n[1] ? n[0] : n[1];
      common = common < n[2] ? common : n[2];
      common = common < n[3] ? common : n[3];
      common &= ~3u;
      {
        const float *v0 = values + e[0], *v1 = values + e[1], *v2 = values + e[2], *v3 = values + e[3];
        const int32_t *c0 = cols[0], *c1 = cols[1], *c2 = cols[2], *c3 = cols[3];
        __m128 a00 = acc[0][0], a01 = acc[0][1], a02 = acc[0][2], a03 = acc[0][3];
        __m128 a10 = acc[1][0], a11 = acc[1][1], a12 = acc[1][2], a13 = acc[1][3];
        __m128 a20 = acc[2][0], a21 = acc[2][1], a22 = acc[2][2], a23 = acc[2][3];
        __m128 a30 = acc[3][0], a31 = acc[3][1], a32 = acc[3][2], a33 = acc[3][3];
        uint32_t i;
        for (i = 0; i < common; i += 4) {
          const __m128 w0 = _mm_loadu_ps(v0 + i);
          const __m128 w1 = _mm_loadu_ps(v1 + i);
          const __m128 w2 = _mm_loadu_ps(v2 + i);
          const __m128 w3 = _mm_loadu_ps(v3 + i);
          FMA4(a00, a01, a02, a03, w0, c0 + i);
          FMA4(a10, a11, a12, a13, w1, c1 + i);
          FMA4(a20, a21, a22, a23, w2, c2 + i);
          FMA4(a30, a31, a32, a33, w3, c3 + i);
        }
        acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[0][3] = a03;
        acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12, acc[1][3] = a13;
        acc[2][0] = a20, acc[2][1] = a21, acc[2][2] = a22, acc[2][3] = a23;
        acc[3][0] = a30, acc[3][1] = a31, acc[3][2] = a32, acc[3][3] = a33;
      }
      for (k = 0; k < nr; k++) {
        if (common < n[k]) {
          row_rest(values + e[k], cols[k], common, n[k], x, acc[k]);
        }
        e[k] += n[k];
        more |= e[k] < end[k];
      }
    }
    for (k = 0; k < nr; k++) {
      const float s = diag_sum(acc[k][0], acc[k][1], acc[k][2], acc[k][3]) + (bias != NULL ? bias[r + k] : 0.0f);
      y[r + k] = prunec_clampf(s, out_min, out_max);
    }
  }
}

/* Codes of b <= 7 bits: widened to bytes, a block of consecutive rows (at most WIDEN_MAX entries) at a time,
 * then the 8-bit path on the block (code and column arithmetic are the same: column = previous + code + 1,
 * fillers included; 16 KB of codes stay in L1). A layer of at most WIDEN_MAX entries is one block. Blocks end on
 * a multiple of the 8-bit path's row group (2, or 4 for the four-row pass) where they can; a row longer than a
 * block takes the decode pass. The blocks' instances of the 8-bit path take the layer's prefetch decision (the
 * value stream of 4096x4096 at b = 6: 1.45 -> 1.17x the b = 8 time with it). */
static __attribute__((noinline)) void fc_rcsr_widened(const prunec_rcsr_f32 *w, const float *bias, const float *x,
                                                      float *y, float out_min, float out_max) {
  uint8_t codes[WIDEN_MAX + 64] __attribute__((aligned(64)));
  const uint32_t *row_ptr = w->row_ptr;
  const uint32_t rows = w->rows, bits = w->index_bits;
  const size_t len = prunec_avx512_index_len(w);
  const int prefetch = row_ptr[rows] > YPF_MIN_ENTRIES;
  const int unroll = row_ptr[rows] >= (uint64_t)YLONG_ROW * rows;
  const uint32_t grp = w->cols > YQUAD_COLS ? 4u : 2u;
  uint32_t r = 0;
  while (r < rows) {
    const uint32_t base = row_ptr[r];
    uint32_t r1 = r;
    while (r1 < rows && row_ptr[r1 + 1] - base <= WIDEN_MAX) {
      r1++;
    }
    if (r1 == r) { /* one row longer than a block */
      fc_rcsr_cols(w, r, r + 1u, bias, x, y, out_min, out_max);
      r++;
      continue;
    }
    if (r1 < rows && r1 - r >= grp) {
      r1 -= (r1 - r) % grp;
    }
    prunec_avx512_widen8(w->index, len, bits, base, row_ptr[r1] - base, codes);
    if (unroll) {
      fc_rcsr_b8_block_long(w, codes, base, r, r1, prefetch, bias, x, y, out_min, out_max);
    } else {
      fc_rcsr_b8_block(w, codes, base, r, r1, prefetch, bias, x, y, out_min, out_max);
    }
    r = r1;
  }
}

/* ---- The gather path (Intel cores; see fc_use_gather) ----
 * Per group of 16 entries of a row: the 16 codes (8- or 16-bit) loaded and widened to 32-bit lanes, their inclusive
 * prefix sum plus 1..16 plus the column before the group gives the 16 columns (column = previous + code + 1), one
 * vpgatherdd-class load takes x at them, one FMA into the row's 16-lane accumulator. Two rows at once (independent
 * chains); the last < 16 entries of a row are one masked group (masked-off lanes are not read). Sixteen rows'
 * accumulators are then summed by a transpose tree (g_sum16) and bias, clamp and store are one vector op per 16 rows.
 * On this project's Intel Xeon (docs/BENCHMARKS.md, "Intel"): a 16-element gather costs ~4.2 ns, ~0.26 ns per entry,
 * against ~0.54 ns per entry for the broadcast path above there (a Zen 5 runs the broadcast path at ~0.17 ns and
 * its gathers at ~1.2 cycles per element, so it keeps the broadcast path). */
#define G_ROWS 16u

/* Inclusive prefix sum of the 16 codes of entries e .. e+15 (all inside the stream), plus 1..16 plus `last`. */
static inline __attribute__((always_inline)) __m512i g_cols(const uint8_t *cb, uint32_t e, __mmask16 m, int full,
                                                            __m512i last, const int w16) {
  const __m512i iota1 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
  __m512i c;
  if (w16) {
    const uint16_t *p = (const uint16_t *)(const void *)cb + e;
    c = _mm512_cvtepu16_epi32(full ? _mm256_loadu_si256((const __m256i *)(const void *)p)
                                   : _mm256_maskz_loadu_epi16(m, (const void *)p));
  } else {
    c = _mm512_cvtepu8_epi32(full ? _mm_loadu_si128((const __m128i *)(const void *)(cb + e))
                                  : _mm_maskz_loadu_epi8(m, (const void *)(cb + e)));
  }
  return _mm512_add_epi32(_mm512_add_epi32(x4_prefix_sum(c), iota1), last);
}

/* Unoptimised, GCC's gather intrinsics are macros that pass the mask and scale through builtins taking signed types
 * (-Wsign-conversion under -Wconversion -Werror at -O0); no code changes with the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
/* acc + the products of a row's entries e .. e+n-1 (n >= 16: the next 16; n < 16: the row's last n, masked). `last`
 * is the column before entry e, in every lane, and becomes the column of entry e+15 (full groups only). */
static inline __attribute__((always_inline)) __m512 g_step(const float *values, const uint8_t *cb, uint32_t e,
                                                           uint32_t n, __m512i *last, const float *x, __m512 acc,
                                                           const int w16) {
  if (n >= 16u) {
    const __m512i c = g_cols(cb, e, (__mmask16)0xFFFF, 1, *last, w16);
    *last = _mm512_permutexvar_epi32(_mm512_set1_epi32(15), c);
    return _mm512_fmadd_ps(_mm512_loadu_ps(values + e), _mm512_i32gather_ps(c, x, 4), acc);
  } else {
    const __mmask16 m = (__mmask16)((1u << n) - 1u);
    const __m512i c = g_cols(cb, e, m, 0, *last, w16);
    if (n <= 8u) { /* an 8-element gather costs about half a 16-element one */
      const __mmask8 m8 = (__mmask8)m;
      const __m256 xv = _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m8, _mm512_castsi512_si256(c), x, 4);
      return _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_maskz_loadu_ps(m8, values + e)), _mm512_zextps256_ps512(xv),
                             acc);
    }
    {
      const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, c, x, 4);
      return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, values + e), xv, acc);
    }
  }
}
#pragma GCC diagnostic pop

/* Lane r of the result: the sum of the 16 lanes of t[r] (a transpose tree: 256-bit halves, 128-bit quarters, then a
 * 4x4 transpose per quarter). */
static inline __m512 g_sum16(const __m512 *t) {
  __m512 a[8], b[4];
  uint32_t i;
  for (i = 0; i < 8u; i++) { /* rows i | i+8: low half (the 8 sums of lane pairs j, j+8 of row i), high half row i+8 */
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[i], t[i + 8u], 0x44), _mm512_shuffle_f32x4(t[i], t[i + 8u], 0xEE));
  }
  for (i = 0; i < 4u; i++) { /* quarters: rows i, i+8, i+4, i+12, four partial sums each */
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 4u], 0x88), _mm512_shuffle_f32x4(a[i], a[i + 4u], 0xDD));
  }
  {
    const __m512 c0 = _mm512_add_ps(_mm512_unpacklo_ps(b[0], b[1]), _mm512_unpackhi_ps(b[0], b[1]));
    const __m512 c1 = _mm512_add_ps(_mm512_unpacklo_ps(b[2], b[3]), _mm512_unpackhi_ps(b[2], b[3]));
    /* quarter q, lane j: the sum of b[j]'s quarter q: rows (0..3) | (8..11) | (4..7) | (12..15) */
    const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, 0x44), _mm512_shuffle_ps(c0, c1, 0xEE));
    return _mm512_shuffle_f32x4(d, d, 0xD8); /* quarters 0, 2, 1, 3: rows 0..15 */
  }
}

/* Rows r0 .. r1-1 (at most G_ROWS), entry e's code at cb[e] (8-bit) or ((const uint16_t *)cb)[e] (16-bit);
 * y[r] = clamp(sum + bias[r]). */
static inline __attribute__((always_inline)) void g_rows(const prunec_rcsr_f32 *w, const uint8_t *cb, uint32_t r0,
                                                         uint32_t r1, const float *bias, const float *x, float *y,
                                                         float out_min, float out_max, const int w16) {
  __m512 t[G_ROWS];
  const uint32_t *row_ptr = w->row_ptr;
  const float *values = w->values;
  const uint32_t nr = r1 - r0;
  uint32_t k = 0;
  for (; k + 2u <= nr; k += 2u) {
    uint32_t e0 = row_ptr[r0 + k], e1 = row_ptr[r0 + k + 1u];
    const uint32_t end0 = e1, end1 = row_ptr[r0 + k + 2u];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512i l0 = _mm512_set1_epi32(-1), l1 = l0;
    for (; e0 + 16u <= end0 && e1 + 16u <= end1; e0 += 16u, e1 += 16u) {
      a0 = g_step(values, cb, e0, 16u, &l0, x, a0, w16);
      a1 = g_step(values, cb, e1, 16u, &l1, x, a1, w16);
    }
    for (; e0 < end0; e0 += 16u) {
      a0 = g_step(values, cb, e0, end0 - e0, &l0, x, a0, w16);
    }
    for (; e1 < end1; e1 += 16u) {
      a1 = g_step(values, cb, e1, end1 - e1, &l1, x, a1, w16);
    }
    t[k] = a0;
    t[k + 1u] = a1;
  }
  if (k < nr) {
    uint32_t e0 = row_ptr[r0 + k];
    const uint32_t end0 = row_ptr[r0 + k + 1u];
    __m512 a0 = _mm512_setzero_ps();
    __m512i l0 = _mm512_set1_epi32(-1);
    for (; e0 < end0; e0 += 16u) {
      a0 = g_step(values, cb, e0, end0 - e0, &l0, x, a0, w16);
    }
    t[k++] = a0;
  }
  for (; k < G_ROWS; k++) {
    t[k] = _mm512_setzero_ps();
  }
  {
    const __mmask16 m = (__mmask16)(nr >= 16u ? 0xFFFFu : (1u << nr) - 1u);
    __m512 s = _mm512_add_ps(_mm512_setzero_ps(), g_sum16(t)); /* 0 + sum: -0 sums become +0, as the portable twin */
    s = _mm512_add_ps(s, bias != NULL ? _mm512_maskz_loadu_ps(m, bias + r0) : _mm512_setzero_ps());
    s = _mm512_min_ps(_mm512_set1_ps(out_max), _mm512_max_ps(_mm512_set1_ps(out_min), s)); /* NaN stays, as clampf */
    _mm512_mask_storeu_ps(y + r0, m, s);
  }
}

/* Rows r0 .. r1-1 of 8-bit codes at cb (entry e's at cb[e]; cb may point before the codes of a widened block). */
static __attribute__((noinline)) void fc_gather8(const prunec_rcsr_f32 *w, const uint8_t *cb, uint32_t r0, uint32_t r1,
                                                 const float *bias, const float *x, float *y, float out_min,
                                                 float out_max) {
  uint32_t r;
  for (r = r0; r < r1; r += G_ROWS) {
    g_rows(w, cb, r, r1 - r < G_ROWS ? r1 : r + G_ROWS, bias, x, y, out_min, out_max, 0);
  }
}

/* All rows of 16-bit codes. */
static __attribute__((noinline)) void fc_gather16(const prunec_rcsr_f32 *w, const float *bias, const float *x,
                                                  float *y, float out_min, float out_max) {
  uint32_t r;
  for (r = 0; r < w->rows; r += G_ROWS) {
    g_rows(w, w->index, r, w->rows - r < G_ROWS ? w->rows : r + G_ROWS, bias, x, y, out_min, out_max, 1);
  }
}

/* Codes of b <= 7 bits on the gather path: widened to bytes a block of rows (at most WIDEN_MAX entries) at a time,
 * as fc_rcsr_widened; a row longer than a block takes the decode pass. */
static __attribute__((noinline)) void fc_gather_widened(const prunec_rcsr_f32 *w, const float *bias, const float *x,
                                                        float *y, float out_min, float out_max) {
  uint8_t codes[WIDEN_MAX + 64] __attribute__((aligned(64)));
  const uint32_t *row_ptr = w->row_ptr;
  const uint32_t rows = w->rows;
  const size_t len = prunec_avx512_index_len(w);
  uint32_t r = 0;
  while (r < rows) {
    const uint32_t base = row_ptr[r];
    uint32_t r1 = r;
    while (r1 < rows && r1 - r < G_ROWS && row_ptr[r1 + 1] - base <= WIDEN_MAX) {
      r1++;
    }
    if (r1 == r) { /* one row longer than a block */
      fc_rcsr_cols(w, r, r + 1u, bias, x, y, out_min, out_max);
      r++;
      continue;
    }
    prunec_avx512_widen8(w->index, len, w->index_bits, base, row_ptr[r1] - base, codes);
    /* entry e's code at codes[e - base], formed through an integer, as codes - base may lie outside the buffer */
    fc_gather8(w, (const uint8_t *)((uintptr_t)codes - base), r, r1, bias, x, y, out_min, out_max);
    r = r1;
  }
}

/* Whether the gather path runs: PRUNEC_X86_FC_GATHER (0 or 1) decides at compile time; otherwise at run time, on
 * Intel cores (CPUID vendor GenuineIntel), where a 16-element gather was ~3x cheaper per entry than the broadcast
 * path; AMD (and anything else) keeps the broadcast path. The two paths sum in different orders (results agree to
 * fp32 rounding, not bit for bit). */
static int fc_use_gather(void) {
#if defined(PRUNEC_X86_FC_GATHER)
  return PRUNEC_X86_FC_GATHER != 0;
#else
  static int cached = -1;
  int v = cached;
  if (v < 0) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    v = __get_cpuid(0, &a, &b, &c, &d) && b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu;
    cached = v;
  }
  return v;
#endif
}

void prunec_f32_fc_rcsr__avx512x4(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                  float out_min, float out_max) {
  const uint32_t bits = w->index_bits;
  uint32_t r = 0;
  if (!prunec_rcsr_valid_bits(bits)) {
    for (r = 0; r < w->rows; r++) {
      y[r] = __builtin_nanf("");
    }
    return;
  }
  if (fc_use_gather() && (bits <= 8u || bits == 16u)) {
    if (bits == 8u) {
      fc_gather8(w, w->index, 0, w->rows, bias, x, y, out_min, out_max);
    } else if (bits == 16u) {
      fc_gather16(w, bias, x, y, out_min, out_max);
    } else {
      fc_gather_widened(w, bias, x, y, out_min, out_max);
    }
    return;
  }
  if (bits == 8) {
    if (w->row_ptr[w->rows] >= (uint64_t)YLONG_ROW * w->rows) {
      fc_rcsr_b8_long(w, bias, x, y, out_min, out_max);
    } else {
      fc_rcsr_b8(w, bias, x, y, out_min, out_max);
    }
    return;
  }
  if (bits < 8) {
    fc_rcsr_widened(w, bias, x, y, out_min, out_max);
    return;
  }
  fc_rcsr_cols(w, 0, w->rows, bias, x, y, out_min, out_max);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_fc_rcsr_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 && __AVX512VL__ && __AVX512BW__ */
