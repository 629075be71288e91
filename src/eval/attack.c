/* L-infinity PGD on the executor (see attack.h). */
#include "eval/attack.h"

#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void mc_pgd_default(mc_pgd *p, int64_t channels) {
  const int cifar = channels == 3;
  *p = (mc_pgd){cifar ? 8.0 / 255 : 0.1, cifar ? 2.0 / 255 : 0.025, 5, 1, 1, NULL};
}

mc_status mc_pgd_check(const mc_pgd *p) {
  if (!(p->eps >= 0 && p->eps <= 1))
    return mc_error(MC_EARG, "--eps must be in [0, 1] (inputs are in [0,1]); got %g", p->eps);
  if (!(p->alpha >= 0 && p->alpha <= 1))
    return mc_error(MC_EARG, "--alpha must be in [0, 1]; got %g", p->alpha);
  if (p->steps < 0 || p->steps > 10000)
    return mc_error(MC_EARG, "--steps must be in 0..10000; got %d", p->steps);
  return MC_OK;
}

/* splitmix64 of the three words: the seed of one row's noise stream */
static uint64_t row_seed(uint64_t seed, uint64_t salt, int64_t key) {
  uint64_t z = seed ^ (salt * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)key * 0xD1B54A32D192ED03ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* One PGD step on q in [q0, q1): x' = clip_[0,1](clip_[x-eps, x+eps](x' +
 * alpha * sign(g))), the clips as v < lo ? lo : v (then v > hi ? hi : v),
 * a zero or NaN gradient moving nothing. */
static void pgd_update_scalar(float *xadv, const float *x, const float *dx, size_t q0, size_t q1, float alpha,
                              float eps) {
  for (size_t q = q0; q < q1; q++) {
    const float g = dx[q], sg = g > 0 ? 1.f : g < 0 ? -1.f : 0.f;
    float v = xadv[q] + alpha * sg;
    const float lo = x[q] - eps, hi = x[q] + eps;
    v = v < lo ? lo : v > hi ? hi : v;
    xadv[q] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
  }
}

/* The same over all `total` values; on x86-64 four at a time, with the
 * same values bit for bit: max_ps(a, v) is a > v ? a : v and min_ps(a, v)
 * is a < v ? a : v, the ternaries above (the compiler does not vectorise
 * those: the compares may trap). */
static void pgd_update(float *xadv, const float *x, const float *dx, size_t total, float alpha, float eps) {
#if defined(__SSE2__)
  const size_t nv = total / 4 * 4;
  const __m128 va = _mm_set1_ps(alpha), ve = _mm_set1_ps(eps), zero = _mm_setzero_ps(), one = _mm_set1_ps(1.f);
#pragma omp parallel for schedule(static) if (nv > 4096)
  for (size_t q = 0; q < nv; q += 4) {
    const __m128 g = _mm_loadu_ps(dx + q), x0 = _mm_loadu_ps(x + q);
    const __m128 sg = _mm_sub_ps(_mm_and_ps(_mm_cmpgt_ps(g, zero), one), _mm_and_ps(_mm_cmplt_ps(g, zero), one));
    __m128 v = _mm_add_ps(_mm_loadu_ps(xadv + q), _mm_mul_ps(va, sg));
    v = _mm_min_ps(_mm_add_ps(x0, ve), _mm_max_ps(_mm_sub_ps(x0, ve), v));
    _mm_storeu_ps(xadv + q, _mm_min_ps(one, _mm_max_ps(zero, v)));
  }
  pgd_update_scalar(xadv, x, dx, nv, total, alpha, eps);
#else
  pgd_update_scalar(xadv, x, dx, 0, total, alpha, eps);
#endif
}

mc_status mc_pgd_run(mc_exec *e, const float *theta, float *state, mc_mode mode, const mc_pgd *p,
                     const float *x, const int32_t *y, int64_t n, const int64_t *key, uint64_t salt, float *xadv,
                     float *dx) {
  const mc_model *m = mc_exec_model(e);
  const int64_t D = m->in_c * m->in_h * m->in_w;
  const size_t total = (size_t)(n * D);
  memcpy(xadv, x, sizeof(float) * total);
  if (p->steps == 0) return MC_OK;
  /* PyTorch evaluates x0 - eps, x + alpha*sign(g) on float tensors with the
   * Python scalars cast to float: the same here */
  const float eps = (float)p->eps, alpha = (float)p->alpha;
  if (p->delta0)
    for (int64_t i = 0; i < n; i++)
      for (int64_t q = 0; q < D; q++) xadv[i * D + q] += p->delta0[key[i] * D + q];
  else if (p->random_start)
    for (int64_t i = 0; i < n; i++) {
      mc_rng r;
      mc_rng_seed(&r, row_seed(p->seed, salt, key[i]));
      float *xi = xadv + i * D;
      for (int64_t q = 0; q < D; q++) xi[q] += (float)(-p->eps + 2 * p->eps * mc_rng_uniform(&r));
    }
  for (int s = 0; s < p->steps; s++) {
    mc_status st = mc_exec_forward(e, theta, state, xadv, n, mode);
    double loss = 0;
    if (st || (st = mc_exec_loss(e, y, 1.f, &loss, NULL))) return st;
    if (!isfinite(loss))
      return mc_error(MC_ENAN, "PGD step %d: the loss is %g on the perturbed inputs", s + 1, loss);
    memset(dx, 0, sizeof(float) * total);
    if ((st = mc_exec_backward(e, theta, NULL, NULL, dx))) return st;
    pgd_update(xadv, x, dx, total, alpha, eps);
  }
  return MC_OK;
}
