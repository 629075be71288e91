/* Plot tests: PNG and SVG line plots, a contour plot with an overlay and
 * labelled points, repeated calls in one process, and the error cases
 * (bad extension, missing directory, all-NaN series).  Set MC_PLOT_KEEP=1
 * to keep the output directory; example PNGs are copied to /tmp for a
 * visual check. */
#include "testutil.h"

#include "io/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPT 60

/* fontconfig (loaded by PLplot's cairo driver through pango) keeps its
 * configuration and pattern caches for the life of the process; they do
 * not grow with the number of plots (checked with valgrind), so
 * LeakSanitizer is told to ignore them in MC_SANITIZE builds. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libfontconfig.so\n";
}

static char g_dir[256];

static int setup(void **s) {
  (void)s;
  snprintf(g_dir, sizeof g_dir, "/tmp/mc_test_plot_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **s) {
  (void)s;
  if (strcmp(tu_env("MC_PLOT_KEEP", "0"), "1") != 0)
    tu_sh("rm -rf '%s'", g_dir);
  else
    fprintf(stderr, "plots kept in %s\n", g_dir);
  return 0;
}

static long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* whole file as a NUL-terminated string (caller frees) */
static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  b[got] = '\0';
  if (len) *len = (long)got;
  return b;
}

static int is_png(const char *path) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  long n;
  char *b = slurp(path, &n);
  int ok = b && n >= 8 && !memcmp(b, sig, 8);
  free(b);
  return ok;
}

/* no "<path>.tmp*" left behind in the test directory */
static void assert_no_tmp(void) {
  assert_int_not_equal(tu_sh("ls -A '%s' | grep -q tmp", g_dir), 0);
}

/* three loss-like curves along t in [0, 1]; the third has a NaN gap and a
 * few points only (markers) */
static double g_t[NPT], g_y[3][NPT], g_t3[9], g_y3[9];
static void make_series(mc_series s[3]) {
  for (int i = 0; i < NPT; i++) {
    double t = (double)i / (NPT - 1);
    g_t[i] = t;
    g_y[0][i] = 0.2 + 1.5 * sin(M_PI * t) * sin(M_PI * t);
    g_y[1][i] = 0.25 + 0.15 * sin(M_PI * t);
    g_y[2][i] = 0.0;
  }
  for (int i = 0; i < 9; i++) {
    g_t3[i] = i / 8.0;
    g_y3[i] = 0.3 + 0.6 * (i / 8.0) * (1 - i / 8.0);
  }
  g_y3[4] = NAN; /* a gap */
  s[0] = (mc_series){"linear interpolation", g_t, g_y[0], NPT};
  s[1] = (mc_series){"Bezier curve (aligned)", g_t, g_y[1], NPT};
  s[2] = (mc_series){"polychain #3", g_t3, g_y3, 9};
}

static void test_lines(void **st) {
  (void)st;
  mc_series s[3];
  make_series(s);
  char png[512], svg[512];
  snprintf(png, sizeof png, "%s/lines.png", g_dir);
  snprintf(svg, sizeof svg, "%s/lines.svg", g_dir);
  for (int rep = 0; rep < 2; rep++) { /* repeated calls in one process */
    mc_status r = mc_plot_lines(png, "Test loss along the path", "t",
                                "loss", s, 3);
    assert_int_equal(r, MC_OK);
    assert_true(is_png(png));
    assert_true(file_size(png) > 5000);
    r = mc_plot_lines(svg, "Test loss along the path", "t", "loss", s, 3);
    assert_int_equal(r, MC_OK);
    long n;
    char *b = slurp(svg, &n);
    assert_non_null(b);
    assert_non_null(strstr(b, "<svg"));
    free(b);
  }
  /* upper-case extension, a single point */
  double x1 = 1.0, y1 = 2.0;
  mc_series one = {"single", &x1, &y1, 1};
  snprintf(png, sizeof png, "%s/one.PNG", g_dir);
  assert_int_equal(mc_plot_lines(png, "one point", "x", "y", &one, 1), MC_OK);
  assert_true(is_png(png));
  assert_no_tmp();
  tu_sh("cp '%s/lines.png' /tmp/plot_example_lines.png", g_dir);
}

static void test_contour(void **st) {
  (void)st;
  enum { NX = 41, NY = 31 };
  double x[NX], y[NY], z[NX * NY];
  for (int i = 0; i < NX; i++) x[i] = -0.5 + 2.0 * i / (NX - 1);
  for (int j = 0; j < NY; j++) y[j] = -0.6 + 1.4 * j / (NY - 1);
  for (int j = 0; j < NY; j++)
    for (int i = 0; i < NX; i++) {
      /* two basins at (0,0) and (1,0) joined by a curved valley */
      double a = x[i], b = y[j];
      double v = fmin((a * a + b * b), ((a - 1) * (a - 1) + b * b));
      double valley = b - 0.4 * sin(M_PI * a);
      z[j * NX + i] = 0.1 + 2.0 * v * (0.3 + valley * valley * 4) / 0.3;
    }
  z[(NY - 1) * NX + NX - 1] = NAN; /* clamps to the maximum */
  z[(NY - 1) * NX + NX - 2] = INFINITY;
  enum { NC = 50 };
  double cx[NC], cy[NC];
  for (int k = 0; k < NC; k++) {
    cx[k] = (double)k / (NC - 1);
    cy[k] = 0.4 * sin(M_PI * cx[k]);
  }
  mc_series curve = {"Bezier curve", cx, cy, NC};
  double px[2] = {0.0, 1.0}, py[2] = {0.0, 0.0};
  const char *labels[2] = {"w1", "w2 (aligned)"};
  char png[512], svg[512];
  snprintf(png, sizeof png, "%s/contour.png", g_dir);
  snprintf(svg, sizeof svg, "%s/contour.svg", g_dir);
  for (int rep = 0; rep < 2; rep++) {
    mc_status r = mc_plot_contour(png, "Train loss plane", "u", "v", x, NX,
                                  y, NY, z, "loss", &curve, px, py, labels,
                                  2);
    assert_int_equal(r, MC_OK);
    assert_true(is_png(png));
    assert_true(file_size(png) > 5000);
  }
  assert_int_equal(mc_plot_contour(svg, "Train loss plane", "u", "v", x, NX,
                                   y, NY, z, "loss", &curve, px, py, labels,
                                   2),
                   MC_OK);
  char *b = slurp(svg, NULL);
  assert_non_null(b);
  assert_non_null(strstr(b, "<svg"));
  free(b);
  /* without overlay and points */
  assert_int_equal(mc_plot_contour(png, NULL, NULL, NULL, x, NX, y, NY, z,
                                   NULL, NULL, NULL, NULL, NULL, 0),
                   MC_OK);
  assert_no_tmp();
  assert_int_equal(mc_plot_contour(png, "Train loss plane", "u", "v", x, NX,
                                   y, NY, z, "loss", &curve, px, py, labels,
                                   2),
                   MC_OK);
  tu_sh("cp '%s' /tmp/plot_example_contour.png", png);
}

static void test_errors(void **st) {
  (void)st;
  mc_series s[3];
  make_series(s);
  char path[512];
  /* bad extension */
  snprintf(path, sizeof path, "%s/lines.pdf", g_dir);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", s, 3), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "lines.pdf"));
  snprintf(path, sizeof path, "%s/noext", g_dir);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", s, 3), MC_EARG);
  /* non-existent directory */
  snprintf(path, sizeof path, "%s/nope/lines.png", g_dir);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", s, 3), MC_EIO);
  assert_non_null(strstr(mc_errmsg(), path));
  double gx[3] = {0, 1, 2}, gy[2] = {0, 1}, gz[6] = {1, 2, 3, 4, 5, 6};
  assert_int_equal(mc_plot_contour(path, "t", "x", "y", gx, 3, gy, 2, gz,
                                   "z", NULL, NULL, NULL, NULL, 0),
                   MC_EIO);
  /* all-NaN series */
  double nx[4] = {0, 1, 2, 3}, ny[4] = {NAN, NAN, INFINITY, NAN};
  mc_series bad[2] = {s[0], {"broken", nx, ny, 4}};
  snprintf(path, sizeof path, "%s/nan.png", g_dir);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", bad, 2), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "broken"));
  assert_int_equal(file_size(path), -1);
  /* empty series, too many series */
  mc_series empty = {"empty", nx, ny, 0};
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", &empty, 1), MC_EARG);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", s, 0), MC_EARG);
  mc_series many[9];
  for (int k = 0; k < 9; k++) many[k] = s[0];
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", many, 9), MC_EARG);
  /* contour: all-NaN values, non-monotonic grid, too small */
  double nz[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
  snprintf(path, sizeof path, "%s/c.png", g_dir);
  assert_int_equal(mc_plot_contour(path, "t", "x", "y", gx, 3, gy, 2, nz,
                                   "z", NULL, NULL, NULL, NULL, 0),
                   MC_EARG);
  double gx2[3] = {0, 2, 1};
  assert_int_equal(mc_plot_contour(path, "t", "x", "y", gx2, 3, gy, 2, gz,
                                   "z", NULL, NULL, NULL, NULL, 0),
                   MC_EARG);
  assert_int_equal(mc_plot_contour(path, "t", "x", "y", gx, 1, gy, 2, gz,
                                   "z", NULL, NULL, NULL, NULL, 0),
                   MC_EARG);
  assert_int_equal(file_size(path), -1);
  /* a plot still works after the errors */
  snprintf(path, sizeof path, "%s/after.svg", g_dir);
  assert_int_equal(mc_plot_lines(path, "t", "x", "y", s, 3), MC_OK);
  assert_no_tmp();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_contour),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
