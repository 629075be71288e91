/* REPAIR: per-channel statistics of layer outputs and the folded affine
 * correction of an interpolated network (see repair.h). */
#include "eval/repair.h"

#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const MODE_NAMES[] = {"none", "reset", "repair"};

mc_status mc_repair_parse(const char *s, mc_repair_mode *mode) {
  for (int i = 0; i < 3; i++)
    if (s && !strcmp(s, MODE_NAMES[i])) {
      *mode = (mc_repair_mode)i;
      return MC_OK;
    }
  return mc_error(MC_EARG, "--repair %s: expected none, reset or repair", s ? s : "(null)");
}

const char *mc_repair_name(mc_repair_mode mode) {
  return (int)mode >= 0 && (int)mode < 3 ? MODE_NAMES[mode] : "?";
}

mc_repair_mode mc_repair_default(const mc_model *m) {
  return mc_model_has_bn(m) ? MC_REPAIR_RESET : MC_REPAIR_NONE;
}

mc_status mc_repair_layers(const mc_model *m, int *nodes, int *n) {
  const int N = m->n_nodes;
  /* needed[i]: node i feeds a head computed in eval mode; head[i]: it is one;
   * bn_fed[i]: a BN reads it */
  char *flags = mc_calloc_try((size_t)(3 * N), 1);
  if (!flags) return mc_oom((size_t)(3 * N), "REPAIR's per-node flags");
  char *needed = flags, *head = flags + N, *bn_fed = flags + 2 * N;
  for (int k = 0; k < m->n_heads; k++) {
    head[m->heads[k].node] = 1;
    if (!m->heads[k].train_only) needed[m->heads[k].node] = 1;
  }
  for (int i = N - 1; i >= 0; i--)
    for (int j = 0; j < m->nodes[i].n_in; j++) {
      if (needed[i]) needed[m->nodes[i].in[j]] = 1;
      if (m->nodes[i].kind == MC_NODE_BN) bn_fed[m->nodes[i].in[j]] = 1;
    }
  mc_status st = MC_OK;
  int cnt = 0;
  for (int i = 0; i < N && !st; i++) {
    const mc_node *nd = &m->nodes[i];
    if ((nd->kind != MC_NODE_CONV && nd->kind != MC_NODE_LINEAR) || !needed[i] || head[i] || bn_fed[i]) continue;
    if (nd->t_bias < 0)
      st = mc_error(MC_ESHAPE,
                    "REPAIR: layer '%s' (%s, not followed by batch norm) has no bias, so the shift of its "
                    "correction cannot be folded into it; give it a bias (bias=1 in the spec) or use --repair "
                    "reset or none",
                    nd->name, mc_node_kind_name(nd->kind));
    else if (nodes)
      nodes[cnt++] = i;
    else
      cnt++;
  }
  free(flags);
  *n = st ? 0 : cnt;
  return st;
}

typedef struct {
  const float *theta;
  float *state; /* only read in eval mode */
  const mc_dataset *ds;
  int64_t n, rows;
  const mc_model *m;
  const int *nodes;
  int nl;
  int64_t nch;
  double **acc; /* per thread: sums then sums of squares, 2 * nch */
} stats_job;

static mc_status stats_slices(mc_exec **w, int tid, int nthr, void *arg) {
  stats_job *j = arg;
  size_t maxact = 0;
  for (int l = 0; l < j->nl; l++) {
    const mc_node *nd = &j->m->nodes[j->nodes[l]];
    size_t s = (size_t)(nd->C * nd->H * nd->W);
    if (s > maxact) maxact = s;
  }
  const size_t act = sizeof(float) * maxact * (size_t)j->rows;
  double *acc = j->acc[tid] = mc_calloc_try((size_t)(2 * j->nch), sizeof(double));
  float *buf = mc_aligned_alloc_try(act);
  if (!acc || !buf) {
    free(buf);
    return mc_oom(sizeof(double) * (size_t)(2 * j->nch) + act, "REPAIR's channel statistics of thread %d", tid);
  }
  mc_batches b;
  mc_status st = MC_OK;
  if ((st = mc_batches_init_part(&b, j->ds, j->n, j->rows, tid, nthr))) {
    free(buf);
    return st;
  }
  for (int64_t k; !st && (k = mc_batches_next(&b)) > 0;) {
    if ((st = mc_exec_forward(w[0], j->theta, j->state, b.x, k, MC_MODE_EVAL))) break;
    double *sum = acc, *sq = acc + j->nch;
    for (int l = 0; l < j->nl && !st; l++) {
      const mc_node *nd = &j->m->nodes[j->nodes[l]];
      mc_act_view v;
      if ((st = mc_exec_view(w[0], j->nodes[l], buf, &v))) break;
      const int64_t S = nd->H * nd->W;
      for (int64_t c = 0; c < nd->C; c++) {
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < k; i++) {
          const float *p = v.data + i * v.n_stride + (c / v.block) * v.cb_stride + c % v.block;
          for (int64_t q = 0; q < S; q++) {
            const double x = p[q * v.s_stride];
            s1 += x;
            s2 += x * x;
          }
        }
        sum[c] += s1;
        sq[c] += s2;
      }
      sum += nd->C;
      sq += nd->C;
    }
  }
  mc_batches_free(&b);
  free(buf);
  return st;
}

mc_status mc_channel_stats(mc_exec *e, const float *theta, float *state, const mc_dataset *ds, int64_t n,
                           const int *nodes, int nl, double *mean, double *std) {
  const mc_model *m = mc_exec_model(e);
  mc_status st = mc_check_data_shape(m, ds);
  if (st) return st;
  if (n <= 0 || n > ds->n) n = ds->n;
  int64_t nch = 0;
  for (int l = 0; l < nl; l++) nch += m->nodes[nodes[l]].C;
  const int T = mc_get_threads() > 0 ? mc_get_threads() : 1;
  stats_job j = {theta, state, ds, n, mc_eval_rows(e), m, nodes, nl, nch, mc_calloc_try((size_t)T, sizeof(double *))};
  if (!j.acc) return mc_oom(sizeof(double *) * (size_t)T, "REPAIR's per-thread statistics");
  st = mc_exec_parallel(&e, 1, j.rows, stats_slices, &j);
  double *tot = st ? NULL : mc_calloc_try((size_t)(2 * nch + 1), sizeof(double));
  if (!st && !tot) st = mc_oom(sizeof(double) * (size_t)(2 * nch + 1), "REPAIR's summed channel statistics");
  for (int t = 0; t < T; t++) { /* thread order: the same bytes every run */
    for (int64_t q = 0; tot && j.acc[t] && q < 2 * nch; q++) tot[q] += j.acc[t][q];
    free(j.acc[t]);
  }
  free(j.acc);
  int64_t c0 = 0;
  for (int l = 0; l < nl && !st; l++) {
    const mc_node *nd = &m->nodes[nodes[l]];
    const double cnt = (double)n * (double)(nd->H * nd->W);
    for (int64_t c = 0; c < nd->C; c++, c0++) {
      const double mu = tot[c0] / cnt;
      mean[c0] = mu;
      std[c0] = sqrt(fmax(tot[nch + c0] / cnt - mu * mu, 0.0));
      if (!isfinite(mu) || !isfinite(std[c0]))
        st = mc_error(MC_ENAN, "REPAIR: the output of layer '%s' is not finite (channel %lld)", nd->name,
                      (long long)c);
    }
  }
  free(tot);
  return st;
}

void mc_repair_free(mc_repair *r) {
  free(r->nodes);
  free(r->off);
  for (int k = 0; k < MC_REPAIR_MAX_REFS; k++) {
    free(r->mean[k]);
    free(r->std[k]);
  }
  free(r->scale);
  free(r->shift);
  free(r->theta);
  free(r->state);
  memset(r, 0, sizeof *r);
}

mc_status mc_repair_init(mc_repair *r, mc_exec *e, int n_refs, const float *const *theta, const float *const *state,
                         const mc_dataset *ds, int64_t samples) {
  memset(r, 0, sizeof *r);
  const mc_model *m = mc_exec_model(e);
  MC_ASSERT(n_refs >= 1 && n_refs <= MC_REPAIR_MAX_REFS);
  int nl;
  mc_status st = mc_repair_layers(m, NULL, &nl);
  if (st) return st;
  r->nodes = mc_calloc_try((size_t)nl + 1, sizeof(int));
  r->off = mc_calloc_try((size_t)nl + 1, sizeof(int64_t));
  if (!r->nodes || !r->off) {
    mc_repair_free(r);
    return mc_oom(((size_t)nl + 1) * (sizeof(int) + sizeof(int64_t)), "REPAIR's list of %d layers", nl);
  }
  if ((st = mc_repair_layers(m, r->nodes, &nl))) {
    mc_repair_free(r);
    return st;
  }
  r->n_layers = nl;
  for (int l = 0; l < nl; l++) r->off[l + 1] = r->off[l] + m->nodes[r->nodes[l]].C;
  const size_t nch = (size_t)r->off[nl] + 1;
  r->n_refs = n_refs;
  r->samples = samples;
  r->w[0] = 1;
  const size_t nth = sizeof(float) * (m->n_theta + 1), nst = sizeof(float) * (m->n_state + 1);
  r->scale = mc_calloc_try(nch, sizeof(double));
  r->shift = mc_calloc_try(nch, sizeof(double));
  r->theta = mc_aligned_alloc_try(nth);
  r->state = mc_aligned_alloc_try(nst);
  if (!r->scale || !r->shift || !r->theta || !r->state)
    st = mc_oom(2 * sizeof(double) * nch + nth + nst, "REPAIR's correction (%zu channels) and parameter buffers", nch);
  for (int k = 0; k < n_refs && !st; k++) {
    r->mean[k] = mc_calloc_try(nch, sizeof(double));
    r->std[k] = mc_calloc_try(nch, sizeof(double));
    if (!r->mean[k] || !r->std[k]) {
      st = mc_oom(2 * sizeof(double) * nch, "REPAIR's statistics of reference model %d", k + 1);
      break;
    }
    if (nl == 0) continue; /* a model with BN everywhere: REPAIR is the BN reset */
    if (state && state[k]) memcpy(r->state, state[k], sizeof(float) * m->n_state);
    else st = mc_bn_recompute(e, theta[k], r->state, ds, samples);
    if (!st) st = mc_channel_stats(e, theta[k], r->state, ds, samples, r->nodes, nl, r->mean[k], r->std[k]);
  }
  if (st) mc_repair_free(r);
  return st;
}

void mc_repair_set_t(mc_repair *r, double t) {
  const double w[MC_REPAIR_MAX_REFS] = {1 - t, t, 0};
  mc_repair_set_weights(r, w);
}

void mc_repair_set_weights(mc_repair *r, const double *w) {
  for (int k = 0; k < MC_REPAIR_MAX_REFS; k++) r->w[k] = k < r->n_refs ? w[k] : 0;
}

/* Folds y' = a y + b (per output channel) into the layer's weight rows and bias. */
static void fold(const mc_model *m, const mc_node *nd, float *theta, const double *a, const double *b) {
  const mc_tensor *tw = &m->tensors[nd->t_weight], *tb = &m->tensors[nd->t_bias];
  const size_t row = tw->numel / (size_t)nd->C;
  for (int64_t c = 0; c < nd->C; c++) {
    float *wr = theta + tw->off + (size_t)c * row;
    for (size_t q = 0; q < row; q++) wr[q] = (float)(a[c] * wr[q]);
    float *bias = theta + tb->off + c;
    *bias = (float)(a[c] * *bias + b[c]);
  }
}

mc_status mc_repair_apply(mc_repair *r, mc_exec *e, float *theta, float *state, const mc_dataset *ds) {
  const mc_model *m = mc_exec_model(e);
  mc_status st = MC_OK;
  const size_t nch = (size_t)r->off[r->n_layers] + 1;
  double *mu = mc_calloc_try(nch, sizeof(double)), *sd = mc_calloc_try(nch, sizeof(double));
  if (!mu || !sd) st = mc_oom(2 * sizeof(double) * nch, "REPAIR's channel statistics of a point (%zu channels)", nch);
  for (int l = 0; l < r->n_layers && !st; l++) {
    const mc_node *nd = &m->nodes[r->nodes[l]];
    const int64_t o = r->off[l];
    if ((st = mc_bn_recompute(e, theta, state, ds, r->samples))) break;
    if ((st = mc_channel_stats(e, theta, state, ds, r->samples, &r->nodes[l], 1, mu + o, sd + o))) break;
    for (int64_t c = o; c < o + nd->C; c++) {
      double tm = 0, ts = 0;
      for (int k = 0; k < r->n_refs; k++) {
        tm += r->w[k] * r->mean[k][c];
        ts += r->w[k] * r->std[k][c];
      }
      /* an extrapolated plane point may ask for a negative std: none */
      ts = fmax(ts, 0.0);
      r->scale[c] = sd[c] > 0 ? ts / sd[c] : 1.0;
      r->shift[c] = tm - r->scale[c] * mu[c];
    }
    fold(m, nd, theta, r->scale + o, r->shift + o);
  }
  free(mu);
  free(sd);
  if (!st) st = mc_bn_recompute(e, theta, state, ds, r->samples);
  return st;
}

mc_status mc_repair_point(mc_repair *r, mc_exec *e, const float *theta, float *state, const mc_dataset *ds) {
  memcpy(r->theta, theta, sizeof(float) * mc_exec_model(e)->n_theta);
  return mc_repair_apply(r, e, r->theta, state, ds);
}

mc_status mc_repair_begin(mc_repair **out, mc_exec *e, const mc_path_opts *o, int n_refs, const float *const *theta,
                          const float *const *state, const mc_data *d) {
  *out = NULL;
  if (o->repair != MC_REPAIR_REPAIR) return MC_OK;
  mc_repair *r = mc_malloc_try(sizeof *r);
  if (!r) return mc_oom(sizeof *r, "REPAIR's state");
  mc_status st = mc_repair_init(r, e, n_refs, theta, state, &d->train, o->bn_samples);
  if (st) free(r);
  else *out = r;
  return st;
}

void mc_repair_end(mc_repair *r) {
  if (!r) return;
  mc_repair_free(r);
  free(r);
}

mc_status mc_repair_point_eval(mc_repair *r, mc_exec *e, const float *theta, float *state, const mc_data *d,
                               const mc_path_opts *o, mc_metrics *te, mc_metrics *tr, mc_metrics *rob) {
  if (!r) return mc_point_eval(e, theta, state, d, o, te, tr, rob);
  mc_status st = mc_repair_point(r, e, theta, state, &d->train);
  if (st) return st;
  mc_path_opts o2 = *o;
  o2.bn_recompute = 0; /* done by REPAIR, at the corrected point */
  return mc_point_eval(e, r->theta, state, d, &o2, te, tr, rob);
}

mc_status mc_path_point_model(const mc_model *m, const mc_curve *c, const float *state_a, const float *state_b,
                              double t, const mc_data *d, const mc_path_opts *o, mc_backend be, float *theta,
                              float *state) {
  mc_curve_point(c, t, theta);
  for (size_t i = 0; i < m->n_state; i++) state[i] = (float)((1 - t) * state_a[i] + t * state_b[i]);
  if (o->repair == MC_REPAIR_NONE) return MC_OK;
  mc_exec *e;
  mc_status st = mc_exec_create(&e, m, o->batch > 0 ? o->batch : 500, be);
  if (st) return st;
  if (o->repair == MC_REPAIR_RESET) {
    st = mc_bn_recompute(e, theta, state, &d->train, o->bn_samples);
  } else {
    mc_repair *r;
    const float *refs[2] = {c->a, c->b}, *ref_states[2] = {state_a, state_b};
    if (!(st = mc_repair_begin(&r, e, o, 2, refs, ref_states, d))) {
      mc_repair_set_t(r, t);
      st = mc_repair_apply(r, e, theta, state, &d->train);
      mc_repair_end(r);
    }
  }
  mc_exec_free(e);
  return st;
}
