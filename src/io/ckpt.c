/* Model checkpoints on top of safetensors: a model's theta/state written as
 * its PyTorch-named tensors (under a prefix per part, so one curve file can
 * hold endpoints and bends), plus metadata from which the model can be
 * rebuilt.
 *
 * Rebuilding: the file's "modeconn.spec" (the architecture text the model
 * was built from, always written by mc_ckpt_save) wins when present, so a
 * checkpoint stays loadable even if its spec file moved or the zoo changed.
 * Files written elsewhere (PyTorch) carry no spec; then the model comes
 * from modeconn.arch plus input/classes/width/widths/bn, each falling back
 * to the caller's parameters.  modeconn.widths records the mlp's actual
 * hidden sizes (after the width multiplier), which is what a PyTorch user
 * sees in the module. */
#include "io/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NBT ".num_batches_tracked"

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* *s = a b c, or MC_ENOMEM naming the tensor of checkpoint path. */
static mc_status cat3(const char *path, const char *a, const char *b, const char *c, char **s) {
  size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
  if (!(*s = mc_malloc_try(na + nb + nc + 1)))
    return mc_oom(na + nb + nc + 1, "the name of tensor '%s%s%s' of %s", a, b, c, path);
  memcpy(*s, a, na);
  memcpy(*s + na, b, nb);
  memcpy(*s + na + nb, c, nc + 1);
  return MC_OK;
}

/* These two return NULL when out of memory (mc_ckpt_save reports it). */
static char *join_floats(const float *v, int64_t n) {
  size_t cap = (size_t)n * 24 + 1;
  char *s = mc_malloc_try(cap);
  if (!s) return NULL;
  size_t k = 0;
  s[0] = 0;
  for (int64_t i = 0; i < n; i++)
    k += (size_t)snprintf(s + k, cap - k, "%s%.9g", i ? "," : "", (double)v[i]);
  return s;
}

static int model_has_bn(const mc_model *m) {
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_BN) return 1;
  return 0;
}

/* The mlp's hidden widths as built: every linear layer but the last. */
static char *mlp_widths(const mc_model *m) {
  size_t cap = 32 * (size_t)(m->n_nodes + 1);
  char *s = mc_malloc_try(cap);
  if (!s) return NULL;
  size_t k = 0;
  s[0] = 0;
  int last = -1;
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_LINEAR) last = i;
  for (int i = 0; i < last; i++)
    if (m->nodes[i].kind == MC_NODE_LINEAR)
      k += (size_t)snprintf(s + k, cap - k, "%s%lld", k ? "," : "", (long long)m->nodes[i].out);
  return s;
}

/* ------------------------------------------------------------------ save */

mc_status mc_ckpt_save(const char *path, const mc_model *m,
                       const mc_ckpt_part *parts, int nparts,
                       const mc_kv *extra, int nextra) {
  if (!m || !parts || nparts < 1 || nextra < 0 || (nextra && !extra))
    return mc_error(MC_EARG, "%s: checkpoint needs a model and at least one part", path ? path : "(null)");
  for (int p = 0; p < nparts; p++)
    if (!parts[p].theta)
      return mc_error(MC_EARG, "%s: checkpoint part %d has no parameters", path, p);
  int n_bn = 0;
  for (int i = 0; i < m->n_nodes; i++) n_bn += m->nodes[i].kind == MC_NODE_BN;
  size_t cap = (size_t)nparts * (size_t)(m->n_tensors + n_bn) + 1;
  mc_st_tensor *t = mc_calloc_try(cap, sizeof *t);
  if (!t) return mc_oom(cap * sizeof *t, "the tensor list of checkpoint %s", path);
  int n = 0;
  static const int64_t zero = 0;
  enum { NFIX = 10 };
  int nk = 0;
  const size_t nmeta = (size_t)(NFIX + nextra + 1);
  const char **mk = NULL, **mv = NULL;
  char *widths = NULL, *mean = NULL, *sd = NULL;
  mc_status st = MC_OK;
  for (int p = 0; p < nparts && !st; p++) {
    const char *pre = parts[p].prefix ? parts[p].prefix : "";
    for (int i = 0; i < m->n_tensors; i++) {
      const mc_tensor *mt = &m->tensors[i];
      if (mt->in_state && !parts[p].state) continue;
      mc_st_tensor *x = &t[n++];
      if ((st = cat3(path, pre, mt->name, "", &x->name))) break;
      x->dtype = MC_DT_F32;
      snprintf(x->dtype_name, sizeof x->dtype_name, "F32");
      x->ndim = mt->ndim;
      for (int d = 0; d < mt->ndim; d++) x->shape[d] = mt->shape[d];
      x->nbytes = mt->numel * sizeof(float);
      x->data = (mt->in_state ? parts[p].state : parts[p].theta) + mt->off;
    }
    /* a part without state (a curve bend) has no BN buffers at all */
    if (!parts[p].state) continue;
    for (int i = 0; i < m->n_nodes && !st; i++) {
      if (m->nodes[i].kind != MC_NODE_BN) continue;
      mc_st_tensor *x = &t[n++];
      if ((st = cat3(path, pre, m->nodes[i].name, NBT, &x->name))) break;
      x->dtype = MC_DT_I64;
      snprintf(x->dtype_name, sizeof x->dtype_name, "I64");
      x->ndim = 0;
      x->nbytes = sizeof zero;
      x->data = &zero;
    }
  }

  if (st) goto done;
  mk = mc_calloc_try(nmeta, sizeof(char *));
  mv = mc_calloc_try(nmeta, sizeof(char *));
  if (!mk || !mv) st = mc_oom(2 * nmeta * sizeof(char *), "the metadata list of checkpoint %s", path);
  else if (!strcmp(m->arch, "mlp") && !(widths = mlp_widths(m)))
    st = mc_oom(32 * (size_t)(m->n_nodes + 1), "the modeconn.widths metadata of %s", path);
  else if (m->norm_mean && m->norm_std &&
           (!(mean = join_floats(m->norm_mean, m->in_c)) || !(sd = join_floats(m->norm_std, m->in_c))))
    st = mc_oom((size_t)m->in_c * 24 + 1, "the modeconn.mean/std metadata of %s", path);
  if (st) goto done;
  char input[96], classes[32], width[40];
  snprintf(input, sizeof input, "%lldx%lldx%lld", (long long)m->in_c, (long long)m->in_h, (long long)m->in_w);
  snprintf(classes, sizeof classes, "%lld", (long long)m->classes);
  snprintf(width, sizeof width, "%.9g", m->width);
  mk[nk] = "modeconn.arch", mv[nk++] = m->arch;
  mk[nk] = "modeconn.input", mv[nk++] = input;
  mk[nk] = "modeconn.classes", mv[nk++] = classes;
  if (m->width != 1.0) mk[nk] = "modeconn.width", mv[nk++] = width;
  if (!strcmp(m->arch, "mlp")) {
    mk[nk] = "modeconn.widths", mv[nk++] = widths;
    mk[nk] = "modeconn.bn", mv[nk++] = model_has_bn(m) ? "1" : "0";
  }
  if (m->norm_mean && m->norm_std) {
    mk[nk] = "modeconn.mean", mv[nk++] = mean;
    mk[nk] = "modeconn.std", mv[nk++] = sd;
  }
  if (m->spec) mk[nk] = "modeconn.spec", mv[nk++] = m->spec;
  MC_ASSERT(nk <= NFIX);
  for (int i = 0; i < nextra; i++) mk[nk] = extra[i].key, mv[nk++] = extra[i].val;

  st = mc_st_write(path, t, n, mk, mv, nk);
done:
  for (int i = 0; i < n; i++) free(t[i].name);
  free(t);
  free(widths);
  free(mean);
  free(sd);
  free(mk);
  free(mv);
  return st;
}

/* ----------------------------------------------------------------- model */

static mc_status meta_int(const mc_st_file *f, const char *key, const char *s,
                          int64_t lo, int64_t hi, int64_t *out) {
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi)
    return mc_error(MC_EFORMAT, "%s: metadata %s = '%.100s' is not an integer in [%lld, %lld]", f->path, key, s,
                    (long long)lo, (long long)hi);
  *out = v;
  return MC_OK;
}

static mc_status meta_input(const mc_st_file *f, const char *s, mc_arch_params *p) {
  int64_t v[3];
  const char *q = s;
  for (int i = 0; i < 3; i++) {
    char *end;
    errno = 0;
    long long x = strtoll(q, &end, 10);
    if (end == q || errno || x < 1 || x > (1 << 20) || (i < 2 ? *end != 'x' : *end != 0))
      return mc_error(MC_EFORMAT, "%s: metadata modeconn.input = '%.100s' is not CxHxW with positive sizes", f->path,
                      s);
    v[i] = x;
    q = end + 1;
  }
  p->in_c = v[0];
  p->in_h = v[1];
  p->in_w = v[2];
  return MC_OK;
}

static mc_status meta_floats(const mc_st_file *f, const char *key, const char *s,
                             int64_t n, int positive, float *out) {
  const char *q = s;
  for (int64_t i = 0; i < n; i++) {
    char *end;
    errno = 0;
    double x = strtod(q, &end);
    int last = i == n - 1;
    if (end == q || errno || !isfinite(x) || (positive && !(x > 0)) || (last ? *end != 0 : *end != ','))
      return mc_error(MC_EFORMAT, "%s: metadata %s = '%.100s' is not %lld comma-separated finite%s numbers", f->path,
                      key, s, (long long)n, positive ? " positive" : "");
    out[i] = (float)x;
    q = end + 1;
  }
  return MC_OK;
}

static mc_status meta_widths(const mc_st_file *f, const char *s) {
  const char *q = s;
  for (;;) {
    char *end;
    errno = 0;
    long long x = strtoll(q, &end, 10);
    if (end == q || errno || x < 1 || x > (1 << 24) || (*end && *end != ','))
      return mc_error(MC_EFORMAT, "%s: metadata modeconn.widths = '%.100s' is not a list of positive integers",
                      f->path, s);
    if (!*end) return MC_OK;
    q = end + 1;
  }
}

static int is_zoo_name(const char *arch) {
  for (const char *const *z = mc_zoo_names(); *z; z++)
    if (!strcmp(*z, arch)) return 1;
  return 0;
}

mc_status mc_ckpt_model(const mc_st_file *f, const char *fallback_arch,
                        const mc_arch_params *fallback, mc_model **m) {
  *m = NULL;
  mc_arch_params p;
  if (fallback) p = *fallback;
  else mc_arch_params_default(&p);
  const char *arch = mc_st_meta(f, "modeconn.arch");
  int arch_from_file = arch && *arch;
  if (!arch_from_file) arch = fallback_arch;
  if (!arch)
    return mc_error(MC_EFORMAT, "%s: the file records no architecture (metadata modeconn.arch); give it explicitly",
                    f->path);
  mc_status st;
  const char *s;
  if ((s = mc_st_meta(f, "modeconn.input")) && (st = meta_input(f, s, &p))) return st;
  if ((s = mc_st_meta(f, "modeconn.classes")) && (st = meta_int(f, "modeconn.classes", s, 2, 1 << 24, &p.classes)))
    return st;
  if ((s = mc_st_meta(f, "modeconn.width"))) {
    char *end;
    errno = 0;
    double w = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(w) || !(w > 0) || w > 1024)
      return mc_error(MC_EFORMAT, "%s: metadata modeconn.width = '%.100s' is not a positive number", f->path, s);
    p.width = w;
  }
  const char *widths = mc_st_meta(f, "modeconn.widths");
  if (widths) {
    if ((st = meta_widths(f, widths))) return st;
    p.widths = widths;
  }
  if ((s = mc_st_meta(f, "modeconn.bn"))) {
    if (!strcmp(s, "1") || !strcmp(s, "true")) p.bn = 1;
    else if (!strcmp(s, "0") || !strcmp(s, "false")) p.bn = 0;
    else return mc_error(MC_EFORMAT, "%s: metadata modeconn.bn = '%.100s' is not 0 or 1", f->path, s);
  }
  const char *spec = mc_st_meta(f, "modeconn.spec");
  if (spec) {
    st = mc_model_from_spec(m, arch, spec, &p);
  } else if (arch_from_file && !is_zoo_name(arch)) {
    /* never open a spec file named by a file's metadata */
    return mc_error(MC_EFORMAT,
                    "%s: the file records architecture '%.100s', which is not built in, and carries no "
                    "modeconn.spec to rebuild it from",
                    f->path, arch);
  } else {
    double width = p.width;
    /* the recorded widths are the built sizes: do not scale them again */
    if (widths && !strcmp(arch, "mlp")) p.width = 1.0;
    st = mc_model_create(m, arch, &p);
    if (!st) (*m)->width = width;
  }
  if (st) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mc_errmsg());
    return mc_error(st, "%s: cannot build the recorded architecture '%s': %s", f->path, arch, msg);
  }
  if ((s = mc_st_meta(f, "modeconn.mean")) &&
      (st = meta_floats(f, "modeconn.mean", s, (*m)->in_c, 0, (*m)->norm_mean)))
    goto fail;
  if ((s = mc_st_meta(f, "modeconn.std")) &&
      (st = meta_floats(f, "modeconn.std", s, (*m)->in_c, 1, (*m)->norm_std)))
    goto fail;
  return MC_OK;
fail:
  mc_model_free(*m);
  *m = NULL;
  return st;
}

/* ------------------------------------------------------------------- get */

/* A hint for a tensor that is missing or mis-shaped: the recorded
 * architecture when it differs, or a prefixed copy (a curve file). */
static void mismatch_hint(const mc_st_file *f, const mc_model *m, const char *prefix,
                          const char *name, char *buf, size_t cap) {
  buf[0] = 0;
  const char *arch = mc_st_meta(f, "modeconn.arch");
  if (arch && strcmp(arch, m->arch)) {
    snprintf(buf, cap, "; the file holds architecture '%.64s', not '%s'", arch, m->arch);
    return;
  }
  if (*prefix) return;
  size_t nl = strlen(name);
  for (int i = 0; i < f->n; i++) {
    size_t tl = strlen(f->t[i].name);
    if (tl > nl && f->t[i].name[tl - nl - 1] == '.' && !strcmp(f->t[i].name + tl - nl, name)) {
      snprintf(buf, cap, "; the file has '%.200s' (a curve file? select a part by its prefix)", f->t[i].name);
      return;
    }
  }
}

static int is_bn_node(const mc_model *m, const char *name, size_t len) {
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_BN && strlen(m->nodes[i].name) == len && !strncmp(m->nodes[i].name, name, len))
      return 1;
  return 0;
}

/* Checks (and with copy, copies) every tensor of m under prefix: theta's
 * tensors when want_theta, state's when want_state. */
static mc_status ckpt_walk(const mc_st_file *f, const mc_model *m, const char *prefix, float *theta, float *state,
                           int want_theta, int want_state, int copy, int strict) {
  if (!prefix) prefix = "";
  size_t pl = strlen(prefix);
  char hint[512], sh[256], fsh[256];
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *mt = &m->tensors[i];
    float *dst = mt->in_state ? state : theta;
    if (!(mt->in_state ? want_state : want_theta)) continue;
    char *name;
    mc_status st = cat3(f->path, prefix, mt->name, "", &name);
    if (st) return st;
    const mc_st_tensor *ft = mc_st_find(f, name);
    shape_str(sh, sizeof sh, mt->ndim, mt->shape);
    if (!ft) {
      mismatch_hint(f, m, prefix, mt->name, hint, sizeof hint);
      st = mc_error(MC_ESHAPE, "%s: tensor '%s' missing (expected F32 %s)%s", f->path, name, sh, hint);
    } else if (ft->dtype != MC_DT_F32) {
      st = mc_error(MC_EFORMAT, "%s: tensor '%s' is %s, expected F32", f->path, name, ft->dtype_name);
    } else {
      int same = ft->ndim == mt->ndim;
      for (int d = 0; same && d < mt->ndim; d++) same = ft->shape[d] == mt->shape[d];
      if (!same) {
        shape_str(fsh, sizeof fsh, ft->ndim, ft->shape);
        mismatch_hint(f, m, prefix, mt->name, hint, sizeof hint);
        st = mc_error(MC_ESHAPE, "%s: tensor '%s' has shape %s, expected %s%s", f->path, name, fsh, sh, hint);
      }
    }
    free(name);
    if (st) return st;
    MC_ASSERT(ft->nbytes == mt->numel * sizeof(float));
    if (copy) memcpy(dst + mt->off, ft->data, ft->nbytes);
  }
  if (!strict) return MC_OK;
  size_t sl = strlen(NBT);
  for (int i = 0; i < f->n; i++) {
    const char *nm = f->t[i].name;
    if (strncmp(nm, prefix, pl)) continue;
    const char *rest = nm + pl;
    size_t rl = strlen(rest);
    if (rl > sl && !strcmp(rest + rl - sl, NBT) && is_bn_node(m, rest, rl - sl)) continue;
    if (mc_model_find_tensor(m, rest) >= 0) continue;
    const char *arch = mc_st_meta(f, "modeconn.arch");
    if (arch && strcmp(arch, m->arch))
      snprintf(hint, sizeof hint, "; the file holds architecture '%.64s'", arch);
    else
      hint[0] = 0;
    return mc_error(MC_ESHAPE, "%s: unexpected tensor '%.200s' (not in architecture %s)%s", f->path, nm, m->arch,
                    hint);
  }
  return MC_OK;
}

mc_status mc_ckpt_get(const mc_st_file *f, const mc_model *m, const char *prefix, float *theta, float *state,
                      int strict) {
  return ckpt_walk(f, m, prefix, theta, state, theta != NULL, state != NULL, 1, strict);
}

mc_status mc_ckpt_check(const mc_st_file *f, const mc_model *m, const char *prefix, int with_state, int strict) {
  return ckpt_walk(f, m, prefix, NULL, NULL, 1, with_state, 0, strict);
}

mc_status mc_ckpt_load(const char *path, const char *fallback_arch,
                       const mc_arch_params *fallback, mc_model **m,
                       float **theta, float **state) {
  *m = NULL;
  *theta = NULL;
  *state = NULL;
  mc_st_file f;
  mc_status st = mc_st_read(path, &f);
  if (st) return st;
  st = mc_ckpt_model(&f, fallback_arch, fallback, m);
  /* shapes first: metadata alone must not size an allocation */
  if (!st) st = mc_ckpt_check(&f, *m, "", 1, 1);
  if (!st) {
    *theta = mc_calloc_try((*m)->n_theta + 1, sizeof(float));
    *state = mc_calloc_try((*m)->n_state + 1, sizeof(float));
    if (!*theta || !*state)
      st = mc_oom(sizeof(float) * (size_t)((*m)->n_theta + (*m)->n_state + 2), "the parameters of %s", path);
    else st = mc_ckpt_get(&f, *m, "", *theta, *state, 1);
  }
  mc_st_free(&f);
  if (st) {
    mc_model_free(*m);
    free(*theta);
    free(*state);
    *m = NULL;
    *theta = NULL;
    *state = NULL;
  }
  return st;
}
