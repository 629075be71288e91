/* SGD (PyTorch semantics), learning-rate schedules and the training loop
 * over one flat parameter vector. */
#ifndef MC_TRAIN_H
#define MC_TRAIN_H

#include "data/data.h"
#include "modeconn.h"

typedef enum {
  MC_SCHED_CONST = 0,
  MC_SCHED_STEP,    /* lr * gamma^floor(e / step) */
  MC_SCHED_COSINE,  /* lr * (1 + cos(pi e / E)) / 2 */
  MC_SCHED_PAPER,   /* lr * 0.5^floor(e/20) * 0.9996^e (Tatro et al.) */
  MC_SCHED_GARIPOV  /* x1 to 50%, linear to x0.01 at 90%, then x0.01 */
} mc_sched_kind;

typedef struct {
  mc_sched_kind kind;
  double lr;
  int64_t epochs;
  int64_t step;  /* MC_SCHED_STEP */
  double gamma;  /* MC_SCHED_STEP */
} mc_schedule;

/* "const", "step[:STEP[:GAMMA]]", "cosine", "paper", "garipov" */
mc_status mc_schedule_parse(const char *s, mc_schedule *out);
const char *mc_schedule_name(mc_sched_kind k);
double mc_schedule_lr(const mc_schedule *s, int64_t epoch); /* 0-based */

/* One SGD step exactly as torch.optim.SGD (dampening 0):
 * d = g + wd*p; buf = mom*buf + d; d = nesterov ? d + mom*buf : buf;
 * p -= lr*d.  buf starts at zero (identical to PyTorch's first step). */
void mc_sgd_step(float *p, float *buf, const float *g, size_t n, double lr,
                 double mom, double wd, int nesterov);

typedef struct {
  int64_t epochs, batch;
  double momentum, wd;
  int nesterov;
  mc_schedule sched;
  uint64_t seed;
  mc_augment aug;
  const char *out;      /* checkpoint path (NULL: none) */
  const char *log_path; /* JSON-lines log (NULL: none) */
  const char *resume;   /* checkpoint to continue from (NULL: fresh) */
  const char *data_name;
  int eval_every;       /* test evaluation every k epochs (last always) */
} mc_train_cfg;

/* Trains theta/state in place.  Writes OUT (model) and OUT.train (optimizer
 * state: momentum, epoch) atomically after every epoch, so an interrupted
 * run resumes to exactly the uninterrupted result.  A non-finite loss stops
 * with MC_ENAN and leaves the last good checkpoint intact. */
mc_status mc_train(const mc_train_cfg *cfg, mc_model *m, float *theta,
                   float *state, const mc_data *d, mc_backend be);

/* Per-epoch random stream: a pure function of (seed, epoch, stream), so
 * resuming at any epoch boundary replays the same numbers. */
void mc_epoch_rng(mc_rng *r, uint64_t seed, int64_t epoch, uint64_t stream);

/* One epoch's minibatches: shuffled order and augmentation stream, a pure
 * function of (seed, epoch) so that resume and reruns replay them exactly.
 * `extra` is a further per-epoch stream for the caller (e.g. curve t). */
typedef struct {
  mc_rng aug, extra;
  int64_t *order; /* n entries, caller-owned */
  int64_t n, batch, steps;
} mc_epoch_plan;

void mc_epoch_plan_begin(mc_epoch_plan *p, int64_t *order, int64_t n, int64_t batch, uint64_t seed, int64_t epoch,
                         mc_exec *e);
/* Fills step s's batch; returns its size (the last one may be smaller). */
int64_t mc_epoch_plan_batch(mc_epoch_plan *p, const mc_dataset *d, int64_t s, const mc_augment *aug, float *x,
                            int32_t *y);

/* Progress bar on stderr when it is a terminal. */
void mc_progress(const char *what, int64_t done, int64_t total, double t0);

#endif
