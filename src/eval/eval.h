/* Evaluating a parameter vector on a dataset: loss/accuracy passes and the
 * BN running-statistics recompute that every point of a path needs. */
#ifndef MC_EVAL_H
#define MC_EVAL_H

#include "data/data.h"
#include "modeconn.h"

typedef struct {
  double loss;     /* mean cross-entropy */
  double accuracy; /* fraction in [0,1] */
  int64_t n;
} mc_metrics;

/* Mean CE and accuracy of the first n examples of ds (n <= 0: all), BN in
 * eval mode.  Data are read in batches of exec's batch size and run through
 * the network in slices of mc_eval_slice(batch) rows: in eval mode every
 * sample is independent, so the result does not depend on the slicing, and
 * a slice's activations stay in cache where a batch of 1000 does not. */
mc_status mc_evaluate(mc_exec *e, const float *theta, float *state,
                      const mc_dataset *ds, int64_t n, mc_metrics *out);

/* Resets BN running statistics and recomputes them as the exact average
 * over one pass (train mode, no augmentation) over the first n examples of
 * ds (n <= 0: all).  No-op for models without BN. */
mc_status mc_bn_recompute(mc_exec *e, const float *theta, float *state,
                          const mc_dataset *ds, int64_t n);

int mc_model_has_bn(const mc_model *m);

/* Rows per forward call for eval-mode passes over a batch of `batch` rows:
 * MC_EVAL_SLICE_PER_THREAD rows per thread, at most `batch`. */
#define MC_EVAL_SLICE_PER_THREAD 64
int64_t mc_eval_slice(int64_t batch);

#endif
