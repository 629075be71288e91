/* Executor throughput: forward+backward (train mode) images/s and GFLOP/s
 * for each backend.  FLOPs: mc_model_flops (forward, per sample) x 3 for
 * forward + backward (data + weights gradients), whatever the backward
 * computes.  Built by CMake (build/bench_exec).
 *
 *   bench_exec [--batch N] [--threads T] [--iters K] [--arch A[,A...]]
 *              [--input CxHxW] [--classes K] [--width W]
 *              [--backend ref|dnnl|both] [--eval | --recompute]
 *              [--bwd grad|dx|both] [--bn-eval]
 *
 * Training passes: forward, the multi-head loss (mc_exec_loss: every head,
 * e.g. GoogLeNet's CE + 0.3 aux1 + 0.3 aux2), backward.  --eval: the
 * forward alone (main head); --recompute: the forward alone in
 * MC_MODE_BN_RECOMPUTE (a curve point's BN pass).
 *
 * --bwd: what the backward computes: the weight gradient (default, as in
 * training), only the input gradient (grad = NULL, as PGD needs), or both.
 * --bn-eval: the training pass with BN in eval mode (running statistics),
 * as a PGD evaluation's attack steps run it (--bwd dx).
 */
#include "modeconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median and best over `iters` timed iterations (after 2 warm-up ones):
 * on a shared machine the median resists the odd descheduled iteration. */
enum { BWD_GRAD, BWD_DX, BWD_BOTH };

static int bench(const char *arch, const mc_arch_params *ap, mc_backend be, int64_t batch,
                 int iters, int eval_only, int bwd, int recompute, int bn_eval) {
  mc_model *m;
  if (mc_model_create(&m, arch, ap)) {
    fprintf(stderr, "%s: %s\n", arch, mc_errmsg());
    return 1;
  }
  float *theta = mc_malloc(sizeof(float) * (m->n_theta + 1));
  float *state = mc_malloc(sizeof(float) * (m->n_state + 1));
  float *grad = mc_calloc(m->n_theta + 1, sizeof(float));
  mc_model_init(m, theta, state, 1);
  const size_t xin = (size_t)(m->in_c * m->in_h * m->in_w);
  float *x = mc_malloc(sizeof(float) * xin * (size_t)batch);
  mc_rng r;
  mc_rng_seed(&r, 2);
  for (size_t i = 0; i < xin * (size_t)batch; i++) x[i] = (float)mc_rng_uniform(&r);
  int32_t *labels = mc_malloc(sizeof(int32_t) * (size_t)batch);
  for (int64_t i = 0; i < batch; i++) labels[i] = (int32_t)(i % m->classes);
  mc_exec *e;
  if (mc_exec_create(&e, m, batch, be)) {
    fprintf(stderr, "%s/%s: %s\n", arch, mc_backend_name(be), mc_errmsg());
    return 1;
  }
  const mc_mode mode = recompute ? MC_MODE_BN_RECOMPUTE : eval_only || bn_eval ? MC_MODE_EVAL : MC_MODE_TRAIN;
  double *times = mc_malloc(sizeof(double) * (size_t)iters);
  float *dx = bwd != BWD_GRAD ? mc_calloc(xin * (size_t)batch, sizeof(float)) : NULL;
  for (int it = -2; it < iters; it++) { /* 2 warm-up iterations */
    double t0 = now();
    mc_status st = mc_exec_forward(e, theta, state, x, batch, mode);
    if (!st && !eval_only) st = mc_exec_loss(e, labels, 1.f, NULL, NULL);
    if (!st && !eval_only) st = mc_exec_backward(e, theta, NULL, bwd == BWD_DX ? NULL : grad, dx);
    if (st) {
      fprintf(stderr, "%s: %s\n", arch, mc_errmsg());
      return 1;
    }
    if (it >= 0) times[it] = now() - t0;
  }
  free(dx);
  qsort(times, (size_t)iters, sizeof *times, cmp_double);
  const double flops = mc_model_flops(m) * (eval_only ? 1.0 : 3.0) * (double)batch;
  const double med = times[iters / 2], best = times[0];
  printf("%-10s %-5s batch %4lld threads %d %s%s: median %7.1f ms %8.1f img/s %6.1f GFLOP/s | best %7.1f ms %8.1f img/s %6.1f GFLOP/s\n",
         arch, mc_backend_name(be), (long long)batch, mc_get_threads(),
         recompute ? "fwd-bnrc  " : eval_only ? "fwd       " : bwd == BWD_DX ? "fwd+dx    " : bwd == BWD_BOTH ? "fwd+bwd+dx" : "fwd+bwd   ",
         bn_eval && !eval_only ? " (BN eval)" : "", med * 1e3, (double)batch / med, flops / med * 1e-9, best * 1e3, (double)batch / best,
         flops / best * 1e-9);
  free(times);
  mc_exec_free(e);
  free(theta); free(state); free(grad); free(x); free(labels);
  mc_model_free(m);
  return 0;
}

int main(int argc, char **argv) {
  int64_t batch = 128;
  int threads = 2, iters = 10, eval_only = 0, bwd = BWD_GRAD, recompute = 0, bn_eval = 0;
  const char *archs = "tinyten,resnet20", *backend = "both";
  mc_arch_params ap;
  mc_arch_params_default(&ap);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--arch") && i + 1 < argc) archs = argv[++i];
    else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
    else if (!strcmp(argv[i], "--eval")) eval_only = 1;
    else if (!strcmp(argv[i], "--recompute")) eval_only = recompute = 1;
    else if (!strcmp(argv[i], "--bn-eval")) bn_eval = 1;
    else if (!strcmp(argv[i], "--classes") && i + 1 < argc) ap.classes = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--width") && i + 1 < argc) ap.width = atof(argv[++i]);
    else if (!strcmp(argv[i], "--bwd") && i + 1 < argc) {
      const char *v = argv[++i];
      bwd = !strcmp(v, "dx") ? BWD_DX : !strcmp(v, "both") ? BWD_BOTH : !strcmp(v, "grad") ? BWD_GRAD : -1;
      if (bwd < 0) return 2;
    }
    else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
      long long c, h, w;
      if (sscanf(argv[++i], "%lldx%lldx%lld", &c, &h, &w) != 3) return 2;
      ap.in_c = c; ap.in_h = h; ap.in_w = w;
    } else {
      fprintf(stderr, "usage: %s [--batch N] [--threads T] [--iters K] [--arch A,B] "
                      "[--input CxHxW] [--classes K] [--width W] [--backend ref|dnnl|both] [--eval | --recompute] "
                      "[--bwd grad|dx|both] [--bn-eval]\n", argv[0]);
      return 2;
    }
  }
  if (iters < 1) iters = 1;
  mc_set_threads(threads);
  char *list = strdup(archs);
  int rc = 0;
  char *save = NULL;
  for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
    if (strcmp(backend, "dnnl")) rc |= bench(a, &ap, MC_BACKEND_REF, batch, iters, eval_only, bwd, recompute, bn_eval);
    if (strcmp(backend, "ref")) rc |= bench(a, &ap, MC_BACKEND_DNNL, batch, iters, eval_only, bwd, recompute, bn_eval);
  }
  free(list);
  return rc;
}
