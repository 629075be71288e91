/* Out of memory (issue 12, item 2): every allocation the library makes
 * through the _try allocators is failed in turn (mc_test_fail_alloc: the
 * n-th one fails, n = 1, 2, ... up to the count of a clean run) while a few
 * entry points run (jansson's allocations included: src/io/json.c routes
 * them through the same allocator, so a result file or checkpoint header
 * built while one failed is refused, never written short of a member) --
 * load and save a checkpoint, align two small models
 * both ways, evaluate a 3-point path with REPAIR and a 2x2 plane, write and
 * read back the results, batch a dataset, train for an epoch (with its
 * checkpoint pair) and resume it, train a Bezier curve for an epoch, run
 * PAM (one P-step epoch, the rounding, one phi epoch).  Each run must
 * return MC_ENOMEM with a message
 * saying so (or succeed, where the failed allocation is best effort), free
 * what it had (the sanitizer build checks leaks) and never crash; with n past
 * the count it must succeed.  The CLI's MC_TEST_FAIL_ALLOC does the same
 * for the binary: exit 1 with the message. */
#include "testutil.h"

#include "align/align.h"
#include "curve/curve.h"
#include "curve/pam.h"
#include "eval/eval.h"
#include "eval/path.h"
#include "eval/repair.h"
#include "io/results.h"
#include "io/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* conv with bias (REPAIRed), conv + BN (recomputed), pooling, GAP, linear */
static const char *SPEC = "input\nnormalize\n"
                          "c1: conv out=8 k=3 p=1 bias=1\nrelu\nmaxpool k=2\n"
                          "c2: conv out=8 k=3 p=1\nbn\nrelu\ngap\nfc: linear out=classes\n";

static struct {
  char dir[64], ckpt[96], curve[96], csv[96], json[96], train[96], log[96], pair[96];
  mc_model *m;
  float *ta, *sa, *tb, *sb, *tb2, *sb2, *tc, *tt, *st; /* tt, st: the parameters a training run changes */
  mc_data d;
} F;

static mc_train_cfg train_cfg(void);

static int setup(void **s) {
  (void)s;
  snprintf(F.dir, sizeof F.dir, "/tmp/mc_nomem_XXXXXX");
  if (!mkdtemp(F.dir)) return -1;
  snprintf(F.ckpt, sizeof F.ckpt, "%s/a.safetensors", F.dir);
  snprintf(F.curve, sizeof F.curve, "%s/line.safetensors", F.dir);
  snprintf(F.csv, sizeof F.csv, "%s/path.csv", F.dir);
  snprintf(F.json, sizeof F.json, "%s/path.json", F.dir);
  snprintf(F.train, sizeof F.train, "%s/t.safetensors", F.dir);
  snprintf(F.log, sizeof F.log, "%s/t.log.jsonl", F.dir);
  snprintf(F.pair, sizeof F.pair, "%s/p.safetensors", F.dir);
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_h = p.in_w = 8;
  if (mc_model_from_spec(&F.m, "nomem", SPEC, &p)) return -1;
  tu_random_params(F.m, 1, &F.ta, &F.sa);
  tu_random_params(F.m, 2, &F.tb, &F.sb);
  F.tb2 = mc_malloc(sizeof(float) * (F.m->n_theta + 1));
  F.sb2 = mc_malloc(sizeof(float) * (F.m->n_state + 1));
  /* the plane's third model: B with a little of A in it (not collinear) */
  F.tc = mc_malloc(sizeof(float) * (F.m->n_theta + 1));
  F.tt = mc_aligned_alloc(sizeof(float) * (F.m->n_theta + 1));
  F.st = mc_aligned_alloc(sizeof(float) * (F.m->n_state + 1));
  for (size_t i = 0; i < F.m->n_theta; i++) F.tc[i] = 0.5f * F.tb[i] + 0.3f * F.ta[i] + 0.01f * (float)(i % 7);
  F.d.train = tu_synth_data(48, 1, 8, 8, 3);
  F.d.test = tu_synth_data(24, 1, 8, 8, 4);
  const mc_ckpt_part part = {"", F.ta, F.sa};
  if (mc_ckpt_save(F.ckpt, F.m, &part, 1, NULL, 0)) return -1;
  /* the run train_resume resumes */
  mc_train_cfg c = train_cfg();
  c.out = F.train;
  c.log_path = F.log;
  memcpy(F.tt, F.ta, sizeof(float) * F.m->n_theta);
  memcpy(F.st, F.sa, sizeof(float) * F.m->n_state);
  return mc_train(&c, F.m, F.tt, F.st, &F.d, MC_BACKEND_REF) ? -1 : 0;
}

static int teardown(void **s) {
  (void)s;
  mc_test_fail_alloc(0);
  mc_model_free(F.m);
  free(F.ta); free(F.sa); free(F.tb); free(F.sb); free(F.tb2); free(F.sb2); free(F.tc);
  free(F.tt); free(F.st);
  mc_data_free(&F.d);
  tu_sh("rm -rf '%s'", F.dir);
  return 0;
}

/* Runs fn with the n-th allocation failing for every n up to the count of
 * a clean run (and one past it); `tolerated`: how many of those failures
 * may end in MC_OK (best-effort allocations). */
static void sweep(const char *name, mc_status (*fn)(void), int tolerated) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  mc_test_fail_alloc(0);
  mc_status st = fn();
  if (st) fail_msg("%s, clean run: %s", name, mc_errmsg());
  const long count = mc_test_fail_alloc(0);
  int nomem = 0, ok = 0;
  for (long n = 1; n <= count + 1; n++) {
    mc_test_fail_alloc(n);
    st = fn();
    mc_test_fail_alloc(0);
    if (n > count) {
      if (st) fail_msg("%s, no allocation failed (n = %ld): %s", name, n, mc_errmsg());
    } else if (st == MC_ENOMEM) {
      if (!strstr(mc_errmsg(), "out of memory")) fail_msg("%s, n = %ld: MC_ENOMEM, but '%s'", name, n, mc_errmsg());
      nomem++;
    } else if (st == MC_OK) {
      ok++;
    } else {
      fail_msg("%s, allocation %ld of %ld failed: %s (%s), not MC_ENOMEM", name, n, count, mc_status_name(st),
               mc_errmsg());
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("  %-36s %4ld allocations: %4d MC_ENOMEM, %d tolerated  (%.1fs)\n", name, count, nomem, ok,
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  assert_int_equal(nomem + ok, count);
  assert_true(ok <= tolerated);
}

static mc_status ckpt_load(void) {
  mc_model *m;
  float *th, *st;
  mc_status s = mc_ckpt_load(F.ckpt, NULL, NULL, &m, &th, &st);
  if (!s) {
    mc_model_free(m);
    free(th);
    free(st);
  }
  return s;
}

static mc_status ckpt_save(void) {
  const mc_ckpt_part parts[2] = {{"a.", F.ta, F.sa}, {"b.", F.tb, NULL}};
  const mc_kv extra = {"note", "nomem"};
  return mc_ckpt_save(F.ckpt, F.m, parts, 2, &extra, 1);
}

/* on the reference backend (the path covers oneDNN's plans);
 * weight matching without data: no correlation diagnostics */
static mc_status align(mc_align_method method) {
  mc_alignment al;
  const mc_dataset *ds = method == MC_ALIGN_CORR ? &F.d.train : NULL;
  mc_status st = mc_align_run(F.m, method, F.ta, F.sa, F.tb, F.sb, ds, 32, 16, 7, MC_BACKEND_REF, NULL, &al, F.tb2,
                              F.sb2);
  mc_alignment_free(&al);
  return st;
}
static mc_status align_corr(void) { return align(MC_ALIGN_CORR); }
static mc_status align_weights(void) { return align(MC_ALIGN_WEIGHTS); }

static const mc_path_opts OPTS = {.bn_samples = 32, .test_samples = 24, .bn_recompute = 1, .batch = 16,
                                  .repair = MC_REPAIR_REPAIR};

static mc_status path_and_results(void) {
  const mc_curve c = {MC_CURVE_LINEAR, 0, F.m->n_theta, F.ta, F.tb, NULL};
  mc_path_result r;
  mc_status st = mc_path_eval(F.m, &c, F.sa, F.sb, &F.d, 3, &OPTS, MC_BACKEND_DNNL, &r);
  if (st) return st;
  st = mc_path_csv(F.csv, &r);
  mc_path_metrics pm;
  mc_path_metrics_compute(&r, &pm);
  json_t *j = mc_path_json(&r, &pm);
  if (!st) st = mc_json_write(F.json, j);
  json_decref(j);
  mc_path_result_free(&r);
  return st;
}

static mc_status plane(void) {
  const double range[4] = {-0.1, 1.1, -0.1, 1.1};
  mc_path_opts o = OPTS;
  o.repair = MC_REPAIR_RESET;
  mc_plane_result r;
  mc_status st = mc_plane_eval(F.m, F.ta, F.tb, F.tc, &F.d, 2, range, &o, MC_BACKEND_REF, &r);
  if (!st) mc_plane_result_free(&r);
  return st;
}

static mc_status curve_file(void) {
  mc_curve_file cf = {.m = F.m, .c = {MC_CURVE_LINEAR, 0, F.m->n_theta, F.ta, F.tb, NULL}, .a = F.ta, .b = F.tb,
                      .sa = F.sa, .sb = F.sb, .align = "none"};
  mc_status st = mc_curve_save(F.curve, &cf, NULL, 0);
  if (st) return st;
  mc_curve_file back;
  if (!(st = mc_curve_load(F.curve, &back))) mc_curve_file_free(&back);
  return st;
}

static mc_status batches(void) {
  mc_batches b;
  mc_status st = mc_batches_init(&b, &F.d.train, 40, 16);
  if (st) return st;
  int64_t seen = 0;
  for (int64_t k; (k = mc_batches_next(&b)) > 0;) seen += k;
  mc_batches_free(&b);
  return seen == 40 ? MC_OK : mc_error(MC_EINTERNAL, "batched %lld of 40 rows", (long long)seen);
}

/* one epoch of 3 batches and the test pass; setup() runs it once with
 * OUT.train and OUT for train_resume */
static mc_train_cfg train_cfg(void) {
  mc_train_cfg c = {.epochs = 1, .batch = 16, .momentum = 0.9, .wd = 5e-4, .nesterov = 1, .seed = 3,
                    .eval_every = 1, .data_name = "synth"};
  mc_schedule_parse("const", &c.sched);
  c.sched.lr = 0.01;
  c.sched.epochs = 1;
  return c;
}

static mc_status train(void) {
  memcpy(F.tt, F.ta, sizeof(float) * F.m->n_theta);
  memcpy(F.st, F.sa, sizeof(float) * F.m->n_state);
  const mc_train_cfg c = train_cfg();
  return mc_train(&c, F.m, F.tt, F.st, &F.d, MC_BACKEND_REF);
}

/* what mc_train writes after an epoch (the pair OUT.train, OUT), written
 * elsewhere: a sweep of mc_train with the pair costs seconds of spinning
 * OpenMP threads on a busy machine */
static mc_status train_pair(void) {
  const mc_kv kv = {"modeconn.seed", "3"};
  const mc_ckpt_part part = {"", F.ta, F.sa};
  const mc_ckpt_part tparts[2] = {{"model.", F.ta, F.sa}, {"momentum.", F.tb, NULL}};
  return mc_resume_save(F.pair, F.m, tparts, 2, &part, 1, &kv, 1, 1, "0123456789abcdef");
}

/* resume of setup()'s run at its end: opens its checkpoint pair
 * (mc_resume_open), loads model and momentum, keeps the log's records */
static mc_status train_resume(void) {
  mc_train_cfg c = train_cfg();
  c.resume = F.train;
  c.log_path = F.log;
  return mc_train(&c, F.m, F.tt, F.st, &F.d, MC_BACKEND_REF);
}

static void curve_cfg(mc_curve_train_cfg *c) {
  *c = (mc_curve_train_cfg){.epochs = 1, .batch = 16, .momentum = 0.9, .wd = 5e-4, .nesterov = 1, .seed = 7,
                            .bn_samples = 32, .test_samples = 24};
  assert_int_equal(mc_schedule_parse("cosine", &c->sched), MC_OK);
  c->sched.lr = 0.01;
  c->sched.epochs = 1;
}

/* the bends (mc_curve_init_bends), one epoch, the midpoint's BN recompute
 * and test pass */
static mc_status curve_train(void) {
  mc_curve c = {MC_CURVE_BEZIER, 1, F.m->n_theta, F.ta, F.tb, NULL};
  mc_status st = mc_curve_init_bends(&c);
  if (st) return st;
  mc_curve_train_cfg cfg;
  curve_cfg(&cfg);
  st = mc_curve_train(&cfg, F.m, &c, &F.d, MC_BACKEND_REF);
  mc_curve_free_bends(&c);
  return st;
}

/* one P-step epoch, the rounding among 4 candidates (previous, LAP, 2 BvN
 * samples) on 32 images, one phi epoch */
static mc_status pam(void) {
  mc_pam_cfg c = {.p_epochs = 1, .nu = 1, .proj_iters = 5, .bvn_terms = 3, .samples_rounding = 2, .outer = 1,
                  .select_samples = 32};
  curve_cfg(&c.phi);
  assert_int_equal(mc_schedule_parse("paper", &c.p_sched), MC_OK);
  c.p_sched.lr = 0.05;
  float *bend = NULL;
  mc_pam_result res;
  mc_status st = mc_pam_run(&c, F.m, F.ta, F.tb, F.sb, &F.d, MC_BACKEND_REF, F.tb2, F.sb2, &bend, &res);
  if (!st) {
    free(bend);
    mc_pam_result_free(&res);
  }
  return st;
}

static void test_library(void **s) {
  (void)s;
  sweep("checkpoint load", ckpt_load, 0);
  sweep("plane 2x2 (BN reset)", plane, 0);
  sweep("checkpoint save (2 parts)", ckpt_save, 1); /* the directory fsync's name */
  sweep("align corr", align_corr, 0);
  sweep("align weights", align_weights, 0);
  sweep("path (3 points, REPAIR) + CSV/JSON", path_and_results, 0);
  sweep("curve file save + load", curve_file, 1);
  sweep("batches (40 rows by 16)", batches, 0);
  sweep("train (1 epoch, 3 batches)", train, 0);
  sweep("checkpoint pair (OUT.train, OUT)", train_pair, 2); /* the fsync of each file's directory */
  sweep("train --resume (at its end)", train_resume, 0);
  sweep("curve train (Bezier, 1 epoch)", curve_train, 0);
  sweep("PAM (1 P epoch, 4 candidates, 1 phi)", pam, 0);
}

/* The binary: MC_TEST_FAIL_ALLOC=1 fails its first library allocation
 * (the buffer that reads the checkpoint; train's lock-file name; plane's
 * copy of --models, before any work): exit 1, the message on stderr. */
static void test_cli(void **s) {
  (void)s;
  const char *bin = tu_env("MC_BIN", "./modeconn");
  char err[128];
  snprintf(err, sizeof err, "%s/err.txt", F.dir);
  int rc = tu_sh("MC_TEST_FAIL_ALLOC=1 '%s' info --model '%s' >/dev/null 2>'%s'", bin, F.ckpt, err);
  assert_int_equal(rc, 1);
  assert_int_equal(tu_sh("grep -q 'out of memory allocating' '%s'", err), 0);
  assert_int_equal(tu_sh("'%s' info --model '%s' >/dev/null", bin, F.ckpt), 0);
  rc = tu_sh("MC_TEST_FAIL_ALLOC=1 '%s' train --out '%s/cli.safetensors' >/dev/null 2>'%s'", bin, F.dir, err);
  assert_int_equal(rc, 1);
  assert_int_equal(tu_sh("grep -q 'out of memory allocating .* bytes for the name of --out .*lock file' '%s'", err), 0);
  rc = tu_sh("MC_TEST_FAIL_ALLOC=1 '%s' plane --models a,b,c >/dev/null 2>'%s'", bin, err);
  assert_int_equal(rc, 1);
  assert_int_equal(tu_sh("grep -q 'out of memory allocating 6 bytes for a copy of --models' '%s'", err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_library), cmocka_unit_test(test_cli)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
