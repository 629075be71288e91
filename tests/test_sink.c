/* The library's message sink (core/sink.h, issue 12): mc_train, its
 * resume, curve training and PAM hand their epoch lines, notices and
 * progress to the sink in their configuration, and with none they write
 * nothing to stdout or stderr. */
#include "testutil.h"

#include "core/sink.h"
#include "curve/pam.h"
#include "train/train.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NTRAIN 400
#define BATCH 20 /* 20 steps an epoch: progress after steps 1, 17 and 20 */

typedef struct {
  char lines[64][1200];
  mc_msg_level level[64];
  int n_msg, n_progress, bad_progress, n_done; /* n_done: calls with done == total */
  char what[32];
} capture;

static void cap_msg(void *arg, mc_msg_level level, const char *text) {
  capture *c = arg;
  assert_true(c->n_msg < 64);
  assert_null(strchr(text, '\n')); /* one line, without its newline */
  snprintf(c->lines[c->n_msg], sizeof c->lines[0], "%s", text);
  c->level[c->n_msg++] = level;
}

static void cap_progress(void *arg, const mc_progress_info *p) {
  capture *c = arg;
  c->n_progress++;
  if (!(p->total > 0 && p->done >= 1 && p->done <= p->total && p->seconds >= 0 && !p->test)) c->bad_progress++;
  c->n_done += p->done == p->total;
  snprintf(c->what, sizeof c->what, "%s", p->what);
}

static int count_prefix(const capture *c, mc_msg_level level, const char *prefix) {
  int k = 0;
  for (int i = 0; i < c->n_msg; i++) k += c->level[i] == level && !strncmp(c->lines[i], prefix, strlen(prefix));
  return k;
}

typedef struct {
  mc_data d;
  mc_model *m;
  float *theta, *state;
} setup;

static void setup_make(setup *s) {
  memset(s, 0, sizeof *s);
  s->d.train = tu_synth_data(NTRAIN, 1, 8, 8, 31);
  s->d.test = tu_synth_data(100, 1, 8, 8, 32);
  s->m = tu_model("mlp", 1, 8, 8, 10);
  mc_dataset_mean_std(&s->d.train, s->m->norm_mean, s->m->norm_std);
  s->theta = mc_aligned_alloc(sizeof(float) * (s->m->n_theta + 1));
  s->state = mc_aligned_alloc(sizeof(float) * (s->m->n_state + 1));
  mc_model_init(s->m, s->theta, s->state, 5);
}

static void setup_free(setup *s) {
  free(s->theta);
  free(s->state);
  mc_model_free(s->m);
  mc_data_free(&s->d);
}

static mc_train_cfg train_cfg(int64_t epochs, const mc_sink *sink) {
  mc_train_cfg c = {.epochs = epochs, .batch = BATCH, .momentum = 0.9, .nesterov = 1, .seed = 5, .sink = sink};
  assert_int_equal(mc_schedule_parse("const", &c.sched), MC_OK);
  c.sched.lr = 0.05;
  c.sched.epochs = epochs;
  return c;
}

/* One epoch line per epoch (the last with its test figures), progress
 * within each epoch ending at done == total. */
static void test_train_sink(void **unused) {
  (void)unused;
  setup s;
  setup_make(&s);
  capture *c = calloc(1, sizeof *c);
  const mc_sink sink = {cap_msg, cap_progress, c};
  mc_train_cfg cfg = train_cfg(3, &sink);
  assert_int_equal(mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO), MC_OK);
  printf("  3 epochs: %d messages, %d progress calls (%d at done == total), last: %s\n", c->n_msg, c->n_progress,
         c->n_done, c->lines[c->n_msg - 1]);
  assert_int_equal(c->n_msg, 3);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "epoch   1/3  train loss "), 1);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "epoch   3/3  train loss "), 1);
  assert_non_null(strstr(c->lines[2], "  test loss "));
  assert_null(strstr(c->lines[0], "test loss"));
  assert_int_equal(c->n_progress, 3 * 3);
  assert_int_equal(c->n_done, 3);
  assert_int_equal(c->bad_progress, 0);
  assert_string_equal(c->what, "train");
  free(c);
  setup_free(&s);
}

/* The resume notice, and the one of an interrupted write (OUT behind
 * OUT.train), are MC_MSG_NOTE. */
static void test_resume_notes(void **unused) {
  (void)unused;
  setup s;
  setup_make(&s);
  char dir[] = "/tmp/mc_sink_XXXXXX", out[64], want[256];
  assert_non_null(mkdtemp(dir));
  snprintf(out, sizeof out, "%s/a.st", dir);
  mc_train_cfg cfg = train_cfg(1, NULL);
  cfg.out = out;
  assert_int_equal(mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO), MC_OK);
  assert_int_equal(tu_sh("cp %s %s/a1.st", out, dir), 0);
  capture *c = calloc(1, sizeof *c);
  const mc_sink sink = {cap_msg, cap_progress, c};
  cfg = train_cfg(2, &sink);
  cfg.out = cfg.resume = out;
  assert_int_equal(mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO), MC_OK);
  snprintf(want, sizeof want, "resuming %s at epoch 1 of 2", out);
  assert_int_equal(c->n_msg, 2);
  assert_string_equal(c->lines[0], want);
  assert_int_equal(c->level[0], MC_MSG_NOTE);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "epoch   2/2  "), 1);
  /* OUT back at epoch 1, OUT.train at 2 */
  assert_int_equal(tu_sh("cp %s/a1.st %s", dir, out), 0);
  memset(c, 0, sizeof *c);
  cfg = train_cfg(3, &sink);
  cfg.out = cfg.resume = out;
  assert_int_equal(mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO), MC_OK);
  printf("  %s\n  %s\n", c->lines[0], c->lines[1]);
  snprintf(want, sizeof want, "%s is at epoch 1, %s.train at 2 (a write was interrupted)", out, out);
  assert_int_equal(count_prefix(c, MC_MSG_NOTE, want), 1);
  snprintf(want, sizeof want, "resuming %s at epoch 2 of 3", out);
  assert_int_equal(count_prefix(c, MC_MSG_NOTE, want), 1);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "epoch   3/3  "), 1);
  free(c);
  tu_sh("rm -rf %s", dir);
  setup_free(&s);
}

/* PAM: the P-step's epoch line and diagnostics, the rounding summary and
 * the phi-step's curve epoch, all through the PAM configuration's sink. */
static void test_pam_sink(void **unused) {
  (void)unused;
  setup s;
  setup_make(&s);
  const mc_model *m = s.m;
  float *tb = mc_aligned_alloc(sizeof(float) * m->n_theta), *sb = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  mc_model_init(m, tb, sb, 6);
  capture *c = calloc(1, sizeof *c);
  const mc_sink sink = {cap_msg, cap_progress, c};
  mc_pam_cfg pc = {.p_epochs = 1, .nu = 1000, .proj_iters = 20, .bvn_terms = 11, .samples_rounding = 2, .outer = 1,
                   .select_samples = 100, .sink = &sink};
  pc.phi = (mc_curve_train_cfg){.epochs = 1, .batch = BATCH, .momentum = 0.9, .seed = 7, .bn_samples = 100};
  assert_int_equal(mc_schedule_parse("const", &pc.phi.sched), MC_OK);
  pc.phi.sched.lr = 0.05;
  pc.phi.sched.epochs = 1;
  assert_int_equal(mc_schedule_parse("paper", &pc.p_sched), MC_OK);
  pc.p_sched.lr = 0.05;
  float *bo = mc_aligned_alloc(sizeof(float) * m->n_theta), *so = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  float *bend = NULL;
  mc_pam_result res;
  assert_int_equal(mc_pam_run(&pc, m, s.theta, tb, sb, &s.d, MC_BACKEND_AUTO, bo, so, &bend, &res), MC_OK);
  for (int i = 0; i < c->n_msg; i++) printf("  %s\n", c->lines[i]);
  assert_int_equal(c->n_msg, 4);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "pam P-step epoch   1/1  train (random t) loss "), 1);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "    P: ||P - P0||_F "), 1);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "pam rounding 1: selection loss "), 1);
  assert_int_equal(count_prefix(c, MC_MSG_INFO, "curve epoch   1/1  train (random t) loss "), 1);
  assert_int_equal(c->n_done, 2); /* the P-step's epoch and the phi-step's */
  assert_int_equal(c->bad_progress, 0);
  assert_string_equal(c->what, "curve");
  mc_pam_result_free(&res);
  free(bend); free(bo); free(so); free(tb); free(sb); free(c);
  setup_free(&s);
}

static off_t size_of(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* No sink: training (with a resume) and PAM write nothing to stdout or
 * stderr (both redirected to files around the calls). */
static void test_null_sink_silent(void **unused) {
  (void)unused;
  setup s;
  setup_make(&s);
  char dir[] = "/tmp/mc_sink_XXXXXX", out[64], fo[64], fe[64];
  assert_non_null(mkdtemp(dir));
  snprintf(out, sizeof out, "%s/a.st", dir);
  snprintf(fo, sizeof fo, "%s/stdout", dir);
  snprintf(fe, sizeof fe, "%s/stderr", dir);
  fflush(stdout);
  fflush(stderr);
  const int keep1 = dup(1), keep2 = dup(2);
  const int o = open(fo, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(fe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(keep1 >= 0 && keep2 >= 0 && o >= 0 && e >= 0);
  dup2(o, 1);
  dup2(e, 2);
  mc_train_cfg cfg = train_cfg(2, NULL);
  cfg.out = out;
  cfg.eval_every = 1;
  const mc_status s1 = mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO);
  cfg.epochs = cfg.sched.epochs = 3;
  cfg.resume = out;
  const mc_status s2 = mc_train(&cfg, s.m, s.theta, s.state, &s.d, MC_BACKEND_AUTO);
  mc_pam_cfg pc = {.p_epochs = 1, .nu = 1000, .proj_iters = 20, .bvn_terms = 11, .samples_rounding = 2, .outer = 1,
                   .select_samples = 100};
  pc.phi = (mc_curve_train_cfg){.epochs = 1, .batch = BATCH, .momentum = 0.9, .seed = 7, .bn_samples = 100};
  mc_schedule_parse("const", &pc.phi.sched);
  pc.phi.sched.lr = 0.05;
  pc.phi.sched.epochs = 1;
  mc_schedule_parse("paper", &pc.p_sched);
  pc.p_sched.lr = 0.05;
  const size_t n = s.m->n_theta;
  float *bo = mc_aligned_alloc(sizeof(float) * n), *so = mc_aligned_alloc(sizeof(float) * (s.m->n_state + 1));
  float *bend = NULL;
  mc_pam_result res;
  const mc_status s3 = mc_pam_run(&pc, s.m, s.theta, s.theta, s.state, &s.d, MC_BACKEND_AUTO, bo, so, &bend, &res);
  fflush(stdout);
  fflush(stderr);
  dup2(keep1, 1);
  dup2(keep2, 2);
  close(keep1); close(keep2); close(o); close(e);
  assert_int_equal(s1, MC_OK);
  assert_int_equal(s2, MC_OK);
  assert_int_equal(s3, MC_OK);
  printf("  train 2 epochs, resume to 3, PAM: %lld bytes on stdout, %lld on stderr\n", (long long)size_of(fo),
         (long long)size_of(fe));
  assert_int_equal(size_of(fo), 0);
  assert_int_equal(size_of(fe), 0);
  mc_pam_result_free(&res);
  free(bend); free(bo); free(so);
  tu_sh("rm -rf %s", dir);
  setup_free(&s);
}

/* mc_msg: a line longer than its stack buffer arrives whole; no sink, or
 * a sink without msg, is silence. */
static void test_msg_long_line(void **unused) {
  (void)unused;
  capture *c = calloc(1, sizeof *c);
  const mc_sink sink = {cap_msg, NULL, c}, none = {NULL, NULL, NULL};
  char big[1100];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  mc_msg(&sink, MC_MSG_NOTE, "<%s>", big);
  mc_msg(NULL, MC_MSG_INFO, "nothing");
  mc_msg(&none, MC_MSG_INFO, "nothing");
  mc_sink_progress(&sink, &(mc_progress_info){"x", 1, 1, NAN, NAN, NAN, NULL, 0});
  assert_int_equal(c->n_msg, 1);
  assert_int_equal(strlen(c->lines[0]), sizeof big + 1);
  assert_int_equal(c->lines[0][0], '<');
  assert_int_equal(c->lines[0][sizeof big], '>');
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_train_sink), cmocka_unit_test(test_resume_notes),
                                     cmocka_unit_test(test_pam_sink), cmocka_unit_test(test_null_sink_silent),
                                     cmocka_unit_test(test_msg_long_line)};
  return tu_run_tests("sink", tests, sizeof tests / sizeof tests[0]);
}
