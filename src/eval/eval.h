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
 * eval mode.  exec's batch size sets the chunk size. */
mc_status mc_evaluate(mc_exec *e, const float *theta, float *state,
                      const mc_dataset *ds, int64_t n, mc_metrics *out);

/* Resets BN running statistics and recomputes them as the exact average
 * over one pass (train mode, no augmentation) over the first n examples of
 * ds (n <= 0: all).  No-op for models without BN. */
mc_status mc_bn_recompute(mc_exec *e, const float *theta, float *state,
                          const mc_dataset *ds, int64_t n);

int mc_model_has_bn(const mc_model *m);

#endif
