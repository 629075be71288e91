/* oneDNN backend: the input copy, flatten (a reorder to plain layout),
 * residual sums (our own step when the addends share a layout, writing
 * the output of a ReLU that is the sum's only reader too: relu_bwd reads
 * only that output) and channel concatenation, forward and backward. */
#include "nn/dnnl/dn.h"

#include <stdlib.h>

static mc_status input_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  MCK(dn_md_init(&p->md[i], ndd, dd, 0));
  MCK(dn_set_out(st, p, i));
  return dn_push_custom(L, S_INPUT, i, NULL, p->mem[i], N * dn_numel(nd), 0);
}

static mc_status flatten_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  MCK(dn_md_init(&p->md[i], ndd, dd, 0));
  MCK(dn_set_out(st, p, i));
  dnnl_memory_desc_t pl;
  dnnl_memory_t v;
  MCK(dn_md_plain_of(&pl, &p->md[in]));
  MCK(dn_bound_mem(st, p, &v, &pl, &st->buf[i], 0, 0));
  MCK(dn_add_reorder(st, p, L, p->mem[in], v, 0, 0));
  return MC_OK;
}

static mc_status flatten_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  dnnl_memory_desc_t pl;
  dnnl_memory_t v;
  first = !seen[in];
  seen[in] = 1;
  TRY(dn_md_plain_of(&pl, &p->md[in]));
  TRY(dn_bound_mem(st, p, &v, &pl, &st->dbuf[p->dsrc[i]], 0, 0));
  TRY(dn_add_deliver(st, p, L, in, first, v, cin));
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

static mc_status join_fwd(dstate *st, plan *p, int i) {
  FWD_PROLOGUE;
  dnnl_memory_desc_t srcs[MC_MAX_INPUTS];
  float sc[MC_MAX_INPUTS];
  for (int j = 0; j < nd->n_in; j++) {
    srcs[j] = p->md[nd->in[j]];
    sc[j] = 1.f;
  }
  int same = 1; /* every addend in one layout: our own step, with the ReLU after it */
  for (int j = 1; j < nd->n_in; j++) same = same && dn_md_eq(&srcs[j], &srcs[0]);
  if (nd->kind == MC_NODE_ADD && same) {
    p->md[i] = p->md[in];
    MCK(dn_set_out(st, p, i));
    const int r = st->fold ? dn_sole_consumer(st, p, i) : -1;
    const int relu = r >= 0 && m->nodes[r].kind == MC_NODE_RELU;
    if (relu) { /* the ReLU's output is written here; relu_fwd only makes its descriptor */
      p->add_relu[i] = r + 1;
      p->add_relu[r] = -(i + 1);
      p->md[r] = p->md[i];
      MCK(dn_set_out(st, p, r));
    }
    MCK(dn_push_custom(L, S_ADD, i, NULL, p->mem[relu ? r : i], (int64_t)(dn_md_size(&p->md[i]) / sizeof(float)),
                       0));
    L->v[L->n - 1].flag = relu;
    return MC_OK;
  }
  if (nd->kind == MC_NODE_ADD) {
    CK(dnnl_sum_primitive_desc_create(&p->fpd[i], &p->md[in], nd->n_in, sc, srcs, st->attr,
                                      st->eng));
    p->md[i] = *dn_qmd(p->fpd[i], dnnl_query_dst_md);
  } else {
    CK(dnnl_concat_primitive_desc_create(&p->fpd[i], NULL, nd->n_in, 1, srcs, st->attr,
                                         st->eng));
    dnnl_memory_desc_t dst = *dn_qmd(p->fpd[i], dnnl_query_dst_md), sub;
    /* backward takes channel slices of the gradient: the layout must
     * allow sub-memories at every branch offset, else use plain */
    int ok = 1;
    dnnl_dims_t sdims, offs = {0};
    memcpy(sdims, dst.dims, sizeof sdims);
    for (int j = 0; j < nd->n_in; j++) {
      sdims[1] = m->nodes[nd->in[j]].C;
      if (dnnl_memory_desc_init_submemory(&sub, &dst, sdims, offs) != dnnl_success) ok = 0;
      offs[1] += sdims[1];
    }
    if (!ok) {
      dnnl_primitive_desc_destroy(p->fpd[i]);
      p->fpd[i] = NULL;
      MCK(dn_md_init(&dst, ndd, dd, 0));
      CK(dnnl_concat_primitive_desc_create(&p->fpd[i], &dst, nd->n_in, 1, srcs, st->attr,
                                           st->eng));
    }
    p->md[i] = dst;
  }
  MCK(dn_set_out(st, p, i));
  for (int j = 0; j < nd->n_in; j++)
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + j, p->mem[nd->in[j]]};
  a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
  MCK(dn_add_prim(st, p, L, p->fpd[i], na, a, 0));
  return MC_OK;
}

static mc_status join_bwd(dstate *st, plan *p, dn_bctx *b, int i) {
  BWD_PROLOGUE;
  int64_t off = 0;
  for (int j = 0; j < nd->n_in; j++) {
    const int s = nd->in[j];
    const int cs = dn_need_in(m, i, s);
    first = !seen[s];
    seen[s] = 1;
    if (alias[s]) continue; /* shares this node's diff buffer */
    dnnl_memory_t src = p->dmem[i];
    if (nd->kind == MC_NODE_CONCAT) {
      dnnl_dims_t sdims, offs = {0};
      dnnl_memory_desc_t sub;
      memcpy(sdims, p->md[i].dims, sizeof sdims);
      sdims[1] = m->nodes[s].C;
      offs[1] = off;
      off += sdims[1];
      TRYD(dnnl_memory_desc_init_submemory(&sub, &p->md[i], sdims, offs));
      TRY(dn_bound_mem(st, p, &src, &sub, &st->dbuf[p->dsrc[i]], 0, 0));
    }
    TRY(dn_add_deliver(st, p, L, s, first, src, cs));
  }
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

const dn_lowering dn_lower_input = {input_fwd, NULL};
const dn_lowering dn_lower_flatten = {flatten_fwd, flatten_bwd};
const dn_lowering dn_lower_add = {join_fwd, join_bwd};
const dn_lowering dn_lower_concat = {join_fwd, join_bwd};
