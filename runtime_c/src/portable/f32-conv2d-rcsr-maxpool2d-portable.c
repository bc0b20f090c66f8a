/*
 * A convolution with the max pool after it fused (prunec.fuse), portable C99: per output channel c, the
 * convolution of that channel alone (prunec_f32_conv2d_rcsr__portable over the one-row view of the weights,
 * its clamp included) into `plane` (one channel's conv output: out_h * out_w floats), then
 * prunec_f32_maxpool2d__portable of that plane into channel c of y. Exactly the per-channel loop that a fused
 * build generates (docs/BUILD.md, "Conv + pool fusion"), as one kernel: the twin of the ISA variants, which
 * compute the convolution's shared set-up (the packed input) once per call.
 *
 * p: the whole convolution (out_c channels, groups); pp: the pool's geometry (in_h x in_w = p->out_h x
 * p->out_w); pp->channels is not read: each of the p->out_c channels is pooled. y: p->out_c planes of
 * pp->out_h x pp->out_w.
 */
#include "prunec_kernels.h"

void prunec_f32_conv2d_rcsr_maxpool2d__portable(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                                                const float *bias, const prunec_pool2d_params *pp, const float *x,
                                                float *plane, float *y, float out_min, float out_max) {
  const uint32_t cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
  const size_t in_plane = (size_t)p->in_h * p->in_w, pool_plane = (size_t)pp->out_h * pp->out_w;
  prunec_conv2d_params pc = *p;
  prunec_pool2d_params pq = *pp;
  uint32_t c;
  pc.in_c = cin_g;
  pc.out_c = 1u;
  pc.groups = 1u;
  pq.channels = 1u;
  for (c = 0; c < p->out_c; c++) {
    prunec_rcsr_f32 wc = *w;
    wc.rows = 1u;
    wc.row_ptr = w->row_ptr + c;
    prunec_f32_conv2d_rcsr__portable(&pc, &wc, bias != NULL ? bias + c : NULL,
                                     x + (size_t)(c / cout_g) * cin_g * in_plane, plane, out_min, out_max);
    prunec_f32_maxpool2d__portable(&pq, plane, y + (size_t)c * pool_plane);
  }
}
