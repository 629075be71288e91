/* ReLU and the elementwise helpers (residual add, gradient accumulation). */
#include "ops.h"

void relu_forward(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

void relu_backward(float *dx, const float *dy, const float *y, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.f ? dy[i] : 0.f;
}

void add_relu_forward(float *y, const float *const *xs, int nin, int64_t n, int relu) {
  /* no restrict: y may alias an input; `omp simd` vectorises either way */
  const float *a = xs[0], *b = nin > 1 ? xs[1] : xs[0];
  float *o = y;
  if (nin == 2 && relu) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const float s = a[i] + b[i];
      o[i] = s > 0.f ? s : 0.f;
    }
    return;
  }
  if (nin == 2) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i];
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float s = xs[0][i];
    for (int j = 1; j < nin; j++) s += xs[j][i];
    y[i] = !relu || s > 0.f ? s : 0.f;
  }
}

void add_forward(float *y, const float *const *xs, int nin, int64_t n) { add_relu_forward(y, xs, nin, n, 0); }

void vec_accumulate(float *dx, const float *dy, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}
