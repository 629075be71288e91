/* REPAIR (Jordan et al., ICLR 2023; SPEC section 6b) and the choice
 * between it, BN reset and nothing at a point of a path or plane.
 *
 * REPAIR corrects an interpolated network so that every channel of every
 * REPAIR layer's pre-activation has the mean and std of the same
 * interpolation of the reference models' statistics, and folds the
 * per-channel affine correction into that layer's weight and bias: the
 * result is a plain parameter vector (eval, checkpoints and every other
 * command accept it).
 *
 * REPAIR layers: every conv/linear node computed in eval mode whose output
 * no BN consumes and that is not an output head (the logits stay as they
 * are). Such a layer must have a bias (the shift of the correction is
 * folded into it): a REPAIR layer without one is an error naming it. Conv
 * outputs normalised by a BN are left to the BN reset (REPAIR's optional
 * wrapping of those is not done).
 *
 * Statistics: per channel, over the images and (for conv maps) every
 * spatial position, population mean and std, summed in double, the model
 * in eval mode. Layers are corrected one after another in topological
 * order, each measured on the network with every earlier layer already
 * corrected, so after the correction every layer's statistics equal the
 * targets exactly (up to rounding) on the same images; with BN in the
 * model its running statistics are recomputed before each layer's pass
 * and once more at the end. */
#ifndef MC_REPAIR_H
#define MC_REPAIR_H

#include "data/data.h"
#include "eval/path.h"
#include "modeconn.h"

typedef enum {
  MC_REPAIR_NONE = 0, /* theta as it is; BN running statistics interpolated (or as given) */
  MC_REPAIR_RESET,    /* BN running statistics recomputed at the point (SPEC section 2) */
  MC_REPAIR_REPAIR    /* BN reset, then REPAIR of the REPAIR layers */
} mc_repair_mode;

/* "none", "reset", "repair"; anything else is MC_EARG naming the value. */
mc_status mc_repair_parse(const char *s, mc_repair_mode *mode);
const char *mc_repair_name(mc_repair_mode mode);
/* reset for models with BN, none for the rest. */
mc_repair_mode mc_repair_default(const mc_model *m);

/* The REPAIR layers of m (node indices in topological order, *n of them;
 * nodes may be NULL to count). MC_ESHAPE naming the node when one has no
 * bias. */
mc_status mc_repair_layers(const mc_model *m, int *nodes, int *n);

/* Per-channel mean and std of the outputs of nodes[0..nl) at theta in eval
 * mode over the first n images of ds (n <= 0: all); channel c of layer l
 * at mean[off_l + c], off_l = sum of the earlier layers' channel counts.
 * Runs on every thread (mc_exec_parallel, like mc_evaluate). */
mc_status mc_channel_stats(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                           const int *nodes, int nl, double *mean, double *std);

#define MC_REPAIR_MAX_REFS 3

/* The reference statistics of a REPAIR evaluation: the layers, the
 * statistics of up to three reference models (the endpoints of a path,
 * the three models of a plane), the current weights of the target
 * combination, and work space. */
typedef struct {
  int n_layers;
  int *nodes;
  int64_t *off;     /* n_layers + 1 channel offsets */
  int n_refs;
  double *mean[MC_REPAIR_MAX_REFS], *std[MC_REPAIR_MAX_REFS];
  double w[MC_REPAIR_MAX_REFS]; /* target = sum_k w[k] * stat_k */
  int64_t samples;  /* training images the statistics are measured on (0 = all) */
  double *scale, *shift; /* the last correction: y' = scale*y + shift per channel */
  float *theta;     /* the corrected theta of the last mc_repair_point */
  float *state;     /* work: BN state of a reference model */
} mc_repair;

/* Measures the statistics of the reference models theta[k] (state[k] its
 * BN running statistics; NULL: recomputed over the same images first) on
 * the first `samples` images of ds. Weights start at (1, 0, 0). */
mc_status mc_repair_init(mc_repair *r, mc_exec *e, int n_refs, const float *const *theta, const float *const *state,
                         const mc_dataset *ds, int64_t samples);
void mc_repair_free(mc_repair *r);
/* Target weights of a path point: (1 - t, t). */
void mc_repair_set_t(mc_repair *r, double t);
/* Target weights of a plane point given as affine coordinates (w0, w1, w2). */
void mc_repair_set_weights(mc_repair *r, const double *w);

/* Corrects theta in place for the current weights: state receives the BN
 * statistics recomputed at the corrected point (when the model has BN);
 * r->scale and r->shift the per-channel corrections folded in. Images: the
 * first r->samples of ds. A channel with zero std (constant over the
 * images) is only shifted. */
mc_status mc_repair_apply(mc_repair *r, mc_exec *e, float *theta, float *state, const mc_dataset *ds);
/* The same on a copy: r->theta = corrected theta (valid until the next
 * call), theta untouched. */
mc_status mc_repair_point(mc_repair *r, mc_exec *e, const float *theta, float *state, const mc_dataset *ds);

/* The step of a path or plane loop: NULL into *out unless o->repair is
 * MC_REPAIR_REPAIR, else a REPAIR reference over the models theta[0..n)
 * (state[k] may be NULL) on o->bn_samples training images of d. */
mc_status mc_repair_begin(mc_repair **out, mc_exec *e, const mc_path_opts *o, int n_refs, const float *const *theta,
                          const float *const *state, const mc_data *d);
void mc_repair_end(mc_repair *r); /* frees; NULL is fine */
/* mc_point_eval of the point theta, REPAIRed first for r's current
 * weights when r is not NULL (the BN recompute is then part of REPAIR, on
 * clean images even with o->adv: REPAIR's statistics are clean ones). */
mc_status mc_repair_point_eval(mc_repair *r, mc_exec *e, const float *theta, float *state, const mc_data *d,
                               const mc_path_opts *o, mc_metrics *test, mc_metrics *train, mc_metrics *robust);

/* The model at t of path c (state_a/state_b: endpoint BN statistics) as a
 * path evaluation with o sees it: none: theta(t) with interpolated BN
 * statistics; reset: BN recomputed; repair: REPAIRed (what --save-point
 * writes). theta, state: room for m's vectors. */
mc_status mc_path_point_model(const mc_model *m, const mc_curve *c, const float *state_a, const float *state_b,
                              double t, const mc_data *d, const mc_path_opts *o, mc_backend be, float *theta,
                              float *state);

#endif
