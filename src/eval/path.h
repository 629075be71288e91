/* Evaluation along a path (line or curve) with BN recomputed at every
 * point, the barrier metrics of SPEC section 2, and loss planes. */
#ifndef MC_PATH_H
#define MC_PATH_H

#include <jansson.h>

#include "core/sink.h"
#include "curve/curve.h"
#include "data/data.h"
#include "modeconn.h"

typedef struct {
  int T;
  double *t;
  double *test_loss, *test_acc;
  double *train_loss, *train_acc; /* NULL unless requested */
  double *seg_len;                /* T-1: ||theta(t_i+1) - theta(t_i)|| */
  double *robust_loss, *robust_acc; /* PGD test metrics; NULL unless opts.adv */
  double mid_loss, mid_acc;       /* at t = 1/2 exactly */
} mc_path_result;

typedef struct {
  double min, max, mean, avg; /* avg: arc-length-weighted (trapezoid) */
} mc_summary;

typedef struct {
  mc_summary loss, acc;
  double loss_barrier;  /* max_t L - (L_A + L_B)/2 */
  double acc_barrier;   /* (Acc_A + Acc_B)/2 - min_t Acc */
  double mid_barrier;   /* L(1/2) - (L_A + L_B)/2 */
  double length;        /* sum of segment lengths */
  /* robust (PGD) metrics, when the result has them (SPEC section 4) */
  int robust;
  mc_summary rloss, racc;
  double rloss_barrier;  /* max_t L_rob - (L_rob(A) + L_rob(B))/2 */
  double racc_barrier;   /* (Acc_rob(A) + Acc_rob(B))/2 - min_t Acc_rob */
  int i_rmax, i_rmin;    /* points of the highest and lowest robust accuracy */
  int n_better;          /* points more robust AND more accurate than both endpoints */
} mc_path_metrics;

typedef struct {
  int64_t bn_samples;   /* training images for the BN recompute (0 = all) */
  int64_t test_samples; /* 0 = all */
  int with_train;       /* also evaluate on the training set */
  int bn_recompute;     /* 0: interpolate running stats linearly instead */
  int64_t batch;
  const mc_sink *sink;  /* progress after every point ("path", "plane"); NULL: silent */
  /* robust evaluation (attack.h): NULL = clean only.  With bn_adv, BN is
   * recomputed on PGD examples of the training images generated at the
   * point (as the official eval_adversarial_curve.py), else on the clean
   * images; then clean and PGD test metrics with those statistics. */
  const mc_pgd *adv;
  int bn_adv;
  int repair;           /* mc_repair_mode (eval/repair.h); MC_REPAIR_REPAIR: REPAIR at every point */
} mc_path_opts;

/* One point of a path, a plane or anything else: with o->bn_recompute,
 * state receives BN statistics recomputed at theta over o->bn_samples
 * training images (exact average, train-mode passes; on their PGD examples
 * when o->adv and o->bn_adv); else state is used as given.  Then test
 * metrics (all of d->test unless o->test_samples), when train is not NULL
 * training-set metrics, and when o->adv and robust is not NULL the PGD test
 * metrics.  Paths, planes and MPI ranks are loops over this. */
mc_status mc_point_eval(mc_exec *e, const float *theta, float *state, const mc_data *d, const mc_path_opts *o,
                        mc_metrics *test, mc_metrics *train, mc_metrics *robust);

/* state_a/state_b: endpoint running statistics (used when !bn_recompute). */
mc_status mc_path_eval(const mc_model *m, const mc_curve *c, const float *state_a, const float *state_b,
                       const mc_data *d, int T, const mc_path_opts *o, mc_backend be, mc_path_result *out);
void mc_path_result_free(mc_path_result *r);
void mc_path_metrics_compute(const mc_path_result *r, mc_path_metrics *pm);
/* Prints the table and every metric with its definition. */
void mc_path_print(FILE *f, const char *title, const mc_path_result *r, const mc_path_metrics *pm);
json_t *mc_path_json(const mc_path_result *r, const mc_path_metrics *pm);
mc_status mc_path_csv(const char *path, const mc_path_result *r);

typedef struct {
  int G;
  double *a, *b;          /* grid coordinates (G each) in units of x and y_perp */
  double *loss, *acc;     /* G*G, row-major [j*G + i] at (a[i], b[j]) */
  double *rloss, *racc;   /* the same for PGD test metrics; NULL unless opts.adv */
  double xnorm, ynorm;    /* ||x||, ||y_perp|| */
  double p2a;             /* theta2 = theta0 + p2a*x + 1*y_perp */
} mc_plane_result;

/* theta(a,b) = t0 + a x + b y_perp, x = t1 - t0, y = t2 - t0 (Gram-Schmidt). */
mc_status mc_plane_eval(const mc_model *m, const float *t0, const float *t1, const float *t2, const mc_data *d,
                        int G, const double range[4], const mc_path_opts *o, mc_backend be,
                        mc_plane_result *out);
void mc_plane_result_free(mc_plane_result *r);
/* Coordinates (in units of x and y_perp) of an arbitrary theta in the plane. */
void mc_plane_project(const float *t0, const float *t1, const float *t2, size_t n, const float *theta,
                      double *a, double *b);
json_t *mc_plane_json(const mc_plane_result *r);

#endif
