/* Train in one framework, evaluate in the other: a model trained by
 * PyTorch and exported to safetensors is evaluated by `modeconn eval`, and
 * a modeconn checkpoint is loaded by PyTorch with load_state_dict(strict=
 * True); both sides must agree on loss (1e-4 relative) and accuracy. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[64];

static void read_json(const char *path, double *loss, double *acc) {
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  if (!j) fail_msg("%s: %s", path, e.text);
  *loss = json_number_value(json_object_get(j, "loss"));
  *acc = json_number_value(json_object_get(j, "accuracy"));
  json_decref(j);
}

static void compare(const char *what, const char *torch_json, const char *mc_json) {
  double l1, a1, l2, a2;
  read_json(torch_json, &l1, &a1);
  read_json(mc_json, &l2, &a2);
  printf("  %s: PyTorch loss %.6f acc %.4f | modeconn loss %.6f acc %.4f | rel loss diff %.2e\n", what, l1, a1, l2, a2,
         fabs(l1 - l2) / l1);
  assert_true(isfinite(l1) && fabs(l1 - l2) <= 1e-4 * l1);
  assert_true(fabs(a1 - a2) <= 1.5e-3); /* at most one borderline image of 1000 */
}

static void test_torch_to_modeconn(void **s) {
  (void)s;
  const char *src = tu_env("MC_SOURCE_DIR", "."), *bin = tu_env("MC_BIN", "modeconn");
  assert_int_equal(tu_sh("/usr/bin/python3 %s/tests/interop.py torch-train %s/torch.st 3000 > %s/torch.json", src, dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/torch.st --test-subset 1000 --json %s/mc.json > /dev/null", bin, dir, dir), 0);
  char a[128], b[128];
  snprintf(a, sizeof a, "%s/torch.json", dir);
  snprintf(b, sizeof b, "%s/mc.json", dir);
  compare("trained in PyTorch", a, b);
}

static void test_modeconn_to_torch(void **s) {
  (void)s;
  const char *src = tu_env("MC_SOURCE_DIR", "."), *bin = tu_env("MC_BIN", "modeconn");
  assert_int_equal(tu_sh("%s train --arch mlp --widths 64,32 --bn --epochs 1 --train-subset 3000 --test-subset 100 "
                         "--out %s/mc.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/mc.st --test-subset 1000 --json %s/mc2.json > /dev/null", bin, dir, dir), 0);
  assert_int_equal(tu_sh("/usr/bin/python3 %s/tests/interop.py torch-eval %s/mc.st > %s/torch2.json", src, dir, dir), 0);
  char a[128], b[128];
  snprintf(a, sizeof a, "%s/torch2.json", dir);
  snprintf(b, sizeof b, "%s/mc2.json", dir);
  compare("trained in modeconn", a, b);
}

static int setup(void **s) {
  (void)s;
  snprintf(dir, sizeof dir, "/tmp/mc_interop_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
  (void)s;
  tu_sh("rm -rf %s", dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_torch_to_modeconn), cmocka_unit_test(test_modeconn_to_torch)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
