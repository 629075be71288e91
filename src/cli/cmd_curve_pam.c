/* `modeconn curve train --method pam` (see curve_pam.h): PAM from the
 * (aligned or raw) B, the curve file with B under the final permutation
 * composed with the initial alignment, and the permutation JSON in the
 * shape of `align --perm-out`. */
#include "curve_pam.h"

#include "cli.h"
#include "curve/pam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mc_status cli_pam_check(const cli_pam_opts *po, double *nu) {
  char *end;
  *nu = !strcmp(po->nu, "inf") ? INFINITY : strtod(po->nu, &end);
  if (strcmp(po->nu, "inf") && (*end || end == po->nu || !(*nu > 0)))
    return mc_error(MC_EARG, "--nu %s: expected a positive number or inf (no proximal pull)", po->nu);
  if (po->p_epochs < 0) return mc_error(MC_EARG, "--p-epochs %lld: expected 0 or more", (long long)po->p_epochs);
  if (po->phi_epochs < 0) return mc_error(MC_EARG, "--phi-epochs %lld: expected 0 or more", (long long)po->phi_epochs);
  if (!(po->p_lr > 0)) return mc_error(MC_EARG, "--p-lr %g: expected a positive number", po->p_lr);
  if (po->proj_iters < 1 || po->proj_iters > 100000)
    return mc_error(MC_EARG, "--proj-iters %lld: expected 1..100000", (long long)po->proj_iters);
  if (po->bvn_terms < 1 || po->bvn_terms > 100000)
    return mc_error(MC_EARG, "--bvn-terms %lld: expected 1..100000", (long long)po->bvn_terms);
  if (po->samples_rounding < 0 || po->samples_rounding > 100000)
    return mc_error(MC_EARG, "--samples-rounding %lld: expected 0..100000", (long long)po->samples_rounding);
  if (po->outer < 1 || po->outer > 1000) return mc_error(MC_EARG, "--outer %lld: expected 1..1000", (long long)po->outer);
  if (po->select_samples < 0)
    return mc_error(MC_EARG, "--select-samples %lld: expected 0 (all) or more", (long long)po->select_samples);
  return MC_OK;
}

mc_status cli_curve_pam(const cli_pam_opts *po, double nu, const mc_curve_train_cfg *cfg, mc_curve_file *cf,
                        const mc_alignment *al, const char *align_s, const float *tb, float *sb,
                        const mc_data *d, int64_t samples, mc_backend be, const char *perm_out) {
  const mc_model *m = cf->m;
  mc_pam_cfg pc = {0};
  pc.phi = *cfg;
  if (po->phi_epochs > 0) {
    pc.phi.epochs = po->phi_epochs;
    pc.phi.sched.epochs = po->phi_epochs;
  }
  pc.p_epochs = po->p_epochs;
  mc_status st = mc_schedule_parse("paper", &pc.p_sched);
  if (st) return st;
  pc.p_sched.lr = po->p_lr;
  pc.nu = nu;
  pc.proj_iters = (int)po->proj_iters;
  pc.bvn_terms = (int)po->bvn_terms;
  pc.samples_rounding = (int)po->samples_rounding;
  pc.outer = (int)po->outer;
  pc.select_samples = po->select_samples;
  pc.log_path = cfg->log_path;
  pc.sink = cfg->sink;
  fprintf(stderr, "PAM from %s B: %d outer iteration%s of %lld P-step epochs (lr %g, schedule paper, nu %s, %d "
          "projection rounds), rounding (LAP, previous, %d BvN samples of the top %d terms), %lld phi-step epochs\n",
          strcmp(align_s, "none") ? "the aligned" : "the raw", pc.outer, pc.outer == 1 ? "" : "s",
          (long long)pc.p_epochs, po->p_lr, po->nu, pc.proj_iters, pc.samples_rounding, pc.bvn_terms,
          (long long)pc.phi.epochs);
  const size_t n = m->n_theta;
  float *b0 = mc_aligned_alloc_try(sizeof(float) * n), *s0 = mc_aligned_alloc_try(sizeof(float) * (m->n_state + 1));
  if (!b0 || !s0) {
    free(b0); free(s0);
    return mc_oom(sizeof(float) * (n + m->n_state + 1), "PAM's copy of B (%zu parameters)", n);
  }
  memcpy(b0, cf->b, sizeof(float) * n);
  memcpy(s0, cf->sb, sizeof(float) * m->n_state);
  float *bend = NULL;
  mc_pam_result res;
  st = mc_pam_run(&pc, m, cf->a, b0, s0, d, be, cf->b, cf->sb, &bend, &res);
  free(b0);
  free(s0);
  if (st) return st;
  float **bends = mc_calloc_try(2, sizeof(float *));
  if (!bends) {
    free(bend);
    mc_pam_result_free(&res);
    return mc_oom(2 * sizeof(float *), "the curve's list of bends");
  }
  cf->c = (mc_curve){MC_CURVE_BEZIER, 1, n, cf->a, cf->b, bends};
  cf->c.bends[0] = bend;
  snprintf(cf->align, sizeof cf->align, "pam+%s", align_s);
  /* the permutation of the raw B: PAM's on top of the initial alignment */
  mc_alignment comp;
  if ((st = mc_alignment_init_identity(&comp, m))) return mc_pam_result_free(&res), st;
  for (int g = 0; g < m->n_groups; g++)
    for (int64_t i = 0; i < m->groups[g].size; i++) comp.perm[g][i] = al->perm[g][res.perm[g][i]];
  free(cf->perm_json);
  if ((st = mc_alignment_perm_string(&comp, m, &cf->perm_json))) {
    mc_alignment_free(&comp);
    mc_pam_result_free(&res);
    return st;
  }
  st = mc_align_diagnostics(m, cf->a, cf->sa, tb, sb, &d->train, samples, 500, be, &comp);
  if (!st) {
    printf("PAM result (moved = units whose final permutation differs from the initial %s one; corr: of the final "
           "permutation of the raw B):\n", strcmp(align_s, "none") ? "alignment's" : "identity");
    printf("%-4s %-22s %6s %8s %12s %12s\n", "grp", "name", "size", "moved", "corr ident", "corr final");
    for (int g = 0; g < m->n_groups; g++)
      printf("G%-3d %-22s %6lld %8lld %12.4f %12.4f\n", g, m->groups[g].name, (long long)m->groups[g].size,
             (long long)res.moved[g], comp.corr_before[g], comp.corr_after[g]);
  }
  if (!st && perm_out) {
    json_t *j = mc_alignment_json(m, &comp, "pam");
    json_t *groups = json_object_get(j, "groups");
    for (int g = 0; g < m->n_groups; g++)
      json_object_set_new(json_array_get(groups, (size_t)g), "pam_moved", json_integer(res.moved[g]));
    json_t *rounds = json_array();
    for (int o = 0; o < (pc.p_epochs > 0 ? res.outer : 0); o++) {
      json_t *cl = json_array();
      for (int q = 0; q < res.n_cand; q++) {
        const double v = res.cand_loss[(size_t)o * (size_t)res.n_cand + (size_t)q];
        json_array_append_new(cl, isfinite(v) ? json_real(v) : json_null());
      }
      json_array_append_new(rounds, json_pack("{s:i, s:o, s:i}", "outer", o + 1, "candidate_loss", cl, "chosen",
                                              res.chosen[o]));
    }
    json_object_set_new(j, "initial_alignment", json_string(align_s));
    json_object_set_new(j, "rounding", rounds);
    json_object_set_new(j, "rounding_note",
                        json_string("candidate_loss: [previous, LAP rounding, BvN samples...], mean training CE "
                                    "along the curve (batch i of the first select_samples images at t = i/(batches-1), "
                                    "BN in train mode, the same for every candidate); null = duplicate of an "
                                    "earlier candidate, not evaluated; empty rounds when --p-epochs 0"));
    json_object_set_new(j, "pam_moved_note",
                        json_string("units whose PAM permutation differs from the initial one (identity relative to "
                                    "the B given to PAM); permutation = the composed permutation of the raw B"));
    st = cli_write_json(perm_out, j);
  }
  mc_alignment_free(&comp);
  mc_pam_result_free(&res);
  return st;
}
