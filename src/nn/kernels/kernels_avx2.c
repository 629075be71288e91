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

/* The 8 horizontal sums of a[0..8), as one vector. */
static inline __m256 hsum8x8(const __m256 *a) {
  const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

/* Input pixel ix of one row of the stem input gradient, every tap
 * checked against the borders: 8 lanes per vector, added across. */
static float dx3_pixel(const float *dyn, const float *wc, const int64_t *ho, const mc_dx3_shape *s, int64_t iy,
                       int64_t ix) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, B = s->blk;
  __m256 a = _mm256_setzero_ps();
  for (int ky = 0; ky < 3; ky++)
    for (int kx = 0; kx < 3; kx++) {
      const int64_t oy = iy + s->pad - ky, ox = ix + s->pad - kx;
      if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
      for (int64_t h = 0; h < K / 8; h++)
        a = _mm256_fmadd_ps(_mm256_load_ps(wc + (ky * 3 + kx) * K + h * 8),
                            _mm256_loadu_ps(dyn + ho[h] + (oy * OW + ox) * B), a);
    }
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/* Pixels ix0 .. ix0 + 7 of a row, where every column tap is inside: 8
 * sums of 8 lanes, added across at the end. */
static __m256 dx3_run8(const float *dyn, const float *wc, const int64_t *ho, const mc_dx3_shape *s, int64_t iy,
                       int64_t ix0) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, B = s->blk;
  __m256 a[8];
  for (int q = 0; q < 8; q++) a[q] = _mm256_setzero_ps();
  for (int ky = 0; ky < 3; ky++) {
    const int64_t oy = iy + s->pad - ky;
    if (oy < 0 || oy >= OH) continue;
    for (int kx = 0; kx < 3; kx++)
      for (int64_t h = 0; h < K / 8; h++) {
        const __m256 wv = _mm256_load_ps(wc + (ky * 3 + kx) * K + h * 8);
        const float *r = dyn + ho[h] + (oy * OW + ix0 + s->pad - kx) * B;
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) a[q] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r + q * B), a[q]);
      }
  }
  return hsum8x8(a);
}

/* Images [n0, n1) of the stem input gradient (kernels.h): per row, runs
 * of 8 pixels whose column taps are all inside, the rest one by one. */
void mc_kern_dx3_avx2(float *dx, const float *dy, const float *w, const mc_dx3_shape *s, int64_t n0, int64_t n1,
                      int acc) {
  const int64_t C = s->c, K = s->k, H = s->h, W = s->w, OH = s->oh, OW = s->ow;
  const int64_t xa = s->pad < 2 ? 2 - s->pad : 0, xb = OW - s->pad < W ? OW - s->pad : W; /* inside: [xa, xb) */
  float wt[MC_DX3_MAX_W] __attribute__((aligned(32))); /* [c][tap][k] */
  int64_t ho[MC_DX3_MAX_W / 72 + 1];                     /* where each 8 channels start in an image of dy */
  for (int64_t h = 0; h < K / 8; h++) ho[h] = h * 8 / s->blk * OH * OW * s->blk + h * 8 % s->blk;
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++)
      for (int q = 0; q < 9; q++) wt[(c * 9 + q) * K + k] = w[(k * C + c) * 9 + q];
  const int64_t row_lines = OW * s->blk * (int64_t)sizeof(float) / 64; /* one row of one channel block of dy */
  for (int64_t n = n0; n < n1; n++)
    for (int64_t c = 0; c < C; c++) {
      const float *dyn = dy + n * K * OH * OW, *wc = wt + c * 9 * K;
      for (int64_t iy = 0; iy < H; iy++) {
        float *d = dx + ((n * C + c) * H + iy) * W;
        /* dy's row 3 ahead of the ones this row reads (past the last: the
         * next image's), into L2: at batch 128 dy is not in cache (from a
         * cold one, 2 threads: 0.55 ms without, 0.43 ms with) */
        const int64_t pr = iy + s->pad + 2 + 3, pn = n + pr / OH;
        if (c == 0 && pn < n1)
          for (int64_t h = 0; h < K / s->blk; h++)
            for (int64_t l = 0; l < row_lines; l++)
              _mm_prefetch((const char *)(dy + pn * K * OH * OW + (h * OH + pr % OH) * OW * s->blk) + 64 * l,
                           _MM_HINT_T1);
        int64_t ix = 0;
        for (; ix < W; ix++) {
          if (ix >= xa && ix + 8 <= xb) {
            const __m256 r = dx3_run8(dyn, wc, ho, s, iy, ix);
            _mm256_storeu_ps(d + ix, acc ? _mm256_add_ps(_mm256_loadu_ps(d + ix), r) : r);
            ix += 7;
            continue;
          }
          const float r = dx3_pixel(dyn, wc, ho, s, iy, ix);
          d[ix] = acc ? d[ix] + r : r;
        }
      }
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
