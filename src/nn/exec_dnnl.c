/* oneDNN fast path of the executor (C API, CPU engine, OpenMP runtime).
 *
 * Same semantics as the reference path in exec.c, node by node; only the
 * storage differs.  A *plan* holds everything for one (batch rows, BN mode,
 * thread count): for every node the memory descriptor its output is stored
 * in -- whatever the producing primitive prefers with format_tag_any, e.g.
 * nChw8c on AVX2, nChw16c on AVX-512 --, the primitives, and two step lists
 * (forward, backward) built once and then only executed.  Plans are cached
 * (MAX_PLANS, least recently used out), so the full batch and a partial last
 * batch, in train and eval mode, each keep theirs.  Layout conversions
 * (reorders) are inserted only where a consumer wants another layout than
 * its producer made: the network input, flatten, global average pooling,
 * dropout (done in plain layout so its mask is drawn in the reference's NCHW
 * order, from the same generator), the logits, and dnnl_exec_read.
 *
 * theta stays plain (PyTorch) layout: weights are reordered into the
 * primitives' formats at every forward (theta may change every step) and
 * weight gradients are reordered back with a sum post-op, i.e. accumulated
 * into grad.  Activation gradients: the first consumer (in backward order)
 * of a node writes its diff buffer, later consumers accumulate into it
 * (reorder with sum); an addend used only by its sum shares the sum's diff
 * buffer; the caller's dx always accumulates, as in exec.c.
 *
 * Fusion: a BN whose only consumer is a ReLU runs as one primitive
 * (dnnl_fuse_norm_relu, all modes, forward and backward); the BN's own
 * output is recomputed from the saved statistics and gamma/beta only if
 * dnnl_exec_read asks for it.  MC_DNNL_NOFUSE=1 turns this off.
 *
 * BN: oneDNN gives the batch mean and population variance; the running
 * statistics are updated here (unbiased variance, momentum of exec.c).
 *
 * Memory: node activations and diffs are shared by all plans and only grow
 * when a plan is built; one user-mode scratchpad serves every primitive.
 * Steady-state forward/backward calls allocate nothing here (oneDNN itself
 * still allocates small argument maps per execution, and its GEMM-based
 * inner product packs into malloc'ed buffers). */
#include "exec_internal.h"
#include "ops.h"
#include "wino.h"

#include <dnnl.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 16
#define MAX_PLANS 4

enum {
  S_PRIM,     /* execute a primitive */
  S_INPUT,    /* copy x into the input node's buffer */
  S_NORM_F,   /* input normalisation, plain layout */
  S_NORM_B,
  S_DROP_F,   /* dropout, plain layout */
  S_DROP_B,
  S_BN_EVAL,  /* running stats -> mean/var buffers (eval) */
  S_BN_STATS, /* batch mean/var -> running stats (train modes) */
  S_ADDVEC,   /* grad[off..off+count) += a */
  S_WINO,     /* 3x3 stride-1 conv forward by Winograd (wino.c), a -> b;
                 count > 0: also the channel sums of BN node count - 1 */
  S_BN_BATCH, /* BN_RECOMPUTE plans: batch mean/var of a (sums first unless flag) */
  S_SAVE      /* b[0..count) = theta[off..off+count) */
};

typedef struct {
  int kind, node;
  int cond; /* 1: only when the caller asked for dx */
  int flag; /* S_NORM_B: overwrite (1) or accumulate (0) */
  dnnl_primitive_t prim;
  int nargs;
  dnnl_exec_arg_t args[MAX_ARGS];
  dnnl_memory_t a, b;
  size_t off;
  int64_t count;
} step;

typedef struct {
  step *v;
  int n, cap;
} steplist;

/* A memory object whose handle is (*base + off), re-set when *base moves. */
typedef struct {
  dnnl_memory_t mem;
  float **base;
  size_t off;
} binding;

typedef struct {
  dnnl_memory_t src, out;
  int cond;
} conv_entry;

typedef struct {
  int64_t n;
  int kind, nthr; /* kind: PK_* */
  unsigned gen; /* st->gen the static bindings were last set for */
  unsigned long used;
  int bwd_built;
  int nn;
  dnnl_memory_desc_t *md;           /* storage layout of each node's output */
  dnnl_memory_t *mem, *dmem;        /* output and its gradient */
  dnnl_memory_t *fsrc;              /* conv/linear: src as the fwd read it;
                                       fused BN: gamma saved at forward */
  dnnl_memory_t *wplain;            /* conv/linear weight, BN gamma (theta) */
  dnnl_memory_t *ws, *mean, *var;   /* workspace; BN statistics */
  dnnl_memory_t *shift;             /* BN beta (theta, or saved if fused) */
  dnnl_primitive_desc_t *fpd;       /* forward pd: hint for backward */
  steplist fwd, bwd;
  step *rd;                         /* dnnl_exec_read reorders */
  step *rc;                         /* fused BN: recompute its own output */
  int *dsrc;                        /* node whose diff buffer holds its diff */
  binding *sb, *db;                 /* static (our buffers) / dynamic (theta..) */
  int nsb, capsb, ndb, capdb;
  dnnl_primitive_t *prims;
  int nprims, capprims;
  dnnl_memory_t *mems;
  int nmems, capmems;
  void **bufs;
  int nbufs, capbufs;
  conv_entry *cv;
  int ncv, capcv;
  float **wino_u;                   /* S_WINO: transformed weights, per node */
  float **wino_w;                   /* S_WINO: the plain weights wino_u came from */
  char *wino_ok;                    /* S_WINO: wino_u holds the transform of wino_w */
  double **bnsums;                  /* S_BN_BATCH: channel sums, 2 C per BN node */
} plan;

/* Plan kinds: eval (running statistics), train (batch statistics from
 * oneDNN's training BN, backward), BN recompute (batch statistics computed
 * here, from the Winograd convolution's output transform where one feeds
 * the BN, else in one pass over the BN's input; the BN primitive then only
 * normalises).  A backward after a BN-recompute forward uses the same
 * batch statistics. */
enum { PK_EVAL = 0, PK_TRAIN = 1, PK_RECOMPUTE = 2 };

typedef struct {
  mc_exec *e;
  dnnl_engine_t eng;
  dnnl_stream_t strm;
  dnnl_primitive_attr_t attr, attr_sum;
  float **buf, **dbuf;
  size_t *bufsz, *dbufsz;
  float *pad, *dscr; /* shared scratchpad; diff scratch before accumulation */
  size_t padsz, dscrsz;
  float *wscr;       /* S_WINO scratch, per thread */
  size_t wscrsz;
  int wino;          /* S_WINO allowed (MC_WINO=0 turns it off) */
  float **bnmean, **bnvar, **mask;
  int *mask_id;
  int *relu_of;    /* BN node -> the ReLU fused into it, else -1 */
  char *fused;     /* ReLU node computed by the BN before it */
  unsigned gen;
  unsigned long tick;
  plan *plans[MAX_PLANS];
  plan *cur;
  /* pointers of the current call */
  float *theta, *grad, *dx, *dlogits, *state, *logits;
  const float *x;
} dstate;

#define PUSH(arr, n, cap, val)                                              \
  do {                                                                      \
    if ((n) == (cap)) {                                                     \
      (cap) = (cap) ? 2 * (cap) : 16;                                       \
      void *t_ = realloc((arr), sizeof *(arr) * (size_t)(cap));             \
      MC_ASSERT(t_ != NULL);                                                \
      (arr) = t_;                                                           \
    }                                                                       \
    (arr)[(n)++] = (val);                                                   \
  } while (0)

static mc_status dn_fail(const char *what, dnnl_status_t s, int line) {
  return mc_error(MC_EINTERNAL, "oneDNN: %s failed (status %d, exec_dnnl.c:%d)",
                  what, (int)s, line);
}
#define CK(call)                                                            \
  do {                                                                      \
    dnnl_status_t s_ = (call);                                              \
    if (s_ != dnnl_success) return dn_fail(#call, s_, __LINE__);            \
  } while (0)
#define MCK(call)                                                           \
  do {                                                                      \
    mc_status m_ = (call);                                                  \
    if (m_ != MC_OK) return m_;                                             \
  } while (0)

static void dn_abort(const char *what, dnnl_status_t s, int line) {
  fprintf(stderr, "modeconn: oneDNN: %s failed (status %d, exec_dnnl.c:%d)\n",
          what, (int)s, line);
  abort();
}
#define RK(call)                                                            \
  do {                                                                      \
    dnnl_status_t s_ = (call);                                              \
    if (s_ != dnnl_success) dn_abort(#call, s_, __LINE__);                  \
  } while (0)

/* ------------------------------------------------------------- helpers */

static int64_t node_numel(const mc_node *nd) { return nd->C * nd->H * nd->W; }

/* Logical dims of a node's output: (n, C) for vectors, (n, C, H, W) else. */
static int node_dims(const mc_node *nd, int64_t n, dnnl_dims_t d) {
  d[0] = n;
  d[1] = nd->C;
  if (nd->flat) return 2;
  d[2] = nd->H;
  d[3] = nd->W;
  return 4;
}

static dnnl_format_tag_t plain_tag(int nd) {
  return nd == 1 ? dnnl_a : nd == 2 ? dnnl_ab : nd == 3 ? dnnl_abc : dnnl_abcd;
}

static mc_status md_init(dnnl_memory_desc_t *md, int nd, const dnnl_dims_t d,
                         int any) {
  CK(dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32,
                                  any ? dnnl_format_tag_any : plain_tag(nd)));
  return MC_OK;
}

static mc_status md_plain_of(dnnl_memory_desc_t *out, const dnnl_memory_desc_t *md) {
  return md_init(out, md->ndims, md->dims, 0);
}

static const dnnl_memory_desc_t *qmd(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
  return dnnl_primitive_desc_query_md(pd, q, 0);
}

static size_t md_size(const dnnl_memory_desc_t *md) {
  return md ? dnnl_memory_desc_get_size(md) : 0;
}

static int md_eq(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
  return dnnl_memory_desc_equal(a, b);
}

static const dnnl_memory_desc_t *mem_md(const_dnnl_memory_t m) {
  const dnnl_memory_desc_t *md = NULL;
  RK(dnnl_memory_get_memory_desc(m, &md));
  return md;
}

static float *mem_ptr(const_dnnl_memory_t m) {
  void *h = NULL;
  RK(dnnl_memory_get_data_handle(m, &h));
  return h;
}

static int pd_is_ref(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
    return 0;
  return strstr(s, "ref") != NULL;
}

/* Grows *b to `need` bytes (contents lost); bumps the buffer generation so
 * every plan re-points its memory objects before its next run. */
static void ensure(dstate *st, float **b, size_t *sz, size_t need) {
  if (need <= *sz) return;
  free(*b);
  *b = mc_aligned_alloc(need);
  *sz = need;
  st->gen++;
}

static void steps_push(steplist *L, step s) { PUSH(L->v, L->n, L->cap, s); }

static float *plan_buf(plan *p, size_t bytes) {
  float *b = mc_aligned_alloc(bytes < 64 ? 64 : bytes);
  PUSH(p->bufs, p->nbufs, p->capbufs, (void *)b);
  return b;
}

static mc_status new_mem(dstate *st, plan *p, dnnl_memory_t *out,
                         const dnnl_memory_desc_t *md, void *handle) {
  CK(dnnl_memory_create(out, md, st->eng, handle ? handle : DNNL_MEMORY_NONE));
  PUSH(p->mems, p->nmems, p->capmems, *out);
  return MC_OK;
}

/* Memory object pointing at (*base + off) floats.  dynamic: *base is a
 * per-call pointer (theta, grad, dx, dlogits), re-set at every call;
 * static: one of our buffers, re-set when the buffer generation changes. */
static mc_status bound_mem(dstate *st, plan *p, dnnl_memory_t *out,
                           const dnnl_memory_desc_t *md, float **base,
                           size_t off, int dynamic) {
  MCK(new_mem(st, p, out, md, NULL));
  binding b = {*out, base, off};
  if (dynamic) PUSH(p->db, p->ndb, p->capdb, b);
  else PUSH(p->sb, p->nsb, p->capsb, b);
  p->gen = 0;
  return MC_OK;
}

static mc_status mk_step(dstate *st, plan *p, step *s,
                         const_dnnl_primitive_desc_t pd, int nargs,
                         const dnnl_exec_arg_t *args, int cond) {
  memset(s, 0, sizeof *s);
  s->kind = S_PRIM;
  s->cond = cond;
  CK(dnnl_primitive_create(&s->prim, pd));
  PUSH(p->prims, p->nprims, p->capprims, s->prim);
  MC_ASSERT(nargs < MAX_ARGS);
  memcpy(s->args, args, sizeof *args * (size_t)nargs);
  s->nargs = nargs;
  const dnnl_memory_desc_t *sp = qmd(pd, dnnl_query_scratchpad_md);
  size_t sz = md_size(sp);
  if (sz) {
    ensure(st, &st->pad, &st->padsz, sz);
    dnnl_memory_t m;
    MCK(bound_mem(st, p, &m, sp, &st->pad, 0, 0));
    s->args[s->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
  }
  return MC_OK;
}

static mc_status add_prim(dstate *st, plan *p, steplist *L,
                          const_dnnl_primitive_desc_t pd, int nargs,
                          const dnnl_exec_arg_t *args, int cond) {
  step s;
  MCK(mk_step(st, p, &s, pd, nargs, args, cond));
  steps_push(L, s);
  return MC_OK;
}

static mc_status mk_reorder(dstate *st, plan *p, step *s, dnnl_memory_t src,
                            dnnl_memory_t dst, int sum, int cond) {
  dnnl_primitive_desc_t pd;
  CK(dnnl_reorder_primitive_desc_create(&pd, mem_md(src), st->eng, mem_md(dst),
                                        st->eng, sum ? st->attr_sum : st->attr));
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
  mc_status r = mk_step(st, p, s, pd, 2, a, cond);
  dnnl_primitive_desc_destroy(pd);
  return r;
}

/* dst = src (sum = 0) or dst += src (sum = 1), any layouts. */
static mc_status add_reorder(dstate *st, plan *p, steplist *L, dnnl_memory_t src,
                             dnnl_memory_t dst, int sum, int cond) {
  step s;
  MCK(mk_reorder(st, p, &s, src, dst, sum, cond));
  steps_push(L, s);
  return MC_OK;
}

/* `src` in layout `want`: src itself, or a plan-owned copy reordered at
 * this point of L (shared with earlier requests when `cache`). */
static mc_status as_md(dstate *st, plan *p, steplist *L, dnnl_memory_t src,
                       const dnnl_memory_desc_t *want, int cond, int cache,
                       dnnl_memory_t *out) {
  if (md_eq(mem_md(src), want)) {
    *out = src;
    return MC_OK;
  }
  if (cache)
    for (int k = 0; k < p->ncv; k++)
      if (p->cv[k].src == src && (!p->cv[k].cond || cond) &&
          md_eq(mem_md(p->cv[k].out), want)) {
        *out = p->cv[k].out;
        return MC_OK;
      }
  MCK(new_mem(st, p, out, want, plan_buf(p, md_size(want))));
  MCK(add_reorder(st, p, L, src, *out, 0, cond));
  if (cache) {
    conv_entry c = {src, *out, cond};
    PUSH(p->cv, p->ncv, p->capcv, c);
  }
  return MC_OK;
}

static mc_status set_out(dstate *st, plan *p, int i) {
  ensure(st, &st->buf[i], &st->bufsz[i], md_size(&p->md[i]));
  return bound_mem(st, p, &p->mem[i], &p->md[i], &st->buf[i], 0, 0);
}

/* Workspace of a forward primitive (max pooling), kept for backward. */
static mc_status add_ws(dstate *st, plan *p, int i, dnnl_exec_arg_t *a, int *na) {
  const dnnl_memory_desc_t *w = qmd(p->fpd[i], dnnl_query_workspace_md);
  if (!md_size(w)) return MC_OK;
  MCK(new_mem(st, p, &p->ws[i], w, plan_buf(p, md_size(w))));
  a[(*na)++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws[i]};
  return MC_OK;
}

static void push_custom(steplist *L, int kind, int node, dnnl_memory_t a,
                        dnnl_memory_t b, int64_t count, int cond) {
  step s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  s.node = node;
  s.a = a;
  s.b = b;
  s.count = count;
  s.cond = cond;
  steps_push(L, s);
}

/* ------------------------------------------------------------- forward */

/* md is the dense layout `tag` of its own dims. */
static int md_is(const dnnl_memory_desc_t *md, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t t;
  return dnnl_memory_desc_init_by_tag(&t, md->ndims, md->dims, dnnl_f32, tag) == dnnl_success &&
         md_eq(md, &t);
}

/* Layouts bn_batch_stats reads: 1 = 8-blocked (aBcd8b), 0 = plain (abcd or
 * ab); -1 = neither (that BN keeps oneDNN's training primitive). */
static int bn_sums_layout(const dnnl_memory_desc_t *md, const mc_node *nd) {
  if (md->ndims == 4 && nd->C % 8 == 0 && md_is(md, dnnl_aBcd8b)) return 1;
  return md_is(md, plain_tag(md->ndims)) ? 0 : -1;
}

/* Channel sums of x - shift for one 8-channel block of a blocked tensor
 * (images `ld` floats apart, S pixels of 8 channels each), in double. */
static void sums_blocked(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                         const float *shift) {
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 c = _mm256_loadu_ps(shift);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i * ld + p * 8), c);
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(d)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
      s0 = _mm256_add_pd(s0, lo);
      s1 = _mm256_add_pd(s1, hi);
      q0 = _mm256_fmadd_pd(lo, lo, q0);
      q1 = _mm256_fmadd_pd(hi, hi, q1);
    }
  _mm256_storeu_pd(sum, s0);
  _mm256_storeu_pd(sum + 4, s1);
  _mm256_storeu_pd(sq, q0);
  _mm256_storeu_pd(sq + 4, q1);
#else
  for (int c = 0; c < 8; c++) sum[c] = sq[c] = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++)
      for (int c = 0; c < 8; c++) {
        const double d = (double)(x[i * ld + p * 8 + c] - shift[c]);
        sum[c] += d;
        sq[c] += d * d;
      }
#endif
}

/* The same for one channel of a plain tensor (images `ld` floats apart). */
static void sums_plain(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                       float shift) {
  double a1 = 0, a2 = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++) {
      const double d = (double)(x[i * ld + p] - shift);
      a1 += d;
      a2 += d * d;
    }
  *sum = a1;
  *sq = a2;
}

/* Batch mean and (biased) variance of BN node s->node's input s->a into the
 * plan's mean/var, from channel sums of x - shift (shift: the running mean,
 * near the batch mean after the first batch, so the variance does not
 * cancel), summed in double.  The sums come from the Winograd convolution
 * (s->flag) or are taken here, one channel (block) per thread: the result
 * does not depend on the thread count. */
static void bn_batch_stats(dstate *st, const step *s) {
  const mc_model *m = st->e->m;
  const mc_node *nd = &m->nodes[s->node];
  const int64_t C = nd->C, N = st->e->n, S = nd->H * nd->W;
  const float *shift = st->state + m->tensors[nd->t_rmean].off;
  double *sum = st->cur->bnsums[s->node], *sq = sum + C;
  if (!s->flag) {
    const float *x = mem_ptr(s->a);
    const int blocked = bn_sums_layout(mem_md(s->a), nd) == 1;
    const int64_t units = blocked ? C / 8 : C;
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 16))
    for (int64_t u = 0; u < units; u++) {
      if (blocked) {
        sums_blocked(sum + u * 8, sq + u * 8, x + u * S * 8, (C / 8) * S * 8, N, S, shift + u * 8);
      } else {
        sums_plain(sum + u, sq + u, x + u * S, C * S, N, S, shift[u]);
      }
    }
  }
  float *mean = mem_ptr(st->cur->mean[s->node]), *var = mem_ptr(st->cur->var[s->node]);
  const double cnt = (double)s->count;
  for (int64_t c = 0; c < C; c++) {
    const double mu = sum[c] / cnt, v = sq[c] / cnt - mu * mu;
    mean[c] = (float)(shift[c] + mu);
    var[c] = (float)(v > 0 ? v : 0);
  }
}

static wino_shape wino_shape_of(const mc_model *m, int i, int64_t n) {
  const mc_node *nd = &m->nodes[i], *x = &m->nodes[nd->in[0]];
  return (wino_shape){n, x->C, nd->C, x->H, x->W, nd->pad, nd->H, nd->W, wino_tile(nd->H, nd->W, x->C)};
}

/* Conv node i runs as S_WINO: 3x3, stride 1, channels in multiples of 8,
 * and the primitive oneDNN picked reads and writes the plain 8-blocked
 * layout wino.c works on (so a backward, which reuses the forward's src
 * and dst, cannot tell the difference).  In training steps the forward is
 * a third of the work: 4 interleaved pairs of tinyten / resnet20 steps at
 * batch 128 measured within noise of oneDNN's direct convolution (median
 * 74 vs 81 ms, 242 vs 247 ms). */
static int wino_fits(const dstate *st, const plan *p, int i) {
  const mc_node *nd = &st->e->m->nodes[i];
  const dnnl_memory_desc_t *src = qmd(p->fpd[i], dnnl_query_src_md), *dst = qmd(p->fpd[i], dnnl_query_dst_md);
  return st->wino && nd->k == 3 && nd->stride == 1 && src->dims[1] % 8 == 0 && dst->dims[1] % 8 == 0 &&
         md_is(src, dnnl_aBcd8b) && md_is(dst, dnnl_aBcd8b);
}

static mc_status build_forward(dstate *st, plan *p) {
  const mc_model *m = st->e->m;
  const int64_t N = p->n;
  steplist *L = &p->fwd;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    const int in = nd->n_in ? nd->in[0] : -1;
    const mc_node *n0 = in >= 0 ? &m->nodes[in] : NULL;
    dnnl_dims_t dd;
    const int ndd = node_dims(nd, N, dd);
    dnnl_memory_desc_t any_dst;
    MCK(md_init(&any_dst, ndd, dd, 1));
    dnnl_exec_arg_t a[MAX_ARGS];
    int na = 0;
    switch (nd->kind) {
    case MC_NODE_INPUT:
      MCK(md_init(&p->md[i], ndd, dd, 0));
      MCK(set_out(st, p, i));
      push_custom(L, S_INPUT, i, NULL, p->mem[i], N * node_numel(nd), 0);
      break;
    case MC_NODE_NORMALIZE: {
      dnnl_memory_desc_t pl;
      dnnl_memory_t x;
      MCK(md_plain_of(&pl, &p->md[in]));
      MCK(as_md(st, p, L, p->mem[in], &pl, 0, 1, &x));
      MCK(md_init(&p->md[i], ndd, dd, 0));
      MCK(set_out(st, p, i));
      push_custom(L, S_NORM_F, i, x, p->mem[i], N, 0);
      break;
    }
    case MC_NODE_CONV:
    case MC_NODE_LINEAR: {
      const int conv = nd->kind == MC_NODE_CONV;
      dnnl_dims_t sd, wd, bd = {nd->C};
      const int nsd = node_dims(n0, N, sd);
      wd[0] = nd->C;
      for (int k = 1; k < nsd; k++) wd[k] = conv && k >= 2 ? nd->k : sd[k];
      dnnl_memory_desc_t sa, wa, ba, wpl;
      MCK(md_init(&sa, nsd, sd, 1));
      MCK(md_init(&wa, nsd, wd, 1));
      MCK(md_init(&wpl, nsd, wd, 0));
      MCK(md_init(&ba, 1, bd, 0));
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
      p->md[i] = *qmd(p->fpd[i], dnnl_query_dst_md);
      MCK(set_out(st, p, i));
      MCK(as_md(st, p, L, p->mem[in], qmd(p->fpd[i], dnnl_query_src_md), 0, 1, &p->fsrc[i]));
      MCK(bound_mem(st, p, &p->wplain[i], &wpl, &st->theta, m->tensors[nd->t_weight].off, 1));
      if (conv && wino_fits(st, p, i)) {
        const wino_shape ws = wino_shape_of(m, i, N);
        p->wino_u[i] = plan_buf(p, sizeof(float) * wino_weight_floats(&ws));
        p->wino_w[i] = plan_buf(p, sizeof(float) * (size_t)(ws.k * ws.c * 9));
        ensure(st, &st->wscr, &st->wscrsz, sizeof(float) * wino_scratch_floats(&ws) * (size_t)p->nthr);
        push_custom(L, S_WINO, i, p->fsrc[i], p->mem[i], 0, 0);
        break;
      }
      dnnl_memory_t w;
      MCK(as_md(st, p, L, p->wplain[i], qmd(p->fpd[i], dnnl_query_weights_md), 0, 1, &w));
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->fsrc[i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, w};
      if (nd->bias) {
        dnnl_memory_t b;
        MCK(bound_mem(st, p, &b, &ba, &st->theta, m->tensors[nd->t_bias].off, 1));
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b};
      }
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
      MCK(add_prim(st, p, L, p->fpd[i], na, a, 0));
      break;
    }
    case MC_NODE_BN: {
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
      if (p->kind == PK_RECOMPUTE && bn_sums_layout(&p->md[in], nd) >= 0) {
        CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &p->md[in], nd->eps,
                                                      fl | dnnl_use_global_stats));
        CK(dnnl_primitive_desc_create(&gpd, &bd, st->attr, st->eng, NULL));
        if (!md_eq(qmd(gpd, dnnl_query_workspace_md), qmd(p->fpd[i], dnnl_query_workspace_md)) ||
            !md_eq(qmd(gpd, dnnl_query_dst_md), qmd(p->fpd[i], dnnl_query_dst_md))) {
          dnnl_primitive_desc_destroy(gpd);
          gpd = NULL;
        }
      }
      p->md[i] = *qmd(p->fpd[i], dnnl_query_dst_md);
      MCK(set_out(st, p, i));
      if (r >= 0) {
        p->md[r] = p->md[i];
        MCK(set_out(st, p, r));
      }
      dnnl_dims_t cdim = {nd->C};
      dnnl_memory_desc_t cmd;
      MCK(md_init(&cmd, 1, cdim, 0));
      MCK(new_mem(st, p, &p->mean[i], &cmd, st->bnmean[i]));
      MCK(new_mem(st, p, &p->var[i], &cmd, st->bnvar[i]));
      MCK(bound_mem(st, p, &p->wplain[i], &cmd, &st->theta, m->tensors[nd->t_weight].off, 1));
      dnnl_memory_t scale = p->wplain[i];
      if (r >= 0) { /* keep gamma, beta of this forward for the recompute */
        MCK(new_mem(st, p, &scale, &cmd, plan_buf(p, sizeof(float) * (size_t)nd->C)));
        MCK(new_mem(st, p, &p->shift[i], &cmd, plan_buf(p, sizeof(float) * (size_t)nd->C)));
        push_custom(L, S_SAVE, i, NULL, scale, nd->C, 0);
        L->v[L->n - 1].off = m->tensors[nd->t_weight].off;
        push_custom(L, S_SAVE, i, NULL, p->shift[i], nd->C, 0);
        L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
        p->fsrc[i] = scale;
      } else {
        MCK(bound_mem(st, p, &p->shift[i], &cmd, &st->theta, m->tensors[nd->t_bias].off, 1));
      }
      if (p->kind == PK_EVAL) push_custom(L, S_BN_EVAL, i, p->mean[i], p->var[i], nd->C, 0);
      if (gpd) {
        p->bnsums[i] = (double *)plan_buf(p, sizeof(double) * (size_t)(2 * nd->C));
        int from_wino = 0; /* the convolution before it adds up its outputs */
        for (int k = L->n - 1; k >= 0 && !from_wino; k--)
          if (L->v[k].kind == S_WINO && L->v[k].node == in) {
            L->v[k].count = i + 1;
            from_wino = 1;
          }
        push_custom(L, S_BN_BATCH, i, p->mem[in], NULL, N * nd->H * nd->W, 0);
        L->v[L->n - 1].flag = from_wino;
      }
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[r >= 0 ? r : i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, p->mean[i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, p->var[i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, scale};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, p->shift[i]};
      MCK(add_ws(st, p, i, a, &na));
      const mc_status rs = add_prim(st, p, L, gpd ? gpd : p->fpd[i], na, a, 0);
      if (gpd) dnnl_primitive_desc_destroy(gpd);
      MCK(rs);
      if (p->kind != PK_EVAL) push_custom(L, S_BN_STATS, i, p->mean[i], p->var[i], N * nd->H * nd->W, 0);
      break;
    }
    case MC_NODE_RELU: {
      if (st->fused[i]) break; /* computed by the BN before it */
      dnnl_eltwise_desc_t ed;
      CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training,
                                        dnnl_eltwise_relu_use_dst_for_bwd, &p->md[in], 0.f, 0.f));
      CK(dnnl_primitive_desc_create(&p->fpd[i], &ed, st->attr, st->eng, NULL));
      p->md[i] = *qmd(p->fpd[i], dnnl_query_dst_md);
      MCK(set_out(st, p, i));
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
      MCK(add_prim(st, p, L, p->fpd[i], na, a, 0));
      break;
    }
    case MC_NODE_MAXPOOL:
    case MC_NODE_AVGPOOL:
    case MC_NODE_GAP: {
      const int gap = nd->kind == MC_NODE_GAP;
      dnnl_dims_t str = {nd->stride, nd->stride}, ker = {nd->k, nd->k}, pad = {nd->pad, nd->pad};
      dnnl_dims_t d4 = {N, nd->C, 1, 1};
      dnnl_memory_desc_t any4, pl4;
      dnnl_alg_kind_t alg = nd->kind == MC_NODE_MAXPOOL ? dnnl_pooling_max
                                                          : dnnl_pooling_avg_include_padding;
      if (gap) {
        str[0] = str[1] = 1;
        ker[0] = n0->H;
        ker[1] = n0->W;
        pad[0] = pad[1] = 0;
        MCK(md_init(&any4, 4, d4, 1));
        MCK(md_init(&pl4, 4, d4, 0));
      }
      dnnl_pooling_desc_t pdsc;
      CK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_training, alg, &p->md[in],
                                        gap ? &any4 : &any_dst, str, ker, pad, pad));
      CK(dnnl_primitive_desc_create(&p->fpd[i], &pdsc, st->attr, st->eng, NULL));
      const dnnl_memory_desc_t *q = qmd(p->fpd[i], dnnl_query_dst_md);
      dnnl_memory_t dst, v4 = NULL;
      if (gap) { /* stored as plain (n, C): a vector like the reference's */
        MCK(md_init(&p->md[i], ndd, dd, 0));
        MCK(set_out(st, p, i));
        MCK(bound_mem(st, p, &v4, &pl4, &st->buf[i], 0, 0));
        if (md_eq(q, &pl4)) dst = v4;
        else MCK(new_mem(st, p, &dst, q, plan_buf(p, md_size(q))));
      } else {
        p->md[i] = *q;
        MCK(set_out(st, p, i));
        dst = p->mem[i];
      }
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->mem[in]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, dst};
      MCK(add_ws(st, p, i, a, &na));
      MCK(add_prim(st, p, L, p->fpd[i], na, a, 0));
      if (gap && dst != v4) MCK(add_reorder(st, p, L, dst, v4, 0, 0));
      break;
    }
    case MC_NODE_FLATTEN: {
      MCK(md_init(&p->md[i], ndd, dd, 0));
      MCK(set_out(st, p, i));
      dnnl_memory_desc_t pl;
      dnnl_memory_t v;
      MCK(md_plain_of(&pl, &p->md[in]));
      MCK(bound_mem(st, p, &v, &pl, &st->buf[i], 0, 0));
      MCK(add_reorder(st, p, L, p->mem[in], v, 0, 0));
      break;
    }
    case MC_NODE_ADD:
    case MC_NODE_CONCAT: {
      dnnl_memory_desc_t srcs[MC_MAX_INPUTS];
      float sc[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) {
        srcs[j] = p->md[nd->in[j]];
        sc[j] = 1.f;
      }
      if (nd->kind == MC_NODE_ADD) {
        CK(dnnl_sum_primitive_desc_create(&p->fpd[i], &p->md[in], nd->n_in, sc, srcs, st->attr,
                                          st->eng));
        p->md[i] = *qmd(p->fpd[i], dnnl_query_dst_md);
      } else {
        CK(dnnl_concat_primitive_desc_create(&p->fpd[i], NULL, nd->n_in, 1, srcs, st->attr,
                                             st->eng));
        dnnl_memory_desc_t dst = *qmd(p->fpd[i], dnnl_query_dst_md), sub;
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
          MCK(md_init(&dst, ndd, dd, 0));
          CK(dnnl_concat_primitive_desc_create(&p->fpd[i], &dst, nd->n_in, 1, srcs, st->attr,
                                               st->eng));
        }
        p->md[i] = dst;
      }
      MCK(set_out(st, p, i));
      for (int j = 0; j < nd->n_in; j++)
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + j, p->mem[nd->in[j]]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
      MCK(add_prim(st, p, L, p->fpd[i], na, a, 0));
      break;
    }
    case MC_NODE_DROPOUT: {
      dnnl_memory_desc_t pl;
      dnnl_memory_t x;
      MCK(md_plain_of(&pl, &p->md[in]));
      MCK(as_md(st, p, L, p->mem[in], &pl, 0, 1, &x));
      MCK(md_init(&p->md[i], ndd, dd, 0));
      MCK(set_out(st, p, i));
      push_custom(L, S_DROP_F, i, x, p->mem[i], N * node_numel(nd), 0);
      break;
    }
    default:
      return mc_error(MC_EINTERNAL, "oneDNN backend: node kind %s not handled",
                      mc_node_kind_name(nd->kind));
    }
  }
  /* logits, plain (n, classes) */
  const int last = m->n_nodes - 1;
  dnnl_dims_t ld = {N, m->classes};
  dnnl_memory_desc_t lmd;
  dnnl_memory_t lm;
  MCK(md_init(&lmd, 2, ld, 0));
  MCK(bound_mem(st, p, &lm, &lmd, &st->logits, 0, 0));
  MCK(add_reorder(st, p, L, p->mem[last], lm, 0, 0));
  return MC_OK;
}

/* ------------------------------------------------------------ backward */

/* exec.c's needs_dx: the input and normalize nodes need a gradient only
 * when the caller asked for dx. */
static int needs_dx_always(const mc_model *m, int s) {
  mc_node_kind k = m->nodes[s].kind;
  return !(k == MC_NODE_INPUT || k == MC_NODE_NORMALIZE);
}

/* Where a primitive should write the gradient for input node s: straight
 * into s's diff buffer when it is the first writer and the layouts agree,
 * else the shared scratch followed by add_deliver. */
static mc_status diff_target(dstate *st, plan *p, int s, int first,
                             const dnnl_memory_desc_t *q, dnnl_memory_t *t,
                             int *deliver) {
  if (s != 0 && first && md_eq(q, &p->md[s])) {
    *t = p->dmem[s];
    *deliver = 0;
    return MC_OK;
  }
  *deliver = 1;
  ensure(st, &st->dscr, &st->dscrsz, md_size(q));
  return bound_mem(st, p, t, q, &st->dscr, 0, 0);
}

/* diff[s] = src (first writer) or diff[s] += src; the caller's dx always
 * accumulates. */
static mc_status add_deliver(dstate *st, plan *p, steplist *L, int s, int first,
                             dnnl_memory_t src, int cond) {
  return add_reorder(st, p, L, src, p->dmem[s], s == 0 || !first, cond);
}

static mc_status create_bwd_pd(dstate *st, dnnl_primitive_desc_t *pd, const void *desc,
                               const_dnnl_primitive_desc_t hint) {
  CK(dnnl_primitive_desc_create(pd, desc, st->attr, st->eng, hint));
  return MC_OK;
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
  const dnnl_memory_desc_t *qs = qmd(p->fpd[i], dnnl_query_src_md);
  dnnl_dims_t str = {nd->stride, nd->stride}, pad = {nd->pad, nd->pad};
  dnnl_memory_desc_t cs[3], cd[3];
  int nc = 0;
  cs[nc] = *qs;
  cd[nc++] = p->md[i];
  MCK(md_plain_of(&cs[nc], qs));
  if (md_eq(&cs[nc], qs)) {
    MCK(md_plain_of(&cd[nc], &p->md[i]));
    nc++;
  }
  MCK(md_init(&cs[nc], qs->ndims, qs->dims, 1));
  MCK(md_init(&cd[nc], p->md[i].ndims, p->md[i].dims, 1));
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
    if (!pd_is_ref(pd)) *out = pd;
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

static mc_status build_backward(dstate *st, plan *p) {
  const mc_model *m = st->e->m;
  const int64_t N = p->n;
  const int nn = m->n_nodes, last = nn - 1;
  steplist *L = &p->bwd;
  mc_status rc = MC_OK;
  char *live = mc_calloc((size_t)nn, 1), *seen = mc_calloc((size_t)nn, 1);
  live[last] = 1;
  for (int i = last; i >= 1; i--)
    if (live[i])
      for (int j = 0; j < m->nodes[i].n_in; j++) live[m->nodes[i].in[j]] = 1;

  /* An addend used nowhere else has exactly the sum's gradient: it shares
   * the sum's diff buffer instead of receiving a copy. */
  p->dsrc = mc_calloc((size_t)nn, sizeof(int));
  char *alias = mc_calloc((size_t)nn, 1);
  for (int i = last; i >= 0; i--) {
    p->dsrc[i] = i;
    const mc_node *nd = &m->nodes[i];
    if (i == last || nd->kind != MC_NODE_ADD || !live[i]) continue;
    for (int j = 0; j < nd->n_in; j++) {
      const int s = nd->in[j];
      int uses = 0;
      for (int k = s + 1; k < nn; k++)
        for (int q = 0; q < m->nodes[k].n_in; q++) uses += m->nodes[k].in[q] == s;
      if (uses == 1 && needs_dx_always(m, s) && md_eq(&p->md[s], &p->md[i])) alias[s] = 1;
    }
  }
  for (int i = last; i >= 1; i--)
    if (alias[i])
      for (int k = i + 1; k < nn; k++)
        if (m->nodes[k].kind == MC_NODE_ADD)
          for (int q = 0; q < m->nodes[k].n_in; q++)
            if (m->nodes[k].in[q] == i) p->dsrc[i] = p->dsrc[k];
  for (int i = 0; i < nn; i++) {
    if (i == 0) {
      rc = bound_mem(st, p, &p->dmem[0], &p->md[0], &st->dx, 0, 1);
    } else {
      const int b = p->dsrc[i];
      ensure(st, &st->dbuf[b], &st->dbufsz[b], md_size(&p->md[i]));
      rc = bound_mem(st, p, &p->dmem[i], &p->md[i], &st->dbuf[b], 0, 0);
    }
    if (rc) goto out;
  }
  {
    dnnl_dims_t ld = {N, m->classes};
    dnnl_memory_desc_t lmd;
    dnnl_memory_t lm;
    if ((rc = md_init(&lmd, 2, ld, 0))) goto out;
    if ((rc = bound_mem(st, p, &lm, &lmd, &st->dlogits, 0, 1))) goto out;
    if ((rc = add_reorder(st, p, L, lm, p->dmem[last], 0, 0))) goto out;
  }

  for (int i = last; i >= 1 && rc == MC_OK; i--) {
    if (!live[i]) continue;
    const mc_node *nd = &m->nodes[i];
    const int in = nd->in[0];
    const mc_node *n0 = &m->nodes[in];
    const int own = !needs_dx_always(m, i); /* whole node only with dx */
    const int cin = own || !needs_dx_always(m, in);
    dnnl_exec_arg_t a[MAX_ARGS];
    int na = 0, first, deliver;
    dnnl_memory_t t = NULL;
    dnnl_primitive_desc_t pd = NULL;
#define TRY(call)                                                           \
  do {                                                                      \
    if ((rc = (call)) != MC_OK) goto node_done;                            \
  } while (0)
#define TRYD(call)                                                          \
  do {                                                                      \
    dnnl_status_t s_ = (call);                                              \
    if (s_ != dnnl_success) {                                               \
      rc = dn_fail(#call, s_, __LINE__);                                    \
      goto node_done;                                                       \
    }                                                                       \
  } while (0)
    switch (nd->kind) {
    case MC_NODE_CONV:
    case MC_NODE_LINEAR: {
      const int conv = nd->kind == MC_NODE_CONV;
      const dnnl_memory_desc_t *qs = qmd(p->fpd[i], dnnl_query_src_md);
      dnnl_dims_t wd, bd = {nd->C};
      wd[0] = nd->C;
      for (int k = 1; k < qs->ndims; k++) wd[k] = conv && k >= 2 ? nd->k : qs->dims[k];
      dnnl_memory_desc_t wa, ba, wpl;
      TRY(md_init(&wa, qs->ndims, wd, 1));
      TRY(md_init(&wpl, qs->ndims, wd, 0));
      TRY(md_init(&ba, 1, bd, 0));
      /* weights gradient */
      TRY(conv_bwd_pd(st, p, i, 1, &wa, nd->bias ? &ba : NULL, &pd));
      if (!pd) {
        rc = mc_error(MC_EINTERNAL, "oneDNN: no backward-weights primitive for %s", nd->name);
        goto node_done;
      }
      {
        dnnl_memory_t xs, dy, dw, gw, db = NULL;
        TRY(as_md(st, p, L, p->fsrc[i], qmd(pd, dnnl_query_src_md), own, 1, &xs));
        TRY(as_md(st, p, L, p->dmem[i], qmd(pd, dnnl_query_diff_dst_md), own, 1, &dy));
        const dnnl_memory_desc_t *qdw = qmd(pd, dnnl_query_diff_weights_md);
        TRY(new_mem(st, p, &dw, qdw, plan_buf(p, md_size(qdw))));
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, xs};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, dw};
        if (nd->bias) {
          TRY(new_mem(st, p, &db, &ba, plan_buf(p, sizeof(float) * (size_t)nd->C)));
          a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, db};
        }
        TRY(add_prim(st, p, L, pd, na, a, own));
        TRY(bound_mem(st, p, &gw, &wpl, &st->grad, m->tensors[nd->t_weight].off, 1));
        TRY(add_reorder(st, p, L, dw, gw, 1, own));
        if (nd->bias) {
          push_custom(L, S_ADDVEC, i, db, NULL, nd->C, own);
          L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
        }
      }
      dnnl_primitive_desc_destroy(pd);
      pd = NULL;
      /* input gradient */
      first = !seen[in];
      seen[in] = 1;
      TRY(conv_bwd_pd(st, p, i, 0, &wa, NULL, &pd));
      if (!pd) {
        rc = mc_error(MC_EINTERNAL, "oneDNN: no backward-data primitive for %s", nd->name);
        goto node_done;
      }
      {
        dnnl_memory_t w, dy;
        na = 0;
        TRY(as_md(st, p, L, p->wplain[i], qmd(pd, dnnl_query_weights_md), cin, 0, &w));
        TRY(as_md(st, p, L, p->dmem[i], qmd(pd, dnnl_query_diff_dst_md), cin, 1, &dy));
        TRY(diff_target(st, p, in, first, qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, w};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
        TRY(add_prim(st, p, L, pd, na, a, cin));
        if (deliver) TRY(add_deliver(st, p, L, in, first, t, cin));
      }
      break;
    }
    case MC_NODE_BN: {
      const int r = st->relu_of[i];
      unsigned fl = dnnl_use_scale | dnnl_use_shift | (p->kind == PK_EVAL ? dnnl_use_global_stats : 0u) |
                    (r >= 0 ? dnnl_fuse_norm_relu : 0u);
      dnnl_batch_normalization_desc_t bd;
      TRYD(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &p->md[i], &p->md[in],
                                                       nd->eps, fl));
      TRY(create_bwd_pd(st, &pd, &bd, p->fpd[i]));
      first = !seen[in];
      seen[in] = 1;
      dnnl_dims_t cdim = {nd->C};
      dnnl_memory_desc_t cmd;
      dnnl_memory_t dg, dbeta, dy;
      TRY(md_init(&cmd, 1, cdim, 0));
      TRY(new_mem(st, p, &dg, &cmd, plan_buf(p, sizeof(float) * (size_t)nd->C)));
      TRY(new_mem(st, p, &dbeta, &cmd, plan_buf(p, sizeof(float) * (size_t)nd->C)));
      TRY(as_md(st, p, L, p->dmem[r >= 0 ? r : i], qmd(pd, dnnl_query_diff_dst_md), own, 1, &dy));
      TRY(diff_target(st, p, in, first, qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
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
      TRY(add_prim(st, p, L, pd, na, a, own));
      push_custom(L, S_ADDVEC, i, dg, NULL, nd->C, own);
      L->v[L->n - 1].off = m->tensors[nd->t_weight].off;
      push_custom(L, S_ADDVEC, i, dbeta, NULL, nd->C, own);
      L->v[L->n - 1].off = m->tensors[nd->t_bias].off;
      if (deliver) TRY(add_deliver(st, p, L, in, first, t, cin));
      break;
    }
    case MC_NODE_RELU: {
      if (st->fused[i]) break; /* in the BN before it */
      dnnl_eltwise_desc_t ed;
      TRYD(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd, &p->md[i],
                                           &p->md[i], 0.f, 0.f));
      TRY(create_bwd_pd(st, &pd, &ed, p->fpd[i]));
      first = !seen[in];
      seen[in] = 1;
      TRY(diff_target(st, p, in, first, qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->mem[i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, p->dmem[i]};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
      TRY(add_prim(st, p, L, pd, na, a, cin));
      if (deliver) TRY(add_deliver(st, p, L, in, first, t, cin));
      break;
    }
    case MC_NODE_MAXPOOL:
    case MC_NODE_AVGPOOL:
    case MC_NODE_GAP: {
      const int gap = nd->kind == MC_NODE_GAP;
      dnnl_dims_t str = {nd->stride, nd->stride}, ker = {nd->k, nd->k}, pad = {nd->pad, nd->pad};
      dnnl_alg_kind_t alg = nd->kind == MC_NODE_MAXPOOL ? dnnl_pooling_max
                                                          : dnnl_pooling_avg_include_padding;
      dnnl_memory_t dy = p->dmem[i];
      const dnnl_memory_desc_t *qd = qmd(p->fpd[i], dnnl_query_dst_md);
      if (gap) {
        str[0] = str[1] = 1;
        ker[0] = n0->H;
        ker[1] = n0->W;
        pad[0] = pad[1] = 0;
        dnnl_dims_t d4 = {N, nd->C, 1, 1};
        dnnl_memory_desc_t pl4;
        dnnl_memory_t v4;
        TRY(md_init(&pl4, 4, d4, 0));
        TRY(bound_mem(st, p, &v4, &pl4, &st->dbuf[p->dsrc[i]], 0, 0));
        TRY(as_md(st, p, L, v4, qd, cin, 1, &dy));
      }
      dnnl_pooling_desc_t pdsc;
      TRYD(dnnl_pooling_backward_desc_init(&pdsc, alg, &p->md[in], qd, str, ker, pad, pad));
      TRY(create_bwd_pd(st, &pd, &pdsc, p->fpd[i]));
      first = !seen[in];
      seen[in] = 1;
      TRY(diff_target(st, p, in, first, qmd(pd, dnnl_query_diff_src_md), &t, &deliver));
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, dy};
      a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, t};
      if (p->ws[i]) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws[i]};
      TRY(add_prim(st, p, L, pd, na, a, cin));
      if (deliver) TRY(add_deliver(st, p, L, in, first, t, cin));
      break;
    }
    case MC_NODE_FLATTEN: {
      dnnl_memory_desc_t pl;
      dnnl_memory_t v;
      first = !seen[in];
      seen[in] = 1;
      TRY(md_plain_of(&pl, &p->md[in]));
      TRY(bound_mem(st, p, &v, &pl, &st->dbuf[p->dsrc[i]], 0, 0));
      TRY(add_deliver(st, p, L, in, first, v, cin));
      break;
    }
    case MC_NODE_ADD:
    case MC_NODE_CONCAT: {
      int64_t off = 0;
      for (int j = 0; j < nd->n_in; j++) {
        const int s = nd->in[j];
        const int cs = own || !needs_dx_always(m, s);
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
          TRY(bound_mem(st, p, &src, &sub, &st->dbuf[p->dsrc[i]], 0, 0));
        }
        TRY(add_deliver(st, p, L, s, first, src, cs));
      }
      break;
    }
    case MC_NODE_DROPOUT: {
      dnnl_memory_desc_t pl;
      first = !seen[in];
      seen[in] = 1;
      TRY(md_plain_of(&pl, &p->md[in]));
      TRY(diff_target(st, p, in, first, &pl, &t, &deliver));
      push_custom(L, S_DROP_B, i, p->dmem[i], t, N * node_numel(nd), cin);
      if (deliver) TRY(add_deliver(st, p, L, in, first, t, cin));
      break;
    }
    case MC_NODE_NORMALIZE: {
      first = !seen[in];
      seen[in] = 1;
      if (in == 0) { /* straight into the caller's dx (accumulates) */
        push_custom(L, S_NORM_B, i, p->dmem[i], p->dmem[0], N, 1);
      } else {
        dnnl_memory_desc_t pl;
        TRY(md_plain_of(&pl, &p->md[in]));
        TRY(diff_target(st, p, in, first, &pl, &t, &deliver));
        push_custom(L, S_NORM_B, i, p->dmem[i], t, N, 1);
        L->v[L->n - 1].flag = 1;
        if (deliver) TRY(add_deliver(st, p, L, in, first, t, 1));
      }
      break;
    }
    default:
      rc = mc_error(MC_EINTERNAL, "oneDNN backend: node kind %s not handled in backward",
                    mc_node_kind_name(nd->kind));
    }
  node_done:
    if (pd) dnnl_primitive_desc_destroy(pd);
#undef TRY
#undef TRYD
  }
out:
  free(alias);
  free(live);
  free(seen);
  if (rc == MC_OK) p->bwd_built = 1;
  return rc;
}

/* --------------------------------------------------------------- plans */

static void steps_free(steplist *L) {
  free(L->v);
  memset(L, 0, sizeof *L);
}

static void plan_free(plan *p) {
  if (!p) return;
  for (int k = 0; k < p->nprims; k++) dnnl_primitive_destroy(p->prims[k]);
  for (int k = 0; k < p->nmems; k++) dnnl_memory_destroy(p->mems[k]);
  for (int k = 0; k < p->nbufs; k++) free(p->bufs[k]);
  for (int i = 0; i < p->nn; i++)
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
  free(p->bnsums);
  free(p);
}

static mc_status plan_create(dstate *st, int64_t n, int kind, int nthr, plan **out) {
  const int nn = st->e->m->n_nodes;
  plan *p = mc_calloc(1, sizeof *p);
  p->n = n;
  p->kind = kind;
  p->nthr = nthr;
  p->nn = nn;
  p->md = mc_calloc((size_t)nn, sizeof *p->md);
  p->mem = mc_calloc((size_t)nn, sizeof *p->mem);
  p->dmem = mc_calloc((size_t)nn, sizeof *p->dmem);
  p->fsrc = mc_calloc((size_t)nn, sizeof *p->fsrc);
  p->wplain = mc_calloc((size_t)nn, sizeof *p->wplain);
  p->ws = mc_calloc((size_t)nn, sizeof *p->ws);
  p->mean = mc_calloc((size_t)nn, sizeof *p->mean);
  p->var = mc_calloc((size_t)nn, sizeof *p->var);
  p->shift = mc_calloc((size_t)nn, sizeof *p->shift);
  p->fpd = mc_calloc((size_t)nn, sizeof *p->fpd);
  p->wino_u = mc_calloc((size_t)nn, sizeof *p->wino_u);
  p->wino_w = mc_calloc((size_t)nn, sizeof *p->wino_w);
  p->wino_ok = mc_calloc((size_t)nn, 1);
  p->bnsums = mc_calloc((size_t)nn, sizeof *p->bnsums);
  p->rd = mc_calloc((size_t)nn, sizeof *p->rd);
  p->rc = mc_calloc((size_t)nn, sizeof *p->rc);
  mc_status rc = build_forward(st, p);
  if (rc) {
    plan_free(p);
    return rc;
  }
  *out = p;
  return MC_OK;
}

static plan *get_plan(dstate *st, int64_t n, int kind) {
  const int nthr = omp_get_max_threads();
  int slot = -1;
  for (int k = 0; k < MAX_PLANS; k++) {
    plan *p = st->plans[k];
    if (p && p->n == n && p->kind == kind && p->nthr == nthr) {
      p->used = ++st->tick;
      return p;
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
    plan_free(st->plans[slot]);
    st->plans[slot] = NULL;
  }
  plan *p = NULL;
  if (plan_create(st, n, kind, nthr, &p) != MC_OK) {
    fprintf(stderr, "modeconn: oneDNN plan for batch %lld: %s\n", (long long)n, mc_errmsg());
    abort();
  }
  p->used = ++st->tick;
  st->plans[slot] = p;
  return p;
}

static void bind(dstate *st, plan *p) {
  if (p->gen != st->gen) {
    for (int k = 0; k < p->nsb; k++)
      if (*p->sb[k].base) RK(dnnl_memory_set_data_handle(p->sb[k].mem, *p->sb[k].base + p->sb[k].off));
    p->gen = st->gen;
  }
  for (int k = 0; k < p->ndb; k++)
    if (*p->db[k].base) RK(dnnl_memory_set_data_handle(p->db[k].mem, *p->db[k].base + p->db[k].off));
}

/* ----------------------------------------------------------- execution */

static void run(dstate *st, const steplist *L) {
  mc_exec *e = st->e;
  const mc_model *m = e->m;
  const int64_t N = e->n;
  for (int k = 0; k < L->n; k++) {
    const step *s = &L->v[k];
    if (s->cond && !st->dx) continue;
    if (s->kind == S_PRIM) {
      RK(dnnl_primitive_execute(s->prim, st->strm, s->nargs, s->args));
      continue;
    }
    RK(dnnl_stream_wait(st->strm));
    const mc_node *nd = &m->nodes[s->node];
    switch (s->kind) {
    case S_INPUT:
      memcpy(mem_ptr(s->b), st->x, sizeof(float) * (size_t)s->count);
      break;
    case S_NORM_F:
      normalize_forward(mem_ptr(s->b), mem_ptr(s->a), m->norm_mean, m->norm_std, N, nd->C,
                        nd->H * nd->W);
      break;
    case S_NORM_B: {
      float *t = mem_ptr(s->b);
      if (s->flag) memset(t, 0, sizeof(float) * (size_t)(N * node_numel(nd)));
      normalize_backward(t, mem_ptr(s->a), m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    }
    case S_DROP_F: {
      float *y = mem_ptr(s->b);
      const float *x = mem_ptr(s->a);
      if (e->mode == MC_MODE_EVAL || nd->p == 0.f) {
        memcpy(y, x, sizeof(float) * (size_t)s->count);
        st->mask_id[s->node] = 1;
      } else {
        dropout_forward(y, st->mask[s->node], x, s->count, nd->p, &e->rng);
        st->mask_id[s->node] = 0;
      }
      break;
    }
    case S_DROP_B: {
      float *t = mem_ptr(s->b);
      const float *dy = mem_ptr(s->a), *mk = st->mask[s->node];
      if (st->mask_id[s->node]) {
        memcpy(t, dy, sizeof(float) * (size_t)s->count);
      } else {
        const int64_t cnt = s->count;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < cnt; j++) t[j] = dy[j] * mk[j];
      }
      break;
    }
    case S_BN_EVAL: {
      const float *rm = st->state + m->tensors[nd->t_rmean].off;
      const float *rv = st->state + m->tensors[nd->t_rvar].off;
      memcpy(mem_ptr(s->a), rm, sizeof(float) * (size_t)nd->C);
      memcpy(mem_ptr(s->b), rv, sizeof(float) * (size_t)nd->C);
      break;
    }
    case S_BN_STATS: {
      float *rm = st->state + m->tensors[nd->t_rmean].off;
      float *rv = st->state + m->tensors[nd->t_rvar].off;
      const float *mu = mem_ptr(s->a), *var = mem_ptr(s->b);
      const double mom = exec_bn_momentum(e, nd, e->mode), cnt = (double)s->count;
      for (int64_t c = 0; c < nd->C; c++) {
        double v = var[c], unb = cnt > 1 ? v * cnt / (cnt - 1) : v;
        rm[c] = (float)((1.0 - mom) * rm[c] + mom * mu[c]);
        rv[c] = (float)((1.0 - mom) * rv[c] + mom * unb);
      }
      break;
    }
    case S_ADDVEC: {
      float *g = st->grad + s->off;
      const float *src = mem_ptr(s->a);
      for (int64_t j = 0; j < s->count; j++) g[j] += src[j];
      break;
    }
    case S_SAVE:
      memcpy(mem_ptr(s->b), st->theta + s->off, sizeof(float) * (size_t)s->count);
      break;
    case S_WINO: {
      const wino_shape ws = wino_shape_of(m, s->node, N);
      /* transform the weights only when they changed since the last
       * forward (eval passes call this once per 64-row slice) */
      plan *p = st->cur;
      const float *w = st->theta + m->tensors[nd->t_weight].off;
      const size_t wb = sizeof(float) * (size_t)(ws.k * ws.c * 9);
      float *u = p->wino_u[s->node];
      if (!p->wino_ok[s->node] || memcmp(p->wino_w[s->node], w, wb)) {
        wino_weights(u, w, &ws);
        memcpy(p->wino_w[s->node], w, wb);
        p->wino_ok[s->node] = 1;
      }
      wino_stats sums, *sp = NULL;
      if (s->count > 0) {
        const mc_node *bn = &m->nodes[s->count - 1];
        sums = (wino_stats){st->state + m->tensors[bn->t_rmean].off, p->bnsums[s->count - 1],
                            p->bnsums[s->count - 1] + bn->C};
        sp = &sums;
      }
      wino_forward(mem_ptr(s->b), mem_ptr(s->a), u,
                   nd->bias ? st->theta + m->tensors[nd->t_bias].off : NULL, &ws, st->wscr, p->nthr,
                   sp);
      break;
    }
    case S_BN_BATCH:
      bn_batch_stats(st, s);
      break;
    default: MC_ASSERT(0);
    }
  }
  RK(dnnl_stream_wait(st->strm));
}

/* --------------------------------------------------------------- hooks */

void dnnl_exec_free(mc_exec *e) {
  dstate *st = e->dnnl;
  if (!st) return;
  const int nn = e->m->n_nodes;
  for (int k = 0; k < MAX_PLANS; k++) plan_free(st->plans[k]);
  for (int i = 0; st->buf && i < nn; i++) {
    free(st->buf[i]);
    free(st->dbuf[i]);
    free(st->bnmean[i]);
    free(st->bnvar[i]);
    free(st->mask[i]);
  }
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
  if (st->attr) dnnl_primitive_attr_destroy(st->attr);
  if (st->attr_sum) dnnl_primitive_attr_destroy(st->attr_sum);
  if (st->strm) dnnl_stream_destroy(st->strm);
  if (st->eng) dnnl_engine_destroy(st->eng);
  free(st);
  e->dnnl = NULL;
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

mc_status dnnl_exec_init(mc_exec *e) {
  const mc_model *m = e->m;
  const int nn = m->n_nodes;
  dstate *st = mc_calloc(1, sizeof *st);
  e->dnnl = st;
  st->e = e;
  st->gen = 1;
  st->logits = e->logits;
  st->buf = mc_calloc((size_t)nn, sizeof(float *));
  st->dbuf = mc_calloc((size_t)nn, sizeof(float *));
  st->bufsz = mc_calloc((size_t)nn, sizeof(size_t));
  st->dbufsz = mc_calloc((size_t)nn, sizeof(size_t));
  st->bnmean = mc_calloc((size_t)nn, sizeof(float *));
  st->bnvar = mc_calloc((size_t)nn, sizeof(float *));
  st->mask = mc_calloc((size_t)nn, sizeof(float *));
  st->mask_id = mc_calloc((size_t)nn, sizeof(int));
  for (int i = 0; i < nn; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind == MC_NODE_BN) {
      st->bnmean[i] = mc_aligned_alloc(sizeof(float) * (size_t)nd->C);
      st->bnvar[i] = mc_aligned_alloc(sizeof(float) * (size_t)nd->C);
    }
    if (nd->kind == MC_NODE_DROPOUT)
      st->mask[i] = mc_aligned_alloc(sizeof(float) * (size_t)(e->batch * node_numel(nd)));
  }
  st->relu_of = mc_calloc((size_t)nn, sizeof(int));
  st->fused = mc_calloc((size_t)nn, 1);
  const char *wv = getenv("MC_WINO");
  st->wino = wino_available() && !(wv && *wv == '0');
  const char *nf = getenv("MC_DNNL_NOFUSE");
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
  rc = plan_create(st, e->batch < 2 ? e->batch : 2, PK_TRAIN, omp_get_max_threads(), &p);
  if (rc) return rc;
  plan_free(p);
  return MC_OK;
}

void dnnl_exec_forward(mc_exec *e, const float *theta, float *state,
                       const float *x, int64_t n, mc_mode mode) {
  dstate *st = e->dnnl;
  plan *p = get_plan(st, n, mode == MC_MODE_EVAL ? PK_EVAL : mode == MC_MODE_TRAIN ? PK_TRAIN : PK_RECOMPUTE);
  st->cur = p;
  st->theta = (float *)theta;
  st->state = state;
  st->x = x;
  st->grad = st->dx = st->dlogits = NULL;
  bind(st, p);
  run(st, &p->fwd);
}

void dnnl_exec_backward(mc_exec *e, const float *theta, const float *dlogits,
                        float *grad, float *dx) {
  dstate *st = e->dnnl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && p->n == e->n);
  if (!p->bwd_built && build_backward(st, p) != MC_OK) {
    fprintf(stderr, "modeconn: oneDNN backward: %s\n", mc_errmsg());
    abort();
  }
  st->theta = (float *)theta;
  st->grad = grad;
  st->dx = dx;
  st->dlogits = (float *)dlogits;
  bind(st, p);
  run(st, &p->bwd);
  st->dx = NULL;
}

/* Output of a BN node whose ReLU is fused into it: normalise again with
 * the statistics and gamma/beta that the last forward used. */
static mc_status bn_recompute_step(dstate *st, plan *p, int i, step *s) {
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
  mc_status rc = mk_step(st, p, s, pd, 6, a, 0);
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

int dnnl_exec_view(mc_exec *e, int node, mc_act_view *v) {
  dstate *st = e->dnnl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && node >= 0 && node < p->nn);
  if (st->relu_of && st->relu_of[node] >= 0) return -1; /* fused BN: not stored */
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
  *v = (mc_act_view){mem_ptr(p->mem[node]) + md->offset0, block, b->strides[0], b->strides[1], ss};
  return 0;
}

void dnnl_exec_read(mc_exec *e, int node, float *out) {
  dstate *st = e->dnnl;
  plan *p = st->cur;
  MC_ASSERT(p != NULL && node >= 0 && node < p->nn);
  if (st->relu_of && st->relu_of[node] >= 0) { /* fused BN: recompute its output */
    step *r = &p->rc[node];
    if (!r->prim && bn_recompute_step(st, p, node, r)) {
      fprintf(stderr, "modeconn: oneDNN read: %s\n", mc_errmsg());
      abort();
    }
    bind(st, p);
    RK(dnnl_primitive_execute(r->prim, st->strm, r->nargs, r->args));
  }
  step *s = &p->rd[node];
  if (!s->prim) {
    dnnl_memory_desc_t pl;
    dnnl_memory_t dst;
    if (md_plain_of(&pl, &p->md[node]) || new_mem(st, p, &dst, &pl, NULL) ||
        mk_reorder(st, p, s, p->mem[node], dst, 0, 0)) {
      fprintf(stderr, "modeconn: oneDNN read: %s\n", mc_errmsg());
      abort();
    }
    s->b = dst;
  }
  bind(st, p);
  RK(dnnl_memory_set_data_handle(s->b, out));
  RK(dnnl_primitive_execute(s->prim, st->strm, s->nargs, s->args));
  RK(dnnl_stream_wait(st->strm));
}
