/* `modeconn attack`: clean and PGD (robust) loss and accuracy of one model,
 * and optionally its adversarial examples. */
#include "cli.h"

#include "eval/eval.h"
#include "io/safetensors.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int cmd_attack(int argc, char **argv) {
  static const cli_cmd cmd = {
      "attack",
      "Evaluate one model clean and under an L-infinity PGD attack (SPEC section 4): k steps of\n"
      "x <- clip_[0,1](clip_[x0-eps, x0+eps](x + alpha sign(dCE/dx))) from a uniform random start in the\n"
      "eps-ball (not clipped, as the official code), BN in eval mode with the model's statistics (or, with\n"
      "--bn-recompute, statistics recomputed on the training images first: on their PGD examples with\n"
      "--bn-adv yes). Defaults: eps 0.1, alpha 0.025, 5 steps for 1-channel data (Fashion-MNIST, MNIST);\n"
      "eps 8/255, alpha 2/255, 5 steps for CIFAR.",
      "--model FILE [--data D] [--split test|train] [--eps E] [--alpha A] [--steps K] [--json FILE]", cmd_attack};
  cli_model_opts mo;
  cli_data_opts dopt;
  cli_adv_opts ao;
  const char *model, *split, *json, *examples;
  int64_t batch;
  int bn_recompute;
  cli_opt opts[] = {{"model", OPT_STR, &model, NULL, "checkpoint (safetensors) to attack"},
                    CLI_DATA_OPTS(dopt),
                    {"split", OPT_STR, &split, "test", "split to attack: test or train (its first --test-subset / "
                     "--train-subset images)"},
                    CLI_PGD_OPTS(ao),
                    {"bn-recompute", OPT_FLAG, &bn_recompute, NULL, "recompute BN statistics on the training set first"},
                    CLI_BN_ADV_OPT(ao),
                    {"batch", OPT_INT, &batch, "500", "BN-recompute batch; eval passes use slices of at most 16 or 64 rows per thread (README, Threads)"},
                    {"json", OPT_STR, &json, NULL, "write clean_loss, clean_accuracy, robust_loss, robust_accuracy "
                     "and the attack parameters to this file"},
                    {"examples", OPT_STR, &examples, NULL, "write the adversarial examples (safetensors: F32 \"x_adv\" "
                     "[n, C, H, W], I64 \"labels\" [n], dataset order)"},
                    CLI_MODEL_OPTS(mo),
                    CLI_RUNTIME_OPTS(mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!model) return cli_usage("attack", "--model FILE is required");
  if (strcmp(split, "test") && strcmp(split, "train")) return cli_usage("attack", "--split %s: expected test or train", split);
  if (batch < 2 || batch > CLI_MAX_BATCH) return cli_usage("attack", "--batch must be in 2..%lld", (long long)CLI_MAX_BATCH);
  mc_backend be;
  mc_status st = cli_runtime(&mo, &be);
  if (st) return cli_fail(st);
  mc_model *m;
  float *theta, *state;
  if ((st = cli_load_model(model, &mo, &m, &theta, &state))) return cli_fail(st);
  mc_data d = {0};
  mc_pgd p;
  int on, bn_adv = 0;
  ao.adv = "pgd";
  mc_exec *e = NULL;
  float *xadv = NULL;
  if ((st = cli_adv_setup(&ao, m->in_c, &p, &on)) || (st = cli_yes_no("bn-adv", ao.bn_adv, &bn_adv)) ||
      (st = cli_load_data(&dopt, &d)))
    goto out;
  const mc_dataset *ds = !strcmp(split, "test") ? &d.test : &d.train;
  char desc[256];
  cli_adv_describe(&p, desc, sizeof desc);
  fprintf(stderr, "attacking %s on %s/%s (%lld images): %s\n", model, d.name, split, (long long)ds->n, desc);
  if (examples) xadv = mc_aligned_alloc_try(sizeof(float) * (size_t)(ds->n * ds->c * ds->h * ds->w));
  if (examples && !xadv) {
    st = mc_error(MC_ENOMEM, "out of memory for the %lld adversarial examples of --examples", (long long)ds->n);
    goto out;
  }
  double t0 = omp_get_wtime();
  mc_metrics clean, rob;
  if ((st = mc_exec_create(&e, m, batch, be))) goto out;
  if (bn_recompute && (st = mc_bn_recompute_pgd(e, theta, state, &d.train, 0, bn_adv ? &p : NULL))) goto out;
  if ((st = mc_evaluate(e, theta, state, ds, 0, &clean)) ||
      (st = mc_evaluate_pgd(e, theta, state, ds, 0, &p, &rob, xadv)))
    goto out;
  const double secs = omp_get_wtime() - t0;
  printf("%s on %s/%s (%lld images): clean loss %.6f accuracy %.2f%%; robust loss %.6f accuracy %.2f%%  (%.2fs)\n",
         model, d.name, split, (long long)clean.n, clean.loss, 100 * clean.accuracy, rob.loss, 100 * rob.accuracy, secs);
  printf("  robust = the same metrics on the PGD examples: %s\n", desc);
  if (json) {
    json_t *j = cli_adv_json(&p);
    json_object_update_new(j, json_pack("{s:s, s:s, s:s, s:I, s:f, s:f, s:f, s:f, s:b, s:b, s:f}", "model", model,
                                        "data", dopt.data, "split", split, "n", (json_int_t)clean.n, "clean_loss",
                                        clean.loss, "clean_accuracy", clean.accuracy, "robust_loss", rob.loss,
                                        "robust_accuracy", rob.accuracy, "bn_recomputed", bn_recompute, "bn_adv",
                                        bn_recompute && bn_adv, "seconds", secs));
    st = cli_write_json(json, j);
  }
  if (!st && examples) { /* F32 "x_adv" [n, C, H, W], I64 "labels" [n] */
    const int64_t shape[4] = {rob.n, ds->c, ds->h, ds->w};
    const char *mk[] = {"modeconn.model"}, *mv[] = {model};
    st = cli_write_with_labels(examples, "x_adv", xadv, 4, shape, ds, mk, mv, 1);
  }
out:
  free(xadv);
  mc_exec_free(e);
  mc_model_free(m);
  free(theta);
  free(state);
  mc_data_free(&d);
  return st ? cli_fail(st) : EXIT_OK;
}
