/* The SIMD body of the Winograd kernels, written once over a vector type
 * and included by each ISA's variant file (wino_avx2.c: VL = 8 lanes,
 * wino_avx512.c: VL = 16), which defines before including it:
 *   vf, VL          the vector type and its lanes
 *   VLD, VST, VSTA  unaligned load, unaligned store, aligned store
 *   VADD, VSUB, VMUL, VMAX, VSET1, VZERO, VBCAST (broadcast one float)
 *   VFMA(a, b, c) = a * b + c, VFNMA(a, b, c) = c - a * b
 *   VADD_TO_DOUBLE(q, v)   q[0..VL) += v, in double
 *   WINO_FORWARD    the name of the entry point (kernels.h)
 * A vector covers VL channels of a channel block of blk >= VL channels:
 * the whole block, or half of a 16-channel block with AVX2.  The
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
 * work on VL channels at once (one vector register: 8 with AVX2, 16 with
 * AVX-512), a channel block or half of one. */
#include <omp.h>
#include <string.h>

/* Positions of the transformed tile. */
static int64_t npos(const wino_shape *s) { return (s->m + 2) * (s->m + 2); }

/* Output tiles of the whole batch. */
static int64_t batch_tiles(const wino_shape *s) { return s->n * ((s->oh + s->m - 1) / s->m) * ((s->ow + s->m - 1) / s->m); }

/* y = B^T x over 4 vectors (rows or columns of the patch). */
#define BT4(y0, y1, y2, y3, x0, x1, x2, x3) \
  do {                                      \
    y0 = VSUB(x0, x2);             \
    y1 = VADD(x1, x2);             \
    y2 = VSUB(x2, x1);             \
    y3 = VSUB(x1, x3);             \
  } while (0)

/* Input transform of one 4x4 patch of VL channels, rows `ld` and pixels
 * `px` floats apart:
 * V rows i = 0..3 of B^T d B, each stored as 4 vectors (xi = 4i + j) at q,
 * q + xs, ...  Row 0 of B^T d reads patch rows 0 and 2, rows 1 and 2 read
 * rows 1 and 2, row 3 reads rows 1 and 3: three groups of 8 loads keep
 * at most about 12 vectors live (AVX2 has 16 registers, AVX-512 32). */
static inline void patch_transform(float *q, int64_t xs, const float *p, int64_t ld, int64_t px) {
#define LD(i, j) VLD(p + (i) * ld + (j) * px)
#define ROW(r, a0, a1, a2, a3)                                             \
  do {                                                                     \
    vf o0, o1, o2, o3;                                                     \
    BT4(o0, o1, o2, o3, a0, a1, a2, a3);                                   \
    VST(q + (4 * (r) + 0) * xs, o0);                          \
    VST(q + (4 * (r) + 1) * xs, o1);                          \
    VST(q + (4 * (r) + 2) * xs, o2);                          \
    VST(q + (4 * (r) + 3) * xs, o3);                          \
  } while (0)
  {
    const vf a0 = VSUB(LD(0, 0), LD(2, 0)), a1 = VSUB(LD(0, 1), LD(2, 1));
    const vf a2 = VSUB(LD(0, 2), LD(2, 2)), a3 = VSUB(LD(0, 3), LD(2, 3));
    ROW(0, a0, a1, a2, a3);
  }
  {
    const vf b0 = LD(1, 0), b1 = LD(1, 1), b2 = LD(1, 2), b3 = LD(1, 3);
    const vf c0 = LD(2, 0), c1 = LD(2, 1), c2 = LD(2, 2), c3 = LD(2, 3);
    ROW(1, VADD(b0, c0), VADD(b1, c1), VADD(b2, c2), VADD(b3, c3));
    ROW(2, VSUB(c0, b0), VSUB(c1, b1), VSUB(c2, b2), VSUB(c3, b3));
  }
  {
    const vf a0 = VSUB(LD(1, 0), LD(3, 0)), a1 = VSUB(LD(1, 1), LD(3, 1));
    const vf a2 = VSUB(LD(1, 2), LD(3, 2)), a3 = VSUB(LD(1, 3), LD(3, 3));
    ROW(3, a0, a1, a2, a3);
  }
#undef ROW
#undef LD
}

/* y = B^T x over 6 vectors, F(4x4, 3x3). */
#define BT6(y0, y1, y2, y3, y4, y5, x0, x1, x2, x3, x4, x5)                      \
  do {                                                                          \
    const vf f4_ = VSET1(4.f), f5_ = VSET1(5.f);              \
    const vf a_ = VFNMA(f4_, x2, x4), b_ = VFNMA(f4_, x1, x3); \
    const vf c_ = VSUB(x4, x2);                                        \
    const vf d_ = VMUL(VSET1(2.f), VSUB(x3, x1));    \
    y0 = VFMA(f4_, x0, VFNMA(f5_, x2, x4));               \
    y1 = VADD(a_, b_);                                                 \
    y2 = VSUB(a_, b_);                                                 \
    y3 = VADD(c_, d_);                                                 \
    y4 = VSUB(c_, d_);                                                 \
    y5 = VFMA(f4_, x1, VFNMA(f5_, x3, x5));               \
  } while (0)

/* Six vectors to r, r + ld, ..., r + 5 ld. */
static inline void store6(float *r, int64_t ld, vf a, vf b, vf c, vf d, vf e, vf f) {
  VST(r, a);
  VST(r + ld, b);
  VST(r + 2 * ld, c);
  VST(r + 3 * ld, d);
  VST(r + 4 * ld, e);
  VST(r + 5 * ld, f);
}

/* The 6x6 patch of F(4x4, 3x3): columns through a stack array, then rows.
 * Only rows [i0, i1) and columns [j0, j1) of the patch lie in the image;
 * the rest is the zero padding, never loaded (constants 0, 6, 0, 6 for a
 * patch inside the image compile to the plain loads). */
static inline __attribute__((always_inline)) void patch6_transform(float *q, int64_t xs, const float *p, int64_t ld,
                                                                   int64_t px, int i0, int i1, int j0, int j1) {
  vf t[6][6];
  for (int j = 0; j < 6; j++) {
    const float *c = p + j * px;
    vf x[6];
    for (int i = 0; i < 6; i++) x[i] = j >= j0 && j < j1 && i >= i0 && i < i1 ? VLD(c + i * ld) : VZERO();
    BT6(t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j], x[0], x[1], x[2], x[3], x[4], x[5]);
  }
  for (int i = 0; i < 6; i++) {
    vf o0, o1, o2, o3, o4, o5;
    BT6(o0, o1, o2, o3, o4, o5, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
    store6(q + 6 * i * xs, xs, o0, o1, o2, o3, o4, o5);
  }
}

/* Input transform of one tile, all channel blocks: V[xi][tile][c].  A
 * 6x6 patch that crosses the image border loads only its pixels inside; a
 * 4x4 one is first copied, zero-padded, into a small buffer. */
static void input_tile(float *v, int64_t tt, const float *img, const wino_shape *s, int64_t iy0,
                       int64_t ix0) {
  const int64_t C = s->c, H = s->h, W = s->w, B = s->blk, plane = H * W * B;
  const int a = (int)s->m + 2;
  const int i0 = iy0 < 0 ? (int)-iy0 : 0, i1 = iy0 + a > H ? (int)(H - iy0) : a;
  const int j0 = ix0 < 0 ? (int)-ix0 : 0, j1 = ix0 + a > W ? (int)(W - ix0) : a;
  const int inside = i0 == 0 && j0 == 0 && i1 == a && j1 == a;
  float *q = v + tt * C;
  for (int64_t cb = 0; cb < C / VL; cb++) { /* VL channels: a block or half of one */
    const float *p = img + cb * VL / B * plane + cb * VL % B + (iy0 * W + ix0) * B;
    const float *src = p;
    int64_t ld = W * B, px = B;
    if (a == 6) {
      if (inside) patch6_transform(q + cb * VL, WINO_TB * C, src, ld, px, 0, 6, 0, 6);
      else patch6_transform(q + cb * VL, WINO_TB * C, src, ld, px, i0, i1, j0, j1);
      continue;
    }
    float buf[16 * VL] __attribute__((aligned(64)));
    if (!inside) {
      for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
          VSTA(buf + (i * a + j) * VL, i >= i0 && i < i1 && j >= j0 && j < j1
                                                     ? VLD(p + (i * W + j) * B)
                                                     : VZERO());
      src = buf;
      ld = a * VL;
      px = VL;
    }
    patch_transform(q + cb * VL, WINO_TB * C, src, ld, px);
  }
}

/* m[6 x 2VL] = v[6 x C] . u[C x 2VL] (row strides C, K, K): 12 accumulators,
 * 2 loads of u and 6 broadcasts of v per input channel. */
static void gemm_6x2v(float *m, const float *v, const float *u, int64_t C, int64_t K) {
  vf a00 = VZERO(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
  vf a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
#define ROW_FMA(r)                                   \
  do {                                               \
    const vf b = VBCAST(v + (r) * C + c); \
    a##r##0 = VFMA(b, u0, a##r##0);       \
    a##r##1 = VFMA(b, u1, a##r##1);       \
  } while (0)
#define ROW_STORE(r)                                 \
  do {                                               \
    VST(m + (r) * K, a##r##0);          \
    VST(m + (r) * K + VL, a##r##1);     \
  } while (0)
  for (int64_t c = 0; c < C; c++) {
    const vf u0 = VLD(u + c * K), u1 = VLD(u + c * K + VL);
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

/* The same for the last VL columns when K % 2VL == VL. */
static void gemm_6x1v(float *m, const float *v, const float *u, int64_t C, int64_t K) {
  vf a0 = VZERO(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  for (int64_t c = 0; c < C; c++) {
    const vf u0 = VLD(u + c * K);
    a0 = VFMA(VBCAST(v + c), u0, a0);
    a1 = VFMA(VBCAST(v + C + c), u0, a1);
    a2 = VFMA(VBCAST(v + 2 * C + c), u0, a2);
    a3 = VFMA(VBCAST(v + 3 * C + c), u0, a3);
    a4 = VFMA(VBCAST(v + 4 * C + c), u0, a4);
    a5 = VFMA(VBCAST(v + 5 * C + c), u0, a5);
  }
  store6(m, K, a0, a1, a2, a3, a4, a5);
}

/* y = A^T x over 4 vectors. */
#define AT4(y0, y1, x0, x1, x2, x3)                        \
  do {                                                     \
    y0 = VADD(VADD(x0, x1), x2);         \
    y1 = VSUB(VSUB(x1, x2), x3);         \
  } while (0)

/* y = A^T x over 6 vectors, F(4x4, 3x3). */
#define AT6(y0, y1, y2, y3, x0, x1, x2, x3, x4, x5)                      \
  do {                                                                  \
    const vf s12_ = VADD(x1, x2), d12_ = VSUB(x1, x2); \
    const vf s34_ = VADD(x3, x4), d34_ = VSUB(x3, x4); \
    y0 = VADD(VADD(x0, s12_), s34_);                   \
    y1 = VFMA(VSET1(2.f), d34_, d12_);               \
    y2 = VFMA(VSET1(4.f), s34_, s12_);               \
    y3 = VADD(VFMA(VSET1(8.f), d34_, d12_), x5); \
  } while (0)

/* One output row of a tile: its nx <= 4 values r[] + bias (+ what dst
 * holds, then the ReLU, as s->acc, s->relu), stored at d, d + B, ...; with
 * sums, their shifted sums and squares added to s1, s2.  A full row (nx
 * = 4, the common case) is unrolled, so r stays in registers. */
#define OUT_ONE(j)                                                                           \
  do {                                                                                       \
    vf y_ = VADD(r[j], b);                                                                   \
    if (acc) y_ = VADD(VLD(d + (j) * B), y_);                                                \
    if (relu) y_ = VMAX(y_, VZERO()); /* NaN -> 0, as relu_forward (max: its 2nd operand) */ \
    VST(d + (j) * B, y_);                                                                    \
    if (sums) {                                                                              \
      const vf e_ = VSUB(y_, c);                                                             \
      *s1 = VADD(*s1, e_);                                                                   \
      *s2 = VFMA(e_, e_, *s2);                                                               \
    }                                                                                        \
  } while (0)
static inline __attribute__((always_inline)) void out_row(float *d, int64_t B, const vf *r, int nx, vf b, int acc,
                                                          int relu, int sums, vf c, vf *s1, vf *s2) {
  if (nx == 4) {
    OUT_ONE(0);
    OUT_ONE(1);
    OUT_ONE(2);
    OUT_ONE(3);
  } else {
    for (int j = 0; j < nx; j++) OUT_ONE(j);
  }
}
#undef OUT_ONE

/* Output transform of one tile, all channel blocks, + bias (+ what the
 * image holds when s->acc, then the ReLU when s->relu), clipped to the
 * image; with ps, the tile's shifted channel sums are added to ps[0..K)
 * and their squares to ps[K..2K). */
static void output_tile(float *img, const float *mm, int64_t tt, const float *bias,
                        const wino_shape *s, int64_t oy0, int64_t ox0, double *ps,
                        const float *shift) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, B = s->blk, plane = OH * OW * B, xs = WINO_TB * K;
  const int m = (int)s->m, acc = s->acc, relu = s->relu, sums = ps != NULL;
  const int ny = oy0 + m <= OH ? m : (int)(OH - oy0), nx = ox0 + m <= OW ? m : (int)(OW - ox0);
  for (int64_t kb = 0; kb < K / VL; kb++) {
    const float *x = mm + tt * K + kb * VL;
    const vf b = bias ? VLD(bias + kb * VL) : VZERO(), c = sums ? VLD(shift + kb * VL) : VZERO();
    float *p = img + kb * VL / B * plane + kb * VL % B + (oy0 * OW + ox0) * B;
    vf s1 = VZERO(), s2 = s1;
    if (m == 4) {
      vf t[4][6];
      for (int j = 0; j < 6; j++)
        AT6(t[0][j], t[1][j], t[2][j], t[3][j], VLD(x + j * xs),
            VLD(x + (6 + j) * xs), VLD(x + (12 + j) * xs),
            VLD(x + (18 + j) * xs), VLD(x + (24 + j) * xs),
            VLD(x + (30 + j) * xs));
      for (int i = 0; i < ny; i++) {
        vf r[4];
        AT6(r[0], r[1], r[2], r[3], t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
        out_row(p + i * OW * B, B, r, nx, b, acc, relu, sums, c, &s1, &s2);
      }
    } else {
      vf t[2][4];
      for (int j = 0; j < 4; j++)
        AT4(t[0][j], t[1][j], VLD(x + j * xs), VLD(x + (4 + j) * xs),
            VLD(x + (8 + j) * xs), VLD(x + (12 + j) * xs));
      for (int i = 0; i < ny; i++) {
        vf r[4];
        AT4(r[0], r[1], t[i][0], t[i][1], t[i][2], t[i][3]);
        r[2] = r[3] = VZERO(); /* never stored: nx <= 2 */
        out_row(p + i * OW * B, B, r, nx, b, acc, relu, sums, c, &s1, &s2);
      }
    }
    if (sums) {
      VADD_TO_DOUBLE(ps + kb * VL, s1);
      VADD_TO_DOUBLE(ps + K + kb * VL, s2);
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

/* Prefetching: while one block's GEMMs run, the rows of the input that
 * the next block's tiles read, and of the output that this block's tiles
 * write, are brought into L2.  At batch 128 the activations do not stay
 * in cache between layers: from a cold cache a 16-channel 28x28 forward
 * took 1.85 ms per batch of 128 (2 threads), from a warm one 1.14 ms, and
 * with these prefetches 1.21 ms.  A walk over the cache lines of
 * rows [lo, .) of image img_a, every row of the images between, and rows
 * [., hi) of image img_b, in each of cbn channel blocks (planes of h rows
 * of row_bytes). */
typedef struct {
  const char *base;                   /* NULL: the walk is over */
  int64_t img, img_a, img_b, cb, cbn; /* image and channel block now; the range's images */
  int64_t lo, hi, h;
  int64_t line, lines;                /* next line of the current (img, cb) rows, their end */
  int64_t row_bytes;
  int64_t per;                        /* lines per call of wino_prefetch_step: all in npos calls */
} wino_pf;

static void wino_pf_rows(wino_pf *f) {
  const int64_t r0 = f->img == f->img_a ? f->lo : 0, r1 = f->img == f->img_b ? f->hi : f->h;
  f->line = r0 * f->row_bytes / 64;
  f->lines = (r1 * f->row_bytes + 63) / 64;
}

/* The walk over the input rows (out 0) that tiles [t0, t0 + nt) read,
 * or the output rows (out 1) that they write. */
static wino_pf wino_pf_tiles(const float *base, const wino_shape *s, int64_t t0, int64_t nt, int out) {
  const int64_t tiles = batch_tiles(s);
  wino_pf f = {0};
  if (nt <= 0 || t0 >= tiles) return f;
  if (t0 + nt > tiles) nt = tiles - t0;
  const tile_pos a = tile_at(s, t0), b = tile_at(s, t0 + nt - 1);
  const int64_t h = out ? s->oh : s->h, off = out ? 0 : -s->pad, ext = out ? s->m : s->m + 2;
  const int64_t lo = s->m * a.ty + off, hi = s->m * b.ty + off + ext;
  f = (wino_pf){(const char *)base, a.img, a.img, b.img, 0, (out ? s->k : s->c) / s->blk, lo < 0 ? 0 : lo,
                hi > h ? h : hi, h, 0, 0, (out ? s->ow : s->w) * s->blk * (int64_t)sizeof(float), 0};
  const int64_t rows = (b.img - a.img) * h + f.hi - f.lo;
  f.per = (rows * f.row_bytes / 64 * f.cbn) / npos(s) + 1;
  wino_pf_rows(&f);
  return f;
}

/* Issues the walk's next f->per prefetches. */
static inline void wino_prefetch_step(wino_pf *f) {
  int64_t n = f->per;
  while (f->base && n > 0) {
    if (f->line >= f->lines) {
      if (++f->cb == f->cbn) {
        f->cb = 0;
        if (++f->img > f->img_b) {
          f->base = NULL;
          return;
        }
      }
      wino_pf_rows(f);
      continue;
    }
    __builtin_prefetch(f->base + ((f->img * f->cbn + f->cb) * f->h * f->row_bytes + 64 * f->line), 0, 2);
    f->line++;
    n--;
  }
}

/* Tiles [t0, t0 + nt) of the whole batch. */
static void wino_block(float *dst, const float *src, const float *u, const float *bias,
                       const wino_shape *s, float *scr, int64_t t0, int64_t nt, double *ps,
                       const float *shift) {
  const int64_t C = s->c, K = s->k, m = s->m, np = npos(s);
  float *v = scr, *mm = scr + np * WINO_TB * C;
  wino_pf pf = wino_pf_tiles(src, s, t0 + nt, nt, 0), pw = wino_pf_tiles(dst, s, t0, nt, 1);
  tile_pos q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q))
    input_tile(v, tt, src + q.img * C * s->h * s->w, s, m * q.ty - s->pad, m * q.tx - s->pad);
  const int64_t rows = (nt + 5) / 6 * 6; /* the GEMM's rows past nt: zeros */
  for (int64_t xi = 0; xi < np && rows > nt; xi++)
    memset(v + (xi * WINO_TB + nt) * C, 0, sizeof(float) * (size_t)((rows - nt) * C));
  for (int64_t xi = 0; xi < np; xi++) {
    const float *vx = v + xi * WINO_TB * C, *ux = u + xi * C * K;
    float *mx = mm + xi * WINO_TB * K;
    wino_prefetch_step(&pf);
    wino_prefetch_step(&pw);
    for (int64_t r = 0; r < rows; r += 6) {
      int64_t k0 = 0;
      for (; k0 + 2 * VL <= K; k0 += 2 * VL) gemm_6x2v(mx + r * K + k0, vx + r * C, ux + k0, C, K);
      if (k0 < K) gemm_6x1v(mx + r * K + k0, vx + r * C, ux + k0, C, K);
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

void WINO_FORWARD(float *dst, const float *src, const float *u, const float *bias, const wino_shape *s,
                  float *scratch, int nthr, const wino_stats *stats) {
  MC_ASSERT((s->m == 2 || s->m == 4) && (s->blk == 8 || s->blk == 16) && s->blk >= VL && s->c % s->blk == 0 &&
            s->k % s->blk == 0);
  const int64_t tiles = batch_tiles(s);
  const int64_t nblk = (tiles + WINO_TB - 1) / WINO_TB, K = s->k;
  const size_t per = wino_thread_stride(s, wino_scratch_floats(s));
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

