/* Timing of mc_lap_max on n x n matrices of several kinds.
 * Build (after the library, e.g. in build-lap):
 *   cc -O2 -march=native -std=c17 -D_GNU_SOURCE -Iinclude -Isrc \
 *      bench/bench_lap.c build-lap/libmodeconn.a -fopenmp -lm -o bench_lap
 * Usage: bench_lap [kind] [n ...]     (default: uniform 1000 2048 4096)
 * kinds: uniform  U[0,1)
 *        int4     integers 0..3 (massive ties)
 *        const    all entries equal
 *        rank1    a_i * b_j, a, b ~ U[0,1)
 *        sparse   1 with probability 1/n, else 0
 *        dist     -(a_i - b_j)^2 (an optimum is the sorted matching)
 *        normal   approximately N(0,1) (sum of 12 uniforms - 6) */
#include "align/lap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time is reported too: on a shared machine it is the steadier one */
static double now(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fill(const char *kind, double *C, int64_t n, mc_rng *r) {
  double *a = mc_malloc(2 * (size_t)n * sizeof(double)), *b = a + n;
  for (int64_t i = 0; i < n; i++) {
    a[i] = mc_rng_uniform(r);
    b[i] = mc_rng_uniform(r);
  }
  int ok = 1;
  for (int64_t i = 0; i < n && ok; i++)
    for (int64_t j = 0; j < n; j++) {
      double *c = &C[i * n + j];
      if (!strcmp(kind, "uniform")) *c = mc_rng_uniform(r);
      else if (!strcmp(kind, "int4")) *c = (double)mc_rng_below(r, 4);
      else if (!strcmp(kind, "const")) *c = 1.5;
      else if (!strcmp(kind, "rank1")) *c = a[i] * b[j];
      else if (!strcmp(kind, "sparse")) *c = mc_rng_below(r, (uint64_t)n) == 0;
      else if (!strcmp(kind, "dist")) *c = -(a[i] - b[j]) * (a[i] - b[j]);
      else if (!strcmp(kind, "normal")) {
        double s = -6;
        for (int k = 0; k < 12; k++) s += mc_rng_uniform(r);
        *c = s;
      } else {
        ok = 0;
        break;
      }
    }
  free(a);
  return ok;
}

int main(int argc, char **argv) {
  const char *kind = "uniform";
  int first = 1;
  if (argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9')) {
    kind = argv[1];
    first = 2;
  }
  int64_t def[] = {1000, 2048, 4096};
  int nsz = argc > first ? argc - first : 3;
  for (int s = 0; s < nsz; s++) {
    int64_t n = argc > first ? atoll(argv[first + s]) : def[s];
    double *C = mc_malloc((size_t)(n * n) * sizeof(double) + 1);
    int *perm = mc_malloc((size_t)n * sizeof(int) + 1);
    mc_rng r;
    mc_rng_seed(&r, 12345 + (uint64_t)n);
    if (!fill(kind, C, n, &r)) {
      fprintf(stderr, "unknown kind %s\n", kind);
      return 2;
    }
    double obj, w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    mc_status st = mc_lap_max(C, n, perm, &obj);
    double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
    if (st) {
      fprintf(stderr, "lap failed: %s\n", mc_errmsg());
      return 1;
    }
    printf("%-8s n=%-5lld wall %7.3f s  cpu %7.3f s  obj=%.12g\n", kind, (long long)n, w1 - w0,
           c1 - c0, obj);
    free(C);
    free(perm);
  }
  return 0;
}
