/* Alignment tests: a model with every group randomly permuted aligns back
 * to exactly the original, with both methods, for every zoo architecture;
 * apply refuses a non-permutation; diagnostics are sane. */
#include "testutil.h"

#include "align/align.h"
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Random images in memory (uint8), the way the loaders store them. */
static mc_dataset synth(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  mc_dataset d = {n, c, h, w, 10, NULL, NULL};
  d.images = mc_malloc((size_t)(n * c * h * w));
  d.labels = mc_malloc(sizeof(int32_t) * (size_t)n);
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (int64_t i = 0; i < n * c * h * w; i++) d.images[i] = (uint8_t)mc_rng_below(&r, 256);
  for (int64_t i = 0; i < n; i++) d.labels[i] = (int32_t)mc_rng_below(&r, 10);
  return d;
}

static void shuffle_roundtrip(const char *arch, mc_align_method method) {
  mc_model *m = tu_model(arch, 1, 28, 28, 10);
  float *ta, *sa;
  tu_random_params(m, 5, &ta, &sa);
  /* keep units alive: positive BN shifts, so no unit is dead on every input
   * (a dead unit correlates 0 with everything and has no defined match) */
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    const mc_node *nd = &m->nodes[t->node];
    if (t->role == MC_ROLE_BIAS && nd->kind != MC_NODE_BN && nd->layout.seg[0].group >= 0 && !mc_model_has_bn(m))
      for (size_t j = 0; j < t->numel; j++) ta[t->off + j] += 1.0f; /* no BN: shift hidden units up */
    if (nd->kind == MC_NODE_BN && t->role == MC_ROLE_BIAS)
      for (size_t j = 0; j < t->numel; j++) ta[t->off + j] = 0.2f + 0.5f * fabsf(ta[t->off + j]);
  }
  /* BN statistics of the data, so BN outputs are standardised and, with
   * the positive shifts, no unit is dead */
  mc_dataset ds = synth(200, 1, 28, 28, 3);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, 100, MC_BACKEND_REF), MC_OK);
  assert_int_equal(mc_bn_recompute(e, ta, sa, &ds, 0), MC_OK);
  mc_exec_free(e);
  mc_alignment shuf;
  mc_alignment_init_identity(&shuf, m);
  mc_rng r;
  mc_rng_seed(&r, 99);
  for (int g = 0; g < m->n_groups; g++) {
    int64_t n = m->groups[g].size;
    int64_t *tmp = mc_malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) tmp[i] = i;
    mc_rng_shuffle(&r, tmp, (size_t)n);
    for (int64_t i = 0; i < n; i++) shuf.perm[g][i] = (int)tmp[i];
    free(tmp);
  }
  float *tb = mc_malloc(sizeof(float) * m->n_theta), *sb = mc_malloc(sizeof(float) * (m->n_state + 1));
  mc_model_permute(m, shuf.perm, ta, sa, tb, sb);
  mc_alignment al;
  float *tc = mc_malloc(sizeof(float) * m->n_theta), *sc = mc_malloc(sizeof(float) * (m->n_state + 1));
  mc_status st = mc_align_run(m, method, ta, sa, tb, sb, &ds, 200, 100, 1, MC_BACKEND_REF, &al, tc, sc);
  if (st) fail_msg("%s: %s", arch, mc_errmsg());
  int exact = !memcmp(tc, ta, sizeof(float) * m->n_theta) && !memcmp(sc, sa, sizeof(float) * m->n_state);
  double minafter = 1;
  for (int g = 0; g < m->n_groups; g++) minafter = fmin(minafter, al.corr_after[g]);
  printf("  %-10s %-7s groups %2d  exact %s  min mean matched corr after %.4f\n", arch,
         method == MC_ALIGN_CORR ? "corr" : "weights", m->n_groups, exact ? "yes" : "NO", minafter);
  assert_true(exact);
  /* the statistic of every group can only improve over the identity */
  for (int g = 0; g < m->n_groups; g++) assert_true(al.corr_after[g] >= al.corr_before[g] - 1e-12);
  mc_alignment_free(&al);
  mc_alignment_free(&shuf);
  free(ds.images); free(ds.labels);
  free(ta); free(sa); free(tb); free(sb); free(tc); free(sc);
  mc_model_free(m);
}

static void test_shuffle_corr(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "vgg16-bn", "branchnet"};
  for (size_t i = 0; i < 5; i++) shuffle_roundtrip(archs[i], MC_ALIGN_CORR);
}

static void test_shuffle_weights(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "vgg16-bn", "branchnet"};
  for (size_t i = 0; i < 5; i++) shuffle_roundtrip(archs[i], MC_ALIGN_WEIGHTS);
}

static void test_apply_rejects(void **s) {
  (void)s;
  mc_model *m = tu_model("tinyten", 1, 28, 28, 10);
  float *ta, *sa;
  tu_random_params(m, 5, &ta, &sa);
  mc_alignment al;
  mc_alignment_init_identity(&al, m);
  al.perm[2][0] = 1; /* duplicate index */
  float *tb = mc_malloc(sizeof(float) * m->n_theta), *sb = mc_malloc(sizeof(float) * (m->n_state + 1));
  float x[784];
  tu_random_input(x, 784, 1);
  assert_int_equal(mc_align_apply(m, &al, ta, sa, tb, sb, x, 1, MC_BACKEND_REF), MC_EARG);
  assert_non_null(strstr(mc_errmsg(), "conv3"));
  mc_alignment_free(&al);
  free(ta); free(sa); free(tb); free(sb);
  mc_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shuffle_corr),
      cmocka_unit_test(test_shuffle_weights),
      cmocka_unit_test(test_apply_rejects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
