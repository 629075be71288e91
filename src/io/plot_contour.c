/* Filled contour plots with a colour bar, an overlay curve and marked
 * points (mc_plot_contour). */
#include "io/plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
  if (!plot_finite_range(z, nz, &zmin, &zmax))
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
  PLFLT *buf = mc_malloc_try(sizeof(PLFLT) * nz);
  PLFLT **a = mc_malloc_try(sizeof(PLFLT *) * (size_t)nx);
  if (!buf || !a) {
    free(buf);
    free(a);
    return mc_oom(sizeof(PLFLT) * nz + sizeof(PLFLT *) * (size_t)nx, "%s: the %d x %d contour grid", p, nx, ny);
  }
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

  pthread_mutex_lock(&plot_lock);
  plot_out o;
  mc_status st = plot_out_begin(&o, path);
  if (st != MC_OK) {
    pthread_mutex_unlock(&plot_lock);
    free(a);
    free(buf);
    return st;
  }
  char b_title[PLOT_TEXT_CAP], b_x[PLOT_TEXT_CAP], b_y[PLOT_TEXT_CAP], b_z[PLOT_TEXT_CAP], b_t[PLOT_TEXT_CAP];
  const char *t_title = plot_text(b_title, title), *t_x = plot_text(b_x, xlabel), *t_y = plot_text(b_y, ylabel),
             *t_z = plot_text(b_z, zlabel);
  set_cmap1();
  tick_fmt tf;
  double ydisp, pxw, pxh;
  plot_frame(&tf, xlo, xhi, ylo, yhi, 0.80, &ydisp, &pxw, &pxh);
  plpsty(0);
  plshades((PLFLT_MATRIX)a, nx, ny, NULL, xlo, xhi, ylo, yhi, clevel,
           N_SHADES + 1, 1., 0, 0., plfill, 1, pltr1, &grid);

  /* one device pixel in world units, for the text halo */

  if (overlay && overlay->n > 0) {
    plwidth(6.0);
    plcol0(COL_HALO);
    plot_line_finite(overlay->x, overlay->y, overlay->n);
    plwidth(2.5);
    plcol0(COL_BLACK);
    plot_line_finite(overlay->x, overlay->y, overlay->n);
    plwidth(1.0);
  }
  for (int k = 0; k < np; k++) {
    if (!(isfinite(px[k]) && isfinite(py[k]))) continue;
    plcol0(COL_HALO);
    plot_marker_at(0, px[k], py[k], 8.0, pxw, pxh);
    plcol0(COL_BLACK);
    plot_marker_at(0, px[k], py[k], 5.5, pxw, pxh);
    if (plabels && plabels[k] && *plabels[k]) {
      const char *t = plot_text(b_t, plabels[k]);
      /* right of the point, or left of it near the right edge */
      double u = (px[k] - xlo) / (xhi - xlo);
      int left = u > 0.8;
      halo_text(px[k] + (left ? -10 : 10) * pxw, py[k] + 6 * pxh,
                left ? 1.0 : 0.0, t, pxw, pxh);
    }
  }
  plcol0(COL_BLACK);
  plwidth(1.0);
  plslabelfunc(plot_tick_label, &tf);
  plbox("bcnsto", 0., 0, "bcnstvo", 0., 0);
  plmtex("b", 3.2, 0.5, 0.5, t_x);
  plmtex("l", ydisp, 0.5, 0.5, t_y);
  plmtex("t", 1.5, 0.5, 0.5, t_title);

  if (overlay && overlay->n > 0 && overlay->label && *overlay->label) {
    const char *t = plot_text(b_t, overlay->label);
    PLINT lopt = PL_LEGEND_LINE, col = COL_BLACK, sty = 1, zero = 0;
    PLFLT wid = 2.5, zf = 0., sc = 1.;
    PLINT snum = 0;
    const char *sym = "";
    PLFLT lw, lh;
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_TOP | PL_POSITION_LEFT | PL_POSITION_INSIDE |
                 PL_POSITION_VIEWPORT,
             0.015, 0.02, 0.08, COL_WHITE, COL_BLACK, 1, 1, 1, 1, &lopt, 1.0,
             0.9, 2.0, 0.0, &col, &t, &zero, &zero, &zf,
             &zf, &col, &sty, &wid, &col, &sc, &snum, &sym);
  }

  /* colour bar at the right of the plot, labelled zlabel */
  {
    PLFLT cw, ch;
    PLINT label_opts[1] = {PL_COLORBAR_LABEL_RIGHT};
    const char *labels[1] = {t_z};
    const char *axis_opts[1] = {"bcvtmo"};
    plot_tick_setup(&tf, 1, zmin, zmax); /* the bar's axis is a y axis */
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

  st = plot_out_end(&o, MC_OK);
  pthread_mutex_unlock(&plot_lock);
  free(a);
  free(buf);
  return st;
}
