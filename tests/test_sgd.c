/* SGD and schedules: three steps of mc_sgd_step equal torch.optim.SGD
 * (momentum, Nesterov, weight decay) to float rounding; the schedules'
 * documented formulas. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void check_sgd(double lr, double mom, double wd, int nesterov) {
  const size_t n = 1000;
  float *a = mc_malloc(sizeof(float) * 4 * n), *ref = mc_malloc(sizeof(float) * 3 * n);
  mc_rng r;
  mc_rng_seed(&r, 17);
  for (size_t i = 0; i < 4 * n; i++) a[i] = mc_rng_normal(&r);
  char dir[] = "/tmp/mc_sgd_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char in[64], out[64];
  snprintf(in, sizeof in, "%s/in.bin", dir);
  snprintf(out, sizeof out, "%s/out.bin", dir);
  FILE *f = fopen(in, "wb");
  assert_int_equal(fwrite(a, sizeof(float), 4 * n, f), 4 * n);
  fclose(f);
  assert_int_equal(tu_sh("/usr/bin/python3 %s/tests/sgd_ref.py %s %s %zu %.17g %.17g %.17g %d", tu_env("MC_SOURCE_DIR", "."),
                         in, out, n, lr, mom, wd, nesterov), 0);
  f = fopen(out, "rb");
  assert_int_equal(fread(ref, sizeof(float), 3 * n, f), 3 * n);
  fclose(f);
  tu_sh("rm -rf %s", dir);
  float *p = mc_malloc(sizeof(float) * n), *buf = mc_calloc(n, sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = a[i];
  double worst = 0;
  for (int k = 0; k < 3; k++) {
    mc_sgd_step(p, buf, a + (size_t)(k + 1) * n, n, lr, mom, wd, nesterov);
    worst = fmax(worst, tu_max_rel(p, ref + (size_t)k * n, n, 1e-6));
  }
  printf("  lr %g momentum %g wd %g nesterov %d: max rel diff vs torch.optim.SGD over 3 steps %.2e\n", lr, mom, wd,
         nesterov, worst);
  assert_true(worst < 1e-6);
  free(a); free(ref); free(p); free(buf);
}

static void test_sgd_torch(void **s) {
  (void)s;
  check_sgd(0.1, 0.9, 5e-4, 1);
  check_sgd(0.05, 0.9, 5e-4, 0);
  check_sgd(0.3, 0.0, 0.0, 0);
  check_sgd(0.01, 0.5, 1e-2, 1);
}

static void test_schedules(void **s) {
  (void)s;
  mc_schedule sc;
  assert_int_equal(mc_schedule_parse("paper", &sc), MC_OK);
  sc.lr = 0.1;
  sc.epochs = 250;
  assert_true(fabs(mc_schedule_lr(&sc, 0) - 0.1) < 1e-15);
  assert_true(fabs(mc_schedule_lr(&sc, 45) - 0.1 * 0.25 * pow(0.9996, 45)) < 1e-15);
  assert_int_equal(mc_schedule_parse("garipov", &sc), MC_OK);
  sc.lr = 1;
  sc.epochs = 100;
  assert_true(mc_schedule_lr(&sc, 50) == 1.0);
  assert_true(fabs(mc_schedule_lr(&sc, 70) - (1 - 0.5 * 0.99)) < 1e-12);
  assert_true(fabs(mc_schedule_lr(&sc, 95) - 0.01) < 1e-15);
  assert_int_equal(mc_schedule_parse("step:10:0.5", &sc), MC_OK);
  sc.lr = 1;
  assert_true(mc_schedule_lr(&sc, 25) == 0.25);
  assert_int_equal(mc_schedule_parse("cosine", &sc), MC_OK);
  sc.lr = 2;
  sc.epochs = 10;
  assert_true(fabs(mc_schedule_lr(&sc, 5) - 1.0) < 1e-12);
  assert_int_equal(mc_schedule_parse("bogus", &sc), MC_EARG);
  assert_int_equal(mc_schedule_parse("cosine:3", &sc), MC_EARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_sgd_torch), cmocka_unit_test(test_schedules)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
