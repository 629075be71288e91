/* Curve maths (see curve.h) and curve training. */
#include "curve/curve.h"

#include "eval/eval.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_names[] = {"linear", "bezier", "chain"};

const char *mc_curve_kind_name(mc_curve_kind k) { return kind_names[k]; }

mc_status mc_curve_kind_parse(const char *s, mc_curve_kind *k) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, kind_names[i])) {
      *k = (mc_curve_kind)i;
      return MC_OK;
    }
  return mc_error(MC_EARG, "curve kind '%s': expected linear, bezier or chain", s);
}

static double binom(int n, int k) {
  double r = 1;
  for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
  return r;
}

void mc_curve_coeffs(const mc_curve *c, double t, double *wa, double *wb, double *w) {
  const int K = c->n_bends;
  for (int k = 0; k < K; k++) w[k] = 0;
  if (c->kind == MC_CURVE_LINEAR || K == 0) {
    *wa = 1 - t;
    *wb = t;
    return;
  }
  if (c->kind == MC_CURVE_BEZIER) {
    const int deg = K + 1;
    *wa = pow(1 - t, deg);
    *wb = pow(t, deg);
    for (int k = 0; k < K; k++) w[k] = binom(deg, k + 1) * pow(t, k + 1) * pow(1 - t, deg - k - 1);
    return;
  }
  /* chain: knots at j/(K+1); P_0 = a, P_1..P_K = bends, P_{K+1} = b */
  double u = t * (K + 1);
  int j = (int)floor(u);
  if (j > K) j = K;
  if (j < 0) j = 0;
  double s = u - j;
  *wa = *wb = 0;
  double *lo = j == 0 ? wa : &w[j - 1];
  double *hi = j == K ? wb : &w[j];
  *lo += 1 - s;
  *hi += s;
}

void mc_curve_point(const mc_curve *c, double t, float *out) {
  double wa, wb, w[64];
  MC_ASSERT(c->n_bends <= 64);
  mc_curve_coeffs(c, t, &wa, &wb, w);
  const float fa = (float)wa, fb = (float)wb;
  const size_t n = c->n;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float v = fa * c->a[i] + fb * c->b[i];
    for (int k = 0; k < c->n_bends; k++) v += (float)w[k] * c->bends[k][i];
    out[i] = v;
  }
}

void mc_curve_adjoint(const mc_curve *c, double t, const float *g, float **gbends) {
  double wa, wb, w[64];
  mc_curve_coeffs(c, t, &wa, &wb, w);
  for (int k = 0; k < c->n_bends; k++) {
    if (w[k] == 0) continue;
    const float f = (float)w[k];
    float *gb = gbends[k];
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < c->n; i++) gb[i] += f * g[i];
  }
}

void mc_curve_init_bends(mc_curve *c) {
  c->bends = mc_calloc((size_t)c->n_bends + 1, sizeof(float *));
  for (int k = 0; k < c->n_bends; k++) {
    c->bends[k] = mc_aligned_alloc(sizeof(float) * c->n);
    const float f = (float)(k + 1) / (float)(c->n_bends + 1);
    for (size_t i = 0; i < c->n; i++) c->bends[k][i] = c->a[i] + f * (c->b[i] - c->a[i]);
  }
}

void mc_curve_free_bends(mc_curve *c) {
  for (int k = 0; k < c->n_bends; k++) free(c->bends[k]);
  free(c->bends);
  c->bends = NULL;
}

mc_status mc_curve_train(const mc_curve_train_cfg *cfg, const mc_model *m, mc_curve *c, const mc_data *d,
                         mc_backend be) {
  const mc_dataset *tr = &d->train;
  if (c->n_bends == 0) return mc_error(MC_EARG, "a linear path has no bends to train");
  if (tr->n < 2) return mc_error(MC_EARG, "training set has %lld examples; need at least 2", (long long)tr->n);
  int64_t B = cfg->batch < tr->n ? cfg->batch : tr->n;
  mc_exec *e, *ev = NULL;
  mc_status st = mc_exec_create(&e, m, B, be);
  if (st) return st;
  const size_t n = m->n_theta;
  float *theta = mc_aligned_alloc(sizeof(float) * n);
  float *grad = mc_aligned_alloc(sizeof(float) * n);
  float *state = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  float **gb = mc_calloc((size_t)c->n_bends, sizeof(float *));
  float **mom = mc_calloc((size_t)c->n_bends, sizeof(float *));
  for (int k = 0; k < c->n_bends; k++) {
    gb[k] = mc_aligned_alloc(sizeof(float) * n);
    mom[k] = mc_aligned_alloc(sizeof(float) * n);
  }
  float *dlogits = mc_aligned_alloc(sizeof(float) * (size_t)(B * m->classes));
  float *x = mc_aligned_alloc(sizeof(float) * (size_t)(B * tr->c * tr->h * tr->w));
  int32_t *y = mc_malloc(sizeof(int32_t) * (size_t)B);
  int64_t *order = mc_malloc(sizeof(int64_t) * (size_t)tr->n);
  FILE *log = cfg->log_path ? fopen(cfg->log_path, "w") : NULL;
  if (cfg->log_path && !log) {
    st = mc_error(MC_EIO, "%s: cannot open log file", cfg->log_path);
    goto out;
  }
  for (int64_t ep = 0; ep < cfg->epochs; ep++) {
    double t0 = omp_get_wtime();
    double lr = mc_schedule_lr(&cfg->sched, ep);
    mc_epoch_plan plan;
    mc_epoch_plan_begin(&plan, order, tr->n, B, cfg->seed, ep, e);
    const int64_t steps = plan.steps;
    double loss_sum = 0;
    int64_t hits = 0, seen = 0;
    for (int64_t s = 0; s < steps; s++) {
      double t = mc_rng_uniform(&plan.extra);
      int64_t k = mc_epoch_plan_batch(&plan, tr, s, &cfg->aug, x, y);
      mc_curve_point(c, t, theta);
      memset(grad, 0, sizeof(float) * n);
      const float *logits = mc_exec_forward(e, theta, state, x, k, MC_MODE_TRAIN);
      int64_t hit;
      double l = mc_softmax_xent(logits, y, k, m->classes, dlogits, 1.f, &hit);
      if (!isfinite(l)) {
        st = mc_error(MC_ENAN, "curve epoch %lld, step %lld (t = %.3f): the loss is %g; stopped (lr %g too high?)",
                      (long long)ep + 1, (long long)s + 1, t, l, lr);
        goto out;
      }
      mc_exec_backward(e, theta, dlogits, grad, NULL);
      /* + d/dtheta of 1/2 wd ||theta(t)||^2 */
      const float fwd = (float)cfg->wd;
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; i++) grad[i] += fwd * theta[i];
      for (int b = 0; b < c->n_bends; b++) memset(gb[b], 0, sizeof(float) * n);
      mc_curve_adjoint(c, t, grad, gb);
      for (int b = 0; b < c->n_bends; b++)
        mc_sgd_step(c->bends[b], mom[b], gb[b], n, lr, cfg->momentum, 0.0, cfg->nesterov);
      loss_sum += l * (double)k;
      hits += hit;
      seen += k;
      if ((s & 15) == 0 || s == steps - 1) mc_progress("curve", s + 1, steps, t0);
    }
    double secs = omp_get_wtime() - t0;
    double tl = loss_sum / (double)seen, ta = (double)hits / (double)seen;
    mc_metrics mid = {NAN, NAN, 0};
    int last = ep == cfg->epochs - 1;
    if (last || (cfg->eval_every > 0 && (ep + 1) % cfg->eval_every == 0)) {
      if (!ev && (st = mc_exec_create(&ev, m, 500, be))) goto out;
      mc_curve_point(c, 0.5, theta);
      if ((st = mc_bn_recompute(ev, theta, state, tr, cfg->bn_samples))) goto out;
      if ((st = mc_evaluate(ev, theta, state, &d->test, cfg->test_samples, &mid))) goto out;
    }
    printf("curve epoch %3lld/%lld  train loss %.4f acc %.2f%% (random t)", (long long)ep + 1,
           (long long)cfg->epochs, tl, 100 * ta);
    if (isfinite(mid.loss)) printf("  t=0.5 test loss %.4f acc %.2f%%", mid.loss, 100 * mid.accuracy);
    printf("  lr %.4g  %.1fs  %.0f img/s\n", lr, secs, (double)seen / secs);
    fflush(stdout);
    if (log) {
      fprintf(log, "{\"epoch\": %lld, \"train_loss\": %.6f, \"train_accuracy\": %.6f, ", (long long)ep + 1, tl, ta);
      if (isfinite(mid.loss)) fprintf(log, "\"mid_test_loss\": %.6f, \"mid_test_accuracy\": %.6f, ", mid.loss, mid.accuracy);
      fprintf(log, "\"lr\": %.6g, \"seconds\": %.3f}\n", lr, secs);
      fflush(log);
    }
  }
out:
  if (log) fclose(log);
  for (int k = 0; k < c->n_bends; k++) {
    free(gb[k]);
    free(mom[k]);
  }
  free(gb); free(mom); free(theta); free(grad); free(state); free(dlogits); free(x); free(y); free(order);
  mc_exec_free(e);
  mc_exec_free(ev);
  return st;
}
