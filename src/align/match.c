/* Weight matching (Git Re-Basin) and applying an alignment with the
 * functional-equivalence check. */
#include "align/align.h"
#include "align/lap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* S[i][j] += <unit i of A along axis a, unit j of B along axis a> for the
 * segments of that axis in group g. */
static void add_similarity(const mc_tensor *t, int a, int g, const float *A, const float *B, double *S,
                           int64_t size) {
  const mc_layout *l = t->axis[a];
  int64_t d0 = t->shape[0], d1 = t->ndim > 1 ? t->shape[1] : 1;
  int64_t inner = (int64_t)t->numel / (d0 * d1);
  int64_t off = 0;
  for (int s = 0; s < l->n; s++) {
    const mc_segment *sg = &l->seg[s];
    if (sg->group == g) {
      /* index along axis a of unit u, position r: off + u*repeat + r */
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < size; i++)
        for (int64_t j = 0; j < size; j++) {
          double acc = 0;
          for (int64_t r = 0; r < sg->repeat; r++) {
            int64_t ia = off + i * sg->repeat + r, ib = off + j * sg->repeat + r;
            if (a == 0) {
              const float *pa = A + ia * d1 * inner, *pb = B + ib * d1 * inner;
              for (int64_t q = 0; q < d1 * inner; q++) acc += (double)pa[q] * pb[q];
            } else {
              for (int64_t o = 0; o < d0; o++) {
                const float *pa = A + (o * d1 + ia) * inner, *pb = B + (o * d1 + ib) * inner;
                for (int64_t q = 0; q < inner; q++) acc += (double)pa[q] * pb[q];
              }
            }
          }
          S[i * size + j] += acc;
        }
    }
    off += sg->count * sg->repeat;
  }
}

mc_status mc_align_weights(const mc_model *m, const float *ta, const float *tb, uint64_t seed,
                           mc_alignment *out) {
  mc_status st = mc_alignment_init_identity(out, m);
  const int G = m->n_groups;
  if (st || G == 0) return st;
  const size_t nth = sizeof(float) * (size_t)m->n_theta, nst = sizeof(float) * (size_t)(m->n_state + 1);
  float *bp = mc_aligned_alloc_try(nth);
  float *dummy_state = mc_aligned_alloc_try(nst);
  float *zero_state = mc_aligned_alloc_try(nst);
  int64_t *order = mc_malloc_try(sizeof(int64_t) * (size_t)G);
  int64_t maxs = 0;
  for (int g = 0; g < G; g++) maxs = m->groups[g].size > maxs ? m->groups[g].size : maxs;
  int *ident = mc_malloc_try(sizeof(int) * (size_t)maxs);
  int *cand = mc_malloc_try(sizeof(int) * (size_t)maxs);
  double *S = mc_malloc_try(sizeof(double) * (size_t)(maxs * maxs));
  mc_rng r;
  mc_rng_seed(&r, seed);
  int it = 0;
  if (!bp || !dummy_state || !zero_state || !order || !ident || !cand || !S) {
    st = mc_oom(nth + 2 * nst + (sizeof(int64_t) + 2 * sizeof(int) + sizeof(double) * (size_t)maxs) * (size_t)maxs,
                "weight matching (a permuted copy of B and %lld x %lld similarities)", (long long)maxs,
                (long long)maxs);
    goto out;
  }
  for (it = 0; it < 200; it++) {
    for (int g = 0; g < G; g++) order[g] = g;
    mc_rng_shuffle(&r, order, (size_t)G);
    int changed = 0;
    for (int k = 0; k < G; k++) {
      int g = (int)order[k];
      int64_t n = m->groups[g].size;
      /* B permuted by every group but g */
      int *saved = out->perm[g];
      for (int64_t i = 0; i < n; i++) ident[i] = (int)i;
      out->perm[g] = ident;
      mc_model_permute(m, out->perm, tb, zero_state, bp, dummy_state);
      out->perm[g] = saved;
      memset(S, 0, sizeof(double) * (size_t)(n * n));
      for (int t = 0; t < m->n_tensors; t++) {
        const mc_tensor *tt = &m->tensors[t];
        if (tt->in_state) continue;
        for (int a = 0; a < 2; a++) {
          if (!tt->axis[a] || (a == 1 && tt->ndim < 2)) continue;
          int touches = 0;
          for (int s = 0; s < tt->axis[a]->n; s++) touches |= tt->axis[a]->seg[s].group == g;
          if (touches) add_similarity(tt, a, g, ta + tt->off, bp + tt->off, S, n);
        }
      }
      double old = 0, new_obj = 0;
      for (int64_t i = 0; i < n; i++) old += S[i * n + saved[i]];
      if ((st = mc_lap_max(S, n, cand, &new_obj))) goto out;
      if (new_obj > old + 1e-12 * fabs(old) + 1e-12) {
        memcpy(saved, cand, sizeof(int) * (size_t)n);
        changed = 1;
      }
    }
    if (!changed) break;
  }
  out->iterations = it + 1;
out:
  free(bp); free(dummy_state); free(zero_state); free(order); free(ident); free(cand); free(S);
  if (st) mc_alignment_free(out);
  return st;
}

static double logits_err(const mc_model *m, const float *ta, const float *sa, const float *tb, const float *sb,
                         const float *x, int64_t n, mc_backend be, mc_status *st) {
  mc_exec *e;
  if ((*st = mc_exec_create(&e, m, n, be))) return INFINITY;
  size_t nl = (size_t)(n * m->classes);
  const size_t nst = sizeof(float) * (size_t)(m->n_state + 1);
  float *l1 = mc_malloc_try(sizeof(float) * nl), *s1 = mc_malloc_try(nst), *s2 = mc_malloc_try(nst);
  if (!l1 || !s1 || !s2) {
    free(l1); free(s1); free(s2);
    mc_exec_free(e);
    *st = mc_oom(sizeof(float) * nl + 2 * nst, "the equivalence check of the permuted model");
    return INFINITY;
  }
  memcpy(s1, sa, sizeof(float) * m->n_state);
  memcpy(s2, sb, sizeof(float) * m->n_state);
  double scale = 1e-6, err = 0;
  const float *l2 = NULL;
  if (!(*st = mc_exec_forward(e, ta, s1, x, n, MC_MODE_EVAL))) {
    memcpy(l1, mc_exec_output(e, 0), sizeof(float) * nl);
    if (!(*st = mc_exec_forward(e, tb, s2, x, n, MC_MODE_EVAL))) l2 = mc_exec_output(e, 0);
  }
  if (!l2) nl = 0, err = INFINITY;
  for (size_t i = 0; i < nl; i++) scale = fmax(scale, fabs(l1[i]));
  for (size_t i = 0; i < nl; i++) {
    double d = fabs((double)l1[i] - l2[i]) / scale;
    if (!(d <= err)) err = d;
  }
  free(l1); free(s1); free(s2);
  mc_exec_free(e);
  return err;
}

mc_status mc_align_apply(const mc_model *m, const mc_alignment *al, const float *tb, const float *sb,
                         float *tb_out, float *sb_out, const float *x, int64_t n, mc_backend be) {
  for (int g = 0; g < m->n_groups; g++) {
    /* a permutation must be one: every index exactly once */
    int64_t sz = m->groups[g].size;
    char *seen = mc_calloc_try((size_t)sz, 1);
    if (!seen) return mc_oom((size_t)sz, "checking the permutation of group %d (%s)", g, m->groups[g].name);
    for (int64_t i = 0; i < sz; i++) {
      int p = al->perm[g][i];
      if (p < 0 || p >= sz || seen[p]) {
        free(seen);
        return mc_error(MC_EARG, "group %d (%s): entry %lld = %d is not a permutation of 0..%lld", g,
                        m->groups[g].name, (long long)i, p, (long long)sz - 1);
      }
      seen[p] = 1;
    }
    free(seen);
  }
  mc_model_permute(m, al->perm, tb, sb, tb_out, sb_out);
  mc_status st;
  double err = logits_err(m, tb, sb, tb_out, sb_out, x, n, be, &st);
  if (st) return st;
  /* A wrong permutation moves logits by O(1) of their scale; a right one
   * only by float rounding through a different summation order, which in
   * 13 conv+BN layers (vgg16-bn, random weights, AVX2 oneDNN) reaches
   * 1.1e-5 of the largest logit. */
  if (err <= 1e-4) return MC_OK;
  /* find the offending group: apply each alone */
  mc_alignment one;
  if ((st = mc_alignment_init_identity(&one, m))) return st;
  int bad = -1;
  for (int g = 0; g < m->n_groups && bad < 0 && !st; g++) {
    memcpy(one.perm[g], al->perm[g], sizeof(int) * (size_t)m->groups[g].size);
    mc_model_permute(m, one.perm, tb, sb, tb_out, sb_out);
    if (logits_err(m, tb, sb, tb_out, sb_out, x, n, be, &st) > 1e-4 && !st) bad = g;
    for (int64_t i = 0; i < m->groups[g].size; i++) one.perm[g][i] = (int)i;
  }
  mc_alignment_free(&one);
  if (st) return st;
  if (bad >= 0)
    return mc_error(MC_EINTERNAL, "permuted model differs from the original (max rel logit error %.3g); "
                    "offending group %d (%s); nothing written", err, bad, m->groups[bad].name);
  return mc_error(MC_EINTERNAL, "permuted model differs from the original (max rel logit error %.3g); "
                  "no single group is at fault; nothing written", err);
}
