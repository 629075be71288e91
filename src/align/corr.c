/* Activation-correlation statistics for alignment: float64 moments
 * streamed over batches, one Pearson matrix per (tap, segment), summed per
 * permutation group; and the LAP that turns them into permutations. */
#include "align/align.h"
#include "align/lap.h"
#include "eval/eval.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void mc_alignment_init_identity(mc_alignment *al, const mc_model *m) {
  memset(al, 0, sizeof *al);
  al->n_groups = m->n_groups;
  al->perm = mc_calloc((size_t)m->n_groups + 1, sizeof(int *));
  al->corr_before = mc_calloc((size_t)m->n_groups + 1, sizeof(double));
  al->corr_after = mc_calloc((size_t)m->n_groups + 1, sizeof(double));
  al->n_taps = mc_calloc((size_t)m->n_groups + 1, sizeof(int));
  for (int g = 0; g < m->n_groups; g++) {
    al->perm[g] = mc_malloc(sizeof(int) * (size_t)m->groups[g].size);
    for (int64_t i = 0; i < m->groups[g].size; i++) al->perm[g][i] = (int)i;
    al->corr_before[g] = al->corr_after[g] = NAN;
  }
}

void mc_alignment_free(mc_alignment *al) {
  for (int g = 0; g < al->n_groups; g++) free(al->perm[g]);
  free(al->perm);
  free(al->corr_before);
  free(al->corr_after);
  free(al->n_taps);
  memset(al, 0, sizeof *al);
}

/* One statistic: a (node, segment) pair whose units belong to a group. */
typedef struct {
  int node, group;
  int64_t ch_off, count, repeat; /* channel offset of the segment */
  double *sa, *sb, *saa, *sbb, *sab; /* moments */
  double cnt;
} tap;

static int is_tap_node(const mc_model *m, int i, const int *has_relu) {
  const mc_node *nd = &m->nodes[i];
  if (nd->kind == MC_NODE_RELU) return 1;
  /* groups never followed by a ReLU fall back to the opening layer's output */
  if ((nd->kind == MC_NODE_CONV || nd->kind == MC_NODE_LINEAR) && nd->layout.seg[0].group >= 0)
    return !has_relu[nd->layout.seg[0].group];
  return 0;
}

static tap *collect_taps(const mc_model *m, int *ntap) {
  int *has_relu = mc_calloc((size_t)m->n_groups + 1, sizeof(int));
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind != MC_NODE_RELU) continue;
    for (int s = 0; s < nd->layout.n; s++)
      if (nd->layout.seg[s].group >= 0) has_relu[nd->layout.seg[s].group] = 1;
  }
  tap *t = NULL;
  int n = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    if (!is_tap_node(m, i, has_relu)) continue;
    const mc_node *nd = &m->nodes[i];
    int64_t off = 0;
    for (int s = 0; s < nd->layout.n; s++) {
      const mc_segment *sg = &nd->layout.seg[s];
      if (sg->group >= 0) {
        t = realloc(t, sizeof(tap) * (size_t)(n + 1));
        MC_ASSERT(t);
        tap *p = &t[n++];
        memset(p, 0, sizeof *p);
        p->node = i;
        p->group = sg->group;
        p->ch_off = off;
        p->count = sg->count;
        p->repeat = sg->repeat;
        size_t c = (size_t)sg->count;
        p->sa = mc_calloc(c, sizeof(double));
        p->sb = mc_calloc(c, sizeof(double));
        p->saa = mc_calloc(c, sizeof(double));
        p->sbb = mc_calloc(c, sizeof(double));
        p->sab = mc_calloc(c * c, sizeof(double));
      }
      off += sg->count * sg->repeat;
    }
  }
  free(has_relu);
  *ntap = n;
  return t;
}

static void free_taps(tap *t, int n) {
  for (int i = 0; i < n; i++) {
    free(t[i].sa); free(t[i].sb); free(t[i].saa); free(t[i].sbb); free(t[i].sab);
  }
  free(t);
}

/* Rearranges the segment of a plain (N, C, S) activation into (count,
 * N*S*repeat) rows of doubles -- row c holds every sample of unit c -- and
 * adds each row's sum and sum of squares into s1, s2 on the way. */
static void gather_units(double *dst, const float *act, int64_t N, int64_t Ctot, int64_t S,
                         const tap *p, double *s1, double *s2) {
  /* flat layouts (S == 1) carry `repeat` features per unit: extra samples */
  int64_t per = S * p->repeat, cols = N * per;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < p->count; c++) {
    double a1 = 0, a2 = 0;
    for (int64_t i = 0; i < N; i++) {
      const float *src = act + (i * Ctot + p->ch_off + c * p->repeat) * S;
      double *d = dst + c * cols + i * per;
      for (int64_t j = 0; j < per; j++) {
        double v = src[j];
        d[j] = v;
        a1 += v;
        a2 += v * v;
      }
    }
    s1[c] += a1;
    s2[c] += a2;
  }
}

/* Cross moments of a tap's gathered rows: sab += A B^T. */
static void accumulate(tap *p, const double *A, const double *B, int64_t cols) {
  const int64_t C = p->count;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)C, (int)C, (int)cols, 1.0, A, (int)cols, B,
              (int)cols, 1.0, p->sab, (int)C);
  p->cnt += (double)cols;
}

/* Pearson correlation of a tap, added into G (count x count). */
static void add_corr(const tap *p, double *G) {
  const int64_t C = p->count;
  const double n = p->cnt;
  for (int64_t i = 0; i < C; i++) {
    double ma = p->sa[i] / n, va = fmax(p->saa[i] / n - ma * ma, 0);
    double sa = sqrt(va) + 1e-5;
    for (int64_t j = 0; j < C; j++) {
      double mb = p->sb[j] / n, vb = fmax(p->sbb[j] / n - mb * mb, 0);
      double sb = sqrt(vb) + 1e-5;
      double r = (p->sab[i * C + j] / n - ma * mb) / (sa * sb);
      G[i * C + j] += isfinite(r) ? r : 0.0;
    }
  }
}

/* Runs A and B over the data and returns the per-group summed correlation
 * matrices (caller frees each) and tap counts. */
static mc_status corr_matrices(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                               const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, double ***Gout,
                               int *taps_per_group) {
  if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
    return mc_error(MC_ESHAPE, "alignment data are %lldx%lldx%lld, the model expects %lldx%lldx%lld",
                    (long long)ds->c, (long long)ds->h, (long long)ds->w, (long long)m->in_c,
                    (long long)m->in_h, (long long)m->in_w);
  if (n <= 0 || n > ds->n) n = ds->n;
  if (batch > n) batch = n;
  batch = mc_eval_slice(batch); /* eval mode: slicing leaves the sums unchanged */
  mc_exec *ea, *eb;
  mc_status st = mc_exec_create(&ea, m, batch, be);
  if (st) return st;
  if ((st = mc_exec_create(&eb, m, batch, be))) {
    mc_exec_free(ea);
    return st;
  }
  int ntap;
  tap *taps = collect_taps(m, &ntap);
  size_t maxact = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t s = (size_t)(nd->C * nd->H * nd->W);
    if (s > maxact) maxact = s;
  }
  float *act = mc_aligned_alloc(sizeof(float) * maxact * (size_t)batch);
  double *A = mc_aligned_alloc(sizeof(double) * maxact * (size_t)batch);
  double *B = mc_aligned_alloc(sizeof(double) * maxact * (size_t)batch);
  float *x = mc_aligned_alloc(sizeof(float) * (size_t)(batch * m->in_c * m->in_h * m->in_w));
  int32_t *y = mc_malloc(sizeof(int32_t) * (size_t)batch);
  int64_t *idx = mc_malloc(sizeof(int64_t) * (size_t)batch);
  for (int64_t s0 = 0; s0 < n; s0 += batch) {
    int64_t k = n - s0 < batch ? n - s0 : batch;
    for (int64_t i = 0; i < k; i++) idx[i] = s0 + i;
    mc_dataset_batch(ds, idx, k, NULL, NULL, x, y);
    mc_exec_forward(ea, ta, sa, x, k, MC_MODE_EVAL);
    mc_exec_forward(eb, tb, sb, x, k, MC_MODE_EVAL);
    for (int t = 0; t < ntap; t++) {
      tap *p = &taps[t];
      const mc_node *nd = &m->nodes[p->node];
      int64_t S = nd->H * nd->W, cols = k * S * p->repeat;
      mc_exec_read(ea, p->node, act);
      gather_units(A, act, k, nd->C, S, p, p->sa, p->saa);
      mc_exec_read(eb, p->node, act);
      gather_units(B, act, k, nd->C, S, p, p->sb, p->sbb);
      accumulate(p, A, B, cols);
    }
  }
  double **G = mc_calloc((size_t)m->n_groups + 1, sizeof(double *));
  for (int g = 0; g < m->n_groups; g++) {
    size_t c = (size_t)m->groups[g].size;
    G[g] = mc_calloc(c * c, sizeof(double));
    taps_per_group[g] = 0;
  }
  for (int t = 0; t < ntap; t++) {
    add_corr(&taps[t], G[taps[t].group]);
    taps_per_group[taps[t].group]++;
  }
  free_taps(taps, ntap);
  free(act); free(A); free(B); free(x); free(y); free(idx);
  mc_exec_free(ea);
  mc_exec_free(eb);
  *Gout = G;
  return MC_OK;
}

static double matched_mean(const double *G, int64_t n, const int *perm, int taps) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += G[i * n + (perm ? perm[i] : i)];
  return taps > 0 ? s / (double)(n * taps) : NAN;
}

static mc_status corr_common(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                             const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, mc_alignment *al,
                             int solve) {
  double **G = NULL;
  mc_status st = corr_matrices(m, ta, sa, tb, sb, ds, n, batch, be, &G, al->n_taps);
  if (st) return st;
  for (int g = 0; g < m->n_groups && !st; g++) {
    int64_t c = m->groups[g].size;
    al->corr_before[g] = matched_mean(G[g], c, NULL, al->n_taps[g]);
    if (solve && al->n_taps[g] > 0) st = mc_lap_max(G[g], c, al->perm[g], NULL);
    al->corr_after[g] = matched_mean(G[g], c, al->perm[g], al->n_taps[g]);
  }
  for (int g = 0; g < m->n_groups; g++) free(G[g]);
  free(G);
  return st;
}

mc_status mc_align_corr(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                        const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, mc_alignment *out) {
  mc_alignment_init_identity(out, m);
  mc_status st = corr_common(m, ta, sa, tb, sb, ds, n, batch, be, out, 1);
  if (st) mc_alignment_free(out);
  return st;
}

mc_status mc_align_diagnostics(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                               const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be,
                               mc_alignment *al) {
  return corr_common(m, ta, sa, tb, sb, ds, n, batch, be, al, 0);
}
