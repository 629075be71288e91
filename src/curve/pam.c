/* PAM training (pam.h, SPEC.md section 3): per outer iteration a P-step
 * (SGD on the dense P_g through P(theta_B), proximal pull, projection), the
 * rounding to a hard permutation chosen by the loss along the curve, and a
 * phi-step (mc_curve_train on the control point with a proximal pull).
 *
 * The control point is theta_c = 1/2 theta_A + 1/2 P(theta_B) + phi, formed
 * as a + 1/2 (P(b) - a) + phi, the expression mc_curve_init_bends uses, so
 * that with phi = 0 the phi-step starts from exactly the plain Bezier
 * initialisation.  During the phi-step P is fixed, so training phi is
 * training theta_c; the pull phi <- (phi + r phi0)/(1 + r) is the same pull
 * on theta_c towards its value at the start of the phase. */
#include "curve/pam.h"

#include "align/lap.h"
#include "eval/eval.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct mc_pam {
  const mc_model *m;
  const float *a, *b, *phi;
  mc_pact *act;
  float **P;
  mc_exec *e;
  int64_t batch;
  float *pb, *theta, *grad, *state, *szero, *sdummy; /* szero/sdummy: BN state in/out of permutes */
};

mc_status mc_pam_create(mc_pam **out, const mc_model *m, const float *a, const float *b, const float *phi,
                        int64_t batch, mc_backend be) {
  mc_exec *e;
  mc_status st = mc_exec_create(&e, m, batch, be);
  if (st) return st;
  mc_pam *p = mc_calloc_try(1, sizeof *p);
  if (!p) return mc_exec_free(e), mc_oom(sizeof *p, "PAM's state");
  const size_t n = m->n_theta + 1, ns = m->n_state + 1;
  p->m = m;
  p->a = a;
  p->b = b;
  p->phi = phi;
  p->e = e;
  p->batch = batch;
  if ((st = mc_pact_create(&p->act, m)) || (st = mc_pmat_alloc(&p->P, m, NULL))) return mc_pam_free(p), st;
  p->pb = mc_aligned_alloc_try(sizeof(float) * n);
  p->theta = mc_aligned_alloc_try(sizeof(float) * n);
  p->grad = mc_aligned_alloc_try(sizeof(float) * n);
  p->state = mc_aligned_alloc_try(sizeof(float) * ns);
  p->szero = mc_aligned_alloc_try(sizeof(float) * ns);
  p->sdummy = mc_aligned_alloc_try(sizeof(float) * ns);
  if (!p->pb || !p->theta || !p->grad || !p->state || !p->szero || !p->sdummy) {
    mc_pam_free(p);
    return mc_oom(3 * sizeof(float) * (n + ns), "PAM's parameter and BN state buffers (%zu parameters)", m->n_theta);
  }
  *out = p;
  return MC_OK;
}

void mc_pam_free(mc_pam *p) {
  if (!p) return;
  mc_pact_free(p->act);
  mc_pmat_free(p->m, p->P);
  mc_exec_free(p->e);
  free(p->pb); free(p->theta); free(p->grad); free(p->state); free(p->szero); free(p->sdummy);
  free(p);
}

float **mc_pam_matrices(mc_pam *p) { return p->P; }
mc_exec *mc_pam_exec(mc_pam *p) { return p->e; }

/* theta(t) from a, pb = P(b) and phi; returns d theta(t) / d pb = t. */
static float curve_theta(const mc_pam *p, double t, float *theta) {
  const float wa = (float)((1 - t) * (1 - t)), wb = (float)(t * t), wc = (float)(2 * t * (1 - t));
  const float *a = p->a, *pb = p->pb, *phi = p->phi;
  const size_t n = p->m->n_theta;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float c = a[i] + 0.5f * (pb[i] - a[i]) + phi[i];
    theta[i] = wa * a[i] + wb * pb[i] + wc * c;
  }
  return wb + 0.5f * wc;
}

mc_status mc_pam_loss_grad(mc_pam *p, double t, const float *x, const int32_t *y, int64_t k, double *loss,
                           int64_t *hits, float **dP) {
  MC_ASSERT(k <= p->batch);
  mc_pact_apply(p->act, p->P, p->b, p->pb);
  const float fb = curve_theta(p, t, p->theta);
  mc_status st = mc_exec_forward(p->e, p->theta, p->state, x, k, MC_MODE_TRAIN);
  if (st || (st = mc_exec_loss(p->e, y, 1.f, loss, hits))) return st;
  if (!isfinite(*loss)) return mc_error(MC_ENAN, "PAM: the loss at t = %.3f is %g", t, *loss);
  if (!dP) return MC_OK;
  const size_t n = p->m->n_theta;
  memset(p->grad, 0, sizeof(float) * n);
  if ((st = mc_exec_backward(p->e, p->theta, NULL, p->grad, NULL))) return st;
  float *g = p->grad;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) g[i] *= fb;
  mc_pact_adjoint(p->act, p->P, p->b, g, dP);
  return MC_OK;
}

mc_status mc_pam_select_loss(mc_pam *p, int *const *perm, const mc_dataset *ds, int64_t n, double *loss) {
  if (n <= 0 || n > ds->n) n = ds->n;
  /* a last batch of one row has no batch statistics: dropped */
  if (n > 1 && n % p->batch == 1) n--;
  mc_model_permute(p->m, perm, p->b, p->szero, p->pb, p->sdummy);
  const int64_t nb = (n + p->batch - 1) / p->batch;
  mc_batches bt;
  mc_status st = mc_batches_init(&bt, ds, n, p->batch);
  if (st) return st;
  double sum = 0;
  int64_t seen = 0, i = 0, k;
  while (!st && (k = mc_batches_next(&bt)) > 0) {
    const double t = nb > 1 ? (double)i / (double)(nb - 1) : 0.5;
    curve_theta(p, t, p->theta);
    double l = 0;
    if ((st = mc_exec_forward(p->e, p->theta, p->state, bt.x, k, MC_MODE_TRAIN)) ||
        (st = mc_exec_loss(p->e, bt.y, 1.f, &l, NULL)))
      break;
    sum += l * (double)k;
    seen += k;
    i++;
  }
  mc_batches_free(&bt);
  if (st) return st;
  *loss = sum / (double)seen;
  if (!isfinite(*loss)) st = mc_error(MC_ENAN, "PAM rounding: the selection loss of a candidate is %g", *loss);
  return st;
}

/* --------------------------------------------------------------- rounding */
typedef struct {
  int nt;       /* kept terms */
  int *perms;   /* nt * n */
  double *cdf;  /* nt, normalised to end at 1 */
} bvn_sampler;

static mc_status bvn_sampler_init(bvn_sampler *s, const double *D, int64_t n, int keep, const int *fallback) {
  int cap = (int)(n * n < 2000 ? n * n : 2000);
  const size_t bp = sizeof(int) * (size_t)cap * (size_t)n, bc = sizeof(double) * (size_t)cap;
  int *perms = mc_malloc_try(bp);
  double *coef = mc_malloc_try(bc);
  int nt = 0;
  mc_status st = MC_OK;
  if (!perms || !coef) {
    st = mc_oom(bp + bc, "the Birkhoff-von Neumann terms of a %lld x %lld matrix", (long long)n, (long long)n);
    goto out;
  }
  if ((st = mc_bvn_decompose(D, n, 1e-9, cap, perms, coef, &nt))) goto out;
  /* the `keep` largest coefficients (selection by repeated maximum: keep is small) */
  const int k = nt < keep ? nt : keep;
  s->nt = k > 0 ? k : 1;
  s->perms = mc_malloc_try(sizeof(int) * (size_t)s->nt * (size_t)n);
  s->cdf = mc_malloc_try(sizeof(double) * (size_t)s->nt);
  if (!s->perms || !s->cdf) {
    st = mc_oom((sizeof(int) * (size_t)n + sizeof(double)) * (size_t)s->nt, "the %d kept BvN terms", s->nt);
    goto out; /* s->perms and s->cdf: the caller frees them */
  }
  if (k == 0) { /* nothing decomposable: the LAP rounding */
    memcpy(s->perms, fallback, sizeof(int) * (size_t)n);
    s->cdf[0] = 1;
  }
  double acc = 0;
  for (int j = 0; j < k; j++) {
    int best = -1;
    for (int q = 0; q < nt; q++)
      if (coef[q] >= 0 && (best < 0 || coef[q] > coef[best])) best = q;
    memcpy(s->perms + (size_t)j * (size_t)n, perms + (size_t)best * (size_t)n, sizeof(int) * (size_t)n);
    acc += coef[best];
    s->cdf[j] = acc;
    coef[best] = -1;
  }
  for (int j = 0; j < k; j++) s->cdf[j] /= acc;
  if (k > 0) s->cdf[k - 1] = 1;
out:
  free(perms);
  free(coef);
  return st;
}

static int perms_equal(const mc_model *m, int *const *x, int *const *y) {
  for (int g = 0; g < m->n_groups; g++)
    if (memcmp(x[g], y[g], sizeof(int) * (size_t)m->groups[g].size)) return 0;
  return 1;
}

/* P_g in double; NULL (MC_ENOMEM set) when it does not fit */
static double *pmat_double(const mc_model *m, const float *P, int g) {
  const int64_t n = m->groups[g].size;
  double *D = mc_malloc_try(sizeof(double) * (size_t)(n * n));
  if (!D) {
    mc_oom(sizeof(double) * (size_t)(n * n), "a double copy of group %s's %lld x %lld matrix", m->groups[g].name,
           (long long)n, (long long)n);
    return NULL;
  }
  for (int64_t i = 0; i < n * n; i++) D[i] = P[i];
  return D;
}

mc_status mc_pam_round(mc_pam *p, int **prev, int terms, int nsamp, uint64_t seed, const mc_dataset *ds,
                       int64_t n, double *cand_loss, int *chosen) {
  const mc_model *m = p->m;
  const int G = m->n_groups, nc = 2 + nsamp;
  /* cand[c][g]: candidate c's permutation of group g */
  int ***cand = mc_calloc_try((size_t)nc, sizeof(int **));
  bvn_sampler *smp = mc_calloc_try((size_t)G + 1, sizeof(bvn_sampler));
  mc_status st = MC_OK;
  if (!cand || !smp) {
    st = mc_oom(sizeof(int **) * (size_t)nc + sizeof(bvn_sampler) * ((size_t)G + 1),
                "the tables of %d rounding candidates", nc);
    goto out;
  }
  for (int c = 0; c < nc && !st; c++) {
    if (!(cand[c] = mc_calloc_try((size_t)G + 1, sizeof(int *)))) {
      st = mc_oom(sizeof(int *) * ((size_t)G + 1), "rounding candidate %d's table", c);
      break;
    }
    for (int g = 0; g < G && !st; g++)
      if (!(cand[c][g] = mc_malloc_try(sizeof(int) * (size_t)m->groups[g].size)))
        st = mc_oom(sizeof(int) * (size_t)m->groups[g].size, "rounding candidate %d's permutation of group %s", c,
                    m->groups[g].name);
  }
  for (int g = 0; g < G && !st; g++) {
    const int64_t sz = m->groups[g].size;
    memcpy(cand[0][g], prev[g], sizeof(int) * (size_t)sz);
    double *D = pmat_double(m, p->P[g], g);
    if (!D) {
      st = MC_ENOMEM;
      break;
    }
    st = mc_lap_max(D, sz, cand[1][g], NULL);
    if (!st) st = bvn_sampler_init(&smp[g], D, sz, terms, cand[1][g]);
    free(D);
  }
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (int c = 2; c < nc && !st; c++)
    for (int g = 0; g < G; g++) {
      const double u = mc_rng_uniform(&r);
      int j = 0;
      while (j < smp[g].nt - 1 && smp[g].cdf[j] < u) j++;
      memcpy(cand[c][g], smp[g].perms + (size_t)j * (size_t)m->groups[g].size, sizeof(int) * (size_t)m->groups[g].size);
    }
  int best = 0;
  for (int c = 0; c < nc && !st; c++) {
    cand_loss[c] = NAN;
    int dup = 0;
    for (int q = 0; q < c && !dup; q++) dup = perms_equal(m, cand[c], cand[q]);
    if (dup) continue;
    if ((st = mc_pam_select_loss(p, cand[c], ds, n, &cand_loss[c]))) break;
    if (cand_loss[c] < cand_loss[best]) best = c;
  }
  if (!st) {
    for (int g = 0; g < G; g++) memcpy(prev[g], cand[best][g], sizeof(int) * (size_t)m->groups[g].size);
    *chosen = best;
  }
out:
  for (int c = 0; cand && c < nc; c++) {
    for (int g = 0; cand[c] && g < G; g++) free(cand[c][g]);
    free(cand[c]);
  }
  for (int g = 0; smp && g < G; g++) {
    free(smp[g].perms);
    free(smp[g].cdf);
  }
  free(smp);
  free(cand);
  return st;
}

/* ----------------------------------------------------------------- P-step */
typedef struct {
  const mc_pam_cfg *cfg;
  mc_pam *p;
  double **Pd, **P0; /* master copies in double */
  float **dP;
} pstep_job;

static mc_status pstep_batch(void *arg, const mc_batch_ctx *b, double *loss, int64_t *hits) {
  pstep_job *j = arg;
  mc_pam *p = j->p;
  const mc_model *m = p->m;
  const double t = mc_rng_uniform(&b->plan->extra);
  for (int g = 0; g < m->n_groups; g++) memset(j->dP[g], 0, sizeof(float) * (size_t)(m->groups[g].size * m->groups[g].size));
  mc_status st = mc_pam_loss_grad(p, t, b->x, b->y, b->k, loss, hits, j->dP);
  if (st)
    return mc_error(st, "PAM P-step epoch %lld, step %lld: %s (--p-lr %g too high?)", (long long)b->epoch + 1,
                    (long long)b->step + 1, mc_errmsg(), b->lr);
  const double r = isfinite(j->cfg->nu) ? b->lr / j->cfg->nu : 0;
  for (int g = 0; g < m->n_groups; g++) {
    const int64_t n = m->groups[g].size;
    double *P = j->Pd[g];
    for (int64_t i = 0; i < n * n; i++) P[i] = (P[i] - b->lr * j->dP[g][i] + r * j->P0[g][i]) / (1 + r);
    if ((st = mc_ds_project(P, n, j->cfg->proj_iters))) return st;
    for (int64_t i = 0; i < n * n; i++) p->P[g][i] = (float)P[i];
  }
  return MC_OK;
}

/* ------------------------------------------------------------------ run */
typedef struct {
  const float *c0;
  double nu;
} phi_pull;

static void phi_after_step(void *arg, mc_curve *c, double lr) {
  const phi_pull *q = arg;
  const float r = (float)(lr / q->nu), s = 1.f / (1.f + r);
  float *x = c->bends[0];
  const float *x0 = q->c0;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < c->n; i++) x[i] = (x[i] + r * x0[i]) * s;
}

void mc_pam_result_free(mc_pam_result *r) {
  for (int g = 0; r->perm && g < r->n_groups; g++) free(r->perm[g]);
  free(r->perm); free(r->moved); free(r->cand_loss); free(r->chosen);
  memset(r, 0, sizeof *r);
}

static FILE *log_open(const char *path, const char *mode, mc_status *st) {
  if (!path) return NULL;
  FILE *f = fopen(path, mode);
  if (!f) *st = mc_error(MC_EIO, "%s: cannot open log file", path);
  return f;
}

mc_status mc_pam_run(const mc_pam_cfg *cfg, const mc_model *m, const float *a, const float *b, const float *sb,
                     const mc_data *d, mc_backend be, float *b_out, float *sb_out, float **bend,
                     mc_pam_result *res) {
  const mc_dataset *tr = &d->train;
  if (tr->n < 2) return mc_error(MC_EARG, "training set has %lld examples; need at least 2", (long long)tr->n);
  if (cfg->outer < 1) return mc_error(MC_EARG, "PAM: --outer %d: expected at least 1", cfg->outer);
  const int G = m->n_groups, nc = 2 + cfg->samples_rounding;
  const size_t n = m->n_theta;
  const int64_t B = cfg->phi.batch < tr->n ? cfg->phi.batch : tr->n;
  const size_t nx = sizeof(float) * (size_t)(B * tr->c * tr->h * tr->w);
  double **Pd = NULL, **P0 = NULL;
  float **dP = NULL, *x = NULL;
  int32_t *y = NULL;
  int64_t *order = NULL;
  mc_pam *p = NULL;
  memset(res, 0, sizeof *res);
  float *phi = mc_aligned_alloc_try(sizeof(float) * (n + 1));
  float *c = mc_aligned_alloc_try(sizeof(float) * (n + 1)), *c0 = mc_aligned_alloc_try(sizeof(float) * (n + 1));
  mc_status st = MC_OK;
  if (!phi || !c || !c0) {
    st = mc_oom(3 * sizeof(float) * (n + 1), "PAM's phi and control points (%zu parameters)", n);
    goto out;
  }
  if ((st = mc_pam_create(&p, m, a, b, phi, B, be))) goto out;
  res->n_groups = G;
  res->outer = cfg->outer;
  res->n_cand = nc;
  res->perm = mc_calloc_try((size_t)G + 1, sizeof(int *));
  res->moved = mc_calloc_try((size_t)G + 1, sizeof(int64_t));
  res->cand_loss = mc_calloc_try((size_t)(cfg->outer * nc), sizeof(double));
  res->chosen = mc_calloc_try((size_t)cfg->outer, sizeof(int));
  Pd = mc_calloc_try((size_t)G + 1, sizeof(double *));
  P0 = mc_calloc_try((size_t)G + 1, sizeof(double *));
  dP = mc_calloc_try((size_t)G + 1, sizeof(float *));
  x = mc_aligned_alloc_try(nx);
  y = mc_malloc_try(sizeof(int32_t) * (size_t)B);
  order = mc_malloc_try(sizeof(int64_t) * (size_t)tr->n);
  if (!res->perm || !res->moved || !res->cand_loss || !res->chosen || !Pd || !P0 || !dP || !x || !y || !order) {
    st = mc_oom((sizeof(int *) + sizeof(int64_t) + 3 * sizeof(double *)) * ((size_t)G + 1) +
                    (sizeof(double) * (size_t)nc + sizeof(int)) * (size_t)cfg->outer + nx + sizeof(int32_t) * (size_t)B +
                    sizeof(int64_t) * (size_t)tr->n,
                "PAM's result tables and batch buffers (%d groups, %d outer iterations, batch %lld)", G, cfg->outer,
                (long long)B);
    goto out;
  }
  for (int q = 0; q < cfg->outer * nc; q++) res->cand_loss[q] = NAN; /* no rounding without a P-step */
  for (int g = 0; g < G; g++) {
    const int64_t sz = m->groups[g].size;
    const size_t bm = sizeof(double) * (size_t)(sz * sz);
    res->perm[g] = mc_malloc_try(sizeof(int) * (size_t)sz);
    Pd[g] = mc_malloc_try(bm);
    P0[g] = mc_malloc_try(bm);
    dP[g] = mc_malloc_try(sizeof(float) * (size_t)(sz * sz));
    if (!res->perm[g] || !Pd[g] || !P0[g] || !dP[g]) {
      st = mc_oom(sizeof(int) * (size_t)sz + 2 * bm + sizeof(float) * (size_t)(sz * sz),
                  "PAM's permutation and %lld x %lld matrices of group %s", (long long)sz, (long long)sz,
                  m->groups[g].name);
      goto out;
    }
    for (int64_t i = 0; i < sz; i++) res->perm[g][i] = (int)i;
  }
  FILE *log = log_open(cfg->log_path, "w", &st);
  if (log) fclose(log);
  for (int o = 0; o < cfg->outer && !st; o++) {
    /* ---- P-step, from the current hard permutation */
    if (cfg->p_epochs > 0) {
      for (int g = 0; g < G; g++) {
        const int64_t sz = m->groups[g].size;
        for (int64_t i = 0; i < sz * sz; i++) Pd[g][i] = P0[g][i] = 0;
        for (int64_t i = 0; i < sz; i++) Pd[g][i * sz + res->perm[g][i]] = P0[g][i * sz + res->perm[g][i]] = 1;
        for (int64_t i = 0; i < sz * sz; i++) p->P[g][i] = (float)Pd[g][i];
      }
      if ((log = log_open(cfg->log_path, "a", &st))) fprintf(log, "{\"phase\": \"p-step\", \"outer\": %d}\n", o + 1);
      const mc_epoch_loop L = {"pam P-step", p->e, tr, &cfg->phi.aug, B, cfg->phi.seed * 0x9E37u + 0x50414dULL + (uint64_t)o,
                               order, x, y, cfg->sink};
      pstep_job job = {cfg, p, Pd, P0, dP};
      mc_schedule ps = cfg->p_sched;
      ps.epochs = cfg->p_epochs;
      for (int64_t ep = 0; ep < cfg->p_epochs && !st; ep++) {
        const double lr = mc_schedule_lr(&ps, ep);
        mc_epoch_stats es;
        if ((st = mc_run_epoch(&L, ep, lr, pstep_batch, &job, &es))) break;
        mc_log lg = {log ? cfg->log_path : NULL, log, 1}; /* the open file; closed below */
        if ((st = mc_epoch_report(cfg->sink, &lg, "pam P-step epoch", ep + 1, cfg->p_epochs, "train (random t)", &es,
                                  lr, NULL, 0)))
          break;
        double dist = 0, offmass = 0;
        int64_t units = 0;
        for (int g = 0; g < G; g++) {
          const int64_t sz = m->groups[g].size;
          for (int64_t i = 0; i < sz * sz; i++) dist += (Pd[g][i] - P0[g][i]) * (Pd[g][i] - P0[g][i]);
          for (int64_t i = 0; i < sz; i++) offmass += 1 - Pd[g][i * sz + res->perm[g][i]];
          units += sz;
        }
        mc_msg(cfg->sink, MC_MSG_INFO, "    P: ||P - P0||_F %.4g, mass off the previous permutation %.4g of %lld units",
               sqrt(dist), offmass, (long long)units);
      }
      if (log) fclose(log);
      if (st) break;
      /* ---- rounding */
      double t0 = omp_get_wtime();
      double *cl = res->cand_loss + (size_t)o * (size_t)nc;
      st = mc_pam_round(p, res->perm, cfg->bvn_terms, cfg->samples_rounding, cfg->phi.seed ^ (0x524f554eULL + (uint64_t)o),
                        tr, cfg->select_samples, cl, &res->chosen[o]);
      if (st) break;
      int distinct = 0;
      for (int q = 0; q < nc; q++) distinct += isfinite(cl[q]);
      mc_msg(cfg->sink, MC_MSG_INFO,
             "pam rounding %d: selection loss (mean CE along the curve, same t per batch for every candidate) "
             "previous %.5f, LAP %s%.5f; %d distinct of %d candidates; chose %s (%.5f) in %.1fs",
             o + 1, cl[0], isfinite(cl[1]) ? "" : "(= previous) ", isfinite(cl[1]) ? cl[1] : cl[0], distinct, nc,
             res->chosen[o] == 0 ? "the previous permutation" : res->chosen[o] == 1 ? "the LAP rounding" : "a BvN sample",
             cl[res->chosen[o]], omp_get_wtime() - t0);
    }
    /* ---- phi-step: Bezier training of theta_c = a + 1/2 (P(b) - a) + phi */
    mc_model_permute(m, res->perm, b, p->szero, p->pb, p->sdummy);
    for (size_t i = 0; i < n; i++) c[i] = a[i] + 0.5f * (p->pb[i] - a[i]) + phi[i];
    memcpy(c0, c, sizeof(float) * n);
    float *bends[1] = {c};
    mc_curve cv = {MC_CURVE_BEZIER, 1, n, a, p->pb, bends};
    mc_curve_train_cfg pc = cfg->phi;
    phi_pull pull = {c0, cfg->nu};
    if (isfinite(cfg->nu)) {
      pc.after_step = phi_after_step;
      pc.after_arg = &pull;
    }
    pc.seed = cfg->phi.seed + (uint64_t)o;
    pc.log_path = cfg->log_path;
    pc.log_append = 1;
    pc.sink = cfg->sink;
    if ((log = log_open(cfg->log_path, "a", &st))) {
      fprintf(log, "{\"phase\": \"phi-step\", \"outer\": %d}\n", o + 1);
      fclose(log);
    }
    if (pc.epochs > 0 && !st) st = mc_curve_train(&pc, m, &cv, d, be);
    for (size_t i = 0; i < n; i++) phi[i] = c[i] - (a[i] + 0.5f * (p->pb[i] - a[i]));
  }
out:
  if (!st) {
    mc_model_permute(m, res->perm, b, sb, b_out, sb_out);
    for (int g = 0; g < G; g++)
      for (int64_t i = 0; i < m->groups[g].size; i++) res->moved[g] += res->perm[g][i] != i;
    *bend = c;
    c = NULL;
  } else {
    mc_pam_result_free(res);
  }
  for (int g = 0; g < G; g++) {
    if (Pd) free(Pd[g]);
    if (P0) free(P0[g]);
    if (dP) free(dP[g]);
  }
  free(Pd); free(P0); free(dP); free(x); free(y); free(order);
  free(phi); free(c); free(c0);
  mc_pam_free(p);
  return st;
}
