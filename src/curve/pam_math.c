/* The maths under PAM (pam.h): the affine projection and clamping onto the
 * Birkhoff polytope, the greedy Birkhoff-von Neumann decomposition, and
 * the action P(theta_B) of dense per-group matrices on the flat theta with
 * its exact adjoint. */
#include "curve/pam.h"

#include "align/lap.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------- doubly-stochastic maths */
/* r, c: room for n doubles each */
static void affine_project(double *P, int64_t n, double *r, double *c) {
  memset(r, 0, sizeof(double) * (size_t)n);
  memset(c, 0, sizeof(double) * (size_t)n);
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      r[i] += P[i * n + j];
      c[j] += P[i * n + j];
    }
  for (int64_t i = 0; i < n; i++) s += r[i];
  const double dn = (double)n, k = (s - dn) / (dn * dn);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) P[i * n + j] += -(r[i] - 1) / dn - (c[j] - 1) / dn + k;
}

mc_status mc_ds_project(double *P, int64_t n, int iters) {
  double *rc = mc_malloc_try(2 * sizeof(double) * (size_t)n);
  if (!rc) return mc_oom(2 * sizeof(double) * (size_t)n, "the row and column sums of a %lld x %lld projection",
                         (long long)n, (long long)n);
  for (int it = 0; it < iters; it++) {
    for (int64_t i = 0; i < n * n; i++) P[i] = P[i] > 0 ? P[i] : 0;
    affine_project(P, n, rc, rc + n);
  }
  free(rc);
  return MC_OK;
}

mc_status mc_ds_affine_project(double *P, int64_t n) {
  double *rc = mc_malloc_try(2 * sizeof(double) * (size_t)n);
  if (!rc) return mc_oom(2 * sizeof(double) * (size_t)n, "the row and column sums of a %lld x %lld projection",
                         (long long)n, (long long)n);
  affine_project(P, n, rc, rc + n);
  free(rc);
  return MC_OK;
}

mc_status mc_bvn_decompose(const double *D, int64_t n, double tol, int max_terms, int *perms, double *coef,
                           int *nterms) {
  const size_t nn = (size_t)(n * n);
  double *R = mc_malloc_try(sizeof(double) * nn), *C = mc_malloc_try(sizeof(double) * nn);
  if (!R || !C) {
    free(R);
    free(C);
    return mc_oom(2 * sizeof(double) * nn, "the Birkhoff-von Neumann decomposition of a %lld x %lld matrix",
                  (long long)n, (long long)n);
  }
  memcpy(R, D, sizeof(double) * nn);
  mc_status st = MC_OK;
  int k = 0;
  while (k < max_terms) {
    double mass = 0, mx = 0;
    for (size_t i = 0; i < nn; i++) {
      mass += R[i] > 0 ? R[i] : 0;
      mx = R[i] > mx ? R[i] : mx;
    }
    if (mass <= tol * (double)n || mx <= tol) break;
    /* one point per support entry dominates: the mass term sums to < 1 over
     * any permutation, so the LAP stays inside the support when it can and
     * among such permutations takes the heaviest (large coefficients first) */
    for (size_t i = 0; i < nn; i++) C[i] = (R[i] > tol ? 1.0 : 0.0) + (R[i] > 0 ? R[i] : 0) / (2.0 * (double)n * mx);
    int *p = perms + (size_t)k * (size_t)n;
    if ((st = mc_lap_max(C, n, p, NULL))) break;
    double cmin = INFINITY;
    for (int64_t i = 0; i < n; i++) cmin = fmin(cmin, R[i * n + p[i]]);
    if (!(cmin > tol)) break; /* no permutation inside the support: what is left is rounding */
    for (int64_t i = 0; i < n; i++) R[i * n + p[i]] -= cmin;
    coef[k++] = cmin;
  }
  *nterms = k;
  free(R);
  free(C);
  return st;
}

/* ----------------------------------------------------------- the action */
/* One GEMM region: rows `count` units of group g, each unit a contiguous
 * run of `cols` floats at off + u * cols (+ a * astride for the a-th of
 * `reps` blocks along the slower axis). */
typedef struct {
  int g;
  int64_t count, cols, reps, astride;
  size_t off;
} pact_region;

struct mc_pact {
  const mc_model *m;
  pact_region *r[2]; /* [0]: rows (axis 0), [1]: columns (axis 1) */
  int nr[2];
  float *mid; /* b with axis 0 applied */
  float *dmid;
};

static void add_regions(mc_pact *A, const mc_tensor *t, int a) {
  const mc_layout *l = t->axis[a];
  const int64_t d0 = t->shape[0], d1 = t->ndim > 1 ? t->shape[1] : 1;
  const int64_t inner = (int64_t)t->numel / (d0 * d1);
  int64_t off = 0;
  for (int s = 0; s < l->n; s++) {
    const mc_segment *sg = &l->seg[s];
    if (sg->group >= 0) {
      pact_region *R = &A->r[a][A->nr[a]++];
      R->g = sg->group;
      R->count = sg->count;
      if (a == 0) {
        R->cols = sg->repeat * d1 * inner;
        R->reps = 1;
        R->astride = 0;
        R->off = t->off + (size_t)(off * d1 * inner);
      } else {
        R->cols = sg->repeat * inner;
        R->reps = d0;
        R->astride = d1 * inner;
        R->off = t->off + (size_t)(off * inner);
      }
    }
    off += sg->count * sg->repeat;
  }
  MC_ASSERT(off == (a == 0 ? d0 : d1));
}

mc_status mc_pact_create(mc_pact **out, const mc_model *m) {
  mc_pact *A = *out = mc_calloc_try(1, sizeof *A);
  if (!A) return mc_oom(sizeof *A, "PAM's action on theta");
  A->m = m;
  int cap = 0;
  for (int i = 0; i < m->n_tensors; i++)
    for (int a = 0; a < 2; a++)
      if (m->tensors[i].axis[a]) cap += m->tensors[i].axis[a]->n;
  const size_t nth = sizeof(float) * (m->n_theta + 1);
  for (int a = 0; a < 2; a++) A->r[a] = mc_calloc_try((size_t)cap + 1, sizeof(pact_region));
  A->mid = mc_aligned_alloc_try(nth);
  A->dmid = mc_aligned_alloc_try(nth);
  if (!A->r[0] || !A->r[1] || !A->mid || !A->dmid) {
    mc_pact_free(A);
    *out = NULL;
    return mc_oom(2 * (((size_t)cap + 1) * sizeof(pact_region) + nth), "PAM's action on theta (%d regions)", cap);
  }
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    if (t->in_state) continue;
    if (t->axis[0]) add_regions(A, t, 0);
    if (t->ndim > 1 && t->axis[1]) add_regions(A, t, 1);
  }
  return MC_OK;
}

void mc_pact_free(mc_pact *A) {
  if (!A) return;
  free(A->r[0]);
  free(A->r[1]);
  free(A->mid);
  free(A->dmid);
  free(A);
}

/* dst_region = P_g . src_region (row-major count x cols blocks) */
static void region_apply(const pact_region *R, const float *P, const float *src, float *dst, int trans) {
  const int n = (int)R->count, c = (int)R->cols;
  for (int64_t a = 0; a < R->reps; a++) {
    const size_t o = R->off + (size_t)(a * R->astride);
    cblas_sgemm(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, CblasNoTrans, n, c, n, 1.f, P, n, src + o, c, 0.f,
                dst + o, c);
  }
}

/* dP += G_region . X_region^T */
static void region_grad(const pact_region *R, const float *G, const float *X, float *dP) {
  const int n = (int)R->count, c = (int)R->cols;
  for (int64_t a = 0; a < R->reps; a++) {
    const size_t o = R->off + (size_t)(a * R->astride);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, c, 1.f, G + o, c, X + o, c, 1.f, dP, n);
  }
}

void mc_pact_apply(mc_pact *A, float *const *P, const float *b, float *out) {
  const size_t n = A->m->n_theta;
  memcpy(A->mid, b, sizeof(float) * n);
  for (int i = 0; i < A->nr[0]; i++) region_apply(&A->r[0][i], P[A->r[0][i].g], b, A->mid, 0);
  memcpy(out, A->mid, sizeof(float) * n);
  for (int i = 0; i < A->nr[1]; i++) region_apply(&A->r[1][i], P[A->r[1][i].g], A->mid, out, 0);
}

void mc_pact_adjoint(mc_pact *A, float *const *P, const float *b, const float *G, float **dP) {
  /* out = mid . P_in^T along axis 1: dP_in += G mid^T, dmid = P_in^T G there;
   * mid = P_out b along axis 0: dP_out += dmid b^T */
  memcpy(A->dmid, G, sizeof(float) * A->m->n_theta);
  for (int i = 0; i < A->nr[1]; i++) {
    const pact_region *R = &A->r[1][i];
    region_grad(R, G, A->mid, dP[R->g]);
    region_apply(R, P[R->g], G, A->dmid, 1);
  }
  for (int i = 0; i < A->nr[0]; i++) region_grad(&A->r[0][i], A->dmid, b, dP[A->r[0][i].g]);
}

mc_status mc_pmat_alloc(float ***out, const mc_model *m, int *const *perm) {
  float **P = *out = mc_calloc_try((size_t)m->n_groups + 1, sizeof(float *));
  if (!P) return mc_oom(sizeof(float *) * ((size_t)m->n_groups + 1), "PAM's list of %d matrices", m->n_groups);
  for (int g = 0; g < m->n_groups; g++) {
    const int64_t n = m->groups[g].size;
    if (!(P[g] = mc_calloc_try((size_t)(n * n), sizeof(float)))) {
      mc_pmat_free(m, P);
      *out = NULL;
      return mc_oom(sizeof(float) * (size_t)(n * n), "PAM's %lld x %lld matrix of group %d (%s)", (long long)n,
                    (long long)n, g, m->groups[g].name);
    }
    for (int64_t i = 0; i < n; i++) P[g][i * n + (perm ? perm[g][i] : i)] = 1.f;
  }
  return MC_OK;
}

void mc_pmat_free(const mc_model *m, float **P) {
  if (!P) return;
  for (int g = 0; g < m->n_groups; g++) free(P[g]);
  free(P);
}
