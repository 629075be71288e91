/* `modeconn align`: permute B's neurons to match A's. */
#include "cli.h"

#include "align/align.h"
#include "io/safetensors.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int cmd_align(int argc, char **argv) {
  static const cli_cmd cmd = {
      "align",
      "Align model B's neurons to model A's (activation correlation or weight matching) and write the\n"
      "permuted B, which computes exactly the same function (checked on real images before writing).",
      "--a A --b B --out B_ALIGNED [--method corr|weights] [--data D] [--samples N] [--perm-out FILE.json]",
      cmd_align};
  cli_model_opts mo;
  cli_data_opts dopt;
  const char *pa, *pb, *out, *method_s, *perm_out;
  int64_t samples, batch, seed;
  int align_adv;
  cli_adv_opts ao;
  cli_opt opts[] = {{"a", OPT_STR, &pa, NULL, "model A (the reference)"},
                    {"b", OPT_STR, &pb, NULL, "model B (to be permuted)"},
                    {"out", OPT_STR, &out, NULL, "where to write the aligned B"},
                    {"method", OPT_STR, &method_s, "corr", "corr (activation correlation) or weights (weight matching)"},
                    {"samples", OPT_INT, &samples, "10000", "training images for the correlation statistics (first N, no augmentation)"},
                    {"batch", OPT_INT, &batch, "500", "rows per forward of the statistics pass, capped at 64 per thread (the result does not depend on it)"},
                    {"seed", OPT_INT, &seed, "0", "weight matching: seed of the random group order"},
                    {"perm-out", OPT_STR, &perm_out, NULL, "write the permutations and per-group correlations as JSON"},
                    {"align-adv", OPT_FLAG, &align_adv, NULL, "corr: statistics on PGD examples of the images (each "
                     "model on its own, BN in eval mode, as the official code's adversarial alignment) instead of "
                     "the clean images; the PGD flags below set the attack"},
                    CLI_PGD_OPTS(ao),
                    CLI_ALL_OPTS(dopt, mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!pa || !pb || !out) return cli_usage("align", "--a, --b and --out are required");
  mc_align_method method;
  mc_backend be;
  mc_status st;
  if ((st = mc_align_method_parse(method_s, &method, NULL)) || (st = cli_runtime(&mo, &be))) return cli_fail(st);
  if (align_adv && method != MC_ALIGN_CORR) return cli_usage("align", "--align-adv needs --method corr");
  cli_pair P;
  if ((st = cli_pair_load(pa, pb, &mo, &dopt, &P))) return cli_fail(st);
  mc_pgd pgd;
  int on;
  ao.adv = align_adv ? "pgd" : "none";
  if ((st = cli_adv_setup(&ao, P.m->in_c, &pgd, &on))) {
    cli_pair_free(&P);
    return cli_fail(st);
  }
  const mc_model *m = P.m;
  const mc_data *d = &P.d;
  float *tb2 = mc_aligned_alloc_try(sizeof(float) * m->n_theta), *sb2 = mc_aligned_alloc_try(sizeof(float) * (m->n_state + 1));
  if (!tb2 || !sb2) {
    free(tb2); free(sb2);
    st = mc_oom(sizeof(float) * (m->n_theta + m->n_state + 1), "the aligned copy of %s", pb);
    cli_pair_free(&P);
    return cli_fail(st);
  }
  mc_alignment al = {0};
  double t0 = omp_get_wtime();
  fprintf(stderr, "aligning %s to %s (%s, %s, %lld images, %d groups)\n", pb, pa, m->arch, method_s,
          (long long)(samples < d->train.n && samples > 0 ? samples : d->train.n), m->n_groups);
  if (on) {
    char desc[256];
    cli_adv_describe(&pgd, desc, sizeof desc);
    fprintf(stderr, "correlation statistics on %s examples\n", desc);
  }
  st = mc_align_run(m, method, P.ta, P.sa, P.tb, P.sb, &d->train, samples, batch, (uint64_t)seed, be, on ? &pgd : NULL,
                    &al, tb2, sb2);
  if (!st) {
    double secs = omp_get_wtime() - t0;
    mc_alignment_print(stdout, m, &al);
    printf("alignment took %.1fs\n", secs);
    if (method == MC_ALIGN_WEIGHTS) printf("weight matching: %d coordinate-descent passes\n", al.iterations);
    char *perm;
    st = mc_alignment_perm_string(&al, m, &perm);
    mc_kv extra[] = {{"modeconn.aligned_to", pa}, {"modeconn.aligned_from", pb},
                     {"modeconn.align.method", method_s}, {"modeconn.align.perm", perm}};
    mc_ckpt_part part = {"", tb2, sb2};
    if (!st) st = mc_ckpt_save(out, m, &part, 1, extra, 4);
    free(perm);
    if (!st) fprintf(stderr, "wrote %s (same function as %s, checked)\n", out, pb);
    if (!st && perm_out) {
      json_t *j = mc_alignment_json(m, &al, method_s);
      json_object_set_new(j, "seconds", json_real(secs));
      if (on) json_object_set_new(j, "adversarial", cli_adv_json(&pgd));
      st = cli_write_json(perm_out, j);
    }
  }
  mc_alignment_free(&al);
  free(tb2); free(sb2);
  cli_pair_free(&P);
  return st ? cli_fail(st) : EXIT_OK;
}
