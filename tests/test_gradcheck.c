/* Finite-difference gradient checks of the reference numerical core.
 *
 * Every op of src/nn/ops.h is called directly, and whole small instances of
 * every zoo architecture run through mc_exec (MC_BACKEND_REF) in EVAL,
 * TRAIN and BN_RECOMPUTE mode.  The scalar loss is accumulated in double:
 *   ops:    L = sum_i r_i * y_i   (r fixed, standard normal)
 *   models: L = mean softmax cross-entropy (mc_softmax_xent, double)
 * and compared with central differences on single float coordinates,
 *   fd = (L(v+h) - L(v-h)) / ((float)(v+h) - (float)(v-h)).
 * A coordinate passes iff |fd - an| <= rtol * max(|fd|, |an|, floor); the
 * printed "max rel err" of a check is the largest |fd - an| /
 * max(|fd|, |an|, floor) over its coordinates, so a check passes iff it is
 * <= rtol.  Steps and tolerances are stated with each group of checks:
 *   ops:    rtol 1e-3, floor 1e-2 (BN train dx: 2e-3, 2e-2); most ops are
 *           linear in each variable, so their FD is exact up to rounding
 *   models: rtol 5e-2, floor 1e-2 * largest |analytic| (see MODEL_TOL)
 *
 * The input gradient of the dx-only backward (grad = NULL, the PGD attack's)
 * is the same bytes as the full backward's in every model check (which is
 * the one checked against finite differences on the reference backend), and
 * on the oneDNN backend it is checked against finite differences of the
 * oneDNN forward itself (the kink guard read from a reference twin at the
 * same point), eval and train mode, every zoo architecture.
 *
 * Backward passes accumulate: the analytic gradient buffers are pre-filled
 * with random values that are subtracted afterwards, which checks the
 * accumulate-don't-overwrite contract too. */
#include "testutil.h"

#include "nn/ref/ref.h"
#include "nn/ops.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ harness */

#define GC_MAXVAR 8

typedef struct {
  const char *name;
  float *p;      /* the variable */
  float *g;      /* its analytic gradient (after grad()) */
  size_t n;
  size_t *idx;   /* candidate coordinates (NULL: all, or ncheck at random) */
  size_t nidx;
  size_t want;   /* coordinates to check (0: every candidate) */
  double h;      /* FD step */
  int zero_init; /* output-style gradient: zeroed, not pre-filled */
} gc_var;

typedef struct gc_prob gc_prob;
struct gc_prob {
  double (*loss)(gc_prob *);  /* forward + scalar loss in double */
  void (*grad)(gc_prob *);    /* analytic gradient, ACCUMULATED into var[].g */
  int nvar;
  gc_var var[GC_MAXVAR];
  /* kink guard (optional): a signature of the piecewise-linear pieces the
   * last forward pass selected (ReLU signs, max-pool argmax); see gc_run. */
  size_t (*sig)(gc_prob *, unsigned char *buf);
  size_t sig_cap;
};

static uint64_t g_seed = 1234;

static float randn(mc_rng *r) { return mc_rng_normal(r); }

static void fill_randn(float *a, size_t n, mc_rng *r, float scale) {
  for (size_t i = 0; i < n; i++) a[i] = scale * randn(r);
}

typedef struct {
  double rtol;       /* pass iff |fd-an| <= rtol * max(|fd|, |an|, floor) */
  double floor_abs;  /* floor = max(floor_abs, floor_rel * S), S = largest */
  double floor_rel;  /*   |analytic| over all candidates of all variables */
  int attempts;      /* steps tried per coordinate: h, h/3, ... */
  double min_frac;   /* models: kink-free coordinates needed, fraction of want */
} gc_tol;

/* One central difference at step h; returns 0 when a kink was crossed. */
static int central_diff(gc_prob *P, gc_var *V, size_t i, double h, const unsigned char *s0,
                        size_t ns0, unsigned char *s1, double *out) {
  const float v0 = V->p[i];
  const float vp = (float)(v0 + h), vm = (float)(v0 - h);
  int kink = 0;
  V->p[i] = vp;
  double lp = P->loss(P);
  if (P->sig) kink |= P->sig(P, s1) != ns0 || memcmp(s0, s1, ns0);
  V->p[i] = vm;
  double lm = P->loss(P);
  if (P->sig) kink |= P->sig(P, s1) != ns0 || memcmp(s0, s1, ns0);
  V->p[i] = v0;
  *out = (lp - lm) / ((double)vp - (double)vm);
  return !kink;
}

/* Runs the check, prints one line per variable, and fails the test when a
 * coordinate is out of tolerance.
 * Candidates: V->idx (V->nidx of them) when given, else all coordinates when
 * n <= ncheck, else ncheck random ones.  V->want (0: all) coordinates are
 * checked; with a kink guard, a candidate whose +-h evaluations select other
 * ReLU/max-pool pieces at every tried step is dropped and the next candidate
 * is used instead ("resampled").  Returns the worst rel of all variables. */
static double gc_run(gc_prob *P, const char *label, size_t ncheck, const gc_tol *tol) {
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  /* analytic, accumulated on top of random values */
  float *pre[GC_MAXVAR];
  (void)P->loss(P);
  for (int v = 0; v < P->nvar; v++) {
    pre[v] = NULL;
    int shared = 0;
    for (int u = 0; u < v; u++) shared |= P->var[u].g == P->var[v].g;
    if (shared) continue;
    if (P->var[v].zero_init) {
      memset(P->var[v].g, 0, sizeof(float) * P->var[v].n);
      continue;
    }
    pre[v] = mc_malloc(sizeof(float) * P->var[v].n);
    fill_randn(pre[v], P->var[v].n, &r, 1.f);
    memcpy(P->var[v].g, pre[v], sizeof(float) * P->var[v].n);
  }
  P->grad(P);
  for (int v = 0; v < P->nvar; v++) {
    if (!pre[v]) continue;
    for (size_t i = 0; i < P->var[v].n; i++) P->var[v].g[i] -= pre[v][i];
    free(pre[v]);
  }
  /* the kink signature of the base point (the last forward ran there) */
  unsigned char *s0 = NULL, *s1 = NULL;
  size_t ns0 = 0;
  if (P->sig) {
    s0 = mc_malloc(P->sig_cap);
    s1 = mc_malloc(P->sig_cap);
    ns0 = P->sig(P, s0);
  }
  /* candidates and the global gradient scale */
  size_t *cand[GC_MAXVAR], ncand[GC_MAXVAR];
  double S = 0;
  for (int v = 0; v < P->nvar; v++) {
    gc_var *V = &P->var[v];
    ncand[v] = V->idx ? V->nidx : (V->n <= ncheck ? V->n : ncheck);
    cand[v] = mc_malloc(sizeof(size_t) * (ncand[v] ? ncand[v] : 1));
    for (size_t c = 0; c < ncand[v]; c++) {
      cand[v][c] = V->idx ? V->idx[c] : (V->n <= ncheck ? c : (size_t)mc_rng_below(&r, V->n));
      S = fmax(S, fabs((double)V->g[cand[v][c]]));
    }
  }
  const double floor = fmax(tol->floor_abs, tol->floor_rel * S);
  double worst = 0;
  for (int v = 0; v < P->nvar; v++) {
    gc_var *V = &P->var[v];
    const size_t want = V->want ? V->want : ncand[v];
    size_t checked = 0, resampled = 0, worst_i = 0;
    double wrel = 0, wabs = 0, scale = 0, worst_fd = 0, worst_an = 0, worst_h = 0;
    for (size_t c = 0; c < ncand[v] && checked < want; c++) {
      const size_t i = cand[v][c];
      double h = V->h, fd = 0;
      int ok = 0;
      for (int attempt = 0; attempt < tol->attempts && !ok; attempt++) {
        if (attempt) h /= 3;
        ok = central_diff(P, V, i, h, s0, ns0, s1, &fd);
      }
      if (!ok) {
        resampled++;
        continue;
      }
      checked++;
      const double an = V->g[i];
      const double rel = fabs(fd - an) / fmax(fmax(fabs(fd), fabs(an)), floor);
      wabs = fmax(wabs, fabs(fd - an));
      scale = fmax(scale, fabs(an));
      if (!(rel <= wrel)) {
        wrel = rel;
        worst_i = i;
        worst_fd = fd;
        worst_an = an;
        worst_h = h;
      }
    }
    const int pass = wrel <= tol->rtol;
    if (P->sig)
      printf("  %-34s %-13s h=%-7.1e n=%-3zu resampled=%-3zu |an|max %.1e  max abs err %.1e  max rel err %.2e%s\n",
             label, V->name, V->h, checked, resampled, scale, wabs, wrel, pass ? "" : "  <-- FAIL");
    else
      printf("  %-34s %-13s h=%-7.1e n=%-4zu |an|max %.1e  max abs err %.1e  max rel err %.2e%s\n",
             label, V->name, V->h, checked, scale, wabs, wrel, pass ? "" : "  <-- FAIL");
    if (!pass)
      printf("      worst coordinate %zu: fd % .6e analytic % .6e at h %.1e (rtol %.1e floor %.1e)\n",
             worst_i, worst_fd, worst_an, worst_h, tol->rtol, floor);
    if (!(wrel <= worst)) worst = wrel;
    free(cand[v]);
    cand[v] = NULL;
    assert_true(pass);
    assert_true(checked > 0);
    assert_true((double)checked >= tol->min_frac * (double)want);
  }
  for (int v = 0; v < P->nvar; v++) free(cand[v]);
  free(s0);
  free(s1);
  return worst;
}

/* ---------------------------------------------------- op-level problems */

/* Op tolerance: |fd - an| <= 1e-3 * max(|fd|, |an|, 1e-2), i.e. relative
 * 1e-3, absolute 1e-5 for tiny gradients (r ~ N(0,1), so typical gradients
 * are O(1); float rounding of y over 2h is ~1e-6). */
static const gc_tol OP_TOL = {1e-3, 1e-2, 0, 1, 1.0};

/* y = f(vars); L = sum r_i y_i in double; backward gets dy = r. */
typedef struct op_prob op_prob;
struct op_prob {
  gc_prob base;
  void (*fwd)(op_prob *);
  void (*bwd)(op_prob *);
  float *y, *r;
  size_t ny;
  /* op parameters */
  int64_t N, C, H, W, O, OH, OW, S;
  int k, s, p, bias, train, nin;
  float eps, mom, drop;
  float *x, *w, *b, *gx, *gw, *gb;
  float *xs[4], *gxs[4];
  int64_t cs[4];
  float *mean, *invstd, *rmean, *rvar, *rmean0, *rvar0; /* bn */
  float *nmean, *nstd;                                  /* normalize */
  float *mask;                                          /* dropout */
  int32_t *argmax;                                      /* maxpool */
  float *col, *dwscratch;                               /* conv */
  int32_t *labels;                                      /* xent */
};

static double op_loss(gc_prob *g) {
  op_prob *P = (op_prob *)g;
  P->fwd(P);
  double L = 0;
  for (size_t i = 0; i < P->ny; i++) L += (double)P->r[i] * (double)P->y[i];
  return L;
}

static void op_grad(gc_prob *g) { ((op_prob *)g)->bwd((op_prob *)g); }

static void op_init(op_prob *P, size_t ny, mc_rng *r) {
  memset(&P->base, 0, sizeof P->base);
  P->base.loss = op_loss;
  P->base.grad = op_grad;
  P->ny = ny;
  P->y = mc_malloc(sizeof(float) * ny);
  P->r = mc_malloc(sizeof(float) * ny);
  fill_randn(P->r, ny, r, 1.f);
}

static float *add_var(op_prob *P, const char *name, float *p, size_t n, double h) {
  gc_var *V = &P->base.var[P->base.nvar++];
  MC_ASSERT(P->base.nvar <= GC_MAXVAR);
  V->name = name;
  V->p = p;
  V->n = n;
  V->h = h;
  V->g = mc_calloc(n, sizeof(float));
  return V->g;
}

static void op_free(op_prob *P) {
  for (int v = 0; v < P->base.nvar; v++) {
    free(P->base.var[v].p);
    free(P->base.var[v].g);
  }
  free(P->y);
  free(P->r);
}

static float *rand_buf(size_t n, mc_rng *r, float scale) {
  float *a = mc_malloc(sizeof(float) * (n ? n : 1));
  fill_randn(a, n, r, scale);
  return a;
}

/* ---- conv2d */
static void conv_fwd(op_prob *P) {
  conv2d_forward(P->y, P->x, P->w, P->bias ? P->b : NULL, P->N, P->C, P->H, P->W, P->O, P->k,
                 P->s, P->p, P->OH, P->OW, P->col);
}
static void conv_bwd(op_prob *P) {
  conv2d_backward(P->gx, P->gw, P->bias ? P->gb : NULL, P->r, P->x, P->w, P->N, P->C, P->H, P->W,
                  P->O, P->k, P->s, P->p, P->OH, P->OW, P->col, P->dwscratch);
}

static void check_conv(int k, int s, int p, int bias) {
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = 3; P.C = 3; P.H = 7; P.W = 6; P.O = 4;
  P.k = k; P.s = s; P.p = p; P.bias = bias;
  P.OH = (P.H + 2 * p - k) / s + 1;
  P.OW = (P.W + 2 * p - k) / s + 1;
  op_init(&P, (size_t)(P.N * P.O * P.OH * P.OW), &r);
  P.fwd = conv_fwd;
  P.bwd = conv_bwd;
  size_t nx = (size_t)(P.N * P.C * P.H * P.W), nw = (size_t)(P.O * P.C * k * k);
  P.x = rand_buf(nx, &r, 1.f);
  P.w = rand_buf(nw, &r, 0.5f);
  P.gx = add_var(&P, "dx", P.x, nx, 5e-2);
  P.gw = add_var(&P, "dw", P.w, nw, 5e-2);
  if (bias) {
    P.b = rand_buf((size_t)P.O, &r, 0.5f);
    P.gb = add_var(&P, "db", P.b, (size_t)P.O, 5e-2);
  }
  int nt = omp_get_max_threads();
  P.col = mc_malloc(sizeof(float) * conv2d_col_floats(P.C, k, P.OH, P.OW) * (size_t)nt + 1);
  P.dwscratch = mc_malloc(sizeof(float) * nw * (size_t)nt);
  char label[96];
  snprintf(label, sizeof label, "conv2d k=%d s=%d p=%d bias=%d", k, s, p, bias);
  gc_run(&P.base, label, 200, &OP_TOL);
  /* dx = NULL must give the same dw/db */
  float *dw2 = mc_calloc(nw, sizeof(float)), *db2 = mc_calloc((size_t)P.O, sizeof(float));
  conv_fwd(&P);
  conv2d_backward(NULL, dw2, bias ? db2 : NULL, P.r, P.x, P.w, P.N, P.C, P.H, P.W, P.O, k, s, p,
                  P.OH, P.OW, P.col, P.dwscratch);
  assert_true(tu_max_rel(dw2, P.gw, nw, 1e-3) < 1e-5);
  if (bias) assert_true(tu_max_rel(db2, P.gb, (size_t)P.O, 1e-3) < 1e-5);
  free(dw2);
  free(db2);
  free(P.col);
  free(P.dwscratch);
  op_free(&P);
}

static void test_conv2d(void **st) {
  (void)st;
  static const int cfg[][4] = {{1, 1, 0, 1}, {1, 1, 0, 0}, {1, 2, 0, 1}, {1, 1, 1, 0},
                               {3, 1, 1, 1}, {3, 1, 1, 0}, {3, 2, 1, 1}, {3, 2, 1, 0},
                               {3, 1, 0, 1}, {3, 2, 0, 0}};
  for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++)
    check_conv(cfg[i][0], cfg[i][1], cfg[i][2], cfg[i][3]);
}

/* ---- linear */
static void lin_fwd(op_prob *P) {
  linear_forward(P->y, P->x, P->w, P->bias ? P->b : NULL, P->N, P->C, P->O);
}
static void lin_bwd(op_prob *P) {
  linear_backward(P->gx, P->gw, P->bias ? P->gb : NULL, P->r, P->x, P->w, P->N, P->C, P->O);
}

static void test_linear(void **st) {
  (void)st;
  for (int bias = 0; bias <= 1; bias++) {
    mc_rng r;
    mc_rng_seed(&r, g_seed++);
    op_prob P = {0};
    P.N = 5; P.C = 7; P.O = 3; P.bias = bias;
    op_init(&P, (size_t)(P.N * P.O), &r);
    P.fwd = lin_fwd;
    P.bwd = lin_bwd;
    P.x = rand_buf((size_t)(P.N * P.C), &r, 1.f);
    P.w = rand_buf((size_t)(P.O * P.C), &r, 0.5f);
    P.gx = add_var(&P, "dx", P.x, (size_t)(P.N * P.C), 5e-2);
    P.gw = add_var(&P, "dw", P.w, (size_t)(P.O * P.C), 5e-2);
    if (bias) {
      P.b = rand_buf((size_t)P.O, &r, 0.5f);
      P.gb = add_var(&P, "db", P.b, (size_t)P.O, 5e-2);
    }
    gc_run(&P.base, bias ? "linear bias=1" : "linear bias=0", 200, &OP_TOL);
    op_free(&P);
  }
}

/* ---- batchnorm */
static void bn_fwd(op_prob *P) {
  if (P->train) {
    /* fresh copies: the running statistics must not feed back */
    memcpy(P->rmean, P->rmean0, sizeof(float) * (size_t)P->C);
    memcpy(P->rvar, P->rvar0, sizeof(float) * (size_t)P->C);
    batchnorm_forward_train(P->y, P->mean, P->invstd, P->rmean, P->rvar, P->x, P->w, P->b, P->N,
                            P->C, P->S, P->eps, P->mom);
  } else {
    batchnorm_forward_eval(P->y, P->x, P->w, P->b, P->rmean0, P->rvar0, P->N, P->C, P->S, P->eps);
    for (int64_t c = 0; c < P->C; c++) {
      P->mean[c] = P->rmean0[c];
      P->invstd[c] = (float)(1.0 / sqrt((double)P->rvar0[c] + P->eps));
    }
  }
}
static void bn_bwd(op_prob *P) {
  batchnorm_backward(P->gx, P->gw, P->gb, P->r, P->x, P->mean, P->invstd, P->w, P->N, P->C, P->S,
                     P->train);
}

static void check_bn(int train, int64_t N, int64_t C, int64_t S) {
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = N; P.C = C; P.S = S; P.train = train;
  P.eps = 1e-5f; P.mom = 0.1f;
  op_init(&P, (size_t)(N * C * S), &r);
  P.fwd = bn_fwd;
  P.bwd = bn_bwd;
  size_t nx = (size_t)(N * C * S);
  P.x = rand_buf(nx, &r, 1.f);
  for (size_t i = 0; i < nx; i++) P.x[i] += 0.3f * (float)(i % 3); /* nonzero means */
  P.w = rand_buf((size_t)C, &r, 0.3f);
  P.b = rand_buf((size_t)C, &r, 0.5f);
  for (int64_t c = 0; c < C; c++) P.w[c] += 1.f;
  P.mean = mc_malloc(sizeof(float) * (size_t)C);
  P.invstd = mc_malloc(sizeof(float) * (size_t)C);
  P.rmean = mc_malloc(sizeof(float) * (size_t)C);
  P.rvar = mc_malloc(sizeof(float) * (size_t)C);
  P.rmean0 = rand_buf((size_t)C, &r, 0.2f);
  P.rvar0 = mc_malloc(sizeof(float) * (size_t)C);
  for (int64_t c = 0; c < C; c++) P.rvar0[c] = 0.5f + (float)mc_rng_uniform(&r);
  P.gx = add_var(&P, "dx", P.x, nx, train ? 2e-2 : 5e-2);
  P.gw = add_var(&P, "dgamma", P.w, (size_t)C, 5e-2);
  P.gb = add_var(&P, "dbeta", P.b, (size_t)C, 5e-2);
  char label[96];
  snprintf(label, sizeof label, "batchnorm %s N=%lld C=%lld S=%lld", train ? "train" : "eval",
           (long long)N, (long long)C, (long long)S);
  static const gc_tol bn_train_tol = {2e-3, 2e-2, 0, 1, 1.0};
  gc_run(&P.base, label, 200, train ? &bn_train_tol : &OP_TOL);
  if (train) {
    /* saved statistics and the running-stat update against double */
    bn_fwd(&P);
    double emax = 0;
    for (int64_t c = 0; c < C; c++) {
      double s1 = 0, s2 = 0, cnt = (double)(N * S);
      for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < S; j++) s1 += P.x[(n * C + c) * S + j];
      double mu = s1 / cnt;
      for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < S; j++) {
          double d = P.x[(n * C + c) * S + j] - mu;
          s2 += d * d;
        }
      double var = s2 / cnt;
      double rm = 0.9 * P.rmean0[c] + 0.1 * mu, rv = 0.9 * P.rvar0[c] + 0.1 * var * cnt / (cnt - 1);
      emax = fmax(emax, fabs(P.mean[c] - mu));
      emax = fmax(emax, fabs(P.invstd[c] - 1.0 / sqrt(var + 1e-5)) / (1.0 / sqrt(var + 1e-5)));
      emax = fmax(emax, fabs(P.rmean[c] - rm));
      emax = fmax(emax, fabs(P.rvar[c] - rv) / rv);
    }
    printf("  %-34s saved stats + running update max err %.2e\n", label, emax);
    assert_true(emax < 1e-6);
  }
  free(P.mean); free(P.invstd); free(P.rmean); free(P.rvar); free(P.rmean0); free(P.rvar0);
  op_free(&P);
}

static void test_batchnorm(void **st) {
  (void)st;
  check_bn(1, 4, 3, 5);
  check_bn(1, 6, 4, 1);
  check_bn(1, 2, 2, 9);
  check_bn(0, 4, 3, 5);
  check_bn(0, 6, 4, 1);
}

/* ---- relu */
static void relu_fwd(op_prob *P) { relu_forward(P->y, P->x, (int64_t)P->ny); }
static void relu_bwd(op_prob *P) { relu_backward(P->gx, P->r, P->y, (int64_t)P->ny); }

static void test_relu(void **st) {
  (void)st;
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  const size_t n = 300;
  op_init(&P, n, &r);
  P.fwd = relu_fwd;
  P.bwd = relu_bwd;
  P.x = rand_buf(n, &r, 1.f);
  /* keep away from the kink: |x| >= 0.05 > h */
  for (size_t i = 0; i < n; i++)
    if (fabsf(P.x[i]) < 0.05f) P.x[i] += P.x[i] < 0 ? -0.05f : 0.05f;
  P.gx = add_var(&P, "dx", P.x, n, 1e-2);
  gc_run(&P.base, "relu", n, &OP_TOL);
  op_free(&P);
}

/* ---- pooling */
static void maxpool_fwd(op_prob *P) {
  maxpool_forward(P->y, P->argmax, P->x, P->N * P->C, P->H, P->W, P->k, P->s, P->p, P->OH, P->OW);
}
static void maxpool_bwd(op_prob *P) {
  maxpool_backward(P->gx, P->r, P->argmax, P->N * P->C, P->H, P->W, P->OH, P->OW);
}
static void avgpool_fwd(op_prob *P) {
  avgpool_forward(P->y, P->x, P->N * P->C, P->H, P->W, P->k, P->s, P->p, P->OH, P->OW);
}
static void avgpool_bwd(op_prob *P) {
  avgpool_backward(P->gx, P->r, P->N * P->C, P->H, P->W, P->k, P->s, P->p, P->OH, P->OW);
}

static void check_pool(int maxp, int k, int s, int p) {
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = 2; P.C = 2; P.H = 7; P.W = 6; P.k = k; P.s = s; P.p = p;
  P.OH = (P.H + 2 * p - k) / s + 1;
  P.OW = (P.W + 2 * p - k) / s + 1;
  size_t nx = (size_t)(P.N * P.C * P.H * P.W), ny = (size_t)(P.N * P.C * P.OH * P.OW);
  op_init(&P, ny, &r);
  P.fwd = maxp ? maxpool_fwd : avgpool_fwd;
  P.bwd = maxp ? maxpool_bwd : avgpool_bwd;
  P.x = mc_malloc(sizeof(float) * nx);
  if (maxp) {
    /* distinct values 0.01 apart (> 2h): no ties, no argmax change */
    int64_t *perm = mc_malloc(sizeof(int64_t) * nx);
    for (size_t i = 0; i < nx; i++) perm[i] = (int64_t)i;
    mc_rng_shuffle(&r, perm, nx);
    for (size_t i = 0; i < nx; i++) P.x[i] = 0.01f * (float)perm[i] - 1.f;
    free(perm);
    P.argmax = mc_malloc(sizeof(int32_t) * ny);
  } else {
    fill_randn(P.x, nx, &r, 1.f);
  }
  P.gx = add_var(&P, "dx", P.x, nx, maxp ? 1e-3 : 5e-2);
  char label[96];
  snprintf(label, sizeof label, "%s k=%d s=%d p=%d", maxp ? "maxpool" : "avgpool", k, s, p);
  gc_run(&P.base, label, nx, &OP_TOL);
  free(P.argmax);
  op_free(&P);
}

static void test_pool(void **st) {
  (void)st;
  check_pool(1, 2, 2, 0);
  check_pool(1, 3, 2, 1);
  check_pool(1, 3, 1, 1);
  check_pool(1, 2, 1, 0);
  check_pool(0, 2, 2, 0);
  check_pool(0, 3, 1, 1);
  check_pool(0, 3, 2, 1);
}

static void gap_fwd(op_prob *P) { gap_forward(P->y, P->x, P->N * P->C, P->S); }
static void gap_bwd(op_prob *P) { gap_backward(P->gx, P->r, P->N * P->C, P->S); }

static void test_gap(void **st) {
  (void)st;
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = 3; P.C = 2; P.S = 12;
  op_init(&P, (size_t)(P.N * P.C), &r);
  P.fwd = gap_fwd;
  P.bwd = gap_bwd;
  size_t nx = (size_t)(P.N * P.C * P.S);
  P.x = rand_buf(nx, &r, 1.f);
  P.gx = add_var(&P, "dx", P.x, nx, 5e-2);
  gc_run(&P.base, "gap S=12", nx, &OP_TOL);
  op_free(&P);
}

/* ---- normalize */
static void norm_fwd(op_prob *P) { normalize_forward(P->y, P->x, P->nmean, P->nstd, P->N, P->C, P->S); }
static void norm_bwd(op_prob *P) { normalize_backward(P->gx, P->r, P->nstd, P->N, P->C, P->S); }

static void test_normalize(void **st) {
  (void)st;
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = 2; P.C = 3; P.S = 10;
  size_t nx = (size_t)(P.N * P.C * P.S);
  op_init(&P, nx, &r);
  P.fwd = norm_fwd;
  P.bwd = norm_bwd;
  float mean[3] = {0.49f, 0.48f, 0.45f}, sd[3] = {0.25f, 0.24f, 0.26f};
  P.nmean = mean;
  P.nstd = sd;
  P.x = mc_malloc(sizeof(float) * nx);
  tu_random_input(P.x, nx, g_seed++);
  P.gx = add_var(&P, "dx", P.x, nx, 5e-2);
  gc_run(&P.base, "normalize", nx, &OP_TOL);
  op_free(&P);
}

/* ---- dropout: the same mask every evaluation (rng re-seeded) */
static void drop_fwd(op_prob *P) {
  mc_rng rng;
  mc_rng_seed(&rng, 99);
  dropout_forward(P->y, P->mask, P->x, (int64_t)P->ny, P->drop, &rng);
}
static void drop_bwd(op_prob *P) { dropout_backward(P->gx, P->r, P->mask, (int64_t)P->ny); }

static void test_dropout(void **st) {
  (void)st;
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  const size_t n = 400;
  op_init(&P, n, &r);
  P.fwd = drop_fwd;
  P.bwd = drop_bwd;
  P.drop = 0.3f;
  P.mask = mc_malloc(sizeof(float) * n);
  P.x = rand_buf(n, &r, 1.f);
  P.gx = add_var(&P, "dx", P.x, n, 5e-2);
  gc_run(&P.base, "dropout p=0.3 (fixed mask)", n, &OP_TOL);
  size_t zeros = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(P.mask[i] == 0.f || fabsf(P.mask[i] - 1.f / 0.7f) < 1e-6f);
    zeros += P.mask[i] == 0.f;
  }
  printf("  %-34s dropped %zu of %zu\n", "dropout p=0.3 (fixed mask)", zeros, n);
  assert_true(zeros > 80 && zeros < 160); /* 120 expected, ~9 sd */
  free(P.mask);
  op_free(&P);
}

/* ---- concat / add with three inputs */
static void cat_fwd(op_prob *P) {
  concat_forward(P->y, (const float *const *)P->xs, P->cs, P->nin, P->N, P->S);
}
static void cat_bwd(op_prob *P) { concat_backward(P->gxs, P->r, P->cs, P->nin, P->N, P->S); }
static void add_fwd(op_prob *P) { add_forward(P->y, (const float *const *)P->xs, P->nin, (int64_t)P->ny); }
static void add_bwd(op_prob *P) {
  for (int j = 0; j < P->nin; j++) vec_accumulate(P->gxs[j], P->r, (int64_t)P->ny);
}

static void test_concat_add(void **st) {
  (void)st;
  static const char *names[] = {"dx0", "dx1", "dx2"};
  for (int isadd = 0; isadd <= 1; isadd++) {
    mc_rng r;
    mc_rng_seed(&r, g_seed++);
    op_prob P = {0};
    P.N = 2; P.S = 5; P.nin = 3;
    P.cs[0] = 2; P.cs[1] = isadd ? 2 : 3; P.cs[2] = isadd ? 2 : 1;
    int64_t ct = P.cs[0] + P.cs[1] + P.cs[2];
    op_init(&P, (size_t)(P.N * (isadd ? P.cs[0] : ct) * P.S), &r);
    P.fwd = isadd ? add_fwd : cat_fwd;
    P.bwd = isadd ? add_bwd : cat_bwd;
    for (int j = 0; j < 3; j++) {
      size_t n = (size_t)(P.N * P.cs[j] * P.S);
      P.xs[j] = rand_buf(n, &r, 1.f);
      P.gxs[j] = add_var(&P, names[j], P.xs[j], n, 5e-2);
    }
    gc_run(&P.base, isadd ? "add (3 inputs)" : "concat (C=2,3,1)", 1000, &OP_TOL);
    op_free(&P);
  }
}

/* ---- softmax cross-entropy: L = mean CE directly */
static double xent_loss(gc_prob *g) {
  op_prob *P = (op_prob *)g;
  return mc_softmax_xent(P->x, P->labels, P->N, P->C, NULL, 1.f, NULL);
}
static void xent_grad(gc_prob *g) {
  op_prob *P = (op_prob *)g;
  float *d = mc_malloc(sizeof(float) * (size_t)(P->N * P->C));
  int64_t correct = -1;
  (void)mc_softmax_xent(P->x, P->labels, P->N, P->C, d, 1.f, &correct);
  assert_true(correct >= 0 && correct <= P->N);
  for (int64_t i = 0; i < P->N * P->C; i++) P->gx[i] += d[i];
  free(d);
}

static void test_softmax_xent(void **st) {
  (void)st;
  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  op_prob P = {0};
  P.N = 5; P.C = 7;
  op_init(&P, 1, &r);
  P.base.loss = xent_loss;
  P.base.grad = xent_grad;
  int32_t lab[5] = {0, 3, 6, 2, 2};
  P.labels = lab;
  P.x = rand_buf((size_t)(P.N * P.C), &r, 2.f);
  P.gx = add_var(&P, "dlogits", P.x, (size_t)(P.N * P.C), 1e-3);
  gc_run(&P.base, "softmax_xent", 100, &OP_TOL);
  /* scale multiplies the gradient; numerically stable for huge logits */
  float *d = mc_malloc(sizeof(float) * 35), *d2 = mc_malloc(sizeof(float) * 35);
  mc_softmax_xent(P.x, lab, 5, 7, d, 1.f, NULL);
  mc_softmax_xent(P.x, lab, 5, 7, d2, 0.25f, NULL);
  for (int i = 0; i < 35; i++) assert_true(fabsf(d2[i] - 0.25f * d[i]) <= 1e-7f);
  float big[2] = {1000.f, 0.f};
  int32_t l0 = 1;
  double L = mc_softmax_xent(big, &l0, 1, 2, d, 1.f, NULL);
  assert_true(fabs(L - 1000.0) < 1e-9 && isfinite(d[0]));
  free(d);
  free(d2);
  op_free(&P);
}

/* --------------------------------------------------- whole-model checks */

typedef struct {
  gc_prob base;
  mc_model *m;
  mc_exec *e;
  float *theta, *state, *x, *grad, *dx, *dlogits;
  int32_t *labels;
  int64_t n;
  mc_mode mode;
  int dx_only;   /* the analytic gradient: the input-gradient-only backward */
  mc_exec *eref; /* another backend's e: a reference twin for the kink guard */
  float *sstate; /* its scratch running statistics (train modes) */
} model_prob;

static double model_loss(gc_prob *g) {
  model_prob *P = (model_prob *)g;
  mc_exec_set_seed(P->e, 77); /* same dropout mask every time */
  if (P->mode == MC_MODE_BN_RECOMPUTE) mc_exec_bn_reset(P->e, P->state);
  const float *lg = tu_forward(P->e, P->theta, P->state, P->x, P->n, P->mode);
  return mc_softmax_xent(lg, P->labels, P->n, P->m->classes, P->dlogits, 1.f, NULL);
}

/* The loss the finite differences take: with a twin, the twin's (the
 * reference backend's float forward, whose rounding noise is ~1e-7 of the
 * loss; oneDNN's own forward with Winograd F(4x4) tiles carries ~1e-5,
 * i.e. up to ~5e-3 on fd at h = 1e-3, enough to fail VGG's input gradient
 * in train mode), so the analytic gradient of the backend under test is
 * checked against the derivative of the function it implements. */
/* The twin's forward at the current point, on scratch running statistics
 * in the train modes (so the backend under test keeps its own). */
static const float *twin_forward(model_prob *P) {
  float *st = P->state;
  if (P->mode != MC_MODE_EVAL) {
    memcpy(P->sstate, P->state, sizeof(float) * P->m->n_state);
    st = P->sstate;
    if (P->mode == MC_MODE_BN_RECOMPUTE) mc_exec_bn_reset(P->eref, st);
  }
  mc_exec_set_seed(P->eref, 77);
  return tu_forward(P->eref, P->theta, st, P->x, P->n, P->mode);
}

static double model_loss_fd(gc_prob *g) {
  model_prob *P = (model_prob *)g;
  if (!P->eref) return model_loss(g);
  return mc_softmax_xent(twin_forward(P), P->labels, P->n, P->m->classes, P->dlogits, 1.f, NULL);
}

static void model_grad(gc_prob *g) {
  model_prob *P = (model_prob *)g;
  (void)model_loss(g); /* dlogits of the current point */
  tu_backward(P->e, P->theta, P->dlogits, P->dx_only ? NULL : P->grad, P->dx);
}

/* ReLU activity pattern and max-pool argmax of the last forward (with a
 * twin: of the twin's forward at the same point). */
static size_t model_sig(gc_prob *g, unsigned char *buf) {
  model_prob *P = (model_prob *)g;
  const mc_model *m = P->m;
  if (P->eref) (void)twin_forward(P);
  mc_exec *e = P->eref ? P->eref : P->e;
  size_t k = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t cnt = (size_t)(P->n * nd->C * nd->H * nd->W);
    if (nd->kind == MC_NODE_RELU) {
      const float *a = ref_of(e)->act[i];
      for (size_t j = 0; j < cnt; j++) buf[k++] = a[j] > 0.f;
    } else if (nd->kind == MC_NODE_MAXPOOL) {
      memcpy(buf + k, ref_of(e)->argmax[i], sizeof(int32_t) * cnt);
      k += sizeof(int32_t) * cnt;
    }
  }
  return k;
}

static size_t model_sig_cap(const mc_model *m, int64_t n) {
  size_t k = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t cnt = (size_t)(n * nd->C * nd->H * nd->W);
    if (nd->kind == MC_NODE_RELU) k += cnt;
    else if (nd->kind == MC_NODE_MAXPOOL) k += sizeof(int32_t) * cnt;
  }
  return k + 1;
}

typedef struct {
  const char *arch;
  int64_t c, h, w;
  double width;
  const char *widths;
  int bn;
  int64_t batch;
} arch_case;

/* Coordinates of one tensor kind ("conv.weight", ...): round-robin over the
 * tensors of that kind so every tensor gets checked, random within. */
static size_t pick_kind(const mc_model *m, mc_node_kind kind, mc_role role, size_t ncand,
                        mc_rng *r, size_t *idx) {
  int tl[256], nt = 0;
  for (int t = 0; t < m->n_tensors; t++) {
    const mc_tensor *T = &m->tensors[t];
    if (!T->in_state && T->role == role && m->nodes[T->node].kind == kind && nt < 256) tl[nt++] = t;
  }
  if (!nt) return 0;
  for (size_t j = 0; j < ncand; j++) {
    const mc_tensor *T = &m->tensors[tl[j % (size_t)nt]];
    idx[j] = T->off + (size_t)mc_rng_below(r, T->numel);
  }
  return ncand;
}

static const char *mode_name(mc_mode md) {
  return md == MC_MODE_EVAL ? "eval" : md == MC_MODE_TRAIN ? "train" : "bn_recompute";
}

/* Model checks.  Loss: mean softmax CE over a batch of 4.  Step h = 3e-3
 * (then 1e-3 when a kink was crossed): larger steps cross ReLU kinks almost
 * always, smaller ones drown in float rounding (the forward pass is float,
 * the loss noise is ~1e-7, i.e. ~1e-4 on fd at h = 1e-3).  Candidates that
 * cross a kink at both steps are resampled (up to MODEL_NCAND candidates
 * for MODEL_WANT checked coordinates, at least 30% of them kink-free).
 * Tolerance: |fd - an| <= 5e-2 * max(|fd|, |an|, 1e-2 * S), S the largest
 * |analytic| among the check's candidates: a wiring error gives O(1)
 * relative errors on the large coordinates; the floor absorbs the float
 * noise on the tiny ones (conv biases before a train-mode BN have an exact
 * zero gradient and a pure-noise fd).  Observed: mostly <= 1e-2; the worst
 * is the input gradient of VGG in train mode (~2e-2: its 1x1 last stage
 * normalises over only 4 values, which amplifies the float noise). */
#define MODEL_WANT 50
#define MODEL_NCAND 300
#define MODEL_H 3e-3
static const gc_tol MODEL_TOL = {5e-2, 1e-4, 1e-2, 2, 0.3};
/* oneDNN's forward (Winograd and blocked kernels) rounds differently per
 * call shape and carries ~1e-6 relative noise (F(4x4) tiles: ~1e-5), so
 * its fd would be noisy up to ~5e-3 absolute; the fd is taken on the
 * reference twin instead (model_loss_fd), and the floor stays 5e-2 * S
 * for the backend's own rounding in the analytic side; a wiring error is
 * still O(1) on the large coordinates. */
static const gc_tol MODEL_TOL_DNNL = {5e-2, 1e-4, 5e-2, 2, 0.3};

/* The input gradient of the dx-only backward (grad = NULL) against the full
 * backward's on the same executor: the same bytes (printed and asserted). */
static void check_dx_only_equal(model_prob *P, const char *label) {
  const mc_model *m = P->m;
  const size_t nx = (size_t)(P->n * m->in_c * m->in_h * m->in_w);
  float *d1 = mc_calloc(nx, sizeof(float)), *d2 = mc_calloc(nx, sizeof(float));
  float *g = mc_calloc(m->n_theta, sizeof(float));
  (void)model_loss(&P->base);
  tu_backward(P->e, P->theta, P->dlogits, g, d1);
  (void)model_loss(&P->base);
  tu_backward(P->e, P->theta, P->dlogits, NULL, d2);
  const double e = tu_max_rel(d2, d1, nx, 1e-30);
  printf("  %-34s dx-only backward vs full backward's dx: %s (max rel diff %.1e)\n", label,
         memcmp(d1, d2, sizeof(float) * nx) ? "DIFFERENT BYTES" : "same bytes", e);
  assert_memory_equal(d1, d2, sizeof(float) * nx);
  free(d1); free(d2); free(g);
}

/* be: the executor's backend (DNNL: its kink guard reads a reference twin);
 * dx_only: check only the input gradient, computed by the dx-only backward
 * (grad = NULL), against finite differences. */
static void check_model_on(const arch_case *ac, mc_mode mode, mc_backend be, int dx_only) {
  const int64_t n = ac->batch;
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = ac->c; p.in_h = ac->h; p.in_w = ac->w;
  p.classes = 10;
  p.width = ac->width;
  if (ac->widths) p.widths = ac->widths;
  p.bn = ac->bn;
  model_prob P;
  memset(&P, 0, sizeof P);
  mc_status st = mc_model_create(&P.m, ac->arch, &p);
  if (st) fail_msg("model %s: %s", ac->arch, mc_errmsg());
  mc_model *m = P.m;
  for (int64_t c = 0; c < m->in_c; c++) {
    m->norm_mean[c] = 0.45f + 0.02f * (float)c;
    m->norm_std[c] = 0.25f + 0.01f * (float)c;
  }
  tu_random_params(m, g_seed++, &P.theta, &P.state);
  P.n = n;
  P.mode = mode;
  size_t nx = (size_t)(n * m->in_c * m->in_h * m->in_w);
  P.x = mc_malloc(sizeof(float) * nx);
  tu_random_input(P.x, nx, g_seed++);
  P.labels = mc_malloc(sizeof(int32_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) P.labels[i] = (int32_t)((i * 7 + 3) % m->classes);
  P.grad = mc_calloc(m->n_theta, sizeof(float));
  P.dx = mc_calloc(nx, sizeof(float));
  P.dlogits = mc_malloc(sizeof(float) * (size_t)(n * m->classes));
  assert_int_equal(mc_exec_create(&P.e, m, n, be), MC_OK);
  P.dx_only = dx_only;
  if (be != MC_BACKEND_REF) {
    assert_int_equal(mc_exec_create(&P.eref, m, n, MC_BACKEND_REF), MC_OK);
    P.sstate = mc_malloc(sizeof(float) * (m->n_state + 1));
  }
  if (mode == MC_MODE_EVAL) {
    /* realistic running statistics: the exact batch statistics of another
     * random batch (else deep nets' eval activations vanish) */
    float *x2 = mc_malloc(sizeof(float) * nx);
    tu_random_input(x2, nx, g_seed++);
    mc_exec_bn_reset(P.e, P.state);
    (void)tu_forward(P.e, P.theta, P.state, x2, n, MC_MODE_BN_RECOMPUTE);
    free(x2);
  }
  P.base.loss = model_loss_fd;
  P.base.grad = model_grad;
  P.base.sig = model_sig;
  P.base.sig_cap = model_sig_cap(m, n);

  mc_rng r;
  mc_rng_seed(&r, g_seed++);
  static const struct { mc_node_kind k; mc_role role; const char *name; } kinds[] = {
      {MC_NODE_CONV, MC_ROLE_WEIGHT, "conv.weight"},  {MC_NODE_CONV, MC_ROLE_BIAS, "conv.bias"},
      {MC_NODE_LINEAR, MC_ROLE_WEIGHT, "linear.weight"}, {MC_NODE_LINEAR, MC_ROLE_BIAS, "linear.bias"},
      {MC_NODE_BN, MC_ROLE_WEIGHT, "bn.weight"},      {MC_NODE_BN, MC_ROLE_BIAS, "bn.bias"},
  };
  size_t *idxs[8] = {0};
  for (size_t k = 0; !dx_only && k < sizeof kinds / sizeof kinds[0]; k++) {
    size_t *idx = mc_malloc(sizeof(size_t) * MODEL_NCAND);
    size_t ni = pick_kind(m, kinds[k].k, kinds[k].role, MODEL_NCAND, &r, idx);
    if (!ni) {
      free(idx);
      continue;
    }
    gc_var *V = &P.base.var[P.base.nvar++];
    V->name = kinds[k].name;
    V->p = P.theta;
    V->g = P.grad;
    V->n = m->n_theta;
    V->idx = idx;
    V->nidx = ni;
    V->want = MODEL_WANT;
    V->h = MODEL_H;
    idxs[P.base.nvar - 1] = idx;
  }
  {
    size_t *idx = mc_malloc(sizeof(size_t) * MODEL_NCAND);
    for (int j = 0; j < MODEL_NCAND; j++) idx[j] = (size_t)mc_rng_below(&r, nx);
    gc_var *V = &P.base.var[P.base.nvar++];
    V->name = "input dx";
    V->p = P.x;
    V->g = P.dx;
    V->n = nx;
    V->idx = idx;
    V->nidx = MODEL_NCAND;
    V->want = MODEL_WANT;
    V->h = MODEL_H;
    V->zero_init = 1; /* mc_exec_backward: dx "receives" the gradient */
    idxs[P.base.nvar - 1] = idx;
  }
  char label[96];
  snprintf(label, sizeof label, "%s %lldx%lldx%lld w=%g%s %s%s%s", ac->arch, (long long)ac->c,
           (long long)ac->h, (long long)ac->w, ac->width, ac->bn ? " bn" : "",
           mode == MC_MODE_BN_RECOMPUTE ? "bnrc" : mode_name(mode), be == MC_BACKEND_REF ? "" : " dnnl",
           dx_only ? " dx-only" : "");
  gc_run(&P.base, label, MODEL_WANT, be == MC_BACKEND_REF ? &MODEL_TOL : &MODEL_TOL_DNNL);
  check_dx_only_equal(&P, label);
  /* without dx the input-side paths are skipped; theta grads must agree */
  P.dx_only = 0;
  float *g2 = mc_calloc(m->n_theta, sizeof(float));
  memset(P.grad, 0, sizeof(float) * m->n_theta);
  model_grad(&P.base);
  (void)model_loss(&P.base);
  tu_backward(P.e, P.theta, P.dlogits, g2, NULL);
  double e2 = tu_max_rel(g2, P.grad, m->n_theta, 1e-6);
  printf("  %-34s theta grad with dx=NULL vs with dx: max rel diff %.1e\n", label, e2);
  assert_true(e2 <= 1e-6);
  free(g2);
  mc_exec_free(P.eref);
  free(P.sstate);
  for (int v = 0; v < 8; v++) free(idxs[v]);
  mc_exec_free(P.e);
  free(P.theta); free(P.state); free(P.x); free(P.labels); free(P.grad); free(P.dx);
  free(P.dlogits);
  mc_model_free(m);
}

static void check_model(const arch_case *ac, mc_mode mode) { check_model_on(ac, mode, MC_BACKEND_REF, 0); }

/* The model checks run thousands of tiny forward passes: one thread (many
 * short parallel regions are slow on a loaded machine).  The op checks run
 * with the default thread count, so the per-thread conv scratch and its
 * reduction are exercised. */
typedef struct { int prev; } single_thread_guard;
static single_thread_guard single_thread_begin(void) {
  single_thread_guard g = {mc_get_threads()};
  mc_set_threads(1);
  return g;
}
static void single_thread_end(single_thread_guard g) { mc_set_threads(g.prev); }

static const arch_case model_cases[] = {
    {"tinyten", 1, 12, 12, 0.25, NULL, 0, 4},
    {"resnet20", 3, 8, 8, 0.25, NULL, 0, 4},
    {"mlp", 1, 12, 12, 1.0, "24,16", 0, 4},
    {"mlp", 1, 12, 12, 1.0, "24,16", 1, 4},
    {"vgg16-bn", 1, 16, 16, 0.125, NULL, 0, 4},
    {"branchnet", 1, 8, 8, 1.0, NULL, 0, 4},
};

static void test_models_eval(void **st) {
  (void)st;
  single_thread_guard g = single_thread_begin();
  for (size_t i = 0; i < sizeof model_cases / sizeof model_cases[0]; i++)
    check_model(&model_cases[i], MC_MODE_EVAL);
  single_thread_end(g);
}

static void test_models_train(void **st) {
  (void)st;
  single_thread_guard g = single_thread_begin();
  for (size_t i = 0; i < sizeof model_cases / sizeof model_cases[0]; i++)
    check_model(&model_cases[i], MC_MODE_TRAIN);
  single_thread_end(g);
}

static void test_models_bn_recompute(void **st) {
  (void)st;
  single_thread_guard g = single_thread_begin();
  /* same gradients as TRAIN (batch statistics) */
  check_model(&model_cases[0], MC_MODE_BN_RECOMPUTE);
  check_model(&model_cases[5], MC_MODE_BN_RECOMPUTE);
  single_thread_end(g);
}

/* The input gradient through the dx-only backward (the PGD attack's) on the
 * oneDNN backend against finite differences of a reference twin's forward
 * (model_loss_fd), the kink guard on the twin at the same point; the same bytes as its full
 * backward's dx on both backends (check_dx_only_equal, also run by every
 * check above). */
static void test_models_dx_only_dnnl(void **st) {
  (void)st;
  single_thread_guard g = single_thread_begin();
  for (size_t i = 0; i < sizeof model_cases / sizeof model_cases[0]; i++) {
    check_model_on(&model_cases[i], MC_MODE_EVAL, MC_BACKEND_DNNL, 1);
    check_model_on(&model_cases[i], MC_MODE_TRAIN, MC_BACKEND_DNNL, 1);
  }
  single_thread_end(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv2d),       cmocka_unit_test(test_linear),
      cmocka_unit_test(test_batchnorm),    cmocka_unit_test(test_relu),
      cmocka_unit_test(test_pool),         cmocka_unit_test(test_gap),
      cmocka_unit_test(test_normalize),    cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_concat_add),   cmocka_unit_test(test_softmax_xent),
      cmocka_unit_test(test_models_eval),  cmocka_unit_test(test_models_train),
      cmocka_unit_test(test_models_bn_recompute), cmocka_unit_test(test_models_dx_only_dnnl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
