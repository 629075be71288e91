/* Loss/accuracy passes and BN recompute (see eval.h). */
#include "eval/eval.h"

#include "eval/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mc_model_has_bn(const mc_model *m) {
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].kind == MC_NODE_BN) return 1;
  return 0;
}

mc_status mc_batches_init(mc_batches *b, const mc_dataset *ds, int64_t n, int64_t batch) {
  return mc_batches_init_part(b, ds, n, batch, 0, 1);
}

mc_status mc_batches_init_part(mc_batches *b, const mc_dataset *ds, int64_t n, int64_t batch, int part, int parts) {
  *b = (mc_batches){.ds = ds, .n = n, .batch = batch, .step = parts * batch, .start = (part - parts) * batch};
  const size_t bx = sizeof(float) * (size_t)(batch * ds->c * ds->h * ds->w);
  const size_t by = sizeof(int32_t) * (size_t)batch, bi = sizeof(int64_t) * (size_t)batch;
  b->x = mc_aligned_alloc_try(bx);
  b->y = b->x ? mc_malloc_try(by) : NULL;
  b->idx = b->y ? mc_malloc_try(bi) : NULL;
  if (b->idx) return MC_OK;
  mc_batches_free(b);
  return mc_oom(bx + by + bi, "a batch of %lld images of %lldx%lldx%lld with their labels", (long long)batch,
                (long long)ds->c, (long long)ds->h, (long long)ds->w);
}

int64_t mc_batches_next(mc_batches *b) {
  b->start += b->step;
  if (b->start >= b->n) return 0;
  int64_t k = b->n - b->start < b->batch ? b->n - b->start : b->batch;
  for (int64_t i = 0; i < k; i++) b->idx[i] = b->start + i;
  mc_dataset_batch(b->ds, b->idx, k, NULL, NULL, b->x, b->y);
  return k;
}

void mc_batches_free(mc_batches *b) {
  free(b->x);
  free(b->y);
  free(b->idx);
  memset(b, 0, sizeof *b);
}

mc_status mc_check_data_shape(const mc_model *m, const mc_dataset *ds) {
  if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
    return mc_error(MC_ESHAPE, "data are %lldx%lldx%lld images but the model expects %lldx%lldx%lld",
                    (long long)ds->c, (long long)ds->h, (long long)ds->w, (long long)m->in_c,
                    (long long)m->in_h, (long long)m->in_w);
  if (ds->classes > m->classes)
    return mc_error(MC_ESHAPE, "data have %lld classes but the model has %lld outputs",
                    (long long)ds->classes, (long long)m->classes);
  return MC_OK;
}

int64_t mc_eval_rows(const mc_exec *e) {
  const mc_model *m = mc_exec_model(e);
  int64_t act = 1; /* the largest activation of one example, in floats */
  for (int i = 0; i < m->n_nodes; i++) {
    const int64_t a = m->nodes[i].C * m->nodes[i].H * m->nodes[i].W;
    if (a > act) act = a;
  }
  const int64_t rows = (int64_t)m->n_theta <= MC_EVAL_WEIGHTS_PER_ACT * act ? MC_EVAL_ROWS_SMALL : MC_EVAL_ROWS;
  const int64_t b = mc_exec_batch(e);
  return b < rows ? b : rows;
}

typedef struct {
  const float *theta;
  float *state; /* only read in eval mode */
  const mc_dataset *ds;
  int64_t n, rows, classes;
  double *loss; /* per slice */
  int64_t *hits;
  float *logits; /* n x classes, or NULL */
  const mc_pgd *pgd; /* NULL: clean inputs */
  float *xadv;       /* n x C x H x W PGD examples out, or NULL */
} eval_job;

/* A thread's buffers for the PGD examples of one slice (none without pgd). */
typedef struct {
  float *x, *dx;
} pgd_buf;

static mc_status pgd_buf_init(pgd_buf *p, const mc_pgd *pgd, const mc_dataset *ds, int64_t rows) {
  p->x = p->dx = NULL;
  if (!pgd) return MC_OK;
  const size_t sz = sizeof(float) * (size_t)(rows * ds->c * ds->h * ds->w);
  p->x = mc_aligned_alloc_try(sz);
  p->dx = p->x ? mc_aligned_alloc_try(sz) : NULL;
  if (p->dx) return MC_OK;
  free(p->x);
  p->x = NULL;
  return mc_oom(2 * sz, "the PGD examples and input gradients of %lld rows", (long long)rows);
}

static void pgd_buf_free(pgd_buf *p) {
  free(p->x);
  free(p->dx);
}

static mc_status eval_slices(mc_exec **w, int tid, int nthr, void *arg) {
  eval_job *j = arg;
  mc_batches b;
  mc_status st = MC_OK;
  pgd_buf pb = {0};
  if ((st = mc_batches_init_part(&b, j->ds, j->n, j->rows, tid, nthr))) return st;
  if ((st = pgd_buf_init(&pb, j->pgd, j->ds, j->rows))) {
    mc_batches_free(&b);
    return st;
  }
  for (int64_t k; !st && (k = mc_batches_next(&b)) > 0;) {
    const float *x = b.x;
    if (j->pgd) {
      if ((st = mc_pgd_run(w[0], j->theta, j->state, MC_MODE_EVAL, j->pgd, b.x, b.y, k, b.idx, MC_PGD_SALT_TEST,
                           pb.x, pb.dx)))
        break;
      x = pb.x;
      if (j->xadv) {
        const int64_t D = j->ds->c * j->ds->h * j->ds->w;
        memcpy(j->xadv + b.start * D, x, sizeof(float) * (size_t)(k * D));
      }
    }
    if ((st = mc_exec_forward(w[0], j->theta, j->state, x, k, MC_MODE_EVAL))) break;
    const int64_t s = b.start / j->rows;
    const float *logits = mc_exec_output(w[0], 0);
    if (j->logits)
      memcpy(j->logits + b.start * j->classes, logits, sizeof(float) * (size_t)(k * j->classes));
    j->loss[s] = mc_softmax_xent(logits, b.y, k, j->classes, NULL, 1.f, &j->hits[s]) * (double)k;
  }
  mc_batches_free(&b);
  pgd_buf_free(&pb);
  return st;
}

static mc_status evaluate(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                          const mc_pgd *pgd, mc_metrics *out, float *logits, float *xadv);

mc_status mc_evaluate(mc_exec *e, const float *theta, float *state,
                      const mc_dataset *ds, int64_t n, mc_metrics *out) {
  return evaluate(e, theta, state, ds, n, NULL, out, NULL, NULL);
}

mc_status mc_evaluate_logits(mc_exec *e, const float *theta, float *state,
                             const mc_dataset *ds, int64_t n, mc_metrics *out,
                             float *logits) {
  return evaluate(e, theta, state, ds, n, NULL, out, logits, NULL);
}

mc_status mc_evaluate_pgd(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                          const mc_pgd *p, mc_metrics *out, float *xadv) {
  return evaluate(e, theta, state, ds, n, p, out, NULL, xadv);
}

static mc_status evaluate(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                          const mc_pgd *pgd, mc_metrics *out, float *logits, float *xadv) {
  const mc_model *m = mc_exec_model(e);
  mc_status st = mc_check_data_shape(m, ds);
  if (st) return st;
  if (n <= 0 || n > ds->n) n = ds->n;
  const int64_t rows = mc_eval_rows(e), slices = (n + rows - 1) / rows;
  eval_job j = {theta, state, ds, n, rows, m->classes, mc_calloc_try((size_t)slices, sizeof(double)),
                mc_calloc_try((size_t)slices, sizeof(int64_t)), logits, pgd, xadv};
  if (!j.loss || !j.hits) {
    free(j.loss);
    free(j.hits);
    return mc_oom((sizeof(double) + sizeof(int64_t)) * (size_t)slices, "the per-slice sums of %lld evaluation slices",
                  (long long)slices);
  }
  st = mc_exec_parallel(&e, 1, rows, eval_slices, &j);
  double total = 0;
  int64_t hits = 0;
  for (int64_t s = 0; s < slices; s++) {
    total += j.loss[s];
    hits += j.hits[s];
  }
  free(j.loss);
  free(j.hits);
  out->loss = total / (double)n;
  out->accuracy = (double)hits / (double)n;
  out->n = n;
  return st;
}

typedef struct {
  const float *theta;
  const mc_dataset *ds;
  int64_t n, batch;
  float **state;  /* per thread */
  int64_t *count; /* batches per thread */
  const mc_pgd *pgd; /* NULL: clean inputs */
  const mc_model *m;
} bn_job;

/* Thread tid's share of the BN-recompute batches (tid, tid + nthr, ...),
 * their cumulative average in its own state. */
static mc_status bn_slices(mc_exec **w, int tid, int nthr, void *arg) {
  bn_job *j = arg;
  mc_batches b;
  mc_status st = MC_OK;
  pgd_buf pb = {0};
  /* the attack's train-mode forwards update running statistics by
   * momentum: into scratch, so that the recompute averages the forwards
   * of the PGD examples alone */
  float *scratch = NULL;
  if ((st = mc_batches_init_part(&b, j->ds, j->n, j->batch, tid, nthr))) return st;
  if ((st = pgd_buf_init(&pb, j->pgd, j->ds, j->batch))) goto out;
  if (j->pgd && !(scratch = mc_calloc_try(j->m->n_state + 1, sizeof(float)))) {
    st = mc_oom(sizeof(float) * (j->m->n_state + 1), "the scratch BN state of the PGD attack");
    goto out;
  }
  mc_exec_bn_reset(w[0], j->state[tid]);
  for (int64_t k; (k = mc_batches_next(&b)) > 0;) {
    if (k < 2 && b.start > 0) break; /* a 1-sample batch has no variance */
    const float *x = b.x;
    if (j->pgd) {
      if ((st = mc_pgd_run(w[0], j->theta, scratch, MC_MODE_TRAIN, j->pgd, b.x, b.y, k, b.idx, MC_PGD_SALT_BN,
                           pb.x, pb.dx)))
        break;
      x = pb.x;
    }
    if ((st = mc_exec_forward(w[0], j->theta, j->state[tid], x, k, MC_MODE_BN_RECOMPUTE))) break;
    j->count[tid]++;
  }
out:
  mc_batches_free(&b);
  pgd_buf_free(&pb);
  free(scratch);
  return st;
}

mc_status mc_bn_recompute(mc_exec *e, const float *theta, float *state,
                          const mc_dataset *ds, int64_t n) {
  return mc_bn_recompute_pgd(e, theta, state, ds, n, NULL);
}

mc_status mc_bn_recompute_pgd(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                              const mc_pgd *pgd) {
  const mc_model *m = mc_exec_model(e);
  if (!mc_model_has_bn(m)) return MC_OK;
  mc_status st = mc_check_data_shape(m, ds);
  if (st) return st;
  if (n <= 0 || n > ds->n) n = ds->n;
  const int64_t batch = mc_exec_batch(e);
  const int T = n > batch ? mc_get_threads() : 1;
  bn_job j = {theta, ds, n, batch, mc_calloc_try((size_t)T, sizeof(float *)), mc_calloc_try((size_t)T, sizeof(int64_t)),
              pgd, m};
  if (!j.state || !j.count) {
    st = mc_oom((sizeof(float *) + sizeof(int64_t)) * (size_t)T, "the BN-recompute tables of %d threads", T);
    goto out;
  }
  if (T == 1) {
    j.state[0] = state;
    st = bn_slices(&e, 0, 1, &j);
  } else {
    /* Each thread runs whole batches on its own single-threaded copy of
     * the executor: no barrier inside a forward (5-10 % faster than both
     * threads on every layer of one batch, tinyten and resnet20 at batch
     * 500).  Every batch is still normalised with its own statistics; the
     * threads' running averages are combined weighted by their batch
     * counts: the same cumulative average over all batches up to float
     * rounding, and the same bytes every run for a given thread count. */
    for (int t = 0; t < T && !st; t++)
      if (!(j.state[t] = mc_aligned_alloc_try(sizeof(float) * m->n_state)))
        st = mc_oom(sizeof(float) * m->n_state, "thread %d's BN running statistics", t);
    if (!st) st = mc_exec_parallel(&e, 1, batch, bn_slices, &j);
    int64_t total = 0;
    for (int t = 0; t < T; t++) total += j.count[t];
    if (!st) {
      mc_exec_bn_reset(e, state);
      for (size_t i = 0; i < m->n_state && total > 0; i++) {
        double v = 0;
        for (int t = 0; t < T; t++) v += (double)j.count[t] * j.state[t][i];
        state[i] = (float)(v / (double)total);
      }
    }
    for (int t = 0; t < T; t++) free(j.state[t]);
  }
out:
  free(j.state);
  free(j.count);
  if (st) return st;
  for (size_t i = 0; i < m->n_state; i++)
    if (!isfinite(state[i])) return mc_error(MC_ENAN, "BN recompute produced a non-finite running statistic");
  return MC_OK;
}
