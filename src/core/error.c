/* Error reporting: a thread-local message plus a status code, so library
 * functions return a status and the CLI decides how to exit. */
#include "modeconn.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[2048];

/* Formats into a scratch buffer first: callers may pass mc_errmsg() itself
 * as an argument (to prefix the previous message), and vsnprintf into the
 * buffer it is reading from is undefined (it truncated the message to ""). */
mc_status mc_error(mc_status st, const char *fmt, ...) {
  char tmp[sizeof g_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(g_msg, tmp, sizeof g_msg);
  return st;
}

const char *mc_errmsg(void) { return g_msg; }

const char *mc_status_name(mc_status st) {
  switch (st) {
  case MC_OK: return "ok";
  case MC_EARG: return "bad argument";
  case MC_EIO: return "i/o error";
  case MC_EFORMAT: return "format error";
  case MC_ESHAPE: return "shape mismatch";
  case MC_ENOMEM: return "out of memory";
  case MC_ENAN: return "non-finite value";
  case MC_EINTERNAL: return "internal error";
  }
  return "unknown";
}

void mc_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "modeconn: internal invariant failed: %s (%s:%d)\n", expr,
          file, line);
  abort();
}

/* ---------------------------------------------------------- allocation */

/* Fault injection: g_fail_at counts down the _try allocations and the one
 * that takes it from 1 to 0 fails; g_count counts them for the test.  The
 * environment is read once, at the first allocation. */
static atomic_long g_fail_at, g_count;
static atomic_int g_env_read;

long mc_test_fail_alloc(long n) {
  atomic_store(&g_env_read, 1);
  atomic_store(&g_fail_at, n > 0 ? n : 0);
  return atomic_exchange(&g_count, 0);
}

static bool injected_failure(void) {
  if (!atomic_load_explicit(&g_env_read, memory_order_relaxed) && !atomic_exchange(&g_env_read, 1)) {
    const char *e = getenv("MC_TEST_FAIL_ALLOC");
    if (e && *e) atomic_store(&g_fail_at, strtol(e, NULL, 10));
  }
  atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
  long left = atomic_load_explicit(&g_fail_at, memory_order_relaxed);
  while (left > 0 && !atomic_compare_exchange_weak(&g_fail_at, &left, left - 1)) {}
  return left == 1;
}

mc_status mc_oom(size_t bytes, const char *what_fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, what_fmt);
  vsnprintf(what, sizeof what, what_fmt, ap);
  va_end(ap);
  return mc_error(MC_ENOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
}

void *mc_malloc_try(size_t n) { return injected_failure() ? NULL : malloc(n ? n : 1); }

void *mc_calloc_try(size_t n, size_t size) {
  size_t b;
  if (__builtin_mul_overflow(n, size, &b) || injected_failure()) return NULL;
  return calloc(b ? b : 1, 1);
}

void *mc_realloc_try(void *p, size_t n) { return injected_failure() ? NULL : realloc(p, n ? n : 1); }

char *mc_strdup_try(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mc_malloc_try(n);
  return d ? memcpy(d, s, n) : NULL;
}

static void *aligned_zeroed(size_t n) {
  if (n > SIZE_MAX - 64) return NULL;
  size_t r = (n + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, r ? r : 64);
  if (p) memset(p, 0, r ? r : 64);
  return p;
}

void *mc_aligned_alloc_try(size_t n) { return injected_failure() ? NULL : aligned_zeroed(n); }

/* The aborting variants bypass the fault injection: they are for tests and
 * benchmarks (nothing in src/ uses them), whose allocation failures are
 * not a path to recover from. */
_Noreturn static void die_oom(size_t n) {
  fprintf(stderr, "modeconn: out of memory allocating %zu bytes\n", n);
  abort();
}

void *mc_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die_oom(n);
  return p;
}

void *mc_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) die_oom(n * size);
  return p;
}

void *mc_aligned_alloc(size_t n) {
  void *p = aligned_zeroed(n);
  if (!p) die_oom(n);
  return p;
}
