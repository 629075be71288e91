/* Evaluating a parameter vector on a dataset: loss/accuracy passes and the
 * BN running-statistics recompute that every point of a path needs. */
#ifndef MC_EVAL_H
#define MC_EVAL_H

#include "data/data.h"
#include "eval/attack.h"
#include "modeconn.h"

typedef struct mc_metrics {
  double loss;     /* mean cross-entropy */
  double accuracy; /* fraction in [0,1] */
  int64_t n;
} mc_metrics;

/* Mean CE and accuracy of the first n examples of ds (n <= 0: all), BN in
 * eval mode.  Every thread runs its own share of slices of
 * mc_eval_rows(exec) rows through its own single-threaded copy of the
 * executor (mc_exec_parallel): in eval mode every sample is independent,
 * so the result does not depend on the slicing (the per-slice sums are
 * added in slice order: the same for any thread count), and per-node
 * buffers stay small (resnet20 at 1000 rows would hold 2 GB of
 * activations; 2 threads x 16 rows, 0.05 GB). */
mc_status mc_evaluate(mc_exec *e, const float *theta, float *state,
                      const mc_dataset *ds, int64_t n, mc_metrics *out);
/* The same pass, also copying every example's logits into `logits`
 * (n x classes floats, row i = example i; NULL: none). */
mc_status mc_evaluate_logits(mc_exec *e, const float *theta, float *state,
                             const mc_dataset *ds, int64_t n, mc_metrics *out,
                             float *logits);

/* The same pass on PGD examples of the images (p: attack.h): BN in eval
 * mode both for the attack and for the evaluation; row i's random start
 * keyed by its index in ds (salt MC_PGD_SALT_TEST).  xadv (may be NULL)
 * receives the n PGD examples (n x C x H x W, dataset order). */
mc_status mc_evaluate_pgd(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                          const mc_pgd *p, mc_metrics *out, float *xadv);
/* Resets BN running statistics and recomputes them as the exact average
 * over one pass (train mode, no augmentation) over the first n examples of
 * ds (n <= 0: all).  No-op for models without BN. */
mc_status mc_bn_recompute(mc_exec *e, const float *theta, float *state,
                          const mc_dataset *ds, int64_t n);

/* The same recompute over PGD examples of the images, generated at theta
 * with BN in train mode (batch statistics), as the official code's
 * update_bn on its AttackPGD wrapper.  The running statistics are the exact
 * average over the forwards of the PGD examples; the official code's
 * attack steps also fold their own forwards into the running average by
 * momentum, a side effect this does not reproduce.  p = NULL: the clean
 * recompute above. */
mc_status mc_bn_recompute_pgd(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                              const mc_pgd *p);
int mc_model_has_bn(const mc_model *m);
/* MC_ESHAPE unless ds's images have m's input shape and at most its classes. */
mc_status mc_check_data_shape(const mc_model *m, const mc_dataset *ds);

/* The first n examples of a dataset in dataset order (no augmentation), in
 * batches of at most `batch` rows: the loop under every evaluation pass.
 *   mc_batches b;
 *   if ((st = mc_batches_init(&b, ds, n, batch))) return st;
 *   for (int64_t k; (k = mc_batches_next(&b)) > 0;) use b.x, b.y (k rows)
 *   mc_batches_free(&b);
 * mc_batches_init fails only with MC_ENOMEM (naming the batch's bytes),
 * holding nothing (b zeroed: mc_batches_free on it is harmless). */
typedef struct {
  const mc_dataset *ds;
  int64_t n, batch, step, start; /* start: index of the current batch's first row */
  float *x;
  int32_t *y;
  int64_t *idx;
} mc_batches;
mc_status mc_batches_init(mc_batches *b, const mc_dataset *ds, int64_t n, int64_t batch);
/* Only batches part, part + parts, part + 2 parts, ... (one thread's share). */
mc_status mc_batches_init_part(mc_batches *b, const mc_dataset *ds, int64_t n, int64_t batch, int part, int parts);
int64_t mc_batches_next(mc_batches *b);
void mc_batches_free(mc_batches *b);

/* Rows per forward call of a thread in eval-mode passes: the executor's
 * batch, at most MC_EVAL_ROWS_SMALL (16) when the model's parameters are
 * at most MC_EVAL_WEIGHTS_PER_ACT (64) times its largest activation of
 * one example, else at most MC_EVAL_ROWS (64).  Every slice reads all the
 * weights again, and its activations stay in the core's caches only while
 * they are small: against 64 rows, 16 rows took 0.93x the time of a PGD
 * evaluation of tinyten, 0.97x of resnet20, 0.89x of a googlenet eval and
 * 1.09x of a vgg16-bn eval (the one above the ratio; Zen 4, 2 threads,
 * 2026-12-04, bench/results-2026-12-04.md). */
#define MC_EVAL_ROWS 64
#define MC_EVAL_ROWS_SMALL 16
#define MC_EVAL_WEIGHTS_PER_ACT 64
int64_t mc_eval_rows(const mc_exec *e);

#endif
