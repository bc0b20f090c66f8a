#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H
#include "prunec_kernels.h"

typedef void (*bench_fc_rcsr_fn)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_fc_dense_fn)(const prunec_dense_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_fc_bsell_fn)(const prunec_bsell_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_fc_rsell_fn)(const prunec_rsell_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_conv_rcsr_fn)(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *,
                                   const float *, float *, float, float);
typedef void (*bench_conv_dense_fn)(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *,
                                    const float *, float *, float, float);

double bench_fc_rcsr(bench_fc_rcsr_fn f, const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                     int batch, long iters, float lo, float hi);
double bench_fc_dense(bench_fc_dense_fn f, const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_fc_bsell(bench_fc_bsell_fn f, const prunec_bsell_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_fc_rsell(bench_fc_rsell_fn f, const prunec_rsell_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_conv_rcsr(bench_conv_rcsr_fn f, const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                       const float *bias, const float *x, float *y, long iters, float lo, float hi);
double bench_conv_dense(bench_conv_dense_fn f, const prunec_conv2d_params *p, const prunec_dense_f32 *w,
                        const float *bias, const float *x, float *y, long iters, float lo, float hi);
#endif
