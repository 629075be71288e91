/* Curve files: endpoints and bends of one model layout in a safetensors
 * file, under name prefixes (see curve.h). */
#include "curve/curve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

mc_status mc_curve_save(const char *path, const mc_curve_file *cf, const mc_kv *extra, int nextra) {
  int np = 2 + cf->c.n_bends;
  mc_ckpt_part *parts = mc_calloc((size_t)np, sizeof *parts);
  char (*names)[32] = mc_calloc((size_t)np, 32);
  parts[0] = (mc_ckpt_part){"a.", cf->a, cf->sa};
  parts[1] = (mc_ckpt_part){"b.", cf->b, cf->sb};
  for (int k = 0; k < cf->c.n_bends; k++) {
    snprintf(names[k], 32, "bend%d.", k + 1);
    parts[2 + k] = (mc_ckpt_part){names[k], cf->c.bends[k], NULL};
  }
  char nb[16];
  snprintf(nb, sizeof nb, "%d", cf->c.n_bends);
  int nkv = 4 + nextra;
  mc_kv *kv = mc_calloc((size_t)nkv, sizeof *kv);
  kv[0] = (mc_kv){"modeconn.curve.kind", mc_curve_kind_name(cf->c.kind)};
  kv[1] = (mc_kv){"modeconn.curve.bends", nb};
  kv[2] = (mc_kv){"modeconn.curve.align", cf->align};
  kv[3] = (mc_kv){"modeconn.curve.perm", cf->perm_json ? cf->perm_json : "null"};
  for (int i = 0; i < nextra; i++) kv[4 + i] = extra[i];
  mc_status st = mc_ckpt_save(path, cf->m, parts, np, kv, nkv);
  free(parts);
  free(names);
  free(kv);
  return st;
}

mc_status mc_curve_load(const char *path, mc_curve_file *cf) {
  memset(cf, 0, sizeof *cf);
  mc_st_file f;
  mc_status st = mc_st_read(path, &f);
  if (st) return st;
  const char *kind = mc_st_meta(&f, "modeconn.curve.kind"), *nb = mc_st_meta(&f, "modeconn.curve.bends");
  if (!kind || !nb) {
    mc_st_free(&f);
    return mc_error(MC_EFORMAT, "%s: not a curve file (no modeconn.curve.kind / modeconn.curve.bends metadata)", path);
  }
  /* every message is formatted before mc_st_free: kind and nb point into f */
  if ((st = mc_curve_kind_parse(kind, &cf->c.kind))) {
    st = mc_error(MC_EFORMAT, "%s: metadata modeconn.curve.kind: %s", path, mc_errmsg());
    mc_st_free(&f);
    return st;
  }
  char *end;
  errno = 0;
  long k = strtol(nb, &end, 10);
  if (end == nb || *end || errno || k < 0 || k > 64) {
    st = mc_error(MC_EFORMAT, "%s: metadata modeconn.curve.bends = '%.100s': expected an integer in 0..64", path, nb);
    mc_st_free(&f);
    return st;
  }
  mc_arch_params p;
  mc_arch_params_default(&p);
  if ((st = mc_ckpt_model(&f, NULL, &p, &cf->m))) {
    mc_st_free(&f);
    return st;
  }
  const mc_model *m = cf->m;
  /* every part present with the right shapes before sizing anything by the
   * metadata's architecture */
  st = mc_ckpt_check(&f, m, "a.", 1, 0);
  if (!st) st = mc_ckpt_check(&f, m, "b.", 1, 0);
  for (long i = 0; i < k && !st; i++) {
    char pre[32];
    snprintf(pre, sizeof pre, "bend%ld.", i + 1);
    st = mc_ckpt_check(&f, m, pre, 0, 0);
  }
  if (st) {
    mc_st_free(&f);
    mc_curve_file_free(cf);
    return st;
  }
  cf->c.n_bends = (int)k;
  cf->c.n = m->n_theta;
  cf->a = mc_aligned_alloc(sizeof(float) * m->n_theta);
  cf->b = mc_aligned_alloc(sizeof(float) * m->n_theta);
  cf->sa = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  cf->sb = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  cf->c.bends = mc_calloc((size_t)k + 1, sizeof(float *));
  st = mc_ckpt_get(&f, m, "a.", cf->a, cf->sa, 0);
  if (!st) st = mc_ckpt_get(&f, m, "b.", cf->b, cf->sb, 0);
  for (int i = 0; i < k && !st; i++) {
    char pre[32];
    snprintf(pre, sizeof pre, "bend%d.", i + 1);
    cf->c.bends[i] = mc_aligned_alloc(sizeof(float) * m->n_theta);
    st = mc_ckpt_get(&f, m, pre, cf->c.bends[i], NULL, 0);
  }
  cf->c.a = cf->a;
  cf->c.b = cf->b;
  const char *al = mc_st_meta(&f, "modeconn.curve.align"), *pj = mc_st_meta(&f, "modeconn.curve.perm");
  snprintf(cf->align, sizeof cf->align, "%s", al ? al : "unknown");
  if (pj && strcmp(pj, "null")) cf->perm_json = strdup(pj);
  mc_st_free(&f);
  if (st) mc_curve_file_free(cf);
  return st;
}

void mc_curve_file_free(mc_curve_file *cf) {
  for (int k = 0; cf->c.bends && k < cf->c.n_bends; k++) free(cf->c.bends[k]);
  free(cf->c.bends);
  free(cf->a); free(cf->b); free(cf->sa); free(cf->sb); free(cf->perm_json);
  mc_model_free(cf->m);
  memset(cf, 0, sizeof *cf);
}
