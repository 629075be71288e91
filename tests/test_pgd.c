/* Invariants of the L-infinity PGD attack (src/eval/attack.c) and of the
 * evaluation on it (mc_evaluate_pgd), on both backends, on a Fashion-MNIST
 * subset (synthetic images when it is not installed) and a tinyten and an
 * mlp with BN trained for one short epoch:
 *   eps = 0          mc_evaluate_pgd == mc_evaluate exactly (loss and
 *                    accuracy; alpha > 0, random start on) and the examples
 *                    are the clean images bit for bit
 *   steps = 0        mc_pgd_run returns x bit for bit (random start and a
 *                    delta0 given: neither is applied)
 *   the eps-ball     every example of mc_evaluate_pgd lies in
 *                    [max(x - eps, 0), min(x + eps, 1)] (float bounds, as the
 *                    attack computes them); the attack moves most pixels,
 *                    raises the loss and lowers the accuracy of the mlp
 *                    (~70 % clean)
 *   random starts    keyed by dataset index: mc_evaluate_pgd's loss,
 *                    accuracy and examples are the same bytes with 1 and 2
 *                    threads, and row i of them equals mc_pgd_run on a batch
 *                    holding rows i.. alone (other batch boundaries);
 *                    300 rows are 5 slices of 64, so one thread runs
 *                    more PGD backwards than the other (the mlp's BN1d
 *                    once hung there on oneDNN, issue 14)
 *   BN recompute     on PGD examples (train-mode forwards and backwards)
 *                    with 1 and 2 threads over 3 batches (2 on one thread,
 *                    1 on the other): the same statistics up to rounding
 * The attack against PyTorch is tests/test_pgd_torch.c. */
#include "testutil.h"

#include "eval/attack.h"
#include "eval/eval.h"
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTEST 300
#define NTRAIN 1000

typedef struct {
  const char *arch;
  mc_model *m;
  float *theta, *state;
} icase;

static mc_data g_data;
static icase g_cases[2] = {{.arch = "tinyten"}, {.arch = "mlp"}};
static const mc_backend g_be[2] = {MC_BACKEND_REF, MC_BACKEND_DNNL};

static void setup_case(icase *c) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = 1; p.in_h = 28; p.in_w = 28;
  p.classes = 10;
  if (!strcmp(c->arch, "mlp")) {
    p.widths = "64,32";
    p.bn = 1;
  } else {
    p.width = 0.5;
  }
  if (mc_model_create(&c->m, c->arch, &p)) fail_msg("%s: %s", c->arch, mc_errmsg());
  mc_dataset_mean_std(&g_data.train, c->m->norm_mean, c->m->norm_std);
  c->theta = mc_aligned_alloc(sizeof(float) * (c->m->n_theta + 1));
  c->state = mc_aligned_alloc(sizeof(float) * (c->m->n_state + 1));
  mc_model_init(c->m, c->theta, c->state, 3);
  mc_train_cfg t = {0};
  t.epochs = 1;
  t.batch = 100;
  t.momentum = 0.9;
  t.nesterov = 1;
  t.seed = 3;
  t.eval_every = 1000;
  assert_int_equal(mc_schedule_parse("const", &t.sched), MC_OK);
  t.sched.lr = 0.05;
  t.sched.epochs = 1;
  if (mc_train(&t, c->m, c->theta, c->state, &g_data, MC_BACKEND_AUTO)) fail_msg("train: %s", mc_errmsg());
}

static int group_setup(void **st) {
  (void)st;
  if (mc_data_load(&g_data, "fashion-mnist")) {
    printf("Fashion-MNIST not found (%s): synthetic images instead\n", mc_errmsg());
    memset(&g_data, 0, sizeof g_data);
    g_data.train = tu_synth_data(NTRAIN, 1, 28, 28, 21);
    g_data.test = tu_synth_data(NTEST, 1, 28, 28, 22);
  }
  mc_dataset_truncate(&g_data.train, NTRAIN);
  mc_dataset_truncate(&g_data.test, NTEST);
  mc_set_threads(1);
  for (int i = 0; i < 2; i++) setup_case(&g_cases[i]);
  return 0;
}

static int group_teardown(void **st) {
  (void)st;
  for (int i = 0; i < 2; i++) {
    free(g_cases[i].theta);
    free(g_cases[i].state);
    mc_model_free(g_cases[i].m);
  }
  mc_data_free(&g_data);
  mc_set_threads(0);
  return 0;
}

static float *clean_images(void) {
  const mc_dataset *ds = &g_data.test;
  float *x = mc_aligned_alloc(sizeof(float) * (size_t)(ds->n * 784));
  int32_t *y = mc_malloc(sizeof(int32_t) * (size_t)ds->n);
  int64_t *idx = mc_malloc(sizeof(int64_t) * (size_t)ds->n);
  for (int64_t i = 0; i < ds->n; i++) idx[i] = i;
  mc_dataset_batch(ds, idx, ds->n, NULL, NULL, x, y);
  free(y);
  free(idx);
  return x;
}

static int same_bytes(const void *a, const void *b, size_t n) { return !memcmp(a, b, n); }

static void test_eps_zero(void **st) {
  (void)st;
  const size_t nx = (size_t)NTEST * 784;
  float *x = clean_images(), *xadv = mc_aligned_alloc(sizeof(float) * nx);
  for (int c = 0; c < 2; c++)
    for (int b = 0; b < 2; b++) {
      const icase *ic = &g_cases[c];
      mc_exec *e;
      assert_int_equal(mc_exec_create(&e, ic->m, 500, g_be[b]), MC_OK);
      mc_pgd p;
      mc_pgd_default(&p, 1);
      p.eps = 0;
      mc_metrics clean, rob;
      assert_int_equal(mc_evaluate(e, ic->theta, ic->state, &g_data.test, 0, &clean), MC_OK);
      assert_int_equal(mc_evaluate_pgd(e, ic->theta, ic->state, &g_data.test, 0, &p, &rob, xadv), MC_OK);
      printf("  %-8s %-4s eps=0: clean loss %.9f acc %.4f, PGD loss %.9f acc %.4f\n", ic->arch,
             mc_backend_name(g_be[b]), clean.loss, clean.accuracy, rob.loss, rob.accuracy);
      assert_true(clean.loss == rob.loss);
      assert_true(clean.accuracy == rob.accuracy);
      assert_int_equal(rob.n, NTEST);
      assert_true(same_bytes(x, xadv, sizeof(float) * nx));
      mc_exec_free(e);
    }
  free(x);
  free(xadv);
}

static void test_steps_zero(void **st) {
  (void)st;
  const int64_t n = 50;
  const size_t nx = (size_t)n * 784;
  float *x = clean_images(), *xadv = mc_aligned_alloc(sizeof(float) * nx), *dx = mc_aligned_alloc(sizeof(float) * nx);
  float *delta0 = mc_malloc(sizeof(float) * nx);
  for (size_t q = 0; q < nx; q++) delta0[q] = 0.05f;
  int32_t y[50];
  int64_t key[50];
  for (int64_t i = 0; i < n; i++) {
    y[i] = g_data.test.labels[i];
    key[i] = i;
  }
  for (int b = 0; b < 2; b++) {
    const icase *ic = &g_cases[0];
    mc_exec *e;
    assert_int_equal(mc_exec_create(&e, ic->m, n, g_be[b]), MC_OK);
    for (int k = 0; k < 2; k++) {
      mc_pgd p;
      mc_pgd_default(&p, 1);
      p.steps = 0;
      p.delta0 = k ? delta0 : NULL; /* random start on, or a fixed start */
      memset(xadv, 0xff, sizeof(float) * nx);
      assert_int_equal(mc_pgd_run(e, ic->theta, ic->state, MC_MODE_EVAL, &p, x, y, n, key, MC_PGD_SALT_TEST, xadv, dx),
                       MC_OK);
      assert_true(same_bytes(x, xadv, sizeof(float) * nx));
    }
    mc_exec_free(e);
  }
  printf("  steps=0: the examples are the inputs bit for bit (random start, and delta0), both backends\n");
  free(x); free(xadv); free(dx); free(delta0);
}

/* every example in the eps-ball and [0,1]; returns pixels moved */
static int64_t check_ball(const float *x, const float *xadv, size_t nx, double eps_d) {
  const float eps = (float)eps_d;
  int64_t moved = 0, bad = 0;
  for (size_t q = 0; q < nx; q++) {
    const float lo = x[q] - eps > 0.f ? x[q] - eps : 0.f, hi = x[q] + eps < 1.f ? x[q] + eps : 1.f;
    if (!(xadv[q] >= lo && xadv[q] <= hi)) {
      if (bad++ < 5) printf("  pixel %zu: x %.9g, x_adv %.9g outside [%.9g, %.9g]\n", q, x[q], xadv[q], lo, hi);
    }
    moved += xadv[q] != x[q];
  }
  assert_int_equal(bad, 0);
  return moved;
}

static void test_eps_ball(void **st) {
  (void)st;
  const size_t nx = (size_t)NTEST * 784;
  float *x = clean_images(), *xadv = mc_aligned_alloc(sizeof(float) * nx);
  static const struct { double eps, alpha; int steps, random; } att[] = {
      {0.1, 0.025, 5, 1}, {0.1, 0.025, 5, 0}, {0.03, 0.05, 3, 1}, {0.3, 0.1, 2, 1}};
  for (int c = 0; c < 2; c++)
    for (int b = 0; b < 2; b++)
      for (size_t a = 0; a < sizeof att / sizeof att[0]; a++) {
        const icase *ic = &g_cases[c];
        mc_exec *e;
        assert_int_equal(mc_exec_create(&e, ic->m, 500, g_be[b]), MC_OK);
        mc_pgd p;
        mc_pgd_default(&p, 1);
        p.eps = att[a].eps;
        p.alpha = att[a].alpha;
        p.steps = att[a].steps;
        p.random_start = att[a].random;
        p.seed = 9;
        mc_metrics clean, rob;
        assert_int_equal(mc_evaluate(e, ic->theta, ic->state, &g_data.test, 0, &clean), MC_OK);
        assert_int_equal(mc_evaluate_pgd(e, ic->theta, ic->state, &g_data.test, 0, &p, &rob, xadv), MC_OK);
        const int64_t moved = check_ball(x, xadv, nx, p.eps);
        printf("  %-8s %-4s eps %.2f alpha %.3f k=%d start %s: in the ball, %.1f%% of pixels moved; "
               "accuracy %.4f -> %.4f, loss %.4f -> %.4f\n",
               ic->arch, mc_backend_name(g_be[b]), p.eps, p.alpha, p.steps, p.random_start ? "random" : "zero",
               100.0 * (double)moved / (double)nx, clean.accuracy, rob.accuracy, clean.loss, rob.loss);
        assert_true(moved > (int64_t)(nx / 2));
        assert_true(rob.loss > clean.loss);
        assert_true(rob.accuracy <= clean.accuracy);
        /* a model above chance loses accuracy (the briefly trained tinyten
         * is near chance; the mlp is at ~70 %) */
        if (clean.accuracy >= 0.5) assert_true(rob.accuracy < clean.accuracy);
        mc_exec_free(e);
      }
  free(x);
  free(xadv);
}

static void test_threads_and_keys(void **st) {
  (void)st;
  const size_t nx = (size_t)NTEST * 784;
  float *x = clean_images(), *xa[2] = {mc_aligned_alloc(sizeof(float) * nx), mc_aligned_alloc(sizeof(float) * nx)};
  for (int c = 0; c < 2; c++)
    for (int b = 0; b < 2; b++) {
      const icase *ic = &g_cases[c];
      mc_pgd p;
      mc_pgd_default(&p, 1);
      p.seed = 17;
      mc_metrics r[2];
      for (int t = 0; t < 2; t++) {
        mc_set_threads(t + 1);
        mc_exec *e;
        assert_int_equal(mc_exec_create(&e, ic->m, 500, g_be[b]), MC_OK);
        assert_int_equal(mc_evaluate_pgd(e, ic->theta, ic->state, &g_data.test, 0, &p, &r[t], xa[t]), MC_OK);
        mc_exec_free(e);
      }
      mc_set_threads(1);
      printf("  %-8s %-4s random start, 1 vs 2 threads: loss %.9f / %.9f, accuracy %.4f / %.4f\n", ic->arch,
             mc_backend_name(g_be[b]), r[0].loss, r[1].loss, r[0].accuracy, r[1].accuracy);
      assert_true(r[0].loss == r[1].loss);
      assert_true(r[0].accuracy == r[1].accuracy);
      assert_true(same_bytes(xa[0], xa[1], sizeof(float) * nx));
      /* rows 37..37+n in a batch of their own: the same examples (eval-mode
       * rows are independent; the start is keyed by dataset index) */
      const int64_t off = 37, n = 40;
      int32_t y[40];
      int64_t key[40];
      for (int64_t i = 0; i < n; i++) {
        y[i] = g_data.test.labels[off + i];
        key[i] = off + i;
      }
      float *xs = mc_aligned_alloc(sizeof(float) * (size_t)n * 784), *dx = mc_aligned_alloc(sizeof(float) * (size_t)n * 784);
      mc_exec *e;
      assert_int_equal(mc_exec_create(&e, ic->m, n, g_be[b]), MC_OK);
      assert_int_equal(mc_pgd_run(e, ic->theta, ic->state, MC_MODE_EVAL, &p, x + off * 784, y, n, key, MC_PGD_SALT_TEST,
                                  xs, dx),
                       MC_OK);
      double mx = tu_max_rel(xs, xa[0] + off * 784, (size_t)n * 784, 1.0);
      int64_t diff = 0;
      for (size_t q = 0; q < (size_t)n * 784; q++) diff += xs[q] != xa[0][off * 784 + q];
      printf("  %-8s %-4s rows %lld..%lld attacked alone: %lld of %lld pixels differ (max %.1e)\n", ic->arch,
             mc_backend_name(g_be[b]), (long long)off, (long long)(off + n - 1), (long long)diff,
             (long long)n * 784, mx);
      /* another batch composition may round the gradient differently, so
       * a rare near-zero component may flip: at most 0.1 % of pixels */
      assert_true(diff * 1000 <= n * 784);
      mc_exec_free(e);
      free(xs);
      free(dx);
    }
  free(x);
  free(xa[0]);
  free(xa[1]);
}

/* mc_bn_recompute_pgd on the mlp with BN, 1 and 2 threads: an executor
 * for 400 rows makes 3 batches of the 1000 training images, so the threads'
 * workers run 2 and 1 batches of train-mode PGD (BN statistics of each
 * forward, a BN backward per step): uneven work in mc_exec_parallel, which
 * hung on oneDNN before its workers ran in teams of their own. */
static void test_bn_recompute_threads(void **st) {
  (void)st;
  const icase *ic = &g_cases[1];
  const size_t ns = ic->m->n_state;
  float *s[2] = {mc_aligned_alloc(sizeof(float) * (ns + 1)), mc_aligned_alloc(sizeof(float) * (ns + 1))};
  for (int b = 0; b < 2; b++) {
    mc_pgd p;
    mc_pgd_default(&p, 1);
    p.seed = 5;
    for (int t = 0; t < 2; t++) {
      mc_set_threads(t + 1);
      memcpy(s[t], ic->state, sizeof(float) * ns);
      mc_exec *e;
      assert_int_equal(mc_exec_create(&e, ic->m, 400, g_be[b]), MC_OK);
      assert_int_equal(mc_bn_recompute_pgd(e, ic->theta, s[t], &g_data.train, 0, &p), MC_OK);
      mc_exec_free(e);
    }
    mc_set_threads(1);
    const double mx = tu_max_rel(s[0], s[1], ns, 1e-3);
    printf("  mlp      %-4s PGD BN recompute, 3 batches on 1 vs 2 threads: max rel diff %.1e\n",
           mc_backend_name(g_be[b]), mx);
    assert_true(mx < 1e-4);
  }
  free(s[0]);
  free(s[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_eps_zero),
      cmocka_unit_test(test_steps_zero),
      cmocka_unit_test(test_eps_ball),
      cmocka_unit_test(test_threads_and_keys),
      cmocka_unit_test(test_bn_recompute_threads),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
