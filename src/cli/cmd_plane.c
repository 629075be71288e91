/* `modeconn plane`: test loss/accuracy over the plane through three models
 * (A, B', curve control point by default), BN recomputed at every point. */
#include "cli.h"

#include "curve/curve.h"
#include "eval/eval.h"
#include "eval/path.h"
#include "eval/repair.h"
#include "io/plot.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Plots <prefix>_loss.EXT and <prefix>_acc.EXT for EXT in png, svg. */
mc_status cli_plot_plane(const char *prefix, const char *title, const mc_plane_result *pr, const double *ca,
                         const double *cb, int nc) {
  const int G = pr->G;
  double *xa = mc_malloc_try(sizeof(double) * (size_t)G), *yb = mc_malloc_try(sizeof(double) * (size_t)G);
  double *z = mc_malloc_try(sizeof(double) * (size_t)(G * G));
  double *ox = nc ? mc_malloc_try(sizeof(double) * (size_t)nc) : NULL;
  double *oy = nc ? mc_malloc_try(sizeof(double) * (size_t)nc) : NULL;
  if (!xa || !yb || !z || (nc && (!ox || !oy))) {
    free(xa); free(yb); free(z); free(ox); free(oy);
    return mc_oom(sizeof(double) * (size_t)(2 * G + G * G + 2 * nc), "the axes and grid of the %dx%d plot %s", G, G,
                  prefix);
  }
  for (int i = 0; i < G; i++) {
    xa[i] = pr->a[i] * pr->xnorm;
    yb[i] = pr->b[i] * pr->ynorm;
  }
  for (int i = 0; i < nc; i++) {
    ox[i] = ca[i] * pr->xnorm;
    oy[i] = cb[i] * pr->ynorm;
  }
  double px[3] = {0, pr->xnorm, pr->p2a * pr->xnorm}, py[3] = {0, 0, pr->ynorm};
  const char *pl_curve[3] = {"A", "B", "bend"}, *pl_models[3] = {"M0", "M1", "M2"};
  const char *const *pl = nc ? pl_curve : pl_models;
  mc_series ov = {"curve", ox, oy, nc};
  mc_status st = MC_OK;
  const char *exts[2] = {"png", "svg"};
  for (int what = 0; what < 2 && !st; what++) {
    for (int i = 0; i < G * G; i++) z[i] = what == 0 ? pr->loss[i] : 100 * pr->acc[i];
    for (int e = 0; e < 2 && !st; e++) {
      char path[1200], t[512];
      snprintf(path, sizeof path, "%s_%s.%s", prefix, what == 0 ? "loss" : "acc", exts[e]);
      snprintf(t, sizeof t, "%s: test %s", title, what == 0 ? "loss" : "accuracy (%)");
      st = mc_plot_contour(path, t, "a * ||x||", "b * ||y_perp||", xa, G, yb, G, z,
                           what == 0 ? "test loss" : "test accuracy (%)", nc ? &ov : NULL, px, py, pl, 3);
      if (!st) fprintf(stderr, "wrote %s\n", path);
    }
  }
  free(xa); free(yb); free(z); free(ox); free(oy);
  return st;
}

int cmd_plane(int argc, char **argv) {
  static const cli_cmd cmd = {
      "plane",
      "Test loss and accuracy over the plane through three models: theta(a,b) = theta0 + a x + b y_perp with\n"
      "x = theta1 - theta0, y_perp = Gram-Schmidt of theta2 - theta0; BN recomputed at every grid point.\n"
      "With --curve the models are A, B and the first bend (a quadratic Bezier curve lies in that plane).\n"
      "--repair repair targets, at theta = w0 theta0 + w1 theta1 + w2 theta2 (affine coordinates of the grid\n"
      "point), w0 s0 + w1 s1 + w2 s2 of the three models' channel statistics (BN recomputed at each model).",
      "(--curve C | --models M0,M1,M2) [--grid 17] [--range a0,a1,b0,b1] [--repair none|reset|repair] [--json F] "
      "[--plot PREFIX]",
      cmd_plane};
  cli_model_opts mo;
  cli_data_opts dopt;
  const char *curve, *models, *range_s, *json, *plot, *repair;
  int64_t grid, bn_samples, batch;
  cli_adv_opts ao;
  cli_opt opts[] = {{"curve", OPT_STR, &curve, NULL, "curve file: the plane of A, B and its first bend"},
                    {"models", OPT_STR, &models, NULL, "three checkpoints M0,M1,M2 (comma separated)"},
                    {"grid", OPT_INT, &grid, "17", "grid points per axis"},
                    {"range", OPT_STR, &range_s, "-0.05,1.05,-0.1,1.5", "a0,a1,b0,b1 in units of x and y_perp"},
                    {"repair", OPT_STR, &repair, NULL, CLI_REPAIR_HELP ". none is refused for models with BN (a "
                     "plane point has no running statistics to interpolate)"},
                    {"bn-samples", OPT_INT, &bn_samples, "0",
                     "training images for each BN recompute and REPAIR statistics pass (0 = all)"},
                    {"batch", OPT_INT, &batch, "500", "BN-recompute batch (train mode: its statistics depend on it); eval passes use slices of at most 16 or 64 rows per thread (README, Threads)"},
                    {"json", OPT_STR, &json, NULL, "write the grids as JSON"},
                    {"plot", OPT_STR, &plot, NULL, "write PREFIX_loss.png/.svg and PREFIX_acc.png/.svg (with --adv "
                     "pgd also PREFIX_robust_loss and PREFIX_robust_acc)"},
                    CLI_ADV_OPTS(ao),
                    CLI_BN_ADV_OPT(ao),
                    CLI_ALL_OPTS(dopt, mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!!curve == !!models) return cli_usage("plane", "give exactly one of --curve and --models");
  if (grid < 2 || grid > 1000) return cli_usage("plane", "--grid must be in 2..1000");
  double range[4];
  char tail;
  if (sscanf(range_s, "%lf,%lf,%lf,%lf%c", &range[0], &range[1], &range[2], &range[3], &tail) != 4 ||
      !(range[1] > range[0]) || !(range[3] > range[2]))
    return cli_usage("plane", "--range %s: expected a0,a1,b0,b1 with a1 > a0 and b1 > b0", range_s);
  mc_backend be;
  mc_status st = cli_runtime(&mo, &be);
  if (st) return cli_fail(st);
  mc_curve_file cf = {0};
  float *t[3] = {0}, *s[3] = {0};
  mc_model *m = NULL;
  if (curve) {
    if ((st = mc_curve_load(curve, &cf))) return cli_fail(st);
    if (cf.c.n_bends < 1) {
      mc_curve_file_free(&cf);
      return cli_usage("plane", "%s has no bends: use --models", curve);
    }
    m = cf.m;
    t[0] = cf.a; t[1] = cf.b; t[2] = cf.c.bends[0];
  } else {
    char *copy = mc_strdup_try(models), *p[3];
    if (!copy) return cli_fail(mc_oom(strlen(models) + 1, "a copy of --models"));
    int k = 0;
    for (char *q = strtok(copy, ","); q && k < 3; q = strtok(NULL, ",")) p[k++] = q;
    if (k != 3) {
      free(copy);
      return cli_usage("plane", "--models needs three comma-separated checkpoints");
    }
    float *dummy_t, *dummy_s;
    st = cli_load_pair(p[0], p[1], &mo, &m, &t[0], &s[0], &t[1], &s[1]);
    if (!st) {
      mc_model *m2;
      st = cli_load_pair(p[0], p[2], &mo, &m2, &dummy_t, &dummy_s, &t[2], &s[2]);
      if (!st) {
        free(dummy_t); free(dummy_s);
        mc_model_free(m2);
      }
    }
    free(copy);
    if (st) return cli_fail(st);
  }
  mc_data d;
  if ((st = cli_load_data(&dopt, &d))) goto done;
  mc_path_opts po = {.bn_samples = bn_samples, .test_samples = dopt.test_subset, .bn_recompute = 1, .batch = batch,
                     .sink = &cli_sink};
  mc_pgd pgd;
  json_t *adv = json_object();
  if ((st = cli_repair_mode(repair, m, 0, &po))) goto data;
  if (!po.bn_recompute && mc_model_has_bn(m)) {
    st = mc_error(MC_EARG, "plane: --repair none needs BN running statistics to interpolate, and a plane point has "
                           "none; use reset or repair");
    goto data;
  }
  if ((st = cli_path_adv(&ao, m->in_c, &pgd, &po, adv))) goto data;
  mc_plane_result pr;
  double t0 = omp_get_wtime();
  fprintf(stderr, "evaluating a %lldx%lld plane (%lld points, --repair %s, BN recompute / REPAIR on %lld images each)\n",
          (long long)grid, (long long)grid, (long long)(grid * grid), mc_repair_name((mc_repair_mode)po.repair),
          (long long)(bn_samples > 0 && bn_samples < d.train.n ? bn_samples : d.train.n));
  if (!(st = mc_plane_eval(m, t[0], t[1], t[2], &d, (int)grid, range, &po, be, &pr))) {
    double secs = omp_get_wtime() - t0;
    int nc = curve ? 65 : 0;
    double ca[66], cb[66];
    float *th = nc ? mc_aligned_alloc_try(sizeof(float) * m->n_theta) : NULL;
    if (nc && !th) {
      st = mc_oom(sizeof(float) * m->n_theta, "a point of the curve (%zu parameters)", m->n_theta);
      mc_plane_result_free(&pr);
      goto data;
    }
    for (int i = 0; i < nc; i++) {
      mc_curve_point(&cf.c, (double)i / (nc - 1), th);
      mc_plane_project(t[0], t[1], t[2], m->n_theta, th, &ca[i], &cb[i]);
    }
    free(th);
    double best = 1e300, worst = -1e300;
    for (int i = 0; i < pr.G * pr.G; i++) {
      best = fmin(best, pr.loss[i]);
      worst = fmax(worst, pr.loss[i]);
    }
    printf("plane: %dx%d points in %.1fs; ||x|| = %.4f, ||y_perp|| = %.4f; test loss from %.4f to %.4f\n", pr.G,
           pr.G, secs, pr.xnorm, pr.ynorm, best, worst);
    if (json) {
      json_t *j = mc_plane_json(&pr);
      json_t *ja = json_array(), *jb = json_array();
      for (int i = 0; i < nc; i++) {
        json_array_append_new(ja, json_real(ca[i]));
        json_array_append_new(jb, json_real(cb[i]));
      }
      json_object_set_new(j, "curve_a", ja);
      json_object_set_new(j, "curve_b", jb);
      json_object_set_new(j, "seconds", json_real(secs));
      json_object_update(j, adv);
      json_object_set_new(j, "repair", json_string(mc_repair_name((mc_repair_mode)po.repair)));
      st = cli_write_json(json, j);
    }
    if (!st && plot) st = cli_plot_plane(plot, curve ? "plane of A, B, bend" : "plane of M0, M1, M2", &pr, ca, cb, nc);
    if (!st && plot && pr.racc) { /* the same figures of the PGD metrics */
      mc_plane_result rp = pr;
      rp.loss = pr.rloss;
      rp.acc = pr.racc;
      char *pre = mc_malloc_try(strlen(plot) + 16);
      if (!pre) st = mc_oom(strlen(plot) + 16, "the name of --plot %s's PGD figures", plot);
      else {
        sprintf(pre, "%s_robust", plot);
        st = cli_plot_plane(pre, curve ? "plane of A, B, bend (PGD)" : "plane of M0, M1, M2 (PGD)", &rp, ca, cb, nc);
        free(pre);
      }
    }
    mc_plane_result_free(&pr);
  }
data:
  json_decref(adv);
  mc_data_free(&d);
done:
  if (curve) mc_curve_file_free(&cf);
  else {
    for (int i = 0; i < 3; i++) { free(t[i]); free(s[i]); }
    mc_model_free(m);
  }
  return st ? cli_fail(st) : EXIT_OK;
}
