/* Curves between two parameter vectors: linear, Bezier (degree k+1 with k
 * trainable control points; k = 1 is the paper's quadratic) and polygonal
 * chains with k bends.  Everything is flat-vector arithmetic over theta. */
#ifndef MC_CURVE_H
#define MC_CURVE_H

#include "data/data.h"
#include "modeconn.h"
#include "train/train.h"
#include "io/safetensors.h"

typedef enum { MC_CURVE_LINEAR = 0, MC_CURVE_BEZIER, MC_CURVE_CHAIN } mc_curve_kind;

typedef struct {
  mc_curve_kind kind;
  int n_bends;     /* 0 for linear */
  size_t n;        /* length of every vector (model->n_theta) */
  const float *a, *b;
  float **bends;   /* n_bends vectors of n floats */
} mc_curve;

mc_status mc_curve_kind_parse(const char *s, mc_curve_kind *k);
const char *mc_curve_kind_name(mc_curve_kind k);

/* theta(t) = wa*a + wb*b + sum_k w[k]*bend_k. */
void mc_curve_coeffs(const mc_curve *c, double t, double *wa, double *wb, double *w);
void mc_curve_point(const mc_curve *c, double t, float *out);
/* gbends[k] += w_k(t) * g  (the chain rule through theta(t)) */
void mc_curve_adjoint(const mc_curve *c, double t, const float *g, float **gbends);
/* Allocates bends on the straight line: bend_k = a + (k/(K+1))(b - a).
 * MC_ENOMEM (c->bends NULL, nothing held) when they do not fit. */
mc_status mc_curve_init_bends(mc_curve *c);
void mc_curve_free_bends(mc_curve *c);

typedef struct {
  int64_t epochs, batch;
  double momentum, wd; /* wd: 1/2*wd*||theta(t)||^2 in the loss */
  int nesterov;
  mc_schedule sched;
  uint64_t seed;
  mc_augment aug;
  int eval_every; /* evaluate at t = 0.5 (BN recomputed) every k epochs */
  int64_t bn_samples, test_samples;
  const char *log_path;
  int log_append; /* append to log_path instead of truncating it (PAM's phases) */
  /* optional, after every SGD step of the bends (PAM's proximal pull) */
  void (*after_step)(void *arg, mc_curve *c, double lr);
  void *after_arg;
  /* robust curve training: NULL = clean.  Per batch, PGD examples against
   * theta(t) (BN in train mode, as the official attack_curve.py), CE on them
   * + 1/2 wd ||theta(t)||^2.  The midpoint evaluation then recomputes BN on
   * PGD training examples and adds the robust test metrics. */
  const mc_pgd *adv;
  /* resume (curve train --resume): the first epoch to run and the bends'
   * momenta at its start (NULL: zero) */
  int64_t start;
  float *const *mom0;
  /* optional, after every epoch's report, with the number of completed
   * epochs and the bends' momenta (the checkpoint of curve train) */
  mc_status (*after_epoch)(void *arg, int64_t done, float *const *mom);
  void *epoch_arg;
  const mc_sink *sink; /* epoch lines, progress ("curve"); NULL: silent */
} mc_curve_train_cfg;

/* Trains the bends: per batch one t ~ U(0,1), CE at theta(t) (BN in train
 * mode) + 1/2 wd ||theta(t)||^2, gradient to the bends by the chain rule. */
mc_status mc_curve_train(const mc_curve_train_cfg *cfg, const mc_model *m,
                         mc_curve *c, const mc_data *d, mc_backend be);


/* A curve file: endpoints under "a." and "b." (theta + BN state), bends
 * under "bend1." ... (theta only), metadata modeconn.curve.kind,
 * modeconn.curve.bends, modeconn.curve.align and modeconn.curve.perm (JSON
 * list of per-group permutations applied to B). */
typedef struct {
  mc_model *m;
  mc_curve c;
  float *a, *b, *sa, *sb; /* owned */
  char align[32];
  char *perm_json;        /* owned, may be NULL */
} mc_curve_file;

mc_status mc_curve_save(const char *path, const mc_curve_file *cf, const mc_kv *extra, int nextra);
mc_status mc_curve_load(const char *path, mc_curve_file *cf);
void mc_curve_file_free(mc_curve_file *cf);

/* Curve training's checkpoint pair (see mc_resume_save): OUT is the curve
 * file, OUT.train the same plus the bends' momenta under "mom1." ... */
mc_status mc_curve_ckpt_save(const char *out, const mc_curve_file *cf, float *const *mom, const mc_kv *extra,
                             int nextra, int64_t epoch, const char *run);
/* Opens the pair of ckpt (mc_resume_open, telling sink) and loads the
 * curve and the momenta (*mom: n_bends malloc'd vectors, in a malloc'd
 * array) from ckpt.train. */
mc_status mc_curve_ckpt_resume(const char *ckpt, const char *want, const char *what, mc_curve_file *cf,
                               float ***mom, int64_t *epoch, int *behind, const mc_sink *sink);

#endif
