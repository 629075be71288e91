/* PAM runs (src/curve/pam.c) on a Fashion-MNIST subset with a small BN
 * mlp: --p-epochs 0 with the proximal pull off equals plain Bezier
 * training; the rounding never chooses worse than the previous
 * permutation; --outer 2 (issue 17): every round's phases in the log, its
 * choice never worse than its previous permutation, each round going on
 * from the last one's permutation and phi, B composed with the initial
 * alignment, the same bytes for a fixed seed; and the CLI's `curve train
 * --method pam` end to end.  PAM's maths are in tests/test_pam.c. */
#include "testutil.h"

#include "curve/pam.h"
#include "eval/eval.h"
#include "io/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_fashion(mc_data *d, int64_t ntrain, int64_t ntest) {
  if (mc_data_load(d, "fashion-mnist")) {
    print_message("Fashion-MNIST not found (%s)\n", mc_errmsg());
    return 0;
  }
  mc_dataset_truncate(&d->train, ntrain);
  mc_dataset_truncate(&d->test, ntest);
  return 1;
}

/* two briefly trained endpoints of a small BN mlp */
static void endpoints(const mc_model *m, const mc_data *d, float **ta, float **sa, float **tb, float **sb) {
  float **t[2] = {ta, tb}, **st[2] = {sa, sb};
  for (int k = 0; k < 2; k++) {
    *t[k] = mc_aligned_alloc(sizeof(float) * (m->n_theta + 1));
    *st[k] = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
    mc_model_init(m, *t[k], *st[k], 100 + (uint64_t)k);
    mc_train_cfg c = {0};
    c.epochs = 2;
    c.batch = 100;
    c.momentum = 0.9;
    c.wd = 5e-4;
    c.nesterov = 1;
    c.seed = 100 + (uint64_t)k;
    mc_schedule_parse("const", &c.sched);
    c.sched.lr = 0.05;
    c.sched.epochs = 2;
    assert_int_equal(mc_train(&c, (mc_model *)m, *t[k], *st[k], d, MC_BACKEND_AUTO), MC_OK);
  }
}

/* Fashion-MNIST subset, a small BN mlp and its two endpoints */
typedef struct {
  mc_data d;
  mc_model *m;
  float *ta, *sa, *tb, *sb;
} fm_pair;

static int fm_pair_setup(fm_pair *f) {
  if (!load_fashion(&f->d, 2000, 500)) return 0;
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.widths = "12,10";
  p.bn = 1;
  if (mc_model_create(&f->m, "mlp", &p)) fail_msg("mlp: %s", mc_errmsg());
  endpoints(f->m, &f->d, &f->ta, &f->sa, &f->tb, &f->sb);
  return 1;
}

static void fm_pair_free(fm_pair *f) {
  free(f->ta); free(f->sa); free(f->tb); free(f->sb);
  mc_model_free(f->m);
  mc_data_free(&f->d);
}

static void phi_cfg(mc_curve_train_cfg *c, int64_t epochs) {
  memset(c, 0, sizeof *c);
  c->epochs = epochs;
  c->batch = 100;
  c->momentum = 0.9;
  c->wd = 5e-4;
  c->nesterov = 1;
  c->seed = 7;
  mc_schedule_parse("cosine", &c->sched);
  c->sched.lr = 0.05;
  c->sched.epochs = epochs;
  c->eval_every = 0;
  c->bn_samples = 500;
  c->test_samples = 500;
}

static void pam_cfg(mc_pam_cfg *c, int64_t p_epochs, double nu, int64_t phi_epochs) {
  memset(c, 0, sizeof *c);
  phi_cfg(&c->phi, phi_epochs);
  c->p_epochs = p_epochs;
  mc_schedule_parse("paper", &c->p_sched);
  c->p_sched.lr = 0.05;
  c->nu = nu;
  c->proj_iters = 20;
  c->bvn_terms = 11;
  c->samples_rounding = 8;
  c->outer = 1;
  c->select_samples = 1000;
}

static void test_pam_p0_equals_bezier(void **s) {
  (void)s;
  fm_pair f;
  if (!fm_pair_setup(&f)) skip();
  const mc_model *m = f.m;
  const float *ta = f.ta, *tb = f.tb, *sb = f.sb;
  const mc_data *dd = &f.d;
  /* plain Bezier */
  mc_curve c = {MC_CURVE_BEZIER, 1, m->n_theta, ta, tb, NULL};
  assert_int_equal(mc_curve_init_bends(&c), MC_OK);
  mc_curve_train_cfg cc;
  phi_cfg(&cc, 2);
  assert_int_equal(mc_curve_train(&cc, m, &c, dd, MC_BACKEND_AUTO), MC_OK);
  /* PAM, no P-step, no pull */
  mc_pam_cfg pc;
  pam_cfg(&pc, 0, INFINITY, 2);
  float *bo = mc_aligned_alloc(sizeof(float) * m->n_theta), *so = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
  float *bend = NULL;
  mc_pam_result res;
  assert_int_equal(mc_pam_run(&pc, m, ta, tb, sb, dd, MC_BACKEND_AUTO, bo, so, &bend, &res), MC_OK);
  const double rel = tu_max_rel(bend, c.bends[0], m->n_theta, 1e-3);
  size_t same = 0;
  for (size_t i = 0; i < m->n_theta; i++) same += bend[i] == c.bends[0][i];
  printf("  --p-epochs 0 --nu inf vs plain Bezier (2 epochs, same seed): max rel diff of the control point %.1e, "
         "%zu of %zu entries bitwise equal\n", rel, same, m->n_theta);
  assert_true(rel <= 1e-5);
  assert_memory_equal(bo, tb, sizeof(float) * m->n_theta);
  for (int g = 0; g < m->n_groups; g++) assert_int_equal(res.moved[g], 0);
  mc_pam_result_free(&res);
  mc_curve_free_bends(&c);
  free(bend); free(bo); free(so);
  fm_pair_free(&f);
}

/* A PAM run's outputs; pam_run_checked fills it from B given as bin/sbin
 * and checks what holds for every run: in each round the chosen
 * candidate's selection loss is the lowest evaluated, so never above the
 * previous permutation's (always evaluated), and b_out/sb_out are bin/sbin
 * under the reported permutation, bit for bit. */
typedef struct {
  float *bend, *bo, *so;
  mc_pam_result res;
} pam_out;

static void pam_run_checked(const mc_pam_cfg *pc, const fm_pair *f, const float *bin, const float *sbin, pam_out *o) {
  const mc_model *m = f->m;
  const size_t tb = sizeof(float) * m->n_theta, sbytes = sizeof(float) * m->n_state;
  o->bo = mc_aligned_alloc(tb);
  o->so = mc_aligned_alloc(sbytes + sizeof(float));
  o->bend = NULL;
  assert_int_equal(mc_pam_run(pc, m, f->ta, bin, sbin, &f->d, MC_BACKEND_AUTO, o->bo, o->so, &o->bend, &o->res), MC_OK);
  assert_int_equal(o->res.outer, pc->outer);
  for (int r = 0; r < pc->outer; r++) {
    const double *cl = o->res.cand_loss + (size_t)r * (size_t)o->res.n_cand;
    const int ch = o->res.chosen[r];
    printf("  outer %d of %d, rounding: previous %.6f, LAP %.6f, chose candidate %d (%.6f)\n", r + 1, pc->outer, cl[0],
           cl[1], ch, cl[ch]);
    assert_true(isfinite(cl[0]) && isfinite(cl[ch]));
    for (int q = 0; q < o->res.n_cand; q++) assert_true(!isfinite(cl[q]) || cl[ch] <= cl[q]);
  }
  float *want = mc_aligned_alloc(tb), *sw = mc_aligned_alloc(sbytes + sizeof(float));
  mc_model_permute(m, o->res.perm, bin, sbin, want, sw);
  assert_memory_equal(o->bo, want, tb);
  assert_memory_equal(o->so, sw, sbytes);
  free(want);
  free(sw);
}

static void pam_out_free(pam_out *o) {
  free(o->bend); free(o->bo); free(o->so);
  mc_pam_result_free(&o->res);
}

/* The JSON-lines log of an `outer` run: per outer iteration o, in order, the
 * marker {"phase": "p-step", "outer": o}, p_epochs P-step epoch records
 * (epoch 1..p_epochs), the marker {"phase": "phi-step", "outer": o} and
 * phi_epochs phi-step epoch records. */
static void check_pam_log(const char *path, int outer, int64_t p_epochs, int64_t phi_epochs) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  char line[4096];
  int o = 0, phase = 0; /* 1: in a P-step, 2: in a phi-step */
  int64_t ep = 0, recs[3] = {0, 0, 0};
  while (fgets(line, sizeof line, fp)) {
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    assert_non_null(j);
    const char *ph = json_string_value(json_object_get(j, "phase"));
    if (ph) {
      const int pstep = !strcmp(ph, "p-step");
      assert_true(pstep || !strcmp(ph, "phi-step"));
      assert_int_equal(ep, phase == 1 ? p_epochs : phase == 2 ? phi_epochs : 0); /* the last phase is complete */
      assert_int_equal(phase, pstep ? (o ? 2 : 0) : 1);
      o += pstep;
      assert_int_equal(json_integer_value(json_object_get(j, "outer")), o);
      phase = pstep ? 1 : 2;
      ep = 0;
    } else {
      assert_true(phase > 0);
      assert_int_equal(json_integer_value(json_object_get(j, "epoch")), ++ep);
      assert_true(json_is_number(json_object_get(j, "train_loss")));
      recs[phase]++;
    }
    json_decref(j);
  }
  fclose(fp);
  printf("  log: %d outer iterations, %lld P-step and %lld phi-step epoch records\n", o, (long long)recs[1],
         (long long)recs[2]);
  assert_int_equal(o, outer);
  assert_int_equal(phase, 2);
  assert_int_equal(ep, phi_epochs);
  assert_int_equal(recs[1], outer * p_epochs);
  assert_int_equal(recs[2], outer * phi_epochs);
}

/* --outer 1 and 2 (issue 17) from B under a random initial alignment al.
 * Round 1 of outer = 2 is the outer = 1 run bit for bit (the same seeds),
 * and round 2 goes on from it: its previous candidate is outer = 1's
 * permutation, scored with outer = 1's phi (the P-step starts from that
 * permutation, phi is kept).  b_out is the raw B under al composed with the
 * reported permutation; the log has each round's phases; a second run with
 * the same seed gives the same bytes. */
static void test_pam_outer(void **s) {
  (void)s;
  fm_pair f;
  if (!fm_pair_setup(&f)) skip();
  const mc_model *m = f.m;
  const size_t tb = sizeof(float) * m->n_theta, sbytes = sizeof(float) * m->n_state;
  mc_rng r;
  mc_rng_seed(&r, 23);
  int **al = tu_perms_alloc(m), **comp = tu_perms_alloc(m);
  tu_random_perms(m, &r, al);
  float *bin = mc_aligned_alloc(tb), *sbin = mc_aligned_alloc(sbytes + sizeof(float));
  mc_model_permute(m, al, f.tb, f.sb, bin, sbin);
  char dir[64], log[96];
  snprintf(dir, sizeof dir, "/tmp/mc_pam_outer_XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(log, sizeof log, "%s/log.jsonl", dir);
  mc_pam_cfg pc;
  pam_cfg(&pc, 2, 1000, 1);
  pc.p_sched.lr = 0.5; /* move P visibly in 2 epochs of 20 steps */
  pam_out o1, o2, again;
  pam_run_checked(&pc, &f, bin, sbin, &o1);
  pc.outer = 2;
  pc.log_path = log;
  pam_run_checked(&pc, &f, bin, sbin, &o2);
  check_pam_log(log, 2, pc.p_epochs, pc.phi.epochs);
  pc.log_path = NULL;
  pam_run_checked(&pc, &f, bin, sbin, &again);
  const int nc = o2.res.n_cand;
  /* round 1 = the outer = 1 run */
  assert_memory_equal(o2.res.cand_loss, o1.res.cand_loss, sizeof(double) * (size_t)nc);
  assert_int_equal(o2.res.chosen[0], o1.res.chosen[0]);
  /* round 2's previous candidate: outer 1's permutation under outer 1's phi */
  float *phi = mc_aligned_alloc(tb);
  for (size_t i = 0; i < m->n_theta; i++) phi[i] = o1.bend[i] - (f.ta[i] + 0.5f * (o1.bo[i] - f.ta[i]));
  mc_pam *p;
  assert_int_equal(mc_pam_create(&p, m, f.ta, bin, phi, pc.phi.batch, MC_BACKEND_AUTO), MC_OK);
  double prev;
  assert_int_equal(mc_pam_select_loss(p, o1.res.perm, &f.d.train, pc.select_samples, &prev), MC_OK);
  printf("  outer 1's permutation with its phi: selection loss %.9f; round 2's previous candidate %.9f\n", prev,
         o2.res.cand_loss[nc]);
  assert_true(prev == o2.res.cand_loss[nc]);
  /* and its P-step started at that permutation: it moves ~2 of 22 units'
   * mass off its start, so the LAP rounding is that permutation again (NaN:
   * a duplicate of the previous candidate); from the identity it is not */
  assert_true(isnan(o2.res.cand_loss[nc + 1]));
  /* B composed with the initial alignment: the raw B under al[perm[i]] */
  float *want = mc_aligned_alloc(tb), *sw = mc_aligned_alloc(sbytes + sizeof(float));
  int64_t moved = 0;
  for (int g = 0; g < m->n_groups; g++) {
    for (int64_t i = 0; i < m->groups[g].size; i++) comp[g][i] = al[g][o2.res.perm[g][i]];
    moved += o2.res.moved[g];
  }
  mc_model_permute(m, comp, f.tb, f.sb, want, sw);
  assert_memory_equal(o2.bo, want, tb);
  assert_memory_equal(o2.so, sw, sbytes);
  /* deterministic for a fixed seed */
  assert_memory_equal(again.bend, o2.bend, tb);
  assert_memory_equal(again.bo, o2.bo, tb);
  assert_memory_equal(again.res.cand_loss, o2.res.cand_loss, sizeof(double) * 2 * (size_t)nc);
  assert_memory_equal(again.res.chosen, o2.res.chosen, sizeof(int) * 2);
  for (int g = 0; g < m->n_groups; g++)
    assert_memory_equal(again.res.perm[g], o2.res.perm[g], sizeof(int) * (size_t)m->groups[g].size);
  printf("  outer 2: %lld units moved by PAM; the same bytes on a second run\n", (long long)moved);
  mc_pam_free(p);
  pam_out_free(&o1); pam_out_free(&o2); pam_out_free(&again);
  tu_perms_free(m, al); tu_perms_free(m, comp);
  free(bin); free(sbin); free(phi); free(want); free(sw);
  tu_sh("rm -rf '%s'", dir);
  fm_pair_free(&f);
}

/* mc_pam_round directly, from a non-identity previous permutation and a
 * perturbed P: never worse than the previous one, the winner's loss
 * reproduced when measured again. */
static void test_pam_rounding(void **s) {
  (void)s;
  fm_pair f;
  if (!fm_pair_setup(&f)) skip();
  const mc_model *m = f.m;
  const mc_data *dd = &f.d;
  float *phi = mc_calloc(m->n_theta, sizeof(float));
  mc_pam *p;
  assert_int_equal(mc_pam_create(&p, m, f.ta, f.tb, phi, 100, MC_BACKEND_AUTO), MC_OK);
  mc_rng r;
  mc_rng_seed(&r, 16);
  int **prev = tu_perms_alloc(m), **keep = tu_perms_alloc(m);
  for (int trial = 0; trial < 3; trial++) {
    tu_random_ds(m, &r, mc_pam_matrices(p), 2.0);
    if (trial > 0) tu_random_perms(m, &r, prev);
    for (int g = 0; g < m->n_groups; g++) memcpy(keep[g], prev[g], sizeof(int) * (size_t)m->groups[g].size);
    double c2[10], again, old;
    int ch;
    assert_int_equal(mc_pam_round(p, prev, 11, 8, 5 + (uint64_t)trial, &dd->train, 1000, c2, &ch), MC_OK);
    assert_int_equal(mc_pam_select_loss(p, keep, &dd->train, 1000, &old), MC_OK);
    assert_int_equal(mc_pam_select_loss(p, prev, &dd->train, 1000, &again), MC_OK);
    printf("  trial %d: previous %.5f, chosen candidate %d %.5f (measured again %.5f)\n", trial, c2[0], ch, c2[ch], again);
    assert_true(c2[0] == old);
    assert_true(again == c2[ch]);
    assert_true(again <= old);
  }
  tu_perms_free(m, prev);
  tu_perms_free(m, keep);
  mc_pam_free(p);
  free(phi);
  fm_pair_free(&f);
}

/* `modeconn curve train --method pam --align corr --outer 2` end to end,
 * then `curve eval` on the file it wrote; the --perm-out JSON has align
 * --perm-out's shape and one rounding per outer iteration, the log both
 * rounds' phases, and the curve file's B is the raw B under the composed
 * permutation that perm.json reports, bit for bit. */
static void test_pam_cli(void **s) {
  (void)s;
  const char *bin = tu_env("MC_BIN", "./modeconn");
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/mc_pam_XXXXXX");
  assert_non_null(mkdtemp(dir));
#define SM "--arch mlp --widths 32,16 --bn --train-subset 2000 --test-subset 500 --batch 100"
  if (tu_sh("%s train " SM " --epochs 1 --seed 1 --out %s/a.st > /dev/null 2>&1", bin, dir)) {
    tu_sh("rm -rf '%s'", dir);
    skip(); /* no Fashion-MNIST */
  }
  assert_int_equal(tu_sh("%s train " SM " --epochs 1 --seed 2 --out %s/b.st > /dev/null 2>&1", bin, dir), 0);
  assert_int_equal(tu_sh("%s curve train " SM " --a %s/a.st --b %s/b.st --method pam --align corr --samples 1000 "
                         "--p-epochs 1 --phi-epochs 1 --outer 2 --samples-rounding 4 --select-samples 500 --bn-samples 500 "
                         "--out %s/c.st --perm-out %s/perm.json --log %s/log.jsonl > %s/log.txt 2>&1",
                         bin, dir, dir, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q 'pam P-step epoch   1/1' %s/log.txt && grep -q 'pam rounding 2' %s/log.txt && "
                         "grep -q 'curve epoch   1/1' %s/log.txt", dir, dir, dir), 0);
  char path[128];
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  check_pam_log(path, 2, 1, 1);
  assert_int_equal(tu_sh("%s curve eval --curve %s/c.st --points 3 --bn-samples 500 --test-subset 500 --json %s/e.json "
                         "> /dev/null 2>&1", bin, dir, dir), 0);
  snprintf(path, sizeof path, "%s/perm.json", dir);
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  assert_non_null(j);
  json_t *groups = json_object_get(j, "groups");
  assert_int_equal(json_array_size(groups), 2);
  for (size_t g = 0; g < 2; g++) {
    json_t *o = json_array_get(groups, g);
    json_t *pm = json_object_get(o, "permutation");
    assert_int_equal(json_array_size(pm), g == 0 ? 32 : 16);
    assert_true(json_is_integer(json_object_get(o, "pam_moved")));
    assert_true(json_is_number(json_object_get(o, "mean_corr_after")));
  }
  assert_string_equal(json_string_value(json_object_get(j, "method")), "pam");
  json_t *rounds = json_object_get(j, "rounding");
  assert_int_equal(json_array_size(rounds), 2);
  for (size_t o = 0; o < 2; o++) {
    json_t *ro = json_array_get(rounds, o), *cl = json_object_get(ro, "candidate_loss");
    const double prev = json_number_value(json_array_get(cl, 0));
    const double ch = json_number_value(json_array_get(cl, (size_t)json_integer_value(json_object_get(ro, "chosen"))));
    assert_int_equal(json_integer_value(json_object_get(ro, "outer")), (json_int_t)o + 1);
    assert_true(ch <= prev);
  }
  /* the curve's B: the raw B under perm.json's (composed) permutation */
  mc_curve_file cf;
  mc_model *mb;
  float *rb, *rs;
  char cpath[128];
  snprintf(cpath, sizeof cpath, "%s/c.st", dir);
  assert_int_equal(mc_curve_load(cpath, &cf), MC_OK);
  snprintf(cpath, sizeof cpath, "%s/b.st", dir);
  assert_int_equal(mc_ckpt_load(cpath, NULL, NULL, &mb, &rb, &rs), MC_OK);
  int **perm = tu_perms_alloc(cf.m);
  for (int g = 0; g < cf.m->n_groups; g++) {
    json_t *pm = json_object_get(json_array_get(groups, (size_t)g), "permutation");
    for (int64_t i = 0; i < cf.m->groups[g].size; i++) perm[g][i] = (int)json_integer_value(json_array_get(pm, (size_t)i));
  }
  float *want = mc_aligned_alloc(sizeof(float) * cf.m->n_theta), *sw = mc_aligned_alloc(sizeof(float) * (cf.m->n_state + 1));
  mc_model_permute(cf.m, perm, rb, rs, want, sw);
  assert_memory_equal(cf.b, want, sizeof(float) * cf.m->n_theta);
  assert_memory_equal(cf.sb, sw, sizeof(float) * cf.m->n_state);
  tu_perms_free(cf.m, perm);
  free(want); free(sw); free(rb); free(rs);
  mc_model_free(mb);
  mc_curve_file_free(&cf);
  json_decref(j);
  /* usage errors */
  assert_int_equal(tu_sh("%s curve train " SM " --a %s/a.st --b %s/b.st --method pam --kind chain --out %s/x.st "
                         "> /dev/null 2>&1", bin, dir, dir, dir), 2);
  assert_int_equal(tu_sh("%s curve train " SM " --a %s/a.st --b %s/b.st --method pam --nu 0 --out %s/x.st "
                         "> /dev/null 2>&1", bin, dir, dir, dir), 2);
  tu_sh("rm -rf '%s'", dir);
#undef SM
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pam_p0_equals_bezier), cmocka_unit_test(test_pam_rounding),
      cmocka_unit_test(test_pam_outer),            cmocka_unit_test(test_pam_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
