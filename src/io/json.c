/* jansson's allocations through the library's allocator.  jansson reports
 * a failed allocation inside a builder only as a NULL value or a -1 that
 * callers of json_object_set_new / json_array_append_new do not check, so
 * an out-of-memory run could write a result file or a checkpoint header
 * with keys silently missing.  jansson's allocations go through
 * mc_malloc_try (so the fault injection of test_nomem reaches the
 * builders too) and a failed one raises a flag that the writers of JSON
 * take (mc_json_alloc_failed) before trusting what they built and
 * serialised (json_dumps, too, can survive a failed allocation of its own
 * and return a string).  Parsing
 * (mc_json_loadb) allocates with plain malloc: jansson 2.14's lexer
 * asserts and frees twice when an allocation of its own fails, so a
 * failure cannot be injected there; a real one still raises the flag. */
#include "io/json.h"

#include "modeconn.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_int g_failed;
static _Thread_local int g_parsing;

static void *json_alloc(size_t n) {
  void *p = g_parsing ? malloc(n ? n : 1) : mc_malloc_try(n);
  if (!p) atomic_store(&g_failed, 1);
  return p;
}

/* Before main, so that every jansson allocation goes through json_alloc. */
__attribute__((constructor)) static void json_hook(void) { json_set_alloc_funcs(json_alloc, free); }

int mc_json_alloc_failed(void) { return atomic_exchange(&g_failed, 0); }

json_t *mc_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *err, int *oom) {
  (void)mc_json_alloc_failed();
  g_parsing = 1;
  json_t *j = json_loadb(buf, n, flags, err);
  g_parsing = 0;
  *oom = mc_json_alloc_failed();
  if (*oom) {
    json_decref(j);
    j = NULL;
  }
  return j;
}
