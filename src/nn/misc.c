/* The data-movement ops: input normalisation, dropout, channel concat. */
#include "ops.h"

#include <string.h>

void normalize_forward(float *y, const float *x, const float *mean,
                       const float *std, int64_t N, int64_t C, int64_t S) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const float m = mean[c], is = 1.f / std[c];
      const float *xp = x + (n * C + c) * S;
      float *yp = y + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) yp[j] = (xp[j] - m) * is;
    }
}

void normalize_backward(float *dx, const float *dy, const float *std,
                        int64_t N, int64_t C, int64_t S) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const float is = 1.f / std[c];
      for (int64_t j = 0; j < S; j++) dx[(n * C + c) * S + j] += dy[(n * C + c) * S + j] * is;
    }
}

void dropout_forward(float *y, float *mask, const float *x, int64_t n, float p,
                     mc_rng *rng) {
  const float keep = 1.f / (1.f - p);
  /* serial: the mask must not depend on the thread count */
  for (int64_t i = 0; i < n; i++) {
    mask[i] = mc_rng_uniform(rng) >= p ? keep : 0.f;
    y[i] = x[i] * mask[i];
  }
}

void dropout_backward(float *dx, const float *dy, const float *mask, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
}

void concat_forward(float *y, const float *const *xs, const int64_t *cs,
                    int nin, int64_t N, int64_t S) {
  int64_t ct = 0;
  for (int j = 0; j < nin; j++) ct += cs[j];
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    int64_t off = 0;
    for (int j = 0; j < nin; j++) {
      memcpy(y + (n * ct + off) * S, xs[j] + n * cs[j] * S, sizeof(float) * (size_t)(cs[j] * S));
      off += cs[j];
    }
  }
}

void concat_backward(float *const *dxs, const float *dy, const int64_t *cs,
                     int nin, int64_t N, int64_t S) {
  int64_t ct = 0;
  for (int j = 0; j < nin; j++) ct += cs[j];
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    int64_t off = 0;
    for (int j = 0; j < nin; j++) {
      const float *src = dy + (n * ct + off) * S;
      float *dst = dxs[j] + n * cs[j] * S;
      for (int64_t i = 0; i < cs[j] * S; i++) dst[i] += src[i];
      off += cs[j];
    }
  }
}
