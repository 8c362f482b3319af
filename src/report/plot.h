/* plot.h: PNG line plots (one line per series over a shared x axis), as `jtrak lds` draws LDS
 * against the diffusion step t for every method with the noise ceiling: white background, axes
 * with round-numbered ticks and light grid lines, a dashed gray line at y = 0, up to
 * PLOT_MAX_SERIES series in a fixed colour-blind-safe palette (lines 2 px wide, solid or dashed,
 * a marker at every point, optional vertical error bars with caps, NaN y = a gap), a legend box
 * (in the emptiest part of the plot area, or right of it), title and axis labels in a 5x7 bitmap
 * font (font5x7.c). No anti-aliasing: every series pixel has exactly its palette colour, which the
 * tests rely on. Written through png_write_rgb (temporary name, rename). */
#ifndef JTRAK_PLOT_H
#define JTRAK_PLOT_H

#include <stdint.h>

#include "core/common.h"

enum { PLOT_MAX_SERIES = 10 };

typedef struct {
    const char *name;    /* legend text, e.g. "journey"; NULL or "" = "series <i>" */
    int n;               /* points */
    const double *x, *y; /* (n); a non-finite y is a missing point: no marker, a gap in the line */
    const double *lo, *hi; /* (n) or NULL: a confidence interval, drawn as a vertical error bar
                              (none where y or either bound is non-finite) */
    int dashed;            /* 1: dashed line (e.g. the noise ceiling) */
} PlotSeries;

typedef struct {
    const char *title, *xlabel, *ylabel; /* NULL or "": not drawn */
    double ymin, ymax; /* NaN: automatic (the range of y and of the intervals, including 0,
                          padded by 5%); each bound independently */
    int reverse_x;     /* 1: x decreases to the right (diffusion steps 900 -> 0) */
    int width, height; /* pixels; 0 = 800 x 500 (each independently) */
} PlotOptions;

/* Options with no title or labels, automatic y range, x increasing, 800 x 500. */
PlotOptions plot_options_default(void);

/* Writes the plot to path (PNG, RGB). Returns JT_ERR with err naming path and the problem for:
 * no series or more than PLOT_MAX_SERIES, a series with n < 1, a non-finite x, a non-finite or
 * empty y range, a size outside [320, 8192] x [200, 8192], an unwritable path. Nothing is left at
 * path (or beside it) on failure. */
int plot_write_png(const char *path, const PlotSeries *s, int n_series, const PlotOptions *o,
                   JtError *err);

/* Where everything lands: computed from the data and the options alone, so that tests (and
 * callers) can find a point's pixel. Pixel bounds are inclusive. */
typedef struct {
    int width, height;             /* image */
    int scale;                     /* font scale (1 at 400 x 250, 2 at 800 x 500) */
    int x0, y0, x1, y1;            /* plot area: left, top, right, bottom */
    double xmin, xmax, ymin, ymax; /* data range of the area (xmin at x0 unless reverse_x) */
    int reverse_x;
    double xstep, ystep;                            /* tick spacing (ticks at integer multiples) */
    int legend_x0, legend_y0, legend_x1, legend_y1; /* legend box */
    int legend_inside;                              /* 1: inside the plot area; 0: right of it */
} PlotLayout;

/* Validates the input (messages as plot_write_png's, without the path) and fills L. */
int plot_layout(PlotLayout *L, const PlotSeries *s, int n_series, const PlotOptions *o,
                JtError *err);
/* Pixel column / row of a data value (rounded; values far outside the area are clamped to a
 * few thousand pixels beyond it). */
int plot_x_to_px(const PlotLayout *L, double x);
int plot_y_to_px(const PlotLayout *L, double y);
/* Palette colour of series i (0 <= i < PLOT_MAX_SERIES). */
void plot_series_color(int i, uint8_t rgb[3]);

/* font5x7.c: printable ASCII 32..126 (anything else draws as '?'), cell PLOT_FONT_W x PLOT_FONT_H
 * (PLOT_FONT_ASCENT rows down to the baseline, the rest for descenders), PLOT_FONT_ADVANCE
 * columns per character; everything scales by the integer k. */
enum { PLOT_FONT_W = 5, PLOT_FONT_H = 9, PLOT_FONT_ASCENT = 7, PLOT_FONT_ADVANCE = 6 };
/* The PLOT_FONT_H rows of c's glyph, bit PLOT_FONT_W - 1 = leftmost column. */
const uint8_t *plot_font_glyph(char c);
/* Width in pixels of s at scale k (no trailing spacing). */
int plot_font_width(const char *s, int k);
/* Draws s into rgb (height, width, 3) with the top-left of its cell at (x, y), clipped to the
 * image. */
void plot_font_draw(uint8_t *rgb, int width, int height, int x, int y, const char *s, int k,
                    const uint8_t color[3]);
/* The same turned a quarter turn counterclockwise (reads bottom to top): the text fills a box
 * PLOT_FONT_H * k wide and plot_font_width(s, k) tall with its top-left at (x, y). */
void plot_font_draw_up(uint8_t *rgb, int width, int height, int x, int y, const char *s, int k,
                       const uint8_t color[3]);

#endif
