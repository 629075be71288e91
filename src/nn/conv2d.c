/* Reference 2-d convolution: im2col + OpenBLAS sgemm, parallel over images.
 * BLAS is called inside our OpenMP region; the OpenMP build of OpenBLAS
 * runs single-threaded there (it checks omp_in_parallel), so the two never
 * fight over cores. */
#include "ops.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

size_t conv2d_col_floats(int64_t C, int k, int64_t OH, int64_t OW) {
  return (size_t)(C * k * k * OH * OW);
}

/* col (C*k*k, OH*OW) from one image x (C,H,W) */
static void im2col(float *col, const float *x, int64_t C, int64_t H, int64_t W,
                   int k, int s, int p, int64_t OH, int64_t OW) {
  for (int64_t c = 0; c < C; c++)
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        float *dst = col + ((c * k + ki) * k + kj) * OH * OW;
        const float *src = x + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
          int64_t ih = oh * s - p + ki;
          float *d = dst + oh * OW;
          if (ih < 0 || ih >= H) {
            memset(d, 0, sizeof(float) * (size_t)OW);
            continue;
          }
          for (int64_t ow = 0; ow < OW; ow++) {
            int64_t iw = ow * s - p + kj;
            d[ow] = (iw >= 0 && iw < W) ? src[ih * W + iw] : 0.f;
          }
        }
      }
}

static void col2im_add(float *x, const float *col, int64_t C, int64_t H,
                       int64_t W, int k, int s, int p, int64_t OH, int64_t OW) {
  for (int64_t c = 0; c < C; c++)
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        const float *src = col + ((c * k + ki) * k + kj) * OH * OW;
        float *dst = x + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
          int64_t ih = oh * s - p + ki;
          if (ih < 0 || ih >= H) continue;
          for (int64_t ow = 0; ow < OW; ow++) {
            int64_t iw = ow * s - p + kj;
            if (iw >= 0 && iw < W) dst[ih * W + iw] += src[oh * OW + ow];
          }
        }
      }
}

static int is_pointwise(int k, int s, int p) { return k == 1 && s == 1 && p == 0; }

void conv2d_forward(float *y, const float *x, const float *w, const float *b,
                    int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                    int k, int s, int p, int64_t OH, int64_t OW, float *col) {
  const int64_t K = C * k * k, P = OH * OW;
  const size_t colsz = conv2d_col_floats(C, k, OH, OW);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *xn = x + n * C * H * W;
    float *yn = y + n * O * P;
    const float *B = xn;
    if (!is_pointwise(k, s, p)) {
      float *c = col + (size_t)omp_get_thread_num() * colsz;
      im2col(c, xn, C, H, W, k, s, p, OH, OW);
      B = c;
    }
    if (b)
      for (int64_t o = 0; o < O; o++)
        for (int64_t j = 0; j < P; j++) yn[o * P + j] = b[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)O, (int)P,
                (int)K, 1.f, w, (int)K, B, (int)P, b ? 1.f : 0.f, yn, (int)P);
  }
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t O, int k, int s, int p,
                     int64_t OH, int64_t OW, float *col, float *dwscratch) {
  const int64_t K = C * k * k, P = OH * OW;
  const size_t colsz = conv2d_col_floats(C, k, OH, OW);
  int nt = omp_get_max_threads();
  if (dw) memset(dwscratch, 0, sizeof(float) * (size_t)(O * K) * (size_t)nt);
#pragma omp parallel
  {
    int t = omp_get_thread_num();
    float *c = col + (size_t)t * colsz;
    float *dwt = dwscratch + (size_t)t * (size_t)(O * K);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const float *xn = x + n * C * H * W;
      const float *dyn = dy + n * O * P;
      const float *B = xn;
      if (dw && !is_pointwise(k, s, p)) {
        im2col(c, xn, C, H, W, k, s, p, OH, OW);
        B = c;
      }
      /* dW (O,K) += dy (O,P) * col^T (P,K) */
      if (dw)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)O, (int)K,
                    (int)P, 1.f, dyn, (int)P, B, (int)P, 1.f, dwt, (int)K);
      if (dx) {
        float *dxn = dx + n * C * H * W;
        if (is_pointwise(k, s, p)) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P,
                      (int)O, 1.f, w, (int)K, dyn, (int)P, 1.f, dxn, (int)P);
        } else {
          /* dcol (K,P) = W^T (K,O) * dy (O,P) */
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P,
                      (int)O, 1.f, w, (int)K, dyn, (int)P, 0.f, c, (int)P);
          col2im_add(dxn, c, C, H, W, k, s, p, OH, OW);
        }
      }
    }
  }
  /* reduce per-thread accumulators in a fixed order: deterministic */
#pragma omp parallel for schedule(static) if (dw)
  for (int64_t i = 0; i < (dw ? O * K : 0); i++) {
    float acc = 0.f;
    for (int t = 0; t < nt; t++) acc += dwscratch[(size_t)t * (size_t)(O * K) + (size_t)i];
    dw[i] += acc;
  }
  if (db) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < O; o++) {
      double acc = 0;
      for (int64_t n = 0; n < N; n++) {
        const float *d = dy + (n * O + o) * P;
        for (int64_t j = 0; j < P; j++) acc += d[j];
      }
      db[o] += (float)acc;
    }
  }
}
