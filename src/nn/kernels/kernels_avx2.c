/* AVX2 + FMA variants of the hand-written kernels (kernels.h).  Compiled
 * with -mavx2 -mfma; called only when the running CPU has both. */
#include "nn/kernels/kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

/* Channel sums of x - shift for one 8-channel block of a blocked tensor
 * (images `ld` floats apart, S pixels of 8 channels each), in double. */
void mc_kern_bn_sums8_avx2(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                         const float *shift) {
  const __m256 c = _mm256_loadu_ps(shift);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i * ld + p * 8), c);
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(d)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
      s0 = _mm256_add_pd(s0, lo);
      s1 = _mm256_add_pd(s1, hi);
      q0 = _mm256_fmadd_pd(lo, lo, q0);
      q1 = _mm256_fmadd_pd(hi, hi, q1);
    }
  _mm256_storeu_pd(sum, s0);
  _mm256_storeu_pd(sum + 4, s1);
  _mm256_storeu_pd(sq, q0);
  _mm256_storeu_pd(sq + 4, q1);
}


/* 16-channel blocks: the two 8-channel halves of every pixel, the same
 * sums in the same order as two 8-block calls would take them. */
void mc_kern_bn_sums16_avx2(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                            const float *shift) {
  __m256d s[4], q[4];
  for (int h = 0; h < 4; h++) s[h] = q[h] = _mm256_setzero_pd();
  const __m256 c0 = _mm256_loadu_ps(shift), c1 = _mm256_loadu_ps(shift + 8);
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++) {
      const float *v = x + i * ld + p * 16;
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(v), c0), d1 = _mm256_sub_ps(_mm256_loadu_ps(v + 8), c1);
      const __m256d e[4] = {_mm256_cvtps_pd(_mm256_castps256_ps128(d0)), _mm256_cvtps_pd(_mm256_extractf128_ps(d0, 1)),
                            _mm256_cvtps_pd(_mm256_castps256_ps128(d1)), _mm256_cvtps_pd(_mm256_extractf128_ps(d1, 1))};
      for (int h = 0; h < 4; h++) {
        s[h] = _mm256_add_pd(s[h], e[h]);
        q[h] = _mm256_fmadd_pd(e[h], e[h], q[h]);
      }
    }
  for (int h = 0; h < 4; h++) {
    _mm256_storeu_pd(sum + 4 * h, s[h]);
    _mm256_storeu_pd(sq + 4 * h, q[h]);
  }
}

/* s1, s2 (count) += per-unit sum and sum of squares of one image's blocks. */
void mc_kern_block_sums_avx2(const float *g, int64_t bs, int64_t per, int64_t count, double *s1, double *s2) {
  for (int64_t cb = 0; cb < kern_pad8(count) / 8; cb++) {
    float x1[8] = {0}, x2[8] = {0};
    const float *v = g + cb * bs;
    __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (int64_t j = 0; j < per; j++) {
      __m256 x = _mm256_loadu_ps(v + j * 8);
      a1 = _mm256_add_ps(a1, x);
      a2 = _mm256_fmadd_ps(x, x, a2);
    }
    _mm256_storeu_ps(x1, a1);
    _mm256_storeu_ps(x2, a2);
    for (int r = 0; r < 8 && cb * 8 + r < count; r++) {
      s1[cb * 8 + r] += x1[r];
      s2[cb * 8 + r] += x2[r];
    }
  }
}

/* sab (count x count) += A B^T over one image's blocks: 8x8 unit tiles. */
void mc_kern_block_cross_avx2(const float *ga, int64_t bsa, const float *gb, int64_t bsb, int64_t per, int64_t count,
                        double *sab) {
  const int64_t nb = kern_pad8(count) / 8;
  for (int64_t ba = 0; ba < nb; ba++)
    for (int64_t bb = 0; bb < nb; bb++) {
      const float *a = ga + ba * bsa, *b = gb + bb * bsb;
      float t[8][8];
      __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
      for (int64_t j = 0; j < per; j++) {
        const float *x = a + j * 8;
        __m256 y = _mm256_loadu_ps(b + j * 8);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 0), y, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 1), y, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 2), y, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 3), y, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 4), y, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 5), y, c5);
        c6 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 6), y, c6);
        c7 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + 7), y, c7);
      }
      _mm256_storeu_ps(t[0], c0); _mm256_storeu_ps(t[1], c1); _mm256_storeu_ps(t[2], c2);
      _mm256_storeu_ps(t[3], c3); _mm256_storeu_ps(t[4], c4); _mm256_storeu_ps(t[5], c5);
      _mm256_storeu_ps(t[6], c6); _mm256_storeu_ps(t[7], c7);
      for (int r = 0; r < 8 && ba * 8 + r < count; r++)
        for (int q = 0; q < 8 && bb * 8 + q < count; q++) sab[(ba * 8 + r) * count + bb * 8 + q] += t[r][q];
    }
}


/* t = dy * scale, zero where y is not > 0 (NaN included): 8 lanes at a
 * time, a 16-channel block as two halves. */
void mc_kern_scale_mask_avx2(float *t, const float *dy, const float *y, const float *scale, int64_t S,
                             int64_t B) {
  const __m256 z = _mm256_setzero_ps(), c0 = _mm256_loadu_ps(scale), c1 = B > 8 ? _mm256_loadu_ps(scale + 8) : c0;
  for (int64_t q = 0; q < S * B; q += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(dy + q), q % B ? c1 : c0);
    if (y) v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(y + q), z, _CMP_GT_OQ));
    _mm256_storeu_ps(t + q, v);
  }
}

#endif
