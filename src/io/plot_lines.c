/* Line plots with a legend (mc_plot_lines). */
#include "io/plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* marker glyphs for the legend (UTF-8); on the plot the same shapes are
 * drawn as polygons by plot_marker_at */
static const char *const k_markers[MAX_SERIES] = {
    "\xe2\x97\x8f", /* ● */ "\xe2\x96\xa0", /* ■ */
    "\xe2\x96\xb2", /* ▲ */ "\xe2\x97\x86", /* ◆ */
    "\xe2\x96\xbc", /* ▼ */ "\xe2\x97\x8b", /* ○ */
    "\xe2\x96\xa1", /* □ */ "\xe2\x96\xb3", /* △ */
};

static void marks_finite(const double *x, const double *y, int n, int k,
                         double pxw, double pxh) {
  for (int i = 0; i < n; i++)
    if (isfinite(x[i]) && isfinite(y[i]))
      plot_marker_at(k, x[i], y[i], 5.0, pxw, pxh);
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
  plot_pad_range(&x0, &x1, 0.02);
  plot_pad_range(&y0, &y1, 0.05);

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

  pthread_mutex_lock(&plot_lock);
  plot_out o;
  mc_status st = plot_out_begin(&o, path);
  if (st != MC_OK) {
    pthread_mutex_unlock(&plot_lock);
    return st;
  }

  char b_title[PLOT_TEXT_CAP], b_x[PLOT_TEXT_CAP], b_y[PLOT_TEXT_CAP], b_labels[MAX_SERIES][PLOT_TEXT_CAP];
  const char *t_title = plot_text(b_title, title), *t_x = plot_text(b_x, xlabel), *t_y = plot_text(b_y, ylabel);
  tick_fmt tf;
  double ydisp, pxw, pxh;
  plot_frame(&tf, x0, x1, y0, y1, 0.96, &ydisp, &pxw, &pxh);
  plslabelfunc(plot_tick_label, &tf);
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
  const char *labels[MAX_SERIES];
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
      labels[k] = plot_text(b_labels[k], s[k].label);
    } else {
      snprintf(b_labels[k], sizeof b_labels[k], "series %d", k + 1);
      labels[k] = b_labels[k];
    }
    plcol0(colors[k]);
    pllsty(styles[k]);
    plot_line_finite(s[k].x, s[k].y, s[k].n);
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
           0.9, 2.0, 0.0, text_colors, labels, zero,
           zero, zerof, zerof, colors, styles, widths, colors, sscale, snum,
           symbols);

  st = plot_out_end(&o, MC_OK);
  pthread_mutex_unlock(&plot_lock);
  return st;
}

