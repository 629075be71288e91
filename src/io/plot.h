/* Plots with PLplot (pngcairo / svgcairo, white background). */
#ifndef MC_PLOT_H
#define MC_PLOT_H

#include "modeconn.h"

typedef struct {
  const char *label;   /* legend entry */
  const double *x, *y; /* n points */
  int n;
} mc_series;

/* Line plot of several series; the format follows the file extension
 * (.png or .svg).  Errors name the file. */
mc_status mc_plot_lines(const char *path, const char *title,
                        const char *xlabel, const char *ylabel,
                        const mc_series *s, int ns);

/* Filled contour of z (ny rows x nx columns, row-major; z[j*nx+i] at
 * (x[i], y[j])) with an optional overlay polyline (curve, may be NULL) and
 * marked points (e.g. endpoints) with labels. */
mc_status mc_plot_contour(const char *path, const char *title,
                          const char *xlabel, const char *ylabel,
                          const double *x, int nx, const double *y, int ny,
                          const double *z, const char *zlabel,
                          const mc_series *overlay, const double *px,
                          const double *py, const char *const *plabels,
                          int np);

#endif
