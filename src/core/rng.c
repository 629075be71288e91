/* Random numbers: xoshiro256** seeded with splitmix64.  Small, fast, and its
 * whole state fits in a checkpoint, which exact resume needs. */
#include "modeconn.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void mc_rng_seed(mc_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t mc_rng_next(mc_rng *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

double mc_rng_uniform(mc_rng *r) {
  return (double)(mc_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t mc_rng_below(mc_rng *r, uint64_t n) {
  /* Lemire's multiply-shift with rejection: unbiased. */
  uint64_t x = mc_rng_next(r);
  __uint128_t m = (__uint128_t)x * n;
  uint64_t l = (uint64_t)m;
  if (l < n) {
    uint64_t t = -n % n;
    while (l < t) {
      x = mc_rng_next(r);
      m = (__uint128_t)x * n;
      l = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

float mc_rng_normal(mc_rng *r) {
  double u1 = mc_rng_uniform(r), u2 = mc_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void mc_rng_shuffle(mc_rng *r, int64_t *a, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)mc_rng_below(r, i);
    int64_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}
