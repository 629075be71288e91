/* oneDNN backend: max, average and global average pooling, forward and
 * backward (the global pool's output is stored as a plain vector). */
#include "nn/dnnl/dn.h"

#include <stdlib.h>

/* Right/bottom padding: the left one, or for ceil mode whatever the
 * rounded-up output needs (its windows are clipped to the input, which is
 * what PyTorch's ceil_mode max pooling computes). */
static void pool_pad_r(const mc_node *nd, const mc_node *n0, dnnl_dims_t pr) {
  pr[0] = pr[1] = nd->pad;
  if (!nd->ceil) return;
  pr[0] = (nd->H - 1) * nd->stride + nd->k - n0->H - nd->pad;
  pr[1] = (nd->W - 1) * nd->stride + nd->k - n0->W - nd->pad;
}

static mc_status pool_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  const int gap = nd->kind == MC_NODE_GAP;
  dnnl_dims_t str = {nd->stride, nd->stride}, ker = {nd->k, nd->k}, pad = {nd->pad, nd->pad}, pr;
  dnnl_dims_t d4 = {N, nd->C, 1, 1};
  pool_pad_r(nd, n0, pr);
  dnnl_memory_desc_t any4, pl4;
  dnnl_alg_kind_t alg = nd->kind == MC_NODE_MAXPOOL ? dnnl_pooling_max
                                                      : dnnl_pooling_avg_include_padding;
  if (gap) {
    str[0] = str[1] = 1;
    ker[0] = n0->H;
    ker[1] = n0->W;
    pad[0] = pad[1] = pr[0] = pr[1] = 0;
    MCK(dn_md_init(&any4, 4, d4, 1));
    MCK(dn_md_init(&pl4, 4, d4, 0));
  }
  dnnl_pooling_desc_t pdsc;
  CK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_training, alg, &p->md[in],
                                    gap ? &any4 : &any_dst, str, ker, pad, pr));
  CK(dnnl_primitive_desc_create(&p->fpd[i], &pdsc, st->attr, st->eng, NULL));
  const dnnl_memory_desc_t *q = dn_qmd(p->fpd[i], dnnl_query_dst_md);
  dnnl_memory_t dst, v4 = NULL;
  if (gap) { /* stored as plain (n, C): a vector like the reference's */
    MCK(dn_md_init(&p->md[i], ndd, dd, 0));
    MCK(dn_set_out(st, p, i));
    MCK(dn_bound_mem(st, p, &v4, &pl4, &st->buf[i], 0, 0));
    if (dn_md_eq(q, &pl4)) dst = v4;
    else MCK(dn_new_mem(st, p, &dst, q, dn_plan_buf(p, dn_md_size(q))));
  } else {
    p->md[i] = *q;
    MCK(dn_set_out(st, p, i));
    dst = p->mem[i];
  }
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, dst};
  MCK(dn_add_ws(st, p, i, a, &na));
  MCK(dn_add_prim(st, p, L, p->fpd[i], na, a, 0));
  if (gap && dst != v4) MCK(dn_add_reorder(st, p, L, dst, v4, 0, 0));
  return MC_OK;
}

static mc_status pool_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  const int gap = nd->kind == MC_NODE_GAP;
  dnnl_dims_t str = {nd->stride, nd->stride}, ker = {nd->k, nd->k}, pad = {nd->pad, nd->pad}, pr;
  dnnl_alg_kind_t alg = nd->kind == MC_NODE_MAXPOOL ? dnnl_pooling_max
                                                      : dnnl_pooling_avg_include_padding;
  pool_pad_r(nd, n0, pr);
  dnnl_memory_t dy = p->dmem[i];
  const dnnl_memory_desc_t *qd = dn_qmd(p->fpd[i], dnnl_query_dst_md);
  if (gap) {
    str[0] = str[1] = 1;
    ker[0] = n0->H;
    ker[1] = n0->W;
    pad[0] = pad[1] = pr[0] = pr[1] = 0;
    dnnl_dims_t d4 = {N, nd->C, 1, 1};
    dnnl_memory_desc_t pl4;
    dnnl_memory_t v4;
    TRY(dn_md_init(&pl4, 4, d4, 0));
    TRY(dn_bound_mem(st, p, &v4, &pl4, &st->dbuf[p->dsrc[i]], 0, 0));
    TRY(dn_as_md(st, p, L, v4, qd, cin, 1, &dy));
  }
  dnnl_pooling_desc_t pdsc;
  TRYD(dnnl_pooling_backward_desc_init(&pdsc, alg, &p->md[in], qd, str, ker, pad, pr));
  TRY(dn_create_bwd_pd(st, &pd, &pdsc, p->fpd[i]));
  first = !seen[in];
  seen[in] = 1;
  TRY(dn_diff_target(st, p, in, first, dn_qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
  if (p->ws[i]) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws[i]};
  TRY(dn_add_prim(st, p, L, pd, na, a, cin));
  if (deliver) TRY(dn_add_deliver(st, p, L, in, first, t, cin));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

const dn_lowering dn_lower_pool = {pool_fwd, pool_bwd};
