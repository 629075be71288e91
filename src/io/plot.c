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
 * the availability of the device, and the writability of the directory (we
 * create the temporary output file ourselves).  The output goes to a
 * temporary file in the target directory that is renamed into place once
 * PLplot has finished and the file is non-empty. */
#include "io/plot.h"

#include <plplot/plplot.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_W 900
#define PAGE_H 600
#define MAX_SERIES 8
#define MARKER_MAX_POINTS 40 /* series this short get a marker per point */
#define N_SHADES 20

static pthread_mutex_t g_plot_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------ colour map 0 */
enum {
  COL_WHITE = 0, /* background */
  COL_BLACK = 1, /* axes, labels, text */
  COL_SERIES = 2, /* 2 .. 9: one colour per series */
  COL_GRID = 10,
  COL_HALO = 11,
  COL_COUNT = 12
};

static const PLINT k_cmap0[COL_COUNT][3] = {
    {255, 255, 255}, {0, 0, 0},
    /* tab10 without grey: blue, orange, green, red, purple, brown, pink,
     * cyan */
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207},
    {215, 215, 215}, {255, 255, 255}};

/* marker glyphs for the legend (UTF-8); on the plot the same shapes are
 * drawn as polygons by marker_at */
static const char *const k_markers[MAX_SERIES] = {
    "\xe2\x97\x8f", /* ● */ "\xe2\x96\xa0", /* ■ */
    "\xe2\x96\xb2", /* ▲ */ "\xe2\x97\x86", /* ◆ */
    "\xe2\x96\xbc", /* ▼ */ "\xe2\x97\x8b", /* ○ */
    "\xe2\x96\xa1", /* □ */ "\xe2\x96\xb3", /* △ */
};

/* ------------------------------------------------------------- utilities */

/* PLplot interprets '#' as the start of an escape sequence; user text is
 * shown literally by doubling it.  Returns a malloc'ed string. */
static char *pl_text(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s), extra = 0;
  for (size_t i = 0; i < n; i++) extra += s[i] == '#';
  char *t = mc_malloc(n + extra + 1), *p = t;
  for (size_t i = 0; i < n; i++) {
    *p++ = s[i];
    if (s[i] == '#') *p++ = '#';
  }
  *p = '\0';
  return t;
}

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

/* The process umask, read without changing it (umask() is process-wide
 * and would race with other threads creating files). */
static mode_t current_umask(void) {
  mode_t m = 022;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return m;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    unsigned v;
    if (sscanf(line, "Umask: %o", &v) == 1) {
      m = (mode_t)v;
      break;
    }
  }
  fclose(f);
  return m;
}

/* Output bookkeeping: the temporary file PLplot writes, renamed to path at
 * the end. */
typedef struct {
  const char *path;
  const char *dev;
  char *tmp;
  PLINT old_stream, stream;
  int open; /* plinit done on `stream` */
  PLINT errcode;
  char errmsg[2048];
} plot_out;

/* Checks the extension and the arguments' directory, creates the temporary
 * file and opens a fresh PLplot stream on it.  Called with the lock held. */
static mc_status out_begin(plot_out *o, const char *path) {
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
  /* "%n" in a file name means "family member number" to PLplot; keep the
   * temporary name plain by deriving it from the directory only then. */
  size_t n = strlen(path);
  o->tmp = mc_malloc(n + 32);
  if (strchr(path, '%')) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    memcpy(o->tmp, path, dl);
    strcpy(o->tmp + dl, ".mcplot.tmp.XXXXXX");
  } else {
    snprintf(o->tmp, n + 32, "%s.tmp.XXXXXX", path);
  }
  int fd = mkstemp(o->tmp);
  if (fd < 0) {
    int e = errno;
    free(o->tmp);
    o->tmp = NULL;
    return mc_error(MC_EIO, "%s: cannot create a file there: %s", path,
                    strerror(e));
  }
  /* mkstemp makes the file 0600; give it the mode a plain fopen would */
  (void)fchmod(fd, 0666 & ~current_umask());
  close(fd);

  plgstrm(&o->old_stream);
  plmkstrm(&o->stream);
  if (o->stream < 0) {
    unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    plsstrm(o->old_stream);
    return mc_error(MC_EINTERNAL, "%s: no free PLplot stream", path);
  }
  /* plabort messages go to errmsg instead of stderr */
  plsError(&o->errcode, o->errmsg);
  plsdev(o->dev);
  plsfnam(o->tmp);
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

/* Ends the stream, checks the output and renames it into place (st ==
 * MC_OK) or removes it.  Restores the caller's stream. */
static mc_status out_end(plot_out *o, mc_status st) {
  if (o->open) {
    plend1();
    o->open = 0;
  }
  if (!o->tmp) return st; /* out_begin failed before making a stream */
  plsstrm(o->old_stream);
  if (st == MC_OK && o->errcode != 0) {
    char *msg = o->errmsg;
    while (*msg == '\n') msg++;
    size_t l = strlen(msg);
    while (l && msg[l - 1] == '\n') msg[--l] = '\0';
    st = mc_error(MC_EINTERNAL, "%s: PLplot error: %s", o->path, msg);
  }
  if (st == MC_OK) {
    struct stat sb;
    int fd = open(o->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0)
      st = mc_error(MC_EIO, "%s: PLplot (%s) wrote no output", o->path,
                    o->dev);
    else if (fsync(fd) != 0)
      st = mc_error(MC_EIO, "%s: fsync failed: %s", o->path,
                    strerror(errno));
    if (fd >= 0) close(fd);
    if (st == MC_OK && rename(o->tmp, o->path) != 0)
      st = mc_error(MC_EIO, "%s: cannot rename %s into place: %s", o->path,
                    o->tmp, strerror(errno));
  }
  if (st != MC_OK) unlink(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
  return st;
}

/* Tick labels: plain decimals with one number of decimals per axis (as
 * many as its ticks need), exponent form only for very large or very small
 * magnitudes.  PLplot's default would write a "(x10^k)" scale factor in
 * the page corner, which the title area clips. */
typedef struct {
  double lo[2], hi[2]; /* [0] x axis, [1] y axis (or the colour bar) */
  int prec[2];         /* decimals, or significant digits when expo */
  int expo[2];
} tick_fmt;

static void fmt_value(const tick_fmt *f, int ax, double v, char *out,
                      size_t len) {
  double span = f->hi[ax] - f->lo[ax];
  if (!(span > 0) || !isfinite(span)) span = fabs(v) > 0 ? fabs(v) : 1.0;
  if (fabs(v) < 1e-9 * span) v = 0.0;
  /* the axis precision, more only if this value needs it */
  for (int p = f->prec[ax]; p <= 15; p++) {
    snprintf(out, len, f->expo[ax] ? "%.*g" : "%.*f", p, v);
    if (fabs(strtod(out, NULL) - v) <= 1e-6 * span) break;
  }
  if (out[0] == '-' && strtod(out, NULL) == 0.0)
    memmove(out, out + 1, strlen(out));
}

static void tick_label(PLINT axis, PLFLT v, char *out, PLINT len,
                       PLPointer data) {
  fmt_value(data, axis == PL_X_AXIS ? 0 : 1, v, out, (size_t)len);
}

/* Sets the format of axis ax for [lo, hi] from a plausible set of ticks
 * (PLplot picks its own, but they have the same resolution) and returns
 * the widest label in characters. */
static int tick_setup(tick_fmt *f, int ax, double lo, double hi) {
  f->lo[ax] = lo;
  f->hi[ax] = hi;
  double span = hi - lo, m = fmax(fabs(lo), fabs(hi));
  f->expo[ax] = m >= 1e6 || m < 1e-3;
  f->prec[ax] = f->expo[ax] ? 1 : 0;
  if (!(span > 0) || !isfinite(span)) return 1;
  double raw = span / 6, mag = pow(10, floor(log10(raw)));
  double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag
                : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  /* smallest precision that renders every tick exactly */
  int need = f->prec[ax];
  for (double v = ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) {
    double w = fabs(v) < 1e-9 * span ? 0.0 : v;
    char buf[64];
    int p = need;
    for (; p < 15; p++) {
      snprintf(buf, sizeof buf, f->expo[ax] ? "%.*g" : "%.*f", p, w);
      if (fabs(strtod(buf, NULL) - w) <= 1e-6 * span) break;
    }
    if (p > need) need = p;
  }
  f->prec[ax] = need;
  int best = 1;
  for (double v = ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) {
    char buf[64];
    fmt_value(f, ax, v, buf, sizeof buf);
    int l = (int)strlen(buf);
    if (l > best) best = l;
  }
  return best;
}

/* Left viewport edge and y label distance (in character heights) leaving
 * room for tick labels of `chars` characters. */
#define CH_PX 15.0 /* default character height on our page, in pixels */
static void left_margin(int chars, double *vx0, double *disp) {
  *disp = 2.3 + 0.8 * chars;
  if (*disp < 4.0) *disp = 4.0;
  *vx0 = (*disp + 0.9) * CH_PX / PAGE_W + 0.01;
}

/* Finite range of v[0..n); returns the number of finite values. */
static size_t finite_range(const double *v, size_t n, double *lo,
                           double *hi) {
  size_t cnt = 0;
  double a = INFINITY, b = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(v[i])) continue;
    if (v[i] < a) a = v[i];
    if (v[i] > b) b = v[i];
    cnt++;
  }
  *lo = a;
  *hi = b;
  return cnt;
}

/* Widens [lo, hi] by `margin` of its span (or a sensible span when it is
 * degenerate). */
static void pad_range(double *lo, double *hi, double margin) {
  double span = *hi - *lo;
  if (!(span > 0) || !isfinite(span)) {
    double c = 0.5 * (*lo + *hi), h = fabs(c) * 0.05;
    if (!(h > 0) || !isfinite(h)) h = 0.5;
    *lo = c - h;
    *hi = c + h;
    return;
  }
  *lo -= margin * span;
  *hi += margin * span;
}

/* Draws the finite runs of (x, y) as polylines. */
static void line_finite(const double *x, const double *y, int n) {
  int i = 0;
  while (i < n) {
    while (i < n && !(isfinite(x[i]) && isfinite(y[i]))) i++;
    int j = i;
    while (j < n && isfinite(x[j]) && isfinite(y[j])) j++;
    if (j - i >= 2) plline(j - i, x + i, y + i);
    i = j;
  }
}

/* Marker k (the shape of k_markers[k]) of radius r device pixels at each
 * finite point, drawn as a polygon so it sits exactly on the point (text
 * glyphs are placed by font metrics, a pixel or two off).  pxw / pxh: one
 * device pixel in world units. */
static void marker_at(int k, double x, double y, double r, double pxw,
                      double pxh) {
  enum { NC = 24 };
  PLFLT vx[NC + 1], vy[NC + 1];
  int n = 0, open = k >= 5;
  int shape = k % 5; /* circle, square, triangle up, diamond, triangle down */
  if (k == 5) shape = 0;
  if (k == 6) shape = 1;
  if (k == 7) shape = 2;
  if (shape == 0) {
    for (int i = 0; i < NC; i++) {
      double a = 2 * M_PI * i / NC;
      vx[n] = x + r * cos(a) * pxw;
      vy[n++] = y + r * sin(a) * pxh;
    }
  } else {
    static const double sq[4][2] = {{-1, -1}, {1, -1}, {1, 1}, {-1, 1}};
    static const double up[3][2] = {{-1.1, -0.8}, {1.1, -0.8}, {0, 1.2}};
    static const double dn[3][2] = {{-1.1, 0.8}, {1.1, 0.8}, {0, -1.2}};
    static const double di[4][2] = {{0, -1.3}, {1.1, 0}, {0, 1.3}, {-1.1, 0}};
    const double(*v)[2] = shape == 1 ? sq : shape == 2 ? up
                                          : shape == 3 ? di : dn;
    int m = shape == 1 || shape == 3 ? 4 : 3;
    double f = shape == 1 ? 0.85 : 1.0;
    for (int i = 0; i < m; i++) {
      vx[n] = x + f * r * v[i][0] * pxw;
      vy[n++] = y + f * r * v[i][1] * pxh;
    }
  }
  if (open) {
    vx[n] = vx[0];
    vy[n] = vy[0];
    plline(n + 1, vx, vy);
  } else {
    plfill(n, vx, vy);
  }
}

static void marks_finite(const double *x, const double *y, int n, int k,
                         double pxw, double pxh) {
  for (int i = 0; i < n; i++)
    if (isfinite(x[i]) && isfinite(y[i]))
      marker_at(k, x[i], y[i], 5.0, pxw, pxh);
}

/* Whether a series point is isolated (no finite neighbour), so that a line
 * would not show it. */
static int has_isolated(const double *x, const double *y, int n) {
  for (int i = 0; i < n; i++) {
    if (!(isfinite(x[i]) && isfinite(y[i]))) continue;
    int l = i > 0 && isfinite(x[i - 1]) && isfinite(y[i - 1]);
    int r = i + 1 < n && isfinite(x[i + 1]) && isfinite(y[i + 1]);
    if (!l && !r) return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ line plots */

/* Number of samples of the polylines (sampled densely along each segment)
 * inside the four corner boxes of size (w, h) in normalised window
 * coordinates; corner order: TR, TL, BR, BL. */
static void corner_hits(const mc_series *s, int ns, double x0, double x1,
                        double y0, double y1, double w, double h,
                        double hits[4]) {
  for (int c = 0; c < 4; c++) hits[c] = 0;
  for (int k = 0; k < ns; k++) {
    int n = s[k].n, sub = n > 1 ? 400 / n : 1;
    if (sub < 1) sub = 1;
    for (int i = 0; i < n; i++) {
      double xa = s[k].x[i], ya = s[k].y[i];
      if (!(isfinite(xa) && isfinite(ya))) continue;
      int seg = i + 1 < n && isfinite(s[k].x[i + 1]) && isfinite(s[k].y[i + 1]);
      int m = seg ? sub : 1;
      for (int t = 0; t < m; t++) {
        double f = (double)t / m;
        double px = seg ? xa + f * (s[k].x[i + 1] - xa) : xa;
        double py = seg ? ya + f * (s[k].y[i + 1] - ya) : ya;
        double u = (px - x0) / (x1 - x0), v = (py - y0) / (y1 - y0);
        int right = u >= 1 - w, left = u <= w;
        int top = v >= 1 - h, bottom = v <= h;
        if (top && right) hits[0] += 1;
        if (top && left) hits[1] += 1;
        if (bottom && right) hits[2] += 1;
        if (bottom && left) hits[3] += 1;
      }
    }
  }
}

mc_status mc_plot_lines(const char *path, const char *title,
                        const char *xlabel, const char *ylabel,
                        const mc_series *s, int ns) {
  const char *p = path ? path : "(null)";
  if (!s || ns < 1 || ns > MAX_SERIES)
    return mc_error(MC_EARG, "%s: need 1 to %d series, got %d", p,
                    MAX_SERIES, s ? ns : 0);
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int k = 0; k < ns; k++) {
    const char *name = s[k].label ? s[k].label : "";
    if (s[k].n < 1 || !s[k].x || !s[k].y)
      return mc_error(MC_EARG, "%s: series %d (%s) has no points", p, k,
                      name);
    int finite = 0;
    for (int i = 0; i < s[k].n; i++) {
      double xv = s[k].x[i], yv = s[k].y[i];
      if (!(isfinite(xv) && isfinite(yv))) continue;
      finite++;
      if (xv < x0) x0 = xv;
      if (xv > x1) x1 = xv;
      if (yv < y0) y0 = yv;
      if (yv > y1) y1 = yv;
    }
    if (!finite)
      return mc_error(MC_EARG, "%s: series %d (%s) has no finite point", p,
                      k, name);
  }
  if (!isfinite(x1 - x0) || !isfinite(y1 - y0))
    return mc_error(MC_EARG, "%s: data range too large to plot", p);
  pad_range(&x0, &x1, 0.02);
  pad_range(&y0, &y1, 0.05);

  /* legend placement: the corner where the least data lies; if every
   * corner is busy, make room above the data */
  size_t maxlab = 0;
  for (int k = 0; k < ns; k++) {
    size_t l = s[k].label ? strlen(s[k].label) : 9;
    if (l > maxlab) maxlab = l;
  }
  double leg_w = 0.14 + 0.0125 * (double)maxlab, leg_h = 0.03 + 0.06 * ns;
  if (leg_w > 0.6) leg_w = 0.6;
  double hits[4];
  corner_hits(s, ns, x0, x1, y0, y1, leg_w, leg_h, hits);
  int best = 0;
  for (int c = 1; c < 4; c++)
    if (hits[c] < hits[best]) best = c;
  if (hits[best] > 0 && leg_h < 0.5) {
    /* data fits below 1 - leg_h of the new range: top corners are free */
    double span = y1 - y0;
    y1 = y0 + span / (1.0 - leg_h - 0.02);
    corner_hits(s, ns, x0, x1, y0, y1, leg_w, leg_h, hits);
    best = hits[1] < hits[0] ? 1 : 0;
  }
  PLINT position = PL_POSITION_INSIDE | PL_POSITION_VIEWPORT;
  position |= best < 2 ? PL_POSITION_TOP : PL_POSITION_BOTTOM;
  position |= best % 2 == 0 ? PL_POSITION_RIGHT : PL_POSITION_LEFT;

  pthread_mutex_lock(&g_plot_lock);
  plot_out o;
  mc_status st = out_begin(&o, path);
  if (st != MC_OK) {
    pthread_mutex_unlock(&g_plot_lock);
    return st;
  }

  char *t_title = pl_text(title), *t_x = pl_text(xlabel),
       *t_y = pl_text(ylabel);
  tick_fmt tf;
  tick_setup(&tf, 0, x0, x1);
  double vx0, ydisp;
  left_margin(tick_setup(&tf, 1, y0, y1), &vx0, &ydisp);
  const double vx1 = 0.96, vy0 = 0.11, vy1 = 0.91;
  plvpor(vx0, vx1, vy0, vy1);
  plwind(x0, x1, y0, y1);
  const double pxw = (x1 - x0) / ((vx1 - vx0) * PAGE_W);
  const double pxh = (y1 - y0) / ((vy1 - vy0) * PAGE_H);
  plslabelfunc(tick_label, &tf);
  plcol0(COL_GRID);
  pllsty(1);
  plbox("g", 0., 0, "g", 0., 0);
  plcol0(COL_BLACK);
  plbox("bcnsto", 0., 0, "bcnstvo", 0., 0);
  plmtex("b", 3.2, 0.5, 0.5, t_x);
  plmtex("l", ydisp, 0.5, 0.5, t_y);
  plmtex("t", 1.5, 0.5, 0.5, t_title);

  PLINT opt[MAX_SERIES], colors[MAX_SERIES], styles[MAX_SERIES],
      snum[MAX_SERIES], zero[MAX_SERIES];
  PLFLT widths[MAX_SERIES], sscale[MAX_SERIES], zerof[MAX_SERIES];
  const char *symbols[MAX_SERIES];
  char *labels[MAX_SERIES];
  plwidth(2.0);
  for (int k = 0; k < ns; k++) {
    int marks = s[k].n <= MARKER_MAX_POINTS ||
                has_isolated(s[k].x, s[k].y, s[k].n);
    colors[k] = COL_SERIES + k;
    styles[k] = k + 1;
    widths[k] = 2.0;
    opt[k] = PL_LEGEND_LINE | (marks ? PL_LEGEND_SYMBOL : 0);
    snum[k] = 1;
    sscale[k] = 1.0;
    zero[k] = 0;
    zerof[k] = 0.;
    symbols[k] = k_markers[k];
    if (s[k].label) {
      labels[k] = pl_text(s[k].label);
    } else {
      labels[k] = mc_malloc(24);
      snprintf(labels[k], 24, "series %d", k + 1);
    }
    plcol0(colors[k]);
    pllsty(styles[k]);
    line_finite(s[k].x, s[k].y, s[k].n);
    pllsty(1);
    if (marks) marks_finite(s[k].x, s[k].y, s[k].n, k, pxw, pxh);
  }
  plwidth(1.0);
  pllsty(1);
  plcol0(COL_BLACK);

  PLINT text_colors[MAX_SERIES];
  for (int k = 0; k < ns; k++) text_colors[k] = COL_BLACK;
  PLFLT lw, lh;
  pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, position,
           0.015, 0.02, 0.08, COL_WHITE, COL_BLACK, 1, ns, 1, ns, opt, 1.0,
           0.9, 2.0, 0.0, text_colors, (const char *const *)labels, zero,
           zero, zerof, zerof, colors, styles, widths, colors, sscale, snum,
           symbols);

  for (int k = 0; k < ns; k++) free(labels[k]);
  free(t_title);
  free(t_x);
  free(t_y);
  st = out_end(&o, MC_OK);
  pthread_mutex_unlock(&g_plot_lock);
  return st;
}

/* --------------------------------------------------------- contour plots */

static int strictly_monotonic(const double *v, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(v[i])) return 0;
  int up = 1, down = 1;
  for (int i = 1; i < n; i++) {
    if (!(v[i] > v[i - 1])) up = 0;
    if (!(v[i] < v[i - 1])) down = 0;
  }
  return up || down;
}

/* Text with a white halo so it reads on any colour of the map. */
static void halo_text(double x, double y, double just, const char *text,
                      double px_x, double px_y) {
  static const int d[8][2] = {{1, 0},  {-1, 0}, {0, 1},  {0, -1},
                              {1, 1},  {1, -1}, {-1, 1}, {-1, -1}};
  plcol0(COL_HALO);
  for (int r = 1; r <= 2; r++)
    for (int i = 0; i < 8; i++)
      plptex(x + r * d[i][0] * px_x, y + r * d[i][1] * px_y, 1., 0., just,
             text);
  plcol0(COL_BLACK);
  plptex(x, y, 1., 0., just, text);
}

/* A viridis-like colour map 1 (perceptually ordered, readable in grey). */
static void set_cmap1(void) {
  static const PLFLT pos[] = {0.0, 0.125, 0.25, 0.375, 0.5,
                              0.625, 0.75, 0.875, 1.0};
  static const PLFLT rgb[][3] = {
      {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
      {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
      {0.135, 0.659, 0.518}, {0.478, 0.821, 0.318}, {0.993, 0.906, 0.144}};
  PLFLT r[9], g[9], b[9];
  for (int i = 0; i < 9; i++) {
    r[i] = rgb[i][0];
    g[i] = rgb[i][1];
    b[i] = rgb[i][2];
  }
  plscmap1n(256);
  plscmap1l(1, 9, pos, r, g, b, NULL);
}

mc_status mc_plot_contour(const char *path, const char *title,
                          const char *xlabel, const char *ylabel,
                          const double *x, int nx, const double *y, int ny,
                          const double *z, const char *zlabel,
                          const mc_series *overlay, const double *px,
                          const double *py, const char *const *plabels,
                          int np) {
  const char *p = path ? path : "(null)";
  if (!x || !y || !z || nx < 2 || ny < 2)
    return mc_error(MC_EARG, "%s: contour grid needs at least 2x2 points",
                    p);
  if (!strictly_monotonic(x, nx) || !strictly_monotonic(y, ny))
    return mc_error(MC_EARG,
                    "%s: contour grid coordinates must be finite and "
                    "strictly monotonic",
                    p);
  if (np < 0 || (np > 0 && (!px || !py)))
    return mc_error(MC_EARG, "%s: bad marked points (np = %d)", p, np);
  if (overlay && (overlay->n < 0 || (overlay->n > 0 &&
                                     (!overlay->x || !overlay->y))))
    return mc_error(MC_EARG, "%s: bad overlay curve", p);
  size_t nz = (size_t)nx * (size_t)ny;
  double zmin, zmax;
  if (!finite_range(z, nz, &zmin, &zmax))
    return mc_error(MC_EARG, "%s: contour values are all non-finite", p);
  if (!isfinite(zmax - zmin) || !isfinite(x[nx - 1] - x[0]) ||
      !isfinite(y[ny - 1] - y[0]))
    return mc_error(MC_EARG, "%s: contour data range too large to plot", p);
  if (!(zmax > zmin)) {
    double h = fabs(zmin) * 0.05;
    if (!(h > 0)) h = 0.5;
    zmin -= h;
    zmax += h;
  }
  double xlo = fmin(x[0], x[nx - 1]), xhi = fmax(x[0], x[nx - 1]);
  double ylo = fmin(y[0], y[ny - 1]), yhi = fmax(y[0], y[ny - 1]);

  /* PLplot wants a[i][j] at (x[i], y[j]); non-finite cells clamp to the
   * top of the scale (-inf to the bottom) */
  PLFLT *buf = mc_malloc(sizeof(PLFLT) * nz);
  PLFLT **a = mc_malloc(sizeof(PLFLT *) * (size_t)nx);
  for (int i = 0; i < nx; i++) {
    a[i] = buf + (size_t)i * (size_t)ny;
    for (int j = 0; j < ny; j++) {
      double v = z[(size_t)j * (size_t)nx + (size_t)i];
      if (isnan(v) || v == INFINITY) v = zmax;
      else if (v == -INFINITY) v = zmin;
      a[i][j] = v;
    }
  }
  PLFLT clevel[N_SHADES + 1];
  for (int l = 0; l <= N_SHADES; l++)
    clevel[l] = zmin + (zmax - zmin) * l / N_SHADES;
  clevel[N_SHADES] = zmax; /* exact, despite rounding */
  PLcGrid grid = {(PLFLT *)x, (PLFLT *)y, NULL, nx, ny, 0};

  pthread_mutex_lock(&g_plot_lock);
  plot_out o;
  mc_status st = out_begin(&o, path);
  if (st != MC_OK) {
    pthread_mutex_unlock(&g_plot_lock);
    free(a);
    free(buf);
    return st;
  }
  char *t_title = pl_text(title), *t_x = pl_text(xlabel),
       *t_y = pl_text(ylabel), *t_z = pl_text(zlabel);
  set_cmap1();
  tick_fmt tf;
  tick_setup(&tf, 0, xlo, xhi);
  double vx0, ydisp;
  left_margin(tick_setup(&tf, 1, ylo, yhi), &vx0, &ydisp);
  const double vx1 = 0.80, vy0 = 0.11, vy1 = 0.91;
  plvpor(vx0, vx1, vy0, vy1);
  plwind(xlo, xhi, ylo, yhi);
  plpsty(0);
  plshades((PLFLT_MATRIX)a, nx, ny, NULL, xlo, xhi, ylo, yhi, clevel,
           N_SHADES + 1, 1., 0, 0., plfill, 1, pltr1, &grid);

  /* one device pixel in world units, for the text halo */
  const double pxw = (xhi - xlo) / ((vx1 - vx0) * PAGE_W);
  const double pxh = (yhi - ylo) / ((vy1 - vy0) * PAGE_H);

  if (overlay && overlay->n > 0) {
    plwidth(6.0);
    plcol0(COL_HALO);
    line_finite(overlay->x, overlay->y, overlay->n);
    plwidth(2.5);
    plcol0(COL_BLACK);
    line_finite(overlay->x, overlay->y, overlay->n);
    plwidth(1.0);
  }
  for (int k = 0; k < np; k++) {
    if (!(isfinite(px[k]) && isfinite(py[k]))) continue;
    plcol0(COL_HALO);
    marker_at(0, px[k], py[k], 8.0, pxw, pxh);
    plcol0(COL_BLACK);
    marker_at(0, px[k], py[k], 5.5, pxw, pxh);
    if (plabels && plabels[k] && *plabels[k]) {
      char *t = pl_text(plabels[k]);
      /* right of the point, or left of it near the right edge */
      double u = (px[k] - xlo) / (xhi - xlo);
      int left = u > 0.8;
      halo_text(px[k] + (left ? -10 : 10) * pxw, py[k] + 6 * pxh,
                left ? 1.0 : 0.0, t, pxw, pxh);
      free(t);
    }
  }
  plcol0(COL_BLACK);
  plwidth(1.0);
  plslabelfunc(tick_label, &tf);
  plbox("bcnsto", 0., 0, "bcnstvo", 0., 0);
  plmtex("b", 3.2, 0.5, 0.5, t_x);
  plmtex("l", ydisp, 0.5, 0.5, t_y);
  plmtex("t", 1.5, 0.5, 0.5, t_title);

  if (overlay && overlay->n > 0 && overlay->label && *overlay->label) {
    char *t = pl_text(overlay->label);
    PLINT lopt = PL_LEGEND_LINE, col = COL_BLACK, sty = 1, zero = 0;
    PLFLT wid = 2.5, zf = 0., sc = 1.;
    PLINT snum = 0;
    const char *sym = "";
    PLFLT lw, lh;
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_TOP | PL_POSITION_LEFT | PL_POSITION_INSIDE |
                 PL_POSITION_VIEWPORT,
             0.015, 0.02, 0.08, COL_WHITE, COL_BLACK, 1, 1, 1, 1, &lopt, 1.0,
             0.9, 2.0, 0.0, &col, (const char *const *)&t, &zero, &zero, &zf,
             &zf, &col, &sty, &wid, &col, &sc, &snum, &sym);
    free(t);
  }

  /* colour bar at the right of the plot, labelled zlabel */
  {
    PLFLT cw, ch;
    PLINT label_opts[1] = {PL_COLORBAR_LABEL_RIGHT};
    const char *labels[1] = {t_z};
    const char *axis_opts[1] = {"bcvtmo"};
    tick_setup(&tf, 1, zmin, zmax); /* the bar's axis is a y axis */
    PLFLT ticks[1] = {0.};
    PLINT sub_ticks[1] = {0};
    PLINT n_values[1] = {N_SHADES + 1};
    const PLFLT *values[1] = {clevel};
    plcolorbar(&cw, &ch, PL_COLORBAR_SHADE, PL_POSITION_RIGHT |
                   PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT,
               0.03, 0., 0.04, 1.0, COL_WHITE, COL_BLACK, 1, 0., 0., 0, 0.,
               1, label_opts, labels, 1, axis_opts, ticks, sub_ticks,
               n_values, values);
  }

  free(t_title);
  free(t_x);
  free(t_y);
  free(t_z);
  st = out_end(&o, MC_OK);
  pthread_mutex_unlock(&g_plot_lock);
  free(a);
  free(buf);
  return st;
}
