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
 * the executor's per-node buffers stay small (resnet20 at 1000 rows would
 * hold 2 GB of activations; at 125 rows, 0.3 GB). */
mc_status mc_evaluate(mc_exec *e, const float *theta, float *state,
                      const mc_dataset *ds, int64_t n, mc_metrics *out);

/* Resets BN running statistics and recomputes them as the exact average
 * over one pass (train mode, no augmentation) over the first n examples of
 * ds (n <= 0: all).  No-op for models without BN. */
mc_status mc_bn_recompute(mc_exec *e, const float *theta, float *state,
                          const mc_dataset *ds, int64_t n);

int mc_model_has_bn(const mc_model *m);
/* MC_ESHAPE unless ds's images have m's input shape and at most its classes. */
mc_status mc_check_data_shape(const mc_model *m, const mc_dataset *ds);

/* The first n examples of a dataset in dataset order (no augmentation), in
 * batches of at most `batch` rows: the loop under every evaluation pass.
 *   mc_batches b;
 *   mc_batches_init(&b, ds, n, batch);
 *   for (int64_t k; (k = mc_batches_next(&b)) > 0;) use b.x, b.y (k rows)
 *   mc_batches_free(&b);                                                  */
typedef struct {
  const mc_dataset *ds;
  int64_t n, batch, start; /* start: index of the current batch's first row */
  float *x;
  int32_t *y;
  int64_t *idx;
} mc_batches;
void mc_batches_init(mc_batches *b, const mc_dataset *ds, int64_t n, int64_t batch);
int64_t mc_batches_next(mc_batches *b);
void mc_batches_free(mc_batches *b);

/* Rows per forward call for eval-mode passes over a batch of `batch` rows:
 * `batch` cut into equal slices of at most MC_EVAL_SLICE_PER_THREAD rows per
 * thread (at 2 threads: 1000 -> 125, 500 -> 125, 128 -> 128). */
#define MC_EVAL_SLICE_PER_THREAD 64
int64_t mc_eval_slice(int64_t batch);

#endif
