/* End-to-end tests of the modeconn command line on real Fashion-MNIST
 * subsets: determinism, exact resume, NaN handling, JSON output, clear
 * errors and exit codes. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256];
static const char *bin;
#define SMALL "--arch mlp --widths 64 --train-subset 2000 --test-subset 500 --batch 100 --eval-every 1"

static int setup(void **s) {
  (void)s;
  bin = tu_env("MC_BIN", "./modeconn");
  snprintf(dir, sizeof dir, "/tmp/mc_cli_XXXXXX");
  if (!mkdtemp(dir)) return -1;
  return 0;
}

static int teardown(void **s) {
  (void)s;
  tu_sh("rm -rf '%s'", dir);
  return 0;
}

static void test_deterministic(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed 3 --out %s/s3a.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed 3 --out %s/s3b.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed 4 --out %s/s4.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("cmp -s %s/s3a.st %s/s3b.st", dir, dir), 0); /* same seed: identical file */
  assert_int_not_equal(tu_sh("cmp -s %s/s3a.st %s/s4.st", dir, dir), 0);
}

static void test_resume(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 3 --seed 5 --out %s/full.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed 5 --out %s/part.st > /dev/null 2>&1", bin, dir), 0);
  /* the schedule depends on the total epochs: resume with the same total */
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 3 --seed 5 --resume %s/part.st --out %s/part.st > /dev/null 2>&1",
                         bin, dir, dir), 0);
  assert_int_equal(tu_sh("cmp %s/full.st %s/part.st", dir, dir), 0);
  assert_int_equal(tu_sh("cmp %s/full.st.train %s/part.st.train", dir, dir), 0);
  /* a .train file from another epoch is refused */
  assert_int_equal(tu_sh("cp %s/s3a.st %s/mix.st && cp %s/full.st.train %s/mix.st.train", dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 3 --seed 3 --resume %s/mix.st --out %s/mix2.st 2> %s/err.txt", bin,
                         dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'run' %s/err.txt", dir), 0); /* another run's optimizer state */
  /* another --train-subset is another run */
  assert_int_equal(tu_sh("%s train " SMALL " --train-subset 1000 --epochs 3 --seed 5 --resume %s/full.st --out %s/sub.st "
                         "2> %s/err.txt", bin, dir, dir, dir), 2);
  assert_int_equal(tu_sh("grep -q 'train-subset' %s/err.txt && test ! -e %s/sub.st", dir, dir), 0);
}

/* curve train --resume: an interrupted run (here: stopped after epoch 1 of
 * a schedule whose first epoch is the same) continues to the uninterrupted
 * result byte for byte; another run's flags or state are refused */
static void test_curve_resume(void **s) {
  (void)s;
#define CV SMALL " --a %s/s3a.st --b %s/s4.st --align corr --samples 500 --bn-samples 200 --eval-every 0 --seed 3"
  assert_int_equal(tu_sh("%s curve train " CV " --epochs 3 --out %s/cfull.st > /dev/null 2>&1", bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s curve train " CV " --epochs 1 --out %s/cpart.st > /dev/null 2>&1", bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s curve train " CV " --epochs 3 --resume %s/cpart.st --out %s/cpart.st > /dev/null 2>&1", bin,
                         dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("cmp %s/cfull.st %s/cpart.st && cmp %s/cfull.st.train %s/cpart.st.train", dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("test $(grep -c '\"epoch\"' %s/cpart.st.log.jsonl) = 3", dir), 0);
  /* the resumed curve file is a curve file */
  assert_int_equal(tu_sh("%s curve eval --curve %s/cpart.st --points 3 --train-subset 500 --test-subset 100 "
                         "--bn-samples 100 > /dev/null 2>&1", bin, dir), 0);
  /* another seed (or subset): another run */
  assert_int_equal(tu_sh("%s curve train " CV " --seed 4 --epochs 3 --resume %s/cpart.st --out %s/c2.st 2> %s/err.txt",
                         bin, dir, dir, dir, dir, dir), 2);
  assert_int_equal(tu_sh("grep -q 'from run' %s/err.txt && test ! -e %s/c2.st", dir, dir), 0);
  /* a .train file of another run next to the curve file */
  assert_int_equal(tu_sh("cp %s/cfull.st %s/cmix.st && cp %s/full.st.train %s/cmix.st.train", dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s curve train " CV " --epochs 3 --resume %s/cmix.st --out %s/c3.st 2> %s/err.txt", bin, dir,
                         dir, dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'cmix.st.train' %s/err.txt", dir), 0);
  /* PAM does not resume */
  assert_int_equal(tu_sh("%s curve train " CV " --method pam --resume %s/cpart.st --out %s/c4.st 2> %s/err.txt", bin, dir,
                         dir, dir, dir, dir), 2);
#undef CV
}

static void test_nan_keeps_checkpoint(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed 6 --out %s/good.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("cp %s/good.st %s/good.copy", dir, dir), 0);
  assert_int_equal(tu_sh("%s train " SMALL " --epochs 3 --seed 6 --lr 1e12 --resume %s/good.st --out %s/good.st "
                         "> /dev/null 2> %s/nan.txt", bin, dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'loss is' %s/nan.txt && grep -q 'intact' %s/nan.txt", dir, dir), 0);
  assert_int_equal(tu_sh("cmp %s/good.st %s/good.copy", dir, dir), 0);
}

static void read_eval(const char *name, double *loss, double *acc) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  json_error_t err;
  json_t *j = json_load_file(p, 0, &err);
  assert_non_null(j);
  *loss = json_number_value(json_object_get(j, "loss"));
  *acc = json_number_value(json_object_get(j, "accuracy"));
  json_decref(j);
}

static void test_eval_json(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s eval --model %s/s3a.st --test-subset 500 --json %s/e.json > /dev/null 2>&1", bin, dir, dir), 0);
  double loss, acc;
  read_eval("e.json", &loss, &acc);
  printf("  eval: loss %.4f accuracy %.4f\n", loss, acc);
  assert_true(isfinite(loss) && loss > 0 && acc > 0.5 && acc <= 1);
}

static void test_errors(void **s) {
  (void)s;
  /* usage errors exit 2 */
  assert_int_equal(tu_sh("%s train --epochs x > /dev/null 2>&1", bin), 2);
  assert_int_equal(tu_sh("%s nosuchcommand > /dev/null 2>&1", bin), 2);
  assert_int_equal(tu_sh("%s eval > /dev/null 2>&1", bin), 2);
  assert_int_equal(tu_sh("%s train --arch nosucharch --epochs 1 > /dev/null 2>&1", bin), 2);
  /* a truncated checkpoint: runtime error naming the file */
  assert_int_equal(tu_sh("head -c 300 %s/s3a.st > %s/trunc.st", dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/trunc.st --test-subset 10 2> %s/err2.txt", bin, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'trunc.st' %s/err2.txt", dir), 0);
  /* models of different architectures cannot be aligned */
  assert_int_equal(tu_sh("%s train --arch mlp --widths 32 --train-subset 500 --test-subset 100 --epochs 1 --out %s/w32.st "
                         "> /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s align --a %s/s3a.st --b %s/w32.st --out %s/x.st --samples 100 2> %s/err3.txt", bin, dir,
                         dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'one architecture' %s/err3.txt && test ! -e %s/x.st", dir, dir), 0);
  /* a missing dataset directory */
  assert_int_equal(tu_sh("%s eval --model %s/s3a.st --data mnist:/nonexistent 2> %s/err4.txt", bin, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q '/nonexistent' %s/err4.txt", dir), 0);
}

static void test_help(void **s) {
  (void)s;
  const char *cmds[] = {"info", "train", "eval", "align", "interp", "curve train", "curve eval", "plane", "report"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    assert_int_equal(tu_sh("%s %s --help > %s/help.txt", bin, cmds[i], dir), 0);
    assert_int_equal(tu_sh("grep -q 'usage: modeconn' %s/help.txt && grep -q -- '--help' %s/help.txt", dir, dir), 0);
  }
  assert_int_equal(tu_sh("%s --help | grep -q 'curve'", bin), 0);
}

static void test_align_interp(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s align --a %s/s3a.st --b %s/s4.st --out %s/s4al.st --samples 1000 --train-subset 2000 "
                         "--perm-out %s/perm.json > /dev/null 2>&1", bin, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s interp --a %s/s3a.st --b %s/s4al.st --points 3 --train-subset 2000 --test-subset 500 "
                         "--json %s/li.json > /dev/null 2>&1", bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q loss_barrier %s/li.json && grep -q permutation %s/perm.json", dir, dir), 0);
  /* the aligned B computes the same function as B */
  assert_int_equal(tu_sh("%s eval --model %s/s4.st --test-subset 500 --json %s/b.json > /dev/null 2>&1", bin, dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/s4al.st --test-subset 500 --json %s/bal.json > /dev/null 2>&1", bin, dir, dir), 0);
  double l1, a1, l2, a2;
  read_eval("b.json", &l1, &a1);
  read_eval("bal.json", &l2, &a2);
  printf("  B: loss %.7f acc %.4f; aligned B: loss %.7f acc %.4f\n", l1, a1, l2, a2);
  assert_true(fabs(l1 - l2) <= 1e-5 * l1 && a1 == a2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deterministic), cmocka_unit_test(test_resume),
      cmocka_unit_test(test_curve_resume),
      cmocka_unit_test(test_nan_keeps_checkpoint), cmocka_unit_test(test_eval_json),
      cmocka_unit_test(test_errors), cmocka_unit_test(test_help),
      cmocka_unit_test(test_align_interp),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
