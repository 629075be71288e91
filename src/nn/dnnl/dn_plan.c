/* oneDNN backend: memory descriptors, memory objects bound to our buffers,
 * primitives and reorders as steps, and the plan cache (dn.h). */
#include "nn/dnnl/dn.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

mc_status dn_fail(const char *what, dnnl_status_t s, const char *file, int line) {
  const char *f = strrchr(file, '/');
  return mc_error(s == dnnl_out_of_memory ? MC_ENOMEM : MC_EINTERNAL, "oneDNN: %s failed (status %d, %s:%d)",
                  what, (int)s, f ? f + 1 : file, line);
}

/* ------------------------------------------------------------- helpers */

int64_t dn_numel(const mc_node *nd) { return nd->C * nd->H * nd->W; }

/* Logical dims of a node's output: (n, C) for vectors, (n, C, H, W) else. */
int dn_node_dims(const mc_node *nd, int64_t n, dnnl_dims_t d) {
  d[0] = n;
  d[1] = nd->C;
  if (nd->flat) return 2;
  d[2] = nd->H;
  d[3] = nd->W;
  return 4;
}

dnnl_format_tag_t dn_plain_tag(int nd) {
  return nd == 1 ? dnnl_a : nd == 2 ? dnnl_ab : nd == 3 ? dnnl_abc : dnnl_abcd;
}

mc_status dn_md_init(dnnl_memory_desc_t *md, int nd, const dnnl_dims_t d,
                         int any) {
  CK(dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32,
                                  any ? dnnl_format_tag_any : dn_plain_tag(nd)));
  return MC_OK;
}

mc_status dn_md_plain_of(dnnl_memory_desc_t *out, const dnnl_memory_desc_t *md) {
  return dn_md_init(out, md->ndims, md->dims, 0);
}

const dnnl_memory_desc_t *dn_qmd(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
  return dnnl_primitive_desc_query_md(pd, q, 0);
}

size_t dn_md_size(const dnnl_memory_desc_t *md) {
  return md ? dnnl_memory_desc_get_size(md) : 0;
}


const dnnl_memory_desc_t *dn_mem_md(const_dnnl_memory_t m) {
  const dnnl_memory_desc_t *md = NULL;
  const dnnl_status_t r = dnnl_memory_get_memory_desc(m, &md);
  MC_ASSERT(r == dnnl_success); /* only fails for a NULL memory object */
  return md;
}

float *dn_mem_ptr(const_dnnl_memory_t m) {
  void *h = NULL;
  const dnnl_status_t r = dnnl_memory_get_data_handle(m, &h);
  MC_ASSERT(r == dnnl_success);
  return h;
}

int dn_pd_is_ref(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
    return 0;
  return strstr(s, "ref") != NULL;
}

/* Grows *b to `need` bytes (contents lost); bumps the buffer generation so
 * every plan re-points its memory objects before its next run. */
mc_status dn_ensure(dstate *st, float **b, size_t *sz, size_t need) {
  if (need <= *sz) return MC_OK;
  free(*b);
  *sz = 0;
  st->gen++;
  if (!(*b = mc_aligned_alloc_try(need)))
    return mc_error(MC_ENOMEM, "oneDNN backend: out of memory allocating %zu bytes", need);
  *sz = need;
  return MC_OK;
}

mc_status dn_grow(void *arrp, int *cap, int n, size_t elem, const char *what) {
  if (n < *cap) return MC_OK;
  void *a;
  memcpy(&a, arrp, sizeof a); /* arrp is the address of some T *, not of a void * */
  const int nc = *cap ? 2 * *cap : 16;
  void *t = mc_realloc_try(a, elem * (size_t)nc);
  if (!t) return mc_oom(elem * (size_t)nc, "oneDNN backend: the plan's %s", what);
  memcpy(arrp, &t, sizeof t);
  *cap = nc;
  return MC_OK;
}

mc_status dn_push_step(steplist *L, step s) {
  PUSH(L->v, L->n, L->cap, s, "step list");
  return MC_OK;
}

/* A buffer owned by the plan.  Out of memory is recorded in p->oom and
 * reported when the step list is complete (building only records
 * pointers; nothing is written into them before the plan runs). */
float *dn_plan_buf(plan *p, size_t bytes) {
  if (dn_grow(&p->bufs, &p->capbufs, p->nbufs, sizeof *p->bufs, "buffer list")) {
    if (!p->oom) p->oom = sizeof *p->bufs * (size_t)(p->capbufs ? 2 * p->capbufs : 16);
    return NULL;
  }
  float *b = mc_aligned_alloc_try(bytes < 64 ? 64 : bytes);
  if (!b && !p->oom) p->oom = bytes;
  if (b) p->bufs[p->nbufs++] = b;
  return b;
}

mc_status dn_new_mem(dstate *st, plan *p, dnnl_memory_t *out,
                         const dnnl_memory_desc_t *md, void *handle) {
  const mc_status rc = dn_grow(&p->mems, &p->capmems, p->nmems, sizeof *p->mems, "memory list");
  if (rc) return rc;
  CK(dnnl_memory_create(out, md, st->eng, handle ? handle : DNNL_MEMORY_NONE));
  p->mems[p->nmems++] = *out;
  return MC_OK;
}

/* Memory object pointing at (*base + off) floats.  dynamic: *base is a
 * per-call pointer (theta, grad, dx, dlogits), re-set at every call;
 * static: one of our buffers, re-set when the buffer generation changes. */
mc_status dn_bound_mem(dstate *st, plan *p, dnnl_memory_t *out,
                           const dnnl_memory_desc_t *md, float **base,
                           size_t off, int dynamic) {
  MCK(dn_new_mem(st, p, out, md, NULL));
  binding b = {*out, base, off};
  if (dynamic) PUSH(p->db, p->ndb, p->capdb, b, "bindings");
  else PUSH(p->sb, p->nsb, p->capsb, b, "bindings");
  p->gen = 0;
  return MC_OK;
}

mc_status dn_mk_step(dstate *st, plan *p, step *s,
                         const_dnnl_primitive_desc_t pd, int nargs,
                         const dnnl_exec_arg_t *args, int need) {
  memset(s, 0, sizeof *s);
  s->kind = S_PRIM;
  s->node = st->cur_node;
  s->need = need;
  MCK(dn_grow(&p->prims, &p->capprims, p->nprims, sizeof *p->prims, "primitive list"));
  CK(dnnl_primitive_create(&s->prim, pd));
  p->prims[p->nprims++] = s->prim;
  MC_ASSERT(nargs < MAX_ARGS);
  memcpy(s->args, args, sizeof *args * (size_t)nargs);
  s->nargs = nargs;
  const dnnl_memory_desc_t *sp = dn_qmd(pd, dnnl_query_scratchpad_md);
  size_t sz = dn_md_size(sp);
  if (sz) {
    MCK(dn_ensure(st, &st->pad, &st->padsz, sz));
    dnnl_memory_t m;
    MCK(dn_bound_mem(st, p, &m, sp, &st->pad, 0, 0));
    s->args[s->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
  }
  return MC_OK;
}

mc_status dn_add_prim(dstate *st, plan *p, steplist *L,
                          const_dnnl_primitive_desc_t pd, int nargs,
                          const dnnl_exec_arg_t *args, int need) {
  step s;
  MCK(dn_mk_step(st, p, &s, pd, nargs, args, need));
  return dn_push_step(L, s);
}

mc_status dn_mk_reorder(dstate *st, plan *p, step *s, dnnl_memory_t src,
                            dnnl_memory_t dst, int sum, int need) {
  dnnl_primitive_desc_t pd;
  CK(dnnl_reorder_primitive_desc_create(&pd, dn_mem_md(src), st->eng, dn_mem_md(dst),
                                        st->eng, sum ? st->attr_sum : st->attr));
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
  mc_status r = dn_mk_step(st, p, s, pd, 2, a, need);
  dnnl_primitive_desc_destroy(pd);
  return r;
}

/* dst = src (sum = 0) or dst += src (sum = 1), any layouts. */
mc_status dn_add_reorder(dstate *st, plan *p, steplist *L, dnnl_memory_t src,
                             dnnl_memory_t dst, int sum, int need) {
  step s;
  MCK(dn_mk_reorder(st, p, &s, src, dst, sum, need));
  return dn_push_step(L, s);
}

/* `src` in layout `want`: src itself, or a plan-owned copy reordered at
 * this point of L (shared with earlier requests when `cache`). */
mc_status dn_as_md(dstate *st, plan *p, steplist *L, dnnl_memory_t src,
                       const dnnl_memory_desc_t *want, int need, int cache,
                       dnnl_memory_t *out) {
  if (dn_md_eq(dn_mem_md(src), want)) {
    *out = src;
    return MC_OK;
  }
  if (cache)
    for (int k = 0; k < p->ncv; k++)
      if (p->cv[k].src == src && (!p->cv[k].need || (need && !(need & ~p->cv[k].need))) &&
          dn_md_eq(dn_mem_md(p->cv[k].out), want)) {
        *out = p->cv[k].out;
        return MC_OK;
      }
  MCK(dn_new_mem(st, p, out, want, dn_plan_buf(p, dn_md_size(want))));
  MCK(dn_add_reorder(st, p, L, src, *out, 0, need));
  if (cache) {
    conv_entry c = {src, *out, need};
    PUSH(p->cv, p->ncv, p->capcv, c, "layout cache");
  }
  return MC_OK;
}

mc_status dn_set_out(dstate *st, plan *p, int i) {
  MCK(dn_ensure(st, &st->buf[i], &st->bufsz[i], dn_md_size(&p->md[i])));
  return dn_bound_mem(st, p, &p->mem[i], &p->md[i], &st->buf[i], 0, 0);
}

/* Workspace of a forward primitive (max pooling), kept for backward. */
mc_status dn_add_ws(dstate *st, plan *p, int i, dnnl_exec_arg_t *a, int *na) {
  const dnnl_memory_desc_t *w = dn_qmd(p->fpd[i], dnnl_query_workspace_md);
  if (!dn_md_size(w)) return MC_OK;
  MCK(dn_new_mem(st, p, &p->ws[i], w, dn_plan_buf(p, dn_md_size(w))));
  a[(*na)++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws[i]};
  return MC_OK;
}

mc_status dn_push_custom(steplist *L, int kind, int node, dnnl_memory_t a,
                        dnnl_memory_t b, int64_t count, int need) {
  step s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  s.node = node;
  s.a = a;
  s.b = b;
  s.count = count;
  s.need = need;
  return dn_push_step(L, s);
}


/* md is the dense layout `tag` of its own dims. */
int dn_md_is(const dnnl_memory_desc_t *md, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t t;
  return dnnl_memory_desc_init_by_tag(&t, md->ndims, md->dims, dnnl_f32, tag) == dnnl_success &&
         dn_md_eq(md, &t);
}

/* ------------------------------------------------------------ backward */

/* Where a primitive should write the gradient for input node s: straight
 * into s's diff buffer when it is the first writer and the layouts agree,
 * else the shared scratch followed by add_deliver. */
mc_status dn_diff_target(dstate *st, plan *p, int s, int first,
                             const dnnl_memory_desc_t *q, dnnl_memory_t *t,
                             int *deliver) {
  if (s != 0 && first && dn_md_eq(q, &p->md[s])) {
    *t = p->dmem[s];
    *deliver = 0;
    return MC_OK;
  }
  *deliver = 1;
  MCK(dn_ensure(st, &st->dscr, &st->dscrsz, dn_md_size(q)));
  return dn_bound_mem(st, p, t, q, &st->dscr, 0, 0);
}

/* diff[s] = src (first writer) or diff[s] += src; the caller's dx always
 * accumulates. */
mc_status dn_add_deliver(dstate *st, plan *p, steplist *L, int s, int first,
                             dnnl_memory_t src, int need) {
  return dn_add_reorder(st, p, L, src, p->dmem[s], s == 0 || !first, need);
}

mc_status dn_create_bwd_pd(dstate *st, dnnl_primitive_desc_t *pd, const void *desc,
                               const_dnnl_primitive_desc_t hint) {
  CK(dnnl_primitive_desc_create(pd, desc, st->attr, st->eng, hint));
  return MC_OK;
}

/* --------------------------------------------------------------- plans */

static void steps_free(steplist *L) {
  free(L->v);
  memset(L, 0, sizeof *L);
}

void dn_plan_free(plan *p) {
  if (!p) return;
  for (int k = 0; k < p->nprims; k++) dnnl_primitive_destroy(p->prims[k]);
  for (int k = 0; k < p->nmems; k++) dnnl_memory_destroy(p->mems[k]);
  for (int k = 0; k < p->nbufs; k++) free(p->bufs[k]);
  for (int i = 0; p->fpd && i < p->nn; i++) /* fpd is NULL when creating the plan ran out of memory */
    if (p->fpd[i]) dnnl_primitive_desc_destroy(p->fpd[i]);
  steps_free(&p->fwd);
  steps_free(&p->bwd);
  free(p->prims);
  free(p->mems);
  free(p->bufs);
  free(p->cv);
  free(p->sb);
  free(p->db);
  free(p->rd);
  free(p->rc);
  free(p->dsrc);
  free(p->md);
  free(p->mem);
  free(p->dmem);
  free(p->fsrc);
  free(p->wplain);
  free(p->ws);
  free(p->mean);
  free(p->var);
  free(p->shift);
  free(p->fpd);
  free(p->wino_u);
  free(p->wino_w);
  free(p->wino_ok);
  free(p->wino_du);
  free(p->wino_dw);
  free(p->wino_dok);
  free(p->bnsums);
  free(p->fold);
  free(p->fold_w);
  free(p->fold_ok);
  free(p->add_relu);
  free(p);
}

mc_status dn_plan_create(dstate *st, int64_t n, int kind, int all_heads, int nthr, plan **out) {
  const int nn = st->e->m->n_nodes;
  plan *p = mc_calloc_try(1, sizeof *p);
  if (!p) return mc_oom(sizeof *p, "oneDNN backend: a plan of %lld rows", (long long)n);
  p->n = n;
  p->kind = kind;
  p->all_heads = kind == PK_TRAIN || all_heads;
  p->nthr = nthr;
  p->nn = nn;
  size_t bytes = 0;
#define PLAN_ARRAY(f, elem) (bytes += (size_t)nn * (elem), p->f = mc_calloc_try((size_t)nn, (elem)))
  if (!PLAN_ARRAY(md, sizeof *p->md) || !PLAN_ARRAY(mem, sizeof *p->mem) || !PLAN_ARRAY(dmem, sizeof *p->dmem) ||
      !PLAN_ARRAY(fsrc, sizeof *p->fsrc) || !PLAN_ARRAY(wplain, sizeof *p->wplain) || !PLAN_ARRAY(ws, sizeof *p->ws) ||
      !PLAN_ARRAY(mean, sizeof *p->mean) || !PLAN_ARRAY(var, sizeof *p->var) || !PLAN_ARRAY(shift, sizeof *p->shift) ||
      !PLAN_ARRAY(fpd, sizeof *p->fpd) || !PLAN_ARRAY(wino_u, sizeof *p->wino_u) ||
      !PLAN_ARRAY(wino_w, sizeof *p->wino_w) || !PLAN_ARRAY(wino_ok, 1) || !PLAN_ARRAY(wino_du, sizeof *p->wino_du) ||
      !PLAN_ARRAY(wino_dw, sizeof *p->wino_dw) || !PLAN_ARRAY(wino_dok, 1) || !PLAN_ARRAY(bnsums, sizeof *p->bnsums) ||
      !PLAN_ARRAY(rd, sizeof *p->rd) || !PLAN_ARRAY(rc, sizeof *p->rc) || !PLAN_ARRAY(fold, sizeof *p->fold) ||
      !PLAN_ARRAY(fold_w, sizeof *p->fold_w) || !PLAN_ARRAY(fold_ok, 1) ||
      !PLAN_ARRAY(add_relu, sizeof *p->add_relu)) {
    dn_plan_free(p);
    return mc_oom(bytes, "oneDNN backend: the per-node tables of a plan of %lld rows", (long long)n);
  }
#undef PLAN_ARRAY
  mc_status rc = dn_build_forward(st, p);
  if (!rc && p->oom)
    rc = mc_error(MC_ENOMEM, "oneDNN backend: out of memory allocating %zu bytes for a plan of %lld rows", p->oom,
                  (long long)n);
  if (rc) {
    dn_plan_free(p);
    return rc;
  }
  *out = p;
  return MC_OK;
}

mc_status dn_get_plan(dstate *st, int64_t n, int kind, int all_heads, plan **out) {
  const int nthr = omp_get_max_threads();
  int slot = -1;
  for (int k = 0; k < MAX_PLANS; k++) {
    plan *p = st->plans[k];
    if (p && p->n == n && p->kind == kind && p->all_heads == (kind == PK_TRAIN || all_heads) && p->nthr == nthr) {
      p->used = ++st->tick;
      *out = p;
      return MC_OK;
    }
  }
  /* free slot, else the least recently used */
  for (int k = 0; k < MAX_PLANS && slot < 0; k++)
    if (!st->plans[k]) slot = k;
  if (slot < 0) {
    slot = 0;
    for (int k = 1; k < MAX_PLANS; k++)
      if (st->plans[k]->used < st->plans[slot]->used) slot = k;
    if (st->cur == st->plans[slot]) st->cur = NULL;
    dn_plan_free(st->plans[slot]);
    st->plans[slot] = NULL;
  }
  plan *p = NULL;
  mc_status rc = dn_plan_create(st, n, kind, all_heads, nthr, &p);
  if (rc) return rc;
  p->used = ++st->tick;
  st->plans[slot] = p;
  *out = p;
  return MC_OK;
}

mc_status dn_bind(dstate *st, plan *p) {
  if (p->gen != st->gen) {
    for (int k = 0; k < p->nsb; k++)
      if (*p->sb[k].base) CK(dnnl_memory_set_data_handle(p->sb[k].mem, *p->sb[k].base + p->sb[k].off));
    p->gen = st->gen;
  }
  for (int k = 0; k < p->ndb; k++)
    if (*p->db[k].base) CK(dnnl_memory_set_data_handle(p->db[k].mem, *p->db[k].base + p->db[k].off));
  return MC_OK;
}

int dn_need_in(const mc_model *m, int i, int s) {
  return exec_dx_only(m, i) || exec_dx_only(m, s) ? DN_DX : 0;
}