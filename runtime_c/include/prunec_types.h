/*
 * prunec runtime: data types shared by every kernel and by generated code. C99, no allocation, no stdio.
 *
 * Relative-indexed CSR (docs/FORMAT.md, DESIGN.md). A weight matrix [rows x cols] (conv: [out_c x
 * in_c/groups*kh*kw], column k = (ci*kh + ky)*kw + kx, i.e. PyTorch's weight.reshape(out_c, -1)) is stored
 * row by row. Row r owns entries row_ptr[r] .. row_ptr[r+1]-1. Entry e has value values[e] and a code
 * c_e in [0, 2^index_bits): the column of entry e is col(e) = col(e-1) + c_e + 1, with col = -1 before the
 * first entry of each row. Fillers are entries with value 0 that only advance the column (code 2^b - 1).
 * Codes are packed in `index` as one LSB-first bit stream, index_bits = b in 1..16: code e is bits b*e ..
 * b*e+b-1, bit k of the stream being bit k%8 of byte k/8; (entries*b + 7)/8 bytes. The widths with fast
 * kernel paths read as:
 *   index_bits = 4:  entry e in byte e/2, low nibble for even e, high nibble for odd e
 *   index_bits = 8:  byte e
 *   index_bits = 16: bytes 2e (low) and 2e+1 (high), little-endian
 * (other widths, e.g. 6 bits = 4 codes in 3 bytes, are decoded by prunec_rcsr_code, prunec_rcsr_util.h).
 */
#ifndef PRUNEC_TYPES_H
#define PRUNEC_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef struct prunec_rcsr_f32 {
  uint32_t rows;
  uint32_t cols;
  uint32_t index_bits;      /* 1 .. 16 (4, 8 and 16 have fast paths) */
  const float *values;      /* [row_ptr[rows]] entries, fillers are 0.0f */
  const uint8_t *index;     /* packed codes, see above */
  const uint32_t *row_ptr;  /* [rows + 1] */
} prunec_rcsr_f32;

/* Blocked sliced layout of a sparse fc matrix (docs/FORMAT.md "Blocked fc layers", x86 with AVX-512): the rows, in the
 * order perm gives (by nonzero count, most first), in slices of PRUNEC_BSELL_ROWS = 16, columns in blocks of
 * PRUNEC_BSELL_COLS = 32. Lane l of slice s holds row perm[16s + l] (lanes past the last row: perm 0, all fillers).
 * For slice s and block b (s-major, then b), steps[s * blocks + b] = k, the most nonzeros any row of the slice has in
 * the block (0..32); then k steps of 16 slots follow in `index` and `values`, slot (step j, lane l) holding lane l's
 * row's j-th nonzero in the block (columns ascending): index = its column's offset in the block (0..31, one byte),
 * values = its weight. A row with fewer nonzeros in the block, and the lanes past the last row, get fillers: index 0,
 * value 0. So a kernel loads the block's 32 inputs once and serves 16 rows with one two-register permute per step,
 * no gather. Slots: 16 * the sum of steps; more than the nonzeros (LeNet fc1 at 7 %: ~2.3-2.6x), so it is used for
 * layers whose slots stay near a core's L2 (x86_64-avx2: at most 4 MiB). */
#define PRUNEC_BSELL_ROWS 16u
#define PRUNEC_BSELL_COLS 32u
typedef struct prunec_bsell_f32 {
  uint32_t rows;
  uint32_t cols;
  const uint16_t *perm;     /* [ceil(rows / 16) * 16] the row of each lane */
  const uint8_t *steps;     /* [ceil(rows / 16) * ceil(cols / 32)] */
  const uint8_t *index;     /* [16 * sum of steps] column offsets in the block, 0..31 */
  const float *values;      /* [16 * sum of steps] weights, fillers 0.0f */
} prunec_bsell_f32;

/* Relative-indexed sliced layout of a sparse fc matrix (docs/FORMAT.md "Sliced fc layers", x86 with AVX-512 and fast
 * gathers): the rows, in the order perm gives (by nonzero count, most first), in slices of PRUNEC_RSELL_ROWS = 16.
 * Lane l of slice s holds row perm[16s + l] (lanes past the last row: perm 0, all fillers). Slice s has steps[s] = k
 * steps of 16 slots in `index` and `values`, slot (step j, lane l) holding lane l's row's j-th entry, columns
 * ascending: index = its column minus the lane's previous entry's column, minus 1 (the first entry: its column), one
 * byte as in 8-bit relative-indexed CSR, values = its weight. A lane's k entries are its row's nonzeros, plus fillers
 * (value 0) at columns where the row has no nonzero: one where a gap exceeds 256, and as many as the lane has fewer
 * entries than the slice's fullest row (lanes past the last row: columns 0 .. k-1). Every entry's column is thus
 * below cols, and a kernel serves 16 rows per step with one 16-lane gather of x, no per-row loop or reduction.
 * Slots: 16 * the sum of steps, about the nonzeros for rows of hundreds of entries (4096x4096 at 10 %: 1.001x). */
#define PRUNEC_RSELL_ROWS 16u
typedef struct prunec_rsell_f32 {
  uint32_t rows;
  uint32_t cols;
  const uint16_t *perm;     /* [ceil(rows / 16) * 16] the row of each lane */
  const uint32_t *steps;    /* [ceil(rows / 16)] entries per lane of each slice */
  const uint8_t *index;     /* [16 * sum of steps] column gaps minus 1 */
  const float *values;      /* [16 * sum of steps] weights, fillers 0.0f */
} prunec_rsell_f32;

/* Windowed sliced layout of a sparse fc matrix (docs/FORMAT.md "Windowed fc layers", AArch64 NEON): the rows, in the
 * order perm gives, in slices of PRUNEC_WSELL_ROWS = 4 (one NEON register of lanes). Lane l of slice s holds row
 * perm[4s + l] (lanes past the last row: perm 0, all fillers). Slice s has steps[s] steps; each step reads a window
 * of PRUNEC_WSELL_COLS = 16 consecutive inputs (64 bytes: what one four-register table lookup, TBL, reaches) and
 * gives every lane one of them and one weight. The slice's first window starts at column start[s]; advance[t] is
 * the distance in bytes of x from step t's window to the next one of its slice (0 after a slice's last step).
 * index holds 16 bytes per step, 4 per slot: the bytes 4o .. 4o+3 of the slot's input at offset o in the window,
 * i.e. the table indices that pick that float out of the 64 loaded bytes; values holds 4 weights per step. Lanes
 * without a nonzero in the window get fillers: offset 0, value 0. Every window lies inside x (the encoder moves a
 * window that would reach past x[cols - 1] left; the layout needs cols >= 16). Slots: 4 * the sum of steps, ~1.4-1.6
 * times the nonzeros of LeNet fc layers at 8 %: used where instructions, not bytes, decide (aarch64-neon: fc layers
 * of at most fc_wsell_max_bytes). */
#define PRUNEC_WSELL_ROWS 4u
#define PRUNEC_WSELL_COLS 16u
typedef struct prunec_wsell_f32 {
  uint32_t rows;
  uint32_t cols;
  const uint16_t *perm;     /* [ceil(rows / 4) * 4] the row of each lane */
  const uint32_t *steps;    /* [ceil(rows / 4)] steps of each slice */
  const uint32_t *start;    /* [ceil(rows / 4)] the first column of each slice's first window */
  const uint32_t *advance;  /* [sum of steps] bytes of x to the next window of the slice */
  const uint8_t *index;     /* [16 * sum of steps] table bytes: 4 per slot */
  const float *values;      /* [4 * sum of steps] weights, fillers 0.0f */
} prunec_wsell_f32;

/* Absolute-indexed CSR of a sparse fc matrix (docs/FORMAT.md "Absolute-indexed fc layers", Cortex-M): rows as in
 * relative-indexed CSR (row r owns entries row_ptr[r] .. row_ptr[r+1]-1), but entry e stores its column itself,
 * columns[e], as a uint32, and every row holds a multiple of PRUNEC_ACSR_GROUP = 4 entries: a row with a nonzero count
 * not a multiple of 4 ends with fillers (value 0, the column of the row's last nonzero); a row without nonzeros holds
 * none. 8 bytes per fp32 nonzero instead of ~5, for one multiple-register load of 4 or 8 columns and one load of x per
 * entry: no code to extract and add (Cortex-M4: ~3 instructions per entry against ~4.4; docs/BENCHMARKS.md
 * "Sixteenth session: absolute-indexed fc layers on Cortex-M"). Used where instructions, not flash, decide:
 * `--fc-layout acsr`. */
#define PRUNEC_ACSR_GROUP 4u
typedef struct prunec_acsr_f32 {
  uint32_t rows;
  uint32_t cols;
  const float *values;      /* [row_ptr[rows]] weights, fillers 0.0f */
  const uint32_t *columns;  /* [row_ptr[rows]] the column of each entry */
  const uint32_t *row_ptr;  /* [rows + 1], every row_ptr[r + 1] - row_ptr[r] a multiple of 4 */
} prunec_acsr_f32;

typedef struct prunec_dense_f32 {
  uint32_t rows;
  uint32_t cols;
  const float *values;      /* [rows x cols], row-major */
} prunec_dense_f32;

/* Convolution geometry. Input [in_c, in_h, in_w], output [out_c, out_h, out_w] (NCHW, batch 1).
 * out_h = (in_h + 2*pad_h - dil_h*(kh-1) - 1)/stride_h + 1 (likewise w). groups divides in_c and out_c. */
typedef struct prunec_conv2d_params {
  uint32_t in_c, in_h, in_w;
  uint32_t out_c, out_h, out_w;
  uint32_t kh, kw;
  uint32_t stride_h, stride_w;
  uint32_t pad_h, pad_w;
  uint32_t dil_h, dil_w;
  uint32_t groups;
} prunec_conv2d_params;

/* Pooling geometry, per channel. Windows may hang over the padded border (ceil_mode): max ignores cells
 * outside the input; avg divides by the window clipped to the padded input when count_include_pad, else
 * by the number of input cells it covers (PyTorch's rules). */
typedef struct prunec_pool2d_params {
  uint32_t channels;
  uint32_t in_h, in_w;
  uint32_t out_h, out_w;
  uint32_t kh, kw;
  uint32_t stride_h, stride_w;
  uint32_t pad_h, pad_w;
  uint32_t count_include_pad;
} prunec_pool2d_params;

#endif /* PRUNEC_TYPES_H */
