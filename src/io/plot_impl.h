/* Internals shared by the PLplot writers (plot_out.c: output streams;
 * plot_axes.c: text, ticks, ranges, lines and markers; plot_lines.c and
 * plot_contour.c: the two kinds of plot).  Not a public header. */
#ifndef MC_PLOT_IMPL_H
#define MC_PLOT_IMPL_H

#include "io/plot.h"

#include <plplot/plplot.h>
#include <pthread.h>
#include <stddef.h>

#define PAGE_W 900
#define PAGE_H 600
#define MAX_SERIES 8
#define MARKER_MAX_POINTS 40 /* series this short get a marker per point */
#define N_SHADES 20

/* PLplot keeps global state and is not thread-safe: every plot holds this
 * from plot_out_begin to plot_out_end. */
extern pthread_mutex_t plot_lock;

/* colour map 0 */
enum {
  COL_WHITE = 0, /* background */
  COL_BLACK = 1, /* axes, labels, text */
  COL_SERIES = 2, /* 2 .. 9: one colour per series */
  COL_GRID = 10,
  COL_HALO = 11,
  COL_COUNT = 12
};

/* PLplot interprets '#' as the start of an escape sequence; user text is
 * shown literally by doubling it, into out (returned).  A fixed buffer, so
 * nothing is allocated while a plot is being drawn: text longer than
 * PLOT_TEXT_CAP - 1 bytes (far more than a page shows) is cut at a
 * character boundary. */
#define PLOT_TEXT_CAP 512
const char *plot_text(char out[PLOT_TEXT_CAP], const char *s);

/* One plot's output: PLplot renders into memory (a stdio stream of ours),
 * which plot_out_end writes atomically to path. */
typedef struct {
  const char *path;
  const char *dev;
  FILE *f;
  char *buf;
  size_t len, cap;
  int closed, oom;
  PLINT old_stream, stream;
  int open; /* plinit done on `stream` */
  PLINT errcode;
  char errmsg[2048];
} plot_out;

/* Checks the extension, the device and the directory, and opens a fresh
 * PLplot stream.  Called with the lock held. */
mc_status plot_out_begin(plot_out *o, const char *path);
/* Ends the stream and (st == MC_OK) writes the output atomically, or
 * discards it.  Restores the caller's stream. */
mc_status plot_out_end(plot_out *o, mc_status st);

/* Tick labels (see plot_axes.c) */
typedef struct {
  double lo[2], hi[2]; /* [0] x axis, [1] y axis (or the colour bar) */
  int prec[2];         /* decimals, or significant digits when expo */
  int expo[2];
} tick_fmt;
void plot_tick_label(PLINT axis, PLFLT v, char *out, PLINT len, PLPointer data);
int plot_tick_setup(tick_fmt *f, int ax, double lo, double hi);
#define CH_PX 15.0 /* default character height on our page, in pixels */
void plot_left_margin(int chars, double *vx0, double *disp);
/* The plot area: tick formats for [x0, x1] x [y0, y1], the viewport from a
 * left edge with room for the y tick labels to vx1, and the window;
 * *ydisp: the y label's distance, *pxw / *pxh: one device pixel in world
 * units. */
void plot_frame(tick_fmt *tf, double x0, double x1, double y0, double y1, double vx1, double *ydisp, double *pxw,
                double *pxh);
size_t plot_finite_range(const double *v, size_t n, double *lo, double *hi);
void plot_pad_range(double *lo, double *hi, double margin);
void plot_line_finite(const double *x, const double *y, int n);
void plot_marker_at(int k, double x, double y, double r, double pxw, double pxh);

#endif
