/* The reference backend's per-kind lowering (ref_ops.h): each node kind's
 * prepare / forward / backward on plain NCHW buffers through the ops of
 * nn/ops.h.  The op table (model/optab.c) names these functions. */
#include "nn/ref/ref_ops.h"
#include "nn/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mc_status ref_alloc(void *p, size_t floats, size_t elem, const mc_node *nd, const char *what) {
  size_t bytes;
  void *q = NULL;
  if (!__builtin_mul_overflow(floats, elem, &bytes)) q = mc_aligned_alloc_try(bytes);
  *(void **)p = q;
  if (!q)
    return mc_error(MC_ENOMEM, "reference backend: out of memory for %zu x %zu bytes (%s of node '%s')",
                    floats, elem, what, nd ? nd->name : "-");
  return MC_OK;
}

float *ref_dx_target(const ref_ctx *c, int s) {
  if (s == 0) return c->dx;
  if (exec_dx_only(c->m, s) && !c->dx) return NULL;
  return c->r->dact[s];
}

static const float *param(const ref_ctx *c, int t) { return t < 0 ? NULL : c->theta + c->m->tensors[t].off; }
static size_t out_floats(const ref_ctx *c) { return (size_t)c->e->batch * (size_t)(c->nd->C * c->nd->H * c->nd->W); }

/* --------------------------------------------------------- input, copies */
mc_status ref_input_fwd(ref_ctx *c) {
  memcpy(c->y, c->x, sizeof(float) * (size_t)c->cnt);
  return MC_OK;
}

mc_status ref_copy_fwd(ref_ctx *c) {
  memcpy(c->y, c->xin, sizeof(float) * (size_t)c->cnt);
  return MC_OK;
}

mc_status ref_copy_bwd(ref_ctx *c) {
  if (c->dxin) vec_accumulate(c->dxin, c->dy, c->cnt);
  return MC_OK;
}

mc_status ref_normalize_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd;
  normalize_forward(c->y, c->xin, c->m->norm_mean, c->m->norm_std, c->N, nd->C, nd->H * nd->W);
  return MC_OK;
}

mc_status ref_normalize_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd;
  if (c->dxin) normalize_backward(c->dxin, c->dy, c->m->norm_std, c->N, nd->C, nd->H * nd->W);
  return MC_OK;
}

/* ---------------------------------------------------------- conv, linear */
/* The largest im2col buffer and weight-gradient accumulator any conv
 * needs; ref_exec.c allocates one of each per thread. */
mc_status ref_conv_prepare(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  size_t cf = conv2d_col_floats(in0->C, nd->k, nd->H, nd->W);
  size_t df = (size_t)(nd->C * in0->C * nd->k * nd->k);
  if (cf > c->r->col_floats) c->r->col_floats = cf;
  if (df > c->r->dw_floats) c->r->dw_floats = df;
  return MC_OK;
}

mc_status ref_conv_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  conv2d_forward(c->y, c->xin, param(c, nd->t_weight), param(c, nd->t_bias), c->N, in0->C, in0->H, in0->W, nd->C,
                 nd->k, nd->stride, nd->pad, nd->H, nd->W, c->r->col);
  return MC_OK;
}

mc_status ref_conv_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  if (c->gw || c->dxin)
    conv2d_backward(c->dxin, c->gw, c->gb, c->dy, c->xin, param(c, nd->t_weight), c->N, in0->C, in0->H, in0->W,
                    nd->C, nd->k, nd->stride, nd->pad, nd->H, nd->W, c->r->col, c->r->dwscratch);
  return MC_OK;
}

mc_status ref_linear_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  linear_forward(c->y, c->xin, param(c, nd->t_weight), param(c, nd->t_bias), c->N, in0->C * in0->H * in0->W, nd->C);
  return MC_OK;
}

mc_status ref_linear_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  if (c->gw || c->dxin)
    linear_backward(c->dxin, c->gw, c->gb, c->dy, c->xin, param(c, nd->t_weight), c->N, in0->C * in0->H * in0->W,
                    nd->C);
  return MC_OK;
}

/* ------------------------------------------------------------- batchnorm */
mc_status ref_bn_prepare(ref_ctx *c) {
  mc_status st;
  if ((st = ref_alloc(&c->r->bn_mean[c->i], (size_t)c->nd->C, sizeof(float), c->nd, "mean")) ||
      (st = ref_alloc(&c->r->bn_invstd[c->i], (size_t)c->nd->C, sizeof(float), c->nd, "invstd")))
    return st;
  return MC_OK;
}

mc_status ref_bn_fwd(ref_ctx *c) {
  const mc_model *m = c->m;
  const mc_node *nd = c->nd;
  const int i = c->i;
  ref_state *r = c->r;
  const float *g = param(c, nd->t_weight), *b = param(c, nd->t_bias);
  float *rm = c->state + m->tensors[nd->t_rmean].off, *rv = c->state + m->tensors[nd->t_rvar].off;
  if (c->e->mode == MC_MODE_EVAL) {
    batchnorm_forward_eval(c->y, c->xin, g, b, rm, rv, c->N, nd->C, nd->H * nd->W, nd->eps);
    for (int64_t ch = 0; ch < nd->C; ch++) { /* what backward through fixed statistics reads */
      r->bn_mean[i][ch] = rm[ch];
      r->bn_invstd[i][ch] = (float)(1.0 / sqrt((double)rv[ch] + nd->eps));
    }
  } else {
    batchnorm_forward_train(c->y, r->bn_mean[i], r->bn_invstd[i], rm, rv, c->xin, g, b, c->N, nd->C, nd->H * nd->W,
                            nd->eps, exec_bn_momentum(c->e, nd, c->e->mode));
  }
  return MC_OK;
}

mc_status ref_bn_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd;
  if (c->gw || c->dxin)
    batchnorm_backward(c->dxin, c->gw, c->gb, c->dy, c->xin, c->r->bn_mean[c->i], c->r->bn_invstd[c->i],
                       param(c, nd->t_weight), c->N, nd->C, nd->H * nd->W, c->e->mode != MC_MODE_EVAL);
  return MC_OK;
}

/* ------------------------------------------------------------------ relu */
mc_status ref_relu_fwd(ref_ctx *c) {
  relu_forward(c->y, c->xin, c->cnt);
  return MC_OK;
}

mc_status ref_relu_bwd(ref_ctx *c) {
  if (c->dxin) relu_backward(c->dxin, c->dy, c->y, c->cnt);
  return MC_OK;
}

/* --------------------------------------------------------------- pooling */
mc_status ref_maxpool_prepare(ref_ctx *c) {
  return ref_alloc(&c->r->argmax[c->i], out_floats(c), sizeof(int32_t), c->nd, "argmax");
}

mc_status ref_maxpool_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  maxpool_forward(c->y, c->r->argmax[c->i], c->xin, c->N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H,
                  nd->W);
  return MC_OK;
}

mc_status ref_maxpool_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  if (c->dxin) maxpool_backward(c->dxin, c->dy, c->r->argmax[c->i], c->N * nd->C, in0->H, in0->W, nd->H, nd->W);
  return MC_OK;
}

mc_status ref_avgpool_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  avgpool_forward(c->y, c->xin, c->N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
  return MC_OK;
}

mc_status ref_avgpool_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd, *in0 = c->in0;
  if (c->dxin) avgpool_backward(c->dxin, c->dy, c->N * nd->C, in0->H, in0->W, nd->k, nd->stride, nd->pad, nd->H, nd->W);
  return MC_OK;
}

mc_status ref_gap_fwd(ref_ctx *c) {
  gap_forward(c->y, c->xin, c->N * c->nd->C, c->in0->H * c->in0->W);
  return MC_OK;
}

mc_status ref_gap_bwd(ref_ctx *c) {
  if (c->dxin) gap_backward(c->dxin, c->dy, c->N * c->nd->C, c->in0->H * c->in0->W);
  return MC_OK;
}

/* ------------------------------------------------------------ add, concat */
mc_status ref_add_fwd(ref_ctx *c) {
  const float *xs[MC_MAX_INPUTS];
  for (int j = 0; j < c->nd->n_in; j++) xs[j] = c->r->act[c->nd->in[j]];
  add_forward(c->y, xs, c->nd->n_in, c->cnt);
  return MC_OK;
}

mc_status ref_add_bwd(ref_ctx *c) {
  for (int j = 0; j < c->nd->n_in; j++) {
    float *t = ref_dx_target(c, c->nd->in[j]);
    if (t) vec_accumulate(t, c->dy, c->cnt);
  }
  return MC_OK;
}

mc_status ref_concat_fwd(ref_ctx *c) {
  const mc_node *nd = c->nd;
  const float *xs[MC_MAX_INPUTS];
  int64_t cs[MC_MAX_INPUTS];
  for (int j = 0; j < nd->n_in; j++) {
    xs[j] = c->r->act[nd->in[j]];
    cs[j] = c->m->nodes[nd->in[j]].C;
  }
  concat_forward(c->y, xs, cs, nd->n_in, c->N, nd->H * nd->W);
  return MC_OK;
}

mc_status ref_concat_bwd(ref_ctx *c) {
  const mc_node *nd = c->nd;
  ref_state *r = c->r;
  float *dxs[MC_MAX_INPUTS];
  int64_t cs[MC_MAX_INPUTS];
  mc_status st;
  for (int j = 0; j < nd->n_in; j++) {
    const int s = nd->in[j];
    const mc_node *ns = &c->m->nodes[s];
    cs[j] = ns->C;
    dxs[j] = ref_dx_target(c, s);
    if (!dxs[j]) { /* input gradient not wanted: scratch, allocated once */
      size_t need = (size_t)(c->e->batch * ns->C * ns->H * ns->W);
      if (need > r->scratch_floats) {
        free(r->scratch);
        r->scratch_floats = 0;
        if ((st = ref_alloc(&r->scratch, need, sizeof(float), nd, "scratch"))) return st;
        r->scratch_floats = need;
      }
      memset(r->scratch, 0, sizeof(float) * need);
      dxs[j] = r->scratch;
    }
  }
  concat_backward(dxs, c->dy, cs, nd->n_in, c->N, nd->H * nd->W);
  return MC_OK;
}

/* --------------------------------------------------------------- dropout */
mc_status ref_dropout_prepare(ref_ctx *c) {
  return ref_alloc(&c->r->mask[c->i], out_floats(c), sizeof(float), c->nd, "mask");
}

mc_status ref_dropout_fwd(ref_ctx *c) {
  float *mask = c->r->mask[c->i];
  if (c->e->mode == MC_MODE_EVAL || c->nd->p == 0.f) {
    memcpy(c->y, c->xin, sizeof(float) * (size_t)c->cnt);
    for (int64_t j = 0; j < c->cnt; j++) mask[j] = 1.f;
  } else {
    dropout_forward(c->y, mask, c->xin, c->cnt, c->nd->p, &c->e->rng);
  }
  return MC_OK;
}

mc_status ref_dropout_bwd(ref_ctx *c) {
  if (c->dxin) dropout_backward(c->dxin, c->dy, c->r->mask[c->i], c->cnt);
  return MC_OK;
}
