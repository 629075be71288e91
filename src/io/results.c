/* Atomic writes of result files, directory creation, and the checked
 * readers of numeric JSON arrays the report uses. */
#include "io/results.h"

#include "core/file.h"
#include "eval/path.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mc_status mc_atomic_write(const char *path, const void *buf, size_t len) {
  size_t pl = strlen(path);
  char *tmp = mc_malloc_try(pl + 16);
  if (!tmp) return mc_oom(pl + 16, "the temporary file name of %s", path);
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
  if (mc_json_alloc_failed()) { /* while j was built or serialised: a member may be missing */
    free(s);
    return mc_error(MC_ENOMEM, "%s: out of memory building the JSON results (not written; any previous file is "
                    "unchanged)", path);
  }
  if (!s) return mc_error(MC_EINTERNAL, "%s: cannot serialise JSON", path);
  size_t l = strlen(s);
  char *t = mc_malloc_try(l + 2);
  if (!t) {
    free(s);
    return mc_oom(l + 2, "the JSON text of %s", path);
  }
  memcpy(t, s, l);
  t[l] = '\n';
  free(s);
  mc_status st = mc_atomic_write(path, t, l + 1);
  free(t);
  return st;
}

mc_status mc_mkdir_p(const char *dir) {
  size_t n = strlen(dir);
  if (!n) return mc_error(MC_EARG, "empty directory name");
  char *p = mc_malloc_try(n + 1);
  if (!p) return mc_oom(n + 1, "the directory name %s", dir);
  memcpy(p, dir, n + 1);
  mc_status st = MC_OK;
  /* each prefix ending at a '/' (and the whole path), leading '/' skipped */
  for (size_t i = 1; i <= n && !st; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char c = p[i];
    p[i] = 0;
    if (mkdir(p, 0777) != 0) {
      int e = errno;
      struct stat sb;
      if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
        st = mc_error(MC_EIO, "%s: cannot create directory '%s': %s", dir, p,
                      e == EEXIST ? "exists and is not a directory" : strerror(e));
    }
    p[i] = c;
  }
  free(p);
  return st;
}

mc_status mc_json_doubles(const json_t *j, const char *file, const char *key, size_t want, int optional,
                          double **out, size_t *n) {
  *out = NULL;
  *n = 0;
  const json_t *a = json_object_get(j, key);
  if (!a && optional) return MC_OK;
  if (!json_is_array(a)) return mc_error(MC_EFORMAT, "%s: '%s' is missing or not an array", file, key);
  size_t len = json_array_size(a);
  if (want != SIZE_MAX && len != want)
    return mc_error(MC_EFORMAT, "%s: '%s' has %zu values, expected %zu", file, key, len, want);
  double *v = mc_malloc_try(sizeof(double) * (len + 1));
  if (!v) return mc_oom(sizeof(double) * (len + 1), "%s: the %zu values of '%s'", file, len, key);
  for (size_t i = 0; i < len; i++) {
    const json_t *x = json_array_get(a, i);
    if (json_is_null(x)) v[i] = NAN;
    else if (json_is_number(x)) v[i] = json_number_value(x);
    else {
      free(v);
      return mc_error(MC_EFORMAT, "%s: '%s'[%zu] is not a number", file, key, i);
    }
  }
  *out = v;
  *n = len;
  return MC_OK;
}

static double json_num(const json_t *j, const char *key) {
  const json_t *v = json_object_get(j, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

mc_status mc_plane_from_json(const json_t *j, const char *file, mc_plane_result *pr, double **curve_a,
                             double **curve_b, int *n_curve) {
  memset(pr, 0, sizeof *pr);
  *curve_a = *curve_b = NULL;
  *n_curve = 0;
  const json_t *g = json_object_get(j, "grid");
  if (!json_is_integer(g) || json_integer_value(g) < 2 || json_integer_value(g) > MC_PLANE_MAX_GRID)
    return mc_error(MC_EFORMAT, "%s: 'grid' is missing or not an integer in 2..%d", file, MC_PLANE_MAX_GRID);
  const size_t G = (size_t)json_integer_value(g);
  size_t n, nb;
  mc_status st;
  pr->G = (int)G;
  if ((st = mc_json_doubles(j, file, "a", G, 0, &pr->a, &n)) || (st = mc_json_doubles(j, file, "b", G, 0, &pr->b, &n)) ||
      (st = mc_json_doubles(j, file, "test_loss", G * G, 0, &pr->loss, &n)) ||
      (st = mc_json_doubles(j, file, "test_accuracy", G * G, 0, &pr->acc, &n)) ||
      (st = mc_json_doubles(j, file, "curve_a", SIZE_MAX, 1, curve_a, &n)) ||
      (st = mc_json_doubles(j, file, "curve_b", n, n == 0, curve_b, &nb)))
    goto fail;
  pr->xnorm = json_num(j, "x_norm");
  pr->ynorm = json_num(j, "y_perp_norm");
  pr->p2a = json_num(j, "theta2_a");
  *n_curve = (int)n;
  return MC_OK;
fail:
  free(pr->a); free(pr->b); free(pr->loss); free(pr->acc);
  memset(pr, 0, sizeof *pr);
  free(*curve_a);
  free(*curve_b);
  *curve_a = *curve_b = NULL;
  return st;
}

/* Best effort: when even the directory's name cannot be allocated the
 * stale files stay, which is what happens when they cannot be removed. */
void mc_remove_stale_tmp(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t bl = strlen(base);
  char *dir;
  if (mc_parent_dir(path, &dir)) return;
  DIR *d = opendir(dir);
  if (d) {
    for (struct dirent *e; (e = readdir(d));) {
      /* exactly base + ".tmp." + the 6 characters mkstemp filled in */
      if (strlen(e->d_name) != bl + 11 || strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp.", 5)) continue;
      unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }
  free(dir);
}
