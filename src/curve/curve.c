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

mc_status mc_curve_init_bends(mc_curve *c) {
  const size_t bytes = sizeof(float) * c->n;
  if (!(c->bends = mc_calloc_try((size_t)c->n_bends + 1, sizeof(float *))))
    return mc_oom(sizeof(float *) * ((size_t)c->n_bends + 1), "the list of %d bends", c->n_bends);
  for (int k = 0; k < c->n_bends; k++) {
    if (!(c->bends[k] = mc_aligned_alloc_try(bytes))) {
      mc_curve_free_bends(c);
      return mc_oom(bytes, "bend %d of %d (%zu parameters)", k + 1, c->n_bends, c->n);
    }
    const float f = (float)(k + 1) / (float)(c->n_bends + 1);
    for (size_t i = 0; i < c->n; i++) c->bends[k][i] = c->a[i] + f * (c->b[i] - c->a[i]);
  }
  return MC_OK;
}

void mc_curve_free_bends(mc_curve *c) {
  for (int k = 0; c->bends && k < c->n_bends; k++) free(c->bends[k]);
  free(c->bends);
  c->bends = NULL;
}

typedef struct {
  const mc_curve_train_cfg *cfg;
  const mc_model *m;
  mc_curve *c;
  mc_exec *e;
  float *theta, *grad, *state, **gb, **mom;
  float *xadv, *dx; /* robust training */
} curve_job;

/* One minibatch of curve training: t ~ U(0,1) from the epoch's spare
 * stream, CE at theta(t) plus wd/2 ||theta(t)||^2, gradient to the bends
 * by the chain rule, SGD on the bends. */
static mc_status curve_batch(void *arg, const mc_batch_ctx *b, double *loss, int64_t *hits) {
  curve_job *j = arg;
  const mc_curve_train_cfg *cfg = j->cfg;
  mc_curve *c = j->c;
  const size_t n = j->m->n_theta;
  const double t = mc_rng_uniform(&b->plan->extra);
  mc_curve_point(c, t, j->theta);
  memset(j->grad, 0, sizeof(float) * n);
  const float *x;
  mc_status st = mc_batch_adv(cfg->adv, j->e, j->theta, j->state, b, j->xadv, j->dx, &x);
  if (!st) st = mc_exec_forward(j->e, j->theta, j->state, x, b->k, MC_MODE_TRAIN);
  double l = 0;
  if (st || (st = mc_exec_loss(j->e, b->y, 1.f, &l, hits))) return st;
  if (!isfinite(l))
    return mc_error(MC_ENAN, "curve epoch %lld, step %lld (t = %.3f): the loss is %g; stopped (lr %g too high?)",
                    (long long)b->epoch + 1, (long long)b->step + 1, t, l, b->lr);
  if ((st = mc_exec_backward(j->e, j->theta, NULL, j->grad, NULL))) return st;
  /* + d/dtheta of 1/2 wd ||theta(t)||^2 */
  const float fwd = (float)cfg->wd;
  float *grad = j->grad;
  const float *theta = j->theta;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) grad[i] += fwd * theta[i];
  for (int k = 0; k < c->n_bends; k++) memset(j->gb[k], 0, sizeof(float) * n);
  mc_curve_adjoint(c, t, grad, j->gb);
  for (int k = 0; k < c->n_bends; k++)
    mc_sgd_step(c->bends[k], j->mom[k], j->gb[k], n, b->lr, cfg->momentum, 0.0, cfg->nesterov);
  if (cfg->after_step) cfg->after_step(cfg->after_arg, c, b->lr);
  *loss = l;
  return MC_OK;
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
  const size_t n = m->n_theta, nx = sizeof(float) * (size_t)(B * tr->c * tr->h * tr->w);
  const int K = c->n_bends;
  mc_log log = {0};
  float *theta = mc_aligned_alloc_try(sizeof(float) * n);
  float *grad = mc_aligned_alloc_try(sizeof(float) * n);
  float *state = mc_aligned_alloc_try(sizeof(float) * (m->n_state + 1));
  float **gb = mc_calloc_try((size_t)K, sizeof(float *));
  float **mom = mc_calloc_try((size_t)K, sizeof(float *));
  float *x = mc_aligned_alloc_try(nx);
  int32_t *y = mc_malloc_try(sizeof(int32_t) * (size_t)B);
  int64_t *order = mc_malloc_try(sizeof(int64_t) * (size_t)tr->n);
  float *xadv = cfg->adv ? mc_aligned_alloc_try(nx) : NULL;
  float *dx = cfg->adv ? mc_aligned_alloc_try(nx) : NULL;
  if (!theta || !grad || !state || !gb || !mom || !x || !y || !order || (cfg->adv && (!xadv || !dx))) {
    st = mc_oom(sizeof(float) * (2 * n + m->n_state + 1) + 2 * sizeof(float *) * (size_t)K + (cfg->adv ? 3 : 1) * nx +
                    sizeof(int32_t) * (size_t)B + sizeof(int64_t) * (size_t)tr->n,
                "curve training's parameter, gradient, state and batch buffers (%zu parameters, batch %lld)", n,
                (long long)B);
    goto out;
  }
  for (int k = 0; k < K; k++) {
    gb[k] = mc_aligned_alloc_try(sizeof(float) * n);
    mom[k] = mc_aligned_alloc_try(sizeof(float) * n);
    if (!gb[k] || !mom[k]) {
      st = mc_oom(2 * sizeof(float) * n, "the gradient and momentum of bend %d (%zu parameters)", k + 1, n);
      goto out;
    }
    if (cfg->mom0) memcpy(mom[k], cfg->mom0[k], sizeof(float) * n);
  }
  if ((st = mc_log_begin(&log, cfg->log_path, cfg->start))) goto out;
  if (cfg->log_append) log.append = 1; /* PAM: the phi-step's records follow the P-step's */
  const mc_epoch_loop L = {"curve", e, tr, &cfg->aug, B, cfg->seed, order, x, y, cfg->sink};
  curve_job job = {cfg, m, c, e, theta, grad, state, gb, mom, xadv, dx};
  for (int64_t ep = cfg->start; ep < cfg->epochs; ep++) {
    const double lr = mc_schedule_lr(&cfg->sched, ep);
    mc_epoch_stats es;
    if ((st = mc_run_epoch(&L, ep, lr, curve_batch, &job, &es))) goto out;
    mc_named_metrics mid[2] = {{"t=0.5 test", "mid_test", {NAN, NAN, 0}},
                               {"t=0.5 robust test", "mid_robust_test", {NAN, NAN, 0}}};
    if (ep == cfg->epochs - 1 || (cfg->eval_every > 0 && (ep + 1) % cfg->eval_every == 0)) {
      if (!ev && (st = mc_exec_create(&ev, m, 500, be))) goto out;
      mc_curve_point(c, 0.5, theta);
      if ((st = mc_bn_recompute_pgd(ev, theta, state, tr, cfg->bn_samples, cfg->adv))) goto out;
      if ((st = mc_evaluate(ev, theta, state, &d->test, cfg->test_samples, &mid[0].m))) goto out;
      if (cfg->adv && (st = mc_evaluate_pgd(ev, theta, state, &d->test, cfg->test_samples, cfg->adv, &mid[1].m, NULL)))
        goto out;
    }
    if ((st = mc_epoch_report(cfg->sink, &log, "curve epoch", ep + 1, cfg->epochs, "train (random t)", &es, lr, mid,
                              2)))
      goto out;
    if (cfg->after_epoch && (st = cfg->after_epoch(cfg->epoch_arg, ep + 1, mom))) goto out;
  }
out:;
  mc_status st2 = mc_log_end(&log);
  if (!st) st = st2;
  for (int k = 0; k < K; k++) {
    if (gb) free(gb[k]);
    if (mom) free(mom[k]);
  }
  free(gb); free(mom); free(theta); free(grad); free(state); free(x); free(y); free(order); free(xadv); free(dx);
  mc_exec_free(e);
  mc_exec_free(ev);
  return st;
}
