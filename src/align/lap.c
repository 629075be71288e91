/* Exact linear assignment by shortest augmenting paths.
 *
 * We maximise sum_i P[i, x[i]], i.e. minimise the cost K = -P, with the
 * classical primal-dual scheme of Jonker & Volgenant (1987) in the dense
 * form described by Crouse (2016, "On implementing 2D rectangular
 * assignment algorithms"):
 *
 *   - duals u (rows) and v (columns) are kept feasible,
 *       K[i,j] - u[i] - v[j] >= 0  for all i, j,
 *     and tight (= 0) on every assigned pair;
 *   - initialisation as in JV: column reduction (v[j] = min_i K[i,j];
 *     each column goes to its cheapest row if that row is still free),
 *     reduction transfer, and two passes of augmenting row reduction (an
 *     auction-like step, capped at 8n row scans so that price wars on
 *     near-ties cannot run long);
 *   - every row still free is then assigned by one Dijkstra search over
 *     the columns with the reduced costs as (non-negative) edge lengths:
 *     rows are entered through their assigned column, the search stops at
 *     the first free column (the sink), the duals of the scanned rows and
 *     columns are shifted by (minval - d[j]) so that feasibility and
 *     tightness hold again, and the path is augmented.
 *
 * Each search costs O(n^2), so the total is O(n^3) in the worst case (hit
 * e.g. by rank-1 matrices a_i b_j, where every augmenting path shifts a
 * long chain of rows) and far less on random matrices.  In a search, ties
 * between equally short columns are broken towards a free column (ends the
 * search early: important for degenerate matrices such as all-equal ones),
 * then by scan order.
 * Everything is deterministic.
 *
 * Input handling: NaN entries count as 0; +-inf is rejected.  When NaNs
 * are present, or the entries are so large that reduced costs could
 * overflow, the search runs on a sanitised copy (NaN -> 0, scaled by a
 * power of two, which is exact and does not change the optimal
 * permutation); the objective is summed there and scaled back.
 */
#include "align/lap.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t n;
  const double *P; /* n x n profit matrix (maximised) */
  double *u, *v;   /* duals of the minimisation of K = -P */
  double *d;       /* shortest path lengths to the columns */
  int *pred;       /* row preceding each column on its shortest path */
  int *x;          /* column of each row, -1 = free */
  int *y;          /* row of each column, -1 = free */
  int *todo;       /* columns not yet finalised in the current search */
  int *srow;       /* rows scanned in the current search */
  int *scol;       /* columns finalised in the current search */
} lap_ws;

/* Column reduction: v[j] = min_i K[i,j]; assign column j to its (first)
 * cheapest row when that row is still free.  u = 0 keeps the duals
 * feasible and every assignment made here is tight. */
static void column_reduction(lap_ws *w) {
  const int64_t n = w->n;
  int *arg = w->todo; /* scratch: argmin row per column */
  for (int64_t j = 0; j < n; j++) {
    w->v[j] = -w->P[j];
    arg[j] = 0;
  }
  for (int64_t i = 1; i < n; i++) {
    const double *Pi = w->P + i * n;
    for (int64_t j = 0; j < n; j++) {
      const double k = -Pi[j];
      if (k < w->v[j]) {
        w->v[j] = k;
        arg[j] = (int)i;
      }
    }
  }
  for (int64_t i = 0; i < n; i++) {
    w->u[i] = 0;
    w->x[i] = -1;
  }
  for (int64_t j = 0; j < n; j++) {
    w->y[j] = -1;
    const int i = arg[j];
    if (w->x[i] < 0) {
      w->x[i] = (int)j;
      w->y[j] = i;
    }
  }
}

/* Reduction transfer: an assigned row i (column j1) takes over as much of
 * its column's potential as it can: u[i] = min_{j != j1} K[i,j] - v[j],
 * v[j1] = K[i,j1] - u[i].  Lowering v[j1] keeps every other row feasible
 * and makes j1 less attractive to the free rows. */
static void reduction_transfer(lap_ws *w) {
  const int64_t n = w->n;
  for (int64_t i = 0; i < n; i++) {
    const int j1 = w->x[i];
    if (j1 < 0) continue;
    const double *Pi = w->P + i * n;
    double mu = INFINITY;
    for (int64_t j = 0; j < n; j++)
      if (j != j1 && -Pi[j] - w->v[j] < mu) mu = -Pi[j] - w->v[j];
    w->v[j1] = -Pi[j1] - mu;
    w->u[i] = mu;
  }
}

/* Augmenting row reduction (Jonker & Volgenant): each free row i takes
 * its cheapest column j1 (reduced cost umin, runner-up usub at j2) and
 * lowers v[j1] by usub - umin so that both stay tight for i; the previous
 * owner of j1 becomes free and is processed again at once.  On a tie
 * (umin == usub) row i takes j2 instead and a displaced owner waits for
 * the next pass.  Returns the number of free rows left in w->srow.
 * Each assigned row stays at a minimum of its reduced costs, so setting
 * u[i] = K[i,x[i]] - v[x[i]] afterwards gives feasible, tight duals.  A
 * budget on the number of row scans bounds price wars; the Dijkstra
 * phase finishes whatever is left. */
static int augmenting_row_reduction(lap_ws *w, int passes) {
  const int64_t n = w->n;
  int *F = w->srow, nfree = 0;
  for (int64_t i = 0; i < n; i++)
    if (w->x[i] < 0) F[nfree++] = (int)i;
  int64_t budget = 8 * n;
  for (int pass = 0; pass < passes && nfree > 0; pass++) {
    int k = 0, prv = nfree;
    nfree = 0;
    while (k < prv) {
      const int i = F[k++];
      if (budget-- <= 0) { /* keep the rest free */
        F[nfree++] = i;
        continue;
      }
      const double *Pi = w->P + (int64_t)i * n;
      double umin = -Pi[0] - w->v[0], usub = INFINITY;
      int j1 = 0, j2 = -1;
      for (int j = 1; j < n; j++) {
        const double h = -Pi[j] - w->v[j];
        if (h < usub) {
          if (h >= umin) {
            usub = h;
            j2 = j;
          } else {
            usub = umin;
            j2 = j1;
            umin = h;
            j1 = j;
          }
        }
      }
      int i0 = w->y[j1];
      const int strict = umin < usub;
      if (strict) {
        w->v[j1] -= usub - umin;
      } else if (i0 >= 0) {
        j1 = j2;
        i0 = w->y[j2];
      }
      w->x[i] = j1;
      w->y[j1] = i;
      if (i0 >= 0) {
        w->x[i0] = -1;
        if (strict) F[--k] = i0;
        else F[nfree++] = i0;
      }
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const int j = w->x[i];
    if (j >= 0) w->u[i] = -w->P[i * n + j] - w->v[j];
  }
  return nfree;
}

/* One Dijkstra search from free row f and the augmentation along the
 * shortest path found.  Returns MC_OK, or MC_EINTERNAL if the search
 * met a non-finite distance (cannot happen with finite, scaled input). */
static mc_status augment(lap_ws *w, int f) {
  const int64_t n = w->n;
  double *restrict u = w->u, *restrict v = w->v, *restrict d = w->d;
  int *restrict pred = w->pred, *restrict y = w->y, *restrict todo = w->todo;
  int nrem = (int)n, nsr = 0, nsc = 0, sink = -1, i = f;
  double minv = 0;
  for (int j = 0; j < n; j++) {
    todo[j] = j;
    d[j] = INFINITY;
  }
  while (sink < 0) {
    w->srow[nsr++] = i;
    const double *restrict Pi = w->P + (int64_t)i * n;
    const double base = minv - u[i];
    double lowest = INFINITY;
    int best = -1;
    for (int t = 0; t < nrem; t++) {
      const int j = todo[t];
      const double r = base - Pi[j] - v[j];
      if (r < d[j]) {
        d[j] = r;
        pred[j] = i;
      }
      const double dj = d[j];
      if (dj < lowest || (dj == lowest && y[j] < 0)) {
        lowest = dj;
        best = t;
      }
    }
    if (best < 0 || !isfinite(lowest))
      return mc_error(MC_EINTERNAL, "lap: non-finite shortest path (row %d)", f);
    minv = lowest;
    const int j = todo[best];
    w->scol[nsc++] = j;
    todo[best] = todo[--nrem];
    if (y[j] < 0) sink = j;
    else i = y[j];
  }
  /* dual update: keeps K - u - v >= 0 and tight on the matching, and
   * makes every edge of the shortest-path tree tight */
  u[f] += minv;
  for (int k = 1; k < nsr; k++) {
    const int r = w->srow[k];
    u[r] += minv - d[w->x[r]];
  }
  for (int k = 0; k < nsc; k++) {
    const int j = w->scol[k];
    v[j] -= minv - d[j];
  }
  /* augment along pred from the sink back to f */
  int j = sink;
  for (;;) {
    const int r = pred[j];
    y[j] = r;
    const int prev = w->x[r];
    w->x[r] = j;
    if (r == f) break;
    j = prev;
  }
  return MC_OK;
}

mc_status mc_lap_max(const double *C, int64_t n, int *perm, double *obj) {
  if (obj) *obj = 0;
  if (n < 0) return mc_error(MC_EARG, "lap: negative size %lld", (long long)n);
  if (n == 0) return MC_OK;
  if (!C || !perm) return mc_error(MC_EARG, "lap: NULL matrix or permutation");
  if (n > INT_MAX || (uint64_t)n > SIZE_MAX / sizeof(double) / (uint64_t)n)
    return mc_error(MC_EARG, "lap: size %lld too large", (long long)n);

  /* validate; find NaNs and the magnitude of the entries */
  int has_nan = 0;
  double maxabs = 0;
  for (int64_t i = 0; i < n; i++) {
    const double *Ci = C + i * n;
    for (int64_t j = 0; j < n; j++) {
      const double c = Ci[j];
      if (isnan(c)) {
        has_nan = 1;
      } else if (isinf(c)) {
        return mc_error(MC_EARG, "lap: matrix entry (%lld,%lld) is infinite",
                        (long long)i, (long long)j);
      } else if (fabs(c) > maxabs) {
        maxabs = fabs(c);
      }
    }
  }
  if (n == 1) {
    perm[0] = 0;
    if (obj) *obj = isnan(C[0]) ? 0 : C[0];
    return MC_OK;
  }

  /* potentials and path lengths stay within a small multiple of
   * n * maxabs; scale huge matrices down by a power of two (exact) */
  int shift = 0;
  if (maxabs > 0x1p960 / (double)n) shift = ilogb(maxabs) + 1;
  double *copy = NULL;
  const double *P = C;
  if (has_nan || shift) {
    const size_t nn = (size_t)n * (size_t)n;
    if (!(copy = mc_malloc_try(nn * sizeof(double))))
      return mc_oom(nn * sizeof(double), "lap: a sanitised copy of the %lld x %lld matrix", (long long)n,
                    (long long)n);
    for (size_t k = 0; k < nn; k++) {
      const double c = C[k];
      copy[k] = isnan(c) ? 0 : (shift ? ldexp(c, -shift) : c);
    }
    P = copy;
  }

  lap_ws w = {.n = n, .P = P};
  w.u = mc_malloc_try(3 * (size_t)n * sizeof(double));
  w.pred = mc_malloc_try(6 * (size_t)n * sizeof(int));
  int *freerows = mc_malloc_try((size_t)n * sizeof(int));
  if (!w.u || !w.pred || !freerows) {
    free(w.u);
    free(w.pred);
    free(freerows);
    free(copy);
    return mc_oom((size_t)n * (3 * sizeof(double) + 7 * sizeof(int)), "lap: the workspace of a %lld x %lld problem",
                  (long long)n, (long long)n);
  }
  w.v = w.u + n;
  w.d = w.v + n;
  w.x = w.pred + n;
  w.y = w.x + n;
  w.todo = w.y + n;
  w.srow = w.todo + n;
  w.scol = w.srow + n;

  mc_status st = MC_OK;
  column_reduction(&w);
  reduction_transfer(&w);
  int nfree = augmenting_row_reduction(&w, 2);
  /* augment() reuses srow: take the list of free rows out first */
  memcpy(freerows, w.srow, (size_t)nfree * sizeof(int));
  for (int k = 0; k < nfree && st == MC_OK; k++) st = augment(&w, freerows[k]);
  free(freerows);

  if (st == MC_OK) {
    /* the result must be a permutation: an internal invariant */
    memset(w.todo, 0, (size_t)n * sizeof(int));
    for (int64_t i = 0; i < n; i++) {
      const int j = w.x[i];
      MC_ASSERT(j >= 0 && j < n && !w.todo[j]);
      w.todo[j] = 1;
      perm[i] = j;
    }
    if (obj) {
      /* Neumaier-compensated sum of the chosen entries, taken from the
       * sanitised (NaN -> 0, scaled) matrix so that partial sums of huge
       * entries cannot overflow; the final scaling back is exact and
       * gives inf only when the optimum itself exceeds DBL_MAX */
      double s = 0, comp = 0;
      for (int64_t i = 0; i < n; i++) {
        const double c = P[i * n + perm[i]];
        const double t = s + c;
        comp += fabs(s) >= fabs(c) ? (s - t) + c : (c - t) + s;
        s = t;
      }
      *obj = ldexp(s + comp, shift);
    }
  }
  free(w.u);
  free(w.pred);
  free(copy);
  return st;
}
