/* Batch normalisation over (N,C,S), S = H*W (S = 1 for BatchNorm1d).
 * Statistics are accumulated in double so the result does not depend on
 * the batch size's rounding; the running variance uses the unbiased
 * estimate, exactly as PyTorch does. */
#include "ops.h"

#include <math.h>

void batchnorm_forward_train(float *y, float *mean, float *invstd,
                             float *rmean, float *rvar, const float *x,
                             const float *gamma, const float *beta, int64_t N,
                             int64_t C, int64_t S, float eps, float mom) {
  const double cnt = (double)(N * S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double s1 = 0, s2 = 0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) s1 += xp[j];
    }
    double mu = s1 / cnt;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) {
        double d = xp[j] - mu;
        s2 += d * d;
      }
    }
    double var = s2 / cnt;
    double is = 1.0 / sqrt(var + eps);
    mean[c] = (float)mu;
    invstd[c] = (float)is;
    if (rmean) {
      double unb = cnt > 1 ? var * cnt / (cnt - 1) : var;
      rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mu);
      rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unb);
    }
    float g = (float)(gamma[c] * is), b = (float)(beta[c] - mu * is * gamma[c]);
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * S;
      float *yp = y + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) yp[j] = xp[j] * g + b;
    }
  }
}

void batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                            const float *beta, const float *rmean,
                            const float *rvar, int64_t N, int64_t C, int64_t S,
                            float eps) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      double is = 1.0 / sqrt((double)rvar[c] + eps);
      float g = (float)(gamma[c] * is), b = (float)(beta[c] - rmean[c] * is * gamma[c]);
      const float *xp = x + (n * C + c) * S;
      float *yp = y + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) yp[j] = xp[j] * g + b;
    }
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *invstd,
                        const float *gamma, int64_t N, int64_t C, int64_t S,
                        int train) {
  const double cnt = (double)(N * S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double sdy = 0, sdyxh = 0;
    const double mu = mean[c], is = invstd[c];
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * S, *dp = dy + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) {
        sdy += dp[j];
        sdyxh += dp[j] * (xp[j] - mu) * is;
      }
    }
    if (dgamma) dgamma[c] += (float)sdyxh;
    if (dbeta) dbeta[c] += (float)sdy;
    if (!dx) continue;
    const double g = gamma[c] * is;
    const double m1 = train ? sdy / cnt : 0, m2 = train ? sdyxh / cnt : 0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * S, *dp = dy + (n * C + c) * S;
      float *dxp = dx + (n * C + c) * S;
      for (int64_t j = 0; j < S; j++) {
        double xh = (xp[j] - mu) * is;
        dxp[j] += (float)(g * (dp[j] - m1 - xh * m2));
      }
    }
  }
}
