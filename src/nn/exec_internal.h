/* The executor's private state, shared by the reference path (exec.c) and
 * the oneDNN fast path (exec_dnnl.c). */
#ifndef MC_NN_EXEC_INTERNAL_H
#define MC_NN_EXEC_INTERNAL_H

#include "modeconn.h"

struct mc_exec {
  const mc_model *m;
  int64_t batch;  /* capacity */
  int64_t n;      /* rows in the last forward */
  mc_backend be;
  mc_mode mode;   /* mode of the last forward */
  mc_rng rng;     /* dropout */
  int64_t bn_count; /* batches since mc_exec_bn_reset (BN_RECOMPUTE) */
  /* reference path buffers, per node, plain NCHW */
  float **act, **dact;
  float **bn_mean, **bn_invstd; /* saved statistics, C floats per BN node */
  int32_t **argmax;             /* maxpool */
  float **mask;                 /* dropout */
  float *col, *dwscratch;       /* conv scratch, per thread */
  size_t col_floats, dw_floats;
  int scratch_threads;          /* threads the conv scratch is sized for */
  float *logits;                /* output, (batch, classes) */
  float *scratch;               /* unwanted concat input gradients */
  size_t scratch_floats;
  void *dnnl;                   /* fast-path private state */
  struct mc_exec **workers;     /* mc_exec_parallel: one single-threaded copy per thread */
  int n_workers;
};

/* Fast path hooks (exec_dnnl.c). */
mc_status dnnl_exec_init(mc_exec *e);
void dnnl_exec_free(mc_exec *e);
void dnnl_exec_forward(mc_exec *e, const float *theta, float *state,
                       const float *x, int64_t n, mc_mode mode);
void dnnl_exec_backward(mc_exec *e, const float *theta, const float *dlogits,
                        float *grad, float *dx);
void dnnl_exec_read(mc_exec *e, int node, float *out);
int dnnl_exec_view(mc_exec *e, int node, mc_act_view *v);

/* BN running-statistics momentum for the given mode and batch count. */
static inline float exec_bn_momentum(const mc_exec *e, const mc_node *nd,
                                     mc_mode mode) {
  return mode == MC_MODE_BN_RECOMPUTE ? 1.f / (float)(e->bn_count + 1)
                                      : nd->momentum;
}

#endif
