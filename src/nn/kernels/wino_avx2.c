/* Winograd kernels, AVX2 + FMA variant for 8- and 16-channel blocks: this
 * file is compiled with -mavx2 -mfma (CMakeLists.txt) and only called when
 * the running CPU has both (kernels.c).  The algorithm: see wino.h.  A
 * 16-channel block (oneDNN's nChw16c, its layout on AVX-512 CPUs) is
 * taken as two 8-channel halves 16 floats apart from pixel to pixel; the
 * transformed tiles V and M hold channels in plain order either way, so
 * only the loads of the input patches and the stores of the output tiles
 * know the blocking. */
/* Winograd F(m x m, 3x3) forward convolution, m = 2 or 4; see wino.h.
 *
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A   for each m x m output tile,
 *
 * with d the (m+2) x (m+2) input patch at (m ty - pad, m tx - pad).
 * F(2x2, 3x3):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2, infinity):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
 * F(4x4) needs 36 instead of 144 multiplies per tile and channel pair
 * (F(2x2): 16 instead of 36), at a few more roundings per output.
 *
 * The sum over input channels of the elementwise products is a matrix
 * product per position xi of the transformed tile: M[xi] (tiles x K) =
 * V[xi] (tiles x C) . U[xi] (C x K).  Tiles are taken WINO_TB at a time so that
 * V, M and U stay in the per-core L2: input transform of WINO_TB tiles -> V,
 * (m+2)^2 small GEMMs -> M, output transform -> dst.  All three stages
 * work on 8 channels at once (one AVX2 register), the blocked layout's
 * unit. */
#include "nn/kernels/wino.h"
#include "nn/kernels/kernels.h"

#include "modeconn.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define WINO_SIMD 1
#else
#define WINO_SIMD 0
#endif



/* Positions of the transformed tile. */
static int64_t npos(const wino_shape *s) { return (s->m + 2) * (s->m + 2); }

static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

void mc_kern_wino_weights_avx2(float *u, const float *w, const wino_shape *s, int flip) {
  const int64_t C = s->c, K = s->k;
  const int a = (int)s->m + 2;
  const double *G = s->m == 4 ? &G4[0][0] : &G2[0][0];
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++) {
      float f[9];
      const float *g = w + (k * C + c) * 9;
      if (flip) { /* the forward conv's w[c][k], rotated by 180 degrees */
        for (int q = 0; q < 9; q++) f[q] = w[(c * K + k) * 9 + 8 - q];
        g = f;
      }
      double t[6][3], r[6][6];
      for (int i = 0; i < a; i++) /* t = G g */
        for (int j = 0; j < 3; j++)
          t[i][j] = G[i * 3] * g[j] + G[i * 3 + 1] * g[3 + j] + G[i * 3 + 2] * g[6 + j];
      for (int i = 0; i < a; i++) /* r = t G^T */
        for (int j = 0; j < a; j++)
          r[i][j] = t[i][0] * G[j * 3] + t[i][1] * G[j * 3 + 1] + t[i][2] * G[j * 3 + 2];
      for (int xi = 0; xi < a * a; xi++) u[(xi * C + c) * K + k] = (float)r[xi / a][xi % a];
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

/* Input transform of one 4x4 patch of 8 channels, rows `ld` and pixels
 * `px` floats apart:
 * V rows i = 0..3 of B^T d B, each stored as 4 vectors (xi = 4i + j) at q,
 * q + xs, ...  Row 0 of B^T d reads patch rows 0 and 2, rows 1 and 2 read
 * rows 1 and 2, row 3 reads rows 1 and 3: three groups of 8 loads keep
 * at most about 12 vectors live (AVX2 has 16 registers). */
static inline void patch_transform(float *q, int64_t xs, const float *p, int64_t ld, int64_t px) {
#define LD(i, j) _mm256_loadu_ps(p + (i) * ld + (j) * px)
#define ROW(r, a0, a1, a2, a3)                                             \
  do {                                                                     \
    v8 o0, o1, o2, o3;                                                     \
    BT4(o0, o1, o2, o3, a0, a1, a2, a3);                                   \
    _mm256_storeu_ps(q + (4 * (r) + 0) * xs, o0);                          \
    _mm256_storeu_ps(q + (4 * (r) + 1) * xs, o1);                          \
    _mm256_storeu_ps(q + (4 * (r) + 2) * xs, o2);                          \
    _mm256_storeu_ps(q + (4 * (r) + 3) * xs, o3);                          \
  } while (0)
  {
    const v8 a0 = _mm256_sub_ps(LD(0, 0), LD(2, 0)), a1 = _mm256_sub_ps(LD(0, 1), LD(2, 1));
    const v8 a2 = _mm256_sub_ps(LD(0, 2), LD(2, 2)), a3 = _mm256_sub_ps(LD(0, 3), LD(2, 3));
    ROW(0, a0, a1, a2, a3);
  }
  {
    const v8 b0 = LD(1, 0), b1 = LD(1, 1), b2 = LD(1, 2), b3 = LD(1, 3);
    const v8 c0 = LD(2, 0), c1 = LD(2, 1), c2 = LD(2, 2), c3 = LD(2, 3);
    ROW(1, _mm256_add_ps(b0, c0), _mm256_add_ps(b1, c1), _mm256_add_ps(b2, c2), _mm256_add_ps(b3, c3));
    ROW(2, _mm256_sub_ps(c0, b0), _mm256_sub_ps(c1, b1), _mm256_sub_ps(c2, b2), _mm256_sub_ps(c3, b3));
  }
  {
    const v8 a0 = _mm256_sub_ps(LD(1, 0), LD(3, 0)), a1 = _mm256_sub_ps(LD(1, 1), LD(3, 1));
    const v8 a2 = _mm256_sub_ps(LD(1, 2), LD(3, 2)), a3 = _mm256_sub_ps(LD(1, 3), LD(3, 3));
    ROW(3, a0, a1, a2, a3);
  }
#undef ROW
#undef LD
}

/* y = B^T x over 6 vectors, F(4x4, 3x3). */
#define BT6(y0, y1, y2, y3, y4, y5, x0, x1, x2, x3, x4, x5)                      \
  do {                                                                          \
    const v8 f4_ = _mm256_set1_ps(4.f), f5_ = _mm256_set1_ps(5.f);              \
    const v8 a_ = _mm256_fnmadd_ps(f4_, x2, x4), b_ = _mm256_fnmadd_ps(f4_, x1, x3); \
    const v8 c_ = _mm256_sub_ps(x4, x2);                                        \
    const v8 d_ = _mm256_mul_ps(_mm256_set1_ps(2.f), _mm256_sub_ps(x3, x1));    \
    y0 = _mm256_fmadd_ps(f4_, x0, _mm256_fnmadd_ps(f5_, x2, x4));               \
    y1 = _mm256_add_ps(a_, b_);                                                 \
    y2 = _mm256_sub_ps(a_, b_);                                                 \
    y3 = _mm256_add_ps(c_, d_);                                                 \
    y4 = _mm256_sub_ps(c_, d_);                                                 \
    y5 = _mm256_fmadd_ps(f4_, x1, _mm256_fnmadd_ps(f5_, x3, x5));               \
  } while (0)

/* Six vectors to r, r + ld, ..., r + 5 ld. */
static inline void store6(float *r, int64_t ld, v8 a, v8 b, v8 c, v8 d, v8 e, v8 f) {
  _mm256_storeu_ps(r, a);
  _mm256_storeu_ps(r + ld, b);
  _mm256_storeu_ps(r + 2 * ld, c);
  _mm256_storeu_ps(r + 3 * ld, d);
  _mm256_storeu_ps(r + 4 * ld, e);
  _mm256_storeu_ps(r + 5 * ld, f);
}

/* The 6x6 patch of F(4x4, 3x3): columns through a stack array, then rows. */
static inline void patch6_transform(float *q, int64_t xs, const float *p, int64_t ld, int64_t px) {
  v8 t[6][6];
  for (int j = 0; j < 6; j++) {
    const float *c = p + j * px;
    BT6(t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j], _mm256_loadu_ps(c),
        _mm256_loadu_ps(c + ld), _mm256_loadu_ps(c + 2 * ld), _mm256_loadu_ps(c + 3 * ld),
        _mm256_loadu_ps(c + 4 * ld), _mm256_loadu_ps(c + 5 * ld));
  }
  for (int i = 0; i < 6; i++) {
    v8 o0, o1, o2, o3, o4, o5;
    BT6(o0, o1, o2, o3, o4, o5, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
    store6(q + 6 * i * xs, xs, o0, o1, o2, o3, o4, o5);
  }
}

/* Input transform of one tile, all channel blocks: V[xi][tile][c].  A
 * patch that crosses the image border is first copied, zero-padded, into
 * a small buffer. */
static void input_tile(float *v, int64_t tt, const float *img, const wino_shape *s, int64_t iy0,
                       int64_t ix0) {
  const int64_t C = s->c, H = s->h, W = s->w, B = s->blk, plane = H * W * B;
  const int a = (int)s->m + 2;
  const int i0 = iy0 < 0 ? (int)-iy0 : 0, i1 = iy0 + a > H ? (int)(H - iy0) : a;
  const int j0 = ix0 < 0 ? (int)-ix0 : 0, j1 = ix0 + a > W ? (int)(W - ix0) : a;
  const int inside = i0 == 0 && j0 == 0 && i1 == a && j1 == a;
  float *q = v + tt * C;
  for (int64_t cb = 0; cb < C / 8; cb++) { /* 8 channels: a block or half of one */
    const float *p = img + cb * 8 / B * plane + cb * 8 % B + (iy0 * W + ix0) * B;
    const float *src = p;
    int64_t ld = W * B, px = B;
    float buf[36 * 8] __attribute__((aligned(32)));
    if (!inside) {
      for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
          _mm256_store_ps(buf + (i * a + j) * 8, i >= i0 && i < i1 && j >= j0 && j < j1
                                                     ? _mm256_loadu_ps(p + (i * W + j) * B)
                                                     : _mm256_setzero_ps());
      src = buf;
      ld = a * 8;
      px = 8;
    }
    if (a == 6) patch6_transform(q + cb * 8, WINO_TB * C, src, ld, px);
    else patch_transform(q + cb * 8, WINO_TB * C, src, ld, px);
  }
}

/* m[6 x 16] = v[6 x C] . u[C x 16] (row strides C, K, K): 12 accumulators,
 * 2 loads of u and 6 broadcasts of v per input channel. */
static void gemm_6x16(float *m, const float *v, const float *u, int64_t C, int64_t K) {
  v8 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
  v8 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
#define ROW_FMA(r)                                   \
  do {                                               \
    const v8 b = _mm256_broadcast_ss(v + (r) * C + c); \
    a##r##0 = _mm256_fmadd_ps(b, u0, a##r##0);       \
    a##r##1 = _mm256_fmadd_ps(b, u1, a##r##1);       \
  } while (0)
#define ROW_STORE(r)                                 \
  do {                                               \
    _mm256_storeu_ps(m + (r) * K, a##r##0);          \
    _mm256_storeu_ps(m + (r) * K + 8, a##r##1);      \
  } while (0)
  for (int64_t c = 0; c < C; c++) {
    const v8 u0 = _mm256_loadu_ps(u + c * K), u1 = _mm256_loadu_ps(u + c * K + 8);
    ROW_FMA(0);
    ROW_FMA(1);
    ROW_FMA(2);
    ROW_FMA(3);
    ROW_FMA(4);
    ROW_FMA(5);
  }
  ROW_STORE(0);
  ROW_STORE(1);
  ROW_STORE(2);
  ROW_STORE(3);
  ROW_STORE(4);
  ROW_STORE(5);
#undef ROW_FMA
#undef ROW_STORE
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
  store6(m, K, a0, a1, a2, a3, a4, a5);
}

/* y = A^T x over 4 vectors. */
#define AT4(y0, y1, x0, x1, x2, x3)                        \
  do {                                                     \
    y0 = _mm256_add_ps(_mm256_add_ps(x0, x1), x2);         \
    y1 = _mm256_sub_ps(_mm256_sub_ps(x1, x2), x3);         \
  } while (0)

/* y = A^T x over 6 vectors, F(4x4, 3x3). */
#define AT6(y0, y1, y2, y3, x0, x1, x2, x3, x4, x5)                      \
  do {                                                                  \
    const v8 s12_ = _mm256_add_ps(x1, x2), d12_ = _mm256_sub_ps(x1, x2); \
    const v8 s34_ = _mm256_add_ps(x3, x4), d34_ = _mm256_sub_ps(x3, x4); \
    y0 = _mm256_add_ps(_mm256_add_ps(x0, s12_), s34_);                   \
    y1 = _mm256_fmadd_ps(_mm256_set1_ps(2.f), d34_, d12_);               \
    y2 = _mm256_fmadd_ps(_mm256_set1_ps(4.f), s34_, s12_);               \
    y3 = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.f), d34_, d12_), x5); \
  } while (0)

/* Output transform of one tile, all channel blocks, + bias, clipped to
 * the image; with ps, the tile's shifted channel sums are added to ps[0..K)
 * and their squares to ps[K..2K). */
static void output_tile(float *img, const float *mm, int64_t tt, const float *bias,
                        const wino_shape *s, int64_t oy0, int64_t ox0, double *ps,
                        const float *shift) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, B = s->blk, plane = OH * OW * B, xs = WINO_TB * K;
  const int m = (int)s->m;
  const int ny = oy0 + m <= OH ? m : (int)(OH - oy0), nx = ox0 + m <= OW ? m : (int)(OW - ox0);
  for (int64_t kb = 0; kb < K / 8; kb++) {
    const float *x = mm + tt * K + kb * 8;
    const v8 b = bias ? _mm256_loadu_ps(bias + kb * 8) : _mm256_setzero_ps();
    float *p = img + kb * 8 / B * plane + kb * 8 % B + (oy0 * OW + ox0) * B;
    v8 y[4][4];
    if (m == 4) {
      v8 t[4][6];
      for (int j = 0; j < 6; j++)
        AT6(t[0][j], t[1][j], t[2][j], t[3][j], _mm256_loadu_ps(x + j * xs),
            _mm256_loadu_ps(x + (6 + j) * xs), _mm256_loadu_ps(x + (12 + j) * xs),
            _mm256_loadu_ps(x + (18 + j) * xs), _mm256_loadu_ps(x + (24 + j) * xs),
            _mm256_loadu_ps(x + (30 + j) * xs));
      for (int i = 0; i < 4; i++)
        AT6(y[i][0], y[i][1], y[i][2], y[i][3], t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
    } else {
      v8 t[2][4];
      for (int j = 0; j < 4; j++)
        AT4(t[0][j], t[1][j], _mm256_loadu_ps(x + j * xs), _mm256_loadu_ps(x + (4 + j) * xs),
            _mm256_loadu_ps(x + (8 + j) * xs), _mm256_loadu_ps(x + (12 + j) * xs));
      for (int i = 0; i < 2; i++) AT4(y[i][0], y[i][1], t[i][0], t[i][1], t[i][2], t[i][3]);
    }
    for (int i = 0; i < ny; i++)
      for (int j = 0; j < nx; j++) {
        y[i][j] = _mm256_add_ps(y[i][j], b);
        _mm256_storeu_ps(p + (i * OW + j) * B, y[i][j]);
      }
    if (ps) {
      const v8 c = _mm256_loadu_ps(shift + kb * 8);
      v8 s1 = _mm256_setzero_ps(), s2 = s1;
      for (int i = 0; i < ny; i++)
        for (int j = 0; j < nx; j++) {
          const v8 d = _mm256_sub_ps(y[i][j], c);
          s1 = _mm256_add_ps(s1, d);
          s2 = _mm256_fmadd_ps(d, d, s2);
        }
      double *q1 = ps + kb * 8, *q2 = ps + K + kb * 8;
      _mm256_storeu_pd(q1, _mm256_add_pd(_mm256_loadu_pd(q1), _mm256_cvtps_pd(_mm256_castps256_ps128(s1))));
      _mm256_storeu_pd(q1 + 4, _mm256_add_pd(_mm256_loadu_pd(q1 + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(s1, 1))));
      _mm256_storeu_pd(q2, _mm256_add_pd(_mm256_loadu_pd(q2), _mm256_cvtps_pd(_mm256_castps256_ps128(s2))));
      _mm256_storeu_pd(q2 + 4, _mm256_add_pd(_mm256_loadu_pd(q2 + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(s2, 1))));
    }
  }
}

/* Tile t of the batch: image, and the tile's position in tiles. */
typedef struct {
  int64_t img, ty, tx, tx_n, ty_n;
} tile_pos;

static tile_pos tile_at(const wino_shape *s, int64_t t) {
  const int64_t tx_n = (s->ow + s->m - 1) / s->m, ty_n = (s->oh + s->m - 1) / s->m;
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
                       const wino_shape *s, float *scr, int64_t t0, int64_t nt, double *ps,
                       const float *shift) {
  const int64_t C = s->c, K = s->k, m = s->m, np = npos(s);
  float *v = scr, *mm = scr + np * WINO_TB * C;
  tile_pos q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q))
    input_tile(v, tt, src + q.img * C * s->h * s->w, s, m * q.ty - s->pad, m * q.tx - s->pad);
  const int64_t rows = (nt + 5) / 6 * 6; /* the GEMM's rows past nt: zeros */
  for (int64_t xi = 0; xi < np && rows > nt; xi++)
    memset(v + (xi * WINO_TB + nt) * C, 0, sizeof(float) * (size_t)((rows - nt) * C));
  for (int64_t xi = 0; xi < np; xi++) {
    const float *vx = v + xi * WINO_TB * C, *ux = u + xi * C * K;
    float *mx = mm + xi * WINO_TB * K;
    for (int64_t r = 0; r < rows; r += 6) {
      int64_t k0 = 0;
      for (; k0 + 16 <= K; k0 += 16) gemm_6x16(mx + r * K + k0, vx + r * C, ux + k0, C, K);
      if (k0 < K) gemm_6x8(mx + r * K + k0, vx + r * C, ux + k0, C, K);
    }
  }
  q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q))
    output_tile(dst + q.img * K * s->oh * s->ow, mm, tt, bias, s, m * q.ty, m * q.tx, ps, shift);
}

/* The per-thread channel sums: 2k doubles after V and M, 32-byte aligned
 * (the scratch itself is). */
static double *thread_sums(const wino_shape *s, float *scr) {
  uintptr_t a = (uintptr_t)(scr + npos(s) * WINO_TB * (s->c + s->k));
  return (double *)((a + 31) & ~(uintptr_t)31);
}

void mc_kern_wino_forward_avx2(float *dst, const float *src, const float *u, const float *bias,
                  const wino_shape *s, float *scratch, int nthr, const wino_stats *stats) {
  MC_ASSERT((s->m == 2 || s->m == 4) && (s->blk == 8 || s->blk == 16) && s->c % s->blk == 0 &&
            s->k % s->blk == 0);
  const int64_t tiles = s->n * ((s->oh + s->m - 1) / s->m) * ((s->ow + s->m - 1) / s->m);
  const int64_t nblk = (tiles + WINO_TB - 1) / WINO_TB, K = s->k;
  const size_t per = wino_scratch_floats(s);
  if (nthr < 1) nthr = 1;
  if (nthr == 1) {
    double *ps = stats ? thread_sums(s, scratch) : NULL;
    if (ps) memset(ps, 0, sizeof(double) * (size_t)(2 * K));
    for (int64_t b = 0; b < nblk; b++)
      wino_block(dst, src, u, bias, s, scratch, b * WINO_TB, tiles - b * WINO_TB < WINO_TB ? tiles - b * WINO_TB : WINO_TB, ps,
                 stats ? stats->shift : NULL);
  } else {
#pragma omp parallel num_threads(nthr)
    {
#pragma omp master
      nthr = omp_get_num_threads(); /* the team may be smaller than asked */
      float *scr = scratch + per * (size_t)omp_get_thread_num();
      double *ps = stats ? thread_sums(s, scr) : NULL;
      if (ps) memset(ps, 0, sizeof(double) * (size_t)(2 * K));
#pragma omp for schedule(static)
      for (int64_t b = 0; b < nblk; b++)
        wino_block(dst, src, u, bias, s, scr, b * WINO_TB, tiles - b * WINO_TB < WINO_TB ? tiles - b * WINO_TB : WINO_TB, ps,
                   stats ? stats->shift : NULL);
    }
  }
  if (!stats) return;
  memset(stats->sum, 0, sizeof(double) * (size_t)K);
  memset(stats->sq, 0, sizeof(double) * (size_t)K);
  for (int t = 0; t < nthr; t++) { /* thread order: the same bytes every run */
    const double *ps = thread_sums(s, scratch + per * (size_t)t);
    for (int64_t k = 0; k < K; k++) {
      stats->sum[k] += ps[k];
      stats->sq[k] += ps[K + k];
    }
  }
}

#else /* no AVX2 + FMA: the executor never calls this */

void mc_kern_wino_forward_avx2(float *dst, const float *src, const float *u, const float *bias,
                  const wino_shape *s, float *scratch, int nthr, const wino_stats *stats) {
  (void)dst, (void)src, (void)u, (void)bias, (void)s, (void)scratch, (void)nthr, (void)stats;
  MC_ASSERT(0);
}

#endif
