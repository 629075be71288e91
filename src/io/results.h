/* Writing result files (JSON via jansson, CSV, text) atomically. */
#ifndef MC_RESULTS_H
#define MC_RESULTS_H

#include <jansson.h>

#include "eval/path.h"
#include "io/json.h"
#include "modeconn.h"

/* Writes buf to path via path.tmp.XXXXXX + fsync + rename; on failure the
 * temporary file is removed and an existing file at path is untouched. */
mc_status mc_atomic_write(const char *path, const void *buf, size_t len);
/* Serialises j (indent 2) and writes it atomically. Does not steal j.
 * MC_ENOMEM, nothing written, when a jansson allocation failed while j was
 * built (mc_json_alloc_failed). */
mc_status mc_json_write(const char *path, const json_t *j);

/* Removes the temporaries our atomic writers leave behind when killed
 * (path.tmp.XXXXXX next to path, the mkstemp pattern of mc_atomic_write and
 * mc_st_write).  Call only while holding the output's lock. */
void mc_remove_stale_tmp(const char *path);

/* Creates dir and its missing parents with mkdir(2) (mode 0777 & ~umask),
 * like `mkdir -p`; an existing directory is fine, anything else in the way
 * is an error naming the component. */
mc_status mc_mkdir_p(const char *dir);

/* The numeric JSON array j[key] (null elements read as NaN): *out gets a
 * fresh array of *n values.  If want != SIZE_MAX the length must equal it.
 * A missing key is an error unless optional (then *n = 0).  Messages name
 * file and key. */
mc_status mc_json_doubles(const json_t *j, const char *file, const char *key, size_t want, int optional,
                          double **out, size_t *n);

/* A plane JSON as `plane --json` writes it (grid, a, b, test_loss,
 * test_accuracy, x_norm, y_perp_norm, theta2_a, optional curve_a/curve_b
 * overlay): every array's length checked against grid (2..MC_PLANE_MAX_GRID)
 * before anything is read through it.  On error nothing is left allocated. */
#define MC_PLANE_MAX_GRID 1000
mc_status mc_plane_from_json(const json_t *j, const char *file, mc_plane_result *pr, double **curve_a,
                             double **curve_b, int *n_curve);

#endif
