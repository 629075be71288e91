/* Model graph: parses the architecture text, infers shapes, lays out the
 * flat parameter vector theta and state vector, and derives the permutation
 * groups from the graph (union-find over channel spaces).  No architecture
 * carries permutation code of its own: it all falls out of here. */
#include "modeconn.h"

#include "core/checked.h"
#include "core/file.h"
#include "model/optab.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* A new space, or -1 when out of memory. */
static int uf_new(uf_t *u) {
  if (u->n == u->cap) {
    const int cap = u->cap ? u->cap * 2 : 64;
    int *parent = mc_realloc_try(u->parent, sizeof(int) * (size_t)cap);
    if (parent) u->parent = parent;
    int *fixed = parent ? mc_realloc_try(u->fixed, sizeof(int) * (size_t)cap) : NULL;
    if (!fixed) return -1;
    u->fixed = fixed;
    u->cap = cap;
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

/* Key `name`, or -1 when there is no such key. */
static int key_by_name(const char *name) {
  for (int k = 0; k < MC_KEY_COUNT; k++)
    if (!strcmp(name, mc_key_info_of((mc_key)k)->name)) return k;
  return -1;
}

/* Key `name` if kind d takes it, else -1. */
static int accepted_key(const mc_op_desc *d, const char *name) {
  for (int j = 0; j < d->n_keys; j++)
    if (!strcmp(name, mc_key_info_of(d->keys[j].key)->name)) return (int)d->keys[j].key;
  return -1;
}

/* "conv takes out, k, s, p, bias" or "relu takes no keys" */
static void key_list(const mc_op_desc *d, char *buf, size_t cap) {
  snprintf(buf, cap, "%s takes %s", d->name, d->n_keys ? "" : "no keys");
  for (int j = 0; j < d->n_keys; j++) {
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%s", j ? ", " : "", mc_key_info_of(d->keys[j].key)->name);
  }
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
  const int kind = mc_op_kind_by_name(tok[ti]);
  if (kind < 0) {
    char names[256] = "";
    for (int k = 0; k < MC_NODE_KIND_COUNT; k++) {
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s%s", k == 0 ? "" : k + 1 < MC_NODE_KIND_COUNT ? ", " : " or ",
               mc_node_kind_name((mc_node_kind)k));
    }
    return perr(c, "unknown node kind '%s' (expected %s)", tok[ti], names);
  }
  const mc_op_desc *d = mc_op_desc_of((mc_node_kind)kind);
  nd->kind = (mc_node_kind)kind;
  if (!nd->name[0]) snprintf(nd->name, sizeof nd->name, "%s@%d", tok[ti], n);
  /* defaults: every field its key's base value, then the kind's own */
  for (int k = 0; k < MC_KEY_COUNT; k++) mc_key_store(nd, (mc_key)k, mc_key_info_of((mc_key)k)->base);
  for (int j = 0; j < d->n_keys; j++) mc_key_store(nd, d->keys[j].key, d->keys[j].dflt);
  nd->t_weight = nd->t_bias = nd->t_rmean = nd->t_rvar = -1;
  int given[MC_KEY_COUNT] = {0};
  nd->n_in = 0;
  for (int i = ti + 1; i < nt; i++) {
    char *key = tok[i], *val = strchr(tok[i], '=');
    if (val) *val++ = 0;
    if (val && !strcmp(key, "from")) {
      for (char *f = strtok(val, ","); f; f = strtok(NULL, ",")) {
        if (nd->n_in == MC_MAX_INPUTS) return perr(c, "too many inputs%s%s", "", "");
        int j = find_node(nodes, n, f);
        if (j < 0) return perr(c, "from=%s: no earlier node with that label%s", f, "");
        nd->in[nd->n_in++] = j;
      }
      continue;
    }
    /* a kind takes only its own keys: `relu k=3` is a mistake, not a no-op */
    const int k = accepted_key(d, key);
    if (k < 0 && !val && key_by_name(key) < 0) return perr(c, "expected key=value, got '%s'%s", key, "");
    if (k < 0) {
      char keys[128];
      key_list(d, keys, sizeof keys);
      return perr(c, "unknown key '%s' for this node kind (%s)", key, keys);
    }
    const mc_key_info *ki = mc_key_info_of((mc_key)k);
    given[k] = 1;
    if (!val) { /* a bare flag: `bias` */
      if (ki->type != MC_KEYT_FLAG) return perr(c, "expected key=value, got '%s'%s", key, "");
      mc_key_store(nd, (mc_key)k, 1);
      continue;
    }
    mc_status st;
    if (ki->type == MC_KEYT_FLOAT) {
      float fv = 0;
      if ((st = parse_float(c, key, val, &fv))) return st;
      mc_key_store(nd, (mc_key)k, fv);
    } else {
      int64_t iv = 0;
      if ((st = parse_int(c, key, val, p, &iv))) return st;
      if (ki->type != MC_KEYT_COUNT && iv > 1 << 20) return perr(c, "%s=%s is too large", key, val);
      mc_key_store(nd, (mc_key)k, (double)iv);
    }
  }
  for (int j = 0; j < d->n_keys; j++)
    if (d->keys[j].required && (!given[d->keys[j].key] || mc_key_load(nd, d->keys[j].key) < 1))
      return perr(c, "%s needs %s=N (N >= 1)", d->name, mc_key_info_of(d->keys[j].key)->name);
  const char *bad = d->check ? d->check(nd, given) : NULL;
  if (bad) return perr(c, "%s%s", bad, "");
  if (nd->n_in == 0 && d->max_in > 0) {
    if (n == 0) return perr(c, "the first node must be 'input'%s%s", "", "");
    nd->in[0] = n - 1;
    nd->n_in = 1;
  }
  if (d->min_in == d->max_in && nd->n_in != d->min_in)
    return perr(c, "%s takes %s input(s)", d->name, d->min_in ? "exactly one" : "no");
  if (nd->n_in < d->min_in)
    return perr(c, "%s needs from=a,b with at least two inputs%s", d->name, "");
  if (d->max_in == 0 && n != 0)
    return perr(c, "'%s' must be the first node and appear once%s", d->name, "");
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

static mc_status oom(const char *file, const char *what) {
  return mc_error(MC_ENOMEM, "%s: out of memory building the model (%s)", file, what);
}

/* *r = a copy of l (segments of n_seg of them, l->n when n_seg < 0). */
static mc_status layout_copy(mc_layout *r, const mc_layout *l, int n_seg, const char *file) {
  r->n = n_seg < 0 ? l->n : n_seg;
  if (!(r->seg = mc_malloc_try(sizeof(mc_segment) * (size_t)r->n))) return oom(file, "a channel layout");
  if (l) memcpy(r->seg, l->seg, sizeof(mc_segment) * (size_t)l->n);
  return MC_OK;
}

/* *r = one segment of `count` units of a new space (fixed or not). */
static mc_status layout_new(mc_layout *r, uf_t *uf, int fixed, int64_t count, const char *file) {
  const int space = uf_new(uf);
  if (space < 0) return oom(file, "the channel spaces");
  uf->fixed[space] = fixed;
  mc_status st = layout_copy(r, NULL, 1, file);
  if (!st) r->seg[0] = (mc_segment){-1, space, count, 1};
  return st;
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
    mc_tensor *t = mc_realloc_try(m->tensors, sizeof(mc_tensor) * (size_t)(*cap ? *cap * 2 : 64));
    if (!t) return oom(file, "the tensor list");
    m->tensors = t;
    *cap = *cap ? *cap * 2 : 64;
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

/* The channel-space rule of node i's descriptor: its output layout, and
 * for `add` the union of its inputs' spaces. */
static mc_status apply_space(mc_model *m, uf_t *uf, int i, mc_space_rule rule, const char *file) {
  mc_node *nd = &m->nodes[i];
  const mc_node *in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
  mc_status st = MC_OK;
  switch (rule) {
  case MC_SPACE_FIXED: st = layout_new(&nd->layout, uf, 1, nd->C, file); break;
  case MC_SPACE_OPEN: st = layout_new(&nd->layout, uf, 0, nd->C, file); break;
  case MC_SPACE_KEEP: st = layout_copy(&nd->layout, &in0->layout, -1, file); break;
  case MC_SPACE_MERGE: /* the shape rule checked that the segments line up */
    for (int j = 1; j < nd->n_in; j++) {
      const mc_node *o = &m->nodes[nd->in[j]];
      for (int s = 0; s < o->layout.n; s++) uf_union(uf, in0->layout.seg[s].space, o->layout.seg[s].space);
    }
    st = layout_copy(&nd->layout, &in0->layout, -1, file);
    break;
  case MC_SPACE_EXPAND:
    if ((st = layout_copy(&nd->layout, &in0->layout, -1, file))) break;
    for (int s = 0; s < nd->layout.n; s++) nd->layout.seg[s].repeat *= in0->H * in0->W;
    break;
  case MC_SPACE_CONCAT: { /* at most MC_MAX_SEGMENTS, checked by the shape rule */
    int nseg = 0;
    for (int j = 0; j < nd->n_in; j++) nseg += m->nodes[nd->in[j]].layout.n;
    if ((st = layout_copy(&nd->layout, NULL, nseg, file))) break;
    nseg = 0;
    for (int j = 0; j < nd->n_in; j++) {
      const mc_layout *l = &m->nodes[nd->in[j]].layout;
      memcpy(nd->layout.seg + nseg, l->seg, sizeof(mc_segment) * (size_t)l->n);
      nseg += l->n;
    }
    break;
  }
  }
  return st;
}

/* The tensors node i owns (its descriptor's parameters) appended to theta
 * and state. */
static mc_status add_params(mc_model *m, int *tcap, const char *file, int i, const mc_op_desc *d) {
  mc_node *nd = &m->nodes[i];
  const mc_node *in0 = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
  for (int j = 0; j < d->n_params; j++) {
    const mc_param_desc *pd = &d->params[j];
    if (pd->with_bias && !nd->bias) continue;
    int64_t sh[4] = {0};
    d->param_shape(m, nd, j, sh);
    mc_status st = add_tensor(m, tcap, file, i, pd->suffix, pd->role, pd->ndim, sh, &nd->layout,
                              pd->ndim > 1 ? &in0->layout : NULL, mc_node_tensor_slot(nd, pd->role));
    if (st) return st;
  }
  return MC_OK;
}

static mc_status build(mc_model *m, const char *file, const mc_arch_params *p) {
  uf_t uf = {0};
  int tcap = 0;
  mc_status st = MC_OK;
  for (int i = 0; i < m->n_nodes; i++) {
    mc_node *nd = &m->nodes[i];
    const mc_op_desc *d = mc_op_desc_of(nd->kind);
    if ((st = d->shape(m, nd, file))) goto out;
    if ((st = apply_space(m, &uf, i, d->space, file)) || (st = add_params(m, &tcap, file, i, d)) ||
        (st = node_size(file, nd)))
      goto out;
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
    int *gid = mc_malloc_try(sizeof(int) * (size_t)uf.n);
    if (!gid) {
      st = oom(file, "the permutation groups");
      goto out;
    }
    for (int s = 0; s < uf.n; s++) gid[s] = -2;
    int ng = 0;
    for (int i = 0; i < m->n_nodes; i++) {
      mc_node *nd = &m->nodes[i];
      for (int s = 0; s < nd->layout.n; s++) {
        mc_segment *sg = &nd->layout.seg[s];
        int r = uf_find(&uf, sg->space);
        if (uf.fixed[r]) { sg->group = -1; continue; }
        if (gid[r] == -2) {
          mc_group *gr = mc_realloc_try(m->groups, sizeof(mc_group) * (size_t)(ng + 1));
          if (!gr) {
            free(gid);
            st = oom(file, "the permutation groups");
            goto out;
          }
          m->groups = gr;
          gid[r] = ng++;
          mc_group *g = &m->groups[ng - 1];
          memset(g, 0, sizeof *g);
          snprintf(g->name, sizeof g->name, "%s", nd->name);
          g->size = sg->count;
        }
        sg->group = gid[r];
        MC_ASSERT(m->groups[gid[r]].size == sg->count);
        if (mc_op_desc_of(nd->kind)->space == MC_SPACE_OPEN) m->groups[gid[r]].n_members++;
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
  mc_model *m = mc_calloc_try(1, sizeof *m);
  if (!m) return oom(arch, "the model");
  snprintf(m->arch, sizeof m->arch, "%s", arch);
  m->in_c = p->in_c; m->in_h = p->in_h; m->in_w = p->in_w;
  m->classes = p->classes;
  m->width = p->width;
  m->spec = mc_strdup_try(spec);
  char *copy = mc_strdup_try(spec);
  int cap = 0;
  pctx c = {arch, 0};
  mc_status st = !m->spec || !copy ? oom(arch, "the spec text") : MC_OK;
  /* line by line, keeping empty lines counted */
  char *line = st ? NULL : copy;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    c.line++;
    if (m->n_nodes == cap) {
      mc_node *nodes = mc_realloc_try(m->nodes, sizeof(mc_node) * (size_t)(cap ? cap * 2 : 64));
      if (!nodes) {
        st = oom(arch, "the node list");
        break;
      }
      m->nodes = nodes;
      cap = cap ? cap * 2 : 64;
    }
    mc_node nd;
    st = parse_line(&c, line, m->nodes, m->n_nodes, p, &nd);
    if (st) break;
    if ((int)nd.kind >= 0) m->nodes[m->n_nodes++] = nd;
    if ((int)nd.kind == -2) { /* an output line: head 1, 2, ... */
      mc_head *h = mc_realloc_try(m->heads, sizeof(mc_head) * (size_t)(m->n_heads + 2));
      if (!h) {
        st = oom(arch, "the output heads");
        break;
      }
      m->heads = h;
      m->heads[++m->n_heads] = (mc_head){nd.in[0], nd.p, nd.bias};
    }
    line = nl ? nl + 1 : NULL;
  }
  free(copy);
  if (!st && m->n_nodes < 2)
    st = mc_error(MC_EFORMAT, "%s: an architecture needs at least an input and one layer", arch);
  mc_head *h0 = st ? NULL : mc_realloc_try(m->heads, sizeof(mc_head) * (size_t)(m->n_heads + 2));
  if (!st && !h0) st = oom(arch, "the output heads");
  if (!st) { /* head 0: the last node, weight 1 */
    m->heads = h0;
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
    m->norm_mean = mc_calloc_try((size_t)m->in_c, sizeof(float));
    m->norm_std = mc_calloc_try((size_t)m->in_c, sizeof(float));
    if (!m->norm_mean || !m->norm_std) st = oom(arch, "the input normalisation");
    for (int64_t i = 0; !st && i < m->in_c; i++) m->norm_std[i] = 1.f;
  }
  if (st) {
    mc_model_free(m);
    return st;
  }
  *out = m;
  return MC_OK;
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
  mc_status st;
  if (path) {
    unsigned char *text;
    size_t n;
    st = mc_read_file(path, "architecture file", 1 << 24, &text, &n);
    spec = (char *)text;
  } else {
    st = mc_zoo_spec(arch, p, &spec);
  }
  if (st) return st == MC_ENOMEM ? st : MC_EARG; /* an unreadable or impossible --arch: a usage error */
  st = mc_model_from_spec(out, arch, spec, p);
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
