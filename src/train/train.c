/* The training loop: shuffled, augmented minibatches, SGD on the flat
 * parameter vector, per-epoch log line / JSON-lines record / atomic
 * checkpoint, exact resume. */
#include "train/train.h"

#include "eval/eval.h"
#include "core/file.h"
#include "io/results.h"
#include "io/safetensors.h"

#include <errno.h>
#include <sys/stat.h>

#include <math.h>
#include <stdarg.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void mc_epoch_rng(mc_rng *r, uint64_t seed, int64_t epoch, uint64_t stream) {
  mc_rng_seed(r, seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)epoch << 20) ^ (stream << 56) ^ 0x6d6f6465ULL);
}

static void epoch_plan_begin(mc_epoch_plan *p, const mc_epoch_loop *L, int64_t epoch) {
  mc_rng rs;
  mc_epoch_rng(&rs, L->seed, epoch, 0);
  mc_epoch_rng(&p->aug, L->seed, epoch, 1);
  mc_epoch_rng(&p->extra, L->seed, epoch, 3);
  if (L->e) mc_exec_set_seed(L->e, L->seed ^ ((uint64_t)epoch * 0x2545F4914F6CDD1DULL) ^ 2);
  const int64_t n = L->tr->n;
  for (int64_t i = 0; i < n; i++) L->order[i] = i;
  mc_rng_shuffle(&rs, L->order, (size_t)n);
  p->order = L->order;
  p->n = n;
  p->batch = L->batch;
  /* a final batch of one sample has no batch statistics: dropped */
  p->steps = n / L->batch + (n % L->batch >= 2 ? 1 : 0);
}

mc_status mc_run_epoch(const mc_epoch_loop *L, int64_t epoch, double lr, mc_batch_fn step, void *arg,
                       mc_epoch_stats *out) {
  const double t0 = omp_get_wtime();
  mc_epoch_plan plan;
  epoch_plan_begin(&plan, L, epoch);
  double loss_sum = 0;
  int64_t hits = 0, seen = 0;
  mc_status st = MC_OK;
  for (int64_t s = 0; s < plan.steps && !st; s++) {
    const int64_t k = plan.n - s * plan.batch < plan.batch ? plan.n - s * plan.batch : plan.batch;
    mc_dataset_batch(L->tr, plan.order + s * plan.batch, k, L->aug, &plan.aug, L->x, L->y);
    mc_batch_ctx b = {&plan, epoch, s, k, lr, L->x, L->y};
    double l = 0;
    int64_t c = 0;
    if ((st = step(arg, &b, &l, &c))) break;
    loss_sum += l * (double)k;
    hits += c;
    seen += k;
    if ((s & 15) == 0 || s == plan.steps - 1) {
      const mc_progress_info p = {L->what, s + 1, plan.steps, NAN, NAN, NAN, NULL, omp_get_wtime() - t0};
      mc_sink_progress(L->sink, &p);
    }
  }
  out->seconds = omp_get_wtime() - t0;
  out->seen = seen;
  out->loss = seen ? loss_sum / (double)seen : NAN;
  out->accuracy = seen ? (double)hits / (double)seen : NAN;
  return st;
}

mc_status mc_log_begin(mc_log *L, const char *path, int64_t start) {
  memset(L, 0, sizeof *L);
  L->path = path;
  if (!path || start <= 0) return MC_OK;
  L->append = 1;
  struct stat sb;
  if (stat(path, &sb) != 0 && errno == ENOENT) return MC_OK;
  unsigned char *buf;
  size_t n;
  mc_status st = mc_read_file(path, "training log", (size_t)1 << 30, &buf, &n);
  if (st) return st;
  char *keep = mc_malloc_try(n + 1);
  if (!keep) {
    free(buf);
    return mc_oom(n + 1, "the kept records of the training log %s", path);
  }
  size_t k = 0;
  for (char *line = (char *)buf, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
    long long ep;
    if (sscanf(line, "{\"epoch\": %lld", &ep) == 1 && ep <= start) {
      memcpy(keep + k, line, (size_t)(nl - line) + 1);
      k += (size_t)(nl - line) + 1;
    }
  }
  if (k != n) st = mc_atomic_write(path, keep, k);
  free(keep);
  free(buf);
  return st;
}

static mc_status log_write(mc_log *L, const char *rec) {
  if (!L || !L->path) return MC_OK;
  if (!L->f && !(L->f = fopen(L->path, L->append ? "a" : "w")))
    return mc_error(MC_EIO, "%s: cannot open the log file: %s", L->path, strerror(errno));
  if (fputs(rec, L->f) < 0 || fflush(L->f) != 0)
    return mc_error(MC_EIO, "%s: cannot write the log file: %s", L->path, strerror(errno));
  return MC_OK;
}

mc_status mc_log_end(mc_log *L) {
  mc_status st = MC_OK;
  if (L->f && fclose(L->f) != 0) st = mc_error(MC_EIO, "%s: cannot write the log file: %s", L->path, strerror(errno));
  L->f = NULL;
  return st;
}

/* snprintf at *len into b (cap bytes), *len kept at most cap - 1 */
static void cat(char *b, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void cat(char *b, size_t cap, size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(b + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

mc_status mc_epoch_report(const mc_sink *sink, mc_log *log, const char *label, int64_t epoch, int64_t epochs,
                          const char *train_label, const mc_epoch_stats *s, double lr, const mc_named_metrics *tests,
                          int n_tests) {
  const double ips = (double)s->seen / s->seconds;
  char line[1024], rec[1536], tst[1024] = "";
  size_t ll = 0, tl = 0;
  cat(line, sizeof line, &ll, "%s %3lld/%lld  %s loss %.4f acc %.2f%%", label, (long long)epoch, (long long)epochs,
      train_label, s->loss, 100 * s->accuracy);
  for (int i = 0; i < n_tests; i++) {
    const mc_named_metrics *t = &tests[i];
    if (!isfinite(t->m.loss)) continue; /* not evaluated this epoch */
    cat(line, sizeof line, &ll, "  %s loss %.4f acc %.2f%%", t->label, t->m.loss, 100 * t->m.accuracy);
    cat(tst, sizeof tst, &tl, "\"%s_loss\": %.6f, \"%s_accuracy\": %.6f, ", t->key, t->m.loss, t->key,
        t->m.accuracy);
  }
  cat(line, sizeof line, &ll, "  lr %.4g  %.1fs  %.0f img/s", lr, s->seconds, ips);
  mc_msg(sink, MC_MSG_INFO, "%s", line);
  snprintf(rec, sizeof rec,
           "{\"epoch\": %lld, \"train_loss\": %.6f, \"train_accuracy\": %.6f, %s\"lr\": %.6g, \"seconds\": %.3f, "
           "\"images_per_second\": %.1f}\n",
           (long long)epoch, s->loss, s->accuracy, tst, lr, s->seconds, ips);
  return log_write(log, rec);
}

/* The run id: what must not change across --resume (seed, architecture,
 * data and its training subset, batch), hashed.  Deterministic, so reruns
 * give the same bytes. */
static void run_id(const mc_train_cfg *cfg, const mc_model *m, int64_t n_train, char out[24]) {
  char buf[320];
  snprintf(buf, sizeof buf, "%llu|%lldx%lldx%lld|%lld|%s|%lld|n%lld", (unsigned long long)cfg->seed,
           (long long)m->in_c, (long long)m->in_h, (long long)m->in_w, (long long)m->classes,
           cfg->data_name ? cfg->data_name : "", (long long)cfg->batch, (long long)n_train);
  mc_run_id_str(mc_run_hash(mc_run_hash(0, buf, strlen(buf)), m->spec, strlen(m->spec)), out);
}

#define RUN_FIELDS "seed, architecture, data (and --train-subset), batch size and the PGD flags"

/* OUT.train holds everything a resume needs -- the model (under "model.")
 * and the momentum (under "momentum.", the same named views) at one epoch
 * -- so it is consistent by construction.  It is written before OUT: a
 * crash between the two leaves OUT behind OUT.train (by more than one
 * epoch after repeated crashes), which resume accepts: it continues from
 * OUT.train, the newest consistent state of the run. */
static mc_status save_all(const mc_train_cfg *cfg, const mc_model *m, const char *run, const float *theta,
                          const float *state, const float *mom, int64_t epoch) {
  if (!cfg->out) return MC_OK;
  char seed[32], lr[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
  snprintf(lr, sizeof lr, "%g", cfg->sched.lr);
  char adv[160] = "none";
  if (cfg->adv)
    snprintf(adv, sizeof adv, "pgd eps=%.9g alpha=%.9g steps=%d random_start=%d seed=%llu", cfg->adv->eps,
             cfg->adv->alpha, cfg->adv->steps, cfg->adv->random_start, (unsigned long long)cfg->adv->seed);
  mc_kv kv[] = {{"modeconn.seed", seed}, {"modeconn.dataset", cfg->data_name ? cfg->data_name : ""},
                {"modeconn.lr", lr}, {"modeconn.schedule", mc_schedule_name(cfg->sched.kind)},
                {"modeconn.adversarial", adv}};
  mc_ckpt_part part = {"", theta, state};
  mc_ckpt_part tparts[] = {{"model.", theta, state}, {"momentum.", mom, NULL}};
  return mc_resume_save(cfg->out, m, tparts, 2, &part, 1, kv, 5, epoch, run);
}

static mc_status load_resume(const mc_train_cfg *cfg, const mc_model *m, const char *want, float *theta,
                             float *state, float *mom, int64_t *epoch, int *behind) {
  mc_st_file g;
  mc_status st = mc_resume_open(cfg->resume, want, RUN_FIELDS, &g, epoch, behind, cfg->sink);
  if (st) return st;
  if (!(st = mc_ckpt_get(&g, m, "model.", theta, state, 0))) st = mc_ckpt_get(&g, m, "momentum.", mom, NULL, 0);
  mc_st_free(&g);
  return st;
}

typedef struct {
  const mc_train_cfg *cfg;
  const mc_model *m;
  mc_exec *e;
  float *theta, *state, *grad, *mom;
  float *xadv, *dx; /* adversarial training */
} sgd_job;

mc_status mc_batch_adv(const mc_pgd *adv, mc_exec *e, const float *theta, float *state, const mc_batch_ctx *b,
                       float *xadv, float *dx, const float **x) {
  *x = b->x;
  if (!adv) return MC_OK;
  const int64_t *idx = b->plan->order + b->step * b->plan->batch;
  mc_status st = mc_pgd_run(e, theta, state, MC_MODE_TRAIN, adv, b->x, b->y, b->k, idx, (uint64_t)b->epoch + 1,
                            xadv, dx);
  if (!st) *x = xadv;
  return st;
}

/* One minibatch of plain training: forward, CE, backward, SGD on theta. */
static mc_status sgd_batch(void *arg, const mc_batch_ctx *b, double *loss, int64_t *hits) {
  sgd_job *j = arg;
  const mc_train_cfg *cfg = j->cfg;
  memset(j->grad, 0, sizeof(float) * j->m->n_theta);
  const float *x;
  mc_status st = mc_batch_adv(cfg->adv, j->e, j->theta, j->state, b, j->xadv, j->dx, &x);
  if (!st) st = mc_exec_forward(j->e, j->theta, j->state, x, b->k, MC_MODE_TRAIN);
  double l = 0;
  if (st || (st = mc_exec_loss(j->e, b->y, 1.f, &l, hits))) return st;
  if (!isfinite(l))
    return mc_error(MC_ENAN, "epoch %lld, step %lld: the training loss is %g (lr %g too high?); stopped%s%s%s",
                    (long long)b->epoch + 1, (long long)b->step + 1, l, b->lr,
                    cfg->out ? "; the last good checkpoint " : "", cfg->out ? cfg->out : "",
                    cfg->out ? " is intact" : "");
  if ((st = mc_exec_backward(j->e, j->theta, NULL, j->grad, NULL))) return st;
  mc_sgd_step(j->theta, j->mom, j->grad, j->m->n_theta, b->lr, cfg->momentum, cfg->wd, cfg->nesterov);
  *loss = l;
  return MC_OK;
}

mc_status mc_train(const mc_train_cfg *cfg, mc_model *m, float *theta,
                   float *state, const mc_data *d, mc_backend be) {
  const mc_dataset *tr = &d->train;
  if (tr->c != m->in_c || tr->h != m->in_h || tr->w != m->in_w)
    return mc_error(MC_ESHAPE, "the data are %lldx%lldx%lld images, the model expects %lldx%lldx%lld (--input)",
                    (long long)tr->c, (long long)tr->h, (long long)tr->w, (long long)m->in_c, (long long)m->in_h,
                    (long long)m->in_w);
  if (tr->n < 2) return mc_error(MC_EARG, "training set has %lld examples; need at least 2", (long long)tr->n);
  int64_t B = cfg->batch < tr->n ? cfg->batch : tr->n;
  mc_exec *e;
  mc_status st = mc_exec_create(&e, m, B, be);
  if (st) return st;
  const size_t nx = sizeof(float) * (size_t)(B * tr->c * tr->h * tr->w);
  float *grad = mc_aligned_alloc_try(sizeof(float) * m->n_theta);
  float *mom = mc_aligned_alloc_try(sizeof(float) * m->n_theta);
  float *x = mc_aligned_alloc_try(nx);
  int32_t *y = mc_malloc_try(sizeof(int32_t) * (size_t)B);
  int64_t *order = mc_malloc_try(sizeof(int64_t) * (size_t)tr->n);
  float *xadv = cfg->adv ? mc_aligned_alloc_try(nx) : NULL;
  float *dx = cfg->adv ? mc_aligned_alloc_try(nx) : NULL;
  mc_log log = {0};
  if (!grad || !mom || !x || !y || !order || (cfg->adv && (!xadv || !dx))) {
    st = mc_oom(2 * sizeof(float) * m->n_theta + (cfg->adv ? 3 : 1) * nx + sizeof(int32_t) * (size_t)B +
                    sizeof(int64_t) * (size_t)tr->n,
                "training's gradient, momentum and batch buffers (%zu parameters, batch %lld)", m->n_theta,
                (long long)B);
    goto out;
  }
  int64_t start = 0;
  char run[24];
  run_id(cfg, m, tr->n, run);
  if (cfg->resume) {
    int behind = 0;
    st = load_resume(cfg, m, run, theta, state, mom, &start, &behind);
    if (st) goto out;
    /* bring the model file up to its optimizer file now: no epoch may be
     * left to run that would rewrite it */
    if (behind && cfg->out && (st = save_all(cfg, m, run, theta, state, mom, start))) goto out;
    mc_msg(cfg->sink, MC_MSG_NOTE, "resuming %s at epoch %lld of %lld", cfg->resume, (long long)start,
           (long long)cfg->epochs);
  }
  if ((st = mc_log_begin(&log, cfg->log_path, start))) goto out;
  const mc_epoch_loop L = {"train", e, tr, &cfg->aug, B, cfg->seed, order, x, y, cfg->sink};
  sgd_job job = {cfg, m, e, theta, state, grad, mom, xadv, dx};
  for (int64_t ep = start; ep < cfg->epochs; ep++) {
    const double lr = mc_schedule_lr(&cfg->sched, ep);
    mc_epoch_stats es;
    if ((st = mc_run_epoch(&L, ep, lr, sgd_batch, &job, &es))) goto out;
    mc_named_metrics te[2] = {{"test", "test", {NAN, NAN, 0}}, {"robust test", "robust_test", {NAN, NAN, 0}}};
    if (ep == cfg->epochs - 1 || (cfg->eval_every > 0 && (ep + 1) % cfg->eval_every == 0)) {
      mc_exec *ev;
      if ((st = mc_exec_create(&ev, m, 500, be))) goto out;
      st = mc_evaluate(ev, theta, state, &d->test, 0, &te[0].m);
      if (!st && cfg->adv) st = mc_evaluate_pgd(ev, theta, state, &d->test, 0, cfg->adv, &te[1].m, NULL);
      mc_exec_free(ev);
      if (st) goto out;
    }
    if ((st = mc_epoch_report(cfg->sink, &log, "epoch", ep + 1, cfg->epochs, "train", &es, lr, te, 2))) goto out;
    if ((st = save_all(cfg, m, run, theta, state, mom, ep + 1))) goto out;
  }
out:;
  mc_status st2 = mc_log_end(&log);
  if (!st) st = st2;
  free(grad);
  free(mom);
  free(x);
  free(y);
  free(order);
  free(xadv);
  free(dx);
  mc_exec_free(e);
  return st;
}
