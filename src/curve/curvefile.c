/* Curve files: endpoints and bends of one model layout in a safetensors
 * file, under name prefixes (see curve.h). */
#include "curve/curve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A curve file's parts (a., b., bend1. ... : *np of them, room for
 * more_parts after) and metadata (the curve's, then extra); the caller
 * frees *parts, *names and *kv, also on failure. */
static mc_status curve_parts(const char *path, const mc_curve_file *cf, const mc_kv *extra, int nextra, int more_parts,
                             mc_ckpt_part **parts, char (**names)[32], mc_kv **kv, char nb[16], int *np) {
  *np = 2 + cf->c.n_bends;
  const size_t nparts = (size_t)(*np + more_parts);
  *parts = mc_calloc_try(nparts, sizeof **parts);
  *names = mc_calloc_try(nparts, 32);
  *kv = mc_calloc_try((size_t)(4 + nextra), sizeof **kv);
  if (!*parts || !*names || !*kv)
    return mc_oom(nparts * (sizeof **parts + 32) + (size_t)(4 + nextra) * sizeof **kv,
                  "the list of %zu parts of curve file %s", nparts, path);
  (*parts)[0] = (mc_ckpt_part){"a.", cf->a, cf->sa};
  (*parts)[1] = (mc_ckpt_part){"b.", cf->b, cf->sb};
  for (int k = 0; k < cf->c.n_bends; k++) {
    snprintf((*names)[k], 32, "bend%d.", k + 1);
    (*parts)[2 + k] = (mc_ckpt_part){(*names)[k], cf->c.bends[k], NULL};
  }
  snprintf(nb, 16, "%d", cf->c.n_bends);
  (*kv)[0] = (mc_kv){"modeconn.curve.kind", mc_curve_kind_name(cf->c.kind)};
  (*kv)[1] = (mc_kv){"modeconn.curve.bends", nb};
  (*kv)[2] = (mc_kv){"modeconn.curve.align", cf->align};
  (*kv)[3] = (mc_kv){"modeconn.curve.perm", cf->perm_json ? cf->perm_json : "null"};
  for (int i = 0; i < nextra; i++) (*kv)[4 + i] = extra[i];
  return MC_OK;
}

mc_status mc_curve_save(const char *path, const mc_curve_file *cf, const mc_kv *extra, int nextra) {
  mc_ckpt_part *parts;
  char(*names)[32], nb[16];
  mc_kv *kv;
  int np;
  mc_status st = curve_parts(path, cf, extra, nextra, 0, &parts, &names, &kv, nb, &np);
  if (!st) st = mc_ckpt_save(path, cf->m, parts, np, kv, 4 + nextra);
  free(parts);
  free(names);
  free(kv);
  return st;
}

mc_status mc_curve_ckpt_save(const char *out, const mc_curve_file *cf, float *const *mom, const mc_kv *extra,
                             int nextra, int64_t epoch, const char *run) {
  mc_ckpt_part *parts;
  char(*names)[32], nb[16];
  mc_kv *kv;
  const int K = cf->c.n_bends;
  int np;
  mc_status st = curve_parts(out, cf, extra, nextra, K, &parts, &names, &kv, nb, &np);
  for (int k = 0; k < K && !st; k++) {
    snprintf(names[K + k], 32, "mom%d.", k + 1);
    parts[np + k] = (mc_ckpt_part){names[K + k], mom[k], NULL};
  }
  if (!st) st = mc_resume_save(out, cf->m, parts, np + K, parts, np, kv, 4 + nextra, epoch, run);
  free(parts);
  free(names);
  free(kv);
  return st;
}

/* The curve held by f (not freed here). */
static mc_status curve_from_st(const mc_st_file *f, mc_curve_file *cf) {
  memset(cf, 0, sizeof *cf);
  const char *path = f->path;
  mc_status st;
  const char *kind = mc_st_meta(f, "modeconn.curve.kind"), *nb = mc_st_meta(f, "modeconn.curve.bends");
  if (!kind || !nb)
    return mc_error(MC_EFORMAT, "%s: not a curve file (no modeconn.curve.kind / modeconn.curve.bends metadata)", path);
  if ((st = mc_curve_kind_parse(kind, &cf->c.kind))) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mc_errmsg());
    return mc_error(MC_EFORMAT, "%s: metadata modeconn.curve.kind: %s", path, msg);
  }
  char *end;
  errno = 0;
  long k = strtol(nb, &end, 10);
  if (end == nb || *end || errno || k < 0 || k > 64)
    return mc_error(MC_EFORMAT, "%s: metadata modeconn.curve.bends = '%.100s': expected an integer in 0..64", path, nb);
  mc_arch_params p;
  mc_arch_params_default(&p);
  if ((st = mc_ckpt_model(f, NULL, &p, &cf->m))) return st;
  const mc_model *m = cf->m;
  /* every part present with the right shapes before sizing anything by the
   * metadata's architecture */
  st = mc_ckpt_check(f, m, "a.", 1, 0);
  if (!st) st = mc_ckpt_check(f, m, "b.", 1, 0);
  for (long i = 0; i < k && !st; i++) {
    char pre[32];
    snprintf(pre, sizeof pre, "bend%ld.", i + 1);
    st = mc_ckpt_check(f, m, pre, 0, 0);
  }
  if (st) {
    mc_curve_file_free(cf);
    return st;
  }
  cf->c.n_bends = (int)k;
  cf->c.n = m->n_theta;
  const size_t nth = sizeof(float) * m->n_theta, nst = sizeof(float) * (m->n_state + 1);
  cf->a = mc_aligned_alloc_try(nth);
  cf->b = mc_aligned_alloc_try(nth);
  cf->sa = mc_aligned_alloc_try(nst);
  cf->sb = mc_aligned_alloc_try(nst);
  cf->c.bends = mc_calloc_try((size_t)k + 1, sizeof(float *));
  if (!cf->a || !cf->b || !cf->sa || !cf->sb || !cf->c.bends)
    st = mc_oom(2 * (nth + nst) + sizeof(float *) * ((size_t)k + 1), "%s: the endpoints of the curve", path);
  if (!st) st = mc_ckpt_get(f, m, "a.", cf->a, cf->sa, 0);
  if (!st) st = mc_ckpt_get(f, m, "b.", cf->b, cf->sb, 0);
  for (int i = 0; i < k && !st; i++) {
    char pre[32];
    snprintf(pre, sizeof pre, "bend%d.", i + 1);
    if (!(cf->c.bends[i] = mc_aligned_alloc_try(nth))) st = mc_oom(nth, "%s: bend %d of the curve", path, i + 1);
    else st = mc_ckpt_get(f, m, pre, cf->c.bends[i], NULL, 0);
  }
  cf->c.a = cf->a;
  cf->c.b = cf->b;
  const char *al = mc_st_meta(f, "modeconn.curve.align"), *pj = mc_st_meta(f, "modeconn.curve.perm");
  snprintf(cf->align, sizeof cf->align, "%s", al ? al : "unknown");
  if (!st && pj && strcmp(pj, "null") && !(cf->perm_json = mc_strdup_try(pj)))
    st = mc_oom(strlen(pj) + 1, "%s: the curve's modeconn.curve.perm metadata", path);
  if (st) mc_curve_file_free(cf);
  return st;
}

mc_status mc_curve_load(const char *path, mc_curve_file *cf) {
  memset(cf, 0, sizeof *cf);
  mc_st_file f;
  mc_status st = mc_st_read(path, &f);
  if (st) return st;
  /* every message is formatted before mc_st_free: metadata points into f */
  st = curve_from_st(&f, cf);
  mc_st_free(&f);
  return st;
}

mc_status mc_curve_ckpt_resume(const char *ckpt, const char *want, const char *what, mc_curve_file *cf,
                               float ***mom, int64_t *epoch, int *behind, const mc_sink *sink) {
  memset(cf, 0, sizeof *cf);
  *mom = NULL;
  mc_st_file g;
  mc_status st = mc_resume_open(ckpt, want, what, &g, epoch, behind, sink);
  if (st) return st;
  st = curve_from_st(&g, cf);
  if (!st) {
    const int K = cf->c.n_bends;
    const size_t nth = sizeof(float) * cf->m->n_theta;
    if (!(*mom = mc_calloc_try((size_t)K + 1, sizeof(float *))))
      st = mc_oom(sizeof(float *) * ((size_t)K + 1), "%s: the list of %d momentum buffers", ckpt, K);
    for (int k = 0; k < K && !st; k++) {
      char pre[32];
      snprintf(pre, sizeof pre, "mom%d.", k + 1);
      if (!((*mom)[k] = mc_aligned_alloc_try(nth))) st = mc_oom(nth, "%s: momentum buffer %d", ckpt, k + 1);
      else st = mc_ckpt_get(&g, cf->m, pre, (*mom)[k], NULL, 0);
    }
    if (st) {
      for (int k = 0; *mom && k < K; k++) free((*mom)[k]);
      free(*mom);
      *mom = NULL;
      mc_curve_file_free(cf);
    }
  }
  mc_st_free(&g);
  return st;
}

void mc_curve_file_free(mc_curve_file *cf) {
  for (int k = 0; cf->c.bends && k < cf->c.n_bends; k++) free(cf->c.bends[k]);
  free(cf->c.bends);
  free(cf->a); free(cf->b); free(cf->sa); free(cf->sb); free(cf->perm_json);
  mc_model_free(cf->m);
  memset(cf, 0, sizeof *cf);
}
