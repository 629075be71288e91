/* oneDNN backend: batch normalisation, forward in the three modes (fused
 * with the ReLU that is its only consumer; in BN-recompute plans
 * normalising with the batch statistics that dn_run.c sums in double) and
 * backward through the batch or running statistics; in eval plans folded
 * into the convolution before it (lower_conv.c), with its own backward
 * steps. */
#include "nn/dnnl/dn.h"

#include <stdlib.h>

/* The steps of BN node i after its primitive descriptors (gpd: the
 * recompute one, or NULL); the caller owns gpd. */
static mc_status bn_fwd_steps(dstate *st, plan *p, int i, const_dnnl_primitive_desc_t gpd) {
  FWD_PROLOGUE;
  const int r = st->relu_of[i];
  p->md[i] = *dn_qmd(p->fpd[i], dnnl_query_dst_md);
  MCK(dn_set_out(st, p, i));
  if (r >= 0) {
    p->md[r] = p->md[i];
    MCK(dn_set_out(st, p, r));
  }
  dnnl_dims_t cdim = {nd->C};
  dnnl_memory_desc_t cmd;
  MCK(dn_md_init(&cmd, 1, cdim, 0));
  MCK(dn_new_mem(st, p, &p->mean[i], &cmd, st->bnmean[i]));
  MCK(dn_new_mem(st, p, &p->var[i], &cmd, st->bnvar[i]));
  MCK(dn_bound_mem(st, p, &p->wplain[i], &cmd, &st->theta, m->tensors[nd->t_weight].off, 1));
  dnnl_memory_t scale = p->wplain[i];
  if (r >= 0) { /* keep gamma, beta of this forward for the recompute */
    MCK(dn_new_mem(st, p, &scale, &cmd, dn_plan_buf(p, sizeof(float) * (size_t)nd->C)));
    MCK(dn_new_mem(st, p, &p->shift[i], &cmd, dn_plan_buf(p, sizeof(float) * (size_t)nd->C)));
    MCK(dn_push_custom(L, S_SAVE, i, NULL, scale, nd->C, 0));
    L->v[L->n - 1].off = m->tensors[nd->t_weight].off;
    MCK(dn_push_custom(L, S_SAVE, i, NULL, p->shift[i], nd->C, 0));
    L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
    p->fsrc[i] = scale;
  } else {
    MCK(dn_bound_mem(st, p, &p->shift[i], &cmd, &st->theta, m->tensors[nd->t_bias].off, 1));
  }
  if (p->kind == PK_EVAL) MCK(dn_push_custom(L, S_BN_EVAL, i, p->mean[i], p->var[i], nd->C, 0));
  if (gpd) {
    p->bnsums[i] = (double *)dn_plan_buf(p, sizeof(double) * (size_t)(2 * nd->C));
    int from_wino = 0; /* the convolution before it adds up its outputs */
    for (int k = L->n - 1; k >= 0 && !from_wino; k--)
      if (L->v[k].kind == S_WINO && L->v[k].node == in) {
        L->v[k].count = i + 1;
        from_wino = 1;
      }
    MCK(dn_push_custom(L, S_BN_BATCH, i, p->mem[in], NULL, N * nd->H * nd->W, 0));
    L->v[L->n - 1].flag = from_wino;
  }
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[r >= 0 ? r : i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, p->mean[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, p->var[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, scale};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, p->shift[i]};
  if (p->fold[i] < 0) { /* the conv before it computes this BN (lower_conv.c) */
    const int c = -p->fold[i] - 1;
    if (!dn_wino_fits(st, p, c)) return dn_fold_direct_steps(st, p, c, p->mem[r >= 0 ? r : i]);
    MCK(dn_push_custom(L, S_WINO, c, p->fsrc[c], p->mem[r >= 0 ? r : i], 0, 0));
    L->v[L->n - 1].flag = WINO_FOLDED;
    return MC_OK;
  }
  MCK(dn_add_ws(st, p, i, a, &na));
  MCK(dn_add_prim(st, p, L, gpd ? gpd : p->fpd[i], na, a, 0));
  if (p->kind != PK_EVAL) MCK(dn_push_custom(L, S_BN_STATS, i, p->mean[i], p->var[i], N * nd->H * nd->W, 0));
  return MC_OK;
}

static mc_status bn_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  /* BN + ReLU in one pass when the ReLU is BN's only consumer: the
   * BN primitive writes the ReLU node's output (and a workspace mask for
   * backward); BN's own output is recomputed only if it is read. */
  const int r = st->relu_of[i];
  unsigned fl = dnnl_use_scale | dnnl_use_shift | (p->kind == PK_EVAL ? dnnl_use_global_stats : 0u) |
                (r >= 0 ? dnnl_fuse_norm_relu : 0u);
  dnnl_batch_normalization_desc_t bd;
  CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &p->md[in],
                                                nd->eps, fl));
  CK(dnnl_primitive_desc_create(&p->fpd[i], &bd, st->attr, st->eng, NULL));
  /* BN recompute: the primitive that runs normalises with the batch
   * statistics S_BN_BATCH computed (fpd stays the batch-statistics one,
   * the hint of a backward) */
  dnnl_primitive_desc_t gpd = NULL;
  if (p->kind == PK_RECOMPUTE && dn_bn_sums_layout(&p->md[in], nd) >= 0) {
    CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &p->md[in], nd->eps,
                                                  fl | dnnl_use_global_stats));
    CK(dnnl_primitive_desc_create(&gpd, &bd, st->attr, st->eng, NULL));
    if (!dn_md_eq(dn_qmd(gpd, dnnl_query_workspace_md), dn_qmd(p->fpd[i], dnnl_query_workspace_md)) ||
        !dn_md_eq(dn_qmd(gpd, dnnl_query_dst_md), dn_qmd(p->fpd[i], dnnl_query_dst_md))) {
      dnnl_primitive_desc_destroy(gpd);
      gpd = NULL;
    }
  }
  const mc_status rc = bn_fwd_steps(st, p, i, gpd);
  if (gpd) dnnl_primitive_desc_destroy(gpd);
  return rc;
}

/* The backward of a BN folded into the convolution before it
 * (lower_conv.c), from what the folded forward computed: the input
 * gradient dy * scale (masked by the fused ReLU's output, so it agrees
 * with the forward that ran), and for weight gradients the conv's output
 * again, for the normalised values of dgamma. */
static mc_status bn_folded_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  const int r = st->relu_of[i];
  first = !seen[in];
  seen[in] = 1;
  TRY(dn_diff_target(st, p, in, first, &p->md[in], &t, &deliver));
  TRY(dn_push_custom(L, S_BN_FOLD_DX, i, p->dmem[r >= 0 ? r : i], t, 0, gneed));
  if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
  if (dn_wino_fits(st, p, in)) {
    TRY(dn_push_custom(L, S_WINO, in, p->fsrc[in], p->mem[in], 0, DN_GRAD));
    L->v[L->n - 1].flag = WINO_SAVED;
  } else { /* the direct conv's plain forward */
    step s = p->rc[in];
    s.need = DN_GRAD;
    TRY(dn_push_step(L, s));
  }
  TRY(dn_push_custom(L, S_BN_FOLD_DGB, i, p->dmem[r >= 0 ? r : i], p->mem[in], 0, DN_GRAD));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

static mc_status bn_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  if (p->fold[i] < 0) return bn_folded_bwd(st, p, b, i);
  BWD_PROLOGUE;
  const int r = st->relu_of[i];
  unsigned fl = dnnl_use_scale | dnnl_use_shift | (p->kind == PK_EVAL ? dnnl_use_global_stats : 0u) |
                (r >= 0 ? dnnl_fuse_norm_relu : 0u);
  dnnl_batch_normalization_desc_t bd;
  TRYD(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &p->md[i], &p->md[in],
                                                   nd->eps, fl));
  TRY(dn_create_bwd_pd(st, &pd, &bd, p->fpd[i]));
  first = !seen[in];
  seen[in] = 1;
  dnnl_dims_t cdim = {nd->C};
  dnnl_memory_desc_t cmd;
  dnnl_memory_t dg, dbeta, dy;
  TRY(dn_md_init(&cmd, 1, cdim, 0));
  TRY(dn_new_mem(st, p, &dg, &cmd, dn_plan_buf(p, sizeof(float) * (size_t)nd->C)));
  TRY(dn_new_mem(st, p, &dbeta, &cmd, dn_plan_buf(p, sizeof(float) * (size_t)nd->C)));
  TRY(dn_as_md(st, p, L, p->dmem[r >= 0 ? r : i], dn_qmd(pd, dnnl_query_diff_dst_md), gneed, 1, &dy));
  TRY(dn_diff_target(st, p, in, first, dn_qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, p->mean[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, p->var[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, p->wplain[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, p->shift[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, dg};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, dbeta};
  if (p->ws[i]) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws[i]};
  TRY(dn_add_prim(st, p, L, pd, na, a, gneed));
  TRY(dn_push_custom(L, S_ADDVEC, i, dg, NULL, nd->C, DN_GRAD));
  L->v[L->n - 1].off = m->tensors[nd->t_weight].off;
  TRY(dn_push_custom(L, S_ADDVEC, i, dbeta, NULL, nd->C, DN_GRAD));
  L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
  if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

/* Output of a BN node whose ReLU is fused into it: normalise again with
 * the statistics and gamma/beta that the last forward used. */
mc_status dn_bn_recompute_step(dstate *st, plan *p, int i, step *s) {
  const mc_node *nd = &st->e->m->nodes[i];
  dnnl_batch_normalization_desc_t bd;
  dnnl_primitive_desc_t pd;
  CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &p->md[nd->in[0]],
                                                nd->eps,
                                                dnnl_use_scale | dnnl_use_shift | dnnl_use_global_stats));
  CK(dnnl_primitive_desc_create(&pd, &bd, st->attr, st->eng, NULL));
  dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, p->mem[nd->in[0]]}, {DNNL_ARG_DST, p->mem[i]},
                          {DNNL_ARG_MEAN, p->mean[i]},       {DNNL_ARG_VARIANCE, p->var[i]},
                          {DNNL_ARG_SCALE, p->fsrc[i]},      {DNNL_ARG_SHIFT, p->shift[i]}};
  mc_status rc = dn_mk_step(st, p, s, pd, 6, a, 0);
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

const dn_lowering dn_lower_bn = {bn_fwd, bn_bwd};
