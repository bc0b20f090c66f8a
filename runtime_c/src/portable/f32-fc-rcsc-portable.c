/*
 * Sparse fully connected layer that skips zero inputs, portable C99: y = clamp(W x + bias), with W stored
 * column by column: the relative-indexed CSR of W's transpose (docs/FORMAT.md "Column-major fc layers").
 *
 * `w` describes W^T: w->rows is the layer's input width, w->cols its output width; "row" j of w holds the
 * weights that input x[j] feeds, and an entry's "column" is the output it adds to. So the work is a scatter:
 * y = bias, then for each input j with x[j] != 0, y[out] += value * x[j] over the entries of column j. An input
 * that is zero costs one compare: after a ReLU, most of a layer's inputs often are (the dynamic activation
 * sparsity of Han et al.'s EIE), and the work falls with them; the row-major kernel reads every entry whatever x.
 *
 * Each output is summed in input order starting from its bias, the order of prunec_f32_fc_rcsr__portable, so
 * with finite inputs the two give the same floats (a skipped x[j] == 0 would have added a zero product; the one
 * difference: a sum that is -0.0 stays -0.0 where adding +0.0 products would have made it +0.0). A NaN or inf
 * input is never skipped. y must not alias x (it is written while x is read).
 */
#include <math.h>

#include "prunec_kernels.h"
#include "prunec_rcsr_util.h"

/* 4- and 16-bit codes, read by prunec_rcsr_code (nibbles; little-endian halfwords bytewise, no alignment or
 * host-endianness assumption); `bits` is a constant at each call, so each width gets its own loop. */
PRUNEC_ALWAYS_INLINE void fc_rcsc_coded(const prunec_rcsr_f32 *w, const float *x, float *y, const uint32_t bits) {
  const float *values = w->values;
  const uint8_t *index = w->index;
  const uint32_t *ptr = w->row_ptr;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    float *yp = y; /* at y[next output] */
    uint32_t e;
    if (xj == 0.0f) {
      continue;
    }
    for (e = ptr[j]; e < ptr[j + 1]; e++) {
      yp += prunec_rcsr_code(index, e, bits);
      *yp++ += values[e] * xj;
    }
  }
}

static void fc_rcsc_b8(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    const uint32_t end = ptr[j + 1];
    const float *v;
    const uint8_t *c;
    float *yp = y; /* at y[next output] */
    uint32_t e;
    if (xj == 0.0f) {
      continue;
    }
    e = ptr[j];
    v = w->values + e;
    c = w->index + e;
    /* Four entries per step, their outputs distinct: all loads first (the values may alias y as far as the
     * compiler knows, which would order each load after the previous store), then the four stores. p is kept
     * at y + out(previous entry) + 1 - k for the step's k-th entry, so that entry k is p[k]: one add of the code
     * per entry and immediate offsets (Cortex-M's FPU loads have no register-offset form). */
    for (; e + 4u <= end; e += 4u, v += 4, c += 4) {
      float *p = yp;
      float *p0, *p1, *p2, *p3;
      float v0, v1, v2, v3, a0, a1, a2, a3;
      p += c[0];
      p0 = p;
      p += c[1];
      p1 = p + 1;
      p += c[2];
      p2 = p + 2;
      p += c[3];
      p3 = p + 3;
      v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
      a0 = *p0, a1 = *p1, a2 = *p2, a3 = *p3;
      *p0 = a0 + v0 * xj;
      *p1 = a1 + v1 * xj;
      *p2 = a2 + v2 * xj;
      *p3 = a3 + v3 * xj;
      yp = p + 4;
    }
    for (; e < end; e++) {
      yp += *c++;
      *yp++ += *v++ * xj;
    }
  }
}

#if PRUNEC_RCSR_ODD_WIDTHS /* prunec_config.h */
static void fc_rcsc_bany(const prunec_rcsr_f32 *w, const float *x, float *y) {
  const uint32_t *ptr = w->row_ptr;
  const uint32_t bits = w->index_bits;
  uint32_t j;
  for (j = 0; j < w->rows; j++) {
    const float xj = x[j];
    float *yp = y;
    uint32_t e = ptr[j];
    prunec_rcsr_bitreader rd;
    if (xj == 0.0f) {
      continue;
    }
    prunec_rcsr_bits_init(&rd, w->index, e, ptr[j + 1] - e, bits);
    for (; e < ptr[j + 1]; e++) {
      yp += prunec_rcsr_bits_next(&rd, bits);
      *yp++ += w->values[e] * xj;
    }
  }
}
#endif

void prunec_f32_fc_rcsc__portable(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                  float out_min, float out_max) {
  const uint32_t n = w->cols;
  if (prunec_rcsr_bad_bits(w, y, n)) {
    return;
  }
  prunec_rcsc_start(y, bias, n);
  switch (w->index_bits) {
    case 4:
      fc_rcsc_coded(w, x, y, 4);
      break;
    case 8:
      fc_rcsc_b8(w, x, y);
      break;
    case 16:
      fc_rcsc_coded(w, x, y, 16);
      break;
    default:
#if PRUNEC_RCSR_ODD_WIDTHS
      fc_rcsc_bany(w, x, y);
#endif
      break;
  }
  prunec_rcsc_finish(y, n, out_min, out_max);
}
