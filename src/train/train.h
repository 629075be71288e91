/* SGD (PyTorch semantics), learning-rate schedules and the training loop
 * over one flat parameter vector. */
#ifndef MC_TRAIN_H
#define MC_TRAIN_H

#include "core/sink.h"
#include "data/data.h"
#include "eval/attack.h"
#include "eval/eval.h"
#include "io/safetensors.h"
#include "modeconn.h"

#include <stdio.h>

typedef enum {
  MC_SCHED_CONST = 0,
  MC_SCHED_STEP,    /* lr * gamma^floor(e / step) */
  MC_SCHED_COSINE,  /* lr * (1 + cos(pi e / E)) / 2 */
  MC_SCHED_PAPER,   /* lr * 0.5^floor(e/20) * 0.9996^e (Tatro et al.) */
  MC_SCHED_GARIPOV, /* x1 to 50%, linear to x0.01 at 90%, then x0.01 */
  MC_SCHED_ROBUST   /* the same curve under the name of the official robust
                       runs (training/train_model_adversarial.py) */
} mc_sched_kind;

typedef struct {
  mc_sched_kind kind;
  double lr;
  int64_t epochs;
  int64_t step;  /* MC_SCHED_STEP */
  double gamma;  /* MC_SCHED_STEP */
} mc_schedule;

/* "const", "step[:STEP[:GAMMA]]", "cosine", "paper", "garipov", "robust" */
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
  /* adversarial training (Madry): NULL = clean.  Every batch is replaced by
   * its PGD examples, generated with BN in train mode against the current
   * theta (the attack's forwards update BN running statistics by momentum,
   * as the official code's do); the loss is CE on them alone.  Random
   * starts keyed by (epoch, dataset index). */
  const mc_pgd *adv;
  const mc_sink *sink;  /* epoch lines, progress ("train"), the resume notice; NULL: silent */
} mc_train_cfg;

/* Trains theta/state in place.  After every epoch writes OUT.train (the
 * resume state: model and momentum, epoch, run id) and then OUT (model)
 * atomically, so an interrupted run -- even one killed between the two
 * writes -- resumes to exactly the uninterrupted result.  A non-finite loss
 * stops with MC_ENAN and leaves the last good checkpoint intact. */
mc_status mc_train(const mc_train_cfg *cfg, mc_model *m, float *theta,
                   float *state, const mc_data *d, mc_backend be);

/* The checkpoint pair of a resumable run (src/train/resume.c), shared by
 * `train` and `curve train`.  OUT.train holds the whole resume state (the
 * parameters and the momenta), OUT the result a user reads; both carry
 * the run id (modeconn.run: a hash of what must not change across a
 * resume) and the generation, the number of completed epochs
 * (modeconn.epoch in OUT.train, modeconn.epochs in OUT).  OUT.train is
 * written first, each file atomically, so after a crash OUT.train is at
 * OUT's epoch or later, and the newest consistent state is OUT.train. */
mc_status mc_resume_path(const char *out, char **path); /* *path: malloc'd OUT + ".train" */
/* FNV-1a over n bytes, continuing from h (0: start) */
uint64_t mc_run_hash(uint64_t h, const void *p, size_t n);
void mc_run_id_str(uint64_t h, char out[24]);
/* Writes OUT.train (tparts) then OUT (parts), both with kv plus the
 * generation and run id. */
mc_status mc_resume_save(const char *out, const mc_model *m, const mc_ckpt_part *tparts, int ntparts,
                         const mc_ckpt_part *parts, int nparts, const mc_kv *kv, int nkv, int64_t epoch,
                         const char *run);
/* Opens the pair of checkpoint ckpt for a resume: both from run `want`
 * (else an error naming what must match: `what`), OUT.train not older than
 * ckpt.  On success *g is OUT.train (the caller frees it), *epoch its
 * generation, *behind whether ckpt lags behind it (then rewrite ckpt
 * before continuing: no epoch may be left to run that would; sink is told). */
mc_status mc_resume_open(const char *ckpt, const char *want, const char *what, mc_st_file *g, int64_t *epoch,
                         int *behind, const mc_sink *sink);

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

/* The epoch loop under mc_train and mc_curve_train: the epoch's plan, each
 * minibatch loaded (augmented) into x, y and handed to step(), progress
 * to sink (every 16 steps and the last), and the loss and accuracy averaged over the samples seen. step()
 * does the rest (forward, loss, backward, update) and returns the batch's
 * mean loss and hits; an error from it ends the epoch. */
typedef struct {
  const char *what; /* progress label */
  mc_exec *e;       /* its dropout seed follows the epoch */
  const mc_dataset *tr;
  const mc_augment *aug;
  int64_t batch;
  uint64_t seed;
  int64_t *order;   /* caller's buffers: tr->n entries, batch rows */
  float *x;
  int32_t *y;
  const mc_sink *sink; /* NULL: silent */
} mc_epoch_loop;

typedef struct {
  mc_epoch_plan *plan; /* plan->extra: the epoch's spare random stream */
  int64_t epoch, step, k;
  double lr;
  const float *x;
  const int32_t *y;
} mc_batch_ctx;

/* The inputs a training step runs on: b->x itself (adv = NULL), or its PGD
 * examples against theta written to xadv (BN in train mode, state updated
 * as every train-mode forward does; random starts keyed by the epoch and
 * the rows' dataset indices).  dx: scratch; both b->k rows. */
mc_status mc_batch_adv(const mc_pgd *adv, mc_exec *e, const float *theta, float *state, const mc_batch_ctx *b,
                       float *xadv, float *dx, const float **x);
typedef mc_status (*mc_batch_fn)(void *arg, const mc_batch_ctx *b, double *loss, int64_t *hits);

typedef struct {
  double loss, accuracy, seconds;
  int64_t seen;
} mc_epoch_stats;

mc_status mc_run_epoch(const mc_epoch_loop *L, int64_t epoch, double lr, mc_batch_fn step, void *arg,
                       mc_epoch_stats *out);

/* A JSON-lines log with one record per completed epoch.  The file is
 * created (or, for a fresh run, truncated) only when the first record is
 * written, every record is flushed and a failed write is an error naming
 * the file.  Resuming at epoch `start` first drops the records of later
 * epochs (written before a crash cut the run short) and torn last lines,
 * so every epoch appears exactly once across interruptions. */
typedef struct {
  const char *path; /* NULL: no log */
  FILE *f;
  int append;
} mc_log;
mc_status mc_log_begin(mc_log *L, const char *path, int64_t start);
mc_status mc_log_end(mc_log *L);
typedef struct {
  const char *label, *key; /* "t=0.5 test", "mid_test" */
  mc_metrics m;            /* loss NAN: not evaluated this epoch */
} mc_named_metrics;
/* The epoch's line (MC_MSG_INFO to sink) and JSON-lines record in log (if
 * any): the training figures, and each of tests evaluated (finite loss)
 * under its label / "<key>_loss", "<key>_accuracy". */
mc_status mc_epoch_report(const mc_sink *sink, mc_log *log, const char *label, int64_t epoch, int64_t epochs,
                          const char *train_label, const mc_epoch_stats *s, double lr, const mc_named_metrics *tests,
                          int n_tests);

#endif
