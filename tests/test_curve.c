/* Curve tests: exact endpoints for every kind, coefficient identities, and
 * a finite-difference check of the curve objective's gradient w.r.t. the
 * bends (the chain rule through theta(t), BN in train mode). */
#include "testutil.h"

#include "curve/curve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_endpoints_exact(void **s) {
  (void)s;
  const size_t n = 1000;
  float *a = mc_malloc(sizeof(float) * n), *b = mc_malloc(sizeof(float) * n), *o = mc_malloc(sizeof(float) * n);
  tu_random_input(a, n, 1);
  tu_random_input(b, n, 2);
  for (size_t i = 0; i < n; i++) { a[i] = a[i] * 7 - 3; b[i] = b[i] * 5 - 2; }
  mc_curve_kind kinds[3] = {MC_CURVE_LINEAR, MC_CURVE_BEZIER, MC_CURVE_CHAIN};
  for (int k = 0; k < 3; k++)
    for (int nb = 1; nb <= 3; nb++) {
      mc_curve c = {kinds[k], k == 0 ? 0 : nb, n, a, b, NULL};
      assert_int_equal(mc_curve_init_bends(&c), MC_OK);
      for (int j = 0; j < c.n_bends; j++) /* bends off the line */
        for (size_t i = 0; i < n; i++) c.bends[j][i] += (float)(j + 1) * 0.37f;
      mc_curve_point(&c, 0.0, o);
      assert_memory_equal(o, a, sizeof(float) * n);
      mc_curve_point(&c, 1.0, o);
      assert_memory_equal(o, b, sizeof(float) * n);
      /* coefficients sum to one everywhere */
      for (int q = 0; q <= 20; q++) {
        double wa, wb, w[8], sum;
        mc_curve_coeffs(&c, q / 20.0, &wa, &wb, w);
        sum = wa + wb;
        for (int j = 0; j < c.n_bends; j++) sum += w[j];
        assert_true(fabs(sum - 1) < 1e-12);
      }
      mc_curve_free_bends(&c);
    }
  /* quadratic Bezier: theta(t) = (1-t)^2 a + 2t(1-t) c + t^2 b */
  mc_curve c = {MC_CURVE_BEZIER, 1, n, a, b, NULL};
  double wa, wb, w[3];
  mc_curve_coeffs(&c, 0.3, &wa, &wb, w);
  assert_true(fabs(wa - 0.49) < 1e-15 && fabs(wb - 0.09) < 1e-15 && fabs(w[0] - 0.42) < 1e-15);
  /* chain with 3 bends passes through bend 2 at t = 1/2 */
  c.kind = MC_CURVE_CHAIN;
  c.n_bends = 3;
  mc_curve_coeffs(&c, 0.5, &wa, &wb, w);
  assert_true(wa == 0 && wb == 0 && w[0] == 0 && w[1] == 1 && w[2] == 0);
  free(a); free(b); free(o);
}

/* objective at fixed t: CE(f(x; theta(t))) + wd/2 ||theta(t)||^2 */
static double objective(mc_exec *e, const mc_model *m, const mc_curve *c, double t, const float *x, const int32_t *y,
                        int64_t n, double wd, float *theta, float *state) {
  mc_curve_point(c, t, theta);
  const float *logits = tu_forward(e, theta, state, x, n, MC_MODE_TRAIN);
  double l = mc_softmax_xent(logits, y, n, m->classes, NULL, 1.f, NULL);
  double sq = 0;
  for (size_t i = 0; i < m->n_theta; i++) sq += (double)theta[i] * theta[i];
  return l + 0.5 * wd * sq;
}

static void check_curve_grad(const char *arch, int bn, mc_curve_kind kind, int nb, double t) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_h = p.in_w = 20;
  p.widths = "24,16";
  p.bn = bn;
  mc_model *m;
  assert_int_equal(mc_model_create(&m, arch, &p), MC_OK);
  float *ta, *sa, *tb, *sb;
  tu_random_params(m, 1, &ta, &sa);
  tu_random_params(m, 2, &tb, &sb);
  mc_curve c = {kind, nb, m->n_theta, ta, tb, NULL};
  assert_int_equal(mc_curve_init_bends(&c), MC_OK);
  mc_rng r;
  mc_rng_seed(&r, 4);
  for (int k = 0; k < nb; k++)
    for (size_t i = 0; i < m->n_theta; i++) c.bends[k][i] += 0.05f * mc_rng_normal(&r);
  const int64_t n = 6;
  float *x = mc_malloc(sizeof(float) * (size_t)(n * 400));
  tu_random_input(x, (size_t)(n * 400), 7);
  int32_t y[6] = {0, 3, 5, 7, 9, 1};
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, n, MC_BACKEND_REF), MC_OK);
  const double wd = 5e-3;
  float *theta = mc_malloc(sizeof(float) * m->n_theta), *grad = mc_calloc(m->n_theta, sizeof(float));
  float *state = mc_malloc(sizeof(float) * (m->n_state + 1));
  float *dl = mc_malloc(sizeof(float) * (size_t)(n * 10));
  /* analytic */
  mc_curve_point(&c, t, theta);
  const float *logits = tu_forward(e, theta, state, x, n, MC_MODE_TRAIN);
  mc_softmax_xent(logits, y, n, 10, dl, 1.f, NULL);
  tu_backward(e, theta, dl, grad, NULL);
  for (size_t i = 0; i < m->n_theta; i++) grad[i] += (float)wd * theta[i];
  float **gb = mc_calloc((size_t)nb, sizeof(float *));
  for (int k = 0; k < nb; k++) gb[k] = mc_calloc(m->n_theta, sizeof(float));
  mc_curve_adjoint(&c, t, grad, gb);
  /* finite differences on random coordinates of every bend */
  double worst = 0;
  for (int k = 0; k < nb; k++)
    for (int q = 0; q < 40; q++) {
      size_t i = (size_t)mc_rng_below(&r, m->n_theta);
      float keep = c.bends[k][i];
      const float h = 3e-3f;
      c.bends[k][i] = keep + h;
      double lp = objective(e, m, &c, t, x, y, n, wd, theta, state);
      c.bends[k][i] = keep - h;
      double lm = objective(e, m, &c, t, x, y, n, wd, theta, state);
      c.bends[k][i] = keep;
      double fd = (lp - lm) / (2.0 * (double)h), an = gb[k][i];
      double err = fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + 1e-3);
      if (err > worst) worst = err;
    }
  printf("  %-8s bn %d %-6s bends %d t %.2f: max rel err of d(objective)/d(bend) %.2e\n", arch, bn, mc_curve_kind_name(kind), nb, t,
         worst);
  assert_true(worst < 2e-2);
  for (int k = 0; k < nb; k++) free(gb[k]);
  free(gb);
  mc_curve_free_bends(&c);
  mc_exec_free(e);
  free(x); free(theta); free(grad); free(state); free(dl); free(ta); free(sa); free(tb); free(sb);
  mc_model_free(m);
}

static void test_curve_gradient(void **s) {
  (void)s;
  /* small smooth-ish models: whole-model gradients of every architecture
   * are checked in test_gradcheck; here the chain rule through theta(t) */
  check_curve_grad("mlp", 0, MC_CURVE_BEZIER, 1, 0.3);
  check_curve_grad("mlp", 1, MC_CURVE_BEZIER, 1, 0.7);
  check_curve_grad("mlp", 1, MC_CURVE_BEZIER, 2, 0.6);
  check_curve_grad("mlp", 1, MC_CURVE_CHAIN, 3, 0.45);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_endpoints_exact),
      cmocka_unit_test(test_curve_gradient),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
