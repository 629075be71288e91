/* The reference backend: the plain NCHW ops of ops.h node by node, every
 * node's output kept (act[i], act[0] a copy of the input), gradients in
 * plain buffers.  It is the oracle the oneDNN backend is tested against
 * and the default for models without convolutions (OpenBLAS GEMMs). */
#include "nn/ref/ref.h"
#include "nn/ops.h"

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
  for (int i = 0; r->act && i < e->m->n_nodes; i++) {
    free(r->act[i]);
    free(r->dact[i]);
    free(r->bn_mean[i]);
    free(r->bn_invstd[i]);
    free(r->argmax[i]);
    free(r->mask[i]);
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

/* *p = zeroed aligned floats, or MC_ENOMEM naming the node. */
static mc_status alloc_f(void *p, size_t floats, size_t elem, const mc_node *nd, const char *what) {
  size_t bytes;
  void *q = NULL;
  if (!__builtin_mul_overflow(floats, elem, &bytes)) q = mc_aligned_alloc_try(bytes);
  *(void **)p = q;
  if (!q)
    return mc_error(MC_ENOMEM, "reference backend: out of memory for %zu x %zu bytes (%s of node '%s')",
                    floats, elem, what, nd ? nd->name : "-");
  return MC_OK;
}

static mc_status ref_init(mc_exec *e) {
  const mc_model *m = e->m;
  const int64_t batch = e->batch;
  const int nn = m->n_nodes, nt = omp_get_max_threads();
  ref_state *r = calloc(1, sizeof *r);
  if (!r) return mc_error(MC_ENOMEM, "reference backend: out of memory");
  e->impl = r;
  r->act = calloc((size_t)nn, sizeof(float *));
  r->dact = calloc((size_t)nn, sizeof(float *));
  r->bn_mean = calloc((size_t)nn, sizeof(float *));
  r->bn_invstd = calloc((size_t)nn, sizeof(float *));
  r->argmax = calloc((size_t)nn, sizeof(int32_t *));
  r->mask = calloc((size_t)nn, sizeof(float *));
  if (!r->act || !r->dact || !r->bn_mean || !r->bn_invstd || !r->argmax || !r->mask)
    return mc_error(MC_ENOMEM, "reference backend: out of memory");
  mc_status st;
  for (int i = 0; i < nn; i++) {
    const mc_node *nd = &m->nodes[i];
    const size_t cnt = (size_t)batch * (size_t)node_numel(nd);
    if ((st = alloc_f(&r->act[i], cnt, sizeof(float), nd, "output"))) return st;
    if (nd->kind == MC_NODE_BN && ((st = alloc_f(&r->bn_mean[i], (size_t)nd->C, sizeof(float), nd, "mean")) ||
                                   (st = alloc_f(&r->bn_invstd[i], (size_t)nd->C, sizeof(float), nd, "invstd"))))
      return st;
    if (nd->kind == MC_NODE_MAXPOOL && (st = alloc_f(&r->argmax[i], cnt, sizeof(int32_t), nd, "argmax")))
      return st;
    if (nd->kind == MC_NODE_DROPOUT && (st = alloc_f(&r->mask[i], cnt, sizeof(float), nd, "mask"))) return st;
    if (nd->kind == MC_NODE_CONV) {
      const mc_node *in0 = &m->nodes[nd->in[0]];
      size_t cf = conv2d_col_floats(in0->C, nd->k, nd->H, nd->W);
      size_t df = (size_t)(nd->C * in0->C * nd->k * nd->k);
      if (cf > r->col_floats) r->col_floats = cf;
      if (df > r->dw_floats) r->dw_floats = df;
    }
  }
  if ((st = alloc_f(&r->col, r->col_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")) ||
      (st = alloc_f(&r->dwscratch, r->dw_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")))
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
  if ((st = alloc_f(&r->col, r->col_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")) ||
      (st = alloc_f(&r->dwscratch, r->dw_floats * (size_t)nt + 1, sizeof(float), NULL, "conv scratch")))
    return st;
  r->scratch_threads = nt;
  return MC_OK;
}

static const float *tensor_ptr(const mc_model *m, int t, const float *theta) {
  return t < 0 ? NULL : theta + m->tensors[t].off;
}

static mc_status ref_forward(mc_exec *e, const float *theta, float *state, const float *x) {
  const mc_model *m = e->m;
  ref_state *r = e->impl;
  const int64_t N = e->n;
  const mc_mode mode = e->mode;
  mc_status st = ensure_thread_scratch(r);
  if (st) return st;
  for (int i = 0; i < m->n_nodes; i++) {
    if (!e->live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    const mc_node *in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    const float *xin = nd->n_in ? r->act[nd->in[0]] : NULL;
    float *y = r->act[i];
    const int64_t cnt = N * node_numel(nd);
    switch (nd->kind) {
    case MC_NODE_INPUT: memcpy(y, x, sizeof(float) * (size_t)cnt); break;
    case MC_NODE_NORMALIZE:
      normalize_forward(y, xin, m->norm_mean, m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    case MC_NODE_CONV:
      conv2d_forward(y, xin, tensor_ptr(m, nd->t_weight, theta), tensor_ptr(m, nd->t_bias, theta), N, in0->C,
                     in0->H, in0->W, nd->C, nd->k, nd->stride, nd->pad, nd->H, nd->W, r->col);
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
          r->bn_mean[i][c] = rm[c];
          r->bn_invstd[i][c] = (float)(1.0 / sqrt((double)rv[c] + nd->eps));
        }
      } else {
        batchnorm_forward_train(y, r->bn_mean[i], r->bn_invstd[i], rm, rv, xin, g, b, N, nd->C, nd->H * nd->W,
                                nd->eps, exec_bn_momentum(e, nd, mode));
      }
      break;
    }
    case MC_NODE_RELU: relu_forward(y, xin, cnt); break;
    case MC_NODE_MAXPOOL:
      maxpool_forward(y, r->argmax[i], xin, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_AVGPOOL:
      avgpool_forward(y, xin, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_GAP: gap_forward(y, xin, N * nd->C, in0->H * in0->W); break;
    case MC_NODE_FLATTEN: memcpy(y, xin, sizeof(float) * (size_t)cnt); break;
    case MC_NODE_ADD: {
      const float *xs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) xs[j] = r->act[nd->in[j]];
      add_forward(y, xs, nd->n_in, cnt);
      break;
    }
    case MC_NODE_CONCAT: {
      const float *xs[MC_MAX_INPUTS];
      int64_t cs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) {
        xs[j] = r->act[nd->in[j]];
        cs[j] = m->nodes[nd->in[j]].C;
      }
      concat_forward(y, xs, cs, nd->n_in, N, nd->H * nd->W);
      break;
    }
    case MC_NODE_DROPOUT:
      if (mode == MC_MODE_EVAL || nd->p == 0.f) {
        memcpy(y, xin, sizeof(float) * (size_t)cnt);
        for (int64_t j = 0; j < cnt; j++) r->mask[i][j] = 1.f;
      } else {
        dropout_forward(y, r->mask[i], xin, cnt, nd->p, &e->rng);
      }
      break;
    default:
      return mc_error(MC_EINTERNAL, "reference backend: node '%s' of kind %s not handled", nd->name,
                      mc_node_kind_name(nd->kind));
    }
  }
  for (int k = 0; k < m->n_heads; k++)
    if (e->head_run[k])
      memcpy(e->out[k], r->act[m->heads[k].node], sizeof(float) * (size_t)(N * m->classes));
  return MC_OK;
}

/* Where the gradient for input node s goes: the caller's dx for the input
 * node, NULL when nobody needs it, else s's diff buffer. */
static float *dx_target(const mc_exec *e, int s, float *dx) {
  const ref_state *r = e->impl;
  if (s == 0) return dx;
  if (exec_dx_only(e->m, s) && !dx) return NULL;
  return r->dact[s];
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
    if (!r->dact[i] && (st = alloc_f(&r->dact[i], (size_t)(e->batch * node_numel(nd)), sizeof(float), nd, "gradient")))
      return st;
    memset(r->dact[i], 0, sizeof(float) * cnt);
  }
  for (int k = 0; k < m->n_heads; k++)
    if (e->head_run[k] && dout[k]) vec_accumulate(r->dact[m->heads[k].node], dout[k], N * m->classes);
  for (int i = m->n_nodes - 1; i >= 1; i--) {
    if (!e->live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    const mc_node *in0 = &m->nodes[nd->in[0]];
    const float *dy = r->dact[i];
    const float *xin = r->act[nd->in[0]];
    float *dxin = dx_target(e, nd->in[0], dx);
    float *gw = grad && nd->t_weight >= 0 ? grad + m->tensors[nd->t_weight].off : NULL;
    float *gb = grad && nd->t_bias >= 0 ? grad + m->tensors[nd->t_bias].off : NULL;
    const int64_t cnt = N * node_numel(nd);
    switch (nd->kind) {
    case MC_NODE_NORMALIZE:
      if (dxin) normalize_backward(dxin, dy, m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    case MC_NODE_CONV:
      if (gw || dxin)
        conv2d_backward(dxin, gw, gb, dy, xin, theta + m->tensors[nd->t_weight].off, N, in0->C, in0->H, in0->W,
                        nd->C, nd->k, nd->stride, nd->pad, nd->H, nd->W, r->col, r->dwscratch);
      break;
    case MC_NODE_LINEAR:
      if (gw || dxin)
        linear_backward(dxin, gw, gb, dy, xin, theta + m->tensors[nd->t_weight].off, N, node_numel(in0), nd->C);
      break;
    case MC_NODE_BN:
      if (gw || dxin)
        batchnorm_backward(dxin, gw, gb, dy, xin, r->bn_mean[i], r->bn_invstd[i],
                           theta + m->tensors[nd->t_weight].off, N, nd->C, nd->H * nd->W, e->mode != MC_MODE_EVAL);
      break;
    case MC_NODE_RELU:
      if (dxin) relu_backward(dxin, dy, r->act[i], cnt);
      break;
    case MC_NODE_MAXPOOL:
      if (dxin) maxpool_backward(dxin, dy, r->argmax[i], N * nd->C, in0->H, in0->W, nd->H, nd->W);
      break;
    case MC_NODE_AVGPOOL:
      if (dxin) avgpool_backward(dxin, dy, N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
      break;
    case MC_NODE_GAP:
      if (dxin) gap_backward(dxin, dy, N * nd->C, in0->H * in0->W);
      break;
    case MC_NODE_FLATTEN:
      if (dxin) vec_accumulate(dxin, dy, cnt);
      break;
    case MC_NODE_DROPOUT:
      if (dxin) dropout_backward(dxin, dy, r->mask[i], cnt);
      break;
    case MC_NODE_ADD:
      for (int j = 0; j < nd->n_in; j++) {
        float *t = dx_target(e, nd->in[j], dx);
        if (t) vec_accumulate(t, dy, cnt);
      }
      break;
    case MC_NODE_CONCAT: {
      float *dxs[MC_MAX_INPUTS];
      int64_t cs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) {
        const int s = nd->in[j];
        cs[j] = m->nodes[s].C;
        dxs[j] = dx_target(e, s, dx);
        if (!dxs[j]) { /* input gradient not wanted: scratch, allocated once */
          size_t need = (size_t)(e->batch * node_numel(&m->nodes[s]));
          if (need > r->scratch_floats) {
            free(r->scratch);
            r->scratch_floats = 0;
            if ((st = alloc_f(&r->scratch, need, sizeof(float), nd, "scratch"))) return st;
            r->scratch_floats = need;
          }
          memset(r->scratch, 0, sizeof(float) * need);
          dxs[j] = r->scratch;
        }
      }
      concat_backward(dxs, dy, cs, nd->n_in, N, nd->H * nd->W);
      break;
    }
    default:
      return mc_error(MC_EINTERNAL, "reference backend: node '%s' of kind %s not handled in backward", nd->name,
                      mc_node_kind_name(nd->kind));
    }
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
