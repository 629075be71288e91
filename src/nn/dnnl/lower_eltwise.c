/* oneDNN backend: ReLU (oneDNN's eltwise, unless fused into the BN
 * before it), dropout and input normalisation (ours, in plain layout: the
 * dropout mask is drawn in the reference path's NCHW order from the same
 * generator). */
#include "nn/dnnl/dn.h"

#include <stdlib.h>

static mc_status relu_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  if (st->fused[i]) return MC_OK; /* computed by the BN before it */
  dnnl_eltwise_desc_t ed;
  CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training,
                                    dnnl_eltwise_relu_use_dst_for_bwd, &p->md[in], 0.f, 0.f));
  CK(dnnl_primitive_desc_create(&p->fpd[i], &ed, st->attr, st->eng, NULL));
  if (p->add_relu[i] < 0) return MC_OK; /* computed by the sum before it (lower_join.c) */
  p->md[i] = *dn_qmd(p->fpd[i], dnnl_query_dst_md);
  MCK(dn_set_out(st, p, i));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
  MCK(dn_add_prim(st, p, L, p->fpd[i], na, a, 0));
  return MC_OK;
}

static mc_status relu_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  if (st->fused[i]) goto done; /* in the BN before it */
  dnnl_eltwise_desc_t ed;
  TRYD(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd, &p->md[i],
                                       &p->md[i], 0.f, 0.f));
  TRY(dn_create_bwd_pd(st, &pd, &ed, p->fpd[i]));
  first = !seen[in];
  seen[in] = 1;
  TRY(dn_diff_target(st, p, in, first, dn_qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, p->dmem[i]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
  TRY(dn_add_prim(st, p, L, pd, na, a, cin));
  if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

/* Dropout and normalisation run as our own steps on plain layout: the
 * input reordered to plain, the output stored plain. */
static mc_status plain_step_fwd(dstate *st, plan *p, int i, int kind, int per_element) {
  FWD_PROLOGUE;
  dnnl_memory_desc_t pl;
  dnnl_memory_t x;
  MCK(dn_md_plain_of(&pl, &p->md[in]));
  MCK(dn_as_md(st, p, L, p->mem[in], &pl, 0, 1, &x));
  MCK(dn_md_init(&p->md[i], ndd, dd, 0));
  MCK(dn_set_out(st, p, i));
  return dn_push_custom(L, kind, i, x, p->mem[i], per_element ? N * dn_numel(nd) : N, 0);
}

static mc_status dropout_fwd(dstate *st, plan *p, int i) { return plain_step_fwd(st, p, i, S_DROP_F, 1); }

static mc_status dropout_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  dnnl_memory_desc_t pl;
  first = !seen[in];
  seen[in] = 1;
  TRY(dn_md_plain_of(&pl, &p->md[in]));
  TRY(dn_diff_target(st, p, in, first, &pl, &t, &deliver));
  TRY(dn_push_custom(L, S_DROP_B, i, p->dmem[i], t, N * dn_numel(nd), cin));
  if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

static mc_status normalize_fwd(dstate *st, plan *p, int i) { return plain_step_fwd(st, p, i, S_NORM_F, 0); }

static mc_status normalize_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  first = !seen[in];
  seen[in] = 1;
  if (in == 0) { /* straight into the caller's dx (accumulates) */
    TRY(dn_push_custom(L, S_NORM_B, i, p->dmem[i], p->dmem[0], N, DN_DX));
  } else {
    dnnl_memory_desc_t pl;
    TRY(dn_md_plain_of(&pl, &p->md[in]));
    TRY(dn_diff_target(st, p, in, first, &pl, &t, &deliver));
    TRY(dn_push_custom(L, S_NORM_B, i, p->dmem[i], t, N, DN_DX));
    L->v[L->n - 1].flag = 1;
    if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, DN_DX));
  }
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

const dn_lowering dn_lower_relu = {relu_fwd, relu_bwd};
const dn_lowering dn_lower_dropout = {dropout_fwd, dropout_bwd};
const dn_lowering dn_lower_normalize = {normalize_fwd, normalize_bwd};
