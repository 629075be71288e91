/* Alignment results as JSON and text. */
#include "align/align.h"

#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *mc_alignment_json(const mc_model *m, const mc_alignment *al, const char *method) {
  json_t *groups = json_array();
  for (int g = 0; g < al->n_groups; g++) {
    json_t *p = json_array();
    for (int64_t i = 0; i < m->groups[g].size; i++) json_array_append_new(p, json_integer(al->perm[g][i]));
    json_array_append_new(groups, json_pack("{s:s, s:I, s:o, s:o, s:o, s:i}", "name", m->groups[g].name, "size",
                                            (json_int_t)m->groups[g].size, "permutation", p, "mean_corr_before",
                                            num_or_null(al->corr_before[g]), "mean_corr_after",
                                            num_or_null(al->corr_after[g]), "taps", al->n_taps[g]));
  }
  return json_pack("{s:s, s:s, s:o, s:s}", "method", method, "architecture", m->arch, "groups", groups,
                   "convention", "permutation[i] = index in B of the unit that becomes unit i");
}

mc_status mc_alignment_perm_string(const mc_alignment *al, const mc_model *m, char **out) {
  (void)mc_json_alloc_failed();
  json_t *a = json_array();
  for (int g = 0; g < al->n_groups; g++) {
    json_t *p = json_array();
    for (int64_t i = 0; i < m->groups[g].size; i++) json_array_append_new(p, json_integer(al->perm[g][i]));
    json_array_append_new(a, p);
  }
  char *s = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  if (mc_json_alloc_failed() || !s) { /* a group or unit may be missing */
    free(s);
    *out = NULL;
    return mc_error(MC_ENOMEM, "out of memory formatting the permutation of %d groups", al->n_groups);
  }
  *out = s;
  return MC_OK;
}

mc_status mc_align_method_parse(const char *s, mc_align_method *out, int *none) {
  if (none) *none = 0;
  if (!strcmp(s, "corr")) *out = MC_ALIGN_CORR;
  else if (!strcmp(s, "weights")) *out = MC_ALIGN_WEIGHTS;
  else if (none && !strcmp(s, "none")) *none = 1;
  else return mc_error(MC_EARG, "alignment method '%s': expected corr, weights%s", s, none ? " or none" : "");
  return MC_OK;
}

void mc_alignment_print(FILE *f, const mc_model *m, const mc_alignment *al) {
  fprintf(f, "%-4s %-22s %6s %5s %8s %12s %12s\n", "grp", "name", "size", "taps", "moved", "corr before",
          "corr after");
  for (int g = 0; g < al->n_groups; g++) {
    int64_t moved = 0;
    for (int64_t i = 0; i < m->groups[g].size; i++) moved += al->perm[g][i] != i;
    fprintf(f, "G%-3d %-22s %6lld %5d %7.1f%% %12.4f %12.4f\n", g, m->groups[g].name, (long long)m->groups[g].size,
            al->n_taps[g], 100.0 * (double)moved / (double)m->groups[g].size, al->corr_before[g], al->corr_after[g]);
  }
  fprintf(f, "(corr = mean over units of the matched Pearson correlation, averaged over the group's taps)\n");
}

mc_status mc_align_run(const mc_model *m, mc_align_method method, const float *ta, float *sa, const float *tb,
                       float *sb, const mc_dataset *ds, int64_t samples, int64_t batch, uint64_t seed,
                       mc_backend be, const mc_pgd *pgd, mc_alignment *al, float *tb_out, float *sb_out) {
  mc_status st;
  if (method == MC_ALIGN_CORR) {
    st = mc_align_corr_pgd(m, ta, sa, tb, sb, ds, samples, batch, be, pgd, al);
  } else {
    st = mc_align_weights(m, ta, tb, seed, al);
    if (!st && ds) st = mc_align_diagnostics(m, ta, sa, tb, sb, ds, samples, batch, be, al);
  }
  if (st) return st;
  /* the equivalence check runs on a few real images when we have them */
  int64_t n = 16;
  const size_t bytes = sizeof(float) * (size_t)(n * m->in_c * m->in_h * m->in_w);
  float *x = mc_aligned_alloc_try(bytes);
  if (!x)
    return mc_oom(bytes, "the %lld images of the alignment's equivalence check", (long long)n);
  if (ds && ds->n >= n) {
    int64_t idx[16];
    int32_t y[16];
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    mc_dataset_batch(ds, idx, n, NULL, NULL, x, y);
  } else {
    mc_rng r;
    mc_rng_seed(&r, 1);
    for (int64_t i = 0; i < n * m->in_c * m->in_h * m->in_w; i++) x[i] = (float)mc_rng_uniform(&r);
  }
  st = mc_align_apply(m, al, tb, sb, tb_out, sb_out, x, n, be);
  free(x);
  return st;
}
