/* Adversarial robustness end to end on real Fashion-MNIST subsets: an
 * adversarially trained TinyTen is more robust to PGD than a clean one;
 * adversarial training with 0 PGD steps is plain training; eps = 0 gives the
 * clean numbers; robust interp/curve results carry the robust arrays and
 * metrics; bad attack flags are usage errors. */
#include "testutil.h"

#include "train/train.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256];
static const char *bin;
#define SUB "--train-subset 2000 --test-subset 500"
/* about 70 % clean accuracy for TinyTen: enough training for robustness to show */
#define TRAIN "--train-subset 3000 --test-subset 500 --epochs 2 --batch 64 --eval-every 2"

static int setup(void **s) {
  (void)s;
  bin = tu_env("MC_BIN", "./modeconn");
  snprintf(dir, sizeof dir, "/tmp/mc_adv_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
  (void)s;
  tu_sh("rm -rf '%s'", dir);
  return 0;
}

static json_t *load_json(const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  json_error_t err;
  json_t *j = json_load_file(p, 0, &err);
  if (!j) fail_msg("%s: %s", p, err.text);
  return j;
}

static double jnum(const json_t *j, const char *k) {
  const json_t *v = json_object_get(j, k);
  if (!json_is_number(v)) fail_msg("no number '%s'", k);
  return json_number_value(v);
}

/* The claim of Madry et al. on a small budget: one epoch of PGD training
 * buys robustness a clean epoch does not have. */
static void test_adv_training_is_more_robust(void **s) {
  (void)s;
  assert_int_equal(tu_sh("%s train --arch tinyten " TRAIN " --seed 1 --out %s/clean.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s train --arch tinyten " TRAIN " --seed 1 --adv pgd --out %s/adv.st > %s/adv_train.txt 2>&1",
                         bin, dir, dir), 0);
  /* the epoch line shows the robust test metrics */
  assert_int_equal(tu_sh("grep -q 'robust test loss' %s/adv_train.txt", dir), 0);
  assert_int_equal(tu_sh("grep -q 'robust_test_accuracy' %s/adv.st.log.jsonl", dir), 0);
  assert_int_equal(tu_sh("%s attack --model %s/clean.st " SUB " --json %s/clean_attack.json > /dev/null 2>&1", bin, dir,
                         dir), 0);
  assert_int_equal(tu_sh("%s attack --model %s/adv.st " SUB " --json %s/adv_attack.json > /dev/null 2>&1", bin, dir,
                         dir), 0);
  json_t *c = load_json("clean_attack.json"), *a = load_json("adv_attack.json");
  const double rc = jnum(c, "robust_accuracy"), ra = jnum(a, "robust_accuracy");
  print_message("PGD accuracy: clean-trained %.3f, PGD-trained %.3f (clean accuracy %.3f, %.3f)\n", rc, ra,
                jnum(c, "clean_accuracy"), jnum(a, "clean_accuracy"));
  assert_true(ra > rc + 0.10);
  assert_true(jnum(c, "robust_accuracy") < jnum(c, "clean_accuracy"));
  assert_true(fabs(jnum(a, "eps") - 0.1) < 1e-12 && jnum(a, "steps") == 5); /* the Fashion-MNIST defaults */
  json_decref(c);
  json_decref(a);
  /* eps = 0: the PGD examples are the images, the numbers the clean ones */
  assert_int_equal(tu_sh("%s attack --model %s/adv.st " SUB " --eps 0 --json %s/eps0.json > /dev/null 2>&1", bin, dir,
                         dir), 0);
  json_t *z = load_json("eps0.json");
  assert_true(jnum(z, "robust_loss") == jnum(z, "clean_loss"));
  assert_true(jnum(z, "robust_accuracy") == jnum(z, "clean_accuracy"));
  json_decref(z);
}

/* --steps 0 leaves every batch as it is: the same parameters bit for bit. */
static void test_zero_steps_is_plain_training(void **s) {
  (void)s;
  mc_data d;
  assert_int_equal(mc_data_load(&d, "fashion-mnist"), MC_OK);
  mc_dataset_truncate(&d.train, 600);
  mc_dataset_truncate(&d.test, 200);
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m;
  assert_int_equal(mc_model_create(&m, "tinyten", &p), MC_OK);
  float *th[2], *stt[2];
  for (int k = 0; k < 2; k++) {
    th[k] = mc_aligned_alloc(sizeof(float) * m->n_theta);
    stt[k] = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
    mc_model_init(m, th[k], stt[k], 7);
    mc_dataset_mean_std(&d.train, m->norm_mean, m->norm_std);
    mc_pgd pgd;
    mc_pgd_default(&pgd, 1);
    pgd.steps = 0;
    mc_train_cfg cfg = {.epochs = 1, .batch = 100, .momentum = 0.9, .wd = 5e-4, .nesterov = 1, .seed = 7,
                        .eval_every = 0, .adv = k ? &pgd : NULL};
    assert_int_equal(mc_schedule_parse("cosine", &cfg.sched), MC_OK);
    cfg.sched.lr = 0.05;
    cfg.sched.epochs = 1;
    assert_int_equal(mc_train(&cfg, m, th[k], stt[k], &d, MC_BACKEND_AUTO), MC_OK);
  }
  assert_memory_equal(th[0], th[1], sizeof(float) * m->n_theta);
  assert_memory_equal(stt[0], stt[1], sizeof(float) * m->n_state);
  for (int k = 0; k < 2; k++) {
    free(th[k]);
    free(stt[k]);
  }
  mc_model_free(m);
  mc_data_free(&d);
}

/* interp / curve eval / curve train --adv pgd: robust arrays beside the
 * clean ones, robust metrics with definitions, CSV columns. */
static void test_robust_paths(void **s) {
  (void)s;
  /* the same training images as clean.st: a pair must share its normalisation */
  assert_int_equal(tu_sh("%s train --arch tinyten " TRAIN " --seed 2 --out %s/b.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s interp --a %s/clean.st --b %s/b.st --points 3 --adv pgd --steps 2 --bn-samples 300 " SUB
                         " --json %s/interp.json --csv %s/interp.csv > %s/interp.txt 2>&1", bin, dir, dir, dir, dir,
                         dir), 0);
  json_t *j = load_json("interp.json");
  assert_int_equal(json_array_size(json_object_get(j, "robust_accuracy")), 3);
  assert_int_equal(json_array_size(json_object_get(j, "robust_loss")), 3);
  const json_t *mt = json_object_get(j, "metrics");
  assert_true(json_is_number(json_object_get(mt, "robust_loss_barrier")));
  assert_true(json_is_object(json_object_get(mt, "most_robust")));
  assert_true(json_is_string(json_object_get(json_object_get(j, "definitions"), "robust_loss_barrier")));
  assert_true(json_is_true(json_object_get(json_object_get(j, "adversarial"), "bn_adv")));
  /* the endpoints of a line are the models themselves: the PGD accuracy
   * never exceeds the clean one there */
  for (int i = 0; i < 3; i += 2)
    assert_true(json_number_value(json_array_get(json_object_get(j, "robust_accuracy"), (size_t)i)) <=
                json_number_value(json_array_get(json_object_get(j, "test_accuracy"), (size_t)i)));
  json_decref(j);
  assert_int_equal(tu_sh("head -1 %s/interp.csv | grep -q 'robust_loss,robust_accuracy'", dir), 0);
  assert_int_equal(tu_sh("grep -q 'robust loss barrier' %s/interp.txt", dir), 0);
  assert_int_equal(tu_sh("grep -q 'more robust and more accurate than both endpoints' %s/interp.txt", dir), 0);
  /* alignment on PGD inputs: eps = 0 gives exactly the clean statistics */
  assert_int_equal(tu_sh("%s align --a %s/clean.st --b %s/b.st --out %s/b_al.st --samples 300 " SUB
                         " --perm-out %s/p_clean.json > /dev/null 2>&1", bin, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s align --a %s/clean.st --b %s/b.st --out %s/b_al0.st --samples 300 " SUB
                         " --align-adv --eps 0 --perm-out %s/p_eps0.json > /dev/null 2>&1", bin, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s align --a %s/clean.st --b %s/b.st --out %s/b_al1.st --samples 300 " SUB
                         " --align-adv --steps 2 --perm-out %s/p_adv.json > /dev/null 2>&1", bin, dir, dir, dir, dir), 0);
  json_t *pc = load_json("p_clean.json"), *p0 = load_json("p_eps0.json"), *pa = load_json("p_adv.json");
  assert_true(json_equal(json_object_get(pc, "groups"), json_object_get(p0, "groups")));
  assert_true(json_is_object(json_object_get(pa, "adversarial")));
  json_decref(pc);
  json_decref(p0);
  json_decref(pa);
  assert_int_equal(tu_sh("%s align --a %s/clean.st --b %s/b.st --out %s/x.st --method weights --align-adv " SUB
                         " > /dev/null 2>&1", bin, dir, dir, dir), 2);
  /* a robust curve: trained on PGD examples, its midpoint evaluated robustly */
  assert_int_equal(tu_sh("%s curve train --adv pgd --steps 2 --a %s/clean.st --b %s/b.st --align none --epochs 1 "
                         "--bn-samples 300 --train-subset 600 --test-subset 200 --out %s/rc.st > /dev/null 2>&1", bin,
                         dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q 'mid_robust_test_accuracy' %s/rc.st.log.jsonl", dir), 0);
  assert_int_equal(tu_sh("%s curve eval --curve %s/rc.st --points 3 --adv pgd --steps 2 --bn-adv no --bn-samples 300 "
                         "--test-subset 200 --json %s/rc.json > /dev/null 2>&1", bin, dir, dir), 0);
  j = load_json("rc.json");
  assert_int_equal(json_array_size(json_object_get(j, "robust_accuracy")), 3);
  assert_true(json_is_false(json_object_get(json_object_get(j, "adversarial"), "bn_adv")));
  json_decref(j);
}

static void test_bad_flags(void **s) {
  (void)s;
  const char *bad[] = {"--adv fgsm", "--adv pgd --eps 2", "--adv pgd --eps 8/0", "--adv pgd --eps x",
                       "--adv pgd --alpha -1", "--adv pgd --steps -1", "--adv pgd --random-start maybe",
                       "--adv pgd --attack-seed -3", "--adv pgd --bn-adv perhaps"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(tu_sh("%s interp --a %s/clean.st --b %s/b.st --points 2 %s " SUB " > /dev/null 2> %s/err.txt", bin,
                           dir, dir, bad[i], dir), 2);
    assert_int_equal(tu_sh("grep -q -- '--' %s/err.txt", dir), 0); /* the message names the flag */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adv_training_is_more_robust), cmocka_unit_test(test_zero_steps_is_plain_training),
      cmocka_unit_test(test_robust_paths), cmocka_unit_test(test_bad_flags)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
