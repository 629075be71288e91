/* Exact linear assignment (Jonker-Volgenant style shortest augmenting
 * path, O(n^3)). */
#ifndef MC_LAP_H
#define MC_LAP_H

#include "modeconn.h"

/* Maximises sum_i C[i, perm[i]] over permutations of an n x n row-major
 * matrix.  NaN entries count as 0; +-inf is rejected with MC_EARG.
 * Writes perm (n entries) and returns the objective in *obj (may be NULL). */
mc_status mc_lap_max(const double *C, int64_t n, int *perm, double *obj);

#endif
