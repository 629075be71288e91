/* Error reporting: a thread-local message plus a status code, so library
 * functions return a status and the CLI decides how to exit. */
#include "modeconn.h"

#include <stdarg.h>
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

static void *oom(size_t n) {
  fprintf(stderr, "modeconn: out of memory allocating %zu bytes\n", n);
  abort();
}

void *mc_malloc_try(size_t n) { return malloc(n ? n : 1); }

void *mc_malloc(size_t n) {
  void *p = mc_malloc_try(n);
  return p ? p : oom(n);
}

void *mc_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  return p ? p : oom(n * size);
}

void *mc_aligned_alloc_try(size_t n) {
  if (n > SIZE_MAX - 64) return NULL;
  size_t r = (n + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, r ? r : 64);
  if (p) memset(p, 0, r ? r : 64);
  return p;
}

void *mc_aligned_alloc(size_t n) {
  void *p = mc_aligned_alloc_try(n);
  return p ? p : oom(n);
}
