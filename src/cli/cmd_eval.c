/* `modeconn eval`: loss and accuracy of a checkpoint on a split, and
 * optionally every example's logits (to compare with another framework). */
#include "cli.h"

#include "data/data.h"
#include "eval/eval.h"
#include "io/results.h"
#include "io/safetensors.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int cmd_eval(int argc, char **argv) {
  static const cli_cmd cmd = {"eval", "Evaluate a checkpoint: mean cross-entropy and accuracy on a dataset split.",
                              "--model FILE [--data D] [--split test|train] [--json FILE] [--logits FILE]", cmd_eval};
  cli_model_opts mo;
  cli_data_opts dopt;
  const char *model, *split, *json, *logits_path;
  int64_t batch;
  int bn_recompute;
  cli_opt opts[] = {{"model", OPT_STR, &model, NULL, "checkpoint (safetensors) to evaluate"},
                    CLI_DATA_OPTS(dopt),
                    {"split", OPT_STR, &split, "test", "split: test or train"},
                    {"batch", OPT_INT, &batch, "500", "BN-recompute batch (train mode: its statistics depend on it); eval passes use slices of at most 16 or 64 rows per thread (README, Threads)"},
                    {"bn-recompute", OPT_FLAG, &bn_recompute, NULL, "recompute BN statistics on the training set first"},
                    {"json", OPT_STR, &json, NULL, "write {\"loss\", \"accuracy\", ...} to this file"},
                    {"logits", OPT_STR, &logits_path, NULL, "write every example's logits (safetensors: F32 \"logits\" [n, classes], I64 \"labels\" [n]; eval-mode BN, dataset order)"},
                    CLI_MODEL_OPTS(mo),
                    CLI_RUNTIME_OPTS(mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!model) return cli_usage("eval", "--model FILE is required");
  if (strcmp(split, "test") && strcmp(split, "train")) return cli_usage("eval", "--split %s: expected test or train", split);
  if (batch < 1) return cli_usage("eval", "--batch must be >= 1");
  mc_backend be;
  mc_status st = cli_runtime(&mo, &be);
  if (st) return cli_fail(st);
  mc_model *m;
  float *theta, *state;
  if ((st = cli_load_model(model, &mo, &m, &theta, &state))) return cli_fail(st);
  mc_data d;
  if ((st = cli_load_data(&dopt, &d))) {
    mc_model_free(m);
    free(theta);
    free(state);
    return cli_fail(st);
  }
  mc_exec *e = NULL;
  mc_metrics mt = {0};
  const mc_dataset *ds = !strcmp(split, "test") ? &d.test : &d.train;
  const size_t lbytes = sizeof(float) * (size_t)(ds->n * m->classes + 1);
  float *logits = logits_path ? mc_malloc_try(lbytes) : NULL;
  double t0 = omp_get_wtime();
  if (logits_path && !logits)
    st = mc_oom(lbytes, "the logits of %lld images (--logits %s)", (long long)ds->n, logits_path);
  if (!st) st = mc_exec_create(&e, m, batch, be);
  if (!st && bn_recompute) st = mc_bn_recompute(e, theta, state, &d.train, 0);
  if (!st) st = mc_evaluate_logits(e, theta, state, ds, 0, &mt, logits);
  double secs = omp_get_wtime() - t0;
  if (!st) {
    printf("%s on %s/%s (%lld images): loss %.6f  accuracy %.4f (%.2f%%)  %.2fs\n", model, d.name, split,
           (long long)mt.n, mt.loss, mt.accuracy, 100 * mt.accuracy, secs);
    if (json) {
      json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:f, s:f, s:b}", "model", model, "data", dopt.data, "split",
                            split, "n", (json_int_t)mt.n, "loss", mt.loss, "accuracy", mt.accuracy,
                            "bn_recomputed", bn_recompute);
      st = mc_json_write(json, j);
      json_decref(j);
    }
    if (!st && logits_path) { /* F32 "logits" [n, classes] (eval-mode BN, dataset order), I64 "labels" [n] */
      const int64_t shape[2] = {mt.n, m->classes};
      const char *mk[] = {"modeconn.model", "modeconn.split"}, *mv[] = {model, split};
      st = cli_write_with_labels(logits_path, "logits", logits, 2, shape, ds, mk, mv, 2);
    }
  }
  free(logits);
  mc_exec_free(e);
  mc_model_free(m);
  free(theta);
  free(state);
  mc_data_free(&d);
  return st ? cli_fail(st) : EXIT_OK;
}
