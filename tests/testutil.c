/* Helpers shared by the tests. */
#include "testutil.h"

#include "curve/pam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

mc_model *tu_model(const char *arch, int64_t c, int64_t h, int64_t w, int64_t classes) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = c; p.in_h = h; p.in_w = w; p.classes = classes;
  if (!strcmp(arch, "mlp")) p.widths = "24,16";
  if (!strcmp(arch, "googlenet")) p.width = 0.125; /* every channel count / 8: test-sized */
  mc_model *m = NULL;
  mc_status st = mc_model_create(&m, arch, &p);
  if (st) fail_msg("model %s: %s", arch, mc_errmsg());
  return m;
}

void tu_random_params(const mc_model *m, uint64_t seed, float **theta, float **state) {
  *theta = mc_malloc(sizeof(float) * (m->n_theta + 1));
  *state = mc_malloc(sizeof(float) * (m->n_state + 1));
  mc_model_init(m, *theta, *state, seed);
  mc_rng r;
  mc_rng_seed(&r, seed ^ 0x5555);
  /* perturb BN so it is not the identity, keep running var positive */
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    if (m->nodes[t->node].kind != MC_NODE_BN) continue;
    float *d = (t->in_state ? *state : *theta) + t->off;
    for (size_t j = 0; j < t->numel; j++) {
      float u = (float)mc_rng_uniform(&r);
      if (t->role == MC_ROLE_WEIGHT) d[j] = 0.5f + u;
      else if (t->role == MC_ROLE_BIAS) d[j] = u - 0.5f;
      else if (t->role == MC_ROLE_RMEAN) d[j] = 0.2f * (u - 0.5f);
      else d[j] = 0.5f + u;
    }
  }
}

void tu_random_input(float *x, size_t n, uint64_t seed) {
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = (float)mc_rng_uniform(&r);
}

mc_dataset tu_synth_data(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  mc_dataset d = {n, c, h, w, 10, NULL, NULL};
  d.images = mc_malloc((size_t)(n * c * h * w));
  d.labels = mc_malloc(sizeof(int32_t) * (size_t)n);
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (int64_t i = 0; i < n * c * h * w; i++) d.images[i] = (uint8_t)mc_rng_below(&r, 256);
  for (int64_t i = 0; i < n; i++) d.labels[i] = (int32_t)mc_rng_below(&r, 10);
  return d;
}

double tu_max_rel(const float *a, const float *b, size_t n, double floor) {
  double scale = floor;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
  double mx = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]) / scale;
    if (!(d <= mx)) mx = d; /* NaN propagates as a failure */
  }
  return mx;
}

int tu_sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int r = system(cmd);
  return WIFEXITED(r) ? WEXITSTATUS(r) : 128;
}

const char *tu_env(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v ? v : fallback;
}

int tu_run_tests(const char *group, const struct CMUnitTest *tests, size_t n) {
  const char *skip = getenv("MC_TEST_SKIP");
  struct CMUnitTest *keep = calloc(n + 1, sizeof *keep);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p = skip;
    size_t l = strlen(tests[i].name);
    int drop = 0;
    while (p && *p && !drop) {
      const char *c = strchr(p, ',');
      size_t pl = c ? (size_t)(c - p) : strlen(p);
      drop = pl == l && !strncmp(p, tests[i].name, l);
      p = c ? c + 1 : NULL;
    }
    if (drop) printf("[ SKIPPED  ] %s (MC_TEST_SKIP)\n", tests[i].name);
    else keep[k++] = tests[i];
  }
  int r = _cmocka_run_group_tests(group, keep, k, NULL, NULL);
  free(keep);
  return r;
}

const float *tu_forward(mc_exec *e, const float *theta, float *state, const float *x, int64_t n, mc_mode mode) {
  if (mc_exec_forward(e, theta, state, x, n, mode)) fail_msg("forward: %s", mc_errmsg());
  return mc_exec_output(e, 0);
}

void tu_backward(mc_exec *e, const float *theta, const float *dlogits, float *grad, float *dx) {
  const float *d[16] = {dlogits}; /* one entry per head (the others NULL: no gradient from them) */
  MC_ASSERT(mc_exec_model(e)->n_heads <= 16);
  if (mc_exec_backward(e, theta, dlogits ? d : NULL, grad, dx)) fail_msg("backward: %s", mc_errmsg());
}

void tu_read(mc_exec *e, int node, float *out) {
  if (mc_exec_read(e, node, out)) fail_msg("read of node %d: %s", node, mc_errmsg());
}

void tu_random_perms(const mc_model *m, mc_rng *r, int **perm) {
  for (int g = 0; g < m->n_groups; g++) {
    int64_t n = m->groups[g].size, *tmp = mc_malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) tmp[i] = i;
    mc_rng_shuffle(r, tmp, (size_t)n);
    for (int64_t i = 0; i < n; i++) perm[g][i] = (int)tmp[i];
    free(tmp);
  }
}

int **tu_perms_alloc(const mc_model *m) {
  int **p = mc_calloc((size_t)m->n_groups + 1, sizeof(int *));
  for (int g = 0; g < m->n_groups; g++) {
    p[g] = mc_malloc(sizeof(int) * (size_t)m->groups[g].size);
    for (int64_t i = 0; i < m->groups[g].size; i++) p[g][i] = (int)i;
  }
  return p;
}

void tu_perms_free(const mc_model *m, int **p) {
  for (int g = 0; g < m->n_groups; g++) free(p[g]);
  free(p);
}

void tu_random_ds(const mc_model *m, mc_rng *r, float **P, double noise) {
  int **q = tu_perms_alloc(m);
  for (int g = 0; g < m->n_groups; g++) {
    const int64_t n = m->groups[g].size;
    double *D = mc_calloc((size_t)(n * n), sizeof(double));
    for (int64_t i = 0; i < n; i++) D[i * n + i] = 0.6;
    for (int k = 0; k < 2; k++) {
      tu_random_perms(m, r, q);
      for (int64_t i = 0; i < n; i++) D[i * n + q[g][i]] += 0.2;
    }
    for (int64_t i = 0; i < n * n; i++) D[i] += noise * mc_rng_uniform(r) / (double)n;
    MC_ASSERT(mc_ds_project(D, n, 20) == MC_OK);
    for (int64_t i = 0; i < n * n; i++) P[g][i] = (float)D[i];
    free(D);
  }
  tu_perms_free(m, q);
}
