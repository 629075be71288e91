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
/* Rounded up to 16 floats, so every thread's part (scratch + t * this)
 * starts on a 64-byte line like the first: with 4k + 8, thread 1's V and M
 * were 32 bytes off one, and every AVX-512 access to them split a line.
 * On Zen 4 that cost was within the noise (bench_exec tinyten and resnet20
 * training steps, 2026-12-05). */
size_t wino_scratch_floats(const wino_shape *s) {
  return (size_t)(npos(s) * WINO_TB * (s->c + s->k) + 4 * s->k + 8 + 15) / 16 * 16;
}


size_t wino_thread_stride(const wino_shape *s, size_t own) {
  MC_ASSERT(s->tstride == 0 || (size_t)s->tstride >= own);
  return s->tstride ? (size_t)s->tstride : own;
}

int wino_available(void) { return mc_kern_wino_available(); }

static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

/* u = G w G^T per channel pair, in double (flip: from the forward conv's
 * w[c][k] rotated by 180 degrees, for its input gradient); on the
 * caller's OpenMP threads.  WT_L output channels k at a time, one lane
 * each, so that the arithmetic vectorises and the stores of u (k
 * innermost) are contiguous; every pair is computed on its own, in the
 * same order of operations in every lane, so the bytes do not depend on
 * the split.  Training transforms every conv's weights twice per step:
 * one pair at a time, storing 36 values (m+2)^2 strides of C K floats
 * apart, this took 308 us for 64 -> 64 channels on 2 threads (2.3 % of a
 * curve-training step of tinyten); WT_L at a time, 78 us. */
#define WT_L 8
/* The lanes of the block of output channels from k0 (the last block may
 * be short). */
static int wt_lanes(int64_t K, int64_t k0) { return K - k0 < WT_L ? (int)(K - k0) : WT_L; }

static void wt_block(float *u, const float *w, const wino_shape *s, int flip, int64_t c, int64_t k0, int nl) {
  const int64_t C = s->c, K = s->k;
  const int a = (int)s->m + 2;
  const double *G = s->m == 4 ? &G4[0][0] : &G2[0][0];
  double g[9][WT_L], t[6][3][WT_L], r[6][6][WT_L];
  for (int l = 0; l < WT_L; l++) /* lanes past nl repeat the last channel */
    for (int q = 0; q < 9; q++) {
      const int64_t k = k0 + (l < nl ? l : nl - 1);
      g[q][l] = flip ? w[(c * K + k) * 9 + 8 - q] : w[(k * C + c) * 9 + q];
    }
  for (int i = 0; i < a; i++) /* t = G g */
    for (int j = 0; j < 3; j++)
      for (int l = 0; l < WT_L; l++)
        t[i][j][l] = G[i * 3] * g[j][l] + G[i * 3 + 1] * g[3 + j][l] + G[i * 3 + 2] * g[6 + j][l];
  for (int i = 0; i < a; i++) /* r = t G^T */
    for (int j = 0; j < a; j++)
      for (int l = 0; l < WT_L; l++)
        r[i][j][l] = t[i][0][l] * G[j * 3] + t[i][1][l] * G[j * 3 + 1] + t[i][2][l] * G[j * 3 + 2];
  for (int xi = 0; xi < a * a; xi++)
    for (int l = 0; l < nl; l++) u[(xi * C + c) * K + k0 + l] = (float)r[xi / a][xi % a][l];
}

static void weights_transform(float *u, const float *w, const wino_shape *s, int flip) {
  const int64_t C = s->c, K = s->k, kb = (K + WT_L - 1) / WT_L;
#pragma omp parallel for schedule(static) if (C * K >= 512)
  for (int64_t q = 0; q < C * kb; q++) {
    const int64_t c = q / kb, k0 = q % kb * WT_L;
    wt_block(u, w, s, flip, c, k0, wt_lanes(K, k0));
  }
}

void wino_weights(float *u, const float *w, const wino_shape *s) { weights_transform(u, w, s, 0); }

wino_shape wino_data_grad_shape(const wino_shape *f) {
  return (wino_shape){f->n, f->k, f->c, f->oh, f->ow, 2 - f->pad, f->h, f->w, wino_tile(f->h, f->w, f->k), f->blk, 0, 0, f->tstride};
}

void wino_weights_data_grad(float *u, const float *w, const wino_shape *s) { weights_transform(u, w, s, 1); }

int wino_wgrad_fits(const wino_shape *s) { return wino_weight_floats(s) * sizeof(float) <= 640 * 1024; }

/* V, dM, dU, then k doubles of bias sums */
size_t wino_wgrad_scratch_floats(const wino_shape *s) { /* 16-float multiple, as above */
  return ((size_t)(npos(s) * WINO_TB * (s->c + s->k)) + wino_weight_floats(s) + (size_t)(2 * s->k + 16) + 15) / 16 * 16;
}

float *wino_wgrad_du(const wino_shape *s, float *scratch) { return scratch + npos(s) * WINO_TB * (s->c + s->k); }

double *wino_wgrad_db(const wino_shape *s, float *scratch) {
  const uintptr_t a = (uintptr_t)(wino_wgrad_du(s, scratch) + wino_weight_floats(s));
  return (double *)((a + 63) & ~(uintptr_t)63);
}

/* dw[k][c] += G^T dU G for output channels k0 .. k0 + nl of input channel
 * c, dU summed over the team's threads in thread order; in double, one
 * lane per k as in wt_block (an index of dU one pair at a time strode
 * C K floats between positions). */
static void wgrad_finish(float *dw, const wino_shape *s, float *scratch, int team, int64_t c, int64_t k0, int nl) {
  const int64_t C = s->c, K = s->k, CK = C * K;
  const int a = (int)s->m + 2;
  const double *G = s->m == 4 ? &G4[0][0] : &G2[0][0];
  const size_t per = wino_thread_stride(s, wino_wgrad_scratch_floats(s));
  double r[6][6][WT_L], t[3][6][WT_L];
  for (int xi = 0; xi < a * a; xi++)
    for (int l = 0; l < WT_L; l++) {
      double v = 0; /* lanes past nl: 0, never stored */
      for (int th = 0; th < team && l < nl; th++)
        v += wino_wgrad_du(s, scratch + per * (size_t)th)[xi * CK + c * K + k0 + l];
      r[xi / a][xi % a][l] = v;
    }
  for (int i = 0; i < 3; i++) /* t = G^T r */
    for (int j = 0; j < a; j++)
      for (int l = 0; l < WT_L; l++) {
        double v = 0;
        for (int q = 0; q < a; q++) v += G[q * 3 + i] * r[q][j][l];
        t[i][j][l] = v;
      }
  for (int i = 0; i < 3; i++) /* dg = t G */
    for (int j = 0; j < 3; j++)
      for (int l = 0; l < nl; l++) {
        double v = 0;
        for (int q = 0; q < a; q++) v += t[i][q][l] * G[q * 3 + j];
        dw[((k0 + l) * C + c) * 9 + i * 3 + j] += (float)v;
      }
}

void wino_weight_grad(float *dw, float *db, const float *src, const float *dy, const wino_shape *s, float *scratch,
                      int nthr) {
  const int team = mc_kern_wino_wgrad(s->blk)(src, dy, s, scratch, nthr, db != NULL);
  const int64_t C = s->c, K = s->k, CK = C * K;
  const int64_t kb = (K + WT_L - 1) / WT_L;
  /* each (c, k) on its own, WT_L k at a time as in wt_block: the bytes
   * do not depend on the split */
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && CK >= 1024)
  for (int64_t q = 0; q < C * kb; q++) {
    const int64_t k0 = q % kb * WT_L;
    wgrad_finish(dw, s, scratch, team, q / kb, k0, wt_lanes(K, k0));
  }
  const size_t per = wino_thread_stride(s, wino_wgrad_scratch_floats(s));
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
