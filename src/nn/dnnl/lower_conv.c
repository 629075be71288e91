/* oneDNN backend: convolution and linear layers (inner product), forward
 * and backward (weights and data): oneDNN's primitives, or our Winograd
 * kernels for 3x3 stride-1 convolutions on 8- or 16-blocked activations
 * (the weight gradient where its per-thread sums fit, wino_wgrad_fits). */
#include "nn/dnnl/dn.h"
#include "nn/kernels/kernels.h"

#include <stdlib.h>

/* The channel block of conv node i's forward src and dst when S_WINO can
 * run on them: 8 (nChw8c, channels % 8 == 0) or 16 (nChw16c, channels %
 * 16 == 0, so no padded channels), both the same; else 0. */
static int wino_block(const plan *p, int i) {
  const dnnl_memory_desc_t *src = dn_qmd(p->fpd[i], dnnl_query_src_md), *dst = dn_qmd(p->fpd[i], dnnl_query_dst_md);
  if (src->dims[1] % 8 == 0 && dst->dims[1] % 8 == 0 && dn_md_is(src, dnnl_aBcd8b) && dn_md_is(dst, dnnl_aBcd8b))
    return 8;
  if (src->dims[1] % 16 == 0 && dst->dims[1] % 16 == 0 && dn_md_is(src, dnnl_aBcd16b) &&
      dn_md_is(dst, dnnl_aBcd16b))
    return 16;
  return 0;
}

wino_shape dn_wino_shape(const dstate *st, const plan *p, int i, int64_t n) {
  const mc_node *nd = &st->e->m->nodes[i], *x = &st->e->m->nodes[nd->in[0]];
  return (wino_shape){n,      x->C,  nd->C, x->H, x->W, nd->pad, nd->H, nd->W, wino_tile(nd->H, nd->W, x->C),
                      wino_block(p, i), 0, 0, 0};
}

/* Conv node i runs as S_WINO: 3x3, stride 1, and the primitive oneDNN
 * picked reads and writes an 8- or 16-blocked layout wino.c works on,
 * without padded channels (so a backward, which reuses the forward's src
 * and dst, cannot tell the difference).  In training steps the forward is
 * a third of the work: 4 interleaved pairs of tinyten / resnet20 steps at
 * batch 128 measured within noise of oneDNN's direct convolution (median
 * 74 vs 81 ms, 242 vs 247 ms). */
int dn_wino_fits(const dstate *st, const plan *p, int i) {
  const mc_node *nd = &st->e->m->nodes[i];
  return st->wino && nd->k == 3 && nd->stride == 1 && wino_block(p, i) != 0;
}

/* The channel block of conv node i's forward dst when its input gradient
 * can run as S_DX3 (mc_kern_dx3: 3x3, stride 1, a plain src of at most 4
 * channels, a dst blocked like S_WINO's), else 0.  oneDNN runs that one
 * as a GEMM on a plain copy of dy: tinyten's stem at batch 64 took 0.96
 * ms plus a 0.39 ms reorder, about 5 % of a PGD evaluation (Zen 4;
 * with S_DX3 the evaluation takes 0.977x the time). */
int64_t dn_dx3_block(const dstate *st, const plan *p, int i) {
  const mc_node *nd = &st->e->m->nodes[i], *x = &st->e->m->nodes[nd->in[0]];
  const dnnl_memory_desc_t *src = dn_qmd(p->fpd[i], dnnl_query_src_md), *dst = &p->md[i]; /* dy's */
  const int64_t B = dn_md_is(dst, dnnl_aBcd8b) ? 8 : dn_md_is(dst, dnnl_aBcd16b) ? 16 : 0;
  if (!mc_kern_dx3() || nd->k != 3 || nd->stride != 1 || x->C > 4 || !B || nd->C % B ||
      x->C * 9 * nd->C > MC_DX3_MAX_W || !dn_md_is(src, dnnl_abcd))
    return 0;
  return B;
}

/* Eval plans fold the BN that is a convolution's only reader into it.
 * With the running statistics, BN(conv(x, w) + b) = conv(x, s w) + beta +
 * s (b - mean), s = gamma / sqrt(var + eps) per output channel.
 *
 * - Winograd convolutions take the folded weights, and a ReLU that is the
 *   BN's only reader goes into their output transform too.
 * - oneDNN's direct convolutions (stride 2, 1x1, stems) take them too,
 *   with the ReLU as a post-op (dn_fold_direct_steps).
 *
 * Either way the BN primitive's pass over the activations disappears.  The
 * conv's own output is not stored: reading it (or the BN's, when its ReLU
 * is fused) recomputes it from the weights the forward used.  Backward
 * (lower_bn.c): the input gradient from the folded forward's own outputs
 * (so a dx-only backward and a full one agree to the bit), and for weight
 * gradients dgamma, dbeta from the conv's output computed again. */

/* The channel block of conv node i's dst when the BN after it can fold
 * into oneDNN's direct convolution (8- or 16-blocked, no padded
 * channels), else 0. */
static int direct_block(const dstate *st, const plan *p, int i) {
  const dnnl_memory_desc_t *dst = dn_qmd(p->fpd[i], dnnl_query_dst_md);
  const int64_t C = st->e->m->nodes[i].C;
  if (C % 16 == 0 && dn_md_is(dst, dnnl_aBcd16b)) return 16;
  if (C % 8 == 0 && dn_md_is(dst, dnnl_aBcd8b)) return 8;
  return 0;
}

int dn_fold_block(const dstate *st, const plan *p, int i) {
  return dn_wino_fits(st, p, i) ? wino_block(p, i) : direct_block(st, p, i);
}

/* Conv node i's forward with the eval BN after it folded in (see above):
 * the folded weights in the plain forward's layout, a bias, and the ReLU
 * as a post-op when relu; writing dst_md.  *out = NULL (and MC_OK) when
 * oneDNN has nothing but its reference implementation for it: then the BN
 * is not folded. */
static mc_status direct_fold_pd(dstate *st, const plan *p, int i, int relu, const dnnl_memory_desc_t *dst_md,
                                dnnl_primitive_desc_t *out) {
  const mc_node *nd = &st->e->m->nodes[i];
  dnnl_dims_t bd = {nd->C}, str = {nd->stride, nd->stride}, pad = {nd->pad, nd->pad};
  dnnl_memory_desc_t bmd;
  *out = NULL;
  MCK(dn_md_init(&bmd, 1, bd, 0));
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_attr_t at = NULL;
  dnnl_convolution_desc_t cv;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t r = dnnl_primitive_attr_clone(&at, st->attr);
  if (r == dnnl_success && relu) {
    r = dnnl_post_ops_create(&po);
    if (r == dnnl_success) r = dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f);
    if (r == dnnl_success) r = dnnl_primitive_attr_set_post_ops(at, po);
  }
  if (r == dnnl_success)
    r = dnnl_convolution_forward_desc_init(&cv, dnnl_forward_inference, dnnl_convolution_direct,
                                           dn_qmd(p->fpd[i], dnnl_query_src_md),
                                           dn_qmd(p->fpd[i], dnnl_query_weights_md), &bmd, dst_md, str, pad, pad);
  if (r == dnnl_success) r = dnnl_primitive_desc_create(&pd, &cv, at, st->eng, NULL);
  if (po) dnnl_post_ops_destroy(po);
  if (at) dnnl_primitive_attr_destroy(at);
  if (r == dnnl_out_of_memory)
    return mc_error(MC_ENOMEM, "oneDNN: out of memory creating the folded forward of %s", nd->name);
  if (r != dnnl_success) return MC_OK;
  if (dn_pd_is_ref(pd)) dnnl_primitive_desc_destroy(pd);
  else *out = pd;
  return MC_OK;
}

int dn_fold_target(const dstate *st, const plan *p, int i) {
  const mc_node *nd = &st->e->m->nodes[i];
  if (!st->fold || p->kind != PK_EVAL || nd->kind != MC_NODE_CONV || !dn_fold_block(st, p, i)) return -1;
  const int j = dn_sole_consumer(st, p, i);
  return j >= 0 && st->e->m->nodes[j].kind == MC_NODE_BN ? j : -1;
}

dn_fold_parts dn_fold_buf(const dstate *st, const plan *p, int i) {
  const mc_node *nd = &st->e->m->nodes[i];
  const int64_t K = nd->C, W = K * st->e->m->nodes[nd->in[0]].C * nd->k * nd->k;
  float *f = p->fold_w[i];
  return (dn_fold_parts){f, f + W, f + W + K, f + 2 * W + K, f + 2 * W + 2 * K, f + 2 * W + 3 * K};
}

/* Floats of dn_fold_buf's parts for conv node i. */
static size_t fold_floats(const dstate *st, int i) {
  const mc_node *nd = &st->e->m->nodes[i];
  return (size_t)(2 * nd->C * st->e->m->nodes[nd->in[0]].C * nd->k * nd->k + 7 * nd->C);
}

/* The forward steps of direct conv node i with the BN after it folded in
 * (p->fold[i] > 0), at the BN's place, writing dst (the BN's output, or its
 * ReLU's): S_FOLD_ST (the folded weights and bias, plain), the weights
 * into the primitive's layout, the primitive.  conv_fwd has made p->rc[i],
 * the plain forward that recomputes the conv's own output. */
mc_status dn_fold_direct_steps(dstate *st, plan *p, int i, dnnl_memory_t dst) {
  const mc_node *nd = &st->e->m->nodes[i];
  const int j = p->fold[i] - 1;
  dnnl_primitive_desc_t pd;
  MCK(direct_fold_pd(st, p, i, st->relu_of[j] >= 0, dn_mem_md(dst), &pd));
  if (!pd) return mc_error(MC_EINTERNAL, "oneDNN: the folded forward of %s went away", nd->name);
  const dn_fold_parts f = dn_fold_buf(st, p, i);
  const dnnl_memory_desc_t *wmd = dn_qmd(pd, dnnl_query_weights_md);
  dnnl_dims_t bd = {nd->C};
  dnnl_memory_desc_t wpl, bmd;
  dnnl_memory_t wf, w, b;
  mc_status rc = dn_md_plain_of(&wpl, wmd);
  if (!rc) rc = dn_md_init(&bmd, 1, bd, 0);
  if (!rc) rc = dn_new_mem(st, p, &wf, &wpl, f.w);
  if (!rc) rc = dn_new_mem(st, p, &b, &bmd, f.b);
  if (!rc) rc = dn_push_custom(&p->fwd, S_FOLD_ST, i, NULL, NULL, 0, 0);
  if (!rc) rc = dn_as_md(st, p, &p->fwd, wf, wmd, 0, 0, &w);
  if (!rc) {
    const dnnl_exec_arg_t a[4] = {
        {DNNL_ARG_SRC, p->fsrc[i]}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}};
    rc = dn_add_prim(st, p, &p->fwd, pd, 4, a, 0);
  }
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

static mc_status conv_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  const int conv = nd->kind == MC_NODE_CONV;
  dnnl_dims_t sd, wd, bd = {nd->C};
  const int nsd = dn_node_dims(n0, N, sd);
  wd[0] = nd->C;
  for (int k = 1; k < nsd; k++) wd[k] = conv && k >= 2 ? nd->k : sd[k];
  dnnl_memory_desc_t sa, wa, ba, wpl;
  MCK(dn_md_init(&sa, nsd, sd, 1));
  MCK(dn_md_init(&wa, nsd, wd, 1));
  MCK(dn_md_init(&wpl, nsd, wd, 0));
  MCK(dn_md_init(&ba, 1, bd, 0));
  if (conv) {
    dnnl_dims_t str = {nd->stride, nd->stride}, pad = {nd->pad, nd->pad};
    dnnl_convolution_desc_t cd;
    CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                          &sa, &wa, nd->bias ? &ba : NULL, &any_dst, str, pad,
                                          pad));
    CK(dnnl_primitive_desc_create(&p->fpd[i], &cd, st->attr, st->eng, NULL));
  } else {
    dnnl_inner_product_desc_t id;
    CK(dnnl_inner_product_forward_desc_init(&id, dnnl_forward_training, &sa, &wa,
                                            nd->bias ? &ba : NULL, &any_dst));
    CK(dnnl_primitive_desc_create(&p->fpd[i], &id, st->attr, st->eng, NULL));
  }
  p->md[i] = *dn_qmd(p->fpd[i], dnnl_query_dst_md);
  MCK(dn_set_out(st, p, i));
  MCK(dn_as_md(st, p, L, p->mem[in], dn_qmd(p->fpd[i], dnnl_query_src_md), 0, 1, &p->fsrc[i]));
  MCK(dn_bound_mem(st, p, &p->wplain[i], &wpl, &st->theta, m->tensors[nd->t_weight].off, 1));
  if (conv && dn_wino_fits(st, p, i)) {
    const wino_shape ws = dn_wino_shape(st, p, i, N);
    p->wino_u[i] = dn_plan_buf(p, sizeof(float) * wino_weight_floats(&ws));
    p->wino_w[i] = dn_plan_buf(p, sizeof(float) * (size_t)(ws.k * ws.c * 9));
    MCK(dn_ensure(st, &st->wscr, &st->wscrsz, sizeof(float) * wino_scratch_floats(&ws) * (size_t)p->nthr));
    const int j = dn_fold_target(st, p, i);
    if (j < 0) return dn_push_custom(L, S_WINO, i, p->fsrc[i], p->mem[i], 0, 0);
    p->fold[i] = j + 1; /* BN j pushes the folded step */
    p->fold[j] = -(i + 1);
    p->fold_w[i] = dn_plan_buf(p, sizeof(float) * fold_floats(st, i));
    return MC_OK;
  }
  int j = conv ? dn_fold_target(st, p, i) : -1;
  if (j >= 0) { /* can oneDNN take the BN as post-ops? */
    dnnl_primitive_desc_t fp;
    MCK(direct_fold_pd(st, p, i, st->relu_of[j] >= 0, &p->md[i], &fp));
    if (fp) dnnl_primitive_desc_destroy(fp);
    else j = -1;
  }
  if (j >= 0 && !(p->fold_w[i] = dn_plan_buf(p, sizeof(float) * fold_floats(st, i))))
    return MC_OK; /* out of memory: reported when the plan is complete */
  dnnl_memory_t w;
  MCK(dn_as_md(st, p, L, p->wplain[i], dn_qmd(p->fpd[i], dnnl_query_weights_md), 0, 1, &w));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->fsrc[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, w};
  if (nd->bias) { /* folded: the bias S_FOLD_ST saved, so a recompute reads the forward's */
    dnnl_memory_t b;
    if (j >= 0) MCK(dn_new_mem(st, p, &b, &ba, dn_fold_buf(st, p, i).b0));
    else MCK(dn_bound_mem(st, p, &b, &ba, &st->theta, m->tensors[nd->t_bias].off, 1));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b};
  }
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
  if (j < 0) return dn_add_prim(st, p, L, p->fpd[i], na, a, 0);
  p->fold[i] = j + 1; /* BN j pushes the folded forward (dn_fold_direct_steps) */
  p->fold[j] = -(i + 1);
  return dn_mk_step(st, p, &p->rc[i], p->fpd[i], na, a, 0);
}


/* Backward-weights (weights = 1) or backward-data primitive of conv/linear
 * node i.  Layout candidates (src, diff_dst), first non-reference
 * implementation wins: the forward's; plain/plain when the forward reads a
 * plain src (few input channels: a blocked src would be padded to the
 * block, e.g. 1 -> 8 channels); the library's choice. */
static mc_status conv_bwd_pd(dstate *st, plan *p, int i, int weights,
                             const dnnl_memory_desc_t *wa, const dnnl_memory_desc_t *ba,
                             dnnl_primitive_desc_t *out) {
  const mc_node *nd = &st->e->m->nodes[i];
  const int conv = nd->kind == MC_NODE_CONV;
  const dnnl_memory_desc_t *qs = dn_qmd(p->fpd[i], dnnl_query_src_md);
  dnnl_dims_t str = {nd->stride, nd->stride}, pad = {nd->pad, nd->pad};
  dnnl_memory_desc_t cs[3], cd[3];
  int nc = 0;
  cs[nc] = *qs;
  cd[nc++] = p->md[i];
  MCK(dn_md_plain_of(&cs[nc], qs));
  if (dn_md_eq(&cs[nc], qs)) {
    MCK(dn_md_plain_of(&cd[nc], &p->md[i]));
    nc++;
  }
  MCK(dn_md_init(&cs[nc], qs->ndims, qs->dims, 1));
  MCK(dn_md_init(&cd[nc], p->md[i].ndims, p->md[i].dims, 1));
  nc++;
  dnnl_primitive_desc_t fallback = NULL;
  *out = NULL;
  for (int c = 0; c < nc && !*out; c++) {
    dnnl_convolution_desc_t cdsc;
    dnnl_inner_product_desc_t idsc;
    dnnl_status_t s1;
    if (weights)
      s1 = conv ? dnnl_convolution_backward_weights_desc_init(&cdsc, dnnl_convolution_direct, &cs[c],
                                                             wa, ba, &cd[c], str, pad, pad)
                : dnnl_inner_product_backward_weights_desc_init(&idsc, &cs[c], wa, ba, &cd[c]);
    else
      s1 = conv ? dnnl_convolution_backward_data_desc_init(&cdsc, dnnl_convolution_direct, &cs[c],
                                                          wa, &cd[c], str, pad, pad)
                : dnnl_inner_product_backward_data_desc_init(&idsc, &cs[c], wa, &cd[c]);
    dnnl_primitive_desc_t pd = NULL;
    if (s1 != dnnl_success ||
        dnnl_primitive_desc_create(&pd, conv ? (const void *)&cdsc : (const void *)&idsc, st->attr,
                                   st->eng, p->fpd[i]) != dnnl_success)
      continue;
    if (!dn_pd_is_ref(pd)) *out = pd;
    else if (!fallback) fallback = pd;
    else dnnl_primitive_desc_destroy(pd);
  }
  if (*out && fallback) dnnl_primitive_desc_destroy(fallback);
  if (!*out) *out = fallback;
  if (!*out)
    return mc_error(MC_EINTERNAL, "oneDNN: no backward-%s primitive for %s",
                    weights ? "weights" : "data", nd->name);
  return MC_OK;
}

static mc_status conv_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  const int conv = nd->kind == MC_NODE_CONV;
  const dnnl_memory_desc_t *qs = dn_qmd(p->fpd[i], dnnl_query_src_md);
  dnnl_dims_t wd, bd = {nd->C};
  wd[0] = nd->C;
  for (int k = 1; k < qs->ndims; k++) wd[k] = conv && k >= 2 ? nd->k : qs->dims[k];
  dnnl_memory_desc_t wa, ba, wpl;
  TRY(dn_md_init(&wa, qs->ndims, wd, 1));
  TRY(dn_md_init(&wpl, qs->ndims, wd, 0));
  TRY(dn_md_init(&ba, 1, bd, 0));
  /* weights gradient: by Winograd where it fits (wino.h), else oneDNN's */
  if (conv && dn_wino_fits(st, p, i) && st->wino_dw) {
    const wino_shape fs = dn_wino_shape(st, p, i, N);
    if (wino_wgrad_fits(&fs)) {
      TRY(dn_ensure(st, &st->wscr, &st->wscrsz, sizeof(float) * wino_wgrad_scratch_floats(&fs) * (size_t)p->nthr));
      TRY(dn_push_custom(L, S_WINO_DW, i, p->dmem[i], p->fsrc[i], 0, DN_GRAD));
      goto data;
    }
  }
  TRY(conv_bwd_pd(st, p, i, 1, &wa, nd->bias ? &ba : NULL, &pd));
  if (!pd) {
    rc = mc_error(MC_EINTERNAL, "oneDNN: no backward-weights primitive for %s", nd->name);
    goto done;
  }
  {
    dnnl_memory_t xs, dy, dw, gw, db = NULL;
    TRY(dn_as_md(st, p, L, p->fsrc[i], dn_qmd(pd, dnnl_query_src_md), DN_GRAD, 1, &xs));
    TRY(dn_as_md(st, p, L, p->dmem[i], dn_qmd(pd, dnnl_query_diff_dst_md), gneed, 1, &dy));
    const dnnl_memory_desc_t *qdw = dn_qmd(pd, dnnl_query_diff_weights_md);
    TRY(dn_new_mem(st, p, &dw, qdw, dn_plan_buf(p, dn_md_size(qdw))));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, xs};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, dw};
    if (nd->bias) {
      TRY(dn_new_mem(st, p, &db, &ba, dn_plan_buf(p, sizeof(float) * (size_t)nd->C)));
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, db};
    }
    TRY(dn_add_prim(st, p, L, pd, na, a, DN_GRAD));
    TRY(dn_bound_mem(st, p, &gw, &wpl, &st->grad, m->tensors[nd->t_weight].off, 1));
    TRY(dn_add_reorder(st, p, L, dw, gw, 1, DN_GRAD));
    if (nd->bias) {
      TRY(dn_push_custom(L, S_ADDVEC, i, db, NULL, nd->C, DN_GRAD));
      L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
    }
  }
  dnnl_primitive_desc_destroy(pd);
  pd = NULL;
data: /* input gradient */
  first = !seen[in];
  seen[in] = 1;
  const int wdx = conv && dn_wino_fits(st, p, i) && nd->pad <= 2;
  if (wdx || (conv && dn_dx3_block(st, p, i))) { /* ours, into the forward src's layout */
    if (wdx) {
      const wino_shape fs = dn_wino_shape(st, p, i, N), ws = wino_data_grad_shape(&fs);
      p->wino_du[i] = dn_plan_buf(p, sizeof(float) * wino_weight_floats(&ws));
      p->wino_dw[i] = dn_plan_buf(p, sizeof(float) * (size_t)(ws.k * ws.c * 9));
      TRY(dn_ensure(st, &st->wscr, &st->wscrsz, sizeof(float) * wino_scratch_floats(&ws) * (size_t)p->nthr));
    }
    const int acc = !first && in != 0 && dn_md_eq(qs, &p->md[in]); /* added as it is computed */
    if (acc) t = p->dmem[in];
    else TRY(dn_diff_target(st, p, in, first, qs, &t, &deliver));
    TRY(dn_push_custom(L, wdx ? S_WINO_DX : S_DX3, i, p->dmem[i], t, 0, cin));
    L->v[L->n - 1].flag = acc;
    if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
    goto done;
  }
  TRY(conv_bwd_pd(st, p, i, 0, &wa, NULL, &pd));
  if (!pd) {
    rc = mc_error(MC_EINTERNAL, "oneDNN: no backward-data primitive for %s", nd->name);
    goto done;
  }
  {
    dnnl_memory_t w, dy;
    na = 0;
    TRY(dn_as_md(st, p, L, p->wplain[i], dn_qmd(pd, dnnl_query_weights_md), cin, 0, &w));
    TRY(dn_as_md(st, p, L, p->dmem[i], dn_qmd(pd, dnnl_query_diff_dst_md), cin, 1, &dy));
    TRY(dn_diff_target(st, p, in, first, dn_qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, w};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
    TRY(dn_add_prim(st, p, L, pd, na, a, cin));
    if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
  }
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

const dn_lowering dn_lower_conv = {conv_fwd, conv_bwd};
