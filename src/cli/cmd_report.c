/* `modeconn report`: turns the JSON results of a pipeline run into a
 * Markdown report with a Table-1-style summary and PNG/SVG figures. */
#include "cli.h"

#include "core/file.h"

#include "eval/path.h"
#include "io/plot.h"
#include "io/results.h"

#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* The report text; `failed`: the bytes of a growth that did not fit, after
 * which sbp appends nothing and the writer reports MC_ENOMEM. */
typedef struct {
  char *s;
  size_t n, cap, failed;
} strbuf;

static void sbp(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbp(strbuf *b, const char *fmt, ...) {
  if (b->failed) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if (b->n + (size_t)k + 1 > b->cap) {
    const size_t cap = (b->n + (size_t)k + 1) * 2;
    char *s = mc_realloc_try(b->s, cap);
    if (!s) {
      b->failed = cap;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

static json_t *load(const char *dir, const char *name, mc_status *st) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  unsigned char *buf;
  size_t n;
  mc_status s = mc_read_file(p, "result file", (size_t)1 << 30, &buf, &n);
  if (s) {
    if (!*st) *st = s;
    return NULL;
  }
  json_error_t err;
  int oom;
  json_t *j = mc_json_loadb((const char *)buf, n, 0, &err, &oom);
  free(buf);
  if (oom) {
    if (!*st) *st = mc_error(MC_ENOMEM, "%s: out of memory parsing it", p);
    return NULL;
  }
  if (!j && !*st) *st = mc_error(MC_EFORMAT, "%s: %s (line %d)", p, err.text, err.line);
  if (j && !json_is_object(j) && !*st) *st = mc_error(MC_EFORMAT, "%s: not a JSON object", p);
  return j;
}

static double num(const json_t *j, const char *path) {
  /* dotted path, e.g. "metrics.test_accuracy.min" */
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  const json_t *cur = j;
  for (char *k = strtok(buf, "."); k && cur; k = strtok(NULL, ".")) cur = json_object_get(cur, k);
  return cur && json_is_number(cur) ? json_number_value(cur) : NAN;
}

/* One series of a path JSON, as many values as its "t" array. */
static mc_status series(const json_t *j, const char *file, const char *key, double scale, double **v, int *n) {
  size_t nt, len;
  double *t;
  mc_status st = mc_json_doubles(j, file, "t", SIZE_MAX, 0, &t, &nt);
  free(t);
  if (!st && nt > 1000000) st = mc_error(MC_EFORMAT, "%s: 't' has %zu points (at most 1000000)", file, nt);
  if (!st) st = mc_json_doubles(j, file, key, nt, 0, v, &len);
  if (st) return st;
  for (size_t i = 0; i < len; i++) (*v)[i] *= scale;
  *n = (int)len;
  return MC_OK;
}

static const char *PATHS[4] = {"interp_unaligned.json", "interp_aligned.json", "curve_unaligned.json",
                               "curve_aligned.json"};
static const char *LABELS[4] = {"line, unaligned", "line, aligned", "Bezier curve, unaligned", "Bezier curve, aligned"};

/* One figure (PNG and SVG) OUT/NAME.{png,svg} of n series: series i is
 * key[i] against t of the JSON j[i] (read from file[i]), scaled. */
static mc_status lines_figure(const char *out, const char *name, const char *title, const char *ylabel, int n,
                              json_t *const *j, const char *const *file, const char *const *label,
                              const char *const *key, double scale) {
  mc_status st = MC_OK;
  mc_series s[4];
  double *x[4] = {0}, *y[4] = {0};
  MC_ASSERT(n <= 4);
  for (int i = 0; i < n && !st; i++) {
    int len = 0;
    if (!(st = series(j[i], file[i], "t", 1, &x[i], &len))) st = series(j[i], file[i], key[i], scale, &y[i], &len);
    s[i] = (mc_series){label[i], x[i], y[i], len};
  }
  const char *ext[2] = {"png", "svg"};
  for (int e = 0; e < 2 && !st; e++) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s.%s", out, name, ext[e]);
    st = mc_plot_lines(p, title, "t", ylabel, s, n);
  }
  for (int i = 0; i < n; i++) {
    free(x[i]);
    free(y[i]);
  }
  return st;
}

static mc_status path_plots(const char *run, const char *out, json_t **pj) {
  char files[4][1200];
  const char *fp[4], *acc[4], *loss[4];
  for (int i = 0; i < 4; i++) {
    snprintf(files[i], sizeof files[i], "%s/%s", run, PATHS[i]);
    fp[i] = files[i];
    acc[i] = "test_accuracy";
    loss[i] = "test_loss";
  }
  mc_status st = lines_figure(out, "path_accuracy", "Test accuracy along the paths (BN recomputed at every t)",
                              "test accuracy (%)", 4, pj, fp, LABELS, acc, 100);
  if (!st)
    st = lines_figure(out, "path_loss", "Test loss along the paths (BN recomputed at every t)", "test loss", 4, pj,
                      fp, LABELS, loss, 1);
  return st;
}

/* The robust section (scripts/demo.sh with ROBUST=1): adversarially
 * trained endpoints, robust Bezier curves unaligned and aligned, evaluated
 * clean and under PGD with BN recomputed on PGD training examples. */
static const char *RPATHS[2] = {"robust_curve_unaligned.json", "robust_curve_aligned.json"};
static const char *RLABELS[2] = {"robust curve, unaligned", "robust curve, aligned"};

static mc_status robust_plots(const char *run, const char *out, json_t **rj) {
  char files[2][1200];
  for (int i = 0; i < 2; i++) snprintf(files[i], sizeof files[i], "%s/%s", run, RPATHS[i]);
  json_t *j[4] = {rj[0], rj[0], rj[1], rj[1]};
  const char *fp[4] = {files[0], files[0], files[1], files[1]};
  const char *lab[4] = {"robust curve, unaligned, clean", "robust curve, unaligned, PGD",
                        "robust curve, aligned, clean", "robust curve, aligned, PGD"};
  const char *acc[4] = {"test_accuracy", "robust_accuracy", "test_accuracy", "robust_accuracy"};
  const char *loss[4] = {"test_loss", "robust_loss", "test_loss", "robust_loss"};
  mc_status st = lines_figure(out, "robust_path_accuracy",
                              "Clean and PGD test accuracy along robust curves (BN on PGD examples)",
                              "test accuracy (%)", 4, j, fp, lab, acc, 100);
  if (!st)
    st = lines_figure(out, "robust_path_loss", "Clean and PGD test loss along robust curves (BN on PGD examples)",
                      "test loss", 4, j, fp, lab, loss, 1);
  return st;
}

static mc_status robust_section(const char *run, const char *out, strbuf *b) {
  char probe[1200];
  snprintf(probe, sizeof probe, "%s/%s", run, RPATHS[1]);
  if (access(probe, F_OK)) return MC_OK; /* a run without the robust part */
  mc_status st = MC_OK;
  json_t *rj[2] = {load(run, RPATHS[0], &st), load(run, RPATHS[1], &st)};
  json_t *ra = load(run, "robust_a_attack.json", &st), *rb = load(run, "robust_b_attack.json", &st);
  if (!st) st = robust_plots(run, out, rj);
  if (!st) {
    const json_t *adv = json_object_get(rj[1], "adversarial");
    sbp(b, "## Robust models and curves (SPEC section 4)\n\n");
    sbp(b, "Endpoints adversarially trained (PGD, eps %g, alpha %g, %lld steps); robust Bezier curves trained on PGD "
           "examples against theta(t); at every t BN recomputed on PGD examples of the training images, then clean "
           "and PGD test metrics.\n\n",
        num(adv, "eps"), num(adv, "alpha"), (long long)num(adv, "steps"));
    sbp(b, "| | clean Avg (%%) | clean Min (%%) | PGD Avg (%%) | PGD Min (%%) | robust loss barrier | points more "
           "robust and accurate than both endpoints |\n|---|---|---|---|---|---|---|\n");
    sbp(b, "| endpoints A / B (own BN) | %.2f / %.2f | | %.2f / %.2f | | | |\n", 100 * num(ra, "clean_accuracy"),
        100 * num(rb, "clean_accuracy"), 100 * num(ra, "robust_accuracy"), 100 * num(rb, "robust_accuracy"));
    for (int i = 0; i < 2; i++)
      sbp(b, "| %s | %.2f | %.2f | %.2f | %.2f | %.4f | %lld of %d |\n", RLABELS[i],
          100 * num(rj[i], "metrics.test_accuracy.avg"), 100 * num(rj[i], "metrics.test_accuracy.min"),
          100 * num(rj[i], "metrics.robust_accuracy.avg"), 100 * num(rj[i], "metrics.robust_accuracy.min"),
          num(rj[i], "metrics.robust_loss_barrier"), (long long)num(rj[i], "metrics.points_more_robust_and_accurate"),
          (int)json_array_size(json_object_get(rj[i], "t")));
    const double bu = num(rj[0], "metrics.robust_loss_barrier"), ba = num(rj[1], "metrics.robust_loss_barrier");
    sbp(b, "\nThe paper's claim (alignment alleviates the robust loss barrier): here the aligned curve's robust loss "
           "barrier is %.4f against %.4f unaligned: **%s**.\n\n",
        ba, bu, ba < bu ? "holds" : "does not hold on this run");
    sbp(b, "![clean and robust accuracy along the robust curves](robust_path_accuracy.png)\n\n"
           "![clean and robust loss along the robust curves](robust_path_loss.png)\n\n");
  }
  json_decref(rj[0]); json_decref(rj[1]); json_decref(ra); json_decref(rb);
  return st;
}

int cmd_report(int argc, char **argv) {
  static const cli_cmd cmd = {
      "report",
      "Write REPORT/report.md and its figures from the JSON results of a pipeline run (the files the demo\n"
      "writes into RUN: a_eval.json, b_eval.json, align.json, interp_{unaligned,aligned}.json,\n"
      "curve_{unaligned,aligned}.json, plane_aligned.json, info.json; and when RUN holds\n"
      "robust_curve_aligned.json, a robust section from robust_{a,b}_attack.json and\n"
      "robust_curve_{unaligned,aligned}.json).",
      "--run RUN --out REPORT", cmd_report};
  const char *run, *out;
  cli_opt opts[] = {{"run", OPT_STR, &run, NULL, "directory with the run's JSON results"},
                    {"out", OPT_STR, &out, NULL, "report directory (created if missing)"},
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!run || !out) return cli_usage("report", "--run and --out are required");
  mc_status st = MC_OK;
  json_t *ea = load(run, "a_eval.json", &st), *eb = load(run, "b_eval.json", &st);
  json_t *al = load(run, "align.json", &st), *info = load(run, "info.json", &st);
  json_t *plane = load(run, "plane_aligned.json", &st);
  json_t *pj[4];
  for (int i = 0; i < 4; i++) pj[i] = load(run, PATHS[i], &st);
  strbuf b = {0};
  if (st) goto done;
  if ((st = mc_mkdir_p(out))) goto done;
  if ((st = path_plots(run, out, pj))) goto done;
  {
    /* plane figures from the JSON grids */
    char file[1200], prefix[1200];
    snprintf(file, sizeof file, "%s/plane_aligned.json", run);
    mc_plane_result pr;
    double *ca, *cb;
    int nc;
    if ((st = mc_plane_from_json(plane, file, &pr, &ca, &cb, &nc))) goto done;
    snprintf(prefix, sizeof prefix, "%s/plane_aligned", out);
    st = cli_plot_plane(prefix, "plane of A, B' (aligned), Bezier bend", &pr, ca, cb, nc);
    mc_plane_result_free(&pr);
    free(ca);
    free(cb);
    if (st) goto done;
  }
  double acc_a = num(ea, "accuracy"), acc_b = num(eb, "accuracy");
  sbp(&b, "# modeconn report: mode connectivity with neuron alignment\n\n");
  sbp(&b, "Architecture **%s** on **%s**; %s.\n\n", json_string_value(json_object_get(info, "arch")),
      json_string_value(json_object_get(info, "data")), json_string_value(json_object_get(info, "settings")));
  sbp(&b, "## Test accuracy along the Bezier curves (Table 1 of Tatro et al. 2020)\n\n");
  sbp(&b, "| Model, method | Avg (%%) | Min (%%) | Loss barrier | Accuracy barrier (pp) |\n|---|---|---|---|---|\n");
  sbp(&b, "| endpoints (A / B) | %.2f / %.2f | | | |\n", 100 * acc_a, 100 * acc_b);
  for (int i = 0; i < 4; i++)
    sbp(&b, "| %s | %.2f | %.2f | %.4f | %.2f |\n", LABELS[i], 100 * num(pj[i], "metrics.test_accuracy.avg"),
        100 * num(pj[i], "metrics.test_accuracy.min"), num(pj[i], "metrics.loss_barrier"),
        100 * num(pj[i], "metrics.accuracy_barrier"));
  sbp(&b, "\nPoints per path: %d (t equally spaced in [0,1]); BN statistics recomputed at every point.\n\n",
      (int)json_array_size(json_object_get(pj[3], "t")));
  sbp(&b, "![test accuracy along the paths](path_accuracy.png)\n\n![test loss along the paths](path_loss.png)\n\n");
  sbp(&b, "## Definitions\n\n");
  const json_t *defs = json_object_get(pj[3], "definitions");
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)defs, k, v) sbp(&b, "- **%s**: %s\n", k, json_string_value(v));
  sbp(&b, "- **Min**: minimum test accuracy over the evaluated points.\n");
  sbp(&b, "- **midpoint barrier** per path: ");
  for (int i = 0; i < 4; i++) sbp(&b, "%s %.4f%s", LABELS[i], num(pj[i], "metrics.midpoint_barrier"), i < 3 ? "; " : ".\n\n");
  sbp(&b, "## Alignment (%s)\n\n| group | size | mean corr. before | after |\n|---|---|---|---|\n",
      json_string_value(json_object_get(al, "method")));
  const json_t *groups = json_object_get(al, "groups");
  for (size_t g = 0; g < json_array_size(groups); g++) {
    const json_t *gg = json_array_get(groups, g);
    sbp(&b, "| %s | %lld | %.4f | %.4f |\n", json_string_value(json_object_get(gg, "name")),
        (long long)json_integer_value(json_object_get(gg, "size")), num(gg, "mean_corr_before"),
        num(gg, "mean_corr_after"));
  }
  sbp(&b, "\n## Loss plane of A, B' and the aligned curve's bend\n\n");
  sbp(&b, "theta(a,b) = A + a x + b y_perp, x = B' - A, y_perp the Gram-Schmidt component of the bend; axes in "
          "weight-space units (||x|| = %.3f, ||y_perp|| = %.3f). The white line is the curve.\n\n",
      num(plane, "x_norm"), num(plane, "y_perp_norm"));
  sbp(&b, "![plane test loss](plane_aligned_loss.png)\n\n![plane test accuracy](plane_aligned_acc.png)\n\n");
  if ((st = robust_section(run, out, &b))) goto done;
  sbp(&b, "SVG versions of every figure sit next to the PNGs.\n");
  {
    char p[1200];
    snprintf(p, sizeof p, "%s/report.md", out);
    st = b.failed ? mc_oom(b.failed, "the text of %s", p) : mc_atomic_write(p, b.s, b.n);
    if (!st) printf("report: %s\n", p);
  }
done:
  free(b.s);
  json_decref(ea); json_decref(eb); json_decref(al); json_decref(info); json_decref(plane);
  for (int i = 0; i < 4; i++) json_decref(pj[i]);
  return st ? cli_fail(st) : EXIT_OK;
}
