/* Whole-file reads of regular files only (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mc_open_regular(const char *path, const char *what, mc_status *st) {
  /* O_NONBLOCK: opening a FIFO for reading blocks until a writer appears */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *st = mc_error(MC_EIO, "%s: cannot open %s: %s", path, what, strerror(errno));
    return -1;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    *st = mc_error(MC_EIO, "%s: cannot stat %s: %s", path, what, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    *st = mc_error(MC_EIO, "%s: the %s is %s, not a regular file", path, what,
                   S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO" : "a device or socket");
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *st = MC_OK;
  return fd;
}

mc_status mc_read_file(const char *path, const char *what, size_t max, unsigned char **out, size_t *size) {
  *out = NULL;
  *size = 0;
  mc_status st;
  int fd = mc_open_regular(path, what, &st);
  if (fd < 0) return st;
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    st = mc_error(MC_EIO, "%s: cannot stat %s: %s", path, what, strerror(errno));
    close(fd);
    return st;
  }
  if ((uint64_t)sb.st_size > (uint64_t)max) {
    close(fd);
    return mc_error(MC_EFORMAT, "%s: %s is %lld bytes, larger than the %zu-byte limit", path, what,
                    (long long)sb.st_size, max);
  }
  size_t n = (size_t)sb.st_size;
  unsigned char *buf = mc_malloc_try(n + 1);
  if (!buf) {
    close(fd);
    return mc_oom(n + 1, "reading the %s %s", what, path);
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      st = r == 0 ? mc_error(MC_EIO, "%s: file shrank while reading the %s (%zu of %zu bytes)", path, what, got, n)
                  : mc_error(MC_EIO, "%s: read failed: %s", path, strerror(errno));
      close(fd);
      free(buf);
      return st;
    }
    got += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  *out = buf;
  *size = n;
  return MC_OK;
}

mc_status mc_parent_dir(const char *path, char **dir) {
  const char *slash = strrchr(path, '/');
  size_t dl = slash ? (size_t)(slash - path) : 0;
  if (slash && !dl) dl = 1; /* the root */
  if (!(*dir = mc_malloc_try(dl + 2))) return mc_oom(dl + 2, "the directory name of %s", path);
  if (slash) memcpy(*dir, path, dl), (*dir)[dl] = 0;
  else strcpy(*dir, ".");
  return MC_OK;
}
