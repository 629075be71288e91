/* Scalar variants of the hand-written kernels (kernels.h): the fallback
 * on every CPU, and the only ones off x86. */
#include "nn/kernels/kernels.h"

#include <string.h>

/* Channel sums of x - shift for one 8-channel block of a blocked tensor
 * (images `ld` floats apart, S pixels of 8 channels each), in double. */
void mc_kern_bn_sums8_scalar(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                         const float *shift) {
  for (int c = 0; c < 8; c++) sum[c] = sq[c] = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++)
      for (int c = 0; c < 8; c++) {
        const double d = (double)(x[i * ld + p * 8 + c] - shift[c]);
        sum[c] += d;
        sq[c] += d * d;
      }
}


/* 16-channel blocks ([N][C/16][S][16], AVX-512's nChw16c). */
void mc_kern_bn_sums16_scalar(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                              const float *shift) {
  for (int c = 0; c < 16; c++) sum[c] = sq[c] = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++)
      for (int c = 0; c < 16; c++) {
        const double d = (double)(x[i * ld + p * 16 + c] - shift[c]);
        sum[c] += d;
        sq[c] += d * d;
      }
}

/* s1, s2 (count) += per-unit sum and sum of squares of one image's blocks. */
void mc_kern_block_sums_scalar(const float *g, int64_t bs, int64_t per, int64_t count, double *s1, double *s2) {
  for (int64_t cb = 0; cb < kern_pad8(count) / 8; cb++) {
    float x1[8] = {0}, x2[8] = {0};
    const float *v = g + cb * bs;
    for (int64_t j = 0; j < per; j++)
      for (int r = 0; r < 8; r++) {
        x1[r] += v[j * 8 + r];
        x2[r] += v[j * 8 + r] * v[j * 8 + r];
      }
    for (int r = 0; r < 8 && cb * 8 + r < count; r++) {
      s1[cb * 8 + r] += x1[r];
      s2[cb * 8 + r] += x2[r];
    }
  }
}

/* sab (count x count) += A B^T over one image's blocks: 8x8 unit tiles. */
void mc_kern_block_cross_scalar(const float *ga, int64_t bsa, const float *gb, int64_t bsb, int64_t per, int64_t count,
                        double *sab) {
  const int64_t nb = kern_pad8(count) / 8;
  for (int64_t ba = 0; ba < nb; ba++)
    for (int64_t bb = 0; bb < nb; bb++) {
      const float *a = ga + ba * bsa, *b = gb + bb * bsb;
      float t[8][8];
      memset(t, 0, sizeof t);
      for (int64_t j = 0; j < per; j++)
        for (int r = 0; r < 8; r++)
          for (int q = 0; q < 8; q++) t[r][q] += a[j * 8 + r] * b[j * 8 + q];
      for (int r = 0; r < 8 && ba * 8 + r < count; r++)
        for (int q = 0; q < 8 && bb * 8 + q < count; q++) sab[(ba * 8 + r) * count + bb * 8 + q] += t[r][q];
    }
}


void mc_kern_scale_mask_scalar(float *t, const float *dy, const float *y, const float *scale, int64_t S,
                               int64_t B) {
  for (int64_t q = 0; q < S * B; q++) t[q] = y && !(y[q] > 0.f) ? 0.f : dy[q] * scale[q % B];
}
