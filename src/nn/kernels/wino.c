/* Winograd convolution: the shape rules every variant shares (wino.h),
 * and the entry points, which send each call to the variant the running
 * CPU supports (kernels.c). */
#include "nn/kernels/wino.h"
#include "nn/kernels/kernels.h"

#include "modeconn.h"

/* Positions of the transformed tile. */
static int64_t npos(const wino_shape *s) { return (s->m + 2) * (s->m + 2); }

int wino_tile(int64_t oh, int64_t ow, int64_t c) {
  const int64_t covered = (oh + 3) / 4 * 4 * ((ow + 3) / 4 * 4);
  return c <= 64 && 100 * covered <= 135 * oh * ow ? 4 : 2;
}

size_t wino_weight_floats(const wino_shape *s) { return (size_t)(npos(s) * s->c * s->k); }

/* V, M, then 2k doubles of channel sums */
size_t wino_scratch_floats(const wino_shape *s) {
  return (size_t)(npos(s) * WINO_TB * (s->c + s->k) + 4 * s->k + 8);
}


int wino_available(void) { return mc_kern_wino_available(); }

static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

/* u = G w G^T per channel pair, in double (flip: from the forward conv's
 * w[c][k] rotated by 180 degrees, for its input gradient); on the
 * caller's OpenMP threads, each pair on its own (the bytes do not depend
 * on the split).  Training transforms every conv's weights twice per
 * step, and serially this was 1.9 % of a curve-training step. */
static void weights_transform(float *u, const float *w, const wino_shape *s, int flip) {
  const int64_t C = s->c, K = s->k;
  const int a = (int)s->m + 2;
  const double *G = s->m == 4 ? &G4[0][0] : &G2[0][0];
#pragma omp parallel for schedule(static) if (C * K >= 512)
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

void wino_weights(float *u, const float *w, const wino_shape *s) { weights_transform(u, w, s, 0); }

wino_shape wino_data_grad_shape(const wino_shape *f) {
  return (wino_shape){f->n, f->k, f->c, f->oh, f->ow, 2 - f->pad, f->h, f->w, wino_tile(f->h, f->w, f->k), f->blk, 0, 0};
}

void wino_weights_data_grad(float *u, const float *w, const wino_shape *s) { weights_transform(u, w, s, 1); }

int wino_wgrad_fits(const wino_shape *s) { return wino_weight_floats(s) * sizeof(float) <= 640 * 1024; }

/* V, dM, dU, then k doubles of bias sums */
size_t wino_wgrad_scratch_floats(const wino_shape *s) {
  return (size_t)(npos(s) * WINO_TB * (s->c + s->k)) + wino_weight_floats(s) + (size_t)(2 * s->k + 16);
}

float *wino_wgrad_du(const wino_shape *s, float *scratch) { return scratch + npos(s) * WINO_TB * (s->c + s->k); }

double *wino_wgrad_db(const wino_shape *s, float *scratch) {
  const uintptr_t a = (uintptr_t)(wino_wgrad_du(s, scratch) + wino_weight_floats(s));
  return (double *)((a + 63) & ~(uintptr_t)63);
}

void wino_weight_grad(float *dw, float *db, const float *src, const float *dy, const wino_shape *s, float *scratch,
                      int nthr) {
  const int team = mc_kern_wino_wgrad(s->blk)(src, dy, s, scratch, nthr, db != NULL);
  const int64_t C = s->c, K = s->k, CK = C * K;
  const int a = (int)s->m + 2;
  const double *G = s->m == 4 ? &G4[0][0] : &G2[0][0];
  const size_t per = wino_wgrad_scratch_floats(s);
  /* each (c, k) on its own: the bytes do not depend on the split */
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && CK >= 1024)
  for (int64_t c = 0; c < C; c++)
    for (int64_t k = 0; k < K; k++) {
      double r[6][6], t[3][6];
      for (int xi = 0; xi < a * a; xi++) { /* the threads' sums, in thread order */
        double v = 0;
        for (int th = 0; th < team; th++) v += wino_wgrad_du(s, scratch + per * (size_t)th)[xi * CK + c * K + k];
        r[xi / a][xi % a] = v;
      }
      for (int i = 0; i < 3; i++) /* t = G^T r */
        for (int j = 0; j < a; j++) {
          double v = 0;
          for (int q = 0; q < a; q++) v += G[q * 3 + i] * r[q][j];
          t[i][j] = v;
        }
      float *g = dw + (k * C + c) * 9;
      for (int i = 0; i < 3; i++) /* dg = t G */
        for (int j = 0; j < 3; j++) {
          double v = 0;
          for (int q = 0; q < a; q++) v += t[i][q] * G[q * 3 + j];
          g[i * 3 + j] += (float)v;
        }
    }
  for (int64_t k = 0; db && k < K; k++) {
    double v = 0;
    for (int th = 0; th < team; th++) v += wino_wgrad_db(s, scratch + per * (size_t)th)[k];
    db[k] += (float)v;
  }
}

void wino_forward(float *dst, const float *src, const float *u, const float *bias, const wino_shape *s,
                  float *scratch, int nthr, const wino_stats *stats) {
  mc_kern_wino_forward(s->blk)(dst, src, u, bias, s, scratch, nthr, stats);
}
