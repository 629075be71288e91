/* Plots with PLplot's C API: line plots with a legend and filled contour
 * plots with a colour bar and overlays, written as PNG (pngcairo) or SVG
 * (svgcairo) on a white background.
 *
 * Every call opens its own plot stream (plmkstrm ... plend1) and restores
 * the caller's current stream afterwards, so calls are independent and may
 * be repeated in one process.  PLplot keeps global state and is not
 * thread-safe, so calls are serialised by a mutex.
 *
 * PLplot calls exit() on some errors (plexit), so everything a user can get
 * wrong is validated before PLplot sees it: the extension, the arguments,
 * the availability of the device, and the writability of the directory.
 * PLplot's drivers do not report failed writes (a full disk left a
 * truncated PNG renamed into place), so PLplot writes into memory through a
 * stdio stream of ours (plsfile on an fopencookie stream), and the whole
 * output is then written by mc_atomic_write: temporary file, every write
 * and the fsync checked, rename; on failure an error naming the file and no
 * file left behind. */
#include "core/file.h"
#include "io/plot_impl.h"

#include "io/results.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

pthread_mutex_t plot_lock = PTHREAD_MUTEX_INITIALIZER;

static const PLINT k_cmap0[COL_COUNT][3] = {
    {255, 255, 255}, {0, 0, 0},
    /* tab10 without grey: blue, orange, green, red, purple, brown, pink,
     * cyan */
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207},
    {215, 215, 215}, {255, 255, 255}};

/* The PLplot device for path's extension, or NULL. */
static const char *device_for(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr(base, '.');
  if (!dot || dot == base) return NULL;
  if (!strcasecmp(dot, ".png")) return "pngcairo";
  if (!strcasecmp(dot, ".svg")) return "svgcairo";
  return NULL;
}

static int device_available(const char *dev) {
  enum { NDEV = 256 };
  const char *menu[NDEV], *names[NDEV];
  const char **pm = menu, **pn = names;
  int n = NDEV;
  plgDevs(&pm, &pn, &n);
  for (int i = 0; i < n && names[i]; i++)
    if (!strcmp(names[i], dev)) return 1;
  return 0;
}


/* The stdio stream PLplot writes to: appends to o->buf. */
static ssize_t sink_write(void *c, const char *p, size_t n) {
  plot_out *o = c;
  if (n > o->cap - o->len) {
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap - o->len < n) {
      if (cap > SIZE_MAX / 2) goto oom;
      cap *= 2;
    }
    char *b = mc_realloc_try(o->buf, cap);
    if (!b) goto oom;
    o->buf = b;
    o->cap = cap;
  }
  memcpy(o->buf + o->len, p, n);
  o->len += n;
  return (ssize_t)n;
oom:
  o->oom = 1;
  errno = ENOMEM;
  return -1;
}

/* PLplot fcloses the file it was given at plend1; plot_out_end closes it
 * only if it did not. */
static int sink_close(void *c) {
  ((plot_out *)c)->closed = 1;
  return 0;
}

mc_status plot_out_begin(plot_out *o, const char *path) {
  memset(o, 0, sizeof *o);
  o->path = path;
  if (!path || !*path) return mc_error(MC_EARG, "plot: empty output path");
  o->dev = device_for(path);
  if (!o->dev)
    return mc_error(MC_EARG,
                    "%s: unsupported plot format (use a .png or .svg "
                    "extension)",
                    path);
  if (!device_available(o->dev))
    return mc_error(MC_EIO,
                    "%s: PLplot device %s is not available (install "
                    "plplot-driver-cairo)",
                    path, o->dev);
  /* the directory, before any drawing: the atomic write creates its
   * temporary file there */
  char *dir;
  mc_status st = mc_parent_dir(path, &dir);
  if (st) return st;
  int ok = access(dir, W_OK | X_OK) == 0, e = errno;
  free(dir);
  if (!ok) return mc_error(MC_EIO, "%s: cannot create a file there: %s", path, strerror(e));
  o->f = fopencookie(o, "w", (cookie_io_functions_t){NULL, sink_write, NULL, sink_close});
  if (!o->f) return mc_error(MC_ENOMEM, "%s: cannot open an output stream for PLplot", path);

  plgstrm(&o->old_stream);
  plmkstrm(&o->stream);
  if (o->stream < 0) {
    fclose(o->f);
    o->f = NULL;
    plsstrm(o->old_stream);
    return mc_error(MC_EINTERNAL, "%s: no free PLplot stream", path);
  }
  /* plabort messages go to errmsg instead of stderr */
  plsError(&o->errcode, o->errmsg);
  plsdev(o->dev);
  plsfile(o->f);
  plspage(0., 0., PAGE_W, PAGE_H, 0, 0);
  PLINT r[COL_COUNT], g[COL_COUNT], b[COL_COUNT];
  for (int i = 0; i < COL_COUNT; i++) {
    r[i] = k_cmap0[i][0];
    g[i] = k_cmap0[i][1];
    b[i] = k_cmap0[i][2];
  }
  plscmap0n(COL_COUNT);
  plscmap0(r, g, b, COL_COUNT);
  plscolbg(255, 255, 255);
  plinit();
  o->open = 1;
  pladv(0);
  plschr(0., 1.0);
  plcol0(COL_BLACK);
  plwidth(1.0);
  plpsty(0); /* solid fills */
  return MC_OK;
}

mc_status plot_out_end(plot_out *o, mc_status st) {
  if (o->open) {
    plend1();
    o->open = 0;
  }
  if (!o->f) return st; /* plot_out_begin failed before making a stream */
  plsstrm(o->old_stream);
  /* flushes what stdio still buffers */
  if (!o->closed && fclose(o->f) != 0 && st == MC_OK && !o->oom)
    st = mc_error(MC_EIO, "%s: cannot finish the plot output: %s", o->path, strerror(errno));
  o->f = NULL;
  if (st == MC_OK && o->errcode != 0) {
    char *msg = o->errmsg;
    while (*msg == '\n') msg++;
    size_t l = strlen(msg);
    while (l && msg[l - 1] == '\n') msg[--l] = '\0';
    st = mc_error(MC_EINTERNAL, "%s: PLplot error: %s", o->path, msg);
  }
  if (st == MC_OK && o->oom)
    st = mc_error(MC_ENOMEM, "%s: out of memory holding the plot output", o->path);
  if (st == MC_OK && o->len == 0)
    st = mc_error(MC_EIO, "%s: PLplot (%s) wrote no output", o->path, o->dev);
  if (st == MC_OK) st = mc_atomic_write(o->path, o->buf, o->len);
  free(o->buf);
  o->buf = NULL;
  return st;
}
