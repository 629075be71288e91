/* One thread pool for everything: OpenBLAS is the OpenMP build, so setting
 * OpenMP's thread count also sets BLAS's and oneDNN's (OpenMP runtime). */
#include "modeconn.h"

#include <cblas.h>
#include <omp.h>

void mc_set_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int mc_get_threads(void) { return omp_get_max_threads(); }
