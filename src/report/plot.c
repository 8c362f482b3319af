/* plot.c: see plot.h. The layout is computed first (plot_layout: margins from the font size and
 * the tick labels, tick steps from the 1-2-2.5-5 sequence, the legend in the emptiest place of the
 * plot area or, when each would cover data, to the right of it); drawing then goes grid,
 * zero line, error bars, lines, markers (each over all series, so that markers stay on top),
 * legend, frame, ticks and text. Lines are Bresenham's with a square brush, clipped beforehand to
 * the plot area (Liang-Barsky) so that far-off points cost nothing and keep their slope. */
#include "report/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/png.h"

/* Okabe & Ito's colour-blind-safe palette (its yellow left out: unreadable on white), then three
 * dark colours from Paul Tol's "muted" scheme to reach PLOT_MAX_SERIES. */
static const uint8_t PALETTE[PLOT_MAX_SERIES][3] = {
    {0, 114, 178},   /* blue */
    {213, 94, 0},    /* vermillion */
    {0, 158, 115},   /* bluish green */
    {204, 121, 167}, /* reddish purple */
    {230, 159, 0},   /* orange */
    {86, 180, 233},  /* sky blue */
    {0, 0, 0},       /* black */
    {136, 34, 85},   /* wine */
    {153, 153, 51},  /* olive */
    {51, 34, 136},   /* indigo */
};
static const uint8_t WHITE[3] = {255, 255, 255};
static const uint8_t INK[3] = {40, 40, 40}; /* axes and text: not a series colour */
static const uint8_t GRID[3] = {232, 232, 232};
static const uint8_t ZERO_LINE[3] = {150, 150, 150};
static const uint8_t LEGEND_FRAME[3] = {175, 175, 175};

enum { NAME_MAX_CHARS = 32, MIN_W = 320, MIN_H = 200, MAX_SIDE = 8192 };

void plot_series_color(int i, uint8_t rgb[3]) {
    CHECK(i >= 0 && i < PLOT_MAX_SERIES, "series colour %d", i);
    memcpy(rgb, PALETTE[i], 3);
}

PlotOptions plot_options_default(void) {
    PlotOptions o = {NULL, NULL, NULL, NAN, NAN, 0, 0, 0};
    return o;
}

static int has_text(const char *s) {
    return s && s[0];
}

/* The legend text of series i, cut to NAME_MAX_CHARS. */
static void series_name(const PlotSeries *s, int i, char *buf, size_t cap) {
    if (has_text(s->name))
        snprintf(buf, cap, "%s", s->name);
    else
        snprintf(buf, cap, "series %d", i);
    if (strlen(buf) > NAME_MAX_CHARS) strcpy(buf + NAME_MAX_CHARS - 2, "..");
}

/* ---- layout ---- */

/* Smallest step of the 1, 2, 2.5, 5 x 10^e sequence that is >= raw (> 0). */
static double nice_step(double raw) {
    double mag = pow(10.0, floor(log10(raw)));
    static const double M[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    for (int i = 0; i < 5; i++)
        if (M[i] * mag >= raw * (1.0 - 1e-12)) return M[i] * mag;
    return 10.0 * mag;
}

/* Tick label of value v on a grid of spacing step: as many decimals as step needs. */
static void tick_label(double v, double step, char *buf, size_t cap) {
    if (fabs(v) < step * 1e-9) v = 0.0; /* no "-0" from i * step rounding */
    int d = 0;
    while (d < 9 &&
           fabs(step * pow(10.0, d) - nearbyint(step * pow(10.0, d))) > 1e-6 * step * pow(10.0, d))
        d++;
    if (fabs(v) >= 1e7 || d > 6)
        snprintf(buf, cap, "%.4g", v);
    else
        snprintf(buf, cap, "%.*f", d, v);
}

/* Widest tick label over the ticks of [lo, hi] at spacing step. */
static int widest_tick_label(double lo, double hi, double step, int k) {
    char buf[64];
    int w = 0;
    for (double i = ceil(lo / step - 1e-9); i <= floor(hi / step + 1e-9); i++) {
        tick_label(i * step, step, buf, sizeof buf);
        int t = plot_font_width(buf, k);
        if (t > w) w = t;
    }
    return w;
}

static double x_to_d(const PlotLayout *L, double x) {
    double f = (x - L->xmin) / (L->xmax - L->xmin);
    if (L->reverse_x) f = 1.0 - f;
    return L->x0 + f * (L->x1 - L->x0);
}

static double y_to_d(const PlotLayout *L, double y) {
    return L->y1 - (y - L->ymin) / (L->ymax - L->ymin) * (L->y1 - L->y0);
}

static int clamp_px(double v, int size) {
    double lim = 4.0 * size + 4096.0;
    if (v < -lim) v = -lim;
    if (v > lim) v = lim;
    return (int)floor(v + 0.5);
}

int plot_x_to_px(const PlotLayout *L, double x) {
    return clamp_px(x_to_d(L, x), L->width);
}

int plot_y_to_px(const PlotLayout *L, double y) {
    return clamp_px(y_to_d(L, y), L->height);
}

static int spacing(int k) {
    return 4 * k;
}
static int tick_len(int k) {
    return 2 * k + 1;
}
static int marker_r(int k) {
    return k + 2;
}
static int line_w(int k) {
    return k;
}
static int swatch_len(int k) {
    return 16 * k;
}
static int legend_row_h(int k) {
    return (PLOT_FONT_H + 2) * k;
}

/* Sets x1 from the right margin, then the x tick step: about one tick per 50k pixels, widened
 * until the labels have room between them. */
static void layout_x(PlotLayout *L, int right) {
    int k = L->scale, pad = spacing(k);
    L->x1 = L->width - 1 - right;
    int pw = L->x1 - L->x0;
    double range = L->xmax - L->xmin;
    double target = pw / (50.0 * k) < 2.0 ? 2.0 : pw / (50.0 * k);
    double step = nice_step(range / target);
    for (int guard = 0; guard < 20; guard++) {
        int lw = widest_tick_label(L->xmin, L->xmax, step, k);
        if ((lw + 2 * pad) * (range / step) <= pw) break;
        step = nice_step(step * 1.0001);
    }
    L->xstep = step;
}

/* The legend's size for these series at scale k. */
static void legend_size(const PlotSeries *s, int n_series, int k, int *w, int *h) {
    int pad = spacing(k), name_w = 0;
    char buf[NAME_MAX_CHARS + 8];
    for (int i = 0; i < n_series; i++) {
        series_name(&s[i], i, buf, sizeof buf);
        int t = plot_font_width(buf, k);
        if (t > name_w) name_w = t;
    }
    *w = pad + swatch_len(k) + pad + name_w + pad;
    *h = pad + n_series * legend_row_h(k) + pad / 2;
}

/* How much of the data (markers weigh 16, line and error-bar samples every 2 px weigh 1) falls in
 * each of the n rectangles r[i] = {x0, y0, x1, y1}. */
static void legend_overlap(const PlotLayout *L, const PlotSeries *s, int n_series,
                           const int (*r)[4], int n, long *score) {
    for (int i = 0; i < n; i++)
        score[i] = 0;
#define HIT(px, py, wgt)                                                                           \
    for (int c = 0; c < n; c++)                                                                    \
        if ((px) >= r[c][0] && (px) <= r[c][2] && (py) >= r[c][1] && (py) <= r[c][3])              \
            score[c] += (wgt);
    for (int si = 0; si < n_series; si++) {
        const PlotSeries *S = &s[si];
        for (int j = 0; j < S->n; j++) {
            if (!isfinite(S->y[j])) continue;
            double px = x_to_d(L, S->x[j]), py = y_to_d(L, S->y[j]);
            HIT(px, py, 16);
            if (S->lo && S->hi && isfinite(S->lo[j]) && isfinite(S->hi[j])) {
                double a = y_to_d(L, S->lo[j]), b = y_to_d(L, S->hi[j]);
                int m = (int)fmin(fabs(b - a) / 2.0, 4096.0);
                for (int t = 0; t <= m; t++) {
                    double qy = a + (b - a) * (m ? (double)t / m : 0.0);
                    HIT(px, qy, 1);
                }
            }
            if (j + 1 < S->n && isfinite(S->y[j + 1])) {
                double qx1 = x_to_d(L, S->x[j + 1]), qy1 = y_to_d(L, S->y[j + 1]);
                int m = (int)fmin(hypot(qx1 - px, qy1 - py) / 2.0, 4096.0);
                for (int t = 1; t <= m; t++) {
                    double f = (double)t / m;
                    HIT(px + (qx1 - px) * f, py + (qy1 - py) * f, 1);
                }
            }
        }
    }
#undef HIT
}

static int check_input(const PlotSeries *s, int n_series, const PlotOptions *o, JtError *err) {
    if (n_series < 1) return jt_fail(err, "no series to plot");
    if (n_series > PLOT_MAX_SERIES)
        return jt_fail(err, "%d series to plot; at most %d can be told apart by colour", n_series,
                       PLOT_MAX_SERIES);
    CHECK(s != NULL, "plot: NULL series");
    for (int i = 0; i < n_series; i++) {
        char name[NAME_MAX_CHARS + 8];
        series_name(&s[i], i, name, sizeof name);
        if (s[i].n < 1)
            return jt_fail(err, "series %d (\"%s\") has no points (n = %d)", i, name, s[i].n);
        CHECK(s[i].x != NULL && s[i].y != NULL, "plot: series %d without x or y", i);
        CHECK((s[i].lo == NULL) == (s[i].hi == NULL), "plot: series %d has only one bound", i);
        for (int j = 0; j < s[i].n; j++)
            if (!isfinite(s[i].x[j]))
                return jt_fail(err, "series %d (\"%s\"): x[%d] = %g is not finite", i, name, j,
                               s[i].x[j]);
    }
    int w = o->width ? o->width : 800, h = o->height ? o->height : 500;
    if (w < MIN_W || h < MIN_H || w > MAX_SIDE || h > MAX_SIDE)
        return jt_fail(err, "image size %d x %d is outside [%d, %d] x [%d, %d]", w, h, MIN_W,
                       MAX_SIDE, MIN_H, MAX_SIDE);
    if (isinf(o->ymin) || isinf(o->ymax))
        return jt_fail(err, "y range [%g, %g] is not finite (NaN = automatic)", o->ymin, o->ymax);
    if (!isnan(o->ymin) && !isnan(o->ymax) && !(o->ymin < o->ymax))
        return jt_fail(err, "y range [%g, %g] is empty", o->ymin, o->ymax);
    return JT_OK;
}

int plot_layout(PlotLayout *L, const PlotSeries *s, int n_series, const PlotOptions *opt,
                JtError *err) {
    PlotOptions dflt = plot_options_default();
    const PlotOptions *o = opt ? opt : &dflt;
    if (check_input(s, n_series, o, err) != JT_OK) return JT_ERR;
    memset(L, 0, sizeof *L);
    L->width = o->width ? o->width : 800;
    L->height = o->height ? o->height : 500;
    L->reverse_x = o->reverse_x != 0;
    int k = L->width / 400 < L->height / 250 ? L->width / 400 : L->height / 250;
    if (k < 1) k = 1;
    L->scale = k;
    const int pad = spacing(k), cell = PLOT_FONT_H * k, tl = tick_len(k);

    /* Data ranges. x: padded by 3% so that edge markers clear the frame. */
    double xlo = INFINITY, xhi = -INFINITY, ylo = 0.0, yhi = 0.0; /* y includes 0 */
    for (int i = 0; i < n_series; i++)
        for (int j = 0; j < s[i].n; j++) {
            xlo = fmin(xlo, s[i].x[j]);
            xhi = fmax(xhi, s[i].x[j]);
            if (!isfinite(s[i].y[j])) continue; /* a missing point's interval is not drawn */
            double v[3] = {s[i].y[j], s[i].lo ? s[i].lo[j] : NAN, s[i].hi ? s[i].hi[j] : NAN};
            for (int t = 0; t < 3; t++)
                if (isfinite(v[t])) {
                    ylo = fmin(ylo, v[t]);
                    yhi = fmax(yhi, v[t]);
                }
        }
    double xspan = xhi - xlo, xpad = xspan > 0 ? 0.03 * xspan : fmax(fabs(xlo) * 0.1, 1.0);
    L->xmin = xlo - xpad;
    L->xmax = xhi + xpad;
    double yspan = yhi - ylo, ypad = yspan > 0 ? 0.05 * yspan : 1.0;
    L->ymin = isnan(o->ymin) ? ylo - ypad : o->ymin;
    L->ymax = isnan(o->ymax) ? yhi + ypad : o->ymax;
    if (!(L->ymax > L->ymin)) { /* one bound given, on the far side of the data */
        double d = fmax(fabs(isnan(o->ymin) ? L->ymax : L->ymin) * 0.1, 1.0);
        if (isnan(o->ymin))
            L->ymin = L->ymax - d;
        else
            L->ymax = L->ymin + d;
    }
    if (!isfinite(L->xmax - L->xmin) || !isfinite(L->ymax - L->ymin))
        return jt_fail(err, "the data span [%g, %g] x [%g, %g], too wide to plot", L->xmin, L->xmax,
                       L->ymin, L->ymax);

    /* Vertical margins: title above; tick labels and the x label below. */
    int top = 2 * pad + (has_text(o->title) ? PLOT_FONT_H * (k + 1) + pad : pad);
    int bottom = tl + pad / 2 + cell + (has_text(o->xlabel) ? pad + cell : 0) + pad;
    L->y0 = top;
    L->y1 = L->height - 1 - bottom;
    int ph = L->y1 - L->y0;

    /* y ticks (about one per 28k pixels), then the left margin that their labels need. */
    double target = ph / (28.0 * k) < 2.0 ? 2.0 : ph / (28.0 * k);
    L->ystep = nice_step((L->ymax - L->ymin) / target);
    int ylw = widest_tick_label(L->ymin, L->ymax, L->ystep, k);
    L->x0 = 2 * pad + (has_text(o->ylabel) ? cell + pad : 0) + ylw + pad / 2 + tl;

    /* Legend: the emptiest place in the plot area, trying the corners, the middles of the right,
     * left, top and bottom edges and the centre first, then every 4k rows down the right, left
     * and middle columns (ties go to the earlier); if each place would come within 2k pixels of
     * a marker or a line, right of the area. */
    int lw, lh;
    legend_size(s, n_series, k, &lw, &lh);
    layout_x(L, pad + 2 * PLOT_FONT_ADVANCE * k);
    int m = 2 * pad, best = -1, nc = 0;
    int(*r)[4] = NULL;
    if (lw + 2 * m <= L->x1 - L->x0 && lh + 2 * m <= ph) {
        int xl = L->x0 + m, xr = L->x1 - m - lw + 1, xc = (L->x0 + L->x1 - lw) / 2;
        int yt = L->y0 + m, yb = L->y1 - m - lh + 1, yc = (L->y0 + L->y1 - lh) / 2;
        int rows = (yb - yt) / (4 * k) + 1;
        r = xmalloc(sizeof *r * (size_t)(9 + 3 * rows));
        const int at[9][2] = {{xr, yt}, {xl, yt}, {xr, yb}, {xl, yb}, {xr, yc},
                              {xl, yc}, {xc, yt}, {xc, yb}, {xc, yc}};
        for (int c = 0; c < 9; c++, nc++) {
            r[nc][0] = at[c][0];
            r[nc][1] = at[c][1];
        }
        for (int row = 0; row < rows; row++)
            for (int col = 0; col < 3; col++, nc++) {
                r[nc][0] = col == 0 ? xr : col == 1 ? xl : xc;
                r[nc][1] = yt + row * 4 * k;
            }
        int(*grown)[4] = xmalloc(sizeof *grown * (size_t)nc), clear = marker_r(k) + 1 + 2 * k;
        for (int c = 0; c < nc; c++) {
            r[c][2] = r[c][0] + lw - 1;
            r[c][3] = r[c][1] + lh - 1;
            for (int e = 0; e < 4; e++)
                grown[c][e] = r[c][e] + (e < 2 ? -clear : clear);
        }
        long *score = xmalloc(sizeof *score * (size_t)nc);
        legend_overlap(L, s, n_series, (const int(*)[4])grown, nc, score);
        for (int c = 0; c < nc; c++)
            if (best < 0 || score[c] < score[best]) best = c;
        int right_outside = 2 * pad + lw + pad;
        if (score[best] > 0 && L->width - right_outside - L->x0 >= L->width / 3) best = -1;
        free(score);
        free(grown);
    }
    if (best >= 0) {
        L->legend_inside = 1;
        L->legend_x0 = r[best][0];
        L->legend_y0 = r[best][1];
        L->legend_x1 = r[best][2];
        L->legend_y1 = r[best][3];
    } else {
        layout_x(L, 2 * pad + lw + pad);
        L->legend_inside = 0;
        L->legend_x0 = L->x1 + 2 * pad;
        L->legend_y0 = L->y0;
        L->legend_x1 = L->legend_x0 + lw - 1;
        L->legend_y1 = L->legend_y0 + lh - 1;
    }
    free(r);
    return JT_OK;
}

/* ---- drawing ---- */

typedef struct {
    uint8_t *rgb; /* (h, w, 3) */
    int w, h;
    int cx0, cy0, cx1, cy1; /* clip rectangle, inclusive */
} Canvas;

static void clip_all(Canvas *cv) {
    cv->cx0 = 0;
    cv->cy0 = 0;
    cv->cx1 = cv->w - 1;
    cv->cy1 = cv->h - 1;
}

static void clip_area(Canvas *cv, const PlotLayout *L) {
    cv->cx0 = L->x0;
    cv->cy0 = L->y0;
    cv->cx1 = L->x1;
    cv->cy1 = L->y1;
}

static void dot(Canvas *cv, int x, int y, const uint8_t c[3]) {
    if (x < cv->cx0 || x > cv->cx1 || y < cv->cy0 || y > cv->cy1) return;
    memcpy(cv->rgb + ((size_t)y * (size_t)cv->w + (size_t)x) * 3, c, 3);
}

static void rect(Canvas *cv, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            dot(cv, x, y, c);
}

/* Liang-Barsky: clips the segment (ax, ay) -> (bx, by) to [x0, x1] x [y0, y1]; 0 if nothing is
 * left. */
static int clip_segment(double *ax, double *ay, double *bx, double *by, double x0, double y0,
                        double x1, double y1) {
    double dx = *bx - *ax, dy = *by - *ay, t0 = 0.0, t1 = 1.0;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {*ax - x0, x1 - *ax, *ay - y0, y1 - *ay};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0.0) {
            if (q[i] < 0.0) return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0.0) {
            if (t > t1) return 0;
            if (t > t0) t0 = t;
        } else {
            if (t < t0) return 0;
            if (t < t1) t1 = t;
        }
    }
    double sx = *ax, sy = *ay;
    *ax = sx + t0 * dx;
    *ay = sy + t0 * dy;
    *bx = sx + t1 * dx;
    *by = sy + t1 * dy;
    return 1;
}

/* A line of thickness thick (a square brush) from (ax, ay) to (bx, by), in pixel coordinates.
 * dash_on > 0: dashes of dash_on pixels on, dash_off off, continued through *phase. */
static void line(Canvas *cv, double ax, double ay, double bx, double by, int thick,
                 const uint8_t c[3], int dash_on, int dash_off, long *phase) {
    double m = thick + 2.0;
    if (!clip_segment(&ax, &ay, &bx, &by, cv->cx0 - m, cv->cy0 - m, cv->cx1 + m, cv->cy1 + m))
        return;
    int x = (int)floor(ax + 0.5), y = (int)floor(ay + 0.5);
    int xe = (int)floor(bx + 0.5), ye = (int)floor(by + 0.5);
    int dx = abs(xe - x), dy = -abs(ye - y), sx = x < xe ? 1 : -1, sy = y < ye ? 1 : -1;
    int e = dx + dy, lo = -(thick - 1) / 2, hi = thick / 2;
    long local = 0, *ph = phase ? phase : &local;
    for (;;) {
        if (dash_on <= 0 || *ph % (dash_on + dash_off) < dash_on)
            rect(cv, x + lo, y + lo, x + hi, y + hi, c);
        if (x == xe && y == ye) break;
        (*ph)++;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y += sy;
        }
    }
}

/* Marker shapes, cycled over the series so that they differ in more than colour: circle, square,
 * diamond, triangle up, triangle down. */
static int in_marker(int shape, int dx, int dy, int r) {
    switch (shape % 5) {
    case 0:
        return dx * dx + dy * dy <= r * r + r;
    case 1:
        return abs(dx) < r && abs(dy) < r;
    case 2:
        return abs(dx) + abs(dy) <= r + 1;
    case 3:
        return dy >= -r && dy < r && abs(dx) * 5 <= (dy + r) * 3;
    default:
        return -dy >= -r && -dy < r && abs(dx) * 5 <= (-dy + r) * 3;
    }
}

/* A filled marker centred on (x, y) with a one-pixel white rim. */
static void marker(Canvas *cv, int x, int y, int shape, int r, const uint8_t c[3]) {
    for (int dy = -r - 1; dy <= r + 1; dy++)
        for (int dx = -r - 1; dx <= r + 1; dx++) {
            if (in_marker(shape, dx, dy, r))
                dot(cv, x + dx, y + dy, c);
            else if (in_marker(shape, dx, dy, r + 1))
                dot(cv, x + dx, y + dy, WHITE);
        }
}

/* A vertical error bar at column x from row ya to row yb, caps cap_half pixels each side. */
static void error_bar(Canvas *cv, double x, double ya, double yb, int cap_half, int thick,
                      const uint8_t c[3]) {
    line(cv, x, ya, x, yb, thick, c, 0, 0, NULL);
    line(cv, x - cap_half, ya, x + cap_half, ya, thick, c, 0, 0, NULL);
    line(cv, x - cap_half, yb, x + cap_half, yb, thick, c, 0, 0, NULL);
}

static void text(Canvas *cv, int x, int y, const char *s, int k, const uint8_t c[3]) {
    plot_font_draw(cv->rgb, cv->w, cv->h, x, y, s, k, c);
}

/* Text centred on column cx, kept inside the image where it fits. */
static void text_centred(Canvas *cv, int cx, int y, const char *s, int k, const uint8_t c[3]) {
    int w = plot_font_width(s, k), x = cx - w / 2;
    if (x + w > cv->w) x = cv->w - w;
    if (x < 0) x = 0;
    text(cv, x, y, s, k, c);
}

static void draw_series(Canvas *cv, const PlotLayout *L, const PlotSeries *s, int n_series) {
    int k = L->scale, r = marker_r(k);
    uint8_t c[3];
    clip_area(cv, L);
    for (int i = 0; i < n_series; i++) { /* error bars under everything */
        if (!s[i].lo) continue;
        plot_series_color(i, c);
        for (int j = 0; j < s[i].n; j++)
            if (isfinite(s[i].y[j]) && isfinite(s[i].lo[j]) && isfinite(s[i].hi[j]))
                error_bar(cv, plot_x_to_px(L, s[i].x[j]), y_to_d(L, s[i].lo[j]),
                          y_to_d(L, s[i].hi[j]), r + 1, k > 1 ? k - 1 : 1, c);
    }
    for (int i = 0; i < n_series; i++) {
        plot_series_color(i, c);
        long phase = 0;
        for (int j = 0; j + 1 < s[i].n; j++) {
            if (!isfinite(s[i].y[j]) || !isfinite(s[i].y[j + 1])) continue;
            line(cv, x_to_d(L, s[i].x[j]), y_to_d(L, s[i].y[j]), x_to_d(L, s[i].x[j + 1]),
                 y_to_d(L, s[i].y[j + 1]), line_w(k), c, s[i].dashed ? 6 * k : 0, 4 * k, &phase);
        }
    }
    for (int i = 0; i < n_series; i++) {
        plot_series_color(i, c);
        for (int j = 0; j < s[i].n; j++)
            if (isfinite(s[i].y[j]))
                marker(cv, plot_x_to_px(L, s[i].x[j]), plot_y_to_px(L, s[i].y[j]), i, r, c);
    }
}

static void draw_legend(Canvas *cv, const PlotLayout *L, const PlotSeries *s, int n_series) {
    int k = L->scale, pad = spacing(k), r = marker_r(k);
    clip_all(cv);
    rect(cv, L->legend_x0, L->legend_y0, L->legend_x1, L->legend_y1, LEGEND_FRAME);
    rect(cv, L->legend_x0 + 1, L->legend_y0 + 1, L->legend_x1 - 1, L->legend_y1 - 1, WHITE);
    for (int i = 0; i < n_series; i++) {
        uint8_t c[3];
        char name[NAME_MAX_CHARS + 8];
        plot_series_color(i, c);
        series_name(&s[i], i, name, sizeof name);
        int top = L->legend_y0 + pad + i * legend_row_h(k);
        int cy = top + PLOT_FONT_ASCENT * k / 2, sx = L->legend_x0 + pad;
        long phase = 0;
        line(cv, sx, cy, sx + swatch_len(k) - 1, cy, line_w(k), c, s[i].dashed ? 6 * k : 0, 4 * k,
             &phase);
        if (s[i].lo) error_bar(cv, sx + swatch_len(k) / 2, cy - 3 * k, cy + 3 * k, r + 1, 1, c);
        marker(cv, sx + swatch_len(k) / 2, cy, i, r, c);
        text(cv, sx + swatch_len(k) + pad, top, name, k, INK);
    }
}

static void draw_axes(Canvas *cv, const PlotLayout *L, const PlotOptions *o) {
    int k = L->scale, pad = spacing(k), tl = tick_len(k), asc = PLOT_FONT_ASCENT * k;
    int fw = k > 2 ? k / 2 : 1; /* frame width */
    char buf[64];
    clip_all(cv);
    rect(cv, L->x0 - fw, L->y0 - fw, L->x1 + fw, L->y0 - 1, INK);
    rect(cv, L->x0 - fw, L->y1 + 1, L->x1 + fw, L->y1 + fw, INK);
    rect(cv, L->x0 - fw, L->y0, L->x0 - 1, L->y1, INK);
    rect(cv, L->x1 + 1, L->y0, L->x1 + fw, L->y1, INK);
    double lo = fmin(L->xmin, L->xmax), hi = fmax(L->xmin, L->xmax);
    for (double i = ceil(lo / L->xstep - 1e-9); i <= floor(hi / L->xstep + 1e-9); i++) {
        int px = plot_x_to_px(L, i * L->xstep);
        rect(cv, px - (fw - 1) / 2, L->y1 + fw, px + fw / 2, L->y1 + fw + tl - 1, INK);
        tick_label(i * L->xstep, L->xstep, buf, sizeof buf);
        text_centred(cv, px, L->y1 + fw + tl + pad / 2, buf, k, INK);
    }
    for (double i = ceil(L->ymin / L->ystep - 1e-9); i <= floor(L->ymax / L->ystep + 1e-9); i++) {
        int py = plot_y_to_px(L, i * L->ystep);
        rect(cv, L->x0 - fw - tl + 1, py - (fw - 1) / 2, L->x0 - fw, py + fw / 2, INK);
        tick_label(i * L->ystep, L->ystep, buf, sizeof buf);
        text(cv, L->x0 - fw - tl - pad / 2 - plot_font_width(buf, k), py - asc / 2, buf, k, INK);
    }
    int cx = (L->x0 + L->x1) / 2;
    if (has_text(o->title)) text_centred(cv, cx, 2 * pad, o->title, k + 1, INK);
    if (has_text(o->xlabel))
        text_centred(cv, cx, L->y1 + fw + tl + pad / 2 + PLOT_FONT_H * k + pad, o->xlabel, k, INK);
    if (has_text(o->ylabel)) {
        int len = plot_font_width(o->ylabel, k), y = (L->y0 + L->y1) / 2 - len / 2;
        if (y + len > cv->h) y = cv->h - len;
        if (y < 0) y = 0;
        plot_font_draw_up(cv->rgb, cv->w, cv->h, 2 * pad, y, o->ylabel, k, INK);
    }
}

int plot_write_png(const char *path, const PlotSeries *s, int n_series, const PlotOptions *opt,
                   JtError *err) {
    PlotOptions dflt = plot_options_default();
    const PlotOptions *o = opt ? opt : &dflt;
    PlotLayout L;
    JtError e;
    if (plot_layout(&L, s, n_series, o, &e) != JT_OK) return jt_fail(err, "%s: %s", path, e.msg);
    size_t n = (size_t)L.width * (size_t)L.height * 3;
    Canvas cv = {xmalloc(n), L.width, L.height, 0, 0, 0, 0};
    memset(cv.rgb, 255, n);
    int k = L.scale;

    clip_area(&cv, &L);
    double lo = fmin(L.xmin, L.xmax), hi = fmax(L.xmin, L.xmax);
    for (double i = ceil(lo / L.xstep - 1e-9); i <= floor(hi / L.xstep + 1e-9); i++) {
        int px = plot_x_to_px(&L, i * L.xstep);
        rect(&cv, px, L.y0, px, L.y1, GRID);
    }
    for (double i = ceil(L.ymin / L.ystep - 1e-9); i <= floor(L.ymax / L.ystep + 1e-9); i++) {
        int py = plot_y_to_px(&L, i * L.ystep);
        rect(&cv, L.x0, py, L.x1, py, GRID);
    }
    if (L.ymin < 0.0 && L.ymax > 0.0) {
        double py = plot_y_to_px(&L, 0.0);
        line(&cv, L.x0, py, L.x1, py, k > 2 ? k / 2 : 1, ZERO_LINE, 4 * k, 3 * k, NULL);
    }
    draw_series(&cv, &L, s, n_series);
    draw_legend(&cv, &L, s, n_series);
    draw_axes(&cv, &L, o);

    int rc = png_write_rgb(path, cv.rgb, L.width, L.height, err);
    free(cv.rgb);
    return rc;
}
