/* The SIMD body of the Winograd weight gradient, included by each ISA's
 * variant file after wino_simd.h (whose vector macros, input transform
 * and helpers it uses); the variant defines WINO_WGRAD, its entry point.
 *
 * The forward is Y = A^T [U .* V] A per output tile, U = G g G^T (see
 * wino_simd.h).  Its adjoint, for the weights:
 *
 *   dU[xi] = sum over tiles of V[xi]^T . dM[xi],   dM = A dY A^T,
 *   dg     = G^T dU G                                (wino.c, in double),
 *
 * with dY the tile's m x m output gradients (zero past the image: those
 * outputs are never stored).  Tiles are taken WINO_TB at a time as in the
 * forward: input transform -> V (the forward's own code), output-gradient
 * transform -> dM, then per position xi a rank-WINO_TB update of the
 * thread's C x K sum dU[xi].  The bias gradient (when asked) is the sum of
 * dY, taken in the same pass. */

/* y = A x over 4 vectors (6 out), F(4x4, 3x3): A = (A^T)^T, rows
 * (1 0 0 0), (1 1 1 1), (1 -1 1 -1), (1 2 4 8), (1 -2 4 -8), (0 0 0 1). */
#define A6(y0, y1, y2, y3, y4, y5, x0, x1, x2, x3)                                \
  do {                                                                           \
    const vf s02_ = VADD(x0, x2), s13_ = VADD(x1, x3);                          \
    const vf p_ = VFMA(VSET1(4.f), x2, x0);                                      \
    const vf q_ = VMUL(VSET1(2.f), VFMA(VSET1(4.f), x3, x1));                    \
    y0 = x0;                                                                     \
    y1 = VADD(s02_, s13_);                                                       \
    y2 = VSUB(s02_, s13_);                                                       \
    y3 = VADD(p_, q_);                                                           \
    y4 = VSUB(p_, q_);                                                           \
    y5 = x3;                                                                     \
  } while (0)

/* y = A x over 2 vectors (4 out), F(2x2, 3x3): rows (1 0), (1 1), (1 -1), (0 -1). */
#define A4(y0, y1, y2, y3, x0, x1) \
  do {                             \
    y0 = x0;                       \
    y1 = VADD(x0, x1);             \
    y2 = VSUB(x0, x1);             \
    y3 = VSUB(VZERO(), x1);        \
  } while (0)

/* Output-gradient transform of one tile, all channel blocks: dM[xi][tile][k]
 * (rows WINO_TB * K apart per xi); with bs, the tile's dY summed into
 * bs[0..K/VL) (the bias gradient, in float over one block of tiles). */
static void dy_tile(float *dm, int64_t tt, const float *img, const wino_shape *s, int64_t oy0, int64_t ox0,
                    vf *bs) {
  const int64_t K = s->k, OH = s->oh, OW = s->ow, B = s->blk, plane = OH * OW * B, xs = WINO_TB * K;
  const int m = (int)s->m;
  const int ny = oy0 + m <= OH ? m : (int)(OH - oy0), nx = ox0 + m <= OW ? m : (int)(OW - ox0);
  for (int64_t kb = 0; kb < K / VL; kb++) {
    const float *p = img + kb * VL / B * plane + kb * VL % B + (oy0 * OW + ox0) * B;
    float *q = dm + tt * K + kb * VL;
    vf d[4][4];
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) d[i][j] = i < ny && j < nx ? VLD(p + (i * OW + j) * B) : VZERO();
    if (bs) {
      vf t = VZERO();
      for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) t = VADD(t, d[i][j]);
      bs[kb] = VADD(bs[kb], t);
    }
    if (m == 4) {
      vf t[6][4];
      for (int j = 0; j < 4; j++) A6(t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j], d[0][j], d[1][j], d[2][j], d[3][j]);
      for (int i = 0; i < 6; i++) {
        vf o0, o1, o2, o3, o4, o5;
        A6(o0, o1, o2, o3, o4, o5, t[i][0], t[i][1], t[i][2], t[i][3]);
        store6(q + 6 * i * xs, xs, o0, o1, o2, o3, o4, o5);
      }
    } else {
      vf t[4][2];
      for (int j = 0; j < 2; j++) A4(t[0][j], t[1][j], t[2][j], t[3][j], d[0][j], d[1][j]);
      for (int i = 0; i < 4; i++) {
        vf o0, o1, o2, o3;
        A4(o0, o1, o2, o3, t[i][0], t[i][1]);
        VST(q + (4 * i + 0) * xs, o0);
        VST(q + (4 * i + 1) * xs, o1);
        VST(q + (4 * i + 2) * xs, o2);
        VST(q + (4 * i + 3) * xs, o3);
      }
    }
  }
}

/* du[8 x NV*VL] (rows K apart) += v[nt x 8]^T . dm[nt x NV*VL] (rows C and
 * K apart): 8 NV accumulators, NV loads of dm and 8 broadcasts of v per
 * tile.  NV = 2 needs 16 accumulators (AVX-512: 32 registers); AVX2 (16
 * registers) uses NV = 1. */
#define WG_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
static void wgemm_8x2v(float *du, const float *v, const float *dm, int64_t nt, int64_t C, int64_t K) {
#define DECL(r) vf a##r##0 = VLD(du + (r) * K), a##r##1 = VLD(du + (r) * K + VL);
#define FMA(r)                                 \
  {                                            \
    const vf b_ = VBCAST(v + t * C + (r));     \
    a##r##0 = VFMA(b_, g0, a##r##0);           \
    a##r##1 = VFMA(b_, g1, a##r##1);           \
  }
#define STORE(r) VST(du + (r) * K, a##r##0), VST(du + (r) * K + VL, a##r##1);
  WG_ROWS(DECL)
  for (int64_t t = 0; t < nt; t++) {
    const vf g0 = VLD(dm + t * K), g1 = VLD(dm + t * K + VL);
    WG_ROWS(FMA)
  }
  WG_ROWS(STORE)
#undef DECL
#undef FMA
#undef STORE
}

static void wgemm_8x1v(float *du, const float *v, const float *dm, int64_t nt, int64_t C, int64_t K) {
#define DECL(r) vf a##r = VLD(du + (r) * K);
#define FMA(r) a##r = VFMA(VBCAST(v + t * C + (r)), g0, a##r);
#define STORE(r) VST(du + (r) * K, a##r);
  WG_ROWS(DECL)
  for (int64_t t = 0; t < nt; t++) {
    const vf g0 = VLD(dm + t * K);
    WG_ROWS(FMA)
  }
  WG_ROWS(STORE)
#undef DECL
#undef FMA
#undef STORE
}
#undef WG_ROWS

/* Tiles [t0, t0 + nt) of the batch into the thread's dU (du) and, when
 * db is not NULL, the sums of dY into db (K doubles). */
static void wgrad_block(float *du, double *db, const float *src, const float *dy, const wino_shape *s, float *scr,
                        int64_t t0, int64_t nt) {
  const int64_t C = s->c, K = s->k, m = s->m, np = npos(s);
  float *v = scr, *dm = scr + np * WINO_TB * C;
  vf bs[64];
  for (int64_t kb = 0; db && kb < K / VL; kb++) bs[kb] = VZERO();
  /* the next block's src and dy, as in wino_block */
  wino_pf ps = wino_pf_tiles(src, s, t0 + nt, nt, 0), pd = wino_pf_tiles(dy, s, t0 + nt, nt, 1);
  tile_pos q = tile_at(s, t0);
  for (int64_t tt = 0; tt < nt; tt++, tile_next(&q)) {
    input_tile(v, tt, src + q.img * C * s->h * s->w, s, m * q.ty - s->pad, m * q.tx - s->pad);
    dy_tile(dm, tt, dy + q.img * K * s->oh * s->ow, s, m * q.ty, m * q.tx, db ? bs : NULL);
  }
  for (int64_t kb = 0; db && kb < K / VL; kb++) VADD_TO_DOUBLE(db + kb * VL, bs[kb]);
  const int64_t k2 = VL == 16 ? K / (2 * VL) * (2 * VL) : 0; /* columns done two vectors at a time */
  for (int64_t xi = 0; xi < np; xi++) {
    const float *vx = v + xi * WINO_TB * C, *gx = dm + xi * WINO_TB * K;
    float *ux = du + xi * C * K;
    wino_prefetch_step(&ps);
    wino_prefetch_step(&pd);
    for (int64_t c0 = 0; c0 < C; c0 += 8) {
      for (int64_t k0 = 0; k0 < k2; k0 += 2 * VL) wgemm_8x2v(ux + c0 * K + k0, vx + c0, gx + k0, nt, C, K);
      for (int64_t k0 = k2; k0 < K; k0 += VL) wgemm_8x1v(ux + c0 * K + k0, vx + c0, gx + k0, nt, C, K);
    }
  }
}

int WINO_WGRAD(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr, int bias) {
  MC_ASSERT((s->m == 2 || s->m == 4) && (s->blk == 8 || s->blk == 16) && s->blk >= VL && s->c % s->blk == 0 &&
            s->k % s->blk == 0 && s->k / VL <= 64);
  const int64_t tiles = batch_tiles(s);
  const int64_t nblk = (tiles + WINO_TB - 1) / WINO_TB, K = s->k;
  const size_t per = wino_thread_stride(s, wino_wgrad_scratch_floats(s));
  if (nthr < 1) nthr = 1;
#pragma omp parallel num_threads(nthr) if (nthr > 1)
  {
#pragma omp master
    nthr = omp_get_num_threads();
    float *scr = scratch + per * (size_t)omp_get_thread_num();
    float *du = wino_wgrad_du(s, scr);
    double *db = wino_wgrad_db(s, scr);
    memset(du, 0, sizeof(float) * wino_weight_floats(s));
    memset(db, 0, sizeof(double) * (size_t)K);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblk; b++)
      wgrad_block(du, bias ? db : NULL, src, dy, s, scr, b * WINO_TB,
                  tiles - b * WINO_TB < WINO_TB ? tiles - b * WINO_TB : WINO_TB);
  }
  return nthr;
}
