/* The reference backend's lowering of each node kind: prepare (what the
 * kind needs allocated at init), forward and backward over plain NCHW
 * buffers, calling the ops of nn/ops.h.  The op table (model/optab.c)
 * points at these; ref_exec.c walks the graph and fills a ref_ctx per
 * node. */
#ifndef MC_NN_REF_OPS_H
#define MC_NN_REF_OPS_H

#include "nn/ref/ref.h"

typedef struct ref_ctx {
  mc_exec *e;
  ref_state *r;
  const mc_model *m;
  int i; /* the node */
  const mc_node *nd, *in0; /* in0: its first input, NULL for the input node */
  int64_t N, cnt;          /* rows of the pass; N * C*H*W of the node's output */
  const float *theta;
  /* forward */
  float *state;
  const float *x;   /* the network input (n, in_c, in_h, in_w) */
  const float *xin; /* the first input's output */
  float *y;         /* this node's output */
  /* backward */
  const float *dy;
  float *dxin;     /* the first input's gradient, NULL when nobody needs it */
  float *gw, *gb;  /* the node's weight and bias gradients, NULL: not asked for */
  float *dx;       /* the caller's input gradient (may be NULL) */
} ref_ctx;

/* *p = zeroed aligned memory of floats x elem bytes, or MC_ENOMEM naming
 * the node (nd may be NULL) and `what`. */
mc_status ref_alloc(void *p, size_t floats, size_t elem, const mc_node *nd, const char *what);
/* Where the gradient for node s's output goes in backward: the caller's dx
 * for the input node, NULL when nobody needs it, else s's diff buffer. */
float *ref_dx_target(const ref_ctx *c, int s);

mc_status ref_input_fwd(ref_ctx *c);
mc_status ref_normalize_fwd(ref_ctx *c);
mc_status ref_normalize_bwd(ref_ctx *c);
mc_status ref_conv_prepare(ref_ctx *c);
mc_status ref_conv_fwd(ref_ctx *c);
mc_status ref_conv_bwd(ref_ctx *c);
mc_status ref_linear_fwd(ref_ctx *c);
mc_status ref_linear_bwd(ref_ctx *c);
mc_status ref_bn_prepare(ref_ctx *c);
mc_status ref_bn_fwd(ref_ctx *c);
mc_status ref_bn_bwd(ref_ctx *c);
mc_status ref_relu_fwd(ref_ctx *c);
mc_status ref_relu_bwd(ref_ctx *c);
mc_status ref_maxpool_prepare(ref_ctx *c);
mc_status ref_maxpool_fwd(ref_ctx *c);
mc_status ref_maxpool_bwd(ref_ctx *c);
mc_status ref_avgpool_fwd(ref_ctx *c);
mc_status ref_avgpool_bwd(ref_ctx *c);
mc_status ref_gap_fwd(ref_ctx *c);
mc_status ref_gap_bwd(ref_ctx *c);
mc_status ref_copy_fwd(ref_ctx *c); /* flatten: the same floats */
mc_status ref_copy_bwd(ref_ctx *c);
mc_status ref_add_fwd(ref_ctx *c);
mc_status ref_add_bwd(ref_ctx *c);
mc_status ref_concat_fwd(ref_ctx *c);
mc_status ref_concat_bwd(ref_ctx *c);
mc_status ref_dropout_prepare(ref_ctx *c);
mc_status ref_dropout_fwd(ref_ctx *c);
mc_status ref_dropout_bwd(ref_ctx *c);

#endif
