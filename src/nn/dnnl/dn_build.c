/* oneDNN backend: a plan's forward and backward step lists, built node by
 * node through the per-kind lowering table, plus what is not any one
 * node's: the output heads (forward: a reorder of each head into the
 * executor's plain output buffer; backward: the seed of each head's
 * gradient), which nodes a plan computes, and the diff buffers residual
 * sums share with their addends. */
#include "nn/dnnl/dn.h"

#include <stdlib.h>

static const dn_lowering *lowering(mc_node_kind k) {
  switch (k) {
  case MC_NODE_INPUT: return &dn_lower_input;
  case MC_NODE_NORMALIZE: return &dn_lower_normalize;
  case MC_NODE_CONV:
  case MC_NODE_LINEAR: return &dn_lower_conv;
  case MC_NODE_BN: return &dn_lower_bn;
  case MC_NODE_RELU: return &dn_lower_relu;
  case MC_NODE_MAXPOOL:
  case MC_NODE_AVGPOOL:
  case MC_NODE_GAP: return &dn_lower_pool;
  case MC_NODE_FLATTEN: return &dn_lower_flatten;
  case MC_NODE_ADD: return &dn_lower_add;
  case MC_NODE_CONCAT: return &dn_lower_concat;
  case MC_NODE_DROPOUT: return &dn_lower_dropout;
  default: return NULL;
  }
}

/* The nodes and heads a plan computes. */
static const char *plan_live(const dstate *st, const plan *p) {
  return p->all_heads ? st->e->live_train : st->e->live_eval;
}
static int plan_runs_head(const dstate *st, const plan *p, int k) {
  return p->all_heads || !st->e->m->heads[k].train_only;
}

mc_status dn_build_forward(dstate *st, plan *p) {
  const mc_model *m = st->e->m;
  const char *live = plan_live(st, p);
  for (int i = 0; i < m->n_nodes; i++) {
    if (!live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    const dn_lowering *lw = lowering(nd->kind);
    if (!lw || !lw->fwd)
      return mc_error(MC_EINTERNAL, "oneDNN backend: node '%s' of kind %s has no lowering", nd->name,
                      mc_node_kind_name(nd->kind));
    st->cur_node = i;
    mc_status rc = lw->fwd(st, p, i);
    if (rc) return mc_error(rc, "node '%s' (%s): %.1800s", nd->name, mc_node_kind_name(nd->kind), mc_errmsg());
  }
  /* every head, plain (n, classes), into the executor's output buffers */
  for (int k = 0; k < m->n_heads; k++) {
    if (!plan_runs_head(st, p, k)) continue;
    dnnl_dims_t ld = {p->n, m->classes};
    dnnl_memory_desc_t lmd;
    dnnl_memory_t lm;
    st->cur_node = m->heads[k].node;
    MCK(dn_md_init(&lmd, 2, ld, 0));
    MCK(dn_bound_mem(st, p, &lm, &lmd, &st->e->out[k], 0, 0));
    MCK(dn_add_reorder(st, p, &p->fwd, p->mem[m->heads[k].node], lm, 0, 0));
  }
  return MC_OK;
}

/* How many inputs of live nodes read node s; *who: the last such node. */
static int consumers(const mc_model *m, const char *live, int s, int *who) {
  int uses = 0;
  for (int k = s + 1; k < m->n_nodes; k++)
    if (live[k])
      for (int q = 0; q < m->nodes[k].n_in; q++)
        if (m->nodes[k].in[q] == s) {
          uses++;
          *who = k;
        }
  return uses;
}

int dn_sole_consumer(const dstate *st, const plan *p, int s) {
  int who = -1;
  return consumers(st->e->m, plan_live(st, p), s, &who) == 1 && exec_head_of(st->e, s) < 0 ? who : -1;
}

mc_status dn_build_backward(dstate *st, plan *p) {
  const mc_model *m = st->e->m;
  const int nn = m->n_nodes;
  const char *live = plan_live(st, p);
  mc_status rc = MC_OK;
  dn_bctx b = {mc_calloc_try((size_t)nn, 1), mc_calloc_try((size_t)nn, 1)};
  free(p->dsrc);
  p->dsrc = mc_calloc_try((size_t)nn, sizeof(int));
  if (!b.seen || !b.alias || !p->dsrc) {
    rc = mc_oom((size_t)nn * (2 + sizeof(int)), "oneDNN backend: the node tables of a backward pass");
    goto out;
  }
  /* An addend used nowhere else has exactly the sum's gradient: it shares
   * the sum's diff buffer instead of receiving a copy. */
  for (int i = nn - 1; i >= 0; i--) {
    p->dsrc[i] = i;
    const mc_node *nd = &m->nodes[i];
    if (exec_head_of(st->e, i) >= 0 || nd->kind != MC_NODE_ADD || !live[i]) continue;
    for (int j = 0; j < nd->n_in; j++) {
      const int s = nd->in[j];
      if (consumers(m, live, s, &(int){0}) == 1 && !exec_dx_only(m, s) && dn_md_eq(&p->md[s], &p->md[i])) b.alias[s] = 1;
    }
  }
  for (int i = nn - 1; i >= 1; i--)
    if (b.alias[i])
      for (int k = i + 1; k < nn; k++)
        if (m->nodes[k].kind == MC_NODE_ADD && live[k])
          for (int q = 0; q < m->nodes[k].n_in; q++)
            if (m->nodes[k].in[q] == i) p->dsrc[i] = p->dsrc[k];
  for (int i = 0; i < nn; i++) {
    if (!live[i]) continue;
    if (i == 0) {
      rc = dn_bound_mem(st, p, &p->dmem[0], &p->md[0], &st->dx, 0, 1);
    } else {
      const int d = p->dsrc[i];
      rc = dn_ensure(st, &st->dbuf[d], &st->dbufsz[d], dn_md_size(&p->md[i]));
      if (!rc) rc = dn_bound_mem(st, p, &p->dmem[i], &p->md[i], &st->dbuf[d], 0, 0);
    }
    if (rc) goto out;
  }
  /* seeds: each head's gradient (the caller's, or zeros) */
  for (int k = 0; k < m->n_heads && !rc; k++) {
    if (!plan_runs_head(st, p, k)) continue;
    const int h = m->heads[k].node;
    dnnl_dims_t ld = {p->n, m->classes};
    dnnl_memory_desc_t lmd;
    dnnl_memory_t lm;
    st->cur_node = h;
    if ((rc = dn_md_init(&lmd, 2, ld, 0)) || (rc = dn_bound_mem(st, p, &lm, &lmd, &st->dout[k], 0, 1))) goto out;
    rc = dn_add_deliver(st, p, &p->bwd, h, !b.seen[h], lm, 0);
    b.seen[h] = 1;
  }
  for (int i = nn - 1; i >= 1 && !rc; i--) {
    if (!live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    const dn_lowering *lw = lowering(nd->kind);
    if (!lw || !lw->bwd) {
      rc = mc_error(MC_EINTERNAL, "oneDNN backend: node '%s' of kind %s has no backward lowering", nd->name,
                    mc_node_kind_name(nd->kind));
      break;
    }
    st->cur_node = i;
    if ((rc = lw->bwd(st, p, &b, i)))
      rc = mc_error(rc, "node '%s' (%s), backward: %.1800s", nd->name, mc_node_kind_name(nd->kind), mc_errmsg());
  }
  if (!rc && p->oom)
    rc = mc_error(MC_ENOMEM, "oneDNN backend: out of memory allocating %zu bytes for a backward pass", p->oom);
out:
  free(b.seen);
  free(b.alias);
  if (rc == MC_OK) p->bwd_built = 1;
  else p->bwd.n = 0; /* a later call starts over (the plan frees what was made) */
  return rc;
}
