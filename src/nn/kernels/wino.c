/* Winograd convolution: the shape rules every variant shares (wino.h),
 * and the entry points, which send each call to the variant the running
 * CPU supports (kernels.c). */
#include "nn/kernels/wino.h"
#include "nn/kernels/kernels.h"

#include "modeconn.h"

/* Positions of the transformed tile. */
static int64_t npos(const wino_shape *s) { return (s->m + 2) * (s->m + 2); }

int wino_tile(int64_t oh, int64_t ow, int64_t c) {
  const int64_t covered = (oh + 3) / 4 * 4 * ((ow + 3) / 4 * 4);
  return c <= 64 && 100 * covered <= 135 * oh * ow ? 4 : 2;
}

size_t wino_weight_floats(const wino_shape *s) { return (size_t)(npos(s) * s->c * s->k); }

/* V, M, then 2k doubles of channel sums */
size_t wino_scratch_floats(const wino_shape *s) {
  return (size_t)(npos(s) * WINO_TB * (s->c + s->k) + 4 * s->k + 8);
}


int wino_available(void) { return mc_kern_wino_available(); }

void wino_weights(float *u, const float *w, const wino_shape *s) {
  MC_ASSERT(mc_kern_wino_available());
  mc_kern_wino_weights_avx2(u, w, s, 0);
}

wino_shape wino_data_grad_shape(const wino_shape *f) {
  return (wino_shape){f->n, f->k, f->c, f->oh, f->ow, 2 - f->pad, f->h, f->w, wino_tile(f->h, f->w, f->k), f->blk};
}

void wino_weights_data_grad(float *u, const float *w, const wino_shape *s) {
  MC_ASSERT(mc_kern_wino_available());
  mc_kern_wino_weights_avx2(u, w, s, 1);
}

void wino_forward(float *dst, const float *src, const float *u, const float *bias, const wino_shape *s,
                  float *scratch, int nthr, const wino_stats *stats) {
  MC_ASSERT(mc_kern_wino_available());
  mc_kern_wino_forward_avx2(dst, src, u, bias, s, scratch, nthr, stats);
}
