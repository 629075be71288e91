/* The executor's backend interface.
 *
 * An executor (struct mc_exec) is the generic part -- the model, the batch
 * capacity, the mode of the last forward, which nodes are live for it, the
 * output heads and their gradient buffers, the worker copies of
 * mc_exec_parallel -- plus one backend's private state (impl).  A backend
 * is a table of functions (mc_backend_ops); exec.c dispatches to it and
 * does everything that is the same for every backend.  The table of all
 * backends is in backend.c: adding one (CUDA later) is a new directory
 * src/nn/<name>/ with its ops table and one entry there.
 *
 * Contract for a backend:
 * - init builds whatever the model needs for e->batch rows and reports an
 *   unsupported model or machine as a status (never aborts); free undoes
 *   it (also after a failed init).
 * - forward computes the nodes with e->live[i] set (mode e->mode, e->n
 *   rows) and writes each head k with e->head_run[k] into e->out[k]
 *   (plain (n, classes)).  e->mode is EVAL, TRAIN or BN_RECOMPUTE:
 *   exec.c passes MC_MODE_EVAL_ALL_HEADS on as EVAL with e->all_heads set
 *   (then e->live = live_train and every head runs; BN_RECOMPUTE also
 *   runs every head, e->all_heads set).  BN running statistics follow exec_bn_momentum.
 * - backward seeds head k's node with dout[k] (may be NULL: nothing), and
 *   accumulates into grad (NULL: no weight gradients at all) and dx (NULL:
 *   no input gradient); it is only called with at least one of them.
 * - read copies a node's output to plain NCHW; view returns 0 and fills v
 *   when the output can be read in place, nonzero otherwise (exec.c then
 *   falls back to read).
 * - score says how well the backend suits a model for --backend auto (0:
 *   cannot run it); parallel may be NULL (exec.c gives each thread its own
 *   single-threaded copy).
 * - info appends a line on what it runs (ISA, kernels) for --version. */
#ifndef MC_NN_BACKEND_H
#define MC_NN_BACKEND_H

#include "modeconn.h"

#include <stdio.h>

typedef struct mc_backend_ops {
  const char *name;
  const char *alias; /* a second accepted spelling, or NULL */
  int (*score)(const mc_model *m);
  mc_status (*init)(mc_exec *e);
  void (*free)(mc_exec *e);
  mc_status (*forward)(mc_exec *e, const float *theta, float *state, const float *x);
  mc_status (*backward)(mc_exec *e, const float *theta, const float *const *dout, float *grad,
                        float *dx);
  mc_status (*read)(mc_exec *e, int node, float *out);
  int (*view)(mc_exec *e, int node, mc_act_view *v);
  void (*info)(FILE *f);
} mc_backend_ops;

/* The table (backend.c), NULL-terminated; mc_backend values index it. */
extern const mc_backend_ops *const mc_backend_table[];

struct mc_exec {
  const mc_model *m;
  const mc_backend_ops *ops;
  mc_backend be;
  int64_t batch;      /* capacity */
  int64_t n;          /* rows in the last forward */
  mc_mode mode;       /* mode of the last forward (never EVAL_ALL_HEADS) */
  int all_heads;      /* the last forward computed the train-only heads */
  mc_rng rng;         /* dropout */
  int64_t bn_count;   /* batches since mc_exec_bn_reset (BN_RECOMPUTE) */
  /* liveness: nodes a forward in that mode must compute (the heads it
   * runs and everything they read) */
  char *live_train, *live_eval;
  const char *live;   /* one of the two, for the last forward */
  char *head_run;     /* per head: computed by the last forward */
  float **out;        /* per head, (batch, classes) plain */
  float **dout;       /* per head, written by mc_exec_loss */
  void *impl;         /* the backend's private state */
  struct mc_exec **workers; /* mc_exec_parallel: one single-threaded copy per thread */
  int n_workers;
};

/* BN running-statistics momentum for the given mode and batch count. */
static inline float exec_bn_momentum(const mc_exec *e, const mc_node *nd, mc_mode mode) {
  return mode == MC_MODE_BN_RECOMPUTE ? 1.f / (float)(e->bn_count + 1) : nd->momentum;
}

/* Head of node i, or -1 when it is not a head. */
int exec_head_of(const mc_exec *e, int node);

/* Input gradient needed for node s only when the caller asked for dx: the
 * input and normalize nodes lie before every parameter. */
static inline int exec_dx_only(const mc_model *m, int s) {
  const mc_node_kind k = m->nodes[s].kind;
  return k == MC_NODE_INPUT || k == MC_NODE_NORMALIZE;
}

#endif
