/* The oneDNN backend (C API, CPU engine, OpenMP runtime): its entry in the
 * backend table.
 *
 * Same semantics as the reference backend, node by node; only the storage
 * differs.  A *plan* holds everything for one (batch rows, plan kind,
 * thread count): for every node the memory descriptor its output is stored
 * in -- whatever the producing primitive prefers with format_tag_any, e.g.
 * nChw8c on AVX2, nChw16c on AVX-512 --, the primitives, and two step lists
 * (forward, backward) built once and then only executed.  Plans are cached
 * (MAX_PLANS, least recently used out), so the full batch and a partial last
 * batch, in train and eval mode, each keep theirs.  A plan computes only the
 * nodes its heads need (eval plans skip train-only heads unless the
 * forward asked for MC_MODE_EVAL_ALL_HEADS).  Layout
 * conversions (reorders) are inserted only where a consumer wants another
 * layout than its producer made: the network input, flatten, global average
 * pooling, dropout (done in plain layout so its mask is drawn in the
 * reference's NCHW order, from the same generator), the heads, and reads.
 *
 * theta stays plain (PyTorch) layout: weights are reordered into the
 * primitives' formats at every forward (theta may change every step) and
 * weight gradients are reordered back with a sum post-op, i.e. accumulated
 * into grad.  Activation gradients: the first consumer (in backward order)
 * of a node writes its diff buffer, later consumers accumulate into it
 * (reorder with sum); an addend used only by its sum shares the sum's diff
 * buffer; the caller's dx always accumulates.  Steps carry a condition
 * (DN_DX, DN_GRAD): a backward without dx skips what only the input
 * gradient needs, one without grad every weight-gradient primitive.
 *
 * Fusion: a BN whose only consumer is a ReLU runs as one primitive
 * (dnnl_fuse_norm_relu, all modes, forward and backward); the BN's own
 * output is recomputed from the saved statistics and gamma/beta only if
 * it is read.  In eval plans the BN after a convolution (with that ReLU)
 * is folded into the convolution, Winograd or oneDNN's (lower_conv.c);
 * in every plan
 * a residual sum writes the output of the ReLU after it (lower_join.c).
 * MC_DNNL_NOFUSE=1 turns these three off.
 *
 * BN: oneDNN gives the batch mean and population variance; the running
 * statistics are updated here (unbiased variance, momentum of the
 * reference).
 *
 * Memory: node activations and diffs are shared by all plans and only grow
 * when a plan is built; one user-mode scratchpad serves every primitive.
 * Steady-state forward/backward calls allocate nothing here (oneDNN itself
 * still allocates small argument maps per execution, and its GEMM-based
 * inner product packs into malloc'ed buffers).  Every failure -- a plan
 * oneDNN cannot build, an allocation, a primitive's execution -- comes back
 * as a status naming the node. */
#include "nn/dnnl/dn.h"
#include "nn/kernels/kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int dn_be_score(const mc_model *m) {
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_CONV) return 2;
  return 1; /* runs it, but OpenBLAS's GEMMs beat its inner product on AVX2 */
}

static void dn_be_free(mc_exec *e) {
  dstate *st = e->impl;
  if (!st) return;
  const int nn = e->m->n_nodes;
  for (int k = 0; k < MAX_PLANS; k++) dn_plan_free(st->plans[k]);
  float **const per_node[] = {st->buf, st->dbuf, st->bnmean, st->bnvar, st->mask};
  for (size_t a = 0; a < sizeof per_node / sizeof *per_node; a++) /* NULL after a failed init */
    for (int i = 0; per_node[a] && i < nn; i++) free(per_node[a][i]);
  free(st->buf);
  free(st->dbuf);
  free(st->bufsz);
  free(st->dbufsz);
  free(st->bnmean);
  free(st->bnvar);
  free(st->mask);
  free(st->mask_id);
  free(st->relu_of);
  free(st->fused);
  free(st->pad);
  free(st->wscr);
  free(st->dscr);
  free(st->dout);
  free(st->zeros);
  if (st->attr) dnnl_primitive_attr_destroy(st->attr);
  if (st->attr_sum) dnnl_primitive_attr_destroy(st->attr_sum);
  if (st->strm) dnnl_stream_destroy(st->strm);
  if (st->eng) dnnl_engine_destroy(st->eng);
  free(st);
  e->impl = NULL;
}

static mc_status init_engine(dstate *st) {
  dnnl_post_ops_t po;
  CK(dnnl_engine_create(&st->eng, dnnl_cpu, 0));
  CK(dnnl_stream_create(&st->strm, st->eng, dnnl_stream_default_flags));
  CK(dnnl_primitive_attr_create(&st->attr));
  CK(dnnl_primitive_attr_set_scratchpad_mode(st->attr, dnnl_scratchpad_mode_user));
  CK(dnnl_primitive_attr_create(&st->attr_sum));
  CK(dnnl_primitive_attr_set_scratchpad_mode(st->attr_sum, dnnl_scratchpad_mode_user));
  CK(dnnl_post_ops_create(&po));
  dnnl_status_t s = dnnl_post_ops_append_sum(po, 1.f);
  if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(st->attr_sum, po);
  dnnl_post_ops_destroy(po);
  CK(s);
  return MC_OK;
}

static mc_status dn_be_init(mc_exec *e) {
  const mc_model *m = e->m;
  const int nn = m->n_nodes;
  dstate *st = mc_calloc_try(1, sizeof *st);
  if (!st) return mc_oom(sizeof *st, "the oneDNN backend state");
  e->impl = st;
  st->e = e;
  st->gen = 1;
  size_t bytes = (size_t)nn * (6 * sizeof(float *) + 2 * sizeof(size_t) + 2 * sizeof(int) + 1);
  st->buf = mc_calloc_try((size_t)nn, sizeof(float *));
  st->dbuf = mc_calloc_try((size_t)nn, sizeof(float *));
  st->bufsz = mc_calloc_try((size_t)nn, sizeof(size_t));
  st->dbufsz = mc_calloc_try((size_t)nn, sizeof(size_t));
  st->bnmean = mc_calloc_try((size_t)nn, sizeof(float *));
  st->bnvar = mc_calloc_try((size_t)nn, sizeof(float *));
  st->mask = mc_calloc_try((size_t)nn, sizeof(float *));
  st->mask_id = mc_calloc_try((size_t)nn, sizeof(int));
  st->relu_of = mc_calloc_try((size_t)nn, sizeof(int));
  st->fused = mc_calloc_try((size_t)nn, 1);
  if (!st->buf || !st->dbuf || !st->bufsz || !st->dbufsz || !st->bnmean || !st->bnvar || !st->mask ||
      !st->mask_id || !st->relu_of || !st->fused)
    return mc_oom(bytes, "the oneDNN backend's per-node tables (%d nodes)", nn);
  if (!(st->dout = mc_calloc_try((size_t)m->n_heads, sizeof(float *))))
    return mc_oom(sizeof(float *) * (size_t)m->n_heads, "the oneDNN backend's output heads");
  bytes = sizeof(float) * (size_t)(e->batch * m->classes);
  if (!(st->zeros = mc_aligned_alloc_try(bytes)))
    return mc_oom(bytes, "the oneDNN backend's zero output gradient (%lld x %lld)", (long long)e->batch,
                  (long long)m->classes);
  for (int i = 0; i < nn; i++) {
    const mc_node *nd = &m->nodes[i];
    bytes = sizeof(float) * (size_t)nd->C;
    if (nd->kind == MC_NODE_BN &&
        (!(st->bnmean[i] = mc_aligned_alloc_try(bytes)) || !(st->bnvar[i] = mc_aligned_alloc_try(bytes))))
      return mc_oom(bytes, "the oneDNN backend's statistics of node '%s'", nd->name);
    bytes = sizeof(float) * (size_t)(e->batch * dn_numel(nd));
    if (nd->kind == MC_NODE_DROPOUT && !(st->mask[i] = mc_aligned_alloc_try(bytes)))
      return mc_oom(bytes, "the oneDNN backend's dropout mask of node '%s'", nd->name);
  }
  const char *wv = getenv("MC_WINO");
  st->wino = mc_kern_wino_available() && !(wv && *wv == '0');
  const char *wd = getenv("MC_WINO_DW");
  st->wino_dw = st->wino && !(wd && *wd == '0');
  const char *nf = getenv("MC_DNNL_NOFUSE");
  st->fold = !(nf && *nf && *nf != '0');
  for (int i = 0; i < nn; i++) {
    st->relu_of[i] = -1;
    if (m->nodes[i].kind != MC_NODE_BN || (nf && *nf && *nf != '0')) continue;
    int users = 0, r = -1;
    for (int j = i + 1; j < nn; j++)
      for (int k = 0; k < m->nodes[j].n_in; k++)
        if (m->nodes[j].in[k] == i) {
          users++;
          r = j;
        }
    if (users == 1 && m->nodes[r].kind == MC_NODE_RELU) {
      st->relu_of[i] = r;
      st->fused[r] = 1;
    }
  }
  mc_status rc = init_engine(st);
  if (rc) return rc;
  /* build a training plan for 2 rows now, so an unsupported model or
   * machine is reported here rather than at the first forward; real plans
   * are built by the calls that need them (an eval-only user never pays
   * for full-batch training buffers) */
  plan *p = NULL;
  rc = dn_plan_create(st, e->batch < 2 ? e->batch : 2, PK_TRAIN, 1, omp_get_max_threads(), &p);
  if (rc) return rc;
  dn_plan_free(p);
  return MC_OK;
}

static mc_status dn_be_forward(mc_exec *e, const float *theta, float *state, const float *x) {
  dstate *st = e->impl;
  const mc_mode mode = e->mode;
  plan *p = NULL;
  st->cur = NULL;
  MCK(dn_get_plan(st, e->n, mode == MC_MODE_EVAL ? PK_EVAL : mode == MC_MODE_TRAIN ? PK_TRAIN : PK_RECOMPUTE,
                  e->all_heads, &p));
  st->cur = p;
  st->theta = (float *)theta;
  st->state = state;
  st->x = x;
  st->grad = st->dx = NULL;
  MCK(dn_bind(st, p));
  return dn_run(st, &p->fwd);
}

static mc_status dn_be_backward(mc_exec *e, const float *theta, const float *const *dout, float *grad, float *dx) {
  dstate *st = e->impl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && p->n == e->n);
  if (!p->bwd_built) MCK(dn_build_backward(st, p));
  st->theta = (float *)theta;
  st->grad = grad;
  st->dx = dx;
  for (int k = 0; k < e->m->n_heads; k++) st->dout[k] = dout[k] ? (float *)dout[k] : st->zeros;
  mc_status rc = dn_bind(st, p);
  if (!rc) rc = dn_run(st, &p->bwd);
  st->dx = st->grad = NULL;
  return rc;
}

static int dn_be_view(mc_exec *e, int node, mc_act_view *v) {
  dstate *st = e->impl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && node >= 0 && node < p->nn);
  if (st->relu_of && st->relu_of[node] >= 0) return -1; /* fused BN: not stored */
  if (p->fold[node] > 0 || p->add_relu[node] > 0) return -1; /* folded conv, sum with its ReLU: not stored */
  const dnnl_memory_desc_t *md = &p->md[node];
  const mc_node *nd = &st->e->m->nodes[node];
  if (md->format_kind != dnnl_blocked || (md->ndims != 2 && md->ndims != 4)) return -1;
  const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
  int64_t block = 1;
  if (b->inner_nblks == 1 && b->inner_idxs[0] == 1) block = b->inner_blks[0];
  else if (b->inner_nblks != 0) return -1;
  if (block > 1 && b->strides[1] % block) return -1;
  int64_t ss = 0;
  if (md->ndims == 4) {
    if (b->strides[2] != nd->W * b->strides[3]) return -1; /* h, w not one index */
    ss = b->strides[3];
  }
  *v = (mc_act_view){dn_mem_ptr(p->mem[node]) + md->offset0, block, b->strides[0], b->strides[1], ss};
  return 0;
}

/* One of our own steps, outside the plan's lists (to recompute a node a
 * fused forward did not store). */
static mc_status run_one(dstate *st, plan *p, step s) {
  const steplist one = {&s, 1, 1};
  MCK(dn_bind(st, p));
  return dn_run(st, &one);
}

static mc_status dn_be_read(mc_exec *e, int node, float *out) {
  dstate *st = e->impl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && node >= 0 && node < p->nn);
  const int conv = p->fold[node] > 0 ? node : p->fold[node] < 0 && st->relu_of[node] >= 0 ? -p->fold[node] - 1 : -1;
  if (conv >= 0 && dn_wino_fits(st, p, conv)) /* folded conv: its output from the weights its forward used */
    MCK(run_one(st, p, (step){.kind = S_WINO, .node = conv, .flag = WINO_SAVED, .a = p->fsrc[conv], .b = p->mem[conv]}));
  else if (conv >= 0) /* a direct one: its plain forward (the weights in its layout are the forward's) */
    MCK(run_one(st, p, p->rc[conv]));
  if (p->add_relu[node] > 0) /* sum that wrote its ReLU's output: the sum again */
    MCK(run_one(st, p, (step){.kind = S_ADD, .node = node, .b = p->mem[node],
                              .count = (int64_t)(dn_md_size(&p->md[node]) / sizeof(float))}));
  if (st->relu_of && st->relu_of[node] >= 0) { /* fused BN: recompute its output */
    step *r = &p->rc[node];
    st->cur_node = node;
    if (!r->prim) MCK(dn_bn_recompute_step(st, p, node, r));
    MCK(dn_bind(st, p));
    CK(dnnl_primitive_execute(r->prim, st->strm, r->nargs, r->args));
  }
  step *s = &p->rd[node];
  if (!s->prim) {
    dnnl_memory_desc_t pl;
    dnnl_memory_t dst;
    st->cur_node = node;
    MCK(dn_md_plain_of(&pl, &p->md[node]));
    MCK(dn_new_mem(st, p, &dst, &pl, NULL));
    MCK(dn_mk_reorder(st, p, s, p->mem[node], dst, 0, 0));
    s->b = dst;
  }
  MCK(dn_bind(st, p));
  CK(dnnl_memory_set_data_handle(s->b, out));
  CK(dnnl_primitive_execute(s->prim, st->strm, s->nargs, s->args));
  CK(dnnl_stream_wait(st->strm));
  return MC_OK;
}

static void dn_be_info(FILE *f) {
  const dnnl_version_t *v = dnnl_version();
  static const char *isa[] = {"all", "sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni",
                              "avx512_core_bf16", "avx512_core_amx"};
  const unsigned cur = (unsigned)dnnl_get_effective_cpu_isa();
  const char *name = "other";
  static const unsigned vals[] = {dnnl_cpu_isa_all, dnnl_cpu_isa_sse41, dnnl_cpu_isa_avx, dnnl_cpu_isa_avx2,
                                  dnnl_cpu_isa_avx2_vnni, dnnl_cpu_isa_avx512_core,
                                  dnnl_cpu_isa_avx512_core_vnni, dnnl_cpu_isa_avx512_core_bf16,
                                  dnnl_cpu_isa_avx512_core_amx};
  for (size_t k = 0; k < sizeof vals / sizeof *vals; k++)
    if (vals[k] == cur) name = isa[k];
  fprintf(f, "backend dnnl: oneDNN %d.%d.%d, ISA in use: %s (DNNL_MAX_CPU_ISA caps it)\n", v->major, v->minor,
          v->patch, name);
}

const mc_backend_ops mc_backend_dnnl = {
    .name = "dnnl",
    .alias = "onednn",
    .score = dn_be_score,
    .init = dn_be_init,
    .free = dn_be_free,
    .forward = dn_be_forward,
    .backward = dn_be_backward,
    .read = dn_be_read,
    .view = dn_be_view,
    .info = dn_be_info,
};
