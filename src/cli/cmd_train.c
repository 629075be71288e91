/* `modeconn train`: SGD on a dataset, checkpoint after every epoch. */
#include "cli.h"

#include "data/data.h"
#include "io/results.h"
#include "io/safetensors.h"
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int cmd_train(int argc, char **argv) {
  static const cli_cmd cmd = {
      "train",
      "Train a network with SGD (PyTorch semantics) on a dataset. After every epoch the resume state is written\n"
      "atomically to OUT.train, then the model to --out, so --resume OUT continues exactly, even after a crash.\n"
      "--adv pgd: adversarial training (Madry): the loss uses PGD examples only, generated against the current\n"
      "model with BN in train mode (the attack's forwards update the running statistics too, as the official\n"
      "code's); the official robust runs use --lr 0.1 --wd 5e-4 --schedule robust (SGD Nesterov 0.9).",
      "--arch A --data D --epochs E --seed S [--out FILE] [options]", cmd_train};
  cli_model_opts mo;
  cli_data_opts dopt;
  cli_sgd_opts so;
  const char *sched, *out, *resume, *log;
  cli_adv_opts ao;
  cli_opt opts[] = {CLI_MODEL_OPTS(mo),
                    CLI_DATA_OPTS(dopt),
                    {"epochs", OPT_INT, &so.epochs, "10", "epochs"},
                    {"seed", OPT_INT, &so.seed, "1", "seed: initialisation, shuffling, augmentation"},
                    {"batch", OPT_INT, &so.batch, "128", "minibatch size"},
                    {"lr", OPT_DOUBLE, &so.lr, "0.05", "base learning rate"},
                    {"momentum", OPT_DOUBLE, &so.momentum, "0.9", "SGD momentum"},
                    {"no-nesterov", OPT_FLAG, &so.no_nesterov, NULL, "plain momentum instead of Nesterov"},
                    {"wd", OPT_DOUBLE, &so.wd, "5e-4", "weight decay (added to the gradient, as torch.optim.SGD)"},
                    {"schedule", OPT_STR, &sched, "cosine",
                     "lr schedule: const, step[:EPOCHS[:GAMMA]], cosine, paper (0.5^floor(e/20)*0.9996^e), garipov (x1 to 50% of "
                     "the epochs, linear to x0.01 at 90%), robust (the same, the official adversarial runs' name)"},
                    {"crop", OPT_INT, &so.crop, "-1", "random-crop padding in pixels (-1 = dataset default: 2 for 28x28, 4 for CIFAR)"},
                    {"flip", OPT_STR, &so.flip, "auto", "random horizontal flip: on, off, auto (on for CIFAR only)"},
                    {"eval-every", OPT_INT, &so.eval_every, "1", "evaluate on the test set every N epochs (the last always)"},
                    {"out", OPT_STR, &out, NULL, "checkpoint to write (safetensors); OUT.train holds the resume state (model + momentum, written first), OUT.lock a lock against a second writer"},
                    {"resume", OPT_STR, &resume, NULL, "continue a run from this checkpoint and its .train file (the same seed, architecture, data, --train-subset and batch)"},
                    {"log", OPT_STR, &log, NULL, "JSON-lines log, one record per epoch (default: OUT.log.jsonl)"},
                    CLI_ADV_OPTS(ao),
                    CLI_RUNTIME_OPTS(mo),
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  mc_backend be;
  mc_status st;
  if ((st = cli_sgd_check(&so, 0)) || (st = cli_runtime(&mo, &be))) return cli_fail(st);
  /* before any work: the output is ours and writable */
  if (out && (st = cli_claim_out(out))) return cli_fail(st);
  mc_train_cfg cfg = {0};
  cfg.epochs = so.epochs;
  cfg.batch = so.batch;
  cfg.momentum = so.momentum;
  cfg.wd = so.wd;
  cfg.nesterov = !so.no_nesterov;
  cfg.seed = (uint64_t)so.seed;
  cfg.out = out;
  cfg.resume = resume;
  cfg.eval_every = (int)so.eval_every;
  cfg.data_name = dopt.data;
  cfg.sink = &cli_sink;
  if ((st = mc_schedule_parse(sched, &cfg.sched))) return cli_fail(st);
  cfg.sched.lr = so.lr;
  cfg.sched.epochs = so.epochs;
  char *logbuf = NULL;
  if (log) cfg.log_path = log;
  else if (out) {
    if (!(logbuf = mc_malloc_try(strlen(out) + 16))) return cli_fail(mc_oom(strlen(out) + 16, "the log file's name"));
    sprintf(logbuf, "%s.log.jsonl", out);
    cfg.log_path = logbuf;
  }
  if (cfg.log_path) mc_remove_stale_tmp(cfg.log_path);
  mc_data d;
  if ((st = cli_load_data(&dopt, &d))) {
    free(logbuf);
    return cli_fail(st);
  }
  cfg.aug.crop_pad = so.crop >= 0 ? (int)so.crop : d.default_crop_pad;
  cfg.aug.flip = !strcmp(so.flip, "auto") ? d.default_flip : !strcmp(so.flip, "on");
  mc_pgd pgd;
  int adv_on;
  if ((st = cli_adv_setup(&ao, d.train.c, &pgd, &adv_on))) {
    mc_data_free(&d);
    free(logbuf);
    return cli_fail(st);
  }
  cfg.adv = adv_on ? &pgd : NULL;
  mc_model *m = NULL;
  float *theta = NULL, *state = NULL;
  if (resume) {
    st = cli_load_model(resume, &mo, &m, &theta, &state);
  } else {
    mc_arch_params p;
    if (!(st = cli_arch_params(&mo, &p))) {
      p.in_c = d.train.c; /* the data decide the input shape */
      p.in_h = d.train.h;
      p.in_w = d.train.w;
      if (p.classes < d.train.classes) p.classes = d.train.classes;
      st = mc_model_create(&m, mo.arch, &p);
    }
    /* theta, grad, momentum and the executor's copies, before any of them */
    if (!st) st = cli_check_memory(m, so.batch < d.train.n ? so.batch : d.train.n, 5, "training");
    if (!st) {
      theta = mc_aligned_alloc_try(sizeof(float) * m->n_theta);
      state = mc_aligned_alloc_try(sizeof(float) * (m->n_state + 1));
      if (!theta || !state)
        st = mc_oom(sizeof(float) * (m->n_theta + m->n_state + 1), "the parameters of %s (%zu)", m->arch, m->n_theta);
    }
    if (!st) {
      mc_model_init(m, theta, state, (uint64_t)so.seed);
      mc_dataset_mean_std(&d.train, m->norm_mean, m->norm_std);
    }
  }
  if (!st) {
    fprintf(stderr, "training %s (%zu parameters) on %s: %lld train / %lld test images, %lld epochs, batch %lld, "
                    "lr %g (%s), seed %lld, %d threads, backend %s\n",
            m->arch, m->n_theta, d.name, (long long)d.train.n, (long long)d.test.n, (long long)so.epochs,
            (long long)so.batch, so.lr, sched, (long long)so.seed, mc_get_threads(), mc_backend_name(mc_backend_for(m, be)));
    if (cfg.adv) {
      char desc[256];
      cli_adv_describe(&pgd, desc, sizeof desc);
      fprintf(stderr, "adversarial training (Madry): every batch replaced by its %s examples, generated with BN in "
                      "train mode\n", desc);
    }
    st = mc_train(&cfg, m, theta, state, &d, be);
  }
  if (!st && out) fprintf(stderr, "wrote %s\n", out);
  free(logbuf);
  free(theta);
  free(state);
  mc_model_free(m);
  mc_data_free(&d);
  return st ? cli_fail(st) : EXIT_OK;
}
