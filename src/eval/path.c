/* Path and plane evaluation (see path.h). */
#include "eval/path.h"

#include "eval/eval.h"
#include "eval/repair.h"
#include "io/results.h"
#include "train/train.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static double dist(const float *x, const float *y, size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (size_t i = 0; i < n; i++) {
    double d = (double)x[i] - y[i];
    s += d * d;
  }
  return sqrt(s);
}

mc_status mc_point_eval(mc_exec *e, const float *theta, float *state, const mc_data *d, const mc_path_opts *o,
                        mc_metrics *te, mc_metrics *tr, mc_metrics *rob) {
  mc_status st;
  const mc_pgd *bn_pgd = o->adv && o->bn_adv ? o->adv : NULL;
  if (o->bn_recompute && (st = mc_bn_recompute_pgd(e, theta, state, &d->train, o->bn_samples, bn_pgd))) return st;
  if ((st = mc_evaluate(e, theta, state, &d->test, o->test_samples, te))) return st;
  if (tr && (st = mc_evaluate(e, theta, state, &d->train, 0, tr))) return st;
  if (o->adv && rob) st = mc_evaluate_pgd(e, theta, state, &d->test, o->test_samples, o->adv, rob, NULL);
  return st;
}

/* A path point: BN state recomputed, or interpolated between endpoints;
 * with rep, REPAIRed toward the endpoints' statistics interpolated by t. */
static mc_status point_eval(mc_exec *e, const float *theta, float *state, double t, const float *sa,
                            const float *sb, const mc_data *d, const mc_path_opts *o, mc_repair *rep,
                            mc_metrics *te, mc_metrics *tr, mc_metrics *rob) {
  const mc_model *m = mc_exec_model(e);
  if (!o->bn_recompute)
    for (size_t i = 0; i < m->n_state; i++) state[i] = (float)((1 - t) * sa[i] + t * sb[i]);
  if (rep) mc_repair_set_t(rep, t);
  return mc_repair_point_eval(rep, e, theta, state, d, o, te, tr, rob);
}

static void report(const mc_path_opts *o, const char *what, int64_t done, int64_t total, double t, double a,
                   double b, const mc_metrics *te, double t0) {
  const mc_progress_info p = {what, done, total, t, a, b, te, omp_get_wtime() - t0};
  mc_sink_progress(o->sink, &p);
}

mc_status mc_path_eval(const mc_model *m, const mc_curve *c, const float *state_a, const float *state_b,
                       const mc_data *d, int T, const mc_path_opts *o, mc_backend be, mc_path_result *out) {
  memset(out, 0, sizeof *out);
  if (T < 2) return mc_error(MC_EARG, "a path needs at least 2 points (got %d)", T);
  mc_exec *e;
  mc_status st = mc_exec_create(&e, m, o->batch > 0 ? o->batch : 500, be);
  if (st) return st;
  mc_repair *rep;
  const float *refs[2] = {c->a, c->b}, *ref_states[2] = {state_a, state_b};
  if ((st = mc_repair_begin(&rep, e, o, 2, refs, ref_states, d))) {
    mc_exec_free(e);
    return st;
  }
  out->T = T;
  const size_t col = sizeof(double) * (size_t)T;
  out->t = mc_malloc_try(col);
  out->test_loss = mc_malloc_try(col);
  out->test_acc = mc_malloc_try(col);
  out->seg_len = mc_calloc_try((size_t)T, sizeof(double));
  if (o->with_train) {
    out->train_loss = mc_malloc_try(col);
    out->train_acc = mc_malloc_try(col);
  }
  if (o->adv) {
    out->robust_loss = mc_malloc_try(col);
    out->robust_acc = mc_malloc_try(col);
  }
  const size_t nth = sizeof(float) * m->n_theta, nst = sizeof(float) * (m->n_state + 1);
  float *theta = mc_aligned_alloc_try(nth), *prev = mc_aligned_alloc_try(nth), *state = mc_aligned_alloc_try(nst);
  if (!out->t || !out->test_loss || !out->test_acc || !out->seg_len ||
      (o->with_train && (!out->train_loss || !out->train_acc)) || (o->adv && (!out->robust_loss || !out->robust_acc)) ||
      !theta || !prev || !state)
    st = mc_oom(8 * col + 2 * nth + nst, "the results of a %d-point path and its parameter buffers", T);
  double t0 = omp_get_wtime();
  int have_mid = 0;
  for (int i = 0; i < T && !st; i++) {
    double t = (double)i / (T - 1);
    out->t[i] = t;
    mc_curve_point(c, t, theta);
    if (i > 0) out->seg_len[i - 1] = dist(theta, prev, m->n_theta);
    memcpy(prev, theta, sizeof(float) * m->n_theta);
    mc_metrics te, tr, rob;
    st = point_eval(e, theta, state, t, state_a, state_b, d, o, rep, &te, o->with_train ? &tr : NULL, &rob);
    if (st) break;
    if (o->adv) {
      out->robust_loss[i] = rob.loss;
      out->robust_acc[i] = rob.accuracy;
    }
    out->test_loss[i] = te.loss;
    out->test_acc[i] = te.accuracy;
    if (o->with_train) {
      out->train_loss[i] = tr.loss;
      out->train_acc[i] = tr.accuracy;
    }
    if (2 * i == T - 1) {
      out->mid_loss = te.loss;
      out->mid_acc = te.accuracy;
      have_mid = 1;
    }
    report(o, "path", i + 1, T, t, 0, 0, &te, t0);
  }
  if (!st && !have_mid) { /* T even: evaluate t = 1/2 itself */
    mc_curve_point(c, 0.5, theta);
    mc_metrics te;
    st = point_eval(e, theta, state, 0.5, state_a, state_b, d, o, rep, &te, NULL, NULL);
    out->mid_loss = te.loss;
    out->mid_acc = te.accuracy;
  }
  free(theta);
  free(prev);
  free(state);
  mc_repair_end(rep);
  mc_exec_free(e);
  if (st) mc_path_result_free(out);
  return st;
}

void mc_path_result_free(mc_path_result *r) {
  free(r->t); free(r->test_loss); free(r->test_acc); free(r->train_loss); free(r->train_acc); free(r->seg_len);
  free(r->robust_loss); free(r->robust_acc);
  memset(r, 0, sizeof *r);
}

static void summarize(const double *v, const double *len, int T, mc_summary *s) {
  s->min = s->max = v[0];
  double sum = 0, wsum = 0, L = 0;
  for (int i = 0; i < T; i++) {
    s->min = fmin(s->min, v[i]);
    s->max = fmax(s->max, v[i]);
    sum += v[i];
  }
  for (int i = 0; i + 1 < T; i++) {
    wsum += len[i] * 0.5 * (v[i] + v[i + 1]);
    L += len[i];
  }
  s->mean = sum / T;
  s->avg = L > 0 ? wsum / L : s->mean;
}

void mc_path_metrics_compute(const mc_path_result *r, mc_path_metrics *pm) {
  const int T = r->T;
  summarize(r->test_loss, r->seg_len, T, &pm->loss);
  summarize(r->test_acc, r->seg_len, T, &pm->acc);
  double le = 0.5 * (r->test_loss[0] + r->test_loss[T - 1]);
  double ae = 0.5 * (r->test_acc[0] + r->test_acc[T - 1]);
  pm->loss_barrier = pm->loss.max - le;
  pm->acc_barrier = ae - pm->acc.min;
  pm->mid_barrier = r->mid_loss - le;
  pm->length = 0;
  for (int i = 0; i + 1 < T; i++) pm->length += r->seg_len[i];
  pm->robust = r->robust_acc != NULL;
  if (!pm->robust) return;
  summarize(r->robust_loss, r->seg_len, T, &pm->rloss);
  summarize(r->robust_acc, r->seg_len, T, &pm->racc);
  pm->rloss_barrier = pm->rloss.max - 0.5 * (r->robust_loss[0] + r->robust_loss[T - 1]);
  pm->racc_barrier = 0.5 * (r->robust_acc[0] + r->robust_acc[T - 1]) - pm->racc.min;
  pm->i_rmax = pm->i_rmin = 0;
  pm->n_better = 0;
  const double ra = fmax(r->robust_acc[0], r->robust_acc[T - 1]), ca = fmax(r->test_acc[0], r->test_acc[T - 1]);
  for (int i = 0; i < T; i++) {
    if (r->robust_acc[i] > r->robust_acc[pm->i_rmax]) pm->i_rmax = i;
    if (r->robust_acc[i] < r->robust_acc[pm->i_rmin]) pm->i_rmin = i;
    pm->n_better += r->robust_acc[i] > ra && r->test_acc[i] > ca;
  }
}

static const char *const DEF_AVG = "arc-length-weighted mean over the points (trapezoid rule, segment length ||theta(t_i+1)-theta(t_i)||)";
static const char *const DEF_LB = "max_t L(theta(t)) - (L_A + L_B)/2, test loss";
static const char *const DEF_AB = "(Acc_A + Acc_B)/2 - min_t Acc(theta(t)), test accuracy";
static const char *const DEF_MB = "L(theta(1/2)) - (L_A + L_B)/2, test loss";
static const char *const DEF_LEN = "sum_i ||theta(t_i+1) - theta(t_i)|| over the evaluated points";
static const char *const DEF_RLB = "max_t L_rob(theta(t)) - (L_rob(A) + L_rob(B))/2, PGD test loss";
static const char *const DEF_RAB = "(Acc_rob(A) + Acc_rob(B))/2 - min_t Acc_rob(theta(t)), PGD test accuracy";
static const char *const DEF_BETTER = "points whose PGD accuracy exceeds both endpoints' and whose clean accuracy "
                                      "exceeds both endpoints'";

void mc_path_print(FILE *f, const char *title, const mc_path_result *r, const mc_path_metrics *pm) {
  fprintf(f, "%s\n%8s %12s %10s", title, "t", "test loss", "test acc");
  if (r->train_loss) fprintf(f, " %12s %10s", "train loss", "train acc");
  if (r->robust_acc) fprintf(f, " %12s %10s", "robust loss", "robust acc");
  fprintf(f, "\n");
  for (int i = 0; i < r->T; i++) {
    fprintf(f, "%8.4f %12.5f %9.2f%%", r->t[i], r->test_loss[i], 100 * r->test_acc[i]);
    if (r->train_loss) fprintf(f, " %12.5f %9.2f%%", r->train_loss[i], 100 * r->train_acc[i]);
    if (r->robust_acc) fprintf(f, " %12.5f %9.2f%%", r->robust_loss[i], 100 * r->robust_acc[i]);
    fprintf(f, "\n");
  }
  fprintf(f, "endpoints: test acc A %.2f%%, B %.2f%%; test loss A %.4f, B %.4f\n", 100 * r->test_acc[0],
          100 * r->test_acc[r->T - 1], r->test_loss[0], r->test_loss[r->T - 1]);
  fprintf(f, "test accuracy: min %.2f%%  max %.2f%%  mean %.2f%%  avg %.2f%%\n", 100 * pm->acc.min,
          100 * pm->acc.max, 100 * pm->acc.mean, 100 * pm->acc.avg);
  fprintf(f, "test loss:     min %.4f  max %.4f  mean %.4f  avg %.4f\n", pm->loss.min, pm->loss.max, pm->loss.mean,
          pm->loss.avg);
  fprintf(f, "  avg = %s\n", DEF_AVG);
  fprintf(f, "loss barrier     %.4f   = %s\n", pm->loss_barrier, DEF_LB);
  fprintf(f, "accuracy barrier %.2f%%  = %s\n", 100 * pm->acc_barrier, DEF_AB);
  fprintf(f, "midpoint barrier %.4f   = %s\n", pm->mid_barrier, DEF_MB);
  fprintf(f, "curve length     %.4f   = %s\n", pm->length, DEF_LEN);
  if (!pm->robust) return;
  const int T = r->T;
  fprintf(f, "robust (PGD) test accuracy: min %.2f%%  max %.2f%%  mean %.2f%%  avg %.2f%%; endpoints A %.2f%%, B %.2f%%\n",
          100 * pm->racc.min, 100 * pm->racc.max, 100 * pm->racc.mean, 100 * pm->racc.avg, 100 * r->robust_acc[0],
          100 * r->robust_acc[T - 1]);
  fprintf(f, "robust (PGD) test loss:     min %.4f  max %.4f  mean %.4f  avg %.4f\n", pm->rloss.min, pm->rloss.max,
          pm->rloss.mean, pm->rloss.avg);
  fprintf(f, "robust loss barrier     %.4f   = %s\n", pm->rloss_barrier, DEF_RLB);
  fprintf(f, "robust accuracy barrier %.2f%%  = %s\n", 100 * pm->racc_barrier, DEF_RAB);
  fprintf(f, "most robust point  t = %.4f: robust acc %.2f%%, clean acc %.2f%%\n", r->t[pm->i_rmax],
          100 * r->robust_acc[pm->i_rmax], 100 * r->test_acc[pm->i_rmax]);
  fprintf(f, "least robust point t = %.4f: robust acc %.2f%%, clean acc %.2f%%\n", r->t[pm->i_rmin],
          100 * r->robust_acc[pm->i_rmin], 100 * r->test_acc[pm->i_rmin]);
  fprintf(f, "more robust and more accurate than both endpoints: %d of %d points (%s)\n", pm->n_better, T,
          pm->n_better ? "yes" : "no");
}

static json_t *arr(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
  return a;
}

static json_t *summary_json(const mc_summary *s) {
  return json_pack("{s:f, s:f, s:f, s:f}", "min", s->min, "max", s->max, "mean", s->mean, "avg", s->avg);
}

json_t *mc_path_json(const mc_path_result *r, const mc_path_metrics *pm) {
  json_t *j = json_object();
  json_object_set_new(j, "t", arr(r->t, r->T));
  json_object_set_new(j, "test_loss", arr(r->test_loss, r->T));
  json_object_set_new(j, "test_accuracy", arr(r->test_acc, r->T));
  if (r->train_loss) {
    json_object_set_new(j, "train_loss", arr(r->train_loss, r->T));
    json_object_set_new(j, "train_accuracy", arr(r->train_acc, r->T));
  }
  if (r->robust_acc) {
    json_object_set_new(j, "robust_loss", arr(r->robust_loss, r->T));
    json_object_set_new(j, "robust_accuracy", arr(r->robust_acc, r->T));
  }
  json_object_set_new(j, "segment_length", arr(r->seg_len, r->T - 1));
  json_t *mt = json_object();
  json_object_set_new(mt, "test_loss", summary_json(&pm->loss));
  json_object_set_new(mt, "test_accuracy", summary_json(&pm->acc));
  json_object_set_new(mt, "loss_barrier", json_real(pm->loss_barrier));
  json_object_set_new(mt, "accuracy_barrier", json_real(pm->acc_barrier));
  json_object_set_new(mt, "midpoint_barrier", json_real(pm->mid_barrier));
  json_object_set_new(mt, "midpoint_test_loss", json_real(r->mid_loss));
  json_object_set_new(mt, "midpoint_test_accuracy", json_real(r->mid_acc));
  json_object_set_new(mt, "length", json_real(pm->length));
  json_t *defs = json_pack("{s:s, s:s, s:s, s:s, s:s}", "avg", DEF_AVG, "loss_barrier", DEF_LB, "accuracy_barrier",
                           DEF_AB, "midpoint_barrier", DEF_MB, "length", DEF_LEN);
  if (pm->robust) {
    json_object_set_new(mt, "robust_loss", summary_json(&pm->rloss));
    json_object_set_new(mt, "robust_accuracy", summary_json(&pm->racc));
    json_object_set_new(mt, "robust_loss_barrier", json_real(pm->rloss_barrier));
    json_object_set_new(mt, "robust_accuracy_barrier", json_real(pm->racc_barrier));
    json_object_set_new(mt, "most_robust", json_pack("{s:f, s:f, s:f}", "t", r->t[pm->i_rmax], "robust_accuracy",
                                                     r->robust_acc[pm->i_rmax], "test_accuracy", r->test_acc[pm->i_rmax]));
    json_object_set_new(mt, "least_robust", json_pack("{s:f, s:f, s:f}", "t", r->t[pm->i_rmin], "robust_accuracy",
                                                      r->robust_acc[pm->i_rmin], "test_accuracy", r->test_acc[pm->i_rmin]));
    json_object_set_new(mt, "points_more_robust_and_accurate", json_integer(pm->n_better));
    json_object_set_new(defs, "robust_loss_barrier", json_string(DEF_RLB));
    json_object_set_new(defs, "robust_accuracy_barrier", json_string(DEF_RAB));
    json_object_set_new(defs, "points_more_robust_and_accurate", json_string(DEF_BETTER));
  }
  json_object_set_new(j, "metrics", mt);
  json_object_set_new(j, "definitions", defs);
  return j;
}

mc_status mc_path_csv(const char *path, const mc_path_result *r) {
  size_t cap = 160 + (size_t)r->T * 160, len = 0;
  char *buf = mc_malloc_try(cap);
  if (!buf) return mc_oom(cap, "the CSV text of %s", path);
  len += (size_t)snprintf(buf + len, cap - len, "t,test_loss,test_accuracy%s%s\n",
                          r->train_loss ? ",train_loss,train_accuracy" : "",
                          r->robust_acc ? ",robust_loss,robust_accuracy" : "");
  for (int i = 0; i < r->T; i++) {
    len += (size_t)snprintf(buf + len, cap - len, "%.6f,%.8g,%.8g", r->t[i], r->test_loss[i], r->test_acc[i]);
    if (r->train_loss) len += (size_t)snprintf(buf + len, cap - len, ",%.8g,%.8g", r->train_loss[i], r->train_acc[i]);
    if (r->robust_acc)
      len += (size_t)snprintf(buf + len, cap - len, ",%.8g,%.8g", r->robust_loss[i], r->robust_acc[i]);
    len += (size_t)snprintf(buf + len, cap - len, "\n");
  }
  mc_status st = mc_atomic_write(path, buf, len);
  free(buf);
  return st;
}

static double dot(const float *x, const float *y, size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (size_t i = 0; i < n; i++) s += (double)x[i] * y[i];
  return s;
}

/* x = t1 - t0, y_perp = (t2 - t0) - (<x,y>/<x,x>) x, as doubles in floats */
static void plane_basis(const float *t0, const float *t1, const float *t2, size_t n, float *x, float *yp,
                        double *xn, double *yn, double *p2a) {
  for (size_t i = 0; i < n; i++) {
    x[i] = t1[i] - t0[i];
    yp[i] = t2[i] - t0[i];
  }
  double xx = dot(x, x, n), xy = dot(x, yp, n);
  double c = xx > 0 ? xy / xx : 0;
  for (size_t i = 0; i < n; i++) yp[i] -= (float)c * x[i];
  *xn = sqrt(xx);
  *yn = sqrt(dot(yp, yp, n));
  *p2a = c;
}

/* The same float vectors as plane_basis, formed element by element inside
 * the dot products instead of stored: no allocation per projected point. */
void mc_plane_project(const float *t0, const float *t1, const float *t2, size_t n, const float *theta, double *a,
                      double *b) {
  double xx = 0, xy = 0, vx = 0;
#pragma omp parallel for reduction(+ : xx, xy, vx) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float x = t1[i] - t0[i], y = t2[i] - t0[i], v = theta[i] - t0[i];
    xx += (double)x * x;
    xy += (double)x * y;
    vx += (double)v * x;
  }
  const float c = (float)(xx > 0 ? xy / xx : 0);
  double yy = 0, vy = 0;
#pragma omp parallel for reduction(+ : yy, vy) schedule(static)
  for (size_t i = 0; i < n; i++) {
    float yp = t2[i] - t0[i];
    yp -= c * (t1[i] - t0[i]);
    yy += (double)yp * yp;
    vy += (double)(theta[i] - t0[i]) * yp;
  }
  const double xn = sqrt(xx), yn = sqrt(yy);
  *a = xn > 0 ? vx / (xn * xn) : 0;
  *b = yn > 0 ? vy / (yn * yn) : 0;
}

mc_status mc_plane_eval(const mc_model *m, const float *t0, const float *t1, const float *t2, const mc_data *d,
                        int G, const double range[4], const mc_path_opts *o, mc_backend be,
                        mc_plane_result *out) {
  memset(out, 0, sizeof *out);
  if (G < 2) return mc_error(MC_EARG, "--grid must be >= 2 (got %d)", G);
  const size_t n = m->n_theta;
  float *x = mc_aligned_alloc_try(sizeof(float) * n), *yp = mc_aligned_alloc_try(sizeof(float) * n);
  if (!x || !yp) {
    free(x);
    free(yp);
    return mc_oom(2 * sizeof(float) * n, "the plane's basis vectors");
  }
  plane_basis(t0, t1, t2, n, x, yp, &out->xnorm, &out->ynorm, &out->p2a);
  if (out->xnorm == 0 || out->ynorm == 0) {
    free(x); free(yp);
    return mc_error(MC_EARG, "the three models do not span a plane (||x|| = %g, ||y_perp|| = %g)", out->xnorm,
                    out->ynorm);
  }
  mc_exec *e;
  mc_repair *rep = NULL;
  const float *refs[3] = {t0, t1, t2};
  mc_status st = mc_exec_create(&e, m, o->batch > 0 ? o->batch : 500, be);
  if (!st && (st = mc_repair_begin(&rep, e, o, 3, refs, NULL, d))) mc_exec_free(e);
  if (st) { free(x); free(yp); return st; }
  out->G = G;
  const size_t G2 = (size_t)G * (size_t)G;
  out->a = mc_calloc_try((size_t)G, sizeof(double));
  out->b = mc_calloc_try((size_t)G, sizeof(double));
  out->loss = mc_calloc_try(G2, sizeof(double));
  out->acc = mc_calloc_try(G2, sizeof(double));
  if (o->adv) {
    out->rloss = mc_calloc_try(G2, sizeof(double));
    out->racc = mc_calloc_try(G2, sizeof(double));
  }
  const size_t nst = sizeof(float) * (m->n_state + 1);
  float *theta = mc_aligned_alloc_try(sizeof(float) * n), *state = mc_aligned_alloc_try(nst);
  if (!out->a || !out->b || !out->loss || !out->acc || (o->adv && (!out->rloss || !out->racc)) || !theta || !state)
    st = mc_oom(sizeof(double) * (2 * (size_t)G + 4 * G2) + sizeof(float) * n + nst,
                "the results of a %d x %d plane and its parameter buffers", G, G);
  for (int i = 0; i < G && !st; i++) {
    out->a[i] = range[0] + (range[1] - range[0]) * i / (G - 1);
    out->b[i] = range[2] + (range[3] - range[2]) * i / (G - 1);
  }
  double tstart = omp_get_wtime();
  for (int j = 0; j < G && !st; j++)
    for (int i = 0; i < G && !st; i++) {
      const float fa = (float)out->a[i], fb = (float)out->b[j];
      for (size_t q = 0; q < n; q++) theta[q] = t0[q] + fa * x[q] + fb * yp[q];
      mc_metrics te, rob;
      mc_path_opts po = *o; /* BN recomputed at every grid point */
      po.with_train = 0;
      po.bn_recompute = 1;
      po.sink = NULL;
      /* REPAIR target: the three models' statistics weighted by the
       * point's affine coordinates (theta = w0 t0 + w1 t1 + w2 t2) */
      const double w[3] = {1 - (fa - fb * out->p2a) - fb, fa - fb * out->p2a, fb};
      if (rep) mc_repair_set_weights(rep, w);
      if ((st = mc_repair_point_eval(rep, e, theta, state, d, &po, &te, NULL, &rob))) break;
      out->loss[j * G + i] = te.loss;
      out->acc[j * G + i] = te.accuracy;
      if (o->adv) {
        out->rloss[j * G + i] = rob.loss;
        out->racc[j * G + i] = rob.accuracy;
      }
      report(o, "plane", j * G + i + 1, G * G, 0, out->a[i], out->b[j], &te, tstart);
    }
  free(theta); free(state); free(x); free(yp);
  mc_repair_end(rep);
  mc_exec_free(e);
  if (st) mc_plane_result_free(out);
  return st;
}

void mc_plane_result_free(mc_plane_result *r) {
  free(r->a); free(r->b); free(r->loss); free(r->acc); free(r->rloss); free(r->racc);
  memset(r, 0, sizeof *r);
}

json_t *mc_plane_json(const mc_plane_result *r) {
  json_t *j = json_object();
  json_object_set_new(j, "grid", json_integer(r->G));
  json_object_set_new(j, "a", arr(r->a, r->G));
  json_object_set_new(j, "b", arr(r->b, r->G));
  json_object_set_new(j, "x_norm", json_real(r->xnorm));
  json_object_set_new(j, "y_perp_norm", json_real(r->ynorm));
  json_object_set_new(j, "theta2_a", json_real(r->p2a));
  json_object_set_new(j, "test_loss", arr(r->loss, r->G * r->G));
  json_object_set_new(j, "test_accuracy", arr(r->acc, r->G * r->G));
  if (r->racc) {
    json_object_set_new(j, "robust_loss", arr(r->rloss, r->G * r->G));
    json_object_set_new(j, "robust_accuracy", arr(r->racc, r->G * r->G));
  }
  json_object_set_new(j, "definition",
                      json_string("theta(a,b) = theta0 + a*x + b*y_perp, x = theta1 - theta0, y_perp = "
                                  "Gram-Schmidt of theta2 - theta0 against x; values row-major [b index][a index]; "
                                  "BN recomputed at every grid point"));
  return j;
}
