/* The oneDNN backend's private header: the plan, its step lists, the
 * helpers every lowering uses, and the per-kind lowering table.
 *
 * Files: dn_plan.c (memory descriptors, memory objects bound to our
 * buffers, primitives and reorders, the plan cache), dn_build.c (the
 * forward and backward step lists of a plan, node by node through the
 * lowering table), lower_conv.c (conv, linear), lower_bn.c, lower_pool.c
 * (max, average, global average), lower_eltwise.c (relu, dropout,
 * normalize), lower_join.c (input, flatten, add, concat), dn_run.c (the
 * step interpreter and our own steps: BN statistics, Winograd), and
 * dn_backend.c (the mc_backend_ops entry).  See dn_backend.c for the
 * design: plans, layouts, fusion, memory. */
#ifndef MC_NN_DNNL_DN_H
#define MC_NN_DNNL_DN_H

#include "nn/backend.h"
#include "nn/kernels/wino.h"

#include <dnnl.h>
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
                 count > 0: also the channel sums of BN node count - 1;
                 flag WINO_FOLDED: the eval BN after it (and its ReLU)
                 folded in; WINO_SAVED: plain, from the weights a folded
                 forward saved (see lower_conv.c) */
  S_WINO_DX,  /* its input gradient by Winograd, diff a -> b (overwritten; flag 1: added) */
  S_BN_BATCH, /* BN_RECOMPUTE plans: batch mean/var of a (sums first unless flag) */
  S_SAVE,     /* b[0..count) = theta[off..off+count) */
  S_BN_FOLD_DX, /* folded eval BN node: diff a -> b, times its scale (and its ReLU's mask) */
  S_BN_FOLD_DGB, /* its dgamma, dbeta from diff a and the conv's output b, added to grad */
  S_ADD,       /* residual sum of same-layout inputs -> b (count floats); flag: then ReLU */
  S_WINO_DW,   /* weight (and bias) gradient of an S_WINO conv by Winograd: diff a, forward src b, into grad */
  S_DX3,       /* input gradient of a 3x3 stride-1 stem conv (mc_kern_dx3): diff a -> b (flag 1: added) */
  S_FOLD_ST    /* direct conv node with its eval BN folded in: its folded weights and bias (lower_conv.c) */
};
enum { WINO_PLAIN = 0, WINO_FOLDED = 1, WINO_SAVED = 2 };

typedef struct {
  int kind, node;
  int need; /* 0: always; else runs when the call asks for one of these
               (DN_DX: an input gradient, DN_GRAD: weight gradients) */
  int flag; /* S_NORM_B: overwrite (1) or accumulate (0); S_WINO: WINO_* */
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
  int need;
} conv_entry;

typedef struct {
  int64_t n;
  int kind, nthr; /* kind: PK_* */
  int all_heads;  /* computes the train-only heads too (PK_TRAIN always) */
  unsigned gen; /* st->gen the static bindings were last set for */
  unsigned long used;
  int bwd_built;
  size_t oom;                       /* bytes of a plan buffer that failed */
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
  step *rc;                         /* fused BN: recompute its own output; direct conv with
                                       its BN folded in: its own output (plain forward) */
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
  char *wino_ok;                    /* S_WINO: wino_u holds the transform of wino_w (2: which is
                                       the fold in fold_w) */
  float **wino_du, **wino_dw;       /* S_WINO_DX: the same for the input gradient */
  char *wino_dok;
  double **bnsums;                  /* S_BN_BATCH: channel sums, 2 C per BN node */
  int *fold;                        /* eval plans: conv i -> BN j + 1 folded into it
                                       (lower_conv.c); BN j -> -(i + 1); else 0 */
  float **fold_w;                   /* folded conv i: what its last forward used (dn_fold_buf) */
  char *fold_ok;                    /* folded conv i: fold_w holds the fold of the values saved in it */
  int *add_relu;                    /* sum i -> ReLU r + 1 computed by its S_ADD (r -> -(i + 1)) */
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
  int wino_dw;       /* S_WINO_DW allowed (MC_WINO_DW=0 turns it off) */
  int fold;          /* eval BN folded into Winograd steps, ReLU into sums (MC_DNNL_NOFUSE=1: off) */
  float **bnmean, **bnvar, **mask;
  int *mask_id;
  int *relu_of;    /* BN node -> the ReLU fused into it, else -1 */
  char *fused;     /* ReLU node computed by the BN before it */
  unsigned gen;
  unsigned long tick;
  int cur_node;      /* node whose steps are being built (for messages) */
  plan *plans[MAX_PLANS];
  plan *cur;
  /* pointers of the current call */
  float *theta, *grad, *dx, *state;
  float **dout;      /* per head: the call's d(loss)/d(output) */
  float *zeros;      /* (batch, classes) zeros: the seed of a NULL dout[k] */
  const float *x;
} dstate;


enum { DN_DX = 1, DN_GRAD = 2 };

/* Room for one more element in the growable array *arrp (n used of
 * *cap, elements of elem bytes), or MC_ENOMEM naming what it holds. */
mc_status dn_grow(void *arrp, int *cap, int n, size_t elem, const char *what);
/* Appends val; returns the status from the enclosing function when the
 * array cannot grow. */
#define PUSH(arr, n, cap, val, what)                                        \
  do {                                                                      \
    MCK(dn_grow(&(arr), &(cap), (n), sizeof *(arr), (what)));               \
    (arr)[(n)++] = (val);                                                   \
  } while (0)

mc_status dn_fail(const char *what, dnnl_status_t s, const char *file, int line);
#define CK(call)                                                            \
  do {                                                                      \
    dnnl_status_t s_ = (call);                                              \
    if (s_ != dnnl_success) return dn_fail(#call, s_, __FILE__, __LINE__);  \
  } while (0)
#define MCK(call)                                                           \
  do {                                                                      \
    mc_status m_ = (call);                                                  \
    if (m_ != MC_OK) return m_;                                             \
  } while (0)

/* Backward bookkeeping shared by the lowerings: seen[s] once a gradient
 * for s has been written (later writers accumulate); alias[s] when s is an
 * addend sharing its sum's diff buffer. */
typedef struct {
  char *seen, *alias;
} dn_bctx;

/* One lowering per node kind: forward steps, backward steps (NULL: the
 * kind has no backward of its own, e.g. input). */
typedef struct {
  mc_status (*fwd)(dstate *st, plan *p, int i);
  mc_status (*bwd)(dstate *st, plan *p, dn_bctx *b, int i);
} dn_lowering;
extern const dn_lowering dn_lower_conv, dn_lower_bn, dn_lower_pool, dn_lower_relu, dn_lower_dropout,
    dn_lower_normalize, dn_lower_input, dn_lower_flatten, dn_lower_add, dn_lower_concat;

static inline int dn_md_eq(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
  return dnnl_memory_desc_equal(a, b);
}

/* dn_plan.c */
int64_t dn_numel(const mc_node *nd);
int dn_node_dims(const mc_node *nd, int64_t n, dnnl_dims_t d);
dnnl_format_tag_t dn_plain_tag(int nd);
mc_status dn_md_init(dnnl_memory_desc_t *md, int nd, const dnnl_dims_t d, int any);
mc_status dn_md_plain_of(dnnl_memory_desc_t *out, const dnnl_memory_desc_t *md);
const dnnl_memory_desc_t *dn_qmd(const_dnnl_primitive_desc_t pd, dnnl_query_t q);
size_t dn_md_size(const dnnl_memory_desc_t *md);
int dn_md_is(const dnnl_memory_desc_t *md, dnnl_format_tag_t tag);
const dnnl_memory_desc_t *dn_mem_md(const_dnnl_memory_t m);
float *dn_mem_ptr(const_dnnl_memory_t m);
int dn_pd_is_ref(const_dnnl_primitive_desc_t pd);
mc_status dn_ensure(dstate *st, float **b, size_t *sz, size_t need);
float *dn_plan_buf(plan *p, size_t bytes);
mc_status dn_new_mem(dstate *st, plan *p, dnnl_memory_t *out, const dnnl_memory_desc_t *md, void *handle);
mc_status dn_bound_mem(dstate *st, plan *p, dnnl_memory_t *out, const dnnl_memory_desc_t *md, float **base,
                       size_t off, int dynamic);
mc_status dn_mk_step(dstate *st, plan *p, step *s, const_dnnl_primitive_desc_t pd, int nargs,
                     const dnnl_exec_arg_t *args, int need);
mc_status dn_add_prim(dstate *st, plan *p, steplist *L, const_dnnl_primitive_desc_t pd, int nargs,
                      const dnnl_exec_arg_t *args, int need);
mc_status dn_mk_reorder(dstate *st, plan *p, step *s, dnnl_memory_t src, dnnl_memory_t dst, int sum, int need);
mc_status dn_add_reorder(dstate *st, plan *p, steplist *L, dnnl_memory_t src, dnnl_memory_t dst, int sum,
                         int need);
mc_status dn_as_md(dstate *st, plan *p, steplist *L, dnnl_memory_t src, const dnnl_memory_desc_t *want, int need,
                   int cache, dnnl_memory_t *out);
mc_status dn_set_out(dstate *st, plan *p, int i);
mc_status dn_add_ws(dstate *st, plan *p, int i, dnnl_exec_arg_t *a, int *na);
mc_status dn_push_step(steplist *L, step s);
mc_status dn_push_custom(steplist *L, int kind, int node, dnnl_memory_t a, dnnl_memory_t b, int64_t count,
                         int need);
mc_status dn_create_bwd_pd(dstate *st, dnnl_primitive_desc_t *pd, const void *desc,
                           const_dnnl_primitive_desc_t hint);
/* Where a primitive writes the gradient for input node s (first: no
 * gradient for s written yet); *deliver: follow with dn_add_deliver. */
mc_status dn_diff_target(dstate *st, plan *p, int s, int first, const dnnl_memory_desc_t *q, dnnl_memory_t *t,
                         int *deliver);
mc_status dn_add_deliver(dstate *st, plan *p, steplist *L, int s, int first, dnnl_memory_t src, int need);
/* Step condition for delivering a gradient to input node s of node i:
 * 0 (always) unless s (or i itself) lies before every parameter. */
int dn_need_in(const mc_model *m, int i, int s);
mc_status dn_get_plan(dstate *st, int64_t n, int kind, int all_heads, plan **out);
void dn_plan_free(plan *p);
mc_status dn_plan_create(dstate *st, int64_t n, int kind, int all_heads, int nthr, plan **out);
mc_status dn_bind(dstate *st, plan *p);

/* dn_build.c */
/* The one node of plan p that reads node s, or -1 (none, several, or s is a head). */
int dn_sole_consumer(const dstate *st, const plan *p, int s);
mc_status dn_build_forward(dstate *st, plan *p);
mc_status dn_build_backward(dstate *st, plan *p);

/* dn_run.c */
mc_status dn_run(dstate *st, const steplist *L);
/* Layouts the BN-statistics step reads: 1 = 8-blocked, 2 = 16-blocked, 0 =
 * plain; -1 = neither (that BN keeps oneDNN's training primitive). */
int dn_bn_sums_layout(const dnnl_memory_desc_t *md, const mc_node *nd);
/* Conv node i runs as S_WINO (see lower_conv.c). */
int dn_wino_fits(const dstate *st, const plan *p, int i);

wino_shape dn_wino_shape(const dstate *st, const plan *p, int i, int64_t n);
int64_t dn_dx3_block(const dstate *st, const plan *p, int i);

/* Eval-BN folding (lower_conv.c): the BN node that conv node i absorbs in
 * plan p, or -1; dn_fold_buf's parts for conv i (k output channels of c *
 * kh * kw weights each): the folded weights and bias, the plain weights
 * and bias they came from, the BN's scale. */
int dn_fold_target(const dstate *st, const plan *p, int i);
/* The channel block (8 or 16) of folded conv node i's output, 0 if it
 * cannot fold; the folded forward of a direct (oneDNN) conv i, pushed at
 * its BN's place, writing dst. */
int dn_fold_block(const dstate *st, const plan *p, int i);
mc_status dn_fold_direct_steps(dstate *st, plan *p, int i, dnnl_memory_t dst);
typedef struct {
  float *w, *b, *w0, *b0, *scale;
  float *bn0; /* the BN's gamma, beta, mean and variance the fold used (4 k) */
} dn_fold_parts;
dn_fold_parts dn_fold_buf(const dstate *st, const plan *p, int i);

/* The first lines of every lowering (not every one uses all of them). */
#define DN_UNUSED __attribute__((unused))
#define FWD_PROLOGUE                                                        \
  const mc_model *m DN_UNUSED = st->e->m;                                   \
  const int64_t N DN_UNUSED = p->n;                                         \
  steplist *L DN_UNUSED = &p->fwd;                                          \
  const mc_node *nd = &m->nodes[i];                                         \
  const int in DN_UNUSED = nd->n_in ? nd->in[0] : -1;                       \
  const mc_node *n0 DN_UNUSED = in >= 0 ? &m->nodes[in] : NULL;             \
  dnnl_dims_t dd;                                                           \
  const int ndd DN_UNUSED = dn_node_dims(nd, N, dd);                        \
  dnnl_memory_desc_t any_dst;                                               \
  MCK(dn_md_init(&any_dst, ndd, dd, 1));                                    \
  dnnl_exec_arg_t a[MAX_ARGS] DN_UNUSED;                                    \
  int na DN_UNUSED = 0
/* cin: the condition of steps that deliver the input gradient; gneed:
 * of steps that serve both the weight and the input gradient. */
#define BWD_PROLOGUE                                                        \
  const mc_model *m DN_UNUSED = st->e->m;                                   \
  const int64_t N DN_UNUSED = p->n;                                         \
  steplist *L DN_UNUSED = &p->bwd;                                          \
  const mc_node *nd = &m->nodes[i];                                         \
  const int in = nd->in[0];                                                 \
  const mc_node *n0 DN_UNUSED = &m->nodes[in];                              \
  const int cin DN_UNUSED = dn_need_in(m, i, in);                           \
  const int gneed DN_UNUSED = cin ? (DN_GRAD | DN_DX) : 0;                  \
  char *seen DN_UNUSED = b->seen, *alias DN_UNUSED = b->alias;              \
  dnnl_exec_arg_t a[MAX_ARGS] DN_UNUSED;                                    \
  int na DN_UNUSED = 0, first DN_UNUSED = 0, deliver DN_UNUSED = 0;         \
  dnnl_memory_t t DN_UNUSED = NULL;                                         \
  dnnl_primitive_desc_t pd = NULL;                                          \
  mc_status rc = MC_OK
#define TRY(call)                                                           \
  do {                                                                      \
    if ((rc = (call)) != MC_OK) goto done;                                  \
  } while (0)
#define TRYD(call)                                                          \
  do {                                                                      \
    dnnl_status_t s_ = (call);                                              \
    if (s_ != dnnl_success) {                                               \
      rc = dn_fail(#call, s_, __FILE__, __LINE__);                          \
      goto done;                                                            \
    }                                                                       \
  } while (0)

/* lower_bn.c: a fused BN's own output, recomputed for dnnl_exec_read */
mc_status dn_bn_recompute_step(dstate *st, plan *p, int i, step *s);

#endif
