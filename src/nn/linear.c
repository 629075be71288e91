/* Fully connected layer y = x W^T + b (PyTorch's nn.Linear), via sgemm. */
#include "ops.h"

#include <cblas.h>

void linear_forward(float *y, const float *x, const float *w, const float *b,
                    int64_t N, int64_t In, int64_t O) {
  if (b) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
      for (int64_t o = 0; o < O; o++) y[n * O + o] = b[o];
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)O, (int)In,
              1.f, x, (int)In, w, (int)In, b ? 1.f : 0.f, y, (int)O);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, int64_t N, int64_t In,
                     int64_t O) {
  /* dW (O,I) += dy^T (O,N) x (N,I) */
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)O, (int)In, (int)N,
                1.f, dy, (int)O, x, (int)In, 1.f, dw, (int)In);
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)In,
                (int)O, 1.f, dy, (int)O, w, (int)In, 1.f, dx, (int)In);
  if (db) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < O; o++) {
      double acc = 0;
      for (int64_t n = 0; n < N; n++) acc += dy[n * O + o];
      db[o] += (float)acc;
    }
  }
}
