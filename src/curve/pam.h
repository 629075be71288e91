/* PAM, proximal alternating minimisation over the permutations and the
 * curve (Tatro et al. 2020, SPEC.md section 3), and the maths under it:
 * dense per-group matrices P_g acting on B's flat theta (W' = P_out W P_in^T,
 * biases and BN gamma/beta by P_out) and the exact adjoint of that action,
 * the affine projection onto {P1 = 1, 1^T P = 1} with clamping, and the
 * greedy Birkhoff-von Neumann decomposition used by the rounding. */
#ifndef MC_PAM_H
#define MC_PAM_H

#include "curve/curve.h"
#include "modeconn.h"

/* ------------------------------------------------- doubly-stochastic maths */
/* Orthogonal (Frobenius) projection of the n x n row-major P onto the
 * affine set {P1 = 1, 1^T P = 1}, in closed form:
 *   P_ij += -(r_i - 1)/n - (c_j - 1)/n + (s - n)/n^2
 * with r, c the row and column sums and s the total. */
mc_status mc_ds_affine_project(double *P, int64_t n);
/* iters alternations of clamp-at-0 and the affine projection (the official
 * code's scheme; ends with a projection, so the sums are exact and small
 * negative entries may remain). */
mc_status mc_ds_project(double *P, int64_t n, int iters);

/* Greedy Birkhoff-von Neumann decomposition of a (multiple of a)
 * doubly-stochastic n x n matrix D: repeatedly the exact LAP picks a
 * permutation inside the support of the remaining mass R (entries > tol),
 * the largest-mass one among those; its coefficient is the smallest entry
 * of R on it, which is subtracted.  Stops when no permutation fits inside
 * the support, the remaining mass is below tol * n, or after max_terms
 * terms.  perms: max_terms * n ints, coef: max_terms doubles (descending
 * order is not guaranteed).  Returns the number of terms in *nterms. */
mc_status mc_bvn_decompose(const double *D, int64_t n, double tol, int max_terms, int *perms, double *coef,
                           int *nterms);

/* ----------------------------------------------------------- the action */
/* Workspace for P(theta_B) on one model: one GEMM region per (tensor,
 * axis, segment of a permuted group). */
typedef struct mc_pact mc_pact;
mc_status mc_pact_create(mc_pact **out, const mc_model *m);
void mc_pact_free(mc_pact *A);
/* out = P(b): P[g] is groups[g].size^2 floats, row-major, P[g][i*n + j] the
 * weight of source unit j in unit i (a hard permutation perm has
 * P[i][perm[i]] = 1, and then out equals mc_model_permute's theta exactly).
 * Keeps the intermediate (rows applied, columns not yet) for the adjoint. */
void mc_pact_apply(mc_pact *A, float *const *P, const float *b, float *out);
/* dP[g] += d<G, P(b)>/dP_g for the b and P of the last apply (G = dL/dP(b)). */
void mc_pact_adjoint(mc_pact *A, float *const *P, const float *b, const float *G, float **dP);

/* *out = dense identity / permutation matrices for every group (size^2
 * floats each, caller frees with mc_pmat_free); perm NULL = identity. */
mc_status mc_pmat_alloc(float ***out, const mc_model *m, int *const *perm);
void mc_pmat_free(const mc_model *m, float **P);

/* --------------------------------------------------------------- training */
typedef struct {
  mc_curve_train_cfg phi;   /* the phi-step: quadratic Bezier training settings (epochs = --phi-epochs) */
  int64_t p_epochs;         /* P-step epochs per outer iteration (paper 20) */
  mc_schedule p_sched;      /* P-step lr schedule (paper: lr 0.05, schedule paper) */
  double nu;                /* proximal weight (paper 1000; INFINITY = no pull) */
  int proj_iters;           /* clamp + affine projection alternations (20) */
  int bvn_terms;            /* BvN coefficients kept for sampling (11) */
  int samples_rounding;     /* joint BvN samples among the rounding candidates (32) */
  int outer;                /* outer iterations (1) */
  int64_t select_samples;   /* training images of the rounding's selection loss */
  const char *log_path;     /* JSON lines (phase markers, P-step and phi-step epochs) */
  const mc_sink *sink;      /* both steps' epoch lines and progress, the P-step and rounding diagnostics
                               (phi.sink is not used); NULL: silent */
} mc_pam_cfg;

/* What PAM did, per group and per outer iteration. */
typedef struct {
  int n_groups, outer;
  int **perm;          /* final hard permutation relative to the B given (perm[g][i]: unit of B) */
  int64_t *moved;      /* units of perm[g] that differ from the identity */
  double *cand_loss;   /* outer * (2 + samples) selection losses: previous, LAP, samples (NaN: duplicate skipped) */
  int *chosen;         /* outer entries: index of the chosen candidate */
  int n_cand;          /* candidates per outer iteration */
} mc_pam_result;
void mc_pam_result_free(mc_pam_result *r);

/* Runs PAM between a and b (theta; sb: B's BN state). On success b_out /
 * sb_out hold B permuted by the final hard permutation, and *bend the
 * Bezier control point (n_theta floats, caller frees): curve a -> b_out. */
mc_status mc_pam_run(const mc_pam_cfg *cfg, const mc_model *m, const float *a, const float *b, const float *sb,
                     const mc_data *d, mc_backend be, float *b_out, float *sb_out, float **bend,
                     mc_pam_result *res);

/* The pieces of mc_pam_run, exposed for the tests. */
typedef struct mc_pam mc_pam;
/* a, b, phi are borrowed; P is initialised to the identity. */
mc_status mc_pam_create(mc_pam **out, const mc_model *m, const float *a, const float *b, const float *phi,
                        int64_t batch, mc_backend be);
void mc_pam_free(mc_pam *p);
float **mc_pam_matrices(mc_pam *p); /* P_g (float, row-major), writable */
mc_exec *mc_pam_exec(mc_pam *p);    /* its executor (tests fix the dropout seed) */
/* Loss CE(f(x; theta(t))) (BN train mode, state scratch) with theta(t) the
 * quadratic Bezier from a to P(b) through 1/2 a + 1/2 P(b) + phi; when dP is
 * non-NULL, dP[g] += dL/dP_g; hits (may be NULL) counts argmax hits. */
mc_status mc_pam_loss_grad(mc_pam *p, double t, const float *x, const int32_t *y, int64_t k, double *loss,
                           int64_t *hits, float **dP);
/* Mean CE along the curve with B hard-permuted by perm, over the first n
 * images of ds in dataset order, batch i at t_i = i/(nb-1) (nb batches),
 * BN in train mode: the rounding's selection loss (the same t per batch for
 * every candidate). */
mc_status mc_pam_select_loss(mc_pam *p, int *const *perm, const mc_dataset *ds, int64_t n, double *loss);
/* Rounding of the current P: candidates previous (prev), the LAP rounding
 * of every P_g, and nsamp joint BvN samples (each group drawn from its top
 * `terms` coefficients); the lowest selection loss wins, ties going to the
 * earlier candidate (so the previous permutation is kept unless beaten).
 * Writes the winner into prev and the losses into cand_loss (2 + nsamp;
 * NaN where a candidate duplicated an earlier one), the index into *chosen. */
mc_status mc_pam_round(mc_pam *p, int **prev, int terms, int nsamp, uint64_t seed, const mc_dataset *ds,
                       int64_t n, double *cand_loss, int *chosen);

#endif
