/* Alignment tests: a model with every group randomly permuted aligns back
 * to exactly the original, with both methods, for every zoo architecture;
 * the correlation statistics match a float64 brute force on both compute
 * paths; apply refuses a non-permutation; diagnostics are sane. */
#include "testutil.h"

#include "align/align.h"
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Node i's output goes straight into a ReLU (no BN between). */
static int feeds_relu(const mc_model *m, int i) {
  for (int j = i + 1; j < m->n_nodes; j++)
    if (m->nodes[j].kind == MC_NODE_RELU && m->nodes[j].in[0] == i) return 1;
  return 0;
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
    if (t->role == MC_ROLE_BIAS && nd->kind != MC_NODE_BN && nd->layout.seg[0].group >= 0 && feeds_relu(m, t->node))
      for (size_t j = 0; j < t->numel; j++) ta[t->off + j] += 1.0f; /* no BN before the ReLU: shift units up */
    if (nd->kind == MC_NODE_BN && t->role == MC_ROLE_BIAS)
      for (size_t j = 0; j < t->numel; j++) ta[t->off + j] = 0.2f + 0.5f * fabsf(ta[t->off + j]);
  }
  /* BN statistics of the data, so BN outputs are standardised and, with
   * the positive shifts, no unit is dead */
  mc_dataset ds = tu_synth_data(200, 1, 28, 28, 3);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, 100, MC_BACKEND_REF), MC_OK);
  assert_int_equal(mc_bn_recompute(e, ta, sa, &ds, 0), MC_OK);
  mc_exec_free(e);
  mc_alignment shuf;
  assert_int_equal(mc_alignment_init_identity(&shuf, m), MC_OK);
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
  mc_status st = mc_align_run(m, method, ta, sa, tb, sb, &ds, 200, 100, 1, MC_BACKEND_REF, NULL, &al, tc, sc);
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
  const char *archs[] = {"tinyten", "resnet20", "mlp", "vgg16-bn", "branchnet", "googlenet"};
  for (size_t i = 0; i < 6; i++) shuffle_roundtrip(archs[i], MC_ALIGN_CORR);
}

static void test_shuffle_weights(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "vgg16-bn", "branchnet", "googlenet"};
  for (size_t i = 0; i < 6; i++) shuffle_roundtrip(archs[i], MC_ALIGN_WEIGHTS);
}

/* The correlation statistics against a float64 brute force: two unrelated
 * random models, 150 images (a partial last slice), every post-ReLU
 * segment of a group summed, Pearson entries read through a random
 * permutation (so off-diagonal entries count), on both compute paths
 * (oneDNN reads its blocked outputs in place, the reference path gathers). */
static void corr_vs_bruteforce(const char *arch, mc_backend be) {
  mc_model *m = tu_model(arch, 1, 28, 28, 10);
  float *ta, *sa, *tb, *sb;
  tu_random_params(m, 11, &ta, &sa);
  tu_random_params(m, 12, &tb, &sb);
  const int64_t n = 150;
  mc_dataset ds = tu_synth_data(n, 1, 28, 28, 4);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, n, MC_BACKEND_REF), MC_OK);
  assert_int_equal(mc_bn_recompute(e, ta, sa, &ds, 0), MC_OK);
  assert_int_equal(mc_bn_recompute(e, tb, sb, &ds, 0), MC_OK);
  mc_alignment al;
  assert_int_equal(mc_alignment_init_identity(&al, m), MC_OK);
  mc_rng r;
  mc_rng_seed(&r, 5);
  for (int g = 0; g < m->n_groups; g++) {
    int64_t c = m->groups[g].size, *tmp = mc_malloc(sizeof(int64_t) * (size_t)c);
    for (int64_t i = 0; i < c; i++) tmp[i] = i;
    mc_rng_shuffle(&r, tmp, (size_t)c);
    for (int64_t i = 0; i < c; i++) al.perm[g][i] = (int)tmp[i];
    free(tmp);
  }
  assert_int_equal(mc_align_diagnostics(m, ta, sa, tb, sb, &ds, n, 64, be, &al), MC_OK);
  /* brute force: plain activations of all n images, two-pass float64 */
  float *x = mc_malloc(sizeof(float) * (size_t)(n * 784));
  int32_t *y = mc_malloc(sizeof(int32_t) * (size_t)n);
  int64_t *idx = mc_malloc(sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  mc_dataset_batch(&ds, idx, n, NULL, NULL, x, y);
  double *before = mc_calloc((size_t)m->n_groups, sizeof(double)), *after = mc_calloc((size_t)m->n_groups, sizeof(double));
  int *taps = mc_calloc((size_t)m->n_groups, sizeof(int));
  /* every ReLU's output of A, then of B, with every head computed (the
   * ReLUs of train-only heads are taps too) */
  float **As = mc_calloc((size_t)m->n_nodes, sizeof(float *)), **Bs = mc_calloc((size_t)m->n_nodes, sizeof(float *));
  for (int pass = 0; pass < 2; pass++) {
    tu_forward(e, pass ? tb : ta, pass ? sb : sa, x, n, MC_MODE_EVAL_ALL_HEADS);
    for (int node = 0; node < m->n_nodes; node++) {
      const mc_node *nd = &m->nodes[node];
      if (nd->kind != MC_NODE_RELU) continue;
      float **dst = pass ? &Bs[node] : &As[node];
      *dst = mc_malloc(sizeof(float) * (size_t)(n * nd->C * nd->H * nd->W));
      tu_read(e, node, *dst);
    }
  }
  for (int node = 0; node < m->n_nodes; node++) {
    const mc_node *nd = &m->nodes[node];
    if (nd->kind != MC_NODE_RELU) continue;
    const int64_t S = nd->H * nd->W, sz = nd->C * S;
    float *A = As[node], *B = Bs[node];
    int64_t off = 0;
    for (int q = 0; q < nd->layout.n; q++) {
      const mc_segment *sg = &nd->layout.seg[q];
      const int g = sg->group;
      if (g >= 0) {
        taps[g]++;
        const int64_t cnt = n * S * sg->repeat;
        /* unit u's samples: channels off + u*repeat + j, every image and position */
#define UNIT_SUM(buf, u, expr)                                                            \
  for (int64_t i = 0; i < n; i++)                                                         \
    for (int64_t j = 0; j < sg->repeat; j++)                                              \
      for (int64_t p = 0; p < S; p++) {                                                   \
        const double v = buf[i * sz + (off + (u) * sg->repeat + j) * S + p];              \
        expr;                                                                             \
      }
        for (int pass = 0; pass < 2; pass++)
          for (int64_t u = 0; u < sg->count; u++) {
            const int64_t w = pass ? al.perm[g][u] : u;
            double ma = 0, mb = 0, cab = 0, vaa = 0, vbb = 0;
            UNIT_SUM(A, u, ma += v)
            UNIT_SUM(B, w, mb += v)
            ma /= (double)cnt;
            mb /= (double)cnt;
            UNIT_SUM(A, u, vaa += (v - ma) * (v - ma))
            UNIT_SUM(B, w, vbb += (v - mb) * (v - mb))
            for (int64_t i = 0; i < n; i++)
              for (int64_t j = 0; j < sg->repeat; j++)
                for (int64_t p = 0; p < S; p++)
                  cab += (A[i * sz + (off + u * sg->repeat + j) * S + p] - ma) *
                         (B[i * sz + (off + w * sg->repeat + j) * S + p] - mb);
            const double rr = (cab / (double)cnt) /
                              ((sqrt(vaa / (double)cnt) + 1e-5) * (sqrt(vbb / (double)cnt) + 1e-5));
            (pass ? after : before)[g] += rr / (double)sg->count;
          }
#undef UNIT_SUM
      }
      off += sg->count * sg->repeat;
    }
    free(A);
    free(B);
  }
  double worst = 0;
  for (int g = 0; g < m->n_groups; g++) {
    if (!taps[g]) continue;
    worst = fmax(worst, fabs(al.corr_before[g] - before[g] / taps[g]));
    worst = fmax(worst, fabs(al.corr_after[g] - after[g] / taps[g]));
  }
  printf("  %-9s %-4s max |mean corr - float64 brute force| over %d groups: %.2e\n", arch, mc_backend_name(be),
         m->n_groups, worst);
  assert_true(worst < 1e-6);
  mc_alignment_free(&al);
  mc_exec_free(e);
  free(As); free(Bs);
  free(before); free(after); free(taps); free(x); free(y); free(idx);
  free(ds.images); free(ds.labels);
  free(ta); free(sa); free(tb); free(sb);
  mc_model_free(m);
}

static void test_corr_bruteforce(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "mlp", "branchnet", "googlenet"};
  for (size_t i = 0; i < 5; i++) {
    corr_vs_bruteforce(archs[i], MC_BACKEND_REF);
    corr_vs_bruteforce(archs[i], MC_BACKEND_DNNL);
  }
}

static void test_apply_rejects(void **s) {
  (void)s;
  mc_model *m = tu_model("tinyten", 1, 28, 28, 10);
  float *ta, *sa;
  tu_random_params(m, 5, &ta, &sa);
  mc_alignment al;
  assert_int_equal(mc_alignment_init_identity(&al, m), MC_OK);
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
      cmocka_unit_test(test_corr_bruteforce),
      cmocka_unit_test(test_apply_rejects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
