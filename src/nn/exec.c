/* The executor, backend-independent part: backend choice, liveness of
 * nodes per mode, output heads and the multi-head loss, argument checks,
 * the per-thread worker copies of mc_exec_parallel, and dispatch to the
 * backend's table (backend.h). */
#include "nn/backend.h"
#include "nn/kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_backends(void) {
  int n = 0;
  while (mc_backend_table[n]) n++;
  return n;
}

mc_status mc_backend_parse(const char *s, mc_backend *be) {
  if (!strcmp(s, "auto")) {
    *be = MC_BACKEND_AUTO;
    return MC_OK;
  }
  char names[256] = "'auto'";
  for (int i = 0; mc_backend_table[i]; i++) {
    const mc_backend_ops *o = mc_backend_table[i];
    if (!strcmp(s, o->name) || (o->alias && !strcmp(s, o->alias))) {
      *be = (mc_backend)i;
      return MC_OK;
    }
    size_t l = strlen(names);
    snprintf(names + l, sizeof names - l, ", '%s'", o->name);
  }
  return mc_error(MC_EARG, "backend '%s': expected one of %s", s, names);
}

mc_status mc_backend_from_env(mc_backend *be) {
  const char *s = getenv("MODECONN_BACKEND");
  *be = MC_BACKEND_AUTO;
  if (!s || !*s) return MC_OK;
  mc_status st = mc_backend_parse(s, be);
  if (st) return mc_error(st, "MODECONN_BACKEND=%.100s: %.400s", s, mc_errmsg());
  return MC_OK;
}

mc_backend mc_backend_default(void) {
  mc_backend be;
  return mc_backend_from_env(&be) == MC_OK ? be : MC_BACKEND_AUTO;
}

const char *mc_backend_name(mc_backend be) {
  if ((int)be >= 0 && (int)be < n_backends()) return mc_backend_table[be]->name;
  return "auto";
}

mc_backend mc_backend_for(const mc_model *m, mc_backend be) {
  if (be != MC_BACKEND_AUTO) return be;
  int best = 0, score = -1;
  for (int i = 0; mc_backend_table[i]; i++) {
    const int s = mc_backend_table[i]->score(m);
    if (s > score) {
      score = s;
      best = i;
    }
  }
  return (mc_backend)best;
}

void mc_system_info(FILE *f) {
  mc_kernels_info(f);
  for (int i = 0; mc_backend_table[i]; i++)
    if (mc_backend_table[i]->info) mc_backend_table[i]->info(f);
}

int64_t mc_exec_batch(const mc_exec *e) { return e->batch; }
const mc_model *mc_exec_model(const mc_exec *e) { return e->m; }
mc_backend mc_exec_backend(const mc_exec *e) { return e->be; }
void mc_exec_set_seed(mc_exec *e, uint64_t seed) { mc_rng_seed(&e->rng, seed); }

int exec_head_of(const mc_exec *e, int node) {
  for (int k = 0; k < e->m->n_heads; k++)
    if (e->m->heads[k].node == node) return k;
  return -1;
}

void mc_exec_bn_reset(mc_exec *e, float *state) {
  const mc_model *m = e->m;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind != MC_NODE_BN) continue;
    const mc_tensor *rm = &m->tensors[nd->t_rmean], *rv = &m->tensors[nd->t_rvar];
    for (size_t j = 0; j < rm->numel; j++) {
      state[rm->off + j] = 0.f;
      state[rv->off + j] = 1.f;
    }
  }
  e->bn_count = 0;
}

mc_status mc_exec_create(mc_exec **out, const mc_model *m, int64_t batch, mc_backend be) {
  *out = NULL;
  if (batch < 1) return mc_error(MC_EARG, "batch size must be >= 1 (got %lld)", (long long)batch);
  be = mc_backend_for(m, be);
  if ((int)be < 0 || (int)be >= n_backends())
    return mc_error(MC_EARG, "backend %d does not exist", (int)be);
  const mc_backend_ops *ops = mc_backend_table[be];
  if (!ops->score(m))
    return mc_error(MC_EARG, "backend '%s' cannot run architecture %s", ops->name, m->arch);
  int64_t outf = 0;
  if (__builtin_mul_overflow(batch, m->classes, &outf) || outf > (INT64_MAX / 8))
    return mc_error(MC_ENOMEM, "batch %lld x %lld classes: too large", (long long)batch,
                    (long long)m->classes);
  mc_exec *e = mc_calloc_try(1, sizeof *e);
  if (!e) return mc_oom(sizeof *e, "an executor of %s", m->arch);
  e->m = m;
  e->ops = ops;
  e->be = be;
  e->batch = batch;
  mc_rng_seed(&e->rng, 0);
  const size_t nn = (size_t)m->n_nodes, nh = (size_t)m->n_heads;
  e->live_train = mc_calloc_try(nn, 1);
  e->live_eval = mc_calloc_try(nn, 1);
  e->head_run = mc_calloc_try(nh, 1);
  e->out = mc_calloc_try(nh, sizeof(float *));
  e->dout = mc_calloc_try(nh, sizeof(float *));
  mc_status st = MC_OK;
  if (!e->live_train || !e->live_eval || !e->head_run || !e->out || !e->dout) {
    st = mc_oom(2 * nn + nh * (1 + 2 * sizeof(float *)), "the node and head tables of an executor of %s", m->arch);
    goto fail;
  }
  mc_model_live(m, e->live_train, 1);
  mc_model_live(m, e->live_eval, 0);
  e->live = e->live_eval;
  for (size_t k = 0; k < nh; k++) {
    const size_t bytes = sizeof(float) * (size_t)outf;
    if (!(e->out[k] = mc_aligned_alloc_try(bytes)) || !(e->dout[k] = mc_aligned_alloc_try(bytes))) {
      st = mc_oom(bytes, "output head %zu of an executor of %s", k, m->arch);
      goto fail;
    }
  }
  if ((st = ops->init(e))) goto fail;
  *out = e;
  return MC_OK;
fail:
  mc_exec_free(e);
  return st;
}

void mc_exec_free(mc_exec *e) {
  if (!e) return;
  for (int i = 0; i < e->n_workers; i++) mc_exec_free(e->workers[i]);
  free(e->workers);
  e->ops->free(e);
  for (int k = 0; k < e->m->n_heads; k++) {
    if (e->out) free(e->out[k]);
    if (e->dout) free(e->dout[k]);
  }
  free(e->out);
  free(e->dout);
  free(e->head_run);
  free(e->live_train);
  free(e->live_eval);
  free(e);
}

mc_status mc_exec_forward(mc_exec *e, const float *theta, float *state, const float *x, int64_t n,
                          mc_mode mode) {
  if (n < 1 || n > e->batch)
    return mc_error(MC_EARG, "forward of %lld rows on an executor for %lld", (long long)n,
                    (long long)e->batch);
  if ((int)mode < MC_MODE_EVAL || mode > MC_MODE_EVAL_ALL_HEADS)
    return mc_error(MC_EARG, "forward: mode %d does not exist", (int)mode);
  e->n = n;
  /* BN recompute too: every BN's statistics then belong to the same theta
   * (an aux head's are read again when a recomputed point is aligned) */
  e->all_heads = mode != MC_MODE_EVAL;
  e->mode = mode == MC_MODE_EVAL_ALL_HEADS ? MC_MODE_EVAL : mode;
  e->live = e->all_heads ? e->live_train : e->live_eval;
  for (int k = 0; k < e->m->n_heads; k++) e->head_run[k] = e->all_heads || !e->m->heads[k].train_only;
  mc_status st = e->ops->forward(e, theta, state, x);
  if (st) {
    e->n = 0; /* no backward of a failed forward */
    return st;
  }
  if (mode == MC_MODE_BN_RECOMPUTE) e->bn_count++;
  return MC_OK;
}

const float *mc_exec_output(const mc_exec *e, int head) {
  if (head < 0 || head >= e->m->n_heads || !e->n || !e->head_run[head]) return NULL;
  return e->out[head];
}

mc_status mc_exec_loss(mc_exec *e, const int32_t *labels, float scale, double *loss, int64_t *correct) {
  if (!e->n) return mc_error(MC_EARG, "mc_exec_loss before a successful forward");
  const mc_model *m = e->m;
  double total = 0;
  for (int k = 0; k < m->n_heads; k++) {
    if (!e->head_run[k]) continue;
    const float w = m->heads[k].weight;
    int64_t hits = 0;
    total += w * mc_softmax_xent(e->out[k], labels, e->n, m->classes, e->dout[k], scale * w, &hits);
    if (k == 0 && correct) *correct = hits;
  }
  if (loss) *loss = total;
  return MC_OK;
}

mc_status mc_exec_backward(mc_exec *e, const float *theta, const float *const *dout, float *grad,
                           float *dx) {
  if (!e->n) return mc_error(MC_EARG, "backward without a successful forward");
  if (!grad && !dx) return MC_OK; /* nothing asked for */
  if (!dout) dout = (const float *const *)e->dout;
  return e->ops->backward(e, theta, dout, grad, dx);
}

static mc_status check_node(const mc_exec *e, int node) {
  if (node < 0 || node >= e->m->n_nodes || !e->n)
    return mc_error(MC_EARG, "read of node %d: no such node or no forward yet", node);
  if (!e->live[node])
    return mc_error(MC_EARG, "node '%s' was not computed by the last forward (it feeds only train-only heads)",
                    e->m->nodes[node].name);
  return MC_OK;
}

mc_status mc_exec_read(mc_exec *e, int node, float *out) {
  mc_status st = check_node(e, node);
  return st ? st : e->ops->read(e, node, out);
}

mc_status mc_exec_view(mc_exec *e, int node, float *buf, mc_act_view *v) {
  mc_status st = check_node(e, node);
  if (st) return st;
  if (e->ops->view(e, node, v) == 0) return MC_OK;
  if ((st = e->ops->read(e, node, buf))) return st;
  const mc_node *nd = &e->m->nodes[node];
  const int64_t S = nd->H * nd->W;
  *v = (mc_act_view){buf, 1, nd->C * S, S, 1};
  return MC_OK;
}

/* Thread tid's copy of e for `rows` rows (inside the parallel region,
 * after this thread's OpenMP thread count is set to 1). */
static mc_status worker_get(mc_exec *e, int tid, int64_t rows, mc_exec **out) {
  mc_exec **w = &e->workers[tid];
  if (*w && (*w)->batch < rows) { /* a larger copy serves smaller slices */
    mc_exec_free(*w);
    *w = NULL;
  }
  mc_status st = *w ? MC_OK : mc_exec_create(w, e->m, rows, e->be);
  *out = *w;
  return st;
}

mc_status mc_exec_parallel(mc_exec *const *es, int ne, int64_t rows, mc_exec_worker_fn fn, void *arg) {
  MC_ASSERT(ne >= 1 && ne <= MC_EXEC_PARALLEL_MAX && rows >= 1);
  const int T = mc_get_threads();
  for (int i = 0; i < ne; i++) {
    mc_exec *e = es[i];
    if (e->n_workers < T) {
      mc_exec **wk = mc_realloc_try(e->workers, sizeof(mc_exec *) * (size_t)T);
      if (!wk) return mc_oom(sizeof(mc_exec *) * (size_t)T, "the list of %d worker executors", T);
      e->workers = wk;
      for (int t = e->n_workers; t < T; t++) e->workers[t] = NULL;
      e->n_workers = T;
    }
  }
  mc_status stv[64] = {MC_OK};
  char msg[64][256];
  int failed = 0;
  MC_ASSERT(T <= 64);
#pragma omp parallel num_threads(T)
  {
    const int tid = omp_get_thread_num(), nthr = omp_get_num_threads();
    omp_set_num_threads(1); /* this thread's nested work (oneDNN, BLAS, our loops) runs on it alone */
    mc_exec *w[MC_EXEC_PARALLEL_MAX];
    mc_status s = MC_OK;
    for (int i = 0; i < ne && !s; i++) s = worker_get(es[i], tid, rows, &w[i]);
    if (s) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp barrier
    int stop;
#pragma omp atomic read
    stop = failed;
    if (!s && !stop) {
      /* fn runs in a team of its own (one thread, an inactive nested
       * region): an orphaned `omp barrier` in the code it calls binds to
       * the innermost enclosing region, and without this one that would be
       * the T-thread team above.  oneDNN 2.6's ncsp batch normalisation
       * (BN1d, the mlp's) calls one (dnnl_thr_barrier) from inside its
       * parallel(), which runs the body as f(0, 1) on this thread when it
       * sees omp_in_parallel(): twice per backward, and in a forward that
       * computes batch statistics.  In this T-thread team those barriers
       * paired with the other threads' and, once one thread ran more
       * batches than another (5 PGD slices on 2 threads), waited forever
       * for a thread already at the region's closing barrier (issue 14). */
#pragma omp parallel num_threads(1)
      s = fn(w, tid, nthr, arg);
    }
    stv[tid] = s;
    if (s) snprintf(msg[tid], sizeof msg[tid], "%s", mc_errmsg());
  }
  for (int t = 0; t < T; t++)
    if (stv[t]) return mc_error(stv[t], "%s", msg[t]);
  return MC_OK;
}

double mc_softmax_xent(const float *logits, const int32_t *labels, int64_t n, int64_t classes, float *dlogits,
                       float scale, int64_t *correct) {
  double total = 0;
  int64_t hits = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *z = logits + i * classes;
    int64_t am = 0;
    double mx = z[0];
    for (int64_t c = 1; c < classes; c++)
      if (z[c] > mx) {
        mx = z[c];
        am = c;
      }
    double se = 0;
    for (int64_t c = 0; c < classes; c++) se += exp((double)z[c] - mx);
    double lse = mx + log(se);
    total += lse - z[labels[i]];
    hits += am == labels[i];
    if (dlogits)
      for (int64_t c = 0; c < classes; c++) {
        double p = exp((double)z[c] - lse);
        dlogits[i * classes + c] = (float)((p - (c == labels[i])) * scale / (double)n);
      }
  }
  if (correct) *correct = hits;
  return total / (double)n;
}
