/* Graph, layout and permutation-group tests: parameter counts, group
 * structure, spec-parser errors, and the invariant that permuting every
 * group at random leaves the logits unchanged. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_counts(void **s) {
  (void)s;
  /* counts computed by hand from the definitions (and checked against
   * PyTorch in test_torch_ref) */
  mc_model *m = tu_model("tinyten", 1, 28, 28, 10);
  assert_int_equal(m->n_theta, 86490 - 2 * 320 + 2 * 320); /* see SPEC 6 */
  assert_int_equal(m->n_groups, 8);
  mc_model_free(m);
  m = tu_model("resnet20", 3, 32, 32, 10);
  assert_int_equal(m->n_theta, 272474);
  assert_int_equal(m->n_groups, 12); /* 3 streams + 9 block interiors */
  mc_model_free(m);
  m = tu_model("mlp", 1, 28, 28, 10);
  assert_int_equal(m->n_groups, 2);
  mc_model_free(m);
}

static void test_resnet_streams(void **s) {
  (void)s;
  mc_model *m = tu_model("resnet20", 3, 32, 32, 10);
  /* the stem output lives in stage 1's stream with every stage-1 block */
  int stem = -1, l13 = -1, l20 = -1, sc = -1;
  for (int i = 0; i < m->n_nodes; i++) {
    if (!strcmp(m->nodes[i].name, "stem")) stem = i;
    if (!strcmp(m->nodes[i].name, "layer1.2.out")) l13 = i;
    if (!strcmp(m->nodes[i].name, "layer2.0.out")) l20 = i;
    if (!strcmp(m->nodes[i].name, "layer2.0.shortcut.0")) sc = i;
  }
  assert_true(stem > 0 && l13 > 0 && l20 > 0 && sc > 0);
  assert_int_equal(m->nodes[stem].layout.seg[0].group, m->nodes[l13].layout.seg[0].group);
  assert_int_not_equal(m->nodes[stem].layout.seg[0].group, m->nodes[l20].layout.seg[0].group);
  assert_int_equal(m->nodes[sc].layout.seg[0].group, m->nodes[l20].layout.seg[0].group);
  mc_model_free(m);
}

static void test_parser_errors(void **s) {
  (void)s;
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m;
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nconv out=4\n", &p), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "k=N"));
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nfoo\n", &p), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "t:2"));
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nlinear out=10\n", &p), MC_EFORMAT);
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nflatten\nlinear out=7\n", &p), MC_ESHAPE);
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nflatten from=nope\n", &p), MC_EFORMAT);
  assert_int_equal(mc_model_from_spec(&m, "t", "input\nflatten\nfc: linear out=classes\n", &p), MC_OK);
  assert_int_equal(m->n_groups, 0);
  mc_model_free(m);
}

static int **random_perms(const mc_model *m, uint64_t seed) {
  mc_rng r;
  mc_rng_seed(&r, seed);
  int **perm = mc_calloc((size_t)m->n_groups + 1, sizeof(int *));
  for (int g = 0; g < m->n_groups; g++) {
    int64_t n = m->groups[g].size;
    int64_t *tmp = mc_malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) tmp[i] = i;
    mc_rng_shuffle(&r, tmp, (size_t)n);
    perm[g] = mc_malloc(sizeof(int) * (size_t)n);
    for (int64_t i = 0; i < n; i++) perm[g][i] = (int)tmp[i];
    free(tmp);
  }
  return perm;
}

static void check_perm_invariance(const char *arch, int64_t c, int64_t h, int64_t w, mc_backend be) {
  mc_model *m = tu_model(arch, c, h, w, 10);
  float *theta, *state;
  tu_random_params(m, 7, &theta, &state);
  float *t2 = mc_malloc(sizeof(float) * m->n_theta), *s2 = mc_malloc(sizeof(float) * (m->n_state + 1));
  int **perm = random_perms(m, 11);
  mc_model_permute(m, perm, theta, state, t2, s2);
  const int64_t n = 4;
  float *x = mc_malloc(sizeof(float) * (size_t)(n * c * h * w));
  tu_random_input(x, (size_t)(n * c * h * w), 3);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, n, be), MC_OK);
  float *l1 = mc_malloc(sizeof(float) * (size_t)(n * 10));
  memcpy(l1, tu_forward(e, theta, state, x, n, MC_MODE_EVAL), sizeof(float) * (size_t)(n * 10));
  const float *l2 = tu_forward(e, t2, s2, x, n, MC_MODE_EVAL);
  double err = tu_max_rel(l2, l1, (size_t)(n * 10), 1e-3);
  printf("  %-10s permuted logits max rel err %.2e (%d groups)\n", arch, err, m->n_groups);
  assert_true(err < 1e-5);
  /* and the permutation really moved something */
  double moved = tu_max_rel(t2, theta, m->n_theta, 1e-3);
  assert_true(moved > 1e-3);
  for (int g = 0; g < m->n_groups; g++) free(perm[g]);
  free(perm);
  mc_exec_free(e);
  free(l1); free(x); free(t2); free(s2); free(theta); free(state);
  mc_model_free(m);
}

static void test_perm_invariance(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "branchnet", "vgg16-bn"};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
    check_perm_invariance(archs[i], 1, 28, 28, MC_BACKEND_REF);
  check_perm_invariance("resnet20", 3, 32, 32, MC_BACKEND_REF);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts),
      cmocka_unit_test(test_resnet_streams),
      cmocka_unit_test(test_parser_errors),
      cmocka_unit_test(test_perm_invariance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
