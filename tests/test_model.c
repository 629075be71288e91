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
  /* GoogLeNet for CIFAR-100 at full width: torchvision 0.14's googlenet
   * (num_classes=100, aux_logits=True) has 10,237,388 parameters, 5,702,404
   * without aux1/aux2 (conv1's stride does not change the count) */
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = 3; p.in_h = p.in_w = 32; p.classes = 100;
  assert_int_equal(mc_model_create(&m, "googlenet", &p), MC_OK);
  assert_int_equal(m->n_theta, 10237388);
  char *live = mc_malloc((size_t)m->n_nodes);
  mc_model_live(m, live, 0);
  size_t n_eval = 0;
  for (int i = 0; i < m->n_tensors; i++)
    if (!m->tensors[i].in_state && live[m->tensors[i].node]) n_eval += m->tensors[i].numel;
  assert_int_equal(n_eval, 5702404);
  free(live);
  /* 3 stem convs, 6 per inception block (9 blocks), 2 per aux head */
  assert_int_equal(m->n_groups, 3 + 9 * 6 + 2 * 2);
  assert_int_equal(m->n_heads, 3);
  /* an inception output is the block-diagonal concat of its 4 branch groups */
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind != MC_NODE_CONCAT) continue;
    assert_int_equal(nd->layout.n, 4);
    for (int q = 0; q < 4; q++) {
      const mc_node *br = &m->nodes[nd->in[q]];
      assert_int_equal(nd->layout.seg[q].group, br->layout.seg[0].group);
      for (int r = 0; r < q; r++) assert_int_not_equal(nd->layout.seg[q].group, nd->layout.seg[r].group);
    }
  }
  /* spatial sizes: 32 -> maxpool2 16 -> maxpool3 8, aux pool 8 -> 4 */
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (!strcmp(nd->name, "maxpool2")) assert_int_equal(nd->H, 16);
    if (!strcmp(nd->name, "maxpool3")) assert_int_equal(nd->H, 8);
    if (!strcmp(nd->name, "aux1.pool") || !strcmp(nd->name, "aux2.pool")) assert_int_equal(nd->H * nd->W, 16);
  }
  mc_model_free(m);
  /* 28x28: 28 -> 14 -> 7, aux pool 7 -> 4 */
  p.in_c = 1; p.in_h = p.in_w = 28; p.classes = 10;
  assert_int_equal(mc_model_create(&m, "googlenet", &p), MC_OK);
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (!strcmp(nd->name, "maxpool3")) assert_int_equal(nd->H, 7);
    if (!strcmp(nd->name, "aux1.pool")) assert_int_equal(nd->H * nd->W, 16);
  }
  mc_model_free(m);
  /* a side that no square pool takes to 4x4 at the aux heads (20 -> 10 -> 5)
   * is refused */
  p.in_h = p.in_w = 20;
  assert_int_not_equal(mc_model_create(&m, "googlenet", &p), MC_OK);
  assert_non_null(strstr(mc_errmsg(), "5x5"));
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
  int **perm = tu_perms_alloc(m);
  tu_random_perms(m, &r, perm);
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
  /* every head, the train-only ones included (their hidden layers are
   * permuted too) */
  for (int k = 1; k < m->n_heads; k++) {
    tu_forward(e, theta, state, x, n, MC_MODE_EVAL_ALL_HEADS);
    memcpy(l1, mc_exec_output(e, k), sizeof(float) * (size_t)(n * 10));
    tu_forward(e, t2, s2, x, n, MC_MODE_EVAL_ALL_HEADS);
    err = fmax(err, tu_max_rel(mc_exec_output(e, k), l1, (size_t)(n * 10), 1e-3));
  }
  printf("  %-10s permuted logits max rel err %.2e (%d groups, %d heads)\n", arch, err, m->n_groups, m->n_heads);
  assert_true(err < 1e-5);
  /* and the permutation really moved something */
  double moved = tu_max_rel(t2, theta, m->n_theta, 1e-3);
  assert_true(moved > 1e-3);
  tu_perms_free(m, perm);
  mc_exec_free(e);
  free(l1); free(x); free(t2); free(s2); free(theta); free(state);
  mc_model_free(m);
}

static void test_perm_invariance(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "branchnet", "vgg16-bn", "googlenet"};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
    check_perm_invariance(archs[i], 1, 28, 28, MC_BACKEND_REF);
  check_perm_invariance("resnet20", 3, 32, 32, MC_BACKEND_REF);
  check_perm_invariance("googlenet", 3, 32, 32, MC_BACKEND_REF);
  check_perm_invariance("googlenet", 3, 32, 32, MC_BACKEND_DNNL);
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
