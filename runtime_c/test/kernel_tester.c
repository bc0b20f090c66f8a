/*
 * One tester for every ISA kernel against its portable twin (and the portable kernels against a naive
 * double-precision reference). It includes the registry (kernels.inc): every registered kernel is declared
 * weak, so a kernel whose ISA the build does not enable (its file compiles to nothing) is a null pointer
 * and is skipped; every other kernel of a tested op runs on every case.
 *
 * Cases are deterministic (xorshift32, fixed seeds) and cover: rows and columns around the vector widths
 * (1,3,4,5,7,8,9,15,16,17,31,32,33), empty rows, all-zero layers, gaps beyond 2^b for b = 4, 8, 16 (fillers),
 * rows longer than the kernels' decode chunks, bias or none, clamps none/relu/relu6, and convolutions with
 * stride, padding, dilation, groups and depthwise. Outputs are filled with NaN first and followed by guard
 * words that must survive. Special values: fc and conv inputs and biases holding NaN of both signs, +-inf and
 * -0.0, through every clamp: a NaN output must be NaN in every kernel (and only there), an infinite one the
 * same infinity, and where the pre-activation is exactly -0.0 in the portable kernel (conv: a channel whose
 * terms are all -0.0 on a bias of -0.0) the kernel must store -0.0 too (PyTorch: relu(-0.0) = -0.0). A mismatch prints the kernel, the case and the failing index; the exit status is
 * the number of failing kernel runs (capped at 100), 0 when all pass.
 *
 * Build: cc -Iruntime_c/include runtime_c/test/kernel_tester.c runtime_c/src/<isa>/<isa>.c... -lm
 * (tests/test_isa_kernels.py builds it natively, under qemu-user and as a bare-metal semihosting image).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prunec_kernels.h"

#define PRUNEC_KERNEL(name, op, isa, source) extern __typeof__(name) name __attribute__((weak));
#include "../kernels.inc"
#undef PRUNEC_KERNEL

typedef void (*kernel_fn)(void);
typedef struct kernel_entry {
  const char *name, *op, *isa;
  kernel_fn fn;
} kernel_entry;

#define PRUNEC_KERNEL(name, op, isa, source) {#name, #op, #isa, (kernel_fn)name},
static const kernel_entry registry[] = {
#include "../kernels.inc"
};
#undef PRUNEC_KERNEL
#define NKERNELS (sizeof(registry) / sizeof(registry[0]))

#define GUARD 8
#define GUARD_VALUE 1234.5f

/* Allocation that cannot silently fail (small boards have little heap): out of memory ends the run. */
static void *checked(void *p, size_t bytes) {
  if (p == NULL && bytes != 0) {
    printf("FAIL kernel_tester: out of memory allocating %lu bytes\n", (unsigned long)bytes);
    exit(101);
  }
  return p;
}
#define malloc(n) checked(malloc(n), (n))
#define calloc(n, m) checked(calloc((n), (m)), (size_t)(n) * (m))

static uint32_t rng_state = 2463534242u;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}
static float rng_unit(void) { return (float)(rng() >> 8) * (1.0f / 16777216.0f); }    /* [0, 1) */
static float rng_value(void) { return rng_unit() * 2.0f - 1.0f; }                      /* [-1, 1) */

static int failures = 0, runs = 0, known = 0;
static int runs_per_kernel[128], fails_per_kernel[128];
static int verbose = 0;
static const char *only_isa = NULL;

/* Special-value cases (special_cases()): output fill (a finite sentinel: NaN is an expected result there),
 * whether the sign of a zero output is compared, and the hooks that plant the special inputs. */
static float fill_value = NAN;
static int special_mode = 0, strict_zero = 0;
struct triplets;
struct prunec_conv2d_params;
static void (*plant_fc)(float *x, uint32_t cols, float *bias, uint32_t rows) = NULL;
static void (*plant_conv)(const prunec_conv2d_params *p, struct triplets *t, float *x, float *bias) = NULL;

/* ---- a small encoder: sorted triplets -> relative-indexed CSR (prunec_types.h) ---- */
typedef struct triplets {
  uint32_t rows, cols, n;
  uint32_t *r, *c;
  float *v;
} triplets;

typedef struct encoded {
  prunec_rcsr_f32 w;
  float *values;
  uint8_t *index;
  uint32_t *row_ptr;
  uint32_t fillers;
} encoded;

/* Code e of a b-bit LSB-first stream (docs/FORMAT.md; b = 4, 8, 16 are the nibble, byte and halfword layouts). */
static void put_code(uint8_t *index, uint32_t e, uint32_t bits, uint32_t code) {
  const unsigned long bit = (unsigned long)e * bits;
  uint32_t k;
  for (k = 0; k < bits; k++) {
    if ((code >> k) & 1u) index[(bit + k) >> 3] |= (uint8_t)(1u << ((bit + k) & 7u));
  }
}

static void encode(const triplets *t, uint32_t bits, encoded *out) {
  const uint32_t span = 1u << bits;
  uint32_t pass, n = 0, i, r;
  for (pass = 0; pass < 2; pass++) {
    uint32_t e = 0;
    out->fillers = 0;
    i = 0;
    for (r = 0; r < t->rows; r++) {
      long prev = -1;
      if (pass) out->row_ptr[r] = e;
      for (; i < t->n && t->r[i] == r; i++) {
        uint32_t gap = (uint32_t)((long)t->c[i] - prev);
        while (gap > span) {
          if (pass) out->values[e] = 0.0f;
          if (pass) put_code(out->index, e, bits, span - 1u);
          e++;
          out->fillers++;
          gap -= span;
        }
        if (pass) {
          out->values[e] = t->v[i];
          put_code(out->index, e, bits, gap - 1u);
        }
        e++;
        prev = t->c[i];
      }
    }
    if (pass) out->row_ptr[t->rows] = e;
    n = e;
    if (!pass) {
      /* exact sizes: a kernel reading past the end of values/index would be caught by valgrind/ASan */
      out->values = (float *)malloc((n ? n : 1) * sizeof(float));
      out->index = (uint8_t *)calloc((n * bits + 7) / 8 + 1, 1);
      out->row_ptr = (uint32_t *)malloc((t->rows + 1) * sizeof(uint32_t));
    }
  }
  out->w.rows = t->rows;
  out->w.cols = t->cols;
  out->w.index_bits = bits;
  out->w.values = out->values;
  out->w.index = out->index;
  out->w.row_ptr = out->row_ptr;
}

/* Sorted triplets -> absolute-indexed CSR (prunec_acsr_f32, docs/FORMAT.md "Absolute-indexed fc layers"): every row
 * padded to a multiple of 4 entries by fillers (value 0, the column of the row's last nonzero). */
typedef struct acsr_encoded {
  prunec_acsr_f32 w;
  float *values;
  uint32_t *columns, *row_ptr;
} acsr_encoded;
static void encode_acsr(const triplets *t, acsr_encoded *out) {
  uint32_t n = 0, i = 0, r, e = 0;
  for (r = 0; r < t->rows; r++) {
    uint32_t k = 0;
    for (; i < t->n && t->r[i] == r; i++) k++;
    n += (k + 3u) & ~3u;
  }
  out->values = (float *)malloc((n ? n : 1) * sizeof(float));
  out->columns = (uint32_t *)malloc((n ? n : 1) * sizeof(uint32_t));
  out->row_ptr = (uint32_t *)malloc((t->rows + 1) * sizeof(uint32_t));
  for (i = 0, r = 0; r < t->rows; r++) {
    out->row_ptr[r] = e;
    for (; i < t->n && t->r[i] == r; i++, e++) {
      out->values[e] = t->v[i];
      out->columns[e] = t->c[i];
    }
    for (; (e - out->row_ptr[r]) & 3u; e++) {
      out->values[e] = 0.0f;
      out->columns[e] = out->columns[e - 1];
    }
  }
  out->row_ptr[t->rows] = e;
  out->w.rows = t->rows;
  out->w.cols = t->cols;
  out->w.values = out->values;
  out->w.columns = out->columns;
  out->w.row_ptr = out->row_ptr;
}
static void acsr_free(acsr_encoded *e) {
  free(e->values);
  free(e->columns);
  free(e->row_ptr);
}
static void encoded_free(encoded *e) {
  free(e->values);
  free(e->index);
  free(e->row_ptr);
}

static void triplets_alloc(triplets *t, uint32_t rows, uint32_t cols, uint32_t cap) {
  t->rows = rows;
  t->cols = cols;
  t->n = 0;
  t->r = (uint32_t *)malloc((cap ? cap : 1) * sizeof(uint32_t));
  t->c = (uint32_t *)malloc((cap ? cap : 1) * sizeof(uint32_t));
  t->v = (float *)malloc((cap ? cap : 1) * sizeof(float));
}
static void triplets_push(triplets *t, uint32_t r, uint32_t c, float v) {
  t->r[t->n] = r;
  t->c[t->n] = c;
  t->v[t->n] = v;
  t->n++;
}
static void triplets_free(triplets *t) {
  free(t->r);
  free(t->c);
  free(t->v);
}

/* Random matrix: each entry nonzero with probability `density`; rows listed in `empty` stay empty. */
static void random_matrix(triplets *t, uint32_t rows, uint32_t cols, float density, int empty_every) {
  uint32_t r, c;
  triplets_alloc(t, rows, cols, rows * cols);
  for (r = 0; r < rows; r++) {
    if (empty_every && (r % (uint32_t)empty_every) == 1u) continue;
    for (c = 0; c < cols; c++) {
      if (rng_unit() < density) {
        float v = rng_value();
        if (v == 0.0f) v = 0.5f;
        triplets_push(t, r, c, v);
      }
    }
  }
}

/* `src` with every row padded to a multiple of `align` entries by zero-valued entries at columns the row does
 * not use (after its last entry where there is room, else its highest free columns), as `prunec build
 * --row-align` encodes them: trailing zero entries that the kernels must take like any other. */
static void pad_rows(const triplets *src, uint32_t align, triplets *dst) {
  float *val = (float *)malloc((src->cols ? src->cols : 1) * sizeof(float));
  unsigned char *used = (unsigned char *)malloc(src->cols ? src->cols : 1);
  uint32_t r, c, i = 0;
  triplets_alloc(dst, src->rows, src->cols, src->n + src->rows * align);
  for (r = 0; r < src->rows; r++) {
    uint32_t k = 0, p;
    long last = -1;
    memset(used, 0, src->cols);
    for (; i < src->n && src->r[i] == r; i++, k++) {
      used[src->c[i]] = 1;
      val[src->c[i]] = src->v[i];
      last = (long)src->c[i];
    }
    p = (align - k % align) % align;
    if (p <= src->cols - k) {
      if ((long)src->cols - 1 - last >= (long)p) {
        for (c = 0; c < p; c++) { used[last + 1 + c] = 1; val[last + 1 + c] = 0.0f; }
      } else {
        for (c = src->cols; p && c-- > 0;) {
          if (!used[c]) { used[c] = 1; val[c] = 0.0f; p--; }
        }
      }
    }
    for (c = 0; c < src->cols; c++) {
      if (used[c]) triplets_push(dst, r, c, val[c]);
    }
  }
  free(val);
  free(used);
}

static float *alloc_out(size_t n) {
  float *y = (float *)malloc((n + GUARD) * sizeof(float));
  size_t i;
  for (i = 0; i < n; i++) y[i] = fill_value;
  for (i = 0; i < GUARD; i++) y[n + i] = GUARD_VALUE;
  return y;
}
static void refill(float *y, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) y[i] = fill_value;
  for (i = 0; i < GUARD; i++) y[n + i] = GUARD_VALUE;
}
static float *random_vec(size_t n) {
  float *x = (float *)malloc((n ? n : 1) * sizeof(float));
  size_t i;
  for (i = 0; i < n; i++) x[i] = rng_value();
  return x;
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float clampf(double v, float lo, float hi) {
  float f = (float)v;
  f = f < lo ? lo : f;
  return f > hi ? hi : f;
}

/* Kernels known to differ from their portable twin on the special-value cases, reported as KNOWN and not
 * counted as failures (NULL-terminated; none at present). */
static const char *const special_known[] = {NULL};

static int is_special_known(const char *name) {
  size_t i;
  for (i = 0; special_known[i] != NULL; i++) {
    if (strcmp(name, special_known[i]) == 0) return 1;
  }
  return 0;
}

/* got vs want (want_mag: sum of |terms|, the scale of the rounding error). Returns 1 if all match. */
static int compare(const char *kernel, const char *against, const char *desc, const float *got, const float *want,
                   const double *mag, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    const double tol = 1e-4 * mag[i] + 1e-6;
    int ok;
    if (isnan(want[i]) || isnan(got[i]) || isinf(want[i]) || isinf(got[i])) {
      /* NaN (either sign, any payload) only where the other is NaN; an infinity exactly */
      ok = isnan(want[i]) ? isnan(got[i]) != 0 : got[i] == want[i];
    } else if (strict_zero && got[i] == 0.0f && want[i] == 0.0f) {
      ok = signbit(got[i]) == signbit(want[i]);
    } else {
      ok = fabs((double)got[i] - (double)want[i]) <= tol;
    }
    if (!ok) {
      printf("%s %s vs %s: case %s: index %lu: got %.9g (0x%08lx) want %.9g (0x%08lx) (tol %.3g)\n",
             special_mode && is_special_known(kernel) ? "KNOWN" : "FAIL", kernel, against, desc, (unsigned long)i, (double)got[i],
             (unsigned long)bits_of(got[i]), (double)want[i], (unsigned long)bits_of(want[i]), tol);
      return 0;
    }
  }
  for (i = 0; i < GUARD; i++) {
    if (got[n + i] != GUARD_VALUE) {
      printf("FAIL %s: case %s: wrote past the output (guard word %lu)\n", kernel, desc, (unsigned long)i);
      return 0;
    }
  }
  return 1;
}

static int selected(const kernel_entry *k, const char *op) {
  if (strcmp(k->op, op) != 0 || k->fn == NULL) return 0;
  if (only_isa != NULL && strcmp(k->isa, "portable") != 0 && strcmp(k->isa, only_isa) != 0) return 0;
  return 1;
}

static void record(size_t ki, int ok) {
  if (!ok && special_mode && is_special_known(registry[ki].name)) {
    known++;
    ok = 1;
  }
  runs++;
  if (ki < 128) {
    runs_per_kernel[ki]++;
    if (!ok) fails_per_kernel[ki]++;
  }
  if (!ok) failures++;
}

static const float clamp_lo[3] = {-INFINITY, 0.0f, 0.0f};
static const float clamp_hi[3] = {INFINITY, INFINITY, 6.0f};

/* ---- the column-major fc (docs/FORMAT.md "Column-major fc layers"): W^T encoded, every third input (and
 * the first) zero so that the kernels skip them; portable against the reference, the others against portable ---- */
static void run_fc_columns_case(const triplets *t, uint32_t bits, const float *bias, int clamp, const float *x0,
                                const char *desc) {
  const uint32_t rows = t->rows, cols = t->cols;
  float *x = (float *)malloc((cols ? cols : 1) * sizeof(float));
  float *ref = alloc_out(rows), *port = alloc_out(rows), *y = alloc_out(rows);
  double *mag = (double *)calloc(rows ? rows : 1, sizeof(double));
  double *acc = (double *)calloc(rows ? rows : 1, sizeof(double));
  const float lo = clamp_lo[clamp], hi = clamp_hi[clamp];
  triplets tt;
  encoded enc;
  uint32_t i, j, r;
  size_t k;
  char full[160];
  for (j = 0; j < cols; j++) x[j] = j % 3 == 0 ? 0.0f : x0[j];
  for (r = 0; r < rows; r++) {
    acc[r] = bias ? bias[r] : 0.0;
    mag[r] = bias ? fabs(bias[r]) : 0.0;
  }
  triplets_alloc(&tt, cols, rows, t->n);
  for (j = 0; j < cols; j++) { /* the transpose, sorted by its rows (the input columns) */
    for (i = 0; i < t->n; i++) {
      if (t->c[i] == j) triplets_push(&tt, j, t->r[i], t->v[i]);
    }
  }
  for (i = 0; i < t->n; i++) {
    acc[t->r[i]] += (double)t->v[i] * x[t->c[i]];
    mag[t->r[i]] += fabs((double)t->v[i] * x[t->c[i]]);
  }
  for (r = 0; r < rows; r++) ref[r] = clampf(acc[r], lo, hi);
  encode(&tt, bits, &enc);
  snprintf(full, sizeof full, "%s columns b=%u entries=%u bias=%d clamp=%d", desc, bits, enc.row_ptr[cols],
           bias != NULL, clamp);
  if (verbose) printf("case fc_rcsc %s\n", full);
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "fc_rcsc") && strcmp(registry[k].isa, "portable") == 0) {
      ((void (*)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
          &enc.w, bias, x, port, lo, hi);
      record(k, compare(registry[k].name, "reference", full, port, ref, mag, rows));
    }
  }
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "fc_rcsc") && strcmp(registry[k].isa, "portable") != 0) {
      refill(y, rows);
      ((void (*)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
          &enc.w, bias, x, y, lo, hi);
      record(k, compare(registry[k].name, "prunec_f32_fc_rcsc__portable", full, y, port, mag, rows));
    }
  }
  encoded_free(&enc);
  triplets_free(&tt);
  free(x);
  free(ref);
  free(port);
  free(y);
  free(mag);
  free(acc);
}

/* ---- fc over relative-indexed CSR, and dense fc on the same matrix ---- */
static void run_fc_case(const triplets *t, uint32_t bits, int with_bias, int clamp, const char *desc) {
  const uint32_t rows = t->rows, cols = t->cols;
  float *x = random_vec(cols);
  float *bias = with_bias ? random_vec(rows) : NULL;
  float *ref, *port, *y;
  double *mag = (double *)malloc((rows ? rows : 1) * sizeof(double));
  double *acc = (double *)malloc((rows ? rows : 1) * sizeof(double));
  const float lo = clamp_lo[clamp], hi = clamp_hi[clamp];
  encoded enc;
  uint32_t i, r;
  size_t k;
  char full[160];
  if (plant_fc != NULL) plant_fc(x, cols, bias, rows);
  ref = alloc_out(rows);
  port = alloc_out(rows);
  y = alloc_out(rows);
  for (r = 0; r < rows; r++) {
    acc[r] = bias ? bias[r] : 0.0;
    mag[r] = bias ? fabs(bias[r]) : 0.0;
  }
  for (i = 0; i < t->n; i++) {
    acc[t->r[i]] += (double)t->v[i] * x[t->c[i]];
    mag[t->r[i]] += fabs((double)t->v[i] * x[t->c[i]]);
  }
  for (r = 0; r < rows; r++) ref[r] = clampf(acc[r], lo, hi);
  encode(t, bits, &enc);
  snprintf(full, sizeof full, "%s b=%u entries=%u fillers=%u bias=%d clamp=%d", desc, bits, enc.row_ptr[rows],
           enc.fillers, with_bias, clamp);
  if (verbose) printf("case fc_rcsr %s\n", full);
  /* portable first, against the reference */
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "fc_rcsr") && strcmp(registry[k].isa, "portable") == 0) {
      ((void (*)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
          &enc.w, bias, x, port, lo, hi);
      record(k, compare(registry[k].name, "reference", full, port, ref, mag, rows));
    }
  }
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "fc_rcsr") && strcmp(registry[k].isa, "portable") != 0) {
      refill(y, rows);
      ((void (*)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
          &enc.w, bias, x, y, lo, hi);
      record(k, compare(registry[k].name, "prunec_f32_fc_rcsr__portable", full, y, port, mag, rows));
    }
  }
  run_fc_columns_case(t, bits, bias, clamp, x, desc);
  if (bits == 8) { /* absolute-indexed CSR of the same matrix (no index width: once) */
    acsr_encoded ae;
    encode_acsr(t, &ae);
    snprintf(full, sizeof full, "%s acsr entries=%u bias=%d clamp=%d", desc, ae.row_ptr[rows], with_bias, clamp);
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "fc_acsr") && strcmp(registry[k].isa, "portable") == 0) {
        refill(port, rows);
        ((void (*)(const prunec_acsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
            &ae.w, bias, x, port, lo, hi);
        /* special values: a filler's 0 times an infinite input of its row is NaN, which the reference skips (as
         * PyTorch's dense layer does not); the ISA kernels are still held to the portable one */
        if (!special_mode) record(k, compare(registry[k].name, "reference", full, port, ref, mag, rows));
      }
    }
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "fc_acsr") && strcmp(registry[k].isa, "portable") != 0) {
        refill(y, rows);
        ((void (*)(const prunec_acsr_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
            &ae.w, bias, x, y, lo, hi);
        record(k, compare(registry[k].name, "prunec_f32_fc_acsr__portable", full, y, port, mag, rows));
      }
    }
    acsr_free(&ae);
  }
  /* dense storage of the same matrix (only for matrices small enough to hold dense) */
  if ((size_t)rows * cols <= (size_t)1 << 16) {
    float *dv = (float *)calloc((size_t)rows * cols + 1, sizeof(float));
    prunec_dense_f32 dw;
    dw.rows = rows;
    dw.cols = cols;
    dw.values = dv;
    for (i = 0; i < t->n; i++) dv[(size_t)t->r[i] * cols + t->c[i]] = t->v[i];
    snprintf(full, sizeof full, "%s dense bias=%d clamp=%d", desc, with_bias, clamp);
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "fc_dense") && strcmp(registry[k].isa, "portable") == 0) {
        refill(port, rows);
        ((void (*)(const prunec_dense_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
            &dw, bias, x, port, lo, hi);
        /* special values: a stored zero times NaN or inf is NaN (as in PyTorch on the pruned dense weights),
         * which the sparse reference skips; the dense ISA kernels are still held to the dense portable one */
        if (!special_mode) record(k, compare(registry[k].name, "reference", full, port, ref, mag, rows));
      }
    }
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "fc_dense") && strcmp(registry[k].isa, "portable") != 0) {
        refill(y, rows);
        ((void (*)(const prunec_dense_f32 *, const float *, const float *, float *, float, float))registry[k].fn)(
            &dw, bias, x, y, lo, hi);
        record(k, compare(registry[k].name, "prunec_f32_fc_dense__portable", full, y, port, mag, rows));
      }
    }
    free(dv);
  }
  encoded_free(&enc);
  free(x);
  free(bias);
  free(ref);
  free(port);
  free(y);
  free(mag);
  free(acc);
}

static const uint32_t edge_sizes[] = {1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33};
#define NEDGE (sizeof(edge_sizes) / sizeof(edge_sizes[0]))

static void fc_cases(int quick) {
  static const float densities[] = {0.0f, 0.1f, 0.35f, 0.7f, 1.0f};
  static const uint32_t bits_list[] = {4, 8, 16};
  uint32_t a, b, n = 0;
  char desc[96];
  triplets t;
  /* the grid of edge shapes: density, bits, bias and clamp rotate through the cases */
  for (a = 0; a < NEDGE; a++) {
    for (b = 0; b < NEDGE; b++) {
      const float d = densities[n % 5];
      const uint32_t bits = bits_list[(n / 5) % 3];
      if (quick && (n % 3) != 0) {
        n++;
        continue;
      }
      random_matrix(&t, edge_sizes[a], edge_sizes[b], d, (int)(n % 4 == 3 ? 3 : 0));
      snprintf(desc, sizeof desc, "grid#%u rows=%u cols=%u density=%.2f", n, edge_sizes[a], edge_sizes[b], (double)d);
      run_fc_case(&t, bits, (int)(n % 2), (int)(n % 3), desc);
      triplets_free(&t);
      n++;
    }
  }
  /* wider rows: long runs, chunk boundaries of the decoders (64, 256 entries), all three widths */
  {
    static const uint32_t shapes[][2] = {{37, 300}, {5, 784}, {3, 1000}, {10, 100}, {2, 2049}};
    static const float dens[] = {0.08f, 0.3f, 1.0f, 0.5f, 0.2f};
    uint32_t s, bi;
    for (s = 0; s < 5; s++) {
      for (bi = 0; bi < 3; bi++) {
        random_matrix(&t, shapes[s][0], shapes[s][1], dens[s], s == 3 ? 4 : 0);
        snprintf(desc, sizeof desc, "wide rows=%u cols=%u density=%.2f", shapes[s][0], shapes[s][1], (double)dens[s]);
        run_fc_case(&t, bits_list[bi], 1, (int)((s + bi) % 3), desc);
        triplets_free(&t);
      }
    }
  }
  /* rows padded to a multiple of 8 (and 4, 16) entries with trailing zero entries (prunec build --row-align),
   * some ending exactly at the last column, some padded inside the row because the end is taken */
  {
    static const uint32_t shapes[][2] = {{37, 300}, {12, 9}, {33, 17}, {47, 64}, {5, 784}};
    static const float dens[] = {0.08f, 0.5f, 0.9f, 0.2f, 0.3f};
    static const uint32_t aligns[] = {8, 4, 16};
    uint32_t s, bi;
    triplets padded;
    for (s = 0; s < 5; s++) {
      for (bi = 0; bi < 3; bi++) {
        random_matrix(&t, shapes[s][0], shapes[s][1], dens[s], 3);
        pad_rows(&t, aligns[(s + bi) % 3], &padded);
        snprintf(desc, sizeof desc, "rows padded to %u rows=%u cols=%u density=%.2f", aligns[(s + bi) % 3],
                 shapes[s][0], shapes[s][1], (double)dens[s]);
        run_fc_case(&padded, bits_list[bi], 1, (int)((s + bi) % 3), desc);
        triplets_free(&padded);
        triplets_free(&t);
      }
    }
  }
  /* gaps beyond 2^b: fillers (first entry far from column -1, runs of fillers between entries) */
  {
    static const uint32_t bits_gap[] = {4, 8, 16};
    uint32_t bi, r;
    for (bi = 0; bi < 3; bi++) {
      const uint32_t span = 1u << bits_gap[bi];
      /* b = 16: one span plus a little (x is 256 KB), so the case fits the 512 KB boards too */
      const uint32_t cols = bits_gap[bi] == 16 ? span + 40u : 3u * span + 7u;
      const uint32_t far = cols - 3u;
      triplets_alloc(&t, 9, cols, 64);
      for (r = 0; r < 9; r++) {
        if (r == 2) continue; /* an empty row */
        if (r == 0) triplets_push(&t, r, span, 0.75f);                       /* gap span+1: one filler */
        if (r == 1) triplets_push(&t, r, span - 1u, -0.5f);                 /* gap exactly span: no filler */
        if (r == 3) { triplets_push(&t, r, 0, 1.0f); triplets_push(&t, r, cols - 1u, -1.0f); }
        if (r == 4) { triplets_push(&t, r, far, 0.25f); triplets_push(&t, r, far + 1u, 0.5f); }
        if (r == 5) { uint32_t c; for (c = 0; c < cols; c += span + 1u) triplets_push(&t, r, c, rng_value()); }
        if (r == 6) { uint32_t c; for (c = span / 2u; c < cols; c += 2u * span + 3u) triplets_push(&t, r, c, rng_value()); }
        if (r == 7) triplets_push(&t, r, cols - 1u, 2.0f);
        if (r == 8) { uint32_t c; for (c = 0; c < 12u && c < cols; c++) triplets_push(&t, r, c, rng_value()); }
      }
      snprintf(desc, sizeof desc, "gaps>2^%u rows=9 cols=%u", bits_gap[bi], cols);
      run_fc_case(&t, bits_gap[bi], 1, 0, desc);
      if (bits_gap[bi] == 4) run_fc_case(&t, 8, 0, 1, desc);
      triplets_free(&t);
    }
  }
  /* the other index widths (1..16 without a fast path: byte-straddling codes, fillers every 2^b columns) */
  {
    static const uint32_t odd_bits[] = {1, 3, 5, 6, 7, 12};
    static const uint32_t shapes[][2] = {{37, 300}, {9, 33}, {16, 1000}, {4, 5}};
    static const float dens[] = {0.08f, 0.5f, 0.03f, 1.0f};
    uint32_t s, bi;
    for (bi = 0; bi < sizeof(odd_bits) / sizeof(odd_bits[0]); bi++) {
      for (s = 0; s < 4; s++) {
        if (quick && s != bi % 4) continue;
        random_matrix(&t, shapes[s][0], shapes[s][1], dens[s], s == 1 ? 4 : 0);
        snprintf(desc, sizeof desc, "odd width rows=%u cols=%u density=%.2f", shapes[s][0], shapes[s][1], (double)dens[s]);
        run_fc_case(&t, odd_bits[bi], (int)(s % 2), (int)((s + bi) % 3), desc);
        triplets_free(&t);
      }
    }
  }
}

/* ---- conv2d over relative-indexed CSR ---- */
typedef struct conv_case {
  uint32_t in_c, in_h, in_w, out_c, kh, kw, sh, sw, ph, pw, dh, dw, groups;
  float density;
} conv_case;

/* > 1: run_conv_case pads every row to a multiple of this many entries (zero entries, as `prunec build
 * --row-align`); the reference is unchanged (it skips zeros). */
static uint32_t conv_row_align = 1;

static void run_conv_case(const conv_case *cc, uint32_t bits, int with_bias, int clamp, const char *tag) {
  prunec_conv2d_params p;
  triplets t;
  encoded enc;
  float *x, *bias, *ref, *port, *y, *dense;
  double *mag;
  size_t out_n, k;
  uint32_t cin_g, cout_g, cols, i, oc, oh, ow;
  const float lo = clamp_lo[clamp], hi = clamp_hi[clamp];
  char desc[200];
  memset(&p, 0, sizeof p);
  p.in_c = cc->in_c; p.in_h = cc->in_h; p.in_w = cc->in_w; p.out_c = cc->out_c;
  p.kh = cc->kh; p.kw = cc->kw; p.stride_h = cc->sh; p.stride_w = cc->sw; p.pad_h = cc->ph; p.pad_w = cc->pw;
  p.dil_h = cc->dh; p.dil_w = cc->dw; p.groups = cc->groups;
  p.out_h = (p.in_h + 2 * p.pad_h - p.dil_h * (p.kh - 1) - 1) / p.stride_h + 1;
  p.out_w = (p.in_w + 2 * p.pad_w - p.dil_w * (p.kw - 1) - 1) / p.stride_w + 1;
  cin_g = p.in_c / p.groups;
  cout_g = p.out_c / p.groups;
  cols = cin_g * p.kh * p.kw;
  random_matrix(&t, p.out_c, cols, cc->density, 0);
  dense = (float *)calloc((size_t)p.out_c * cols, sizeof(float));
  for (i = 0; i < t.n; i++) dense[(size_t)t.r[i] * cols + t.c[i]] = t.v[i];
  x = random_vec((size_t)p.in_c * p.in_h * p.in_w);
  bias = with_bias ? random_vec(p.out_c) : NULL;
  if (plant_conv != NULL) {
    plant_conv(&p, &t, x, bias);
    memset(dense, 0, (size_t)p.out_c * cols * sizeof(float));
    for (i = 0; i < t.n; i++) dense[(size_t)t.r[i] * cols + t.c[i]] = t.v[i];
  }
  if (conv_row_align > 1) {
    triplets padded;
    pad_rows(&t, conv_row_align, &padded);
    triplets_free(&t);
    t = padded;
  }
  out_n = (size_t)p.out_c * p.out_h * p.out_w;
  ref = alloc_out(out_n);
  port = alloc_out(out_n);
  y = alloc_out(out_n);
  mag = (double *)malloc(out_n * sizeof(double));
  for (oc = 0; oc < p.out_c; oc++) {
    const uint32_t g = oc / cout_g;
    for (oh = 0; oh < p.out_h; oh++) {
      for (ow = 0; ow < p.out_w; ow++) {
        double s = bias ? bias[oc] : 0.0, m = bias ? fabs(bias[oc]) : 0.0;
        uint32_t ci, ky, kx;
        for (ci = 0; ci < cin_g; ci++) {
          for (ky = 0; ky < p.kh; ky++) {
            for (kx = 0; kx < p.kw; kx++) {
              const long iy = (long)oh * p.stride_h - p.pad_h + (long)ky * p.dil_h;
              const long ix = (long)ow * p.stride_w - p.pad_w + (long)kx * p.dil_w;
              const float wv = dense[(size_t)oc * cols + (ci * p.kh + ky) * p.kw + kx];
              if (iy >= 0 && iy < (long)p.in_h && ix >= 0 && ix < (long)p.in_w && wv != 0.0f) {
                const double term = (double)wv * x[((size_t)(g * cin_g + ci) * p.in_h + iy) * p.in_w + ix];
                s += term;
                m += fabs(term);
              }
            }
          }
        }
        ref[((size_t)oc * p.out_h + oh) * p.out_w + ow] = clampf(s, lo, hi);
        mag[((size_t)oc * p.out_h + oh) * p.out_w + ow] = m;
      }
    }
  }
  encode(&t, bits, &enc);
  snprintf(desc, sizeof desc,
           "%s in=%ux%ux%u out_c=%u k=%ux%u s=%u,%u pad=%u,%u dil=%u,%u groups=%u density=%.2f b=%u entries=%u bias=%d clamp=%d",
           tag, p.in_c, p.in_h, p.in_w, p.out_c, p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h,
           p.dil_w, p.groups, (double)cc->density, bits, enc.row_ptr[p.out_c], with_bias, clamp);
  if (verbose) printf("case conv2d_rcsr %s\n", desc);
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "conv2d_rcsr") && strcmp(registry[k].isa, "portable") == 0) {
      ((void (*)(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *, const float *, float *, float,
                 float))registry[k].fn)(&p, &enc.w, bias, x, port, lo, hi);
      record(k, compare(registry[k].name, "reference", desc, port, ref, mag, out_n));
    }
  }
  for (k = 0; k < NKERNELS; k++) {
    if (selected(&registry[k], "conv2d_rcsr") && strcmp(registry[k].isa, "portable") != 0) {
      refill(y, out_n);
      ((void (*)(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *, const float *, float *, float,
                 float))registry[k].fn)(&p, &enc.w, bias, x, y, lo, hi);
      record(k, compare(registry[k].name, "prunec_f32_conv2d_rcsr__portable", desc, y, port, mag, out_n));
    }
  }
  /* dense storage of the same weights (zeros included): conv2d_dense kernels, portable against the reference,
   * the ISA kernels against the portable one */
  {
    prunec_dense_f32 dw;
    char full[240];
    dw.rows = p.out_c;
    dw.cols = cols;
    dw.values = dense;
    snprintf(full, sizeof full, "%s dense", desc);
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "conv2d_dense") && strcmp(registry[k].isa, "portable") == 0) {
        refill(port, out_n);
        ((void (*)(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *, const float *, float *,
                   float, float))registry[k].fn)(&p, &dw, bias, x, port, lo, hi);
        if (!special_mode) record(k, compare(registry[k].name, "reference", full, port, ref, mag, out_n));
      }
    }
    for (k = 0; k < NKERNELS; k++) {
      if (selected(&registry[k], "conv2d_dense") && strcmp(registry[k].isa, "portable") != 0) {
        refill(y, out_n);
        ((void (*)(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *, const float *, float *,
                   float, float))registry[k].fn)(&p, &dw, bias, x, y, lo, hi);
        record(k, compare(registry[k].name, "prunec_f32_conv2d_dense__portable", full, y, port, mag, out_n));
      }
    }
  }
  encoded_free(&enc);
  triplets_free(&t);
  free(dense);
  free(x);
  free(bias);
  free(ref);
  free(port);
  free(y);
  free(mag);
}

static void conv_cases(int quick) {
  /* in_c in_h in_w out_c kh kw sh sw ph pw dh dw groups density */
  static const conv_case fixed[] = {
      {1, 28, 28, 4, 5, 5, 1, 1, 0, 0, 1, 1, 1, 0.66f},    /* LeNet-5 conv1 */
      {4, 12, 12, 6, 5, 5, 1, 1, 0, 0, 1, 1, 1, 0.12f},    /* LeNet-5 conv2 */
      {3, 9, 17, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0.5f},      /* same padding */
      {3, 16, 33, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0.5f},     /* stride 2 */
      {2, 11, 31, 3, 3, 3, 3, 3, 2, 2, 1, 1, 1, 0.7f},     /* stride 3 */
      {2, 13, 32, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0.6f},     /* dilation 2 */
      {4, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, 0.5f},       /* groups 2 */
      {6, 10, 17, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 1.0f},     /* depthwise */
      {8, 7, 16, 8, 5, 5, 2, 1, 2, 2, 1, 1, 8, 0.8f},      /* depthwise 5x5, stride (2,1) */
      {5, 8, 8, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0.5f},       /* 1x1 */
      {32, 6, 9, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1.0f},      /* 288 nonzeros per channel: decode chunks */
      {3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0.0f},       /* all-zero weights */
      {2, 1, 1, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1.0f},       /* 1x1 image */
      {1, 4, 4, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1.0f},       /* kernel wider than the image */
      {2, 6, 40, 3, 2, 7, 1, 1, 0, 3, 1, 2, 1, 0.4f},      /* rectangular kernel, dil_w 2 */
      /* register tiles (8 or 4 output rows x 8/4 columns on NEON, 2 x 8 on Cortex-M) and their edges */
      {3, 30, 21, 4, 3, 3, 2, 1, 1, 1, 1, 1, 1, 0.5f},     /* stride (2,1), padding: row tiles at stride_h 2 */
      {2, 24, 26, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0.6f},     /* dilation 2 with tiles */
      {4, 20, 20, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, 1.0f},     /* depthwise with tiles */
      {2, 19, 23, 3, 3, 5, 1, 1, 0, 2, 1, 1, 1, 0.5f},     /* odd output width 23: 8+8+4 columns + tail */
      {4, 16, 14, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, 0.5f},     /* groups 2 with tiles */
      {40, 12, 12, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0.9f},    /* ~324 taps per channel: several decode chunks */
      {20, 12, 12, 4, 5, 5, 1, 1, 0, 0, 1, 1, 1, 0.05f},   /* sparse: gaps > 16 (fillers at b = 4) */
      {3, 33, 17, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0.6f},     /* stride 2 both ways */
      {1, 9, 40, 2, 1, 3, 1, 1, 0, 1, 1, 1, 1, 1.0f},      /* 1 x 3 kernel, wide rows */
      /* strided tiles of the AVX-512 kernel (lanes compacted from stride_w vectors), several column tiles */
      {3, 21, 70, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0.5f},     /* ResNet's 3x3 stride 2: 35 output columns */
      {4, 18, 66, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0.8f},     /* 1x1 stride 2 shortcut */
      {2, 23, 100, 3, 3, 5, 3, 3, 1, 2, 1, 1, 1, 0.6f},    /* stride 3: two vector pairs per row */
      {3, 35, 79, 2, 11, 11, 4, 4, 2, 2, 1, 1, 1, 0.5f},   /* AlexNet conv1's 11x11 stride 4 */
      {6, 25, 49, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6, 0.8f},     /* depthwise 3x3 stride 2 (MobileNet) */
      {2, 30, 61, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1, 0.6f},     /* stride 2 with dilation 2 */
      {2, 12, 90, 3, 3, 3, 1, 5, 1, 1, 1, 1, 1, 0.6f},     /* stride_w 5: the generic loop */
  };
  static const uint32_t bits_list[] = {4, 8, 16};
  uint32_t i, n = 0;
  char tag[48];
  for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    uint32_t bi;
    for (bi = 0; bi < 3; bi++) {
      if (quick && bi != (i % 3)) continue;
      snprintf(tag, sizeof tag, "conv#%u", i);
      run_conv_case(&fixed[i], bits_list[bi], (int)((i + bi) % 2), (int)((i + bi) % 3), tag);
    }
  }
  /* rows padded to a multiple of 8 (or 4) entries with trailing zero entries (prunec build --row-align) */
  {
    static const uint32_t picks[] = {0, 1, 3, 6, 7, 15, 17, 18, 20, 21};
    uint32_t k;
    for (k = 0; k < sizeof(picks) / sizeof(picks[0]); k++) {
      conv_row_align = k % 3 == 2 ? 4u : 8u;
      snprintf(tag, sizeof tag, "conv#%u rows padded to %u", picks[k], conv_row_align);
      run_conv_case(&fixed[picks[k]], bits_list[k % 3], (int)(k % 2), (int)(k % 3), tag);
    }
    conv_row_align = 1;
  }
  /* output widths around the vector widths, with and without padding, stride 1 and 2 */
  for (i = 0; i < NEDGE; i++) {
    conv_case cc = {2, 5, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0.6f};
    cc.in_w = edge_sizes[i] + 2;
    cc.pw = n % 2;
    cc.sw = (n % 3 == 2) ? 2 : 1;
    snprintf(tag, sizeof tag, "convw#%u", i);
    run_conv_case(&cc, bits_list[n % 3], (int)(n % 2), (int)(n % 3), tag);
    n++;
  }
  /* the other index widths (decoded through the generic bit stream) */
  {
    static const uint32_t odd_bits[] = {1, 3, 5, 6, 7, 12};
    static const uint32_t picks[] = {0, 1, 3, 6, 7, 15, 17, 18, 20, 21};
    uint32_t k;
    for (k = 0; k < sizeof(picks) / sizeof(picks[0]); k++) {
      if (quick && k % 2) continue;
      snprintf(tag, sizeof tag, "conv#%u odd width", picks[k]);
      run_conv_case(&fixed[picks[k]], odd_bits[k % 6], (int)(k % 2), (int)(k % 3), tag);
    }
  }
}

/* ---- special values: NaN of both signs, +-inf, -0.0 ---- */
static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* fc: 19 x 45; x holds -NaN, +NaN, +inf, -inf, -0.0 and a -NaN with a payload; biases -NaN, -0.0, +-inf. */
static void plant_fc_specials(float *x, uint32_t cols, float *bias, uint32_t rows) {
  (void)cols;
  (void)rows;
  x[2] = from_bits(0xffc00000u);
  x[9] = from_bits(0x7fc00000u);
  x[20] = INFINITY;
  x[27] = -INFINITY;
  x[33] = -0.0f;
  x[40] = from_bits(0xffc01234u);
  if (bias != NULL) {
    bias[6] = from_bits(0xffc00000u);
    bias[7] = -0.0f;
    bias[14] = INFINITY;
    bias[15] = -INFINITY;
  }
}

/* conv: input rows 0..4 of every channel are -0.0 and output channel 3 has every weight, all positive, on a
 * bias of -0.0: its outputs whose taps all lie in rows 0..4 (output rows 0..2) are exactly -0.0 before the
 * clamp, in register tiles too. Single inputs -NaN, +NaN, +-inf and a -NaN with a payload; bias 1 is -NaN (a whole plane of
 * -NaN through the tiles), bias 2 is -inf. */
static void plant_conv_specials(const prunec_conv2d_params *p, triplets *t, float *x, float *bias) {
  const size_t plane = (size_t)p->in_h * p->in_w;
  const uint32_t in_w = p->in_w, cols = t->cols;
  triplets d;
  uint32_t ci, i, c;
  for (ci = 0; ci < p->in_c; ci++) {
    for (i = 0; i < 5u * in_w; i++) x[ci * plane + i] = -0.0f;
  }
  x[0 * plane + 7 * in_w + 10] = from_bits(0xffc00000u);
  x[1 * plane + 9 * in_w + 3] = from_bits(0x7fc00000u);
  x[2 * plane + 6 * in_w + 15] = INFINITY;
  x[0 * plane + 10 * in_w + 16] = -INFINITY;
  x[2 * plane + 10 * in_w + 17] = from_bits(0xffc01234u);
  x[1 * plane + 8 * in_w + 12] = INFINITY;
  if (bias != NULL) {
    bias[1] = from_bits(0xffc00000u);
    bias[2] = -INFINITY;
    bias[3] = -0.0f;
  }
  triplets_alloc(&d, t->rows, cols, t->n + cols);
  for (i = 0; i < t->n; i++) {
    if (t->r[i] < 3u) triplets_push(&d, t->r[i], t->c[i], t->v[i]);
  }
  for (c = 0; c < cols; c++) triplets_push(&d, 3, c, 0.125f + 0.5f * rng_unit());
  for (i = 0; i < t->n; i++) {
    if (t->r[i] > 3u) triplets_push(&d, t->r[i], t->c[i], t->v[i]);
  }
  triplets_free(t);
  *t = d;
}

static void special_cases(void) {
  static const uint32_t bits_list[] = {4, 8, 16};
  /* 10 x 18 output, no padding (padded taps add +0.0 products in some kernels and in PyTorch, none in the
   * portable kernel: the sign of an all-zero sum at a padded border is not compared): register tiles
   * (Cortex-M 2 x 8, NEON 8/4 x 8) from row 0, checked paths for the last columns */
  static const conv_case cc = {3, 12, 20, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0.5f};
  uint32_t clamp, bi, r, c;
  triplets t;
  special_mode = 1;
  fill_value = -777.0f;
  plant_fc = plant_fc_specials;
  for (clamp = 0; clamp < 3; clamp++) {
    for (bi = 0; bi < 3; bi++) {
      /* each row also takes one special column: -NaN, +NaN, +inf, -inf, +inf and -inf, NaN with a payload */
      triplets_alloc(&t, 19, 45, 19 * 45);
      for (r = 0; r < 19; r++) {
        for (c = 0; c < 45; c++) {
          const uint32_t k = r % 8;
          const int forced = (k == 0 && c == 2) || (k == 1 && c == 9) || ((k == 2 || k == 4) && c == 20) ||
                             ((k == 3 || k == 4) && c == 27) || (k == 5 && c == 40) || (k == 6 && c == 33);
          if (forced || rng_unit() < 0.3f) {
            float v = rng_value();
            if (v == 0.0f) v = 0.5f;
            triplets_push(&t, r, c, v);
          }
        }
      }
      run_fc_case(&t, bits_list[bi], !(clamp == 1 && bi == 2), (int)clamp, "special");
      triplets_free(&t);
    }
  }
  plant_fc = NULL;
  plant_conv = plant_conv_specials;
  strict_zero = 1;
  for (clamp = 0; clamp < 3; clamp++) {
    for (bi = 0; bi < 2; bi++) {
      run_conv_case(&cc, bits_list[(clamp + bi) % 3], (int)(bi == 0 || clamp == 1), (int)clamp, "special");
    }
  }
  plant_conv = NULL;
  strict_zero = 0;
  fill_value = NAN;
  special_mode = 0;
}

int main(int argc, char **argv) {
  int quick = 0, a;
  size_t k;
  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--quick") == 0) quick = 1;
    else if (strcmp(argv[a], "-v") == 0) verbose = 1;
    else if (strcmp(argv[a], "--isa") == 0 && a + 1 < argc) only_isa = argv[++a];
    else if (strcmp(argv[a], "--list") == 0) {
      for (k = 0; k < NKERNELS; k++) printf("%s %s %s %s\n", registry[k].name, registry[k].op, registry[k].isa,
                                            registry[k].fn ? "linked" : "absent");
      return 0;
    }
  }
  fc_cases(quick);
  conv_cases(quick);
  special_cases();
  for (k = 0; k < NKERNELS && k < 128; k++) {
    if (runs_per_kernel[k]) {
      printf("%-36s %-8s runs %4d failures %d\n", registry[k].name, registry[k].isa, runs_per_kernel[k],
             fails_per_kernel[k]);
    }
  }
  if (known) printf("kernel_tester: %d known differences on special values (KNOWN lines)\n", known);
  printf("kernel_tester: %d kernel runs, %d failures\n", runs, failures);
  return failures > 100 ? 100 : failures;
}
