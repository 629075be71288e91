/* jansson's allocations, watched (src/io/json.c). */
#ifndef MC_IO_JSON_H
#define MC_IO_JSON_H

#include <jansson.h>

/* 1 when a jansson allocation failed since the last call (which clears the
 * flag): a JSON value built or serialised meanwhile may lack members.
 * Every writer of JSON in the library takes it after json_dumps.  One
 * flag for the process: a value should be written before the next one is
 * built (as every caller does), since a writer that clears the flag when
 * it starts (the checkpoint header) forgets an earlier failure. */
int mc_json_alloc_failed(void);

/* json_loadb; NULL with *oom = 1 when an allocation failed while parsing. */
json_t *mc_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *err, int *oom);

#endif
