/* Adversarial examples: L-infinity PGD (Madry et al.) as the paper's
 * official code runs it (utils/attack.py), on the executor's input-gradient-
 * only backward.  Inputs live in [0,1]; the model's own normalisation is a
 * node inside the model, so the attack needs no knowledge of it. */
#ifndef MC_ATTACK_H
#define MC_ATTACK_H
#include "modeconn.h"

typedef struct {
  double eps;       /* radius of the L-infinity ball */
  double alpha;     /* step size */
  int steps;        /* k; 0 = no attack (the clean inputs) */
  int random_start; /* 1: start at x + U(-eps, eps), else at x */
  uint64_t seed;    /* random starts */
  /* a fixed start perturbation instead of the random one (tests against
   * PyTorch): delta0[key[i] * C*H*W + q] is added to row i; NULL: none */
  const float *delta0;
} mc_pgd;

/* The defaults of SPEC section 4 for data with `channels` channels: 3
 * (CIFAR) eps 8/255, alpha 2/255; otherwise (Fashion-MNIST, MNIST) eps 0.1,
 * alpha 0.025; k = 5 and a random start either way. */
void mc_pgd_default(mc_pgd *p, int64_t channels);
/* MC_EARG unless eps >= 0, alpha >= 0, 0 <= steps <= 10000 (finite). */
mc_status mc_pgd_check(const mc_pgd *p);

/* Random-start streams: row i's noise is a pure function of (p->seed,
 * salt, key[i]) -- keys are dataset indices -- so results do not depend
 * on batch sizes, slicing or thread counts. */
#define MC_PGD_SALT_TEST 0x7465737400000000ULL /* evaluation of test images */
#define MC_PGD_SALT_BN 0x626e000000000000ULL   /* BN recompute on training images */
/* training: the epoch (0-based) + 1 */

/* Writes PGD examples for the n rows x (n, C, H, W) with labels y into
 * xadv (n, C, H, W): x_0 = x (+ U(-eps, eps) with random_start; the start
 * is not clipped, as in the official code), then k times
 *   x_{i+1} = clip_[0,1]( clip_[x-eps, x+eps]( x_i + alpha sign(dCE/dx_i) ) )
 * in float arithmetic as PyTorch does it.  CE is the executor's training
 * loss (every head the forward computes in `mode`: the auxiliary heads too
 * in MC_MODE_TRAIN, as the official GoogLeNet criterion).  BN follows
 * `mode`: MC_MODE_TRAIN uses batch statistics and updates `state` by
 * momentum on every attack step's forward, exactly as a PyTorch module in
 * train mode does; MC_MODE_EVAL uses state as given.  The backward computes
 * the input gradient only (no weight gradient).  dx: scratch of n*C*H*W
 * floats.  With steps = 0 xadv = x. */
mc_status mc_pgd_run(mc_exec *e, const float *theta, float *state, mc_mode mode, const mc_pgd *p,
                     const float *x, const int32_t *y, int64_t n, const int64_t *key, uint64_t salt, float *xadv,
                     float *dx);
#endif
