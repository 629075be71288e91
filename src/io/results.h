/* Writing result files (JSON via jansson, CSV, text) atomically. */
#ifndef MC_RESULTS_H
#define MC_RESULTS_H

#include <jansson.h>

#include "modeconn.h"

/* Writes buf to path via path.tmp.XXXXXX + fsync + rename; on failure the
 * temporary file is removed and an existing file at path is untouched. */
mc_status mc_atomic_write(const char *path, const void *buf, size_t len);
/* Serialises j (indent 2) and writes it atomically. Does not steal j. */
mc_status mc_json_write(const char *path, const json_t *j);

#endif
