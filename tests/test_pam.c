/* PAM's maths: the affine projection and clamping onto the Birkhoff
 * polytope, the greedy Birkhoff-von Neumann decomposition, the action
 * P(theta_B) of dense matrices (a hard permutation reproduces
 * mc_model_permute exactly), its adjoint and the whole-model gradient
 * dL/dP_g by finite differences (residual streams, concat, flatten, a conv
 * whose two axes share a group).  PAM runs on Fashion-MNIST are in
 * tests/test_pam_run.c. */
#include "testutil.h"

#include "curve/pam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a residual conv from the stream to itself (both axes one group), a
 * concat of a branch with the stream, flatten into a linear layer */
static const char *CUSTOM = "input\nnormalize\n"
                            "stem: conv out=6 k=3 p=1 bias=1\nbn0: bn\nr0: relu\n"
                            "res.conv: conv out=6 k=3 p=1 bias=1\nres.bn: bn\nsum: add from=res.bn,r0\nr1: relu\n"
                            "a.conv: conv out=4 k=1 from=r1\na.bn: bn\na.relu: relu\n"
                            "cat: concat from=a.relu,r1\npool: maxpool k=2\nflatten\nfc: linear out=classes\n";

static mc_model *make_model(const char *arch, int64_t hw, double width) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_h = p.in_w = hw;
  p.width = width;
  p.widths = "12,10";
  p.bn = 1;
  mc_model *m = NULL;
  mc_status st = strcmp(arch, "custom") ? mc_model_create(&m, arch, &p) : mc_model_from_spec(&m, "custom", CUSTOM, &p);
  if (st) fail_msg("model %s: %s", arch, mc_errmsg());
  return m;
}

static void sums_err(const double *P, int64_t n, double *err, double *minv) {
  *err = 0;
  *minv = INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double r = 0, c = 0;
    for (int64_t j = 0; j < n; j++) {
      r += P[i * n + j];
      c += P[j * n + i];
      *minv = fmin(*minv, P[i * n + j]);
    }
    *err = fmax(*err, fmax(fabs(r - 1), fabs(c - 1)));
  }
}

static void test_projection(void **s) {
  (void)s;
  mc_rng r;
  mc_rng_seed(&r, 11);
  const int64_t sizes[] = {1, 2, 5, 16, 64};
  double worst_aff = 0, worst_sum = 0, worst_neg = 0, worst_frac = 0;
  for (int k = 0; k < 5; k++)
    for (int rep = 0; rep < 5; rep++) {
      const int64_t n = sizes[k];
      double *P = mc_malloc(sizeof(double) * (size_t)(n * n)), *Q = mc_malloc(sizeof(double) * (size_t)(n * n));
      for (int64_t i = 0; i < n * n; i++) P[i] = 3 * mc_rng_uniform(&r) - 1;
      memcpy(Q, P, sizeof(double) * (size_t)(n * n));
      double err, mn, mn1;
      assert_int_equal(mc_ds_affine_project(P, n), MC_OK);
      sums_err(P, n, &err, &mn);
      worst_aff = fmax(worst_aff, err);
      assert_true(err < 1e-6);
      /* orthogonal: the correction is orthogonal to any X with zero row and
       * column sums (here X = E_ab - E_ac - E_db + E_dc) */
      if (n >= 2) {
        double dot = (P[0] - Q[0]) - (P[1] - Q[1]) - (P[n] - Q[n]) + (P[n + 1] - Q[n + 1]);
        assert_true(fabs(dot) < 1e-9);
      }
      /* idempotent */
      memcpy(Q, P, sizeof(double) * (size_t)(n * n));
      assert_int_equal(mc_ds_affine_project(Q, n), MC_OK);
      for (int64_t i = 0; i < n * n; i++) assert_true(fabs(P[i] - Q[i]) < 1e-12);
      /* clamp + project: one round, then 20 */
      for (int64_t i = 0; i < n * n; i++) Q[i] = 3 * mc_rng_uniform(&r) - 1;
      memcpy(P, Q, sizeof(double) * (size_t)(n * n));
      assert_int_equal(mc_ds_project(P, n, 1), MC_OK);
      sums_err(P, n, &err, &mn1);
      assert_int_equal(mc_ds_project(Q, n, 20), MC_OK);
      sums_err(Q, n, &err, &mn);
      worst_sum = fmax(worst_sum, err);
      worst_neg = fmin(worst_neg, mn);
      assert_true(err < 1e-3);
      /* towards the polytope: the negative mass left after 20 rounds is a
       * small fraction of what one round leaves */
      double neg1 = 0, neg20 = 0;
      for (int64_t i = 0; i < n * n; i++) {
        neg1 += P[i] < 0 ? -P[i] : 0;
        neg20 += Q[i] < 0 ? -Q[i] : 0;
      }
      worst_frac = fmax(worst_frac, neg1 > 0 ? neg20 / neg1 : 0);
      assert_true(neg20 <= 0.05 * neg1 + 1e-12);
      free(P);
      free(Q);
    }
  printf("  affine projection: max |row/col sum - 1| %.1e; after 20 clamp+project rounds %.1e, most negative entry %.1e, "
         "negative mass at most %.1f%% of one round's\n", worst_aff, worst_sum, worst_neg, 100 * worst_frac);
}

static void test_bvn(void **s) {
  (void)s;
  mc_rng r;
  mc_rng_seed(&r, 12);
  const int64_t sizes[] = {1, 3, 8, 20};
  for (int k = 0; k < 4; k++)
    for (int dense = 0; dense < 2; dense++) {
      const int64_t n = sizes[k];
      double *D = mc_calloc((size_t)(n * n), sizeof(double)), *R = mc_calloc((size_t)(n * n), sizeof(double));
      int64_t *q = mc_malloc(sizeof(int64_t) * (size_t)n);
      if (!dense) { /* a convex combination of 4 random permutations */
        double w[4] = {0.4, 0.3, 0.2, 0.1};
        for (int t = 0; t < 4; t++) {
          for (int64_t i = 0; i < n; i++) q[i] = i;
          mc_rng_shuffle(&r, q, (size_t)n);
          for (int64_t i = 0; i < n; i++) D[i * n + q[i]] += w[t];
        }
      } else { /* dense: Sinkhorn on a positive random matrix */
        for (int64_t i = 0; i < n * n; i++) D[i] = 0.05 + mc_rng_uniform(&r);
        for (int it = 0; it < 2000; it++)
          for (int side = 0; side < 2; side++)
            for (int64_t i = 0; i < n; i++) {
              double sum = 0;
              for (int64_t j = 0; j < n; j++) sum += side ? D[j * n + i] : D[i * n + j];
              for (int64_t j = 0; j < n; j++) *(side ? &D[j * n + i] : &D[i * n + j]) /= sum;
            }
      }
      const int cap = (int)(n * n + 1);
      int *perms = mc_malloc(sizeof(int) * (size_t)(cap * n)), nt = 0;
      double *coef = mc_malloc(sizeof(double) * (size_t)cap);
      assert_int_equal(mc_bvn_decompose(D, n, 1e-12, cap, perms, coef, &nt), MC_OK);
      double csum = 0;
      for (int t = 0; t < nt; t++) {
        assert_true(coef[t] > 0);
        csum += coef[t];
        char *seen = mc_calloc((size_t)n, 1);
        for (int64_t i = 0; i < n; i++) {
          int j = perms[t * n + i];
          assert_true(j >= 0 && j < n && !seen[j]);
          seen[j] = 1;
          R[i * n + j] += coef[t];
        }
        free(seen);
      }
      assert_true(csum <= 1 + 1e-9);
      double err = 0;
      for (int64_t i = 0; i < n * n; i++) err = fmax(err, fabs(R[i] - D[i]));
      printf("  BvN n %2lld %s: %3d terms, coefficient sum %.12f, max reconstruction error %.1e\n", (long long)n,
             dense ? "dense (Sinkhorn)" : "4 permutations  ", nt, csum, err);
      assert_true(err < 1e-9);
      if (!dense) assert_true(nt <= 4);
      free(D); free(R); free(q); free(perms); free(coef);
    }
}

static const char *const ARCHS[] = {"mlp", "tinyten", "resnet20", "branchnet", "custom"};

static void test_hard_perm_exact(void **s) {
  (void)s;
  mc_rng r;
  mc_rng_seed(&r, 13);
  for (int k = 0; k < 5; k++) {
    mc_model *m = make_model(ARCHS[k], 12, 1);
    float *tb, *sb;
    tu_random_params(m, 20 + (uint64_t)k, &tb, &sb);
    int **perm = tu_perms_alloc(m);
    tu_random_perms(m, &r, perm);
    float *want = mc_malloc(sizeof(float) * m->n_theta), *got = mc_malloc(sizeof(float) * m->n_theta);
    float *so = mc_malloc(sizeof(float) * (m->n_state + 1));
    mc_model_permute(m, perm, tb, sb, want, so);
    float **P;
    mc_pact *A;
    assert_int_equal(mc_pmat_alloc(&P, m, perm), MC_OK);
    assert_int_equal(mc_pact_create(&A, m), MC_OK);
    mc_pact_apply(A, P, tb, got);
    size_t bad = 0;
    for (size_t i = 0; i < m->n_theta; i++) bad += got[i] != want[i];
    printf("  %-9s %2d groups: P(theta_B) with hard P vs mc_model_permute: %zu of %zu entries differ\n", ARCHS[k],
           m->n_groups, bad, m->n_theta);
    assert_int_equal(bad, 0);
    mc_pact_free(A);
    mc_pmat_free(m, P);
    tu_perms_free(m, perm);
    free(want); free(got); free(so); free(tb); free(sb);
    mc_model_free(m);
  }
}

/* f(P) = <G, P(b)> accumulated in double; central differences on single
 * entries of P_g are exact up to rounding (f is at most quadratic in each). */
static double lin_obj(mc_pact *A, float *const *P, const float *b, const float *G, float *out, size_t n) {
  mc_pact_apply(A, P, b, out);
  double f = 0;
  for (size_t i = 0; i < n; i++) f += (double)G[i] * out[i];
  return f;
}

static void test_adjoint(void **s) {
  (void)s;
  mc_rng r;
  mc_rng_seed(&r, 14);
  for (int k = 0; k < 5; k++) {
    mc_model *m = make_model(ARCHS[k], 12, k == 2 ? 0.5 : 1);
    float *tb, *sb;
    tu_random_params(m, 30 + (uint64_t)k, &tb, &sb);
    float *G = mc_malloc(sizeof(float) * m->n_theta), *out = mc_malloc(sizeof(float) * m->n_theta);
    for (size_t i = 0; i < m->n_theta; i++) G[i] = mc_rng_normal(&r);
    float **P, **dP;
    mc_pact *A;
    assert_int_equal(mc_pmat_alloc(&P, m, NULL), MC_OK);
    assert_int_equal(mc_pmat_alloc(&dP, m, NULL), MC_OK);
    tu_random_ds(m, &r, P, 1.0);
    assert_int_equal(mc_pact_create(&A, m), MC_OK);
    for (int g = 0; g < m->n_groups; g++)
      for (int64_t i = 0; i < m->groups[g].size * m->groups[g].size; i++) dP[g][i] = 0.25f; /* accumulates */
    lin_obj(A, P, tb, G, out, m->n_theta);
    mc_pact_adjoint(A, P, tb, G, dP);
    double worst = 0;
    for (int g = 0; g < m->n_groups; g++) {
      const int64_t n2 = m->groups[g].size * m->groups[g].size;
      for (int q = 0; q < 12; q++) {
        const int64_t i = (int64_t)mc_rng_below(&r, (uint64_t)n2);
        const float keep = P[g][i], h = 0.25f;
        P[g][i] = keep + h;
        const double fp = lin_obj(A, P, tb, G, out, m->n_theta);
        P[g][i] = keep - h;
        const double fm = lin_obj(A, P, tb, G, out, m->n_theta);
        P[g][i] = keep;
        const double fd = (fp - fm) / (2.0 * h), an = dP[g][i] - 0.25;
        const double err = fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + 1e-3);
        worst = fmax(worst, err);
      }
    }
    printf("  %-9s adjoint of P(theta_B): max rel err of d<G, P(b)>/dP_g vs central differences %.1e\n", ARCHS[k],
           worst);
    assert_true(worst < 1e-4);
    mc_pact_free(A);
    mc_pmat_free(m, P);
    mc_pmat_free(m, dP);
    free(G); free(out); free(tb); free(sb);
    mc_model_free(m);
  }
}

/* Whole-model dL/dP_g along the curve (BN train mode, reference backend). */
static void check_loss_grad(const char *arch, int64_t hw, double width, double t) {
  mc_model *m = make_model(arch, hw, width);
  float *ta, *sa, *tb, *sb;
  tu_random_params(m, 1, &ta, &sa);
  tu_random_params(m, 2, &tb, &sb);
  mc_rng r;
  mc_rng_seed(&r, 15);
  float *phi = mc_malloc(sizeof(float) * m->n_theta);
  for (size_t i = 0; i < m->n_theta; i++) phi[i] = 0.05f * mc_rng_normal(&r);
  const int64_t n = 6, in = m->in_c * m->in_h * m->in_w;
  float *x = mc_malloc(sizeof(float) * (size_t)(n * in));
  tu_random_input(x, (size_t)(n * in), 7);
  int32_t y[6] = {0, 3, 5, 7, 9, 1};
  mc_pam *p;
  assert_int_equal(mc_pam_create(&p, m, ta, tb, phi, n, MC_BACKEND_REF), MC_OK);
  float **P = mc_pam_matrices(p), **dP;
  assert_int_equal(mc_pmat_alloc(&dP, m, NULL), MC_OK);
  tu_random_ds(m, &r, P, 0.5);
  for (int g = 0; g < m->n_groups; g++) memset(dP[g], 0, sizeof(float) * (size_t)(m->groups[g].size * m->groups[g].size));
  double l0;
  mc_exec_set_seed(mc_pam_exec(p), 77); /* the same dropout mask every time */
  assert_int_equal(mc_pam_loss_grad(p, t, x, y, n, &l0, NULL, dP), MC_OK);
  /* directional derivatives of one group at a time (the whole of P_g
   * moves: a signal well above the float forward's rounding) */
  double worst = 0;
  int checked = 0;
  for (int g = 0; g < m->n_groups; g++) {
    const int64_t n2 = m->groups[g].size * m->groups[g].size;
    float *keep = mc_malloc(sizeof(float) * (size_t)n2), *D = mc_malloc(sizeof(float) * (size_t)n2);
    memcpy(keep, P[g], sizeof(float) * (size_t)n2);
    for (int q = 0; q < 3; q++) {
      /* D = the gradient's direction plus half a random unit direction:
       * large enough a signal, and a wrong gradient cannot pass */
      double gn = 0, rn = 0, an = 0;
      for (int64_t i = 0; i < n2; i++) {
        D[i] = mc_rng_normal(&r);
        gn += (double)dP[g][i] * dP[g][i];
        rn += (double)D[i] * D[i];
      }
      for (int64_t i = 0; i < n2; i++) {
        D[i] = (float)(dP[g][i] / sqrt(gn + 1e-30) + 0.5 * D[i] / sqrt(rn));
        an += (double)dP[g][i] * D[i];
      }
      double err = INFINITY, fd = 0;
      /* steps across ReLU / max-pool kinks bias the difference (the stem
       * stream of resnet20 moves every block): smaller steps until it agrees
       * to 1e-2, down to 6e-5, where float rounding is still ~1e-3 of the
       * signal */
      for (double h = 4e-3; h > 1e-5 && err > 1e-2; h /= 4) {
        double lp, lm;
        for (int64_t i = 0; i < n2; i++) P[g][i] = keep[i] + (float)h * D[i];
        mc_exec_set_seed(mc_pam_exec(p), 77);
        assert_int_equal(mc_pam_loss_grad(p, t, x, y, n, &lp, NULL, NULL), MC_OK);
        for (int64_t i = 0; i < n2; i++) P[g][i] = keep[i] - (float)h * D[i];
        mc_exec_set_seed(mc_pam_exec(p), 77);
        assert_int_equal(mc_pam_loss_grad(p, t, x, y, n, &lm, NULL, NULL), MC_OK);
        memcpy(P[g], keep, sizeof(float) * (size_t)n2);
        fd = (lp - lm) / (2 * h);
        err = fmin(err, fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + 1e-4));
      }
      if (err > 2e-2) printf("    group %d direction %d: fd %.6g analytic %.6g\n", g, q, fd, an);
      worst = fmax(worst, err);
      checked++;
    }
    free(keep);
    free(D);
  }
  printf("  %-9s t %.2f: %d directions in %d groups, max rel err of <dL/dP_g, D> vs central differences %.2e\n", arch, t,
         checked, m->n_groups, worst);
  assert_true(worst < 2e-2);
  mc_pmat_free(m, dP);
  mc_pam_free(p);
  free(phi); free(x); free(ta); free(sa); free(tb); free(sb);
  mc_model_free(m);
}

static void test_loss_grad(void **s) {
  (void)s;
  mc_set_threads(1);
  check_loss_grad("mlp", 8, 1, 0.4);
  check_loss_grad("branchnet", 8, 1, 0.3);
  check_loss_grad("resnet20", 8, 0.5, 0.6);
  check_loss_grad("custom", 8, 1, 0.7);
  mc_set_threads(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_projection),      cmocka_unit_test(test_bvn),
      cmocka_unit_test(test_hard_perm_exact), cmocka_unit_test(test_adjoint),
      cmocka_unit_test(test_loss_grad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
