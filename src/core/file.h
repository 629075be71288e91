/* Reading whole regular files safely: the type is checked on the open
 * descriptor before any blocking read (a FIFO or a device given as a model
 * or spec would otherwise hang or never end), permission errors are
 * reported as such, and a size limit is enforced before allocating. */
#ifndef MC_FILE_H
#define MC_FILE_H

#include "modeconn.h"

#include <stddef.h>

/* Opens path read-only, non-blocking until it is known to be a regular
 * file; returns the descriptor (>= 0) or -1 with an mc_error naming path
 * (`what` says what the file was meant to be, e.g. "checkpoint"). */
int mc_open_regular(const char *path, const char *what, mc_status *st);

/* Reads a whole regular file of at most `max` bytes into a fresh buffer
 * with a NUL after the data (*out, *size). */
mc_status mc_read_file(const char *path, const char *what, size_t max, unsigned char **out, size_t *size);

/* *dir = a fresh copy of the directory part of path: "." when it has no
 * '/', "/" for a file in the root; MC_ENOMEM naming path. */
mc_status mc_parent_dir(const char *path, char **dir);

#endif
