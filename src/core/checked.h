/* Overflow-checked size arithmetic: every product or sum of sizes that a
 * file, a spec or a flag can make large goes through these, so a wrapped
 * count can never become a small allocation that is then written past.
 * MC_MAX_NUMEL bounds any one tensor or activation (per sample) and the
 * parameter vector: 2^40 floats (4 TiB) is far beyond any machine this
 * runs on, and keeps batch * numel products of checked batches in range. */
#ifndef MC_CHECKED_H
#define MC_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_MAX_NUMEL ((int64_t)1 << 40)

/* *r = a * b; false when it overflows or leaves [0, MC_MAX_NUMEL]. */
static inline bool mc_mul_ok(int64_t *r, int64_t a, int64_t b) {
  return !__builtin_mul_overflow(a, b, r) && *r >= 0 && *r <= MC_MAX_NUMEL;
}

/* *r = a + b; false when it overflows or leaves [0, MC_MAX_NUMEL]. */
static inline bool mc_add_ok(int64_t *r, int64_t a, int64_t b) {
  return !__builtin_add_overflow(a, b, r) && *r >= 0 && *r <= MC_MAX_NUMEL;
}

/* *r = a * b in size_t (byte counts); false on overflow. */
static inline bool mc_size_mul_ok(size_t *r, size_t a, size_t b) { return !__builtin_mul_overflow(a, b, r); }

/* *r = a + b in size_t; false on overflow. */
static inline bool mc_size_add_ok(size_t *r, size_t a, size_t b) { return !__builtin_add_overflow(a, b, r); }

#endif
