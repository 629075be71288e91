/* Atomic writes of result files. */
#include "io/results.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mc_status mc_atomic_write(const char *path, const void *buf, size_t len) {
  size_t pl = strlen(path);
  char *tmp = mc_malloc(pl + 16);
  snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    mc_status st = mc_error(MC_EIO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  const char *p = buf;
  size_t left = len;
  int err = 0;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err) chmod(tmp, 0644);
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    free(tmp);
    return mc_error(MC_EIO, "%s: write failed: %s (any previous file is unchanged)", path, strerror(err));
  }
  free(tmp);
  return MC_OK;
}

mc_status mc_json_write(const char *path, const json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
  if (!s) return mc_error(MC_EINTERNAL, "%s: cannot serialise JSON", path);
  size_t l = strlen(s);
  char *t = mc_malloc(l + 2);
  memcpy(t, s, l);
  t[l] = '\n';
  free(s);
  mc_status st = mc_atomic_write(path, t, l + 1);
  free(t);
  return st;
}
