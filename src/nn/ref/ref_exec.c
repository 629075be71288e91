/* The reference backend: the plain NCHW ops of ops.h node by node, every
 * node's output kept (act[i], act[0] a copy of the input), gradients in
 * plain buffers.  It is the oracle the oneDNN backend is tested against
 * and the default for models without convolutions (OpenBLAS GEMMs). */
#include "nn/ref/ref.h"
#include "model/optab.h"
#include "nn/ops.h"
#include "nn/ref/ref_ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int64_t node_numel(const mc_node *nd) { return nd->C * nd->H * nd->W; }

static int ref_score(const mc_model *m) {
  (void)m;
  return 1; /* runs everything; oneDNN outbids it for convolutions */
}

static void ref_free(mc_exec *e) {
  ref_state *r = e->impl;
  if (!r) return;
  for (int i = 0; i < e->m->n_nodes; i++) { /* any table may be NULL after a failed init */
    if (r->act) free(r->act[i]);
    if (r->dact) free(r->dact[i]);
    if (r->bn_mean) free(r->bn_mean[i]);
    if (r->bn_invstd) free(r->bn_invstd[i]);
    if (r->argmax) free(r->argmax[i]);
    if (r->mask) free(r->mask[i]);
  }
  free(r->act);
  free(r->dact);
  free(r->bn_mean);
  free(r->bn_invstd);
  free(r->argmax);
  free(r->mask);
  free(r->col);
  free(r->dwscratch);
  free(r->scratch);
  free(r);
  e->impl = NULL;
}

/* A node's context for the op table's reference functions. */
static ref_ctx node_ctx(mc_exec *e, int i, const float *theta) {
  const mc_model *m = e->m;
  const mc_node *nd = &m->nodes[i];
  ref_state *r = e->impl;
  return (ref_ctx){.e = e, .r = r, .m = m, .i = i, .nd = nd, .in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL,
                   .N = e->n, .cnt = e->n * node_numel(nd), .theta = theta,
                   .xin = nd->n_in ? r->act[nd->in[0]] : NULL, .y = r->act[i]};
}

static mc_status ref_init(mc_exec *e) {
  const mc_model *m = e->m;
  const int64_t batch = e->batch;
  const int nn = m->n_nodes, nt = omp_get_max_threads();
  ref_state *r = mc_calloc_try(1, sizeof *r);
  if (!r) return mc_oom(sizeof *r, "the reference backend's state");
  e->impl = r;
  r->act = mc_calloc_try((size_t)nn, sizeof(float *));
  r->dact = mc_calloc_try((size_t)nn, sizeof(float *));
  r->bn_mean = mc_calloc_try((size_t)nn, sizeof(float *));
  r->bn_invstd = mc_calloc_try((size_t)nn, sizeof(float *));
  r->argmax = mc_calloc_try((size_t)nn, sizeof(int32_t *));
  r->mask = mc_calloc_try((size_t)nn, sizeof(float *));
  if (!r->act || !r->dact || !r->bn_mean || !r->bn_invstd || !r->argmax || !r->mask)
    return mc_oom(6 * sizeof(float *) * (size_t)nn, "the reference backend's per-node tables (%d nodes)", nn);
  mc_status st;
  for (int i = 0; i < nn; i++) {
    const mc_node *nd = &m->nodes[i];
    const mc_op_desc *d = mc_op_desc_of(nd->kind);
    const size_t cnt = (size_t)batch * (size_t)node_numel(nd);
    if ((st = ref_alloc(&r->act[i], cnt, sizeof(float), nd, "output"))) return st;
    ref_ctx c = node_ctx(e, i, NULL);
    if (d->ref_prepare && (st = d->ref_prepare(&c))) return st;
  }
  if ((st = ref_alloc(&r->col, r->col_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")) ||
      (st = ref_alloc(&r->dwscratch, r->dw_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")))
    return st;
  r->scratch_threads = nt;
  return MC_OK;
}

/* The conv scratch is per thread: grow it if the thread count went up
 * since the executor was made (mc_set_threads). */
static mc_status ensure_thread_scratch(ref_state *r) {
  int nt = omp_get_max_threads();
  if (nt <= r->scratch_threads) return MC_OK;
  free(r->col);
  free(r->dwscratch);
  r->col = r->dwscratch = NULL;
  r->scratch_threads = 0;
  mc_status st;
  if ((st = ref_alloc(&r->col, r->col_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")) ||
      (st = ref_alloc(&r->dwscratch, r->dw_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")))
    return st;
  r->scratch_threads = nt;
  return MC_OK;
}

static mc_status ref_forward(mc_exec *e, const float *theta, float *state, const float *x) {
  const mc_model *m = e->m;
  ref_state *r = e->impl;
  mc_status st = ensure_thread_scratch(r);
  if (st) return st;
  for (int i = 0; i < m->n_nodes; i++) {
    if (!e->live[i]) continue;
    ref_ctx c = node_ctx(e, i, theta);
    c.state = state;
    c.x = x;
    if ((st = mc_op_desc_of(m->nodes[i].kind)->ref_forward(&c))) return st;
  }
  for (int k = 0; k < m->n_heads; k++)
    if (e->head_run[k])
      memcpy(e->out[k], r->act[m->heads[k].node], sizeof(float) * (size_t)(e->n * m->classes));
  return MC_OK;
}

static mc_status ref_backward(mc_exec *e, const float *theta, const float *const *dout, float *grad, float *dx) {
  const mc_model *m = e->m;
  ref_state *r = e->impl;
  const int64_t N = e->n;
  mc_status st = ensure_thread_scratch(r);
  if (st) return st;
  for (int i = 1; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    const size_t cnt = (size_t)(N * node_numel(nd));
    if (!e->live[i]) continue;
    if (!r->dact[i] && (st = ref_alloc(&r->dact[i], (size_t)(e->batch * node_numel(nd)), sizeof(float), nd, "gradient")))
      return st;
    memset(r->dact[i], 0, sizeof(float) * cnt);
  }
  for (int k = 0; k < m->n_heads; k++)
    if (e->head_run[k] && dout[k]) vec_accumulate(r->dact[m->heads[k].node], dout[k], N * m->classes);
  for (int i = m->n_nodes - 1; i >= 1; i--) {
    if (!e->live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    ref_ctx c = node_ctx(e, i, theta);
    c.dx = dx;
    c.dy = r->dact[i];
    c.dxin = ref_dx_target(&c, nd->in[0]);
    c.gw = grad && nd->t_weight >= 0 ? grad + m->tensors[nd->t_weight].off : NULL;
    c.gb = grad && nd->t_bias >= 0 ? grad + m->tensors[nd->t_bias].off : NULL;
    const mc_op_desc *d = mc_op_desc_of(nd->kind);
    MC_ASSERT(d->ref_backward); /* only the input node (0) has none */
    if ((st = d->ref_backward(&c))) return st;
  }
  return MC_OK;
}

static mc_status ref_read(mc_exec *e, int node, float *out) {
  const ref_state *r = e->impl;
  const mc_node *nd = &e->m->nodes[node];
  memcpy(out, r->act[node], sizeof(float) * (size_t)(e->n * node_numel(nd)));
  return MC_OK;
}

static int ref_view(mc_exec *e, int node, mc_act_view *v) {
  const ref_state *r = e->impl;
  const mc_node *nd = &e->m->nodes[node];
  const int64_t S = nd->H * nd->W;
  *v = (mc_act_view){r->act[node], 1, nd->C * S, S, 1};
  return 0;
}

static void ref_info(FILE *f) {
  fprintf(f, "backend ref: plain NCHW reference ops, GEMMs by OpenBLAS (%s)\n", "OpenMP build");
}

const mc_backend_ops mc_backend_ref = {
    .name = "ref",
    .alias = "reference",
    .score = ref_score,
    .init = ref_init,
    .free = ref_free,
    .forward = ref_forward,
    .backward = ref_backward,
    .read = ref_read,
    .view = ref_view,
    .info = ref_info,
};
