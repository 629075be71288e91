/* Model graph: parses the architecture text, infers shapes, lays out the
 * flat parameter vector theta and state vector, and derives the permutation
 * groups from the graph (union-find over channel spaces).  No architecture
 * carries permutation code of its own: it all falls out of here. */
#include "modeconn.h"

#include "core/checked.h"
#include "core/file.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_names[MC_NODE_KIND_COUNT] = {
    "input", "normalize", "conv",    "linear", "bn",     "relu",   "maxpool",
    "avgpool", "gap",     "flatten", "add",    "concat", "dropout"};

const char *mc_node_kind_name(mc_node_kind k) {
  return (k >= 0 && k < MC_NODE_KIND_COUNT) ? kind_names[k] : "?";
}

void mc_arch_params_default(mc_arch_params *p) {
  memset(p, 0, sizeof *p);
  p->in_c = 1;
  p->in_h = 28;
  p->in_w = 28;
  p->classes = 10;
  p->width = 1.0;
  p->widths = "512,512";
}

/* ------------------------------------------------------------ union-find */
typedef struct {
  int *parent;
  int *fixed;
  int n, cap;
} uf_t;

static int uf_new(uf_t *u) {
  if (u->n == u->cap) {
    u->cap = u->cap ? u->cap * 2 : 64;
    u->parent = realloc(u->parent, sizeof(int) * (size_t)u->cap);
    u->fixed = realloc(u->fixed, sizeof(int) * (size_t)u->cap);
    MC_ASSERT(u->parent && u->fixed);
  }
  u->parent[u->n] = u->n;
  u->fixed[u->n] = 0;
  return u->n++;
}

static int uf_find(uf_t *u, int a) {
  while (u->parent[a] != a) {
    u->parent[a] = u->parent[u->parent[a]];
    a = u->parent[a];
  }
  return a;
}

static void uf_union(uf_t *u, int a, int b) {
  a = uf_find(u, a);
  b = uf_find(u, b);
  if (a == b) return;
  if (b < a) { int t = a; a = b; b = t; }
  u->parent[b] = a;
  u->fixed[a] |= u->fixed[b];
}

/* Pooled size along an axis of n, as PyTorch: floor, or with ceil=1 the
 * ceiling, dropping a last window that would start in the right padding. */
static int64_t pool_out(int64_t n, const mc_node *nd) {
  const int64_t span = n + 2 * (int64_t)nd->pad - nd->k, s = nd->stride;
  int64_t o = (nd->ceil ? (span + s - 1) / s : span / s) + 1;
  if (nd->ceil && (o - 1) * s >= n + nd->pad) o--;
  return o;
}

/* ---------------------------------------------------------------- parser */
typedef struct {
  const char *file; /* for messages */
  int line;
} pctx;

static mc_status perr(const pctx *c, const char *fmt, const char *a,
                      const char *b) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, a, b);
  return mc_error(MC_EFORMAT, "%s:%d: %s", c->file, c->line, msg);
}

static mc_status parse_int(const pctx *c, const char *key, const char *val,
                           const mc_arch_params *p, int64_t *out) {
  if (!strcmp(val, "classes")) { *out = p->classes; return MC_OK; }
  if (!strcmp(val, "in_c")) { *out = p->in_c; return MC_OK; }
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (errno || *end || end == val || v < 0 || v > (1LL << 40))
    return perr(c, "%s=%s: expected a non-negative integer", key, val);
  *out = v;
  return MC_OK;
}

static mc_status parse_float(const pctx *c, const char *key, const char *val,
                             float *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || *end || end == val || !isfinite(v) || !isfinite((float)v))
    return perr(c, "%s=%s: expected a finite number", key, val);
  *out = (float)v;
  return MC_OK;
}

static int find_node(const mc_node *nodes, int n, const char *name) {
  for (int i = n - 1; i >= 0; i--)
    if (!strcmp(nodes[i].name, name)) return i;
  return -1;
}

/* Parses one line into *nd.  Returns MC_OK with nd->kind = -1 for blanks. */
static mc_status parse_line(const pctx *c, char *line, mc_node *nodes, int n,
                            const mc_arch_params *p, mc_node *nd) {
  memset(nd, 0, sizeof *nd);
  nd->kind = (mc_node_kind)-1;
  char *hash = strchr(line, '#');
  if (hash) *hash = 0;
  char *tok[32];
  int nt = 0;
  for (char *s = strtok(line, " \t\r\n"); s; s = strtok(NULL, " \t\r\n")) {
    if (nt == 32) return perr(c, "too many fields%s%s", "", "");
    tok[nt++] = s;
  }
  if (nt == 0) return MC_OK;
  int ti = 0;
  size_t l0 = strlen(tok[0]);
  if (l0 > 1 && tok[0][l0 - 1] == ':') {
    tok[0][l0 - 1] = 0;
    if (l0 - 1 >= MC_NAME_MAX) return perr(c, "label '%s' too long%s", tok[0], "");
    strcpy(nd->name, tok[0]);
    ti = 1;
  }
  if (ti >= nt) return perr(c, "label '%s' without a node kind%s", nd->name, "");
  if (!strcmp(tok[ti], "output")) { /* an extra output head, not a node */
    nd->kind = (mc_node_kind)-2;
    nd->p = 1.f;    /* weight */
    nd->bias = 0;   /* train-only */
    nd->in[0] = -1;
    for (int i = ti + 1; i < nt; i++) {
      char *key = tok[i], *val = strchr(tok[i], '=');
      if (!val) {
        if (!strcmp(key, "train-only")) { nd->bias = 1; continue; }
        return perr(c, "output: expected from=NODE, weight=W or train-only, got '%s'%s", key, "");
      }
      *val++ = 0;
      mc_status st;
      if (!strcmp(key, "from")) {
        if ((nd->in[0] = find_node(nodes, n, val)) < 0)
          return perr(c, "output from=%s: no earlier node with that label%s", val, "");
      } else if (!strcmp(key, "weight")) {
        if ((st = parse_float(c, key, val, &nd->p))) return st;
        if (!(nd->p >= 0.f)) return perr(c, "output weight=%s: expected a number >= 0%s", val, "");
      } else {
        return perr(c, "output: unknown key '%s' (expected from, weight, train-only)%s", key, "");
      }
    }
    if (nd->in[0] < 0) return perr(c, "output needs from=NODE%s%s", "", "");
    return MC_OK;
  }
  int kind = -1;
  for (int k = 0; k < MC_NODE_KIND_COUNT; k++)
    if (!strcmp(tok[ti], kind_names[k])) kind = k;
  if (kind < 0)
    return perr(c, "unknown node kind '%s' (expected input, normalize, conv, "
                   "linear, bn, relu, maxpool, avgpool, gap, flatten, add, "
                   "concat or dropout)%s", tok[ti], "");
  nd->kind = (mc_node_kind)kind;
  if (!nd->name[0]) snprintf(nd->name, sizeof nd->name, "%s@%d", tok[ti], n);
  /* defaults */
  nd->stride = 1;
  nd->eps = 1e-5f;
  nd->momentum = 0.1f;
  nd->p = 0.5f;
  nd->bias = (kind == MC_NODE_LINEAR);
  nd->t_weight = nd->t_bias = nd->t_rmean = nd->t_rvar = -1;
  int have_s = 0, have_out = 0, have_k = 0;
  nd->n_in = 0;
  for (int i = ti + 1; i < nt; i++) {
    char *key = tok[i], *val = strchr(tok[i], '=');
    if (!val) {
      if (!strcmp(key, "bias")) { nd->bias = 1; continue; }
      return perr(c, "expected key=value, got '%s'%s", key, "");
    }
    *val++ = 0;
    int64_t iv = 0;
    mc_status st;
    if (!strcmp(key, "from")) {
      for (char *f = strtok(val, ","); f; f = strtok(NULL, ",")) {
        if (nd->n_in == MC_MAX_INPUTS) return perr(c, "too many inputs%s%s", "", "");
        int j = find_node(nodes, n, f);
        if (j < 0) return perr(c, "from=%s: no earlier node with that label%s", f, "");
        nd->in[nd->n_in++] = j;
      }
    } else if (!strcmp(key, "out")) {
      if ((st = parse_int(c, key, val, p, &nd->out))) return st;
      have_out = 1;
    } else if (!strcmp(key, "k") || !strcmp(key, "s") || !strcmp(key, "p") ||
               !strcmp(key, "bias") || !strcmp(key, "ceil")) {
      if ((st = parse_int(c, key, val, p, &iv))) return st;
      if (iv > 1 << 20) return perr(c, "%s=%s is too large", key, val);
      if (key[0] == 'k') { nd->k = (int)iv; have_k = 1; }
      else if (key[0] == 's') { nd->stride = (int)iv; have_s = 1; }
      else if (key[0] == 'p') nd->pad = (int)iv;
      else if (key[0] == 'c') nd->ceil = iv != 0;
      else nd->bias = iv != 0;
    } else if (!strcmp(key, "eps")) {
      if ((st = parse_float(c, key, val, &nd->eps))) return st;
    } else if (!strcmp(key, "momentum")) {
      if ((st = parse_float(c, key, val, &nd->momentum))) return st;
    } else if (!strcmp(key, "rate")) {
      if ((st = parse_float(c, key, val, &nd->p))) return st;
    } else {
      return perr(c, "unknown key '%s' for this node kind%s", key, "");
    }
  }
  if (nd->ceil && kind != MC_NODE_MAXPOOL)
    return perr(c, "ceil=1 is only supported for maxpool%s%s", "", "");
  if (kind == MC_NODE_DROPOUT && (nd->p < 0 || nd->p >= 1))
    return perr(c, "dropout rate must be in [0,1)%s%s", "", "");
  /* PyTorch's ranges: eps > 0 (1 is already absurd), momentum in [0, 1] */
  if (kind == MC_NODE_BN && !(nd->eps > 0 && nd->eps <= 1))
    return perr(c, "bn eps must be in (0, 1]%s%s", "", "");
  if (kind == MC_NODE_BN && !(nd->momentum >= 0 && nd->momentum <= 1))
    return perr(c, "bn momentum must be in [0, 1]%s%s", "", "");
  if ((kind == MC_NODE_CONV || kind == MC_NODE_LINEAR) && (!have_out || nd->out < 1))
    return perr(c, "%s needs out=N (N >= 1)%s", kind_names[kind], "");
  if (kind == MC_NODE_CONV || kind == MC_NODE_MAXPOOL || kind == MC_NODE_AVGPOOL) {
    if (!have_k || nd->k < 1) return perr(c, "%s needs k=N (N >= 1)%s", kind_names[kind], "");
    if (!have_s && kind != MC_NODE_CONV) nd->stride = nd->k;
    if (nd->stride < 1) return perr(c, "stride must be >= 1%s%s", "", "");
    /* as PyTorch: a pooling window must overlap the unpadded input */
    if (kind != MC_NODE_CONV && nd->pad > nd->k / 2)
      return perr(c, "pool padding p must be at most k/2%s%s", "", "");
  }
  if (nd->n_in == 0 && kind != MC_NODE_INPUT) {
    if (n == 0) return perr(c, "the first node must be 'input'%s%s", "", "");
    nd->in[0] = n - 1;
    nd->n_in = 1;
  }
  int want = (kind == MC_NODE_ADD || kind == MC_NODE_CONCAT) ? -2
             : kind == MC_NODE_INPUT ? 0 : 1;
  if (want >= 0 && nd->n_in != want)
    return perr(c, "%s takes %s input(s)", kind_names[kind], want ? "exactly one" : "no");
  if (want == -2 && nd->n_in < 2)
    return perr(c, "%s needs from=a,b with at least two inputs%s", kind_names[kind], "");
  if (kind == MC_NODE_INPUT && n != 0)
    return perr(c, "'input' must be the first node and appear once%s%s", "", "");
  if (find_node(nodes, n, nd->name) >= 0)
    return perr(c, "label '%s' used twice%s", nd->name, "");
  return MC_OK;
}

/* ------------------------------------------------------------------ build */
/* Channel segments of one layout: nested concats multiply them, and each
 * costs memory in every node downstream. */
#define MC_MAX_SEGMENTS (1 << 16)
/* Input sizes and class counts: 2^24 is far past any dataset. */
#define MC_MAX_DIM (1 << 24)

static mc_layout layout_copy(const mc_layout *l) {
  mc_layout r = {l->n, mc_malloc(sizeof(mc_segment) * (size_t)(l->n ? l->n : 1))};
  memcpy(r.seg, l->seg, sizeof(mc_segment) * (size_t)l->n);
  return r;
}

static mc_layout layout_new(int space, int64_t count) {
  mc_layout r = {1, mc_malloc(sizeof(mc_segment))};
  r.seg[0] = (mc_segment){-1, space, count, 1};
  return r;
}

/* Appends a tensor of the given shape to theta or state; its element count
 * and the vector's new length are overflow-checked (a wrapped count would
 * make a small theta that initialisation writes past). */
static mc_status add_tensor(mc_model *m, int *cap, const char *file, int node, const char *suffix,
                            mc_role role, int ndim, const int64_t *shape,
                            const mc_layout *ax0, const mc_layout *ax1, int *idx) {
  int64_t numel = 1, end;
  for (int i = 0; i < ndim; i++)
    if (!mc_mul_ok(&numel, numel, shape[i])) numel = -1;
  size_t *cursor = (role == MC_ROLE_RMEAN || role == MC_ROLE_RVAR) ? &m->n_state : &m->n_theta;
  if (numel < 0 || !mc_add_ok(&end, (int64_t)*cursor, numel))
    return mc_error(MC_ESHAPE, "%s: node '%s': tensor %s would make the model larger than %lld values "
                    "(shape %lld x %lld%s)", file, m->nodes[node].name, suffix, (long long)MC_MAX_NUMEL,
                    (long long)shape[0], (long long)(ndim > 1 ? shape[1] : 1), ndim > 2 ? " x ..." : "");
  if (m->n_tensors == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    m->tensors = realloc(m->tensors, sizeof(mc_tensor) * (size_t)*cap);
    MC_ASSERT(m->tensors);
  }
  mc_tensor *t = &m->tensors[m->n_tensors];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s.%s", m->nodes[node].name, suffix);
  t->ndim = ndim;
  t->numel = (size_t)numel;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->in_state = role == MC_ROLE_RMEAN || role == MC_ROLE_RVAR;
  t->node = node;
  t->role = role;
  t->axis[0] = ax0;
  t->axis[1] = ax1;
  t->off = *cursor;
  *cursor = (size_t)end;
  *idx = m->n_tensors++;
  return MC_OK;
}

/* A node's per-sample output size C*H*W, checked against MC_MAX_NUMEL. */
static mc_status node_size(const char *file, const mc_node *nd) {
  int64_t n;
  if (nd->C < 1 || nd->H < 1 || nd->W < 1 || !mc_mul_ok(&n, nd->C, nd->H) || !mc_mul_ok(&n, n, nd->W))
    return mc_error(MC_ESHAPE, "%s: node '%s': output %lldx%lldx%lld per sample is not between 1 and %lld values",
                    file, nd->name, (long long)nd->C, (long long)nd->H, (long long)nd->W, (long long)MC_MAX_NUMEL);
  return MC_OK;
}

static mc_status build(mc_model *m, const char *file, const mc_arch_params *p) {
  uf_t uf = {0};
  int tcap = 0;
  mc_status st = MC_OK;
  for (int i = 0; i < m->n_nodes; i++) {
    mc_node *nd = &m->nodes[i];
    const mc_node *in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    switch (nd->kind) {
    case MC_NODE_INPUT: {
      nd->C = p->in_c; nd->H = p->in_h; nd->W = p->in_w;
      int s = uf_new(&uf);
      uf.fixed[s] = 1;
      nd->layout = layout_new(s, nd->C);
      break;
    }
    case MC_NODE_NORMALIZE:
      if (in0->kind != MC_NODE_INPUT) {
        st = mc_error(MC_EFORMAT, "%s: node '%s': normalize must follow input", file, nd->name);
        goto out;
      }
      /* fallthrough */
    case MC_NODE_BN:
    case MC_NODE_RELU:
    case MC_NODE_DROPOUT:
      nd->C = in0->C; nd->H = in0->H; nd->W = in0->W; nd->flat = in0->flat;
      nd->layout = layout_copy(&in0->layout);
      if (nd->kind == MC_NODE_BN) {
        int64_t sh[1] = {nd->C};
        const mc_layout *l = &nd->layout;
        if ((st = add_tensor(m, &tcap, file, i, "weight", MC_ROLE_WEIGHT, 1, sh, l, NULL, &nd->t_weight)) ||
            (st = add_tensor(m, &tcap, file, i, "bias", MC_ROLE_BIAS, 1, sh, l, NULL, &nd->t_bias)) ||
            (st = add_tensor(m, &tcap, file, i, "running_mean", MC_ROLE_RMEAN, 1, sh, l, NULL, &nd->t_rmean)) ||
            (st = add_tensor(m, &tcap, file, i, "running_var", MC_ROLE_RVAR, 1, sh, l, NULL, &nd->t_rvar)))
          goto out;
      }
      break;
    case MC_NODE_CONV: {
      if (in0->flat) {
        st = mc_error(MC_EFORMAT, "%s: conv '%s' cannot follow a flattened vector", file, nd->name);
        goto out;
      }
      /* H, W <= MC_MAX_NUMEL and pad, k <= 2^20: no overflow here */
      int64_t oh = (in0->H + 2 * (int64_t)nd->pad - nd->k) / nd->stride + 1;
      int64_t ow = (in0->W + 2 * (int64_t)nd->pad - nd->k) / nd->stride + 1;
      if (in0->H + 2 * (int64_t)nd->pad < nd->k || in0->W + 2 * (int64_t)nd->pad < nd->k) {
        st = mc_error(MC_ESHAPE, "%s: conv '%s': kernel %d larger than its padded %lldx%lld input",
                      file, nd->name, nd->k, (long long)in0->H, (long long)in0->W);
        goto out;
      }
      nd->C = nd->out; nd->H = oh; nd->W = ow;
      nd->layout = layout_new(uf_new(&uf), nd->C);
      int64_t sh[4] = {nd->out, in0->C, nd->k, nd->k};
      if ((st = add_tensor(m, &tcap, file, i, "weight", MC_ROLE_WEIGHT, 4, sh, &nd->layout, &in0->layout,
                           &nd->t_weight)) ||
          (nd->bias && (st = add_tensor(m, &tcap, file, i, "bias", MC_ROLE_BIAS, 1, sh, &nd->layout, NULL, &nd->t_bias))))
        goto out;
      break;
    }
    case MC_NODE_LINEAR: {
      if (!in0->flat && (in0->H != 1 || in0->W != 1)) {
        st = mc_error(MC_EFORMAT, "%s: linear '%s' needs a vector input: add 'flatten' or 'gap' before it",
                      file, nd->name);
        goto out;
      }
      nd->C = nd->out; nd->H = nd->W = 1; nd->flat = 1;
      nd->layout = layout_new(uf_new(&uf), nd->C);
      int64_t sh[2] = {nd->out, in0->C * in0->H * in0->W}; /* checked by node_size of in0 */
      if ((st = add_tensor(m, &tcap, file, i, "weight", MC_ROLE_WEIGHT, 2, sh, &nd->layout, &in0->layout,
                           &nd->t_weight)) ||
          (nd->bias && (st = add_tensor(m, &tcap, file, i, "bias", MC_ROLE_BIAS, 1, sh, &nd->layout, NULL, &nd->t_bias))))
        goto out;
      break;
    }
    case MC_NODE_MAXPOOL:
    case MC_NODE_AVGPOOL:
      if (in0->flat || in0->H + 2 * (int64_t)nd->pad < nd->k || in0->W + 2 * (int64_t)nd->pad < nd->k) {
        st = mc_error(MC_ESHAPE, "%s: pool '%s': input %lldx%lld too small for k=%d",
                      file, nd->name, (long long)in0->H, (long long)in0->W, nd->k);
        goto out;
      }
      nd->C = in0->C;
      nd->H = pool_out(in0->H, nd);
      nd->W = pool_out(in0->W, nd);
      nd->layout = layout_copy(&in0->layout);
      break;
    case MC_NODE_GAP:
      nd->C = in0->C; nd->H = nd->W = 1; nd->flat = 1;
      nd->layout = layout_copy(&in0->layout);
      break;
    case MC_NODE_FLATTEN:
      nd->C = in0->C * in0->H * in0->W; nd->H = nd->W = 1; nd->flat = 1;
      nd->layout = layout_copy(&in0->layout);
      for (int s = 0; s < nd->layout.n; s++) nd->layout.seg[s].repeat *= in0->H * in0->W;
      break;
    case MC_NODE_ADD:
      for (int j = 1; j < nd->n_in; j++) {
        const mc_node *o = &m->nodes[nd->in[j]];
        int same = o->C == in0->C && o->H == in0->H && o->W == in0->W &&
                   o->layout.n == in0->layout.n;
        for (int s = 0; same && s < o->layout.n; s++)
          same = o->layout.seg[s].count == in0->layout.seg[s].count &&
                 o->layout.seg[s].repeat == in0->layout.seg[s].repeat;
        if (!same) {
          st = mc_error(MC_ESHAPE, "%s: add '%s': inputs '%s' and '%s' differ in shape or channel structure",
                        file, nd->name, in0->name, o->name);
          goto out;
        }
        for (int s = 0; s < o->layout.n; s++)
          uf_union(&uf, in0->layout.seg[s].space, o->layout.seg[s].space);
      }
      nd->C = in0->C; nd->H = in0->H; nd->W = in0->W; nd->flat = in0->flat;
      nd->layout = layout_copy(&in0->layout);
      break;
    case MC_NODE_CONCAT: {
      int64_t ctot = 0;
      int nseg = 0;
      for (int j = 0; j < nd->n_in; j++) {
        const mc_node *o = &m->nodes[nd->in[j]];
        if (o->H != in0->H || o->W != in0->W || o->flat != in0->flat) {
          st = mc_error(MC_ESHAPE, "%s: concat '%s': '%s' is %lldx%lld, '%s' is %lldx%lld",
                        file, nd->name, in0->name, (long long)in0->H, (long long)in0->W,
                        o->name, (long long)o->H, (long long)o->W);
          goto out;
        }
        if (!mc_add_ok(&ctot, ctot, o->C) || o->layout.n > MC_MAX_SEGMENTS - nseg) {
          st = mc_error(MC_ESHAPE, "%s: concat '%s': more than %lld channels or %d channel segments", file,
                        nd->name, (long long)MC_MAX_NUMEL, MC_MAX_SEGMENTS);
          goto out;
        }
        nseg += o->layout.n;
      }
      nd->C = ctot; nd->H = in0->H; nd->W = in0->W; nd->flat = in0->flat;
      nd->layout.n = nseg;
      nd->layout.seg = mc_malloc(sizeof(mc_segment) * (size_t)nseg);
      nseg = 0;
      for (int j = 0; j < nd->n_in; j++) {
        const mc_layout *l = &m->nodes[nd->in[j]].layout;
        memcpy(nd->layout.seg + nseg, l->seg, sizeof(mc_segment) * (size_t)l->n);
        nseg += l->n;
      }
      break;
    }
    default:
      MC_ASSERT(0);
    }
    if ((st = node_size(file, nd))) goto out;
  }
  {
    /* the logits' spaces are fixed */
    mc_node *last = &m->nodes[m->n_nodes - 1];
    if (!last->flat || last->C != p->classes) {
      st = mc_error(MC_ESHAPE, "%s: the last node '%s' must output a vector of %lld classes (it gives %lldx%lldx%lld)",
                    file, last->name, (long long)p->classes, (long long)last->C,
                    (long long)last->H, (long long)last->W);
      goto out;
    }
    for (int s = 0; s < last->layout.n; s++) uf.fixed[uf_find(&uf, last->layout.seg[s].space)] = 1;
    for (int k = 1; k < m->n_heads; k++) { /* every head outputs fixed logits too */
      mc_node *h = &m->nodes[m->heads[k].node];
      if (!h->flat || h->C != p->classes) {
        st = mc_error(MC_ESHAPE, "%s: output '%s' must be a vector of %lld classes (it gives %lldx%lldx%lld)", file,
                      h->name, (long long)p->classes, (long long)h->C, (long long)h->H, (long long)h->W);
        goto out;
      }
      for (int s = 0; s < h->layout.n; s++) uf.fixed[uf_find(&uf, h->layout.seg[s].space)] = 1;
    }
  }
  {
    /* compact group ids in order of first appearance */
    int *gid = mc_malloc(sizeof(int) * (size_t)(uf.n ? uf.n : 1));
    for (int s = 0; s < uf.n; s++) gid[s] = -2;
    int ng = 0;
    for (int i = 0; i < m->n_nodes; i++) {
      mc_node *nd = &m->nodes[i];
      for (int s = 0; s < nd->layout.n; s++) {
        mc_segment *sg = &nd->layout.seg[s];
        int r = uf_find(&uf, sg->space);
        if (uf.fixed[r]) { sg->group = -1; continue; }
        if (gid[r] == -2) {
          gid[r] = ng++;
          m->groups = realloc(m->groups, sizeof(mc_group) * (size_t)ng);
          MC_ASSERT(m->groups);
          mc_group *g = &m->groups[ng - 1];
          memset(g, 0, sizeof *g);
          snprintf(g->name, sizeof g->name, "%s", nd->name);
          g->size = sg->count;
        }
        sg->group = gid[r];
        MC_ASSERT(m->groups[gid[r]].size == sg->count);
        if ((nd->kind == MC_NODE_CONV || nd->kind == MC_NODE_LINEAR))
          m->groups[gid[r]].n_members++;
      }
    }
    m->n_groups = ng;
    free(gid);
  }
out:
  free(uf.parent);
  free(uf.fixed);
  return st;
}

mc_status mc_model_from_spec(mc_model **out, const char *arch,
                             const char *spec, const mc_arch_params *p) {
  *out = NULL;
  if (p->in_c < 1 || p->in_h < 1 || p->in_w < 1 || p->classes < 2 || p->in_c > MC_MAX_DIM || p->in_h > MC_MAX_DIM ||
      p->in_w > MC_MAX_DIM || p->classes > MC_MAX_DIM)
    return mc_error(MC_EARG, "input %lldx%lldx%lld with %lld classes: every size must be in 1..%d and classes >= 2",
                    (long long)p->in_c, (long long)p->in_h, (long long)p->in_w, (long long)p->classes, MC_MAX_DIM);
  mc_model *m = mc_calloc(1, sizeof *m);
  snprintf(m->arch, sizeof m->arch, "%s", arch);
  m->in_c = p->in_c; m->in_h = p->in_h; m->in_w = p->in_w;
  m->classes = p->classes;
  m->width = p->width;
  m->spec = strdup(spec);
  MC_ASSERT(m->spec);
  char *copy = strdup(spec);
  MC_ASSERT(copy);
  int cap = 0;
  pctx c = {arch, 0};
  mc_status st = MC_OK;
  char *save = NULL;
  /* strtok_r over lines, keeping empty lines counted */
  char *line = copy;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    c.line++;
    if (m->n_nodes == cap) {
      cap = cap ? cap * 2 : 64;
      m->nodes = realloc(m->nodes, sizeof(mc_node) * (size_t)cap);
      MC_ASSERT(m->nodes);
    }
    mc_node nd;
    st = parse_line(&c, line, m->nodes, m->n_nodes, p, &nd);
    if (st) break;
    if ((int)nd.kind >= 0) m->nodes[m->n_nodes++] = nd;
    if ((int)nd.kind == -2) { /* an output line: head 1, 2, ... */
      mc_head *h = realloc(m->heads, sizeof(mc_head) * (size_t)(m->n_heads + 2));
      MC_ASSERT(h);
      m->heads = h;
      m->heads[++m->n_heads] = (mc_head){nd.in[0], nd.p, nd.bias};
    }
    line = nl ? nl + 1 : NULL;
  }
  (void)save;
  free(copy);
  if (!st && m->n_nodes < 2)
    st = mc_error(MC_EFORMAT, "%s: an architecture needs at least an input and one layer", arch);
  if (!st) { /* head 0: the last node, weight 1 */
    mc_head *h = realloc(m->heads, sizeof(mc_head) * (size_t)(m->n_heads + 2));
    MC_ASSERT(h);
    m->heads = h;
    m->n_heads++;
    m->heads[0] = (mc_head){m->n_nodes - 1, 1.f, 0};
    for (int k = 1; k < m->n_heads && !st; k++) {
      if (m->heads[k].node == m->n_nodes - 1)
        st = mc_error(MC_EFORMAT, "%s: output from=%s: the last node is already the main output", arch,
                      m->nodes[m->heads[k].node].name);
      for (int q = 1; q < k && !st; q++)
        if (m->heads[q].node == m->heads[k].node)
          st = mc_error(MC_EFORMAT, "%s: output from=%s named twice", arch, m->nodes[m->heads[k].node].name);
    }
  }
  if (!st) st = build(m, arch, p);
  if (!st) {
    m->norm_mean = mc_calloc((size_t)m->in_c, sizeof(float));
    m->norm_std = mc_calloc((size_t)m->in_c, sizeof(float));
    for (int64_t i = 0; i < m->in_c; i++) m->norm_std[i] = 1.f;
  }
  if (st) {
    mc_model_free(m);
    return st;
  }
  *out = m;
  return MC_OK;
}

static char *read_text(const char *path) {
  unsigned char *s;
  size_t n;
  if (mc_read_file(path, "architecture file", 1 << 24, &s, &n)) return NULL;
  return (char *)s;
}

mc_status mc_model_create(mc_model **out, const char *arch,
                          const mc_arch_params *p) {
  /* the zoo scales channel counts by it (a double to int64 conversion) */
  if (!(p->width > 0 && p->width <= 1024))
    return mc_error(MC_EARG, "%s: width multiplier %g: expected a number in (0, 1024]", arch, p->width);
  char *spec;
  const char *path = NULL;
  if (!strncmp(arch, "file:", 5)) path = arch + 5;
  else if (strchr(arch, '/') || strstr(arch, ".arch")) path = arch;
  if (path) spec = read_text(path);
  else spec = mc_zoo_spec(arch, p);
  if (!spec) return MC_EARG;
  mc_status st = mc_model_from_spec(out, arch, spec, p);
  free(spec);
  return st;
}

void mc_model_free(mc_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_nodes; i++) free(m->nodes[i].layout.seg);
  free(m->nodes);
  free(m->tensors);
  free(m->groups);
  free(m->heads);
  free(m->norm_mean);
  free(m->norm_std);
  free(m->spec);
  free(m);
}

int mc_model_find_tensor(const mc_model *m, const char *name) {
  for (int i = 0; i < m->n_tensors; i++)
    if (!strcmp(m->tensors[i].name, name)) return i;
  return -1;
}

int mc_model_output(const mc_model *m) { return m->n_nodes - 1; }
