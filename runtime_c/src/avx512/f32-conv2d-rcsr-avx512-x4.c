/*
 * Sparse 2-D convolution over relative-indexed CSR, x86-64 AVX-512 (F, VL), NCHW, batch 1. Twin of
 * prunec_f32_conv2d_rcsr__portable (same signature, same result up to fp32 summation order). Stride 1 and
 * dilation 1 (the paper's LeNet-5, AlexNet conv2-5, VGG-16) take one of three paths; other strides and dilations
 * the packed path where it fits, else the register tiles (conv_tiled); stride_w > 4 and kernels wider than 16 a
 * plain direct loop, the portable
 * algorithm (strided layers ran that loop at ~2 GMAC/s until the tiles took them: ResNet-8's stride-2 3x3 at
 * 32x32 263 -> 46 us, MobileNet's stride-2 stem 107 -> 24 us; MLPerf Tiny models pruned globally to 80 %).
 *
 * Small problems (the group's input, packed below, <= 16384 floats, and at least 16 columns per row; LeNet-5,
 * DS-CNN's 10x4 stride-2 first conv; any stride_w <= 4 and dilation: the copies then hold the input columns each
 * output column reads and, for stride_h > 1, one copy per row phase): the input is packed once per
 * call into kw copies shifted by kx, cut to the output width and padded, so that the input of any tap for the
 * whole output plane is one contiguous block laid out like the plane. Each nonzero is then an axpy of the
 * plane, its segment (<= 24 vectors) held in registers: unmasked full-width loads, no lane lost at tile
 * borders, no mask per load (conv_packed). 8-bit rows of planes of <= 4 vectors are decoded inside the FMA
 * loop (pk_row8); others through an offset list per chunk of entries. Planes 8 wide and <= 8 (even) rows
 * high with 8-bit codes (LeNet-5 conv2) pair output rows i and S+i in a vector and pack the input in row
 * pairs, so that every load is one aligned line (conv_paired8); rows of 8 mod 16 floats otherwise read a
 * copy shifted by 8 floats for half of the taps, when it fits. The bound is then one (L1) load per FMA.
 *
 * Larger problems and strided or dilated convolutions (conv_tiled): per output channel oc, the row's nonzeros
 * are decoded once into (input
 * offset, value) pairs, the offset of weight (ci, ky, kx) being ci*in_h*in_w + ky*in_w + kx (fillers
 * dropped), through a per-call table indexed by column. The output plane is cut into tiles
 * of 8 output rows x 16 output columns; a tile's accumulators stay in 8 zmm registers while every
 * nonzero adds value * (16 contiguous input cells of each of the tile's rows), the value broadcast and the
 * input read by one masked load per row. The mask keeps lanes that are inside both the input row (padding
 * reads nothing) and the output row, from a table per (kx, column tile). Rows of a border tile whose input
 * row lies in the padding load nothing (all-false mask). Output planes at most 8 wide use 8-column tiles.
 * Nonzeros are processed in chunks of CHUNK (the tile is stored and reloaded between chunks). Stride_h and the
 * dilations only move the rows and taps read; stride_w 2..4 reads each tile row as stride_w vectors compacted by
 * permutes (strided_row).
 *
 * Index widths other than 4/8/16 (docs/FORMAT.md: 1..16): b < 8 codes are widened to bytes (once per call for
 * layers of <= WIDE_MAX entries, else per row or chunk) and take the 8-bit paths (the fused decode, row pairs);
 * 9..15 and the tiles / generic loop read the bit stream code by code (LeNet-5 conv1 / conv2 at b = 6: 1.01x /
 * 1.04x the b = 8 time).
 *
 * Fused max pool (prunec_f32_conv2d_rcsr_maxpool2d__avx512x4, the one call of a fused conv + max pool pair):
 * the packed paths pack once per call and pool each channel as soon as it is computed: from the registers
 * for 2x2/2 pools of planes 8x8 (row pairs) and 24 wide (segments of whole row pairs), LeNet-5's pool2 and
 * pool1, else from the L1-resident plane through prunec_f32_maxpool2d__avx512x4. Bit for bit the unfused
 * conv + max pool kernels' output.
 *
 * The packed paths multiply fillers (value 0) like other entries (FORMAT.md: both are correct).
 * Clamp as the portable kernel (docs/TARGETS.md): min_ps(hi, max_ps(lo, a)), MAXPS/MINPS returning their
 * second operand for a NaN, so NaN stays NaN and relu(-0.0) = -0.0. Extra accumulators start at -0.0 (the
 * additive identity), so that a sum of -0.0 terms on a -0.0 bias stays -0.0 as in the portable kernel.
 */
#include "prunec_isa.h"

#if PRUNEC_HAVE_AVX512 && defined(__AVX512VL__)
#include <immintrin.h>

#include "prunec_kernels.h"
#include "prunec_avx512_util.h"
#include "prunec_rcsr_util.h"

#define ROWS 8      /* output rows per tile: 8 zmm accumulators */
#define CHUNK 512u  /* nonzeros decoded per pass */
#define MAX_KW 16   /* larger kernels or wider planes take the generic loop */
#define MAX_KH 255  /* the tiles keep ky in a byte (col_ky, eky): taller kernels take the generic loop */
#define MAX_TILES 32
#define MAX_COLS 4608 /* in_c/groups*kh*kw of VGG-16's 3x3x512; larger rows take the generic loop */
#define MAX_SW 4      /* the tiles' widest stride_w (AlexNet conv1's); wider strides take the generic loop */

static uint32_t code_at(const prunec_rcsr_f32 *w, uint32_t e) {
  switch (w->index_bits) {
    case 4:
      return (uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu;
    case 8:
      return w->index[e];
    case 16:
      return (uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8);
    default:
      return prunec_rcsr_code_any(w->index, e, w->index_bits);
  }
}


/* 1 when every row of w holds at most `max` entries (rows that can be widened into a buffer of that size). */
static int rows_at_most(const prunec_rcsr_f32 *w, uint32_t rows, uint32_t max) {
  uint32_t r;
  for (r = 0; r < rows; r++) {
    if (w->row_ptr[r + 1] - w->row_ptr[r] > max) {
      return 0;
    }
  }
  return 1;
}

static inline __mmask16 lane_range(int32_t lo, int32_t hi) {
  /* lanes l with lo <= l < hi, 0 <= l < 16 */
  uint32_t m;
  lo = lo < 0 ? 0 : lo;
  hi = hi > 16 ? 16 : hi;
  if (hi <= lo) {
    return 0;
  }
  m = (hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u)) & ~((1u << lo) - 1u);
  return (__mmask16)m;
}

/* Direct loop for strided or dilated convolutions (the portable algorithm, no tiling). */
static void conv_generic(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias, const float *x,
                         float *y, float lo, float hi) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups, taps = p->kh * p->kw;
  uint32_t oc, oy, ox;
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const float b = bias != NULL ? bias[oc] : 0.0f;
    uint32_t next = 0, e;
    size_t i;
    for (i = 0; i < out_plane; i++) {
      yp[i] = b;
    }
    for (e = w->row_ptr[oc]; e < w->row_ptr[oc + 1]; e++) {
      const uint32_t col = next + code_at(w, e);
      const float v = w->values[e];
      next = col + 1;
      if (v != 0.0f) {
        const uint32_t ci = col / taps, t = col % taps, ky = t / p->kw, kx = t % p->kw;
        const float *xc = xg + (size_t)ci * in_plane;
        for (oy = 0; oy < p->out_h; oy++) {
          const long iy = (long)oy * p->stride_h + (long)ky * p->dil_h - (long)p->pad_h;
          if (iy < 0 || iy >= (long)p->in_h) {
            continue;
          }
          for (ox = 0; ox < p->out_w; ox++) {
            const long ix = (long)ox * p->stride_w + (long)kx * p->dil_w - (long)p->pad_w;
            if (ix >= 0 && ix < (long)p->in_w) {
              yp[(size_t)oy * p->out_w + ox] += v * xc[(size_t)iy * p->in_w + (size_t)ix];
            }
          }
        }
      }
    }
    for (i = 0; i < out_plane; i++) {
      const float v = yp[i] < lo ? lo : yp[i];
      yp[i] = v > hi ? hi : v;
    }
  }
}

/* Masks of the valid lanes of column tile t for a tap at input column offset dx = kx*dil_w (stride_w 1): inside
 * the input row and the output row. */
static __mmask16 col_mask(int32_t dx, int32_t ox0, int32_t in_w, int32_t out_w, int32_t pad_w) {
  return lane_range(0, out_w - ox0) & lane_range(pad_w - dx - ox0, in_w + pad_w - dx - ox0);
}

/* Output planes at most 8 wide (LeNet-5's conv2): tiles of 8 rows x 8 columns in ymm registers, so that no
 * lane is wasted and each load is half as wide. Same algorithm as the 16-wide tiles below. */
static void tiles8(const prunec_conv2d_params *p, const float *xg, float *yp, uint32_t n, const int32_t *off,
                   const uint8_t *eky, const __mmask8 *mtab8, const uint8_t *ekx, const float *val, int first,
                   int last, float b, float out_min, float out_max) {
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t out_h = (int32_t)p->out_h, pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h;
  const int32_t sh = (int32_t)p->stride_h, dh = (int32_t)p->dil_h;
  const long rstep = (long)sh * in_w; /* input floats from one output row to the next */
  const __mmask8 out_mask = (__mmask8)((1u << out_w) - 1u);
  const __m256 vb = _mm256_set1_ps(b), vlo = _mm256_set1_ps(out_min), vhi = _mm256_set1_ps(out_max);
  int32_t oy0, r;
  uint32_t j;
  for (oy0 = 0; oy0 < out_h; oy0 += ROWS) {
    const int32_t nrows = out_h - oy0 < ROWS ? out_h - oy0 : ROWS;
    const int interior = nrows == ROWS && oy0 * sh - pad_h >= 0 &&
                         (oy0 + ROWS - 1) * sh + ((int32_t)p->kh - 1) * dh - pad_h < in_h;
    float *yt = yp + (size_t)oy0 * p->out_w;
    const float *base = xg + (long)(oy0 * sh - pad_h) * in_w - pad_w;
    __m256 acc[ROWS];
    for (r = 0; r < ROWS; r++) {
      acc[r] = first || r >= nrows ? vb : _mm256_maskz_loadu_ps(out_mask, yt + (long)r * out_w);
    }
    if (interior) {
      for (j = 0; j < n; j++) {
        const __mmask8 m = mtab8[ekx[j]];
        const float *src = base + off[j];
        const __m256 v = _mm256_set1_ps(val[j]);
#pragma GCC unroll 8
        for (r = 0; r < ROWS; r++) {
          acc[r] = _mm256_fmadd_ps(v, _mm256_maskz_loadu_ps(m, src + r * rstep), acc[r]);
        }
      }
    } else {
      for (j = 0; j < n; j++) {
        const __mmask8 m = mtab8[ekx[j]];
        const float *src = base + off[j];
        const int32_t iy0 = oy0 * sh - pad_h + eky[j] * dh;
        const __m256 v = _mm256_set1_ps(val[j]);
#pragma GCC unroll 8
        for (r = 0; r < ROWS; r++) {
          const __mmask8 mr = (uint32_t)(iy0 + r * sh) < (uint32_t)in_h ? m : 0;
          acc[r] = _mm256_fmadd_ps(v, _mm256_maskz_loadu_ps(mr, src + r * rstep), acc[r]);
        }
      }
    }
    for (r = 0; r < nrows; r++) {
      __m256 a = acc[r];
      if (last) {
        a = _mm256_min_ps(vhi, _mm256_max_ps(vlo, a));
      }
      _mm256_mask_storeu_ps(yt + (long)r * out_w, out_mask, a);
    }
  }
}

/* ---- Small planes: the input packed once per call into kw shifted copies, the output plane as one vector ----
 *
 * For a group's cin_g channels, pk holds, per (ci, kx), the padded input rows shifted left by kx and cut to
 * out_w columns: pk[((ci*kw + kx)*PH + r)*out_w + ox] = x[ci][r - pad_h][ox + kx - pad_w] (0 in the padding),
 * PH = out_h + kh - 1. The input of tap (ci, ky, kx) for the whole output plane is then the contiguous block
 * of out_h*out_w floats at ((ci*kw + kx)*PH + ky)*out_w, laid out like the output plane: every nonzero is a
 * dense axpy of the plane, y += v * pk[off .. off + P), in unmasked 16-lane loads (the plane's last vector
 * over-reads into zeroed slack and is stored masked). No lane is wasted on tile borders, no mask per load.
 * The plane (up to PK_SEGMAX vectors at a time) stays in registers while all of a channel's nonzeros pass. */
#define PK_MAX 16384  /* floats of packed input per group (64 KB) */
#define PK_COLS 2048  /* cin_g*kh*kw of the column -> offset table */
#define PK_MIN_TAPS 16 /* columns per row (cin_g*kh*kw) from which the packing pays: depthwise 3x3 (9) packs as many
                        * floats per channel as it has MACs, and runs 1.6-2.7x faster in the tiles (MobileNetV1-0.25);
                        * a property of the geometry, not of out_c, so that the one-channel calls of a fused conv +
                        * pool loop take the path of the whole layer (same sums, bit for bit) */
#define PK_SEGMAX 24  /* accumulators of one plane segment */
#define PK2_MAX 16384 /* floats of the row-pair packed input (64 KB; LeNet-5 conv2 uses 12800) */
#define WIDE_MAX 16384 /* b < 8: layers of at most this many entries have their codes widened to bytes once per call */

/* A max pool fused after the convolution (prunec_f32_conv2d_rcsr_maxpool2d__avx512x4): the packed paths write
 * each output channel into `plane` instead of its slot of y and pool it at once (from L1) into channel oc of `y`;
 * NULL for the plain convolution. */
typedef struct x4_fuse {
  prunec_pool2d_params pp; /* the pool of one plane (channels 1) */
  float *plane;            /* one channel's conv output */
  float *y;                /* the pooled output, out_c planes of pool_plane floats */
  size_t pool_plane;
} x4_fuse;

static inline void fuse_pool(const x4_fuse *fz, uint32_t oc) {
  prunec_f32_maxpool2d__avx512x4(&fz->pp, fz->plane, fz->y + (size_t)oc * fz->pool_plane);
}

/* Tile rows of a strided convolution (stride_w = SW in 2..MAX_SW): lane l of a tile row is input column
 * (ox0 + l)*SW + dx - pad_w, i.e. every SW-th of the 16*SW contiguous cells from the tile's first: loaded as SW
 * vectors (masked to the cells inside the input row that a lane needs, so padding reads 0 and nothing outside
 * the row is touched) and compacted by permutes: one two-source permute per pair of vectors, and a blend for
 * SW > 2. */
typedef struct x4_slanes {
  __m512i idx[2];  /* per pair of vectors: lane l takes cell l*SW - 32*pair of the pair */
  __mmask16 pair1; /* lanes taken from the second pair (SW > 2) */
} x4_slanes;

static void slanes_init(x4_slanes *sl, int32_t sw) {
  int32_t ia[16], ib[16], l;
  uint32_t pm = 0;
  for (l = 0; l < 16; l++) {
    ia[l] = (l * sw) & 31;
    ib[l] = (l * sw - 32) & 31;
    pm |= (uint32_t)(l * sw >= 32) << l;
  }
  sl->idx[0] = _mm512_loadu_si512(ia);
  sl->idx[1] = _mm512_loadu_si512(ib);
  sl->pair1 = (__mmask16)pm;
}

static inline __attribute__((always_inline)) __m512 strided_row(const int SW, const float *src, const __mmask16 *m,
                                                               const x4_slanes *sl) {
  __m512 a = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(m[0], src), sl->idx[0], _mm512_maskz_loadu_ps(m[1], src + 16));
  if (SW > 2) {
    const __m512 c = _mm512_maskz_loadu_ps(m[2], src + 32);
    const __m512 d = SW > 3 ? _mm512_maskz_loadu_ps(m[3], src + 48) : _mm512_setzero_ps();
    a = _mm512_mask_blend_ps(sl->pair1, a, _mm512_permutex2var_ps(c, sl->idx[1], d));
  }
  return a;
}

/* Rows of packed input per (ci, kx): stride_h phases of pk_rows rows each (1 phase, out_h + kh - 1 rows at stride 1
 * and dilation 1). Phase q row j is input row j*stride_h + q - pad_h; tap ky reads phase (ky*dil_h) % stride_h from
 * its row (ky*dil_h) / stride_h on, out_h rows. */
static uint32_t pk_rows(const prunec_conv2d_params *p) {
  return p->out_h + ((p->kh - 1) * p->dil_h) / p->stride_h;
}

static int packed_fits(const prunec_conv2d_params *p) {
  const uint64_t ph = (uint64_t)p->stride_h * pk_rows(p);
  const uint64_t cin_g = p->in_c / p->groups;
  return p->stride_w <= MAX_SW && cin_g * p->kh * p->kw >= PK_MIN_TAPS && (uint64_t)cin_g * p->kw * ph * p->out_w <= PK_MAX &&
         cin_g * p->kh * p->kw <= PK_COLS;
}

/* pack_group for other strides and dilations (one store per 16 output columns of a packed row; the columns read
 * are ox*stride_w + kx*dil_w - pad_w, stride_w > 1 through strided_row). Same layout and zero slack. */
static void pack_group_any(const prunec_conv2d_params *p, const float *xg, uint32_t cin_g, float *pk, size_t twin) {
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h, kw = (int32_t)p->kw;
  const int32_t sh = (int32_t)p->stride_h, sw = (int32_t)p->stride_w, dw = (int32_t)p->dil_w;
  const int32_t rows = (int32_t)pk_rows(p);
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  x4_slanes sl;
  uint32_t ci;
  int32_t kx, q, j, ox0, k;
  slanes_init(&sl, sw);
  for (ci = 0; ci < cin_g; ci++) {
    const float *xc = xg + ci * in_plane;
    for (kx = 0; kx < kw; kx++) {
      for (ox0 = 0; ox0 < out_w; ox0 += 16) {
        const int32_t nl = out_w - ox0 < 16 ? out_w - ox0 : 16, c0 = ox0 * sw + kx * dw - pad_w;
        const __mmask16 keep = lane_range(0, nl);
        __mmask16 m[MAX_SW];
        for (k = 0; k < MAX_SW; k++) { /* vector k: cells c0 + 16k .. (sw 1: the lanes themselves) */
          m[k] = sw == 1 ? (k == 0 ? keep & lane_range(-c0, in_w - c0) : 0)
                         : (k < sw ? lane_range(-(c0 + 16 * k), in_w - (c0 + 16 * k)) &
                                         lane_range(0, (nl - 1) * sw - 16 * k + 1)
                                   : 0);
        }
        for (q = 0; q < sh; q++) {
          float *dst = pk + (((size_t)ci * (size_t)kw + (size_t)kx) * (size_t)sh + (size_t)q) * (size_t)rows *
                                (size_t)out_w + (size_t)ox0;
          for (j = 0; j < rows; j++, dst += out_w) {
            const int32_t iy = j * sh + q - pad_h;
            const float *src = xc + (long)iy * in_w + c0;
            __m512 v = _mm512_setzero_ps();
            if (iy >= 0 && iy < in_h) {
              switch (sw) {
                case 1:
                  v = _mm512_maskz_loadu_ps(m[0], src);
                  break;
                case 2:
                  v = strided_row(2, src, m, &sl);
                  break;
                case 3:
                  v = strided_row(3, src, m, &sl);
                  break;
                default:
                  v = strided_row(4, src, m, &sl);
                  break;
              }
            }
            _mm512_mask_storeu_ps(dst, keep, v);
            if (twin) {
              _mm512_mask_storeu_ps(dst + twin, keep, v);
            }
          }
        }
      }
    }
  }
  {
    const size_t total = (size_t)cin_g * (size_t)kw * (size_t)sh * (size_t)rows * (size_t)out_w;
    _mm512_storeu_ps(pk + total, _mm512_setzero_ps()); /* slack of the last vector */
    if (twin) {
      _mm512_storeu_ps(pk + twin + total, _mm512_setzero_ps());
      _mm512_storeu_ps(pk + twin + total + 16, _mm512_setzero_ps());
    }
  }
}

/* `twin` > 0: every store is also made at pk + twin (the copy shifted by 8 floats of conv_packed), from the same
 * register: copying the packed block afterwards reloaded what masked stores had just written, which the CPU
 * cannot forward (LeNet-5 conv1: ~0.25 us of stalls per call). */
static void pack_group(const prunec_conv2d_params *p, const float *xg, uint32_t cin_g, float *pk, size_t twin) {
  if (p->stride_h != 1 || p->stride_w != 1 || p->dil_h != 1 || p->dil_w != 1) {
    pack_group_any(p, xg, cin_g, pk, twin);
    return;
  }
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h, kw = (int32_t)p->kw;
  const int32_t ph = (int32_t)(p->out_h + p->kh - 1);
  const int32_t r_lo = pad_h, r_hi = in_h + pad_h < ph ? in_h + pad_h : ph; /* rows with input */
  const size_t in_plane = (size_t)p->in_h * p->in_w;
  const __m512 zero = _mm512_setzero_ps();
  uint32_t ci;
  int32_t kx, r, ox0;
#define ST8(D, M, V)                                   \
  do {                                                 \
    const __m256 v8_ = (V);                            \
    _mm256_mask_storeu_ps((D), (M), v8_);              \
    if (twin) _mm256_mask_storeu_ps((D) + twin, (M), v8_); \
  } while (0)
#define ST16(D, M, V)                                  \
  do {                                                 \
    const __m512 v16_ = (V);                           \
    _mm512_mask_storeu_ps((D), (M), v16_);             \
    if (twin) _mm512_mask_storeu_ps((D) + twin, (M), v16_); \
  } while (0)
  for (ci = 0; ci < cin_g; ci++) {
    const float *xc = xg + ci * in_plane;
    for (kx = 0; kx < kw; kx++) {
      float *blk = pk + ((size_t)ci * (size_t)kw + (size_t)kx) * (size_t)ph * (size_t)out_w;
      /* valid output columns: 0 <= ox + kx - pad_w < in_w */
      const int32_t lo = pad_w - kx, hi = in_w + pad_w - kx;
      const __mmask16 m0 = lane_range(lo, hi) & lane_range(0, out_w);
      if (out_w <= 8) {
        const __mmask8 keep8 = (__mmask8)((1u << out_w) - 1u), m8 = (__mmask8)m0;
        const float *src = xc + (long)(r_lo - pad_h) * in_w + (kx - pad_w);
        float *dst = blk;
        for (r = 0; r < r_lo; r++, dst += out_w) {
          ST8(dst, keep8, _mm256_setzero_ps());
        }
        if (out_w == 8 && m8 == 0xFF) { /* whole rows inside the input: plain loads, aligned stores */
          for (; r < r_hi; r++, dst += 8, src += in_w) {
            { const __m256 t8 = _mm256_loadu_ps(src); _mm256_store_ps(dst, t8); if (twin) _mm256_storeu_ps(dst + twin, t8); }
          }
        }
        for (; r < r_hi; r++, dst += out_w, src += in_w) {
          ST8(dst, keep8, _mm256_maskz_loadu_ps(m8, src));
        }
        for (; r < ph; r++, dst += out_w) {
          ST8(dst, keep8, _mm256_setzero_ps());
        }
        continue;
      }
      for (ox0 = 0; ox0 < out_w; ox0 += 16) {
        const __mmask16 keep = lane_range(0, out_w - ox0), m = keep & lane_range(lo - ox0, hi - ox0);
        const float *src = xc + (long)(r_lo - pad_h) * in_w + (kx - pad_w) + ox0;
        float *dst = blk + ox0;
        for (r = 0; r < r_lo; r++, dst += out_w) {
          ST16(dst, keep, zero);
        }
        for (; r < r_hi; r++, dst += out_w, src += in_w) {
          ST16(dst, keep, _mm512_maskz_loadu_ps(m, src));
        }
        for (; r < ph; r++, dst += out_w) {
          ST16(dst, keep, zero);
        }
      }
    }
  }
  {
    const size_t total = (size_t)cin_g * (size_t)kw * (size_t)ph * (size_t)out_w;
    _mm512_storeu_ps(pk + total, zero); /* slack of the last vector */
    if (twin) {
      _mm512_storeu_ps(pk + twin + total, zero);
      _mm512_storeu_ps(pk + twin + total + 16, zero);
    }
  }
#undef ST8
#undef ST16
}

/* max(a, b) with NaN propagation, as prunec_f32_maxpool2d__avx512x4 computes it (same operand order there, so
 * that a fused pool gives its bits, signed zeros included): lanes where a is NaN keep a; elsewhere MAXPS, which
 * returns its second operand b when b is NaN. */
static inline __m512 nmax(__m512 a, __m512 b) {
  return _mm512_mask_max_ps(a, _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a, b);
}

/* One segment of S vectors of the output plane (compile-time S after inlining). Small segments run two
 * nonzeros at a time into two accumulator sets, so that enough FMA chains are in flight.
 * `py` != NULL (S a multiple of 3: whole pairs of 24-float rows; a fused 2x2/2 max pool, LeNet-5 conv1 + pool1):
 * on the last chunk the segment is not stored but pooled from the registers, 12 outputs per row pair at py, as
 * the max pool kernel computes them (vertical max upper row first, then even/odd columns). */
static inline __attribute__((always_inline)) void pk_segment(const int S, const float *pk, const int32_t *off,
                                                             const float *val, uint32_t n, float *yt,
                                                             __mmask16 last_mask, int first, int last, __m512 vb,
                                                             __m512 vlo, __m512 vhi, float *py) {
  __m512 a[PK_SEGMAX], c[PK_SEGMAX];
  uint32_t j = 0;
  int i;
#pragma GCC unroll 24
  for (i = 0; i < S; i++) {
    a[i] = first ? vb : (i == S - 1 ? _mm512_maskz_loadu_ps(last_mask, yt + 16 * i) : _mm512_loadu_ps(yt + 16 * i));
  }
  if (S <= 4) {
    /* four nonzeros per step, four accumulator sets: 4*S chains */
    __m512 d[PK_SEGMAX], f[PK_SEGMAX];
#pragma GCC unroll 24
    for (i = 0; i < S; i++) {
      c[i] = d[i] = f[i] = _mm512_set1_ps(-0.0f); /* -0.0: x + -0.0 = x, signed zeros kept */
    }
    for (; j + 3 < n; j += 4) {
      const float *s0 = pk + off[j], *s1 = pk + off[j + 1], *s2 = pk + off[j + 2], *s3 = pk + off[j + 3];
      const __m512 v0 = _mm512_set1_ps(val[j]), v1 = _mm512_set1_ps(val[j + 1]);
      const __m512 v2 = _mm512_set1_ps(val[j + 2]), v3 = _mm512_set1_ps(val[j + 3]);
#pragma GCC unroll 24
      for (i = 0; i < S; i++) {
        a[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s0 + 16 * i), a[i]);
        c[i] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(s1 + 16 * i), c[i]);
        d[i] = _mm512_fmadd_ps(v2, _mm512_loadu_ps(s2 + 16 * i), d[i]);
        f[i] = _mm512_fmadd_ps(v3, _mm512_loadu_ps(s3 + 16 * i), f[i]);
      }
    }
#pragma GCC unroll 24
    for (i = 0; i < S; i++) {
      a[i] = _mm512_add_ps(_mm512_add_ps(a[i], c[i]), _mm512_add_ps(d[i], f[i]));
    }
  } else if (S <= 8) {
#pragma GCC unroll 24
    for (i = 0; i < S; i++) {
      c[i] = _mm512_set1_ps(-0.0f);
    }
    for (; j + 1 < n; j += 2) {
      const float *s0 = pk + off[j], *s1 = pk + off[j + 1];
      const __m512 v0 = _mm512_set1_ps(val[j]), v1 = _mm512_set1_ps(val[j + 1]);
#pragma GCC unroll 24
      for (i = 0; i < S; i++) {
        a[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s0 + 16 * i), a[i]);
        c[i] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(s1 + 16 * i), c[i]);
      }
    }
#pragma GCC unroll 24
    for (i = 0; i < S; i++) {
      a[i] = _mm512_add_ps(a[i], c[i]);
    }
  }
  for (; j < n; j++) {
    const float *s0 = pk + off[j];
    const __m512 v0 = _mm512_set1_ps(val[j]);
#pragma GCC unroll 24
    for (i = 0; i < S; i++) {
      a[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s0 + 16 * i), a[i]);
    }
  }
  if (S % 3 == 0 && py != NULL && last) {
    /* row pair k: vectors 3k..3k+2 = upper row cols 0..15 | upper 16..23, lower 0..7 | lower 8..23 */
    const __m512i lower_lo = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 0, 0, 0, 0);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 1, 1, 1, 1);
#pragma GCC unroll 8
    for (i = 0; i < S; i += 3) {
      const __m512 v0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a[i]));
      const __m512 v1 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a[i + 1]));
      const __m512 v2 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a[i + 2]));
      const __m512 lo16 = nmax(v0, _mm512_permutex2var_ps(v1, lower_lo, v2));  /* cols 0..15 */
      const __m512 hi8 = nmax(v1, _mm512_shuffle_f32x4(v2, v2, 0xEE));         /* cols 16..23 in lanes 0..7 */
      _mm512_mask_storeu_ps(py + 4 * i, (__mmask16)0x0FFFu,
                            nmax(_mm512_permutex2var_ps(lo16, even, hi8), _mm512_permutex2var_ps(lo16, odd, hi8)));
    }
    return;
  }
#pragma GCC unroll 24
  for (i = 0; i < S; i++) {
    __m512 v = a[i];
    if (last) {
      v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, v));
    }
    if (i == S - 1) {
      _mm512_mask_storeu_ps(yt + 16 * i, last_mask, v);
    } else {
      _mm512_storeu_ps(yt + 16 * i, v);
    }
  }
}

/* A whole row of 8-bit codes into a plane of S <= 4 vectors, decoded on the fly (no offset list): the column
 * of entry i is s + i with s the running sum of codes (FORMAT.md), its input block col_off[s + i]; four
 * entries per step into four accumulator sets. Fillers add 0 * x. */
/* `py` != NULL (paired, S = 4: an 8x8 plane; a fused 2x2/2 max pool): the plane is not stored but pooled from
 * the registers into the 16 floats at py, as the max pool kernel's rows-8-wide path does (vector i holds rows i
 * and 4 + i: the vertical max of vectors 0, 1 gives output rows 0 and 2, of 2, 3 rows 1 and 3). */
static inline __attribute__((always_inline)) void pk_row8(const int S, const int paired, const float *pk,
                                                          const int32_t *col_off,
                                                          const uint8_t *codes, const float *val, uint32_t n,
                                                          float *yt, __mmask16 last_mask, __m512 vb, __m512 vlo,
                                                          __m512 vhi, float *py) {
  __m512 a[4], c[4], d[4], f[4];
  uint32_t j = 0, s = 0;
  int i;
#pragma GCC unroll 4
  for (i = 0; i < S; i++) {
    a[i] = vb;
    c[i] = d[i] = f[i] = _mm512_set1_ps(-0.0f); /* -0.0: x + -0.0 = x, signed zeros kept */
  }
  for (; j + 3 < n; j += 4) {
    const float *s0, *s1, *s2, *s3;
    __m512 v0, v1, v2, v3;
    uint32_t q; /* four codes in one load, four values in one load and broadcast by permutes: the loop is
                 * bound by its loads (4*S vectors + 4 column-table look-ups per step) */
    __builtin_memcpy(&q, codes + j, 4);
    s += q & 0xFFu;
    s0 = pk + col_off[s + j];
    s += (q >> 8) & 0xFFu;
    s1 = pk + col_off[s + j + 1];
    s += (q >> 16) & 0xFFu;
    s2 = pk + col_off[s + j + 2];
    s += q >> 24;
    s3 = pk + col_off[s + j + 3];
    {
      const __m512 v4 = _mm512_castps128_ps512(_mm_loadu_ps(val + j));
      v0 = _mm512_permutexvar_ps(_mm512_setzero_si512(), v4);
      v1 = _mm512_permutexvar_ps(_mm512_set1_epi32(1), v4);
      v2 = _mm512_permutexvar_ps(_mm512_set1_epi32(2), v4);
      v3 = _mm512_permutexvar_ps(_mm512_set1_epi32(3), v4);
    }
#pragma GCC unroll 4
    for (i = 0; i < S; i++) {
      a[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s0 + 16 * i), a[i]);
      c[i] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(s1 + 16 * i), c[i]);
      d[i] = _mm512_fmadd_ps(v2, _mm512_loadu_ps(s2 + 16 * i), d[i]);
      f[i] = _mm512_fmadd_ps(v3, _mm512_loadu_ps(s3 + 16 * i), f[i]);
    }
  }
  if (j < n) {
    /* the last 1-3 entries without a loop (its exit would mispredict once per row): entries past the row
     * repeat the last real entry's block, their FMAs masked off */
    const uint32_t e1 = j + 1 < n ? j + 1 : j, e2 = j + 2 < n ? j + 2 : e1;
    const __mmask16 k1 = j + 1 < n ? 0xFFFF : 0, k2 = j + 2 < n ? 0xFFFF : 0;
    const float *s0, *s1, *s2;
    __m512 v0, v1, v2;
    s += codes[j];
    s0 = pk + col_off[s + j];
    s += k1 ? codes[e1] : 0u;
    s1 = pk + col_off[s + e1];
    s += k2 ? codes[e2] : 0u;
    s2 = pk + col_off[s + e2];
    v0 = _mm512_set1_ps(val[j]);
    v1 = _mm512_set1_ps(val[e1]);
    v2 = _mm512_set1_ps(val[e2]);
#pragma GCC unroll 4
    for (i = 0; i < S; i++) {
      a[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s0 + 16 * i), a[i]);
      c[i] = _mm512_mask3_fmadd_ps(v1, _mm512_loadu_ps(s1 + 16 * i), c[i], k1);
      d[i] = _mm512_mask3_fmadd_ps(v2, _mm512_loadu_ps(s2 + 16 * i), d[i], k2);
    }
  }
  if (py != NULL && paired && S == 4) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 16, 18, 20, 22, 8, 10, 12, 14, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 17, 19, 21, 23, 9, 11, 13, 15, 25, 27, 29, 31);
    __m512 v[4], m01, m23;
#pragma GCC unroll 4
    for (i = 0; i < 4; i++) {
      v[i] = _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_add_ps(_mm512_add_ps(a[i], c[i]), _mm512_add_ps(d[i], f[i]))));
    }
    m01 = nmax(v[0], v[1]);
    m23 = nmax(v[2], v[3]);
    _mm512_storeu_ps(py, nmax(_mm512_permutex2var_ps(m01, even, m23), _mm512_permutex2var_ps(m01, odd, m23)));
    return;
  }
#pragma GCC unroll 4
  for (i = 0; i < S; i++) {
    const __m512 v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_add_ps(_mm512_add_ps(a[i], c[i]), _mm512_add_ps(d[i], f[i]))));
    if (paired) { /* vector i holds output rows i and S + i (8 wide) */
      _mm256_storeu_ps(yt + 8 * i, _mm512_castps512_ps256(v));
      _mm256_storeu_ps(yt + 8 * (S + i), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    } else if (i == S - 1) {
      _mm512_mask_storeu_ps(yt + 16 * i, last_mask, v);
    } else {
      _mm512_storeu_ps(yt + 16 * i, v);
    }
  }
}

static __attribute__((noinline)) void conv_packed(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                  const float *bias, const float *x, float *y, float out_min,
                                                  float out_max, const x4_fuse *fz) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const uint32_t kw = p->kw, kh = p->kh, rows = pk_rows(p), ph = p->stride_h * rows, out_w = p->out_w;
  const uint32_t nv = (uint32_t)((out_plane + 15) / 16);
  const uint32_t nseg = (nv + PK_SEGMAX - 1) / PK_SEGMAX, seg = nseg ? (nv + nseg - 1) / nseg : 0;
  const __mmask16 tail = lane_range(0, (int32_t)(out_plane - 16 * (size_t)(nv ? nv - 1 : 0)));
  const __m512 vlo = _mm512_set1_ps(out_min), vhi = _mm512_set1_ps(out_max);
  /* a fused 2x2/2 max pool of planes 24 wide whose segments are whole row pairs (LeNet-5 pool1): pooled from the
   * registers by pk_segment, the plane never stored (the chunk path; pk_row8's planes are pooled from L1) */
  const int pool24 = fz != NULL && out_w == 24 && p->out_h % 2 == 0 && seg % 3 == 0 && nv % 3 == 0 &&
                     fz->pp.kh == 2 && fz->pp.kw == 2 && fz->pp.stride_h == 2 && fz->pp.stride_w == 2 &&
                     fz->pp.pad_h == 0 && fz->pp.pad_w == 0 && fz->pp.out_w == 12 && 2 * fz->pp.out_h == p->out_h;
  /* Planes of rows of 8 mod 16 floats (LeNet-5 conv1: 24): half of the taps' blocks start in the middle of a
   * cache line, and every load of theirs would cross one. When two copies fit, the second is shifted by 8
   * floats and those taps read it: all loads aligned. */
  const size_t total = (size_t)cin_g * kw * ph * out_w, shift_base = (total + 16 + 15) & ~(size_t)15;
  const int twin = out_w % 16 == 8 && shift_base + 8 + total + 32 <= PK_MAX + 16;
  float pk[PK_MAX + 16] __attribute__((aligned(64)));
  int32_t col_off[PK_COLS];
  int32_t off[CHUNK];
  uint8_t wide[WIDE_MAX + 64] __attribute__((aligned(64))); /* codes widened (b < 8): the layer's, or a row's / chunk's */
  const size_t len = prunec_avx512_index_len(w);
  const uint32_t e0 = w->row_ptr[0];
  const int all = w->index_bits < 8 && w->row_ptr[p->out_c] - e0 <= WIDE_MAX;
  uint32_t g, oc;
  {
    uint32_t ci, ky, kx, c = 0;
    for (ci = 0; ci < cin_g; ci++) {
      for (ky = 0; ky < kh; ky++) {
        for (kx = 0; kx < kw; kx++, c++) {
          const uint32_t dy = ky * p->dil_h; /* phase dy % stride_h, from its row dy / stride_h */
          const uint32_t o = ((ci * kw + kx) * ph + (dy % p->stride_h) * rows + dy / p->stride_h) * out_w;
          col_off[c] = (int32_t)(twin && o % 16 == 8 ? shift_base + 8 + o : o);
        }
      }
    }
  }
  if (nv == 0) {
    return;
  }
  if (all) { /* once per call: one plan, one pass (per row, the plan cost LeNet-5 conv1 ~0.4 us at b = 6) */
    prunec_avx512_widen8(w->index, len, w->index_bits, e0, w->row_ptr[p->out_c] - e0, wide);
  }
  for (g = 0; g < p->groups; g++) {
    if (twin) {
      _mm512_storeu_ps(pk + total + 16, _mm512_setzero_ps());
    }
    pack_group(p, x + (size_t)g * cin_g * in_plane, cin_g, pk, twin ? shift_base + 8 : 0);
    for (oc = g * cout_g; oc < (g + 1) * cout_g; oc++) {
      float *yp = fz != NULL ? fz->plane : y + (size_t)oc * out_plane;
      const __m512 vb = _mm512_set1_ps(bias != NULL ? bias[oc] : 0.0f);
      const uint32_t r0 = w->row_ptr[oc], end = w->row_ptr[oc + 1];
      uint32_t e = r0, s = 0;
      int first = 1;
      if (w->index_bits <= 8 && nv <= 4 && (w->index_bits == 8 || end - r0 <= PK_COLS)) {
        /* b < 8: the row's codes widened to bytes first (at most PK_COLS: one per column, fillers included) */
        const uint8_t *codes = w->index + r0;
        if (all) {
          codes = wide + (r0 - e0);
        } else if (w->index_bits != 8) {
          prunec_avx512_widen8(w->index, len, w->index_bits, r0, end - r0, wide);
          codes = wide;
        }
        const float *val = w->values + r0;
        switch (nv) {
          case 1:
            pk_row8(1, 0, pk, col_off, codes, val, end - r0, yp, tail, vb, vlo, vhi, NULL);
            break;
          case 2:
            pk_row8(2, 0, pk, col_off, codes, val, end - r0, yp, tail, vb, vlo, vhi, NULL);
            break;
          case 3:
            pk_row8(3, 0, pk, col_off, codes, val, end - r0, yp, tail, vb, vlo, vhi, NULL);
            break;
          default:
            pk_row8(4, 0, pk, col_off, codes, val, end - r0, yp, tail, vb, vlo, vhi, NULL);
            break;
        }
        if (fz != NULL) {
          fuse_pool(fz, oc);
        }
        continue;
      }
      float *const py24 = pool24 ? fz->y + (size_t)oc * fz->pool_plane : NULL;
      do {
        uint32_t n, s0;
        int last;
        /* Offsets of this chunk's entries, fillers included (value 0: they add 0 * x, FORMAT.md). With
         * s the running sum of codes, entry e of the row (i-th from its start) is column s + i: one add
         * per entry on the carried chain. */
        const uint32_t c0 = e, stop = end - e > CHUNK ? e + CHUNK : end;
        const float *val = w->values + c0;
#define PRUNEC_PK_DECODE(CODE)         \
  for (; e < stop; e++) {              \
    s += (CODE);                       \
    off[e - c0] = col_off[s + (e - r0)]; \
  }
        if (w->index_bits == 8) {
          PRUNEC_PK_DECODE(w->index[e])
        } else if (w->index_bits == 4) {
          PRUNEC_PK_DECODE((uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu)
        } else if (w->index_bits == 16) {
          PRUNEC_PK_DECODE((uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8))
        } else if (all) {
          PRUNEC_PK_DECODE(wide[e - e0])
        } else if (w->index_bits < 8) { /* other widths: the chunk's codes widened to bytes first */
          prunec_avx512_widen8(w->index, len, w->index_bits, c0, stop - c0, wide);
          PRUNEC_PK_DECODE(wide[e - c0])
        } else {
          PRUNEC_PK_DECODE(prunec_rcsr_code_any(w->index, e, w->index_bits))
        }
#undef PRUNEC_PK_DECODE
        n = stop - c0;
        last = e >= end;
        for (s0 = 0; s0 < nv; s0 += seg) {
          const uint32_t sv = nv - s0 < seg ? nv - s0 : seg; /* vectors in this segment */
          const __mmask16 lm = s0 + sv == nv ? tail : (__mmask16)0xFFFFu;
          const float *src = pk + 16 * (size_t)s0;
          float *yt = yp + 16 * (size_t)s0;
          switch (sv) {
#define PRUNEC_PK_CASE(S)                                                        \
  case S:                                                                        \
    pk_segment(S, src, off, val, n, yt, lm, first, last, vb, vlo, vhi, py24 != NULL ? py24 + 4 * (size_t)s0 : NULL); \
    break;
            PRUNEC_PK_CASE(1) PRUNEC_PK_CASE(2) PRUNEC_PK_CASE(3) PRUNEC_PK_CASE(4) PRUNEC_PK_CASE(5)
            PRUNEC_PK_CASE(6) PRUNEC_PK_CASE(7) PRUNEC_PK_CASE(8) PRUNEC_PK_CASE(9) PRUNEC_PK_CASE(10)
            PRUNEC_PK_CASE(11) PRUNEC_PK_CASE(12) PRUNEC_PK_CASE(13) PRUNEC_PK_CASE(14) PRUNEC_PK_CASE(15)
            PRUNEC_PK_CASE(16) PRUNEC_PK_CASE(17) PRUNEC_PK_CASE(18) PRUNEC_PK_CASE(19) PRUNEC_PK_CASE(20)
            PRUNEC_PK_CASE(21) PRUNEC_PK_CASE(22) PRUNEC_PK_CASE(23) default: PRUNEC_PK_CASE(24)
#undef PRUNEC_PK_CASE
          }
        }
        first = 0;
      } while (e < end);
      if (fz != NULL && !pool24) {
        fuse_pool(fz, oc);
      }
    }
  }
}

/* ---- 8 columns, an even number of rows <= 8 (LeNet-5's conv2: 8x8), 8-bit codes ----
 * As the packed path, but vector i of the plane holds output rows i and S + i (S = out_h / 2), and the packed
 * input of (ci, kx) is R = S + kh - 1 such row pairs of 16 floats: q[r] = (input row r | input row r + S),
 * shifted by kx. Tap (ci, ky, kx) reads q[ky .. ky + S): every load is a whole aligned line, where the
 * row-major plane of 8-wide rows puts half of the taps across line boundaries. */
static int paired_fits(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w) {
  const uint64_t cin_g = p->in_c / p->groups, s = p->out_h / 2;
  return w->index_bits <= 8 && p->out_w == 8 && p->out_h % 2 == 0 && p->out_h >= 2 && p->out_h <= 8 &&
         p->in_w + 2 * p->pad_w <= 16 && p->kh <= 16 && p->kw <= 9 &&
         cin_g * p->kw * (s + p->kh - 1) * 16 <= PK2_MAX && cin_g * p->kh * p->kw <= PK_COLS;
}

static __attribute__((noinline)) void conv_paired8(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                   const float *bias, const float *x, float *y, float out_min,
                                                   float out_max, const x4_fuse *fz) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const uint32_t kw = p->kw, kh = p->kh, S = p->out_h / 2, R = S + p->kh - 1;
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, pad_w = (int32_t)p->pad_w;
  const int32_t pad_h = (int32_t)p->pad_h;
  const __m512 vlo = _mm512_set1_ps(out_min), vhi = _mm512_set1_ps(out_max);
  /* a fused 2x2/2 max pool of 8x8 planes (LeNet-5 pool2): pooled in registers, the plane never stored */
  const int pool4 = fz != NULL && S == 4 && fz->pp.kh == 2 && fz->pp.kw == 2 && fz->pp.stride_h == 2 &&
                    fz->pp.stride_w == 2 && fz->pp.pad_h == 0 && fz->pp.pad_w == 0 && fz->pp.out_h == 4 &&
                    fz->pp.out_w == 4;
  float pk[PK2_MAX] __attribute__((aligned(64)));
  uint8_t wide[WIDE_MAX + 64] __attribute__((aligned(64))); /* codes widened (b < 8): the layer's, or a row's */
  const size_t len = prunec_avx512_index_len(w);
  const uint32_t e0 = w->row_ptr[0];
  const int all = w->index_bits < 8 && w->row_ptr[p->out_c] - e0 <= WIDE_MAX;
  int32_t col_off[PK_COLS];
  __m512i shift[16];
  uint32_t g, oc, ci, ky, r, c = 0;
  int32_t kx;
  for (kx = 0; kx < (int32_t)kw; kx++) {
    /* lanes 0-7: a[kx .. kx+7], lanes 8-15: b[kx .. kx+7] (index 16 + i selects b[i]) */
    shift[kx] = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                                 _mm512_set1_epi32(kx));
  }
  for (ky = 0; ky < kh; ky++) { /* the taps of input channel 0; channel ci's are those plus its block */
    for (kx = 0; kx < (int32_t)kw; kx++, c++) {
      col_off[c] = (int32_t)(((uint32_t)kx * R + ky) * 16u);
    }
  }
  for (ci = 1; ci < cin_g; ci++) {
    const int32_t step = (int32_t)(ci * kw * R * 16u);
    for (c = 0; c < kh * kw; c++) {
      col_off[ci * kh * kw + c] = col_off[c] + step;
    }
  }
  if (all) {
    prunec_avx512_widen8(w->index, len, w->index_bits, e0, w->row_ptr[p->out_c] - e0, wide);
  }
  for (g = 0; g < p->groups; g++) {
    const float *xg = x + (size_t)g * cin_g * in_plane;
    if (pad_w == 0 && pad_h == 0 && in_w >= (int32_t)kw + 7 && in_h >= (int32_t)(R + S)) {
      /* No padding (LeNet-5): every pair lies inside the input. Rows r and r + S are loaded once (in_w <= 16
       * lanes) and pair r of every copy kx is one two-source permute of them and one aligned store: 2 loads per
       * kw stores, where joining two unaligned 256-bit loads per store took 2 per store (and the permute path
       * below, with its rows in an array, spills them: conv2's packing 0.63 -> 0.44 us -> ~0.39 us). */
      const __mmask16 mrow = (__mmask16)(in_w >= 16 ? 0xFFFFu : (1u << in_w) - 1u);
      for (ci = 0; ci < cin_g; ci++) {
        const float *src = xg + ci * in_plane;
        float *q = pk + (size_t)ci * kw * R * 16;
        for (r = 0; r < R; r++, src += in_w) {
          const __m512 a = _mm512_maskz_loadu_ps(mrow, src), b = _mm512_maskz_loadu_ps(mrow, src + (size_t)S * (size_t)in_w);
          for (kx = 0; kx < (int32_t)kw; kx++) {
            _mm512_store_ps(q + ((size_t)kx * R + r) * 16, _mm512_permutex2var_ps(a, shift[kx], b));
          }
        }
      }
    } else {
      /* Each padded input row is loaded once (as lanes 0 .. in_w + 2*pad_w - 1 <= 15 of a vector); pair j of
       * copy kx is one two-source permute of rows j and j + S, one aligned store. */
      for (ci = 0; ci < cin_g; ci++) {
        const float *xc = xg + ci * in_plane;
        const uint32_t ph = p->out_h + kh - 1;
        const __mmask16 mrow = lane_range(pad_w, pad_w + in_w);
        float *q = pk + (size_t)ci * kw * R * 16;
        __m512 rows[24];
        for (r = 0; r < 24; r++) { /* ph <= 23 */
          const int32_t iy = (int32_t)r - pad_h;
          rows[r] = r < ph && iy >= 0 && iy < in_h ? _mm512_maskz_loadu_ps(mrow, xc + (long)iy * in_w - pad_w)
                                                   : _mm512_setzero_ps();
        }
        for (kx = 0; kx < (int32_t)kw; kx++) {
          for (r = 0; r < R; r++, q += 16) {
            _mm512_store_ps(q, _mm512_permutex2var_ps(rows[r], shift[kx], rows[r + S]));
          }
        }
      }
    }
    for (oc = g * cout_g; oc < (g + 1) * cout_g; oc++) {
      float *yp = fz != NULL ? fz->plane : y + (size_t)oc * out_plane;
      const __m512 vb = _mm512_set1_ps(bias != NULL ? bias[oc] : 0.0f);
      const uint32_t r0 = w->row_ptr[oc], n = w->row_ptr[oc + 1] - r0;
      const uint8_t *codes = w->index + r0;
      const float *val = w->values + r0;
      if (all) {
        codes = wide + (r0 - e0);
      } else if (w->index_bits != 8) { /* b < 8: the row's codes widened to bytes (rows of <= PK_COLS entries) */
        prunec_avx512_widen8(w->index, len, w->index_bits, r0, n, wide);
        codes = wide;
      }
      switch (S) {
        case 1:
          pk_row8(1, 1, pk, col_off, codes, val, n, yp, 0xFFFF, vb, vlo, vhi, NULL);
          break;
        case 2:
          pk_row8(2, 1, pk, col_off, codes, val, n, yp, 0xFFFF, vb, vlo, vhi, NULL);
          break;
        case 3:
          pk_row8(3, 1, pk, col_off, codes, val, n, yp, 0xFFFF, vb, vlo, vhi, NULL);
          break;
        default:
          if (pool4) {
            pk_row8(4, 1, pk, col_off, codes, val, n, yp, 0xFFFF, vb, vlo, vhi, fz->y + (size_t)oc * 16u);
          } else {
            pk_row8(4, 1, pk, col_off, codes, val, n, yp, 0xFFFF, vb, vlo, vhi, NULL);
          }
          break;
      }
      if (fz != NULL && !pool4) {
        fuse_pool(fz, oc);
      }
    }
  }
}

/* One tile (rows oy0.., columns ox0..ox0+15) of a strided convolution: n nonzeros into acc. `smask` holds, per
 * (kx, tile), the SW load masks; rows whose input row is in the padding load nothing. */
static inline __attribute__((always_inline)) void strided_tile(const int SW, const float *base, long rstep,
                                                              int32_t iy_base, int32_t sh, int32_t dh, int32_t in_h,
                                                              uint32_t n, const int32_t *off, const uint8_t *eky,
                                                              const uint8_t *ekx, const float *val,
                                                              __mmask16 (*smask)[MAX_TILES][MAX_SW], int32_t t,
                                                              const x4_slanes *sl, int interior, __m512 *acc) {
  uint32_t j;
  int32_t r;
  for (j = 0; j < n; j++) {
    const __mmask16 *m = smask[ekx[j]][t];
    const float *src = base + off[j];
    const __m512 v = _mm512_set1_ps(val[j]);
    const int32_t iy0 = iy_base + eky[j] * dh;
#pragma GCC unroll 8
    for (r = 0; r < ROWS; r++) {
      if (interior || (uint32_t)(iy0 + r * sh) < (uint32_t)in_h) {
        acc[r] = _mm512_fmadd_ps(v, strided_row(SW, src + r * rstep, m, sl), acc[r]);
      }
    }
  }
}

/* Register tiles of 8 rows x 16 (or 8) columns: planes too large for the packed paths, any stride (stride_w up to
 * MAX_SW; wider ones take the generic loop) and dilation. */
static __attribute__((noinline)) void conv_tiled(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                 const prunec_dense_f32 *wd, const float *bias, const float *x,
                                                 float *y, float out_min, float out_max) {
  const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const int32_t in_w = (int32_t)p->in_w, in_h = (int32_t)p->in_h, out_w = (int32_t)p->out_w;
  const int32_t out_h = (int32_t)p->out_h, pad_w = (int32_t)p->pad_w, pad_h = (int32_t)p->pad_h;
  const int32_t sw = (int32_t)p->stride_w, sh = (int32_t)p->stride_h, dw = (int32_t)p->dil_w, dh = (int32_t)p->dil_h;
  const long rstep = (long)sh * in_w; /* input floats from one output row to the next */
  const int32_t ntiles = (out_w + 15) / 16;
  const __m512 vlo = _mm512_set1_ps(out_min), vhi = _mm512_set1_ps(out_max);
  __mmask16 mtab[MAX_KW][MAX_TILES];
  __mmask16 smask[MAX_KW][MAX_TILES][MAX_SW]; /* sw > 1 */
  __mmask8 mtab8[MAX_KW];
  x4_slanes sl;
  int32_t col_off[MAX_COLS];
  uint8_t col_ky[MAX_COLS], col_kx[MAX_COLS];
  int32_t off[CHUNK];
  uint8_t eky[CHUNK], ekx[CHUNK];
  float val[CHUNK];
  uint32_t oc;
  {
    int32_t kx, t, k;
    uint32_t ci, ky, c = 0;
    for (kx = 0; kx < (int32_t)p->kw; kx++) {
      for (t = 0; t < ntiles; t++) {
        const int32_t ox0 = 16 * t, nl = out_w - ox0 < 16 ? out_w - ox0 : 16;
        mtab[kx][t] = col_mask(kx * dw, ox0, in_w, out_w, pad_w);
        if (sw > 1) {
          /* vector k holds cells 16k .. 16k+15 from input column ox0*sw + kx*dw - pad_w; the lanes use cells
           * 0, sw, .., (nl-1)*sw */
          for (k = 0; k < MAX_SW; k++) {
            const int32_t c0 = ox0 * sw + kx * dw - pad_w + 16 * k;
            smask[kx][t][k] = k < sw ? lane_range(-c0, in_w - c0) & lane_range(0, (nl - 1) * sw - 16 * k + 1) : 0;
          }
        }
      }
      mtab8[kx] = (__mmask8)mtab[kx][0];
    }
    slanes_init(&sl, sw);
    /* Column -> (input offset, ky, kx), once per call: decoding a nonzero is then table look-ups, without
     * the divisions or the data-dependent carry loops that mispredict on random gaps. */
    for (ci = 0; ci < cin_g; ci++) {
      for (ky = 0; ky < p->kh; ky++) {
        for (kx = 0; kx < (int32_t)p->kw; kx++, c++) {
          col_off[c] = (int32_t)(ci * in_plane + ky * (uint32_t)dh * p->in_w + (uint32_t)(kx * dw));
          col_ky[c] = (uint8_t)ky;
          col_kx[c] = (uint8_t)kx;
        }
      }
    }
  }
  for (oc = 0; oc < p->out_c; oc++) {
    float *yp = y + (size_t)oc * out_plane;
    const float *xg = x + (size_t)(oc / cout_g) * cin_g * in_plane;
    const __m512 vb = _mm512_set1_ps(bias != NULL ? bias[oc] : 0.0f);
    /* w: entries row_ptr[oc] .. row_ptr[oc+1]-1; wd (dense weights, w NULL): the row's columns */
    uint32_t e = w != NULL ? w->row_ptr[oc] : 0u;
    const uint32_t end = w != NULL ? w->row_ptr[oc + 1] : wd->cols;
    const float *drow = w != NULL ? NULL : wd->values + (size_t)oc * wd->cols;
    uint32_t next = 0;
    int first = 1;
    do {
      /* Decode up to CHUNK nonzeros of this output channel. */
      uint32_t n = 0, j;
      int32_t oy0, t, r;
      int last;
#define PRUNEC_X4_DECODE(CODE)                                                            \
  for (; e < end && n < CHUNK; e++) {                                                     \
    const uint32_t col = next + (CODE);                                                   \
    const float v = w->values[e];                                                         \
    next = col + 1;                                                                       \
    off[n] = col_off[col];                                                                \
    eky[n] = col_ky[col];                                                                 \
    ekx[n] = col_kx[col];                                                                 \
    val[n] = v;                                                                           \
    n += v != 0.0f; /* fillers are overwritten by the next entry */                       \
  }
      if (drow != NULL) { /* dense: every weight of the row, zeros included (0 * inf is NaN, as in PyTorch and
                           * the portable twin) */
        for (; e < end && n < CHUNK; e++, n++) {
          off[n] = col_off[e];
          eky[n] = col_ky[e];
          ekx[n] = col_kx[e];
          val[n] = drow[e];
        }
      } else if (w->index_bits == 8) {
        PRUNEC_X4_DECODE(w->index[e])
      } else if (w->index_bits == 4) {
        PRUNEC_X4_DECODE((uint32_t)(w->index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu)
      } else if (w->index_bits == 16) {
        PRUNEC_X4_DECODE((uint32_t)w->index[2u * e] | ((uint32_t)w->index[2u * e + 1u] << 8))
      } else {
        PRUNEC_X4_DECODE(prunec_rcsr_code_any(w->index, e, w->index_bits))
      }
#undef PRUNEC_X4_DECODE
      last = e >= end;
      if (out_w <= 8 && sw == 1) {
        tiles8(p, xg, yp, n, off, eky, mtab8, ekx, val, first, last, bias != NULL ? bias[oc] : 0.0f, out_min, out_max);
        first = 0;
        continue;
      }
      for (oy0 = 0; oy0 < out_h; oy0 += ROWS) {
        const int32_t nrows = out_h - oy0 < ROWS ? out_h - oy0 : ROWS;
        const int interior = nrows == ROWS && oy0 * sh - pad_h >= 0 &&
                             (oy0 + ROWS - 1) * sh + ((int32_t)p->kh - 1) * dh - pad_h < in_h;
        for (t = 0; t < ntiles; t++) {
          const int32_t ox0 = 16 * t;
          const __mmask16 out_mask = lane_range(0, out_w - ox0);
          float *yt = yp + (size_t)oy0 * p->out_w + ox0;
          const float *base = xg + (long)(oy0 * sh - pad_h) * in_w + (ox0 * sw - pad_w);
          __m512 acc[ROWS];
          for (r = 0; r < ROWS; r++) {
            acc[r] = first || r >= nrows ? vb : _mm512_maskz_loadu_ps(out_mask, yt + (long)r * out_w);
          }
          if (sw == 2) {
            strided_tile(2, base, rstep, oy0 * sh - pad_h, sh, dh, in_h, n, off, eky, ekx, val, smask, t, &sl,
                         interior, acc);
          } else if (sw == 3) {
            strided_tile(3, base, rstep, oy0 * sh - pad_h, sh, dh, in_h, n, off, eky, ekx, val, smask, t, &sl,
                         interior, acc);
          } else if (sw == 4) {
            strided_tile(4, base, rstep, oy0 * sh - pad_h, sh, dh, in_h, n, off, eky, ekx, val, smask, t, &sl,
                         interior, acc);
          } else if (interior) {
            for (j = 0; j < n; j++) {
              const __mmask16 m = mtab[ekx[j]][t];
              const float *src = base + off[j];
              const __m512 v = _mm512_set1_ps(val[j]);
#pragma GCC unroll 8
              for (r = 0; r < ROWS; r++) {
                acc[r] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, src + r * rstep), acc[r]);
              }
            }
          } else {
            for (j = 0; j < n; j++) {
              const __mmask16 m = mtab[ekx[j]][t];
              const float *src = base + off[j];
              const int32_t iy0 = oy0 * sh - pad_h + eky[j] * dh; /* input row of the tile's first row */
              const __m512 v = _mm512_set1_ps(val[j]);
#pragma GCC unroll 8
              for (r = 0; r < ROWS; r++) {
                /* Rows in the padding (or past the plane) read nothing: an all-false mask. */
                const __mmask16 mr = (uint32_t)(iy0 + r * sh) < (uint32_t)in_h ? m : 0;
                acc[r] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mr, src + r * rstep), acc[r]);
              }
            }
          }
          for (r = 0; r < nrows; r++) {
            __m512 a = acc[r];
            if (last) {
              a = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a));
            }
            _mm512_mask_storeu_ps(yt + (long)r * out_w, out_mask, a);
          }
        }
      }
      first = 0;
    } while (e < end);
  }
}

/* Geometries the register tiles take (the rest: the direct loop). */
static int tiles_fit(const prunec_conv2d_params *p) {
  return p->stride_w <= MAX_SW && p->kw <= MAX_KW && p->kh <= MAX_KH && (p->out_w + 15) / 16 <= MAX_TILES &&
         (p->in_c / p->groups) * p->kh * p->kw <= MAX_COLS;
}

void prunec_f32_conv2d_rcsr__avx512x4(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                      const float *x, float *y, float out_min, float out_max) {
  const int unit = p->stride_w == 1 && p->stride_h == 1 && p->dil_w == 1 && p->dil_h == 1;
  if (!prunec_rcsr_valid_bits(w->index_bits)) {
    size_t i, n = (size_t)p->out_c * p->out_h * p->out_w;
    for (i = 0; i < n; i++) {
      y[i] = __builtin_nanf("");
    }
    return;
  }
  if (unit && paired_fits(p, w) && (w->index_bits == 8 || rows_at_most(w, p->out_c, PK_COLS))) {
    conv_paired8(p, w, bias, x, y, out_min, out_max, NULL);
  } else if (packed_fits(p)) {
    conv_packed(p, w, bias, x, y, out_min, out_max, NULL);
  } else if (!tiles_fit(p)) {
    conv_generic(p, w, bias, x, y, out_min, out_max);
  } else {
    conv_tiled(p, w, NULL, bias, x, y, out_min, out_max);
  }
}

/* Dense weights (a layer that `prunec build` stores dense because that is smaller: MobileNet's depthwise 3x3, whose
 * 9 taps per channel cost as many bytes in relative-indexed CSR): the register tiles over every weight of the row.
 * Twin of prunec_f32_conv2d_dense__portable, which takes the geometries the tiles do not
 * (MobileNetV1-0.25's eight dense depthwise layers: 145 -> ~25 us, docs/BENCHMARKS.md). */
void prunec_f32_conv2d_dense__avx512x4(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias,
                                       const float *x, float *y, float out_min, float out_max) {
  if (tiles_fit(p)) {
    conv_tiled(p, NULL, w, bias, x, y, out_min, out_max);
  } else {
    prunec_f32_conv2d_dense__portable(p, w, bias, x, y, out_min, out_max);
  }
}

/* The convolution with the max pool after it fused (prunec.fuse; the twin of
 * prunec_f32_conv2d_rcsr_maxpool2d__portable): where the convolution takes a packed path (stride 1, the group's
 * packed input fits), the input is packed once per call and each output channel, computed into `plane` (L1),
 * is max-pooled at once by prunec_f32_maxpool2d__avx512x4 (its 2x2/2 fast path, any other pool geometry by the
 * portable pool; NaN propagates as there). Other geometries run the per-channel loop of a fused build: this
 * file's convolution over a one-row view into the plane, then the pool. Either way each output is the unfused
 * avx512x4 conv + pool's bit for bit (the paths compute each channel alone, in the same order). */
void prunec_f32_conv2d_rcsr_maxpool2d__avx512x4(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                const float *bias, const prunec_pool2d_params *pp, const float *x,
                                                float *plane, float *y, float out_min, float out_max) {
  const int unit = p->stride_w == 1 && p->stride_h == 1 && p->dil_w == 1 && p->dil_h == 1;
  x4_fuse fz;
  fz.pp = *pp;
  fz.pp.channels = 1u;
  fz.plane = plane;
  fz.y = y;
  fz.pool_plane = (size_t)pp->out_h * pp->out_w;
  if (!prunec_rcsr_valid_bits(w->index_bits)) {
    size_t i, n = (size_t)p->out_c * fz.pool_plane;
    for (i = 0; i < n; i++) {
      y[i] = __builtin_nanf("");
    }
    return;
  }
  if (unit && paired_fits(p, w) && (w->index_bits == 8 || rows_at_most(w, p->out_c, PK_COLS))) {
    conv_paired8(p, w, bias, x, NULL, out_min, out_max, &fz);
  } else if (packed_fits(p)) {
    conv_packed(p, w, bias, x, NULL, out_min, out_max, &fz);
  } else {
    const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const size_t in_plane = (size_t)p->in_h * p->in_w;
    prunec_conv2d_params pc = *p;
    uint32_t c;
    pc.in_c = cin_g;
    pc.out_c = 1u;
    pc.groups = 1u;
    for (c = 0; c < p->out_c; c++) {
      prunec_rcsr_f32 wc = *w;
      wc.rows = 1u;
      wc.row_ptr = w->row_ptr + c;
      prunec_f32_conv2d_rcsr__avx512x4(&pc, &wc, bias != NULL ? bias + c : NULL,
                                       x + (size_t)(c / cout_g) * cin_g * in_plane, plane, out_min, out_max);
      fuse_pool(&fz, c);
    }
  }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int prunec_f32_conv2d_rcsr_avx512x4_unavailable;
#endif /* PRUNEC_HAVE_AVX512 && __AVX512VL__ */
