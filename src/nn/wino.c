/* Winograd F(2x2, 3x3) forward convolution; see wino.h.
 *
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A   for each 2x2 output tile,
 *
 * with d the 4x4 input patch at (2ty - pad, 2tx - pad) and
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * The sum over input channels of the 16 elementwise products is a matrix
 * product per position xi of the 4x4 tile: M[xi] (tiles x K) = V[xi]
 * (tiles x C) . U[xi] (C x K).  Tiles are taken TB at a time so that V, M
 * and U stay in the per-core L2: input transform of TB tiles -> V,
 * 16 small GEMMs -> M, output transform -> dst.  All three stages work on
 * 8 channels at once (one AVX2 register), the blocked layout's unit. */
#include "nn/wino.h"

#include "modeconn.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define WINO_SIMD 1
#else
#define WINO_SIMD 0
#endif

#ifndef TB
#define TB 30 /* tiles per block, a multiple of the GEMM kernel's 6 rows */
#endif

int wino_available(void) { return WINO_SIMD; }

size_t wino_weight_floats(const wino_shape *s) { return (size_t)(16 * s->c * s->k); }

size_t wino_scratch_floats(const wino_shape *s) { return (size_t)(16 * TB * (s->c + s->k)); }

void wino_weights(float *u, const float *w, const wino_shape *s) {
  const int64_t C = s->c, K = s->k;
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++) {
      const float *g = w + (k * C + c) * 9;
      double t[4][3], r[4][4];
      for (int j = 0; j < 3; j++) {
        t[0][j] = g[j];
        t[1][j] = 0.5 * ((double)g[j] + g[3 + j] + g[6 + j]);
        t[2][j] = 0.5 * ((double)g[j] - g[3 + j] + g[6 + j]);
        t[3][j] = g[6 + j];
      }
      for (int i = 0; i < 4; i++) {
        r[i][0] = t[i][0];
        r[i][1] = 0.5 * (t[i][0] + t[i][1] + t[i][2]);
        r[i][2] = 0.5 * (t[i][0] - t[i][1] + t[i][2]);
        r[i][3] = t[i][2];
      }
      for (int xi = 0; xi < 16; xi++) u[(xi * C + c) * K + k] = (float)r[xi / 4][xi % 4];
    }
}

#if WINO_SIMD

typedef __m256 v8;

/* y = B^T x over 4 vectors (rows or columns of the patch). */
#define BT4(y0, y1, y2, y3, x0, x1, x2, x3) \
  do {                                      \
    y0 = _mm256_sub_ps(x0, x2);             \
    y1 = _mm256_add_ps(x1, x2);             \
    y2 = _mm256_sub_ps(x2, x1);             \
    y3 = _mm256_sub_ps(x1, x3);             \
  } while (0)

/* Input transform of one tile, all channel blocks: V[xi][tile][c].  The
 * column pass goes through a small stack array, so that no more than
 * about 16 vectors are live at once (AVX2 has 16 registers). */
static void input_tile(float *v, int64_t tt, const float *img, const wino_shape *s, int64_t iy0,
                       int64_t ix0) {
  const int64_t C = s->c, H = s->h, W = s->w, plane = H * W * 8;
  const int i0 = iy0 < 0 ? (int)-iy0 : 0, i1 = iy0 + 4 > H ? (int)(H - iy0) : 4;
  const int j0 = ix0 < 0 ? (int)-ix0 : 0, j1 = ix0 + 4 > W ? (int)(W - ix0) : 4;
  const int inside = i0 == 0 && j0 == 0 && i1 == 4 && j1 == 4;
  for (int64_t cb = 0; cb < C / 8; cb++) {
    const float *p = img + cb * plane + (iy0 * W + ix0) * 8;
    v8 t[4][4];
    for (int j = 0; j < 4; j++) {
      v8 d0, d1, d2, d3;
      if (inside) {
        d0 = _mm256_loadu_ps(p + j * 8);
        d1 = _mm256_loadu_ps(p + (W + j) * 8);
        d2 = _mm256_loadu_ps(p + (2 * W + j) * 8);
        d3 = _mm256_loadu_ps(p + (3 * W + j) * 8);
      } else {
        v8 d[4];
        for (int i = 0; i < 4; i++)
          d[i] = i >= i0 && i < i1 && j >= j0 && j < j1 ? _mm256_loadu_ps(p + (i * W + j) * 8)
                                                         : _mm256_setzero_ps();
        d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
      }
      BT4(t[0][j], t[1][j], t[2][j], t[3][j], d0, d1, d2, d3);
    }
    for (int i = 0; i < 4; i++) {
      v8 o0, o1, o2, o3;
      BT4(o0, o1, o2, o3, t[i][0], t[i][1], t[i][2], t[i][3]);
      float *q = v + (i * 4 * TB + tt) * C + cb * 8;
      _mm256_storeu_ps(q, o0);
      _mm256_storeu_ps(q + TB * C, o1);
      _mm256_storeu_ps(q + 2 * TB * C, o2);
      _mm256_storeu_ps(q + 3 * TB * C, o3);
    }
  }
}

/* m[6 x 16] = v[6 x C] . u[C x 16] (row strides C, K, K). */
static void gemm_6x16(float *m, const float *v, const float *u, int64_t C, int64_t K) {
  v8 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
  v8 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  for (int64_t c = 0; c < C; c++) {
    const v8 u0 = _mm256_loadu_ps(u + c * K), u1 = _mm256_loadu_ps(u + c * K + 8);
    v8 b = _mm256_broadcast_ss(v + c);
    a00 = _mm256_fmadd_ps(b, u0, a00);
    a01 = _mm256_fmadd_ps(b, u1, a01);
    b = _mm256_broadcast_ss(v + C + c);
    a10 = _mm256_fmadd_ps(b, u0, a10);
    a11 = _mm256_fmadd_ps(b, u1, a11);
    b = _mm256_broadcast_ss(v + 2 * C + c);
    a20 = _mm256_fmadd_ps(b, u0, a20);
    a21 = _mm256_fmadd_ps(b, u1, a21);
    b = _mm256_broadcast_ss(v + 3 * C + c);
    a30 = _mm256_fmadd_ps(b, u0, a30);
    a31 = _mm256_fmadd_ps(b, u1, a31);
    b = _mm256_broadcast_ss(v + 4 * C + c);
    a40 = _mm256_fmadd_ps(b, u0, a40);
    a41 = _mm256_fmadd_ps(b, u1, a41);
    b = _mm256_broadcast_ss(v + 5 * C + c);
    a50 = _mm256_fmadd_ps(b, u0, a50);
    a51 = _mm256_fmadd_ps(b, u1, a51);
  }
  _mm256_storeu_ps(m, a00);
  _mm256_storeu_ps(m + 8, a01);
  _mm256_storeu_ps(m + K, a10);
  _mm256_storeu_ps(m + K + 8, a11);
  _mm256_storeu_ps(m + 2 * K, a20);
  _mm256_storeu_ps(m + 2 * K + 8, a21);
  _mm256_storeu_ps(m + 3 * K, a30);
  _mm256_storeu_ps(m + 3 * K + 8, a31);
  _mm256_storeu_ps(m + 4 * K, a40);
  _mm256_storeu_ps(m + 4 * K + 8, a41);
  _mm256_storeu_ps(m + 5 * K, a50);
  _mm256_storeu_ps(m + 5 * K + 8, a51);
}

/* The same for the last 8 columns when K % 16 == 8. */
static void gemm_6x8(float *m, const float *v, const float *u, int64_t C, int64_t K) {
  v8 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  for (int64_t c = 0; c < C; c++) {
    const v8 u0 = _mm256_loadu_ps(u + c * K);
    a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + c), u0, a0);
    a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + C + c), u0, a1);
    a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + 2 * C + c), u0, a2);
    a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + 3 * C + c), u0, a3);
    a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + 4 * C + c), u0, a4);
    a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + 5 * C + c), u0, a5);
  }
  _mm256_storeu_ps(m, a0);
  _mm256_storeu_ps(m + K, a1);
  _mm256_storeu_ps(m + 2 * K, a2);
  _mm256_storeu_ps(m + 3 * K, a3);
  _mm256_storeu_ps(m + 4 * K, a4);
  _mm256_storeu_ps(m + 5 * K, a5);
}

/* y = A^T x over 4 vectors. */
#define AT4(y0, y1, x0, x1, x2, x3)                        \
  do {                                                     \
    y0 = _mm256_add_ps(_mm256_add_ps(x0, x1), x2);         \
    y1 = _mm256_sub_ps(_mm256_sub_ps(x1, x2), x3);         \
  } while (0)

/* Output transform of one tile, all channel blocks, + bias, clipped. */
static void output_tile(float *img, const float *mm, int64_t tt, const float *bias,
                        const wino_shape *s, int64_t oy0, int64_t ox0) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, plane = OH * OW * 8, xs = TB * K;
  const int ny = oy0 + 2 <= OH ? 2 : 1, nx = ox0 + 2 <= OW ? 2 : 1;
  for (int64_t kb = 0; kb < K / 8; kb++) {
    const float *x = mm + tt * K + kb * 8;
    v8 t[2][4];
    for (int j = 0; j < 4; j++)
      AT4(t[0][j], t[1][j], _mm256_loadu_ps(x + j * xs), _mm256_loadu_ps(x + (4 + j) * xs),
          _mm256_loadu_ps(x + (8 + j) * xs), _mm256_loadu_ps(x + (12 + j) * xs));
    const v8 b = bias ? _mm256_loadu_ps(bias + kb * 8) : _mm256_setzero_ps();
    float *p = img + kb * plane + (oy0 * OW + ox0) * 8;
    for (int i = 0; i < ny; i++) {
      v8 y0, y1;
      AT4(y0, y1, t[i][0], t[i][1], t[i][2], t[i][3]);
      _mm256_storeu_ps(p + i * OW * 8, _mm256_add_ps(y0, b));
      if (nx == 2) _mm256_storeu_ps(p + i * OW * 8 + 8, _mm256_add_ps(y1, b));
    }
  }
}

/* Tile t of the batch: image, and the tile's top-left output pixel. */
typedef struct {
  int64_t img, ty, tx, tx_n, ty_n;
} tile_pos;

static tile_pos tile_at(const wino_shape *s, int64_t t) {
  const int64_t tx_n = (s->ow + 1) / 2, ty_n = (s->oh + 1) / 2;
  return (tile_pos){t / (tx_n * ty_n), t % (tx_n * ty_n) / tx_n, t % tx_n, tx_n, ty_n};
}

static void tile_next(tile_pos *q) {
  if (++q->tx < q->tx_n) return;
  q->tx = 0;
  if (++q->ty < q->ty_n) return;
  q->ty = 0;
  q->img++;
}

/* Tiles [t0, t0 + nt) of the whole batch. */
static void wino_block(float *dst, const float *src, const float *u, const float *bias,
                       const wino_shape *s, float *scr, int64_t t0, int64_t nt) {
  const int64_t C = s->c, K = s->k;
  float *v = scr, *mm = scr + 16 * TB * C;
  tile_pos q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q))
    input_tile(v, tt, src + q.img * C * s->h * s->w, s, 2 * q.ty - s->pad, 2 * q.tx - s->pad);
  const int64_t rows = (nt + 5) / 6 * 6; /* the GEMM's rows past nt: zeros */
  for (int xi = 0; xi < 16 && rows > nt; xi++)
    memset(v + (xi * TB + nt) * C, 0, sizeof(float) * (size_t)((rows - nt) * C));
  for (int xi = 0; xi < 16; xi++) {
    const float *vx = v + xi * TB * C, *ux = u + xi * C * K;
    float *mx = mm + xi * TB * K;
    for (int64_t r = 0; r < rows; r += 6) {
      int64_t k0 = 0;
      for (; k0 + 16 <= K; k0 += 16) gemm_6x16(mx + r * K + k0, vx + r * C, ux + k0, C, K);
      if (k0 < K) gemm_6x8(mx + r * K + k0, vx + r * C, ux + k0, C, K);
    }
  }
  q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q))
    output_tile(dst + q.img * K * s->oh * s->ow, mm, tt, bias, s, 2 * q.ty, 2 * q.tx);
}

void wino_forward(float *dst, const float *src, const float *u, const float *bias,
                  const wino_shape *s, float *scratch, int nthr) {
  const int64_t tiles = s->n * ((s->oh + 1) / 2) * ((s->ow + 1) / 2);
  const int64_t nblk = (tiles + TB - 1) / TB;
  const size_t per = wino_scratch_floats(s);
  if (nthr <= 1) {
    for (int64_t b = 0; b < nblk; b++)
      wino_block(dst, src, u, bias, s, scratch, b * TB, tiles - b * TB < TB ? tiles - b * TB : TB);
    return;
  }
#pragma omp parallel for num_threads(nthr) schedule(static)
  for (int64_t b = 0; b < nblk; b++)
    wino_block(dst, src, u, bias, s, scratch + per * (size_t)omp_get_thread_num(), b * TB,
               tiles - b * TB < TB ? tiles - b * TB : TB);
}

#else /* no AVX2 + FMA: the executor never calls this */

void wino_forward(float *dst, const float *src, const float *u, const float *bias,
                  const wino_shape *s, float *scratch, int nthr) {
  (void)dst, (void)src, (void)u, (void)bias, (void)s, (void)scratch, (void)nthr;
  MC_ASSERT(0);
}

#endif
