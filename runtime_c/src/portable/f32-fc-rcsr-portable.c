/*
 * Sparse fully connected layer, portable C99: y = clamp(W x + bias) with W in relative-indexed CSR.
 *
 * Format (prunec_types.h, docs/FORMAT.md): row r owns entries row_ptr[r] .. row_ptr[r+1]-1; entry e has a
 * value and a b-bit code c_e, and its column is col(e-1) + c_e + 1, starting from col = -1 in each row.
 * Fillers are ordinary entries of value 0, so the loops need no special case for them.
 *
 * The column is decoded on the fly: `next` holds col(e-1) + 1, so col(e) = next + c_e. Each b has its own
 * loop (chosen once by the switch at the top) so that the code extraction is a constant shift and mask.
 * Each row is summed in entry order into one accumulator starting from the bias: the reference summation
 * order that ISA variants are compared against (up to fp32 reassociation).
 */
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

static void fc_rcsr_b4(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float lo,
                       float hi) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    float acc = bias != NULL ? bias[r] : 0.0f;
    uint32_t next = 0;
    uint32_t e;
    for (e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
      /* Two codes per byte: even entries in the low nibble, odd entries in the high nibble. */
      const uint32_t col = next + ((uint32_t)(index[e >> 1] >> ((e & 1u) << 2)) & 0x0Fu);
      acc += values[e] * x[col];
      next = col + 1;
    }
    y[r] = prunec_clampf(acc, lo, hi);
  }
}

static void fc_rcsr_b8(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float lo,
                       float hi) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    float acc = bias != NULL ? bias[r] : 0.0f;
    uint32_t next = 0;
    uint32_t e;
    for (e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
      const uint32_t col = next + index[e];
      acc += values[e] * x[col];
      next = col + 1;
    }
    y[r] = prunec_clampf(acc, lo, hi);
  }
}

static void fc_rcsr_b16(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float lo,
                        float hi) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *row_ptr = w->row_ptr;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    float acc = bias != NULL ? bias[r] : 0.0f;
    uint32_t next = 0;
    uint32_t e;
    for (e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
      /* Little-endian 16-bit codes, read bytewise: no alignment or host-endianness assumption. */
      const uint32_t code = (uint32_t)index[2u * e] | ((uint32_t)index[2u * e + 1u] << 8);
      const uint32_t col = next + code;
      acc += values[e] * x[col];
      next = col + 1;
    }
    y[r] = prunec_clampf(acc, lo, hi);
  }
}

#if PRUNEC_RCSR_ODD_WIDTHS /* prunec_config.h */
/* Any other width b in 1..16 (prunec_types.h): the codes of a row are one LSB-first bit stream, read in order
 * through prunec_rcsr_bitreader (never past the stream's end). */
static void fc_rcsr_bany(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float lo,
                         float hi) {
  const float *values = w->values;
  const uint32_t *row_ptr = w->row_ptr;
  const uint32_t bits = w->index_bits;
  uint32_t r;
  for (r = 0; r < w->rows; r++) {
    float acc = bias != NULL ? bias[r] : 0.0f;
    uint32_t next = 0;
    uint32_t e = row_ptr[r];
    prunec_rcsr_bitreader rd;
    prunec_rcsr_bits_init(&rd, w->index, e, row_ptr[r + 1] - e, bits);
    for (; e < row_ptr[r + 1]; e++) {
      const uint32_t col = next + prunec_rcsr_bits_next(&rd, bits);
      acc += values[e] * x[col];
      next = col + 1;
    }
    y[r] = prunec_clampf(acc, lo, hi);
  }
}
#endif

void prunec_f32_fc_rcsr__portable(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                  float out_min, float out_max) {
  uint32_t r;
  switch (w->index_bits) {
    case 4:
      fc_rcsr_b4(w, bias, x, y, out_min, out_max);
      break;
    case 8:
      fc_rcsr_b8(w, bias, x, y, out_min, out_max);
      break;
    case 16:
      fc_rcsr_b16(w, bias, x, y, out_min, out_max);
      break;
    default:
#if PRUNEC_RCSR_ODD_WIDTHS
      if (prunec_rcsr_valid_bits(w->index_bits)) {
        fc_rcsr_bany(w, bias, x, y, out_min, out_max);
        break;
      }
#endif
      /* Not a valid encoding: make the output visibly wrong rather than leave it stale. */
      for (r = 0; r < w->rows; r++) {
        y[r] = NAN;
      }
      break;
  }
}
