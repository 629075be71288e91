/* Plot furniture shared by the line and contour plots: literal text, tick
 * labels, margins, ranges, polylines over finite runs and markers. */
#include "io/plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *plot_text(char out[PLOT_TEXT_CAP], const char *s) {
  if (!s) s = "";
  size_t k = 0;
  for (size_t i = 0; s[i]; i++) {
    if (k + (s[i] == '#' ? 2 : 1) >= PLOT_TEXT_CAP) {
      if (((unsigned char)s[i] & 0xC0) == 0x80) { /* drop the partial UTF-8 sequence */
        while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80) k--;
        if (k > 0) k--;
      }
      break;
    }
    out[k++] = s[i];
    if (s[i] == '#') out[k++] = '#';
  }
  out[k] = '\0';
  return out;
}

/* Tick labels: plain decimals with one number of decimals per axis (as
 * many as its ticks need), exponent form only for very large or very small
 * magnitudes.  PLplot's default would write a "(x10^k)" scale factor in
 * the page corner, which the title area clips. */
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

void plot_tick_label(PLINT axis, PLFLT v, char *out, PLINT len,
                       PLPointer data) {
  fmt_value(data, axis == PL_X_AXIS ? 0 : 1, v, out, (size_t)len);
}

/* Sets the format of axis ax for [lo, hi] from a plausible set of ticks
 * (PLplot picks its own, but they have the same resolution) and returns
 * the widest label in characters. */
int plot_tick_setup(tick_fmt *f, int ax, double lo, double hi) {
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
void plot_left_margin(int chars, double *vx0, double *disp) {
  *disp = 2.3 + 0.8 * chars;
  if (*disp < 4.0) *disp = 4.0;
  *vx0 = (*disp + 0.9) * CH_PX / PAGE_W + 0.01;
}

void plot_frame(tick_fmt *tf, double x0, double x1, double y0, double y1, double vx1, double *ydisp, double *pxw,
                double *pxh) {
  const double vy0 = 0.11, vy1 = 0.91;
  double vx0;
  plot_tick_setup(tf, 0, x0, x1);
  plot_left_margin(plot_tick_setup(tf, 1, y0, y1), &vx0, ydisp);
  plvpor(vx0, vx1, vy0, vy1);
  plwind(x0, x1, y0, y1);
  *pxw = (x1 - x0) / ((vx1 - vx0) * PAGE_W);
  *pxh = (y1 - y0) / ((vy1 - vy0) * PAGE_H);
}

/* Finite range of v[0..n); returns the number of finite values. */
size_t plot_finite_range(const double *v, size_t n, double *lo,
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
void plot_pad_range(double *lo, double *hi, double margin) {
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
void plot_line_finite(const double *x, const double *y, int n) {
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
void plot_marker_at(int k, double x, double y, double r, double pxw,
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

