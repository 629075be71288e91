/* Helpers shared by the tests (cmocka). */
#ifndef MC_TESTUTIL_H
#define MC_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modeconn.h"
#include "data/data.h"

mc_model *tu_model(const char *arch, int64_t c, int64_t h, int64_t w, int64_t classes);
/* random theta/state with BN running stats positive; caller frees */
void tu_random_params(const mc_model *m, uint64_t seed, float **theta, float **state);
void tu_random_input(float *x, size_t n, uint64_t seed);
/* n random uint8 images (c x h x w) with labels in [0, 10), in memory the
 * way the loaders store them; free images and labels */
mc_dataset tu_synth_data(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed);
double tu_max_rel(const float *a, const float *b, size_t n, double floor);
/* Per-group permutations (perm[g][i]: source unit of unit i) and dense
 * matrices P[g] (size^2 floats): identities (free with tu_perms_free), a
 * uniformly random permutation per group, and a random near-doubly-
 * stochastic P per group (0.6 identity + 2 x 0.2 random permutations +
 * noise/n uniform, projected by mc_ds_project). */
int **tu_perms_alloc(const mc_model *m);
void tu_perms_free(const mc_model *m, int **p);
void tu_random_perms(const mc_model *m, mc_rng *r, int **perm);
void tu_random_ds(const mc_model *m, mc_rng *r, float **P, double noise);
/* runs a shell command, returns its exit status */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tu_env(const char *name, const char *fallback);
/* Runs the group without the tests named in $MC_TEST_SKIP (comma
 * separated): a variant run (another kernel set) repeats only the checks
 * that the variant changes. */
int tu_run_tests(const char *group, const struct CMUnitTest *tests, size_t n);
/* The executor calls, failing the test on an error status: the forward
 * returns the main head's output; the backward takes one head's dlogits
 * (NULL: mc_exec_loss's buffers); read copies a node's output. */
const float *tu_forward(mc_exec *e, const float *theta, float *state, const float *x, int64_t n, mc_mode mode);
void tu_backward(mc_exec *e, const float *theta, const float *dlogits, float *grad, float *dx);
void tu_read(mc_exec *e, int node, float *out);
#endif
