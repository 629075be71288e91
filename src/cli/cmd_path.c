/* `modeconn interp` (the straight line between two models) and
 * `modeconn curve eval`: loss/accuracy along a path with BN recomputed at
 * every point, and the barrier metrics with their definitions. */
#include "cli.h"

#include "curve/curve.h"
#include "eval/eval.h"
#include "eval/path.h"
#include "eval/repair.h"
#include "io/safetensors.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PATH_OPTS(bn_samples, batch, json, csv, with_train)                                    \
  {"bn-samples", OPT_INT, &bn_samples, "0", "training images for each BN recompute and REPAIR statistics pass (0 = all)"}, \
  {"batch", OPT_INT, &batch, "500",                                                             \
   "BN-recompute batch (train mode: its statistics depend on it); eval passes use slices of at most 16 or 64 rows per thread (README, Threads)"}, \
  {"json", OPT_STR, &json, NULL, "write points and metrics as JSON"},                        \
  {"csv", OPT_STR, &csv, NULL, "write the points as CSV"},                                   \
  {"train", OPT_FLAG, &with_train, NULL, "also evaluate loss/accuracy on the training set"}

/* --repair and --save-point, shared by interp and curve eval. */
#define REPAIR_OPTS(repair, save_t, save_out)                                                          \
  {"repair", OPT_STR, &repair, NULL, CLI_REPAIR_HELP},                                                  \
  {"save-point", OPT_DOUBLE, &save_t, "-1",                                                             \
   "also write the model at this t in [0,1] as a plain checkpoint, corrected as --repair says (-1 = none)"}, \
  {"save-out", OPT_STR, &save_out, NULL, "the checkpoint --save-point writes (required with it)"}

mc_status cli_repair_mode(const char *s, const mc_model *m, int bn_flag_off, mc_path_opts *po) {
  mc_repair_mode mode = mc_repair_default(m);
  mc_status st = MC_OK;
  if (s && (st = mc_repair_parse(s, &mode))) return st;
  if (bn_flag_off && s && mode != MC_REPAIR_NONE)
    return mc_error(MC_EARG, "--no-bn-recompute is --repair none; it contradicts --repair %s", s);
  if (bn_flag_off) mode = MC_REPAIR_NONE;
  if (mode == MC_REPAIR_REPAIR) {
    int n; /* fail before any work when a layer cannot be REPAIRed */
    if ((st = mc_repair_layers(m, NULL, &n))) return st;
  }
  po->repair = mode;
  po->bn_recompute = mode != MC_REPAIR_NONE;
  return MC_OK;
}

/* --save-point: the model at t, as the path evaluation corrects it. */
static mc_status save_point(const char *out, double t, const mc_model *m, const mc_curve *c, const float *sa,
                            const float *sb, const mc_data *d, const mc_path_opts *po, mc_backend be,
                            const char *from) {
  float *theta = mc_aligned_alloc_try(sizeof(float) * (m->n_theta + 1));
  float *state = mc_aligned_alloc_try(sizeof(float) * (m->n_state + 1));
  mc_status st = !theta || !state ? mc_oom(sizeof(float) * (m->n_theta + m->n_state + 2), "the model at t = %g", t)
                                  : mc_path_point_model(m, c, sa, sb, t, d, po, be, theta, state);
  if (!st) {
    char ts[32];
    snprintf(ts, sizeof ts, "%.17g", t);
    mc_kv extra[] = {{"modeconn.path.from", from}, {"modeconn.path.t", ts},
                     {"modeconn.path.repair", mc_repair_name((mc_repair_mode)po->repair)}};
    mc_ckpt_part part = {"", theta, state};
    st = mc_ckpt_save(out, m, &part, 1, extra, 3);
    if (!st) fprintf(stderr, "wrote %s (the path at t = %g, --repair %s)\n", out, t, mc_repair_name((mc_repair_mode)po->repair));
  }
  free(theta);
  free(state);
  return st;
}

static int check_save(const char *cmd, double t, const char *out) {
  if (t == -1 && !out) return -1;
  if (t == -1) return cli_usage(cmd, "--save-out needs --save-point T");
  if (!(t >= 0 && t <= 1)) return cli_usage(cmd, "--save-point must be in [0,1] (got %g)", t);
  if (!out) return cli_usage(cmd, "--save-point needs --save-out FILE");
  return -1;
}

static int finish(const char *title, const mc_model *m, const mc_curve *c, const float *sa, const float *sb,
                  const mc_data *d, int T, const mc_path_opts *po, mc_backend be, const char *json,
                  const char *csv, json_t *extra) {
  mc_path_result res;
  fprintf(stderr, "path evaluation with --repair %s\n", mc_repair_name((mc_repair_mode)po->repair));
  double t0 = omp_get_wtime();
  mc_status st = mc_path_eval(m, c, sa, sb, d, T, po, be, &res);
  if (st) {
    json_decref(extra);
    return cli_fail(st);
  }
  double secs = omp_get_wtime() - t0;
  mc_path_metrics pm;
  mc_path_metrics_compute(&res, &pm);
  mc_path_print(stdout, title, &res, &pm);
  /* an even point count has no t = 1/2 among its points: the midpoint
   * barrier evaluates it as one more point */
  const int evals = T + (T % 2 == 0);
  const int64_t nbn = po->bn_samples > 0 && po->bn_samples < d->train.n ? po->bn_samples : d->train.n;
  const int64_t ntest = po->test_samples > 0 && po->test_samples < d->test.n ? po->test_samples : d->test.n;
  printf("evaluated %d points%s in %.1fs (%.2fs per evaluation; BN recompute on %lld images, test on %lld)\n", T,
         evals > T ? " and t = 1/2" : "", secs, secs / evals, (long long)nbn, (long long)ntest);
  if (csv) st = mc_path_csv(csv, &res);
  if (!st && json) {
    json_t *j = mc_path_json(&res, &pm);
    json_object_update(j, extra);
    json_object_set_new(j, "seconds", json_real(secs));
    json_object_set_new(j, "bn_recompute", json_boolean(po->bn_recompute));
    json_object_set_new(j, "repair", json_string(mc_repair_name((mc_repair_mode)po->repair)));
    st = cli_write_json(json, j);
  }
  json_decref(extra);
  mc_path_result_free(&res);
  return st ? cli_fail(st) : EXIT_OK;
}

int cmd_interp(int argc, char **argv) {
  static const cli_cmd cmd = {"interp",
                              "Evaluate the straight line theta(t) = (1-t) theta_A + t theta_B: BN statistics "
                              "recomputed at every point\n(exact average over one train-mode pass; --repair), then "
                              "test loss and accuracy, and the barrier metrics.\n"
                              "--repair repair targets (1-t) stat_A + t stat_B of the endpoints' channel statistics.",
                              "--a A --b B [--points 25] [--repair none|reset|repair] [--save-point T --save-out F] [--data D] [--json FILE]",
                              cmd_interp};
  cli_model_opts mo;
  cli_data_opts dopt;
  const char *pa, *pb, *json, *csv, *repair, *save_out;
  int64_t points, bn_samples, batch;
  int no_bn, with_train;
  cli_adv_opts ao;
  double save_t;
  cli_opt opts[] = {{"a", OPT_STR, &pa, NULL, "model A (t = 0)"},
                    {"b", OPT_STR, &pb, NULL, "model B (t = 1)"},
                    {"points", OPT_INT, &points, "25", "number of equally spaced t in [0,1]"},
                    {"no-bn-recompute", OPT_FLAG, &no_bn, NULL,
                     "interpolate the BN running statistics instead of recomputing them (= --repair none)"},
                    REPAIR_OPTS(repair, save_t, save_out),
                    PATH_OPTS(bn_samples, batch, json, csv, with_train),
                    CLI_ADV_OPTS(ao),
                    CLI_BN_ADV_OPT(ao),
                    CLI_ALL_OPTS(dopt, mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!pa || !pb) return cli_usage("interp", "--a and --b are required");
  if (points < 2 || points > 100000) return cli_usage("interp", "--points must be in 2..100000");
  if ((r = check_save("interp", save_t, save_out)) >= 0) return r;
  mc_backend be;
  mc_status st = cli_runtime(&mo, &be);
  if (st) return cli_fail(st);
  cli_pair P;
  if ((st = cli_pair_load(pa, pb, &mo, &dopt, &P))) return cli_fail(st);
  mc_curve c = {MC_CURVE_LINEAR, 0, P.m->n_theta, P.ta, P.tb, NULL};
  mc_path_opts po = {.bn_samples = bn_samples, .test_samples = dopt.test_subset, .with_train = with_train,
                     .bn_recompute = !no_bn, .batch = batch, .sink = &cli_sink};
  if ((st = cli_repair_mode(repair, P.m, no_bn, &po))) {
    cli_pair_free(&P);
    return cli_fail(st);
  }
  char title[1200], from[1100];
  snprintf(title, sizeof title, "linear path %s -> %s (--repair %s: %s)", pa, pb, mc_repair_name((mc_repair_mode)po.repair),
           !mc_model_has_bn(P.m) ? (po.repair == MC_REPAIR_REPAIR ? "REPAIR, no BN" : "no BN")
           : po.repair == MC_REPAIR_REPAIR ? "REPAIR, BN recomputed"
           : po.bn_recompute               ? "BN recomputed"
                                           : "BN statistics interpolated");
  json_t *extra = json_pack("{s:s, s:s, s:s}", "kind", "linear", "a", pa, "b", pb);
  mc_pgd pgd;
  if ((st = cli_path_adv(&ao, P.m->in_c, &pgd, &po, extra))) {
    json_decref(extra);
    cli_pair_free(&P);
    return cli_fail(st);
  }
  r = finish(title, P.m, &c, P.sa, P.sb, &P.d, (int)points, &po, be, json, csv, extra);
  snprintf(from, sizeof from, "linear %s -> %s", pa, pb);
  if (r == EXIT_OK && save_out && (st = save_point(save_out, save_t, P.m, &c, P.sa, P.sb, &P.d, &po, be, from)))
    r = cli_fail(st);
  cli_pair_free(&P);
  return r;
}

int cmd_curve_eval(int argc, char **argv) {
  static const cli_cmd cmd = {"curve eval",
                              "Evaluate a trained curve at equally spaced t: BN recomputed at every point (--repair), "
                              "test (and with --train, train)\nloss and accuracy, and the metrics of SPEC section 2. "
                              "--repair repair targets at theta(t), as on the line,\n(1-t) stat_A + t stat_B of the "
                              "endpoints' channel statistics (the bends have none of their own).",
                              "--curve C [--points 65] [--repair none|reset|repair] [--save-point T --save-out F] [--data D] [--bn-samples N] "
                              "[--json F] [--csv F]",
                              cmd_curve_eval};
  cli_data_opts dopt;
  cli_model_opts mo = {0};
  const char *path, *json, *csv, *repair, *save_out;
  int64_t points, bn_samples, batch;
  int with_train;
  cli_adv_opts ao;
  double save_t;
  cli_opt opts[] = {{"curve", OPT_STR, &path, NULL, "curve file written by 'curve train'"},
                    {"points", OPT_INT, &points, "65", "number of equally spaced t in [0,1]"},
                    REPAIR_OPTS(repair, save_t, save_out),
                    PATH_OPTS(bn_samples, batch, json, csv, with_train),
                    CLI_ADV_OPTS(ao),
                    CLI_BN_ADV_OPT(ao),
                    CLI_DATA_OPTS(dopt),
                    CLI_RUNTIME_OPTS(mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!path) return cli_usage("curve eval", "--curve is required");
  if (points < 2 || points > 100000) return cli_usage("curve eval", "--points must be in 2..100000");
  if ((r = check_save("curve eval", save_t, save_out)) >= 0) return r;
  mc_backend be;
  mc_status st = cli_runtime(&mo, &be);
  if (st) return cli_fail(st);
  mc_curve_file cf;
  if ((st = mc_curve_load(path, &cf))) return cli_fail(st);
  mc_data d;
  if ((st = cli_load_data(&dopt, &d))) {
    mc_curve_file_free(&cf);
    return cli_fail(st);
  }
  mc_path_opts po = {.bn_samples = bn_samples, .test_samples = dopt.test_subset, .with_train = with_train,
                     .bn_recompute = 1, .batch = batch, .sink = &cli_sink};
  if ((st = cli_repair_mode(repair, cf.m, 0, &po))) {
    mc_curve_file_free(&cf);
    mc_data_free(&d);
    return cli_fail(st);
  }
  char title[1200];
  snprintf(title, sizeof title, "%s curve (%d bend%s, alignment: %s) from %s", mc_curve_kind_name(cf.c.kind),
           cf.c.n_bends, cf.c.n_bends == 1 ? "" : "s", cf.align, path);
  json_t *extra = json_pack("{s:s, s:s, s:i, s:s}", "kind", mc_curve_kind_name(cf.c.kind), "curve", path, "bends",
                            cf.c.n_bends, "align", cf.align);
  mc_pgd pgd;
  if ((st = cli_path_adv(&ao, cf.m->in_c, &pgd, &po, extra))) {
    json_decref(extra);
    mc_curve_file_free(&cf);
    mc_data_free(&d);
    return cli_fail(st);
  }
  r = finish(title, cf.m, &cf.c, cf.sa, cf.sb, &d, (int)points, &po, be, json, csv, extra);
  if (r == EXIT_OK && save_out && (st = save_point(save_out, save_t, cf.m, &cf.c, cf.sa, cf.sb, &d, &po, be, path)))
    r = cli_fail(st);
  mc_curve_file_free(&cf);
  mc_data_free(&d);
  return r;
}
