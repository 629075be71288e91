/* The executor: runs a model's graph forward and backward over one batch,
 * with theta and state passed in (it owns only the activation workspace).
 * This file is the reference path (plain NCHW, ops.h); the backend flag
 * sends the same calls to the oneDNN fast path instead. */
#include "exec_internal.h"
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t node_numel(const mc_node *nd) { return nd->C * nd->H * nd->W; }

mc_backend mc_backend_default(void) {
  const char *s = getenv("MODECONN_BACKEND");
  mc_backend be;
  if (s && mc_backend_parse(s, &be) == MC_OK) return be;
  return MC_BACKEND_AUTO;
}

mc_backend mc_backend_for(const mc_model *m, mc_backend be) {
  if (be != MC_BACKEND_AUTO) return be;
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_CONV) return MC_BACKEND_DNNL;
  return MC_BACKEND_REF;
}

mc_status mc_backend_parse(const char *s, mc_backend *be) {
  if (!strcmp(s, "ref") || !strcmp(s, "reference")) *be = MC_BACKEND_REF;
  else if (!strcmp(s, "dnnl") || !strcmp(s, "onednn")) *be = MC_BACKEND_DNNL;
  else if (!strcmp(s, "auto")) *be = MC_BACKEND_AUTO;
  else return mc_error(MC_EARG, "backend '%s': expected 'auto', 'dnnl' or 'ref'", s);
  return MC_OK;
}

const char *mc_backend_name(mc_backend be) {
  return be == MC_BACKEND_REF ? "ref" : be == MC_BACKEND_DNNL ? "dnnl" : "auto";
}

int64_t mc_exec_batch(const mc_exec *e) { return e->batch; }

const mc_model *mc_exec_model(const mc_exec *e) { return e->m; }

void mc_exec_set_seed(mc_exec *e, uint64_t seed) { mc_rng_seed(&e->rng, seed); }

void mc_exec_bn_reset(mc_exec *e, float *state) {
  const mc_model *m = e->m;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind != MC_NODE_BN) continue;
    const mc_tensor *rm = &m->tensors[nd->t_rmean], *rv = &m->tensors[nd->t_rvar];
    for (size_t j = 0; j < rm->numel; j++) {
      state[rm->off + j] = 0.f;
      state[rv->off + j] = 1.f;
    }
  }
  e->bn_count = 0;
}

mc_status mc_exec_create(mc_exec **out, const mc_model *m, int64_t batch,
                         mc_backend be) {
  *out = NULL;
  if (batch < 1) return mc_error(MC_EARG, "batch size must be >= 1");
  be = mc_backend_for(m, be);
  mc_exec *e = mc_calloc(1, sizeof *e);
  e->m = m;
  e->batch = batch;
  e->be = be;
  mc_rng_seed(&e->rng, 0);
  e->logits = mc_aligned_alloc(sizeof(float) * (size_t)(batch * m->classes));
  if (be == MC_BACKEND_DNNL) {
    mc_status st = dnnl_exec_init(e);
    if (st) {
      mc_exec_free(e);
      return st;
    }
    *out = e;
    return MC_OK;
  }
  int nn = m->n_nodes, nt = omp_get_max_threads();
  e->act = mc_calloc((size_t)nn, sizeof(float *));
  e->dact = mc_calloc((size_t)nn, sizeof(float *));
  e->bn_mean = mc_calloc((size_t)nn, sizeof(float *));
  e->bn_invstd = mc_calloc((size_t)nn, sizeof(float *));
  e->argmax = mc_calloc((size_t)nn, sizeof(int32_t *));
  e->mask = mc_calloc((size_t)nn, sizeof(float *));
  for (int i = 0; i < nn; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t sz = sizeof(float) * (size_t)(batch * node_numel(nd));
    if (nd->kind != MC_NODE_INPUT) e->act[i] = mc_aligned_alloc(sz);
    if (nd->kind == MC_NODE_BN) {
      e->bn_mean[i] = mc_aligned_alloc(sizeof(float) * (size_t)nd->C);
      e->bn_invstd[i] = mc_aligned_alloc(sizeof(float) * (size_t)nd->C);
    }
    if (nd->kind == MC_NODE_MAXPOOL) e->argmax[i] = mc_aligned_alloc(sizeof(int32_t) * (size_t)(batch * node_numel(nd)));
    if (nd->kind == MC_NODE_DROPOUT) e->mask[i] = mc_aligned_alloc(sz);
    if (nd->kind == MC_NODE_CONV) {
      const mc_node *in0 = &m->nodes[nd->in[0]];
      size_t cf = conv2d_col_floats(in0->C, nd->k, nd->H, nd->W);
      size_t df = (size_t)(nd->C * in0->C * nd->k * nd->k);
      if (cf > e->col_floats) e->col_floats = cf;
      if (df > e->dw_floats) e->dw_floats = df;
    }
  }
  e->col = mc_aligned_alloc(sizeof(float) * e->col_floats * (size_t)nt);
  e->dwscratch = mc_aligned_alloc(sizeof(float) * e->dw_floats * (size_t)nt);
  e->scratch_threads = nt;
  *out = e;
  return MC_OK;
}

void mc_exec_free(mc_exec *e) {
  if (!e) return;
  for (int i = 0; i < e->n_workers; i++) mc_exec_free(e->workers[i]);
  free(e->workers);
  if (e->dnnl) dnnl_exec_free(e);
  const mc_model *m = e->m;
  for (int i = 0; e->act && i < m->n_nodes; i++) {
    free(e->act[i]);
    free(e->dact[i]);
    free(e->bn_mean[i]);
    free(e->bn_invstd[i]);
    free(e->argmax[i]);
    free(e->mask[i]);
  }
  free(e->act);
  free(e->dact);
  free(e->bn_mean);
  free(e->bn_invstd);
  free(e->argmax);
  free(e->mask);
  free(e->col);
  free(e->dwscratch);
  free(e->logits);
  free(e->scratch);
  free(e);
}

/* Thread tid's copy of e for `rows` rows (inside the parallel region,
 * after this thread's OpenMP thread count is set to 1). */
static mc_status worker_get(mc_exec *e, int tid, int64_t rows, mc_exec **out) {
  mc_exec **w = &e->workers[tid];
  if (*w && (*w)->batch < rows) { /* a larger copy serves smaller slices */
    mc_exec_free(*w);
    *w = NULL;
  }
  mc_status st = *w ? MC_OK : mc_exec_create(w, e->m, rows, e->be);
  *out = *w;
  return st;
}

mc_status mc_exec_parallel(mc_exec *const *es, int ne, int64_t rows, mc_exec_worker_fn fn, void *arg) {
  MC_ASSERT(ne >= 1 && ne <= MC_EXEC_PARALLEL_MAX && rows >= 1);
  const int T = mc_get_threads();
  for (int i = 0; i < ne; i++) {
    mc_exec *e = es[i];
    if (e->n_workers < T) {
      e->workers = realloc(e->workers, sizeof(mc_exec *) * (size_t)T);
      MC_ASSERT(e->workers);
      for (int t = e->n_workers; t < T; t++) e->workers[t] = NULL;
      e->n_workers = T;
    }
  }
  mc_status st = MC_OK;
  char msg[512] = "";
#pragma omp parallel num_threads(T)
  {
    const int tid = omp_get_thread_num(), nthr = omp_get_num_threads();
    omp_set_num_threads(1); /* this thread's nested work (oneDNN, BLAS, our loops) runs on it alone */
    mc_exec *w[MC_EXEC_PARALLEL_MAX];
    for (int i = 0; i < ne; i++) {
      mc_status s = worker_get(es[i], tid, rows, &w[i]);
      if (s) {
#pragma omp critical(mc_exec_parallel)
        if (!st) {
          st = s;
          snprintf(msg, sizeof msg, "%s", mc_errmsg());
        }
        break;
      }
    }
#pragma omp barrier
    if (!st) fn(w, tid, nthr, arg);
  }
  return st ? mc_error(st, "%s", msg) : MC_OK;
}

static const float *tensor_ptr(const mc_model *m, int t, const float *theta) {
  return t < 0 ? NULL : theta + m->tensors[t].off;
}

/* The conv scratch is per thread: grow it if the thread count went up
 * since the executor was made (mc_set_threads). */
static void ensure_thread_scratch(mc_exec *e) {
  int nt = omp_get_max_threads();
  if (nt <= e->scratch_threads) return;
  free(e->col);
  free(e->dwscratch);
  e->col = mc_aligned_alloc(sizeof(float) * e->col_floats * (size_t)nt);
  e->dwscratch = mc_aligned_alloc(sizeof(float) * e->dw_floats * (size_t)nt);
  e->scratch_threads = nt;
}

static void ref_forward(mc_exec *e, const float *theta, float *state,
                        const float *x, int64_t N, mc_mode mode) {
  const mc_model *m = e->m;
  ensure_thread_scratch(e);
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    const mc_node *in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    const float *xin = nd->n_in ? (nd->in[0] == 0 ? x : e->act[nd->in[0]]) : NULL;
    float *y = e->act[i];
    switch (nd->kind) {
    case MC_NODE_INPUT: break;
    case MC_NODE_NORMALIZE:
      normalize_forward(y, xin, m->norm_mean, m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    case MC_NODE_CONV:
      conv2d_forward(y, xin, tensor_ptr(m, nd->t_weight, theta), tensor_ptr(m, nd->t_bias, theta), N,
                     in0->C, in0->H, in0->W, nd->C, nd->k, nd->stride, nd->pad, nd->H, nd->W, e->col);
      break;
    case MC_NODE_LINEAR:
      linear_forward(y, xin, tensor_ptr(m, nd->t_weight, theta), tensor_ptr(m, nd->t_bias, theta), N,
                     node_numel(in0), nd->C);
      break;
    case MC_NODE_BN: {
      const float *g = tensor_ptr(m, nd->t_weight, theta), *b = tensor_ptr(m, nd->t_bias, theta);
      float *rm = state + m->tensors[nd->t_rmean].off, *rv = state + m->tensors[nd->t_rvar].off;
      if (mode == MC_MODE_EVAL) {
        batchnorm_forward_eval(y, xin, g, b, rm, rv, N, nd->C, nd->H * nd->W, nd->eps);
        for (int64_t c = 0; c < nd->C; c++) {
          e->bn_mean[i][c] = rm[c];
          e->bn_invstd[i][c] = (float)(1.0 / sqrt((double)rv[c] + nd->eps));
        }
      } else {
        batchnorm_forward_train(y, e->bn_mean[i], e->bn_invstd[i], rm, rv, xin, g, b, N, nd->C,
                                nd->H * nd->W, nd->eps, exec_bn_momentum(e, nd, mode));
      }
      break;
    }
    case MC_NODE_RELU: relu_forward(y, xin, N * node_numel(nd)); break;
    case MC_NODE_MAXPOOL:
      maxpool_forward(y, e->argmax[i], xin, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_AVGPOOL:
      avgpool_forward(y, xin, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_GAP: gap_forward(y, xin, N * nd->C, in0->H * in0->W); break;
    case MC_NODE_FLATTEN: memcpy(y, xin, sizeof(float) * (size_t)(N * node_numel(nd))); break;
    case MC_NODE_ADD: {
      const float *xs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) xs[j] = nd->in[j] == 0 ? x : e->act[nd->in[j]];
      add_forward(y, xs, nd->n_in, N * node_numel(nd));
      break;
    }
    case MC_NODE_CONCAT: {
      const float *xs[MC_MAX_INPUTS];
      int64_t cs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) {
        xs[j] = nd->in[j] == 0 ? x : e->act[nd->in[j]];
        cs[j] = m->nodes[nd->in[j]].C;
      }
      concat_forward(y, xs, cs, nd->n_in, N, nd->H * nd->W);
      break;
    }
    case MC_NODE_DROPOUT:
      if (mode == MC_MODE_EVAL || nd->p == 0.f) {
        memcpy(y, xin, sizeof(float) * (size_t)(N * node_numel(nd)));
        for (int64_t j = 0; j < N * node_numel(nd); j++) e->mask[i][j] = 1.f;
      } else {
        dropout_forward(y, e->mask[i], xin, N * node_numel(nd), nd->p, &e->rng);
      }
      break;
    default: MC_ASSERT(0);
    }
  }
  memcpy(e->logits, e->act[m->n_nodes - 1], sizeof(float) * (size_t)(N * m->classes));
}

const float *mc_exec_forward(mc_exec *e, const float *theta, float *state,
                             const float *x, int64_t n, mc_mode mode) {
  MC_ASSERT(n >= 1 && n <= e->batch);
  e->n = n;
  e->mode = mode;
  if (e->be == MC_BACKEND_DNNL) dnnl_exec_forward(e, theta, state, x, n, mode);
  else ref_forward(e, theta, state, x, n, mode);
  if (mode == MC_MODE_BN_RECOMPUTE) e->bn_count++;
  return e->logits;
}

/* Does any path from the input to node i pass through a parameter or need
 * dx?  Nodes before the first parametrised layer need no input gradient. */
static int needs_dx(const mc_model *m, int i, int want_input) {
  if (want_input) return 1;
  const mc_node *nd = &m->nodes[i];
  return !(nd->kind == MC_NODE_INPUT || nd->kind == MC_NODE_NORMALIZE);
}

static void ref_backward(mc_exec *e, const float *theta, const float *dlogits,
                         float *grad, float *dx) {
  const mc_model *m = e->m;
  const int64_t N = e->n;
  ensure_thread_scratch(e);
  for (int i = 1; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t sz = sizeof(float) * (size_t)(e->batch * node_numel(nd));
    if (!e->dact[i]) e->dact[i] = mc_aligned_alloc(sz);
    else memset(e->dact[i], 0, sizeof(float) * (size_t)(N * node_numel(nd)));
  }
  memcpy(e->dact[m->n_nodes - 1], dlogits, sizeof(float) * (size_t)(N * m->classes));
  for (int i = m->n_nodes - 1; i >= 1; i--) {
    const mc_node *nd = &m->nodes[i];
    const mc_node *in0 = &m->nodes[nd->in[0]];
    const float *dy = e->dact[i];
    const float *xin = nd->in[0] == 0 ? NULL : e->act[nd->in[0]];
    float *dxin = needs_dx(m, nd->in[0], dx != NULL) ? (nd->in[0] == 0 ? dx : e->dact[nd->in[0]]) : NULL;
    float *gw = nd->t_weight >= 0 ? grad + m->tensors[nd->t_weight].off : NULL;
    float *gb = nd->t_bias >= 0 ? grad + m->tensors[nd->t_bias].off : NULL;
    switch (nd->kind) {
    case MC_NODE_NORMALIZE:
      if (dx) normalize_backward(dx, dy, m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    case MC_NODE_CONV:
      MC_ASSERT(xin != NULL);
      conv2d_backward(dxin, gw, gb, dy, xin, theta + m->tensors[nd->t_weight].off, N, in0->C, in0->H,
                      in0->W, nd->C, nd->k, nd->stride, nd->pad, nd->H, nd->W, e->col, e->dwscratch);
      break;
    case MC_NODE_LINEAR:
      MC_ASSERT(xin != NULL);
      linear_backward(dxin, gw, gb, dy, xin, theta + m->tensors[nd->t_weight].off, N, node_numel(in0),
                      nd->C);
      break;
    case MC_NODE_BN:
      batchnorm_backward(dxin, gw, gb, dy, xin, e->bn_mean[i], e->bn_invstd[i],
                         theta + m->tensors[nd->t_weight].off, N, nd->C, nd->H * nd->W,
                         e->mode != MC_MODE_EVAL);
      break;
    case MC_NODE_RELU:
      if (dxin) relu_backward(dxin, dy, e->act[i], N * node_numel(nd));
      break;
    case MC_NODE_MAXPOOL:
      if (dxin) maxpool_backward(dxin, dy, e->argmax[i], N * nd->C, in0->H, in0->W, nd->H, nd->W);
      break;
    case MC_NODE_AVGPOOL:
      if (dxin) avgpool_backward(dxin, dy, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_GAP:
      if (dxin) gap_backward(dxin, dy, N * nd->C, in0->H * in0->W);
      break;
    case MC_NODE_FLATTEN:
      if (dxin) vec_accumulate(dxin, dy, N * node_numel(nd));
      break;
    case MC_NODE_DROPOUT:
      if (dxin) dropout_backward(dxin, dy, e->mask[i], N * node_numel(nd));
      break;
    case MC_NODE_ADD:
      for (int j = 0; j < nd->n_in; j++) {
        int s = nd->in[j];
        if (!needs_dx(m, s, dx != NULL)) continue;
        vec_accumulate(s == 0 ? dx : e->dact[s], dy, N * node_numel(nd));
      }
      break;
    case MC_NODE_CONCAT: {
      float *dxs[MC_MAX_INPUTS];
      int64_t cs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) {
        int s = nd->in[j];
        cs[j] = m->nodes[s].C;
        dxs[j] = s == 0 ? dx : e->dact[s];
        if (!dxs[j]) { /* input gradient not wanted: scratch, allocated once */
          size_t need = (size_t)(e->batch * node_numel(&m->nodes[s]));
          if (need > e->scratch_floats) {
            free(e->scratch);
            e->scratch = mc_aligned_alloc(sizeof(float) * need);
            e->scratch_floats = need;
          }
          memset(e->scratch, 0, sizeof(float) * need);
          dxs[j] = e->scratch;
        }
      }
      concat_backward(dxs, dy, cs, nd->n_in, N, nd->H * nd->W);
      break;
    }
    default: MC_ASSERT(0);
    }
  }
}

void mc_exec_backward(mc_exec *e, const float *theta, const float *dlogits,
                      float *grad, float *dx) {
  if (e->be == MC_BACKEND_DNNL) dnnl_exec_backward(e, theta, dlogits, grad, dx);
  else ref_backward(e, theta, dlogits, grad, dx);
}

void mc_exec_read(mc_exec *e, int node, float *out) {
  const mc_node *nd = &e->m->nodes[node];
  if (e->be == MC_BACKEND_DNNL) {
    dnnl_exec_read(e, node, out);
    return;
  }
  MC_ASSERT(node > 0);
  memcpy(out, e->act[node], sizeof(float) * (size_t)(e->n * node_numel(nd)));
}

void mc_exec_view(mc_exec *e, int node, float *buf, mc_act_view *v) {
  const mc_node *nd = &e->m->nodes[node];
  if (e->be == MC_BACKEND_DNNL && dnnl_exec_view(e, node, v) == 0) return;
  const float *plain = e->act ? e->act[node] : NULL; /* the reference path keeps every output */
  if (!plain) {
    mc_exec_read(e, node, buf);
    plain = buf;
  }
  const int64_t S = nd->H * nd->W;
  *v = (mc_act_view){plain, 1, nd->C * S, S, 1};
}

double mc_softmax_xent(const float *logits, const int32_t *labels, int64_t n,
                       int64_t classes, float *dlogits, float scale,
                       int64_t *correct) {
  double total = 0;
  int64_t hits = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *z = logits + i * classes;
    int64_t am = 0;
    double mx = z[0];
    for (int64_t c = 1; c < classes; c++)
      if (z[c] > mx) { mx = z[c]; am = c; }
    double se = 0;
    for (int64_t c = 0; c < classes; c++) se += exp((double)z[c] - mx);
    double lse = mx + log(se);
    total += lse - z[labels[i]];
    hits += am == labels[i];
    if (dlogits)
      for (int64_t c = 0; c < classes; c++) {
        double p = exp((double)z[c] - lse);
        dlogits[i * classes + c] = (float)((p - (c == labels[i])) * scale / (double)n);
      }
  }
  if (correct) *correct = hits;
  return total / (double)n;
}
