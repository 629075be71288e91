/* Max, average and global average pooling over (N*C) planes. */
#include "ops.h"

#include <float.h>

void maxpool_forward(float *y, int32_t *argmax, const float *x, int64_t NC,
                     int64_t H, int64_t W, int k, int s, int p, int64_t OH,
                     int64_t OW) {
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++) {
    const float *xp = x + q * H * W;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float best = -FLT_MAX;
        int32_t bi = -1;
        for (int i = 0; i < k; i++) {
          int64_t ih = oh * s - p + i;
          if (ih < 0 || ih >= H) continue;
          for (int j = 0; j < k; j++) {
            int64_t iw = ow * s - p + j;
            if (iw < 0 || iw >= W) continue;
            float v = xp[ih * W + iw];
            /* first maximum wins, NaN propagates (as PyTorch) */
            if (bi < 0 || v > best || v != v) {
              best = v;
              bi = (int32_t)(ih * W + iw);
              if (v != v) goto done;
            }
          }
        }
      done:
        y[(q * OH + oh) * OW + ow] = best;
        argmax[(q * OH + oh) * OW + ow] = bi;
      }
  }
}

void maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                      int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++)
    for (int64_t o = 0; o < OH * OW; o++) {
      int32_t a = argmax[q * OH * OW + o];
      if (a >= 0) dx[q * H * W + a] += dy[q * OH * OW + o];
    }
}

void avgpool_forward(float *y, const float *x, int64_t NC, int64_t H, int64_t W,
                     int k, int s, int p, int64_t OH, int64_t OW) {
  const float inv = 1.f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++) {
    const float *xp = x + q * H * W;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float acc = 0.f;
        for (int i = 0; i < k; i++) {
          int64_t ih = oh * s - p + i;
          if (ih < 0 || ih >= H) continue;
          for (int j = 0; j < k; j++) {
            int64_t iw = ow * s - p + j;
            if (iw >= 0 && iw < W) acc += xp[ih * W + iw];
          }
        }
        y[(q * OH + oh) * OW + ow] = acc * inv;
      }
  }
}

void avgpool_backward(float *dx, const float *dy, int64_t NC, int64_t H,
                      int64_t W, int k, int s, int p, int64_t OH, int64_t OW) {
  const float inv = 1.f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++) {
    float *dp = dx + q * H * W;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float g = dy[(q * OH + oh) * OW + ow] * inv;
        for (int i = 0; i < k; i++) {
          int64_t ih = oh * s - p + i;
          if (ih < 0 || ih >= H) continue;
          for (int j = 0; j < k; j++) {
            int64_t iw = ow * s - p + j;
            if (iw >= 0 && iw < W) dp[ih * W + iw] += g;
          }
        }
      }
  }
}

void gap_forward(float *y, const float *x, int64_t NC, int64_t S) {
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++) {
    float acc = 0.f;
    for (int64_t j = 0; j < S; j++) acc += x[q * S + j];
    y[q] = acc / (float)S;
  }
}

void gap_backward(float *dx, const float *dy, int64_t NC, int64_t S) {
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < NC; q++) {
    float g = dy[q] / (float)S;
    for (int64_t j = 0; j < S; j++) dx[q * S + j] += g;
  }
}
