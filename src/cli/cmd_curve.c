/* `modeconn curve train|eval`: train a low-loss curve between two models
 * (optionally aligning B to A first) and evaluate it. */
#include "cli.h"

#include "align/align.h"
#include "curve/curve.h"
#include "curve_pam.h"
#include "io/results.h"

#include <stdlib.h>
#include <string.h>

int cmd_curve_eval(int argc, char **argv);

#define CURVE_RUN_FIELDS \
  "A, B, seed, data (and --train-subset), batch size, kind, bends, --align, --samples and the PGD flags"

/* The run id of a curve training: what must not change across --resume
 * (see mc_resume_open), the endpoints' contents included. */
static void curve_run_id(const mc_curve_train_cfg *cfg, const mc_model *m, const char *data, int64_t n_train,
                         const char *kind, int64_t bends, const char *align, int64_t samples, const float *a,
                         const float *sa, const float *b, const float *sb, char out[24]) {
  char buf[512];
  snprintf(buf, sizeof buf, "curve|%llu|%s|n%lld|%lld|%s|%lld|%s|%lld", (unsigned long long)cfg->seed, data,
           (long long)n_train, (long long)cfg->batch, kind, (long long)bends, align, (long long)samples);
  if (cfg->adv) { /* a robust run resumes only as the same attack */
    const size_t l = strlen(buf);
    snprintf(buf + l, sizeof buf - l, "|pgd:%.17g:%.17g:%d:%d:%llu", cfg->adv->eps, cfg->adv->alpha,
             cfg->adv->steps, cfg->adv->random_start, (unsigned long long)cfg->adv->seed);
  }
  uint64_t h = mc_run_hash(0, buf, strlen(buf));
  h = mc_run_hash(h, m->spec, strlen(m->spec));
  h = mc_run_hash(h, a, sizeof(float) * m->n_theta);
  h = mc_run_hash(h, sa, sizeof(float) * m->n_state);
  h = mc_run_hash(h, b, sizeof(float) * m->n_theta);
  h = mc_run_hash(h, sb, sizeof(float) * m->n_state);
  mc_run_id_str(h, out);
}

/* After every epoch of curve training: OUT.train, then OUT. */
typedef struct {
  const char *out, *run;
  const mc_curve_file *cf;
  const mc_kv *kv;
  int nkv;
} curve_ckpt;

static mc_status curve_epoch_save(void *arg, int64_t done, float *const *mom) {
  const curve_ckpt *k = arg;
  return mc_curve_ckpt_save(k->out, k->cf, mom, k->kv, k->nkv, done, k->run);
}

static int cmd_curve_train(int argc, char **argv) {
  static const cli_cmd cmd = {
      "curve train",
      "Train a curve theta(t) from A to B (or to B aligned to A): per batch one t ~ U(0,1), cross-entropy at\n"
      "theta(t) (BN in train mode) + 1/2 wd ||theta(t)||^2, gradients to the bends by the chain rule.\n"
      "Presets (--preset auto picks by dataset): cifar = paper (lr 0.1, schedule paper, 250 epochs);\n"
      "fashion = 20 epochs, lr 0.05, cosine. Explicit flags override the preset.\n"
      "--method pam: proximal alternating minimisation over the permutations and the quadratic Bezier curve\n"
      "(Tatro et al. 2020), started from B as aligned by --align (none = the raw B). Per outer iteration: a\n"
      "P-step (a dense matrix P_g per group acting on B's parameters, W' = P_out W P_in^T; per batch one t,\n"
      "CE at theta(t), SGD without momentum, lr --p-lr with schedule paper, pull P <- (P + (lr/nu) P0)/(1 +\n"
      "lr/nu), --proj-iters rounds of clamp-at-0 and the affine projection onto P1 = 1, 1^T P = 1); the rounding\n"
      "(the previous permutation, each P_g's LAP rounding, and --samples-rounding joint samples from the top\n"
      "--bvn-terms terms of each P_g's greedy Birkhoff-von Neumann decomposition; the lowest mean training CE\n"
      "along the curve over the first --select-samples images, batch i at t = i/(batches-1), BN in train mode,\n"
      "the same for every candidate, wins; ties keep the previous one); then a phi-step: the control point\n"
      "theta_c = A/2 + P(B)/2 + phi trained as a Bezier bend with the same pull on phi. The curve file's B is B\n"
      "permuted by the final permutation (composed with the alignment), so curve eval, plane and report work\n"
      "unchanged. Per-epoch progress lines for both phases; the JSON log gets {\"phase\": ...} markers.\n"
      "After every epoch (bezier/chain) the resume state (curve + momenta) is written atomically to OUT.train,\n"
      "then the curve to OUT, so --resume OUT continues exactly, even after a crash (pam: OUT at the end, no resume).\n"
      "--adv pgd: a robust curve: per batch PGD examples against theta(t) (BN in train mode), CE on them +\n"
      "1/2 wd ||theta(t)||^2; the t = 0.5 evaluations recompute BN on PGD training examples and add the robust\n"
      "test metrics. Align robust endpoints on clean inputs (default) or, with --align-adv, on PGD inputs.",
      "--a A --b B --out CURVE [--align corr|weights|none] [--kind bezier|chain|linear] [--bends K]\n"
      "       [--method bezier|pam [--p-epochs N] [--p-lr X] [--nu X|inf] [--phi-epochs N] ...] [options]",
      cmd_curve_train};
  cli_model_opts mo;
  cli_data_opts dopt;
  const char *pa, *pb, *out, *align_s, *kind_s, *sched, *preset, *log, *method_s, *perm_out, *resume;
  cli_pam_opts po;
  int64_t bends, samples, bn_samples;
  cli_sgd_opts so;
  cli_adv_opts ao;
  int align_adv;
  cli_opt opts[] = {{"a", OPT_STR, &pa, NULL, "endpoint A (t = 0)"},
                    {"b", OPT_STR, &pb, NULL, "endpoint B (t = 1)"},
                    {"out", OPT_STR, &out, NULL, "curve file to write (atomically, after every epoch, OUT.train first; "
                     "pam: at the end; OUT.lock guards it)"},
                    {"resume", OPT_STR, &resume, NULL, "continue an interrupted bezier/chain run from this curve file "
                     "and its .train file (the same " CURVE_RUN_FIELDS ", and the original --epochs, --lr, "
                     "--schedule)"},
                    {"align", OPT_STR, &align_s, "corr", "align B to A first: corr, weights or none"},
                    {"samples", OPT_INT, &samples, "10000", "images for the alignment statistics"},
                    {"kind", OPT_STR, &kind_s, "bezier", "bezier (degree bends+1), chain (polygonal) or linear"},
                    {"bends", OPT_INT, &bends, "1", "number of trainable bends (bezier 1 = the paper's quadratic)"},
                    {"preset", OPT_STR, &preset, "auto", "auto, cifar or fashion (see above)"},
                    {"epochs", OPT_INT, &so.epochs, "0", "epochs (0 = preset)"},
                    {"lr", OPT_DOUBLE, &so.lr, "0", "learning rate (0 = preset)"},
                    {"schedule", OPT_STR, &sched, NULL, "lr schedule (default: preset), as in 'train'"},
                    {"batch", OPT_INT, &so.batch, "128", "minibatch size"},
                    {"momentum", OPT_DOUBLE, &so.momentum, "0.9", "SGD momentum"},
                    {"no-nesterov", OPT_FLAG, &so.no_nesterov, NULL, "plain momentum instead of Nesterov"},
                    {"wd", OPT_DOUBLE, &so.wd, "5e-4", "L2 coefficient on theta(t): loss += wd/2 ||theta(t)||^2"},
                    {"seed", OPT_INT, &so.seed, "1", "seed: t samples, shuffling, augmentation"},
                    {"crop", OPT_INT, &so.crop, "-1", "random-crop padding (-1 = dataset default)"},
                    {"flip", OPT_STR, &so.flip, "auto", "random horizontal flip: on, off, auto"},
                    {"eval-every", OPT_INT, &so.eval_every, "5", "evaluate theta(0.5) (BN recomputed) every N epochs"},
                    {"bn-samples", OPT_INT, &bn_samples, "10000", "images for the BN recompute of those evaluations"},
                    {"log", OPT_STR, &log, NULL, "JSON-lines log (default: OUT.log.jsonl)"},
                    {"perm-out", OPT_STR, &perm_out, NULL,
                     "write the permutation of B (per group, with mean correlations) as JSON, as align --perm-out, "
                     "after the alignment (not with --resume); pam: the final one, with pam_moved per group and the rounding's candidate losses"},
                    {"method", OPT_STR, &method_s, "bezier", "bezier (train the bends) or pam (see above; quadratic "
                     "Bezier only)"},
                    {"p-epochs", OPT_INT, &po.p_epochs, "20", "pam: P-step epochs per outer iteration (0: none, no rounding)"},
                    {"p-lr", OPT_DOUBLE, &po.p_lr, "0.05", "pam: P-step learning rate (schedule paper over --p-epochs)"},
                    {"nu", OPT_STR, &po.nu, "1000", "pam: proximal weight nu of both phases, or inf (no pull)"},
                    {"proj-iters", OPT_INT, &po.proj_iters, "20", "pam: clamp + affine projection rounds per P-step"},
                    {"bvn-terms", OPT_INT, &po.bvn_terms, "11", "pam: BvN coefficients kept per group for sampling"},
                    {"samples-rounding", OPT_INT, &po.samples_rounding, "32", "pam: joint BvN samples among the rounding candidates"},
                    {"select-samples", OPT_INT, &po.select_samples, "10000", "pam: training images of the rounding's selection loss (0 = all)"},
                    {"outer", OPT_INT, &po.outer, "1", "pam: outer iterations (P-step, rounding, phi-step)"},
                    {"phi-epochs", OPT_INT, &po.phi_epochs, "0", "pam: phi-step epochs per outer iteration (0 = --epochs / preset)"},
                    CLI_ADV_OPTS(ao),
                    {"align-adv", OPT_FLAG, &align_adv, NULL, "--align corr on PGD examples of the images (each "
                     "model on its own, eval-mode BN; the PGD flags set the attack) instead of clean images"},
                    CLI_ALL_OPTS(dopt, mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  if (!pa || !pb || !out) return cli_usage("curve train", "--a, --b and --out are required");
  mc_curve_kind kind;
  mc_align_method method;
  int no_align;
  mc_backend be;
  mc_status st;
  if ((st = mc_curve_kind_parse(kind_s, &kind)) || (st = mc_align_method_parse(align_s, &method, &no_align)) ||
      (st = cli_sgd_check(&so, 1)) || (st = cli_runtime(&mo, &be)))
    return cli_fail(st);
  if (samples < 1 || bn_samples < 1)
    return cli_usage("curve train", "--samples and --bn-samples must be >= 1");
  const int pam = !strcmp(method_s, "pam");
  double nu = 0;
  if (!pam && strcmp(method_s, "bezier")) return cli_usage("curve train", "--method %s: expected bezier or pam", method_s);
  if (pam && (kind != MC_CURVE_BEZIER || bends != 1))
    return cli_usage("curve train", "--method pam trains the quadratic Bezier curve: --kind bezier --bends 1 (got --kind %s --bends %lld)",
                     kind_s, (long long)bends);
  if (pam && (st = cli_pam_check(&po, &nu))) return cli_usage("curve train", "%s", mc_errmsg());
  if (resume && (pam || perm_out))
    return cli_usage("curve train", "--resume: not with %s", pam ? "--method pam (PAM runs are not resumable)"
                     : "--perm-out (the original run wrote it after its alignment)");
  if (kind == MC_CURVE_LINEAR) bends = 0;
  else if (bends < 1 || bends > 64) return cli_usage("curve train", "--bends must be in 1..64");
  if (strcmp(preset, "auto") && strcmp(preset, "cifar") && strcmp(preset, "fashion"))
    return cli_usage("curve train", "--preset %s: expected auto, cifar or fashion", preset);
  /* before any work: the output is ours and writable */
  if ((st = cli_claim_out(out))) return cli_fail(st);
  mc_data d;
  if ((st = cli_load_data(&dopt, &d))) return cli_fail(st);
  int cifar = !strcmp(preset, "cifar") || (!strcmp(preset, "auto") && !strncmp(d.name, "cifar", 5));
  mc_pgd pgd;
  int adv_on;
  if (align_adv) { /* the attack flags hold whether or not the curve is robust */
    const char *keep = ao.adv;
    ao.adv = "pgd";
    st = cli_adv_setup(&ao, d.train.c, &pgd, &adv_on);
    ao.adv = keep;
  }
  if (!st && align_adv && (no_align || method != MC_ALIGN_CORR))
    st = mc_error(MC_EARG, "--align-adv needs --align corr");
  if (!st) st = cli_adv_setup(&ao, d.train.c, &pgd, &adv_on);
  if (!st && adv_on && pam) st = mc_error(MC_EARG, "--adv pgd is not supported with --method pam");
  if (st) {
    mc_data_free(&d);
    return cli_fail(st);
  }
  mc_curve_train_cfg cfg = {0};
  cfg.adv = adv_on ? &pgd : NULL;
  cfg.sink = &cli_sink;
  cfg.epochs = so.epochs > 0 ? so.epochs : cifar ? 250 : 20;
  cfg.batch = so.batch;
  cfg.momentum = so.momentum;
  cfg.wd = so.wd;
  cfg.nesterov = !so.no_nesterov;
  cfg.seed = (uint64_t)so.seed;
  cfg.eval_every = (int)so.eval_every;
  cfg.bn_samples = bn_samples;
  cfg.test_samples = dopt.test_subset;
  cfg.aug.crop_pad = so.crop >= 0 ? (int)so.crop : d.default_crop_pad;
  cfg.aug.flip = !strcmp(so.flip, "auto") ? d.default_flip : !strcmp(so.flip, "on");
  if ((st = mc_schedule_parse(sched ? sched : cifar ? "paper" : "cosine", &cfg.sched))) {
    mc_data_free(&d);
    return cli_fail(st);
  }
  cfg.sched.lr = so.lr > 0 ? so.lr : cifar ? 0.1 : 0.05;
  cfg.sched.epochs = cfg.epochs;
  char *logbuf = mc_malloc_try(strlen(out) + 16);
  if (!logbuf) {
    mc_data_free(&d);
    return cli_fail(mc_oom(strlen(out) + 16, "the log file's name"));
  }
  sprintf(logbuf, "%s.log.jsonl", out);
  cfg.log_path = log ? log : logbuf;
  mc_remove_stale_tmp(cfg.log_path);

  mc_curve_file cf = {0};
  float *tb = NULL, *sb = NULL, **mom0 = NULL;
  mc_alignment al = {0};
  if ((st = cli_load_pair(pa, pb, &mo, &cf.m, &cf.a, &cf.sa, &tb, &sb))) goto done;
  /* A, B, B aligned, the bends with their gradients and momenta, theta(t) and its gradient */
  if ((st = cli_check_memory(cf.m, so.batch < d.train.n ? so.batch : d.train.n, 5 + 3 * (int)bends, "curve training")))
    goto done;
  char run[24];
  curve_run_id(&cfg, cf.m, dopt.data, d.train.n, kind_s, bends, align_s, samples, cf.a, cf.sa, tb, sb, run);
  char adv[256] = "none";
  if (cfg.adv) cli_adv_describe(&pgd, adv, sizeof adv);
  mc_kv kv[] = {{"modeconn.curve.a", pa}, {"modeconn.curve.b", pb}, {"modeconn.dataset", dopt.data},
                {"modeconn.curve.method", method_s}, {"modeconn.adversarial", adv}};
  curve_ckpt ck = {out, run, &cf, kv, 5};
  if (resume) {
    mc_curve_file rf;
    int behind;
    if ((st = mc_curve_ckpt_resume(resume, run, CURVE_RUN_FIELDS, &rf, &mom0, &cfg.start, &behind, &cli_sink)))
      goto done;
    mc_curve_file_free(&cf);
    cf = rf;
    cfg.mom0 = mom0;
    /* OUT up to OUT.train now: no epoch may be left to run that would */
    if ((behind || strcmp(resume, out)) && (st = curve_epoch_save(&ck, cfg.start, mom0))) goto done;
    fprintf(stderr, "resuming %s at epoch %lld of %lld\n", resume, (long long)cfg.start, (long long)cfg.epochs);
  } else {
    cf.b = mc_aligned_alloc_try(sizeof(float) * cf.m->n_theta);
    cf.sb = mc_aligned_alloc_try(sizeof(float) * (cf.m->n_state + 1));
    if (!cf.b || !cf.sb) {
      st = mc_oom(sizeof(float) * (cf.m->n_theta + cf.m->n_state + 1), "the aligned copy of %s", pb);
      goto done;
    }
    snprintf(cf.align, sizeof cf.align, "%s", align_s);
    if (no_align) {
      memcpy(cf.b, tb, sizeof(float) * cf.m->n_theta);
      memcpy(cf.sb, sb, sizeof(float) * cf.m->n_state);
      if ((st = mc_alignment_init_identity(&al, cf.m))) goto done;
    } else {
      fprintf(stderr, "aligning %s to %s (%s)\n", pb, pa, align_s);
      st = mc_align_run(cf.m, method, cf.a, cf.sa, tb, sb, &d.train, samples, 500, (uint64_t)so.seed, be,
                        align_adv ? &pgd : NULL, &al, cf.b, cf.sb);
      if (st) goto done;
      mc_alignment_print(stdout, cf.m, &al);
      if ((st = mc_alignment_perm_string(&al, cf.m, &cf.perm_json))) goto done;
    }
    if (!pam) {
      cf.c = (mc_curve){kind, (int)bends, cf.m->n_theta, cf.a, cf.b, NULL};
      if ((st = mc_curve_init_bends(&cf.c))) goto done;
      if (perm_out && (st = cli_write_json(perm_out, mc_alignment_json(cf.m, &al, align_s)))) goto done;
    }
  }
  if (pam) {
    if ((st = cli_curve_pam(&po, nu, &cfg, &cf, &al, align_s, tb, sb, &d, samples, be, perm_out))) goto done;
    char ep[32];
    snprintf(ep, sizeof ep, "%lld", (long long)(po.phi_epochs > 0 ? po.phi_epochs : cfg.epochs));
    mc_kv extra[] = {kv[0], kv[1], {"modeconn.epochs", ep}, kv[2], kv[3], kv[4]};
    st = mc_curve_save(out, &cf, extra, 6);
  } else {
    fprintf(stderr, "training a %s curve (%lld bend%s) between %s and %s%s: %lld epochs, lr %g (%s), %lld images\n",
            kind_s, (long long)bends, bends == 1 ? "" : "s", pa, pb, no_align ? " (unaligned)" : " (aligned)",
            (long long)cfg.epochs, cfg.sched.lr, mc_schedule_name(cfg.sched.kind), (long long)d.train.n);
    if (cfg.adv) {
      char desc[256];
      cli_adv_describe(&pgd, desc, sizeof desc);
      fprintf(stderr, "robust curve training on %s examples against theta(t)\n", desc);
    }
    cfg.after_epoch = curve_epoch_save;
    cfg.epoch_arg = &ck;
    st = mc_curve_train(&cfg, cf.m, &cf.c, &d, be);
  }
  if (!st) fprintf(stderr, "wrote %s\n", out);
done:
  for (int k = 0; mom0 && k < cf.c.n_bends; k++) free(mom0[k]);
  free(mom0);
  free(logbuf);
  free(tb);
  free(sb);
  mc_alignment_free(&al);
  mc_curve_file_free(&cf);
  mc_data_free(&d);
  return st ? cli_fail(st) : EXIT_OK;
}

int cmd_curve(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "train")) return cmd_curve_train(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "eval")) return cmd_curve_eval(argc - 1, argv + 1);
  FILE *f = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
  fprintf(f, "usage: modeconn curve train|eval [options]\n"
             "  train   train a curve between two models (see 'modeconn curve train --help')\n"
             "  eval    evaluate a curve along t (see 'modeconn curve eval --help')\n");
  return f == stdout ? EXIT_OK : EXIT_USAGE;
}
