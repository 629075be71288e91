/* Linear assignment (mc_lap_max) tests:
 *   - brute force over all permutations for n = 1..8 on many matrix kinds
 *     (random, integer ties, constant, constant rows/columns, rank 1,
 *     sparse, NaN, huge and tiny magnitudes, large offsets);
 *   - scipy.optimize.linear_sum_assignment (run with /usr/bin/python3 via
 *     tests/lap_ref.py) on random and degenerate matrices up to n = 1000;
 *   - NaN handling, inf rejection, argument checks;
 *   - entries near DBL_MAX (internal rescaling; an optimum beyond DBL_MAX
 *     is reported as +inf);
 *   - invariances (row/column permutation, row/column constants,
 *     transposition, power-of-two scaling), a planted optimum, determinism.
 * Every call checks that perm is a permutation and that *obj is the sum
 * of the chosen entries. */
#include "testutil.h"

#include "align/lap.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

typedef enum {
  K_UNIFORM,  /* U[-1,1) */
  K_POSITIVE, /* U[0,1) */
  K_INT4,     /* integers 0..3: many ties */
  K_INTSKEW,  /* integers 0..3, mostly 0: ties and a non-trivial optimum */
  K_NEGINT,   /* integers -3..3 */
  K_CONST,    /* all entries equal */
  K_CONSTROW, /* row i constant */
  K_CONSTCOL, /* column j constant */
  K_RANK1,    /* a_i * b_j */
  K_RANK1INT, /* a_i * b_j with a, b in 0..3: rank 1 and tied */
  K_SPARSE,   /* 0/1, mostly 0 */
  K_BINARY,   /* 0/1 half and half */
  K_BLOCK,    /* piecewise constant blocks, values 0..4 */
  K_DUPROWS,  /* rows copied from three integer templates */
  K_DIST,     /* -(a_i - b_j)^2 */
  K_NAN,      /* U[-1,1) with a quarter NaN */
  K_HUGE,     /* U[-1,1) * 1e305 (scaled internally) */
  K_TINY,     /* U[-1,1) * 1e-300 */
  K_OFFSET,   /* 1e6 + U[0,1) */
  K_COUNT
} kind;

static const char *kind_name[K_COUNT] = {
    "uniform", "positive", "int4",   "intskew", "negint", "const", "constrow",
    "constcol", "rank1",   "rank1int", "sparse", "binary", "block", "duprows",
    "dist",    "nan",      "huge",   "tiny",    "offset"};

static double unif(mc_rng *r) { return 2 * mc_rng_uniform(r) - 1; }

static void gen(double *C, int n, kind k, uint64_t seed) {
  mc_rng r;
  mc_rng_seed(&r, seed * 1000003u + (uint64_t)k * 7919u + (uint64_t)n);
  double *a = mc_malloc(2 * (size_t)n * sizeof(double) + 1), *b = a + n;
  for (int i = 0; i < n; i++) {
    if (k == K_RANK1INT) {
      a[i] = (double)mc_rng_below(&r, 4);
      b[i] = (double)mc_rng_below(&r, 4);
    } else {
      a[i] = mc_rng_uniform(&r);
      b[i] = mc_rng_uniform(&r);
    }
  }
  double tmpl[3][8];
  for (int t = 0; t < 3; t++)
    for (int j = 0; j < 8; j++) tmpl[t][j] = (double)mc_rng_below(&r, 10);
  const int bi = n / 7 + 1, bj = n / 5 + 1;
  const uint64_t sparse_den = n < 10 ? 5 : (uint64_t)n / 2;
  for (int i = 0; i < n; i++) {
    const int row_tmpl = (int)mc_rng_below(&r, 3);
    for (int j = 0; j < n; j++) {
      double *c = &C[(size_t)i * n + j];
      switch (k) {
      case K_UNIFORM: *c = unif(&r); break;
      case K_POSITIVE: *c = mc_rng_uniform(&r); break;
      case K_INT4: *c = (double)mc_rng_below(&r, 4); break;
      case K_INTSKEW: {
        const double u = mc_rng_uniform(&r) * (n < 10 ? 10 : n);
        *c = u < 1 ? 3 : u < 3 ? 2 : u < 6 ? 1 : 0;
        break;
      }
      case K_NEGINT: *c = (double)mc_rng_below(&r, 7) - 3; break;
      case K_CONST: *c = 2.5; break;
      case K_CONSTROW: *c = a[i]; break;
      case K_CONSTCOL: *c = b[j]; break;
      case K_RANK1:
      case K_RANK1INT: *c = a[i] * b[j]; break;
      case K_SPARSE: *c = mc_rng_below(&r, sparse_den) == 0; break;
      case K_BINARY: *c = (double)mc_rng_below(&r, 2); break;
      case K_BLOCK: *c = (double)(((i / bi) * 7 + (j / bj) * 3) % 5); break;
      case K_DUPROWS: *c = n <= 8 ? tmpl[row_tmpl][j] : (double)((j * 7 + row_tmpl * 3) % 10); break;
      case K_DIST: *c = -(a[i] - b[j]) * (a[i] - b[j]); break;
      case K_NAN: *c = mc_rng_below(&r, 4) == 0 ? NAN : unif(&r); break;
      case K_HUGE: *c = unif(&r) * 1e305; break;
      case K_TINY: *c = unif(&r) * 1e-300; break;
      case K_OFFSET: *c = 1e6 + mc_rng_uniform(&r); break;
      default: fail();
      }
    }
  }
  free(a);
}

static double entry(const double *C, int n, int i, int j) {
  const double c = C[(size_t)i * n + j];
  return isnan(c) ? 0 : c;
}

/* natural magnitude of an objective: sum_i max_j |C[i,j]| */
static double magnitude(const double *C, int n) {
  long double s = 0;
  for (int i = 0; i < n; i++) {
    double m = 0;
    for (int j = 0; j < n; j++) m = fmax(m, fabs(entry(C, n, i, j)));
    s += m;
  }
  return (double)s;
}

static void check_perm(const int *perm, int n) {
  char *seen = calloc((size_t)n + 1, 1);
  for (int i = 0; i < n; i++) {
    if (perm[i] < 0 || perm[i] >= n) fail_msg("perm[%d] = %d out of range (n=%d)", i, perm[i], n);
    if (seen[perm[i]]) fail_msg("perm[%d] = %d repeated (n=%d)", i, perm[i], n);
    seen[perm[i]] = 1;
  }
  free(seen);
}

/* runs mc_lap_max, checks perm and that *obj is the sum of its entries */
static double solve(const double *C, int n, int *perm) {
  double obj = NAN;
  mc_status st = mc_lap_max(C, n, perm, &obj);
  if (st != MC_OK) fail_msg("mc_lap_max(n=%d): %s", n, mc_errmsg());
  check_perm(perm, n);
  long double e = 0;
  for (int i = 0; i < n; i++) e += entry(C, n, i, perm[i]);
  const double ed = (double)e;
  if (isinf(obj) || isinf(ed)) { /* the true sum is beyond DBL_MAX */
    if (obj != ed) fail_msg("n=%d: obj %.17g but the entries of perm sum to %.17g", n, obj, ed);
    return obj;
  }
  long double scale = 0; /* magnitude() in long double: may exceed DBL_MAX */
  for (int i = 0; i < n; i++) {
    double m = 0;
    for (int j = 0; j < n; j++) m = fmax(m, fabs(entry(C, n, i, j)));
    scale += m;
  }
  if (!(fabsl((long double)obj - e) <= 1e-12L * fmaxl(scale, DBL_MIN)))
    fail_msg("n=%d: obj %.17g but the entries of perm sum to %.17g", n, obj, ed);
  return obj;
}

/* brute force over all permutations (n <= 8) */
static void bf_rec(const double *C, int n, int i, int *p, char *used, long double acc,
                   long double *best) {
  if (i == n) {
    if (acc > *best) *best = acc;
    return;
  }
  for (int j = 0; j < n; j++) {
    if (used[j]) continue;
    used[j] = 1;
    p[i] = j;
    bf_rec(C, n, i + 1, p, used, acc + entry(C, n, i, j), best);
    used[j] = 0;
  }
}

static double brute_force(const double *C, int n) {
  int p[8];
  char used[8] = {0};
  long double best = -INFINITY;
  bf_rec(C, n, 0, p, used, 0, &best);
  return (double)best;
}

/* ---------------------------------------------------------------- tests */

static void test_brute_force(void **s) {
  (void)s;
  double C[64];
  int perm[8];
  int count = 0;
  /* MC_LAP_FUZZ=k multiplies the number of matrices (for soak runs) */
  const int mult = atoi(tu_env("MC_LAP_FUZZ", "1")) > 0 ? atoi(tu_env("MC_LAP_FUZZ", "1")) : 1;
  for (int n = 1; n <= 8; n++) {
    const int reps = mult * (n <= 5 ? 40 : n <= 7 ? 12 : 4);
    for (int k = 0; k < K_COUNT; k++)
      for (int rep = 0; rep < reps; rep++) {
        gen(C, n, (kind)k, (uint64_t)rep);
        const double obj = solve(C, n, perm);
        const double best = brute_force(C, n);
        const double tol = 1e-9 * fmax(magnitude(C, n), DBL_MIN);
        if (!(fabs(obj - best) <= tol))
          fail_msg("%s n=%d rep=%d: obj %.17g, brute force %.17g", kind_name[k], n, rep, obj,
                   best);
        count++;
      }
  }
  print_message("brute force: %d matrices agree\n", count);
}

typedef struct {
  kind k;
  int n;
} ref_case;

static void test_scipy(void **s) {
  (void)s;
  if (tu_sh("/usr/bin/python3 -c 'import scipy.optimize' 2>/dev/null") != 0) {
    print_message("SKIPPED: /usr/bin/python3 cannot import scipy\n");
    skip();
  }
  const ref_case cases[] = {
      {K_POSITIVE, 10},  {K_POSITIVE, 100}, {K_POSITIVE, 500}, {K_POSITIVE, 1000},
      {K_UNIFORM, 300},  {K_INT4, 10},      {K_INT4, 100},     {K_INT4, 500},
      {K_INT4, 1000},    {K_INTSKEW, 200}, {K_INTSKEW, 1000}, {K_NEGINT, 400},   {K_CONST, 1000},   {K_CONSTROW, 100},
      {K_CONSTROW, 1000}, {K_CONSTCOL, 500}, {K_RANK1, 100},   {K_RANK1, 1000},
      {K_RANK1INT, 500}, {K_SPARSE, 1000},  {K_BINARY, 500},   {K_BLOCK, 1000},
      {K_DUPROWS, 500},  {K_DIST, 500},     {K_NAN, 200},      {K_OFFSET, 300},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  char dir[] = "/tmp/mc_test_lap_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char in[sizeof dir + 16], out[sizeof dir + 16];
  snprintf(in, sizeof in, "%s/in.bin", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);

  FILE *f = fopen(in, "wb");
  assert_non_null(f);
  for (int c = 0; c < ncases; c++) {
    const int n = cases[c].n;
    double *C = mc_malloc((size_t)n * n * sizeof(double));
    gen(C, n, cases[c].k, 42);
    const int64_t n64 = n;
    assert_int_equal(fwrite(&n64, sizeof n64, 1, f), 1);
    assert_int_equal(fwrite(C, sizeof(double), (size_t)n * n, f), (size_t)n * n);
    free(C);
  }
  assert_int_equal(fclose(f), 0);

  /* ctest sets MC_SOURCE_DIR; run by hand, fall back to this file's dir */
  char script[4096];
  const char *src = getenv("MC_SOURCE_DIR");
  if (src) {
    snprintf(script, sizeof script, "%s/tests/lap_ref.py", src);
  } else {
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0),
             "lap_ref.py");
  }
  int rc = tu_sh("/usr/bin/python3 '%s' '%s' '%s'", script, in, out);
  unlink(in);
  if (rc != 0) {
    rmdir(dir);
    fail_msg("tests/lap_ref.py failed with status %d", rc);
  }
  /* read every reference value and clean up before comparing, so that a
   * failing comparison leaves no temporary files behind */
  double ref[sizeof cases / sizeof cases[0]];
  int nread = 0;
  f = fopen(out, "r");
  if (f) {
    while (nread < ncases && fscanf(f, "%lg", &ref[nread]) == 1) nread++;
    fclose(f);
  }
  unlink(out);
  rmdir(dir);
  if (nread != ncases) fail_msg("lap_ref.py gave %d of %d values", nread, ncases);
  for (int c = 0; c < ncases; c++) {
    const int n = cases[c].n;
    double *C = mc_malloc((size_t)n * n * sizeof(double));
    int *perm = mc_malloc((size_t)n * sizeof(int));
    gen(C, n, cases[c].k, 42);
    const double obj = solve(C, n, perm);
    const double tol = 1e-9 * fmax(fabs(ref[c]), 1.0);
    if (!(fabs(obj - ref[c]) <= tol))
      fail_msg("%s n=%d: obj %.17g, scipy %.17g", kind_name[cases[c].k], n, obj, ref[c]);
    print_message("scipy %-8s n=%-4d obj %.17g (scipy %.17g)\n", kind_name[cases[c].k], n, obj,
                  ref[c]);
    free(C);
    free(perm);
  }
}

static void test_nan_inf(void **s) {
  (void)s;
  int perm[8];
  double obj = -1;
  /* n = 0 and 1 */
  assert_int_equal(mc_lap_max(NULL, 0, NULL, &obj), MC_OK);
  assert_true(obj == 0);
  double one = 3.5;
  assert_int_equal(mc_lap_max(&one, 1, perm, &obj), MC_OK);
  assert_int_equal(perm[0], 0);
  assert_true(obj == 3.5);
  one = NAN;
  assert_int_equal(mc_lap_max(&one, 1, perm, &obj), MC_OK);
  assert_true(obj == 0);
  one = -INFINITY;
  assert_int_equal(mc_lap_max(&one, 1, perm, &obj), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "matrix entry (0,0) is infinite"));
  assert_int_equal(mc_lap_max(&one, 1, perm, NULL), MC_EARG);

  /* bad arguments */
  assert_int_equal(mc_lap_max(NULL, -1, perm, &obj), MC_EARG);
  assert_int_equal(mc_lap_max(NULL, 3, perm, &obj), MC_EARG);
  double C[64];
  gen(C, 5, K_UNIFORM, 1);
  assert_int_equal(mc_lap_max(C, 5, NULL, &obj), MC_EARG);

  /* all NaN: every permutation scores 0 */
  for (int k = 0; k < 25; k++) C[k] = NAN;
  assert_true(solve(C, 5, perm) == 0);

  /* NaN counts as 0, so it beats negative entries: with -5 everywhere and
   * NaN on the anti-diagonal the anti-diagonal is the unique optimum */
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++) C[i * 6 + j] = i + j == 5 ? NAN : -5;
  assert_true(solve(C, 6, perm) == 0);
  for (int i = 0; i < 6; i++) assert_int_equal(perm[i], 5 - i);
  /* ... and loses to positive ones */
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++) C[i * 6 + j] = i == j ? NAN : (i + 1) % 6 == j ? 1 : 0.5;
  assert_true(solve(C, 6, perm) == 6);
  for (int i = 0; i < 6; i++) assert_int_equal(perm[i], (i + 1) % 6);

  /* a matrix with NaNs gives the same objective as with zeros there */
  double Z[64];
  int perm2[8];
  gen(C, 8, K_NAN, 9);
  for (int k = 0; k < 64; k++) Z[k] = isnan(C[k]) ? 0 : C[k];
  assert_true(fabs(solve(C, 8, perm) - solve(Z, 8, perm2)) <= 1e-12);

  /* +-inf anywhere is rejected with the position */
  gen(C, 5, K_UNIFORM, 2);
  C[2 * 5 + 3] = INFINITY;
  obj = 7;
  assert_int_equal(mc_lap_max(C, 5, perm, &obj), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "matrix entry (2,3) is infinite"));
  gen(C, 5, K_NAN, 3);
  C[4] = -INFINITY;
  assert_int_equal(mc_lap_max(C, 5, perm, &obj), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "matrix entry (0,4) is infinite"));
  C[4] = 0;
  C[24] = INFINITY;
  assert_int_equal(mc_lap_max(C, 5, perm, &obj), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "matrix entry (4,4) is infinite"));
}

/* entries close to DBL_MAX: differences overflow unless the solver
 * rescales; the diagonal (small, or one huge positive entry) is the
 * unique optimum, every other permutation collects huge negative entries */
static void test_extreme(void **s) {
  (void)s;
  const int sizes[] = {2, 3, 8, 50};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
    for (int variant = 0; variant < 2; variant++) {
      const int n = sizes[t];
      double *C = mc_malloc((size_t)n * n * sizeof(double));
      int *perm = mc_malloc((size_t)n * sizeof(int));
      mc_rng r;
      mc_rng_seed(&r, 99 + (uint64_t)n);
      long double expect = 0;
      for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
          double c = i == j ? mc_rng_uniform(&r) : -DBL_MAX * (0.5 + 0.5 * mc_rng_uniform(&r));
          if (variant && i == j && i == n / 2) c = 0.9 * DBL_MAX;
          C[(size_t)i * n + j] = c;
          if (i == j) expect += c;
        }
      const double obj = solve(C, n, perm);
      for (int i = 0; i < n; i++) assert_int_equal(perm[i], i);
      assert_true(fabs(obj - (double)expect) <= 1e-12 * fabs((double)expect) + 1e-12 * n);
      free(C);
      free(perm);
    }
  /* random signs at full scale, n <= 7, against brute force on a copy
   * scaled by 2^-16 (exact); an optimum beyond DBL_MAX must give +inf */
  double C[64], D[64];
  int perm[8];
  int finite = 0;
  for (int n = 2; n <= 7; n++)
    for (int rep = 0; rep < 40; rep++) {
      mc_rng r;
      mc_rng_seed(&r, 500 + (uint64_t)(rep * 8 + n));
      const double scale = rep % 2 ? DBL_MAX : DBL_MAX / n;
      for (int k = 0; k < n * n; k++) {
        C[k] = scale * unif(&r);
        D[k] = ldexp(C[k], -16);
      }
      const double obj = solve(C, n, perm);
      const double best = ldexp(brute_force(D, n), 16);
      if (isinf(best)) {
        assert_true(obj == INFINITY);
      } else {
        finite++;
        if (!(fabs(obj - best) <= 1e-9 * ldexp(magnitude(D, n), 16)))
          fail_msg("n=%d rep=%d: obj %.17g, brute force %.17g", n, rep, obj, best);
      }
    }
  assert_true(finite > 100);
}

/* objective invariances on mid-size matrices (no reference needed) */
static void test_invariances(void **s) {
  (void)s;
  const int n = 300;
  const size_t nn = (size_t)n * n;
  double *C = mc_malloc(nn * sizeof(double)), *D = mc_malloc(nn * sizeof(double));
  int *perm = mc_malloc((size_t)n * sizeof(int)), *perm2 = mc_malloc((size_t)n * sizeof(int));
  int64_t *p = mc_malloc((size_t)n * sizeof(int64_t)), *q = mc_malloc((size_t)n * sizeof(int64_t));
  double *a = mc_malloc((size_t)n * sizeof(double)), *b = mc_malloc((size_t)n * sizeof(double));
  const kind kinds[] = {K_UNIFORM, K_INT4, K_RANK1, K_BINARY, K_NAN};
  mc_rng r;
  mc_rng_seed(&r, 77);
  for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
    gen(C, n, kinds[t], 5);
    const double base = solve(C, n, perm);
    const double tol = 1e-9 * fmax(magnitude(C, n), 1);

    /* determinism */
    assert_true(solve(C, n, perm2) == base);
    assert_memory_equal(perm, perm2, (size_t)n * sizeof(int));

    /* permuted rows and columns */
    for (int i = 0; i < n; i++) p[i] = q[i] = i;
    mc_rng_shuffle(&r, p, (size_t)n);
    mc_rng_shuffle(&r, q, (size_t)n);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) D[(size_t)i * n + j] = C[(size_t)p[i] * n + q[j]];
    assert_true(fabs(solve(D, n, perm2) - base) <= tol);

    /* transposed */
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) D[(size_t)i * n + j] = C[(size_t)j * n + i];
    assert_true(fabs(solve(D, n, perm2) - base) <= tol);

    /* row and column constants shift the objective by their sums */
    long double shift = 0;
    for (int i = 0; i < n; i++) {
      a[i] = 4 * unif(&r);
      b[i] = 4 * unif(&r);
      shift += (long double)a[i] + b[i];
    }
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) D[(size_t)i * n + j] = entry(C, n, i, j) + a[i] + b[j];
    const double shifted = solve(D, n, perm2);
    if (!(fabs(shifted - (double)(base + shift)) <= 1e-9 * fmax(magnitude(D, n), 1)))
      fail_msg("%s: shifted objective %.17g, expected %.17g", kind_name[kinds[t]], shifted,
               (double)(base + shift));

    /* scaling by 2^1000 is exact: same permutation (internally rescaled) */
    for (size_t k = 0; k < nn; k++) D[k] = ldexp(C[k], 1000);
    const double big = solve(D, n, perm2);
    assert_memory_equal(perm, perm2, (size_t)n * sizeof(int));
    assert_true(fabs(big - ldexp(base, 1000)) <= 1e-12 * ldexp(fmax(magnitude(C, n), 1), 1000));
  }
  free(C);
  free(D);
  free(perm);
  free(perm2);
  free(p);
  free(q);
  free(a);
  free(b);
}

/* a planted permutation worth more than any noise is the unique optimum */
static void test_planted(void **s) {
  (void)s;
  const int sizes[] = {2, 17, 256, 1000};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    const int n = sizes[t];
    double *C = mc_malloc((size_t)n * n * sizeof(double));
    int *perm = mc_malloc((size_t)n * sizeof(int));
    int64_t *sigma = mc_malloc((size_t)n * sizeof(int64_t));
    mc_rng r;
    mc_rng_seed(&r, 1234 + (uint64_t)n);
    for (int i = 0; i < n; i++) sigma[i] = i;
    mc_rng_shuffle(&r, sigma, (size_t)n);
    for (size_t k = 0; k < (size_t)n * n; k++) C[k] = mc_rng_uniform(&r);
    for (int i = 0; i < n; i++) C[(size_t)i * n + sigma[i]] += 2;
    solve(C, n, perm);
    for (int i = 0; i < n; i++) assert_int_equal(perm[i], sigma[i]);
    free(C);
    free(perm);
    free(sigma);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_brute_force),
      cmocka_unit_test(test_nan_inf),
      cmocka_unit_test(test_extreme),
      cmocka_unit_test(test_invariances),
      cmocka_unit_test(test_planted),
      cmocka_unit_test(test_scipy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
