/* Activation-correlation statistics for alignment: moments streamed over
 * batches (float32 within an image, float64 across images), one Pearson
 * matrix per (tap, segment), summed per permutation group; and the LAP
 * that turns them into permutations. */
#include "align/align.h"
#include "align/lap.h"
#include "eval/eval.h"
#include "nn/kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mc_status mc_alignment_init_identity(mc_alignment *al, const mc_model *m) {
  memset(al, 0, sizeof *al);
  al->n_groups = m->n_groups;
  const size_t ng = (size_t)m->n_groups + 1;
  al->perm = mc_calloc_try(ng, sizeof(int *));
  al->corr_before = mc_calloc_try(ng, sizeof(double));
  al->corr_after = mc_calloc_try(ng, sizeof(double));
  al->n_taps = mc_calloc_try(ng, sizeof(int));
  if (!al->perm || !al->corr_before || !al->corr_after || !al->n_taps) {
    mc_alignment_free(al);
    return mc_oom(ng * (sizeof(int *) + 2 * sizeof(double) + sizeof(int)), "an alignment of %d groups",
                  m->n_groups);
  }
  for (int g = 0; g < m->n_groups; g++) {
    const size_t bytes = sizeof(int) * (size_t)m->groups[g].size;
    if (!(al->perm[g] = mc_malloc_try(bytes))) {
      mc_alignment_free(al);
      return mc_oom(bytes, "the permutation of group %d (%s)", g, m->groups[g].name);
    }
    for (int64_t i = 0; i < m->groups[g].size; i++) al->perm[g][i] = (int)i;
    al->corr_before[g] = al->corr_after[g] = NAN;
  }
  return MC_OK;
}

void mc_alignment_free(mc_alignment *al) {
  for (int g = 0; al->perm && g < al->n_groups; g++) free(al->perm[g]);
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
  size_t mom;                    /* its moments in a moment array: see MOM */
} tap;

/* A tap's moments at base + p->mom: sum A B^T (count x count), then the
 * per-unit sums of A, B, A^2, B^2 (count each). */
enum { M_AB, M_A, M_B, M_AA, M_BB };
static double *mom(double *base, const tap *p, int which) {
  const int64_t C = p->count;
  return base + p->mom + (which == M_AB ? 0 : C * C + (which - 1) * C);
}

static int is_tap_node(const mc_model *m, int i, const int *has_relu) {
  const mc_node *nd = &m->nodes[i];
  if (nd->kind == MC_NODE_RELU) return 1;
  /* groups never followed by a ReLU fall back to the opening layer's output */
  if ((nd->kind == MC_NODE_CONV || nd->kind == MC_NODE_LINEAR) && nd->layout.seg[0].group >= 0)
    return !has_relu[nd->layout.seg[0].group];
  return 0;
}

/* *taps = every statistic of m (*ntap of them, *nmom moments in all). */
static mc_status collect_taps(const mc_model *m, tap **taps, int *ntap, size_t *nmom) {
  *taps = NULL;
  *ntap = 0;
  *nmom = 0;
  int *has_relu = mc_calloc_try((size_t)m->n_groups + 1, sizeof(int));
  if (!has_relu) return mc_oom(sizeof(int) * ((size_t)m->n_groups + 1), "the alignment's group table");
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
        tap *grown = mc_realloc_try(t, sizeof(tap) * (size_t)(n + 1));
        if (!grown) {
          free(t);
          free(has_relu);
          return mc_oom(sizeof(tap) * (size_t)(n + 1), "the alignment's list of %d activation taps", n + 1);
        }
        t = grown;
        tap *p = &t[n++];
        memset(p, 0, sizeof *p);
        p->node = i;
        p->group = sg->group;
        p->ch_off = off;
        p->count = sg->count;
        p->repeat = sg->repeat;
        p->mom = *nmom;
        *nmom += (size_t)(sg->count * sg->count + 4 * sg->count);
      }
      off += sg->count * sg->repeat;
    }
  }
  free(has_relu);
  *ntap = n;
  *taps = t;
  return MC_OK;
}

/* Moments, per image: the image's segment is taken as blocks of 8 units,
 * block b at g + b*bs holding [per][8] (units past count are zero), and the
 * sums are taken in float32 over its at most H*W*repeat samples, then added
 * in float64 across images (so rounding never grows with the data size).
 * oneDNN's 8-channel blocked outputs already are such blocks; any other
 * layout is gathered into them. */
static int64_t pad8(int64_t c) { return (c + 7) & ~(int64_t)7; }

static const float *at(const mc_act_view *v, int64_t i, int64_t c, int64_t s) {
  return v->data + i * v->n_stride + (c / v->block) * v->cb_stride + c % v->block + s * v->s_stride;
}

/* Image i's blocks in place (returns their stride), or gathered into dst. */
static const float *image_blocks(float *dst, const mc_act_view *v, int64_t i, int64_t S, const tap *p,
                                 int64_t *bs) {
  const int64_t per = S * p->repeat;
  if (v->block == 8 && v->s_stride == 8 && p->repeat == 1 && p->ch_off % 8 == 0 && p->count % 8 == 0) {
    *bs = v->cb_stride;
    return at(v, i, p->ch_off, 0);
  }
  for (int64_t c = 0; c < pad8(p->count); c++) {
    float *d = dst + (c / 8) * per * 8 + c % 8;
    if (c >= p->count) {
      for (int64_t j = 0; j < per; j++) d[j * 8] = 0.f;
      continue;
    }
    for (int64_t r = 0; r < p->repeat; r++) /* flat layouts: features of a unit are samples */
      for (int64_t q = 0; q < S; q++) d[(r * S + q) * 8] = *at(v, i, p->ch_off + c * p->repeat + r, q);
  }
  *bs = per * 8;
  return dst;
}

/* Adds a tap's moments over k images of A's and B's outputs into base;
 * wa, wb: room for one image's gathered blocks. */
static void accumulate(const tap *p, double *base, const mc_act_view *va, const mc_act_view *vb, int64_t k,
                       int64_t S, float *wa, float *wb) {
  const int64_t C = p->count, per = S * p->repeat;
  for (int64_t i = 0; i < k; i++) {
    int64_t bsa, bsb;
    const float *ga = image_blocks(wa, va, i, S, p, &bsa), *gb = image_blocks(wb, vb, i, S, p, &bsb);
    const mc_kern_block_sums_fn bsum = mc_kern_block_sums();
    bsum(ga, bsa, per, C, mom(base, p, M_A), mom(base, p, M_AA));
    bsum(gb, bsb, per, C, mom(base, p, M_B), mom(base, p, M_BB));
    mc_kern_block_cross()(ga, bsa, gb, bsb, per, C, mom(base, p, M_AB));
  }
}

/* Pearson correlation of a tap over n samples, added into G (count x count). */
static void add_corr(const tap *p, double *base, double n, double *G) {
  const int64_t C = p->count;
  const double *sab = mom(base, p, M_AB), *sa = mom(base, p, M_A), *sb = mom(base, p, M_B);
  const double *saa = mom(base, p, M_AA), *sbb = mom(base, p, M_BB);
  for (int64_t i = 0; i < C; i++) {
    double ma = sa[i] / n, va = fmax(saa[i] / n - ma * ma, 0);
    double da = sqrt(va) + 1e-5;
    for (int64_t j = 0; j < C; j++) {
      double mb = sb[j] / n, vb = fmax(sbb[j] / n - mb * mb, 0);
      double db = sqrt(vb) + 1e-5;
      double r = (sab[i * C + j] / n - ma * mb) / (da * db);
      G[i * C + j] += isfinite(r) ? r : 0.0;
    }
  }
}

typedef struct {
  const mc_model *m;
  const tap *taps;
  int ntap;
  size_t nmom;
  const float *ta, *tb;
  float *sa, *sb; /* only read in eval mode */
  const mc_dataset *ds;
  int64_t n, rows;
  double **acc; /* per thread: its moments */
  const mc_pgd *pgd; /* statistics on PGD inputs (NULL: clean) */
} corr_job;

/* One thread's share of the slices: both models forward, then the moments
 * of every tap, into this thread's own array. */
static mc_status corr_slices(mc_exec **w, int tid, int nthr, void *arg) {
  corr_job *j = arg;
  const mc_model *m = j->m;
  size_t maxact = 0, maxblk = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    size_t s = (size_t)(nd->C * nd->H * nd->W);
    if (s > maxact) maxact = s;
  }
  for (int t = 0; t < j->ntap; t++) {
    const mc_node *nd = &m->nodes[j->taps[t].node];
    size_t s = (size_t)(pad8(j->taps[t].count) * nd->H * nd->W * j->taps[t].repeat);
    if (s > maxblk) maxblk = s;
  }
  const size_t act = sizeof(float) * maxact * (size_t)j->rows, blk = sizeof(float) * maxblk;
  double *acc = j->acc[tid] = mc_calloc_try(j->nmom, sizeof(double));
  float *xa = mc_aligned_alloc_try(act), *xb = mc_aligned_alloc_try(act);
  float *wa = mc_aligned_alloc_try(blk), *wb = mc_aligned_alloc_try(blk);
  /* --align-adv: each model sees its own PGD examples of the images (eval
   * mode), as the official align_googlenet.py / AlignedModelPairs do */
  const size_t nx = sizeof(float) * (size_t)(j->rows * m->in_c * m->in_h * m->in_w);
  float *adv[2] = {NULL, NULL}, *dx = NULL;
  if (j->pgd) {
    adv[0] = mc_aligned_alloc_try(nx);
    adv[1] = mc_aligned_alloc_try(nx);
    dx = mc_aligned_alloc_try(nx);
  }
  mc_batches bt;
  mc_status st = MC_OK;
  if (!acc || !xa || !xb || !wa || !wb || (j->pgd && (!adv[0] || !adv[1] || !dx))) {
    st = mc_oom(sizeof(double) * j->nmom + 2 * (act + blk) + (j->pgd ? 3 * nx : 0),
                "the alignment statistics of thread %d", tid);
    goto done;
  }
  if ((st = mc_batches_init_part(&bt, j->ds, j->n, j->rows, tid, nthr))) goto done;
  for (int64_t k; !st && (k = mc_batches_next(&bt)) > 0;) {
    const float *in[2] = {bt.x, bt.x};
    const float *th[2] = {j->ta, j->tb};
    float *sv[2] = {j->sa, j->sb};
    for (int q = 0; q < 2 && j->pgd && !st; q++) {
      st = mc_pgd_run(w[q], th[q], sv[q], MC_MODE_EVAL, j->pgd, bt.x, bt.y, k, bt.idx, MC_PGD_SALT_TEST, adv[q], dx);
      in[q] = adv[q];
    }
    /* every head: taps in train-only heads (GoogLeNet's auxiliary
     * classifiers) are hidden layers to align like any other */
    if (st || (st = mc_exec_forward(w[0], j->ta, j->sa, in[0], k, MC_MODE_EVAL_ALL_HEADS)) ||
        (st = mc_exec_forward(w[1], j->tb, j->sb, in[1], k, MC_MODE_EVAL_ALL_HEADS)))
      break;
    for (int t = 0; t < j->ntap && !st; t++) {
      const tap *p = &j->taps[t];
      const mc_node *nd = &m->nodes[p->node];
      mc_act_view va, vb;
      if ((st = mc_exec_view(w[0], p->node, xa, &va)) || (st = mc_exec_view(w[1], p->node, xb, &vb))) break;
      accumulate(p, acc, &va, &vb, k, nd->H * nd->W, wa, wb);
    }
  }
  mc_batches_free(&bt);
done:
  free(xa);
  free(xb);
  free(wa);
  free(wb);
  free(adv[0]);
  free(adv[1]);
  free(dx);
  return st;
}

/* Runs A and B over the data and returns the per-group summed correlation
 * matrices (caller frees each) and tap counts. Each thread sums its own
 * moments; they are added in thread order, so for a given thread count
 * the result is the same bytes every run. */
static mc_status corr_matrices(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                               const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, const mc_pgd *pgd,
                               double ***Gout, int *taps_per_group) {
  mc_status st = mc_check_data_shape(m, ds);
  if (st) return st;
  if (n <= 0 || n > ds->n) n = ds->n;
  if (batch > n) batch = n;
  mc_exec *e[2] = {NULL, NULL};
  if ((st = mc_exec_create(&e[0], m, batch, be)) || (st = mc_exec_create(&e[1], m, batch, be))) {
    mc_exec_free(e[0]);
    return st;
  }
  const int T = mc_get_threads();
  corr_job j = {.m = m, .ta = ta, .tb = tb, .sa = sa, .sb = sb, .ds = ds, .n = n, .rows = mc_eval_rows(e[0]),
                .pgd = pgd};
  tap *taps = NULL;
  double *total = NULL, **G = NULL;
  if ((st = collect_taps(m, &taps, &j.ntap, &j.nmom))) goto done;
  j.taps = taps;
  if (!(j.acc = mc_calloc_try((size_t)T, sizeof(double *)))) {
    st = mc_oom(sizeof(double *) * (size_t)T, "the alignment's per-thread statistics");
    goto done;
  }
  st = mc_exec_parallel(e, 2, j.rows, corr_slices, &j);
  if (!st && !(total = mc_calloc_try(j.nmom + 1, sizeof(double))))
    st = mc_oom(sizeof(double) * (j.nmom + 1), "the alignment's summed statistics");
  for (int t = 0; t < T; t++) {
    for (size_t q = 0; total && j.acc[t] && q < j.nmom; q++) total[q] += j.acc[t][q];
    free(j.acc[t]);
  }
  free(j.acc);
  if (!st) {
    if (!(G = mc_calloc_try((size_t)m->n_groups + 1, sizeof(double *))))
      st = mc_oom(sizeof(double *) * ((size_t)m->n_groups + 1), "the alignment's correlation matrices");
    for (int g = 0; g < m->n_groups && !st; g++) {
      size_t c = (size_t)m->groups[g].size;
      if (!(G[g] = mc_calloc_try(c * c, sizeof(double))))
        st = mc_oom(sizeof(double) * c * c, "the correlation matrix of group %d (%s)", g, m->groups[g].name);
      taps_per_group[g] = 0;
    }
  }
  if (!st) {
    for (int t = 0; t < j.ntap; t++) {
      const tap *p = &taps[t];
      const mc_node *nd = &m->nodes[p->node];
      add_corr(p, total, (double)(n * nd->H * nd->W * p->repeat), G[p->group]);
      taps_per_group[p->group]++;
    }
  }
  if (st && G) {
    for (int g = 0; g < m->n_groups; g++) free(G[g]);
    free(G);
    G = NULL;
  }
done:
  free(total);
  free(taps);
  mc_exec_free(e[0]);
  mc_exec_free(e[1]);
  *Gout = G;
  return st;
}

static double matched_mean(const double *G, int64_t n, const int *perm, int taps) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += G[i * n + (perm ? perm[i] : i)];
  return taps > 0 ? s / (double)(n * taps) : NAN;
}

static mc_status corr_common(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                             const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, const mc_pgd *pgd,
                             mc_alignment *al, int solve) {
  double **G = NULL;
  mc_status st = corr_matrices(m, ta, sa, tb, sb, ds, n, batch, be, pgd, &G, al->n_taps);
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
  return mc_align_corr_pgd(m, ta, sa, tb, sb, ds, n, batch, be, NULL, out);
}

mc_status mc_align_corr_pgd(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                            const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, const mc_pgd *pgd,
                            mc_alignment *out) {
  mc_status st = mc_alignment_init_identity(out, m);
  if (st) return st;
  st = corr_common(m, ta, sa, tb, sb, ds, n, batch, be, pgd, out, 1);
  if (st) mc_alignment_free(out);
  return st;
}

mc_status mc_align_diagnostics(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                               const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be,
                               mc_alignment *al) {
  return corr_common(m, ta, sa, tb, sb, ds, n, batch, be, NULL, al, 0);
}
