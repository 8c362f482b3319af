/* test_plot.c: the PNG line plots of src/report/plot.c and their 5x7 font (font5x7.c). A plot of
 * three series (a solid one, one with confidence intervals and a NaN gap, a dashed one) is written
 * into a mkdtemp() folder and read back with stb_image: its size, each palette colour inside the
 * plot area, a marker at the pixel that the layout's axis mapping gives for every point, the gap
 * (no line, marker or error bar at the missing point), error bars and caps, solid against dashed
 * lines, and reverse_x mirroring the mapping and the markers. The font: 'A' and 'B' differ, a
 * space is blank, every other printable glyph has ink and no two are the same, the rotated
 * drawing is the upright one turned. Bad input (no series, an empty series, a non-finite x, too
 * many series, an empty y range, a bad size, an unwritable path) gives JT_ERR naming the problem
 * and the path, and leaves the folder empty. */
#include "helpers/tmpdir.h"
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "report/plot.h"


TestSuite(plot, .init = test_tmp_setup, .fini = test_tmp_teardown);

static int count_entries(const char *path) {
    DIR *dir = opendir(path);
    cr_assert_not_null(dir, "cannot open %s", path);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(dir);
    return n;
}

/* ---- the three-series plot ---- */

enum { NP = 6 };
static const double X[NP] = {0, 100, 200, 300, 400, 500};
static const double YA[NP] = {0.10, 0.12, 0.14, 0.16, 0.18, 0.20};
static double YB[NP] = {0.40, 0.42, 0 /* NaN, set in series() */, 0.46, 0.48, 0.50};
static double LO[NP], HI[NP];
static const double YC[NP] = {0.8, 0.8, 0.8, 0.8, 0.8, 0.8};
enum { GAP = 2 }; /* the missing point of series 1 */

static void series(PlotSeries s[3]) {
    YB[GAP] = NAN;
    for (int j = 0; j < NP; j++) {
        LO[j] = YB[j] - 0.03;
        HI[j] = YB[j] + 0.03;
    }
    LO[GAP] = 0.41; /* an interval at the missing point: must not be drawn */
    HI[GAP] = 0.47;
    s[0] = (PlotSeries){"journey", NP, X, YA, NULL, NULL, 0};
    s[1] = (PlotSeries){"trak", NP, X, YB, LO, HI, 0};
    s[2] = (PlotSeries){"noise ceiling", NP, X, YC, NULL, NULL, 1};
}

static PlotOptions options(int reverse_x) {
    PlotOptions o = plot_options_default();
    o.title = "LDS against t";
    o.xlabel = "step t";
    o.ylabel = "LDS";
    o.reverse_x = reverse_x;
    return o;
}

typedef struct {
    unsigned char *pix; /* (h, w, 3) */
    int w, h;
    PlotLayout L;
} Image;

/* Writes the three-series plot to name in test_tmp and reads it back, with its layout. */
static Image render(const char *name, int reverse_x) {
    PlotSeries s[3];
    series(s);
    PlotOptions o = options(reverse_x);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmp, name);
    JtError err;
    cr_assert_eq(plot_write_png(path, s, 3, &o, &err), JT_OK, "%s", err.msg);
    Image im;
    cr_assert_eq(plot_layout(&im.L, s, 3, &o, &err), JT_OK, "%s", err.msg);
    int comp;
    im.pix = stbi_load(path, &im.w, &im.h, &comp, 3);
    cr_assert_not_null(im.pix, "stb_image cannot read %s", path);
    return im;
}

static int is_color(const Image *im, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return 0;
    const unsigned char *p = im->pix + ((size_t)y * (size_t)im->w + (size_t)x) * 3;
    return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

/* Whether colour c is within d pixels (Chebyshev) of (x, y): lines are rasterised from rounded
 * end points with a 2-pixel brush, so a point on the ideal line lies within 1 pixel of ink. */
static int color_near(const Image *im, int x, int y, int d, const uint8_t c[3]) {
    for (int dy = -d; dy <= d; dy++)
        for (int dx = -d; dx <= d; dx++)
            if (is_color(im, x + dx, y + dy, c)) return 1;
    return 0;
}

static int in_legend(const PlotLayout *L, int x, int y) {
    return x >= L->legend_x0 && x <= L->legend_x1 && y >= L->legend_y0 && y <= L->legend_y1;
}

Test(plot, size_and_every_series_colour_in_the_plot_area) {
    Image im = render("lds.png", 0);
    cr_assert_eq(im.w, 800);
    cr_assert_eq(im.h, 500);
    cr_assert(im.L.width == 800 && im.L.height == 500);
    for (int i = 0; i < 3; i++) {
        uint8_t c[3];
        plot_series_color(i, c);
        int n = 0;
        for (int y = im.L.y0; y <= im.L.y1; y++)
            for (int x = im.L.x0; x <= im.L.x1; x++)
                if (!in_legend(&im.L, x, y) && is_color(&im, x, y, c)) n++;
        /* 5 or 6 markers of ~50 pixels each plus ~500 px of 2-px line: far more than 200 */
        cr_assert_gt(n, 200, "series %d: only %d pixels of its colour in the plot area", i, n);
    }
    /* The palette's colours are distinct and none is white or the axis ink. */
    for (int i = 0; i < PLOT_MAX_SERIES; i++) {
        uint8_t a[3];
        plot_series_color(i, a);
        cr_assert(!(a[0] == 255 && a[1] == 255 && a[2] == 255));
        for (int j = 0; j < i; j++) {
            uint8_t b[3];
            plot_series_color(j, b);
            cr_assert(memcmp(a, b, 3) != 0, "colours %d and %d are the same", i, j);
        }
    }
    stbi_image_free(im.pix);
}

Test(plot, axis_mapping_and_markers) {
    Image im = render("lds.png", 0);
    const PlotLayout *L = &im.L;
    /* The mapping: the area's data range lands on its pixel bounds, increasing x to the right,
     * increasing y upwards, and all the data inside the area. */
    cr_assert(L->x0 > 0 && L->x1 < im.w - 1 && L->y0 > 0 && L->y1 < im.h - 1);
    cr_assert_eq(plot_x_to_px(L, L->xmin), L->x0);
    cr_assert_eq(plot_x_to_px(L, L->xmax), L->x1);
    cr_assert_eq(plot_y_to_px(L, L->ymin), L->y1);
    cr_assert_eq(plot_y_to_px(L, L->ymax), L->y0);
    cr_assert(L->xmin < 0 && L->xmax > 500 && L->ymin < 0 && L->ymax > 0.83,
              "range [%g, %g] x [%g, %g] does not hold the data, 0 and the intervals", L->xmin,
              L->xmax, L->ymin, L->ymax);
    cr_assert_lt(plot_x_to_px(L, 100), plot_x_to_px(L, 200));
    cr_assert_gt(plot_y_to_px(L, 0.1), plot_y_to_px(L, 0.2));
    /* Linear: the middle of the data lands halfway between its ends (within rounding). */
    int mid = (plot_x_to_px(L, 0) + plot_x_to_px(L, 500)) / 2;
    cr_assert_leq(abs(plot_x_to_px(L, 250) - mid), 1);

    const double *ys[3] = {YA, YB, YC};
    for (int i = 0; i < 3; i++) {
        uint8_t c[3];
        plot_series_color(i, c);
        for (int j = 0; j < NP; j++) {
            if (isnan(ys[i][j])) continue;
            int px = plot_x_to_px(L, X[j]), py = plot_y_to_px(L, ys[i][j]);
            cr_assert(!in_legend(L, px, py), "series %d point %d is under the legend", i, j);
            cr_assert(is_color(&im, px, py, c), "series %d point %d: (%d, %d) is not its colour", i,
                      j, px, py);
            /* The marker is centred there: its colour reaches 2 px to each side, and (where no
             * error bar rises) not 12 px above, the lines being too flat to pass there. */
            cr_assert(is_color(&im, px - 2, py, c) && is_color(&im, px + 2, py, c) &&
                          is_color(&im, px, py - 2, c) && is_color(&im, px, py + 2, c),
                      "series %d point %d: no marker around (%d, %d)", i, j, px, py);
            if (i != 1) cr_assert(!color_near(&im, px, py - 12, 1, c), "series %d point %d", i, j);
        }
    }
    stbi_image_free(im.pix);
}

Test(plot, nan_is_a_gap_and_intervals_are_error_bars) {
    Image im = render("lds.png", 0);
    const PlotLayout *L = &im.L;
    uint8_t c[3];
    plot_series_color(1, c);
    int r = L->scale + 2; /* marker radius (plot.c's marker_r) */
    /* The missing point: no marker, no line through it, no error bar in its column. */
    int gx = plot_x_to_px(L, X[GAP]);
    for (int y = plot_y_to_px(L, 0.50); y <= plot_y_to_px(L, 0.38); y++)
        cr_assert(!color_near(&im, gx, y, 2, c), "series 1 ink at the gap (%d, %d)", gx, y);
    /* Lines on both sides of the gap are drawn: the midpoint of segment 3-4 has ink. */
    int mx = plot_x_to_px(L, 350), my = plot_y_to_px(L, 0.47);
    cr_assert(color_near(&im, mx, my, 1, c), "no line between points 3 and 4 at (%d, %d)", mx, my);
    /* Error bars at the other points: the bar between the marker and the cap, and each cap
     * reaching r pixels to either side of the bar. */
    for (int j = 0; j < NP; j++) {
        if (j == GAP) continue;
        int px = plot_x_to_px(L, X[j]), py = plot_y_to_px(L, YB[j]);
        int ylo = plot_y_to_px(L, LO[j]), yhi = plot_y_to_px(L, HI[j]);
        cr_assert_gt(ylo - py, r + 3, "interval too short to see past the marker");
        cr_assert(color_near(&im, px, (py + ylo) / 2 + 2, 1, c), "point %d: no bar below", j);
        cr_assert(color_near(&im, px, (py + yhi) / 2 - 2, 1, c), "point %d: no bar above", j);
        for (int side = -1; side <= 1; side += 2) {
            cr_assert(color_near(&im, px + side * r, ylo, 1, c), "point %d: no lower cap", j);
            cr_assert(color_near(&im, px + side * r, yhi, 1, c), "point %d: no upper cap", j);
        }
    }
    stbi_image_free(im.pix);
}

/* Of the samples along the ideal segment (xa, ya) -> (xb, yb) that are clear of the markers, how
 * many have ink of colour c within 1 pixel, out of *n; *gaps: runs of samples without ink. */
static int ink_along(const Image *im, int i, double xa, double ya, double xb, double yb, int *n,
                     int *gaps) {
    const PlotLayout *L = &im->L;
    uint8_t c[3];
    plot_series_color(i, c);
    double ax = plot_x_to_px(L, xa), ay = plot_y_to_px(L, ya);
    double bx = plot_x_to_px(L, xb), by = plot_y_to_px(L, yb);
    double len = hypot(bx - ax, by - ay), clear = L->scale + 5;
    int hits = 0, prev = 1;
    *n = 0;
    *gaps = 0;
    for (double d = clear; d <= len - clear; d += 1.0) {
        int x = (int)lround(ax + (bx - ax) * d / len), y = (int)lround(ay + (by - ay) * d / len);
        int h = color_near(im, x, y, 1, c);
        hits += h;
        *gaps += prev && !h;
        prev = h;
        (*n)++;
    }
    return hits;
}

Test(plot, solid_and_dashed_lines) {
    Image im = render("lds.png", 0);
    int n, gaps, hits;
    for (int j = 0; j + 1 < NP; j++) {
        hits = ink_along(&im, 0, X[j], YA[j], X[j + 1], YA[j + 1], &n, &gaps);
        cr_assert_gt(n, 50);
        cr_assert_eq(hits, n, "solid segment %d: %d of %d samples without ink", j, n - hits, n);
    }
    hits = ink_along(&im, 2, X[0], YC[0], X[NP - 1], YC[NP - 1], &n, &gaps);
    /* Dashes of 6k = 12 px and gaps of 4k = 8 px (less the brush and the 1-px tolerance) along
     * ~440 px: some 20 gaps (markers interrupt a few), mostly ink but not all. */
    cr_assert_geq(gaps, 12, "dashed line: only %d gaps", gaps);
    cr_assert(hits > n / 2 && n - hits > n / 10, "dashed line: %d of %d samples on ink", hits, n);
    stbi_image_free(im.pix);
}

Test(plot, reverse_x_mirrors_the_mapping) {
    Image fwd = render("fwd.png", 0), rev = render("rev.png", 1);
    cr_assert(fwd.L.x0 == rev.L.x0 && fwd.L.x1 == rev.L.x1, "the plot area moved");
    cr_assert(rev.L.reverse_x && !fwd.L.reverse_x);
    cr_assert_eq(plot_x_to_px(&rev.L, rev.L.xmax), rev.L.x0);
    cr_assert_eq(plot_x_to_px(&rev.L, rev.L.xmin), rev.L.x1);
    cr_assert_gt(plot_x_to_px(&rev.L, 0), plot_x_to_px(&rev.L, 500));
    uint8_t c[3];
    plot_series_color(0, c);
    for (int j = 0; j < NP; j++) {
        int pf = plot_x_to_px(&fwd.L, X[j]), pr = plot_x_to_px(&rev.L, X[j]);
        /* Mirrored about the area's centre, to within the rounding of each. */
        cr_assert_leq(abs(pr - (fwd.L.x0 + fwd.L.x1 - pf)), 1, "x = %g: %d vs %d", X[j], pr, pf);
        int py = plot_y_to_px(&rev.L, YA[j]);
        cr_assert(!in_legend(&rev.L, pr, py));
        cr_assert(is_color(&rev, pr, py, c), "reversed: no marker of point %d at (%d, %d)", j, pr,
                  py);
    }
    stbi_image_free(fwd.pix);
    stbi_image_free(rev.pix);
}

Test(plot, default_options_and_one_point) {
    double x = 3.0, y = 0.5;
    PlotSeries s = {NULL, 1, &x, &y, NULL, NULL, 0};
    char path[512];
    snprintf(path, sizeof path, "%s/one.png", test_tmp);
    JtError err;
    cr_assert_eq(plot_write_png(path, &s, 1, NULL, &err), JT_OK, "%s", err.msg);
    int w, h, comp;
    unsigned char *pix = stbi_load(path, &w, &h, &comp, 3);
    cr_assert_not_null(pix);
    cr_assert(w == 800 && h == 500);
    PlotLayout L;
    cr_assert_eq(plot_layout(&L, &s, 1, NULL, &err), JT_OK);
    Image im = {pix, w, h, L};
    uint8_t c[3];
    plot_series_color(0, c);
    cr_assert(is_color(&im, plot_x_to_px(&L, x), plot_y_to_px(&L, y), c));
    stbi_image_free(pix);
}

/* ---- the font ---- */

/* Draws s at scale k into a fresh white w x h image at (1, 1). */
static uint8_t *draw_text(const char *s, int k, int w, int h, int up) {
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    memset(p, 255, (size_t)w * (size_t)h * 3);
    static const uint8_t black[3] = {0, 0, 0};
    if (up)
        plot_font_draw_up(p, w, h, 1, 1, s, k, black);
    else
        plot_font_draw(p, w, h, 1, 1, s, k, black);
    return p;
}

static int ink(const uint8_t *p, int w, int h) {
    int n = 0;
    for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i += 3)
        n += p[i] == 0;
    return n;
}

Test(plot, font_renders_distinct_glyphs) {
    const int W = 20, H = 24;
    for (int k = 1; k <= 2; k++) {
        uint8_t *a = draw_text("A", k, W, H, 0), *b = draw_text("B", k, W, H, 0);
        uint8_t *sp = draw_text(" ", k, W, H, 0);
        cr_assert_gt(ink(a, W, H), 0);
        cr_assert_gt(ink(b, W, H), 0);
        cr_assert(memcmp(a, b, (size_t)W * H * 3) != 0, "'A' and 'B' look the same at k = %d", k);
        cr_assert_eq(ink(sp, W, H), 0, "a space draws ink");
        /* Ink stays in the glyph cell: columns 1 .. 1 + 5k - 1, rows 1 .. 1 + 9k - 1. */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if (a[((size_t)y * W + (size_t)x) * 3] == 0)
                    cr_assert(x >= 1 && x < 1 + PLOT_FONT_W * k && y >= 1 &&
                              y < 1 + PLOT_FONT_H * k);
        free(a);
        free(b);
        free(sp);
    }
    /* Every printable character but the space has ink, and no two share a glyph. */
    for (int c = 33; c <= 126; c++) {
        const uint8_t *g = plot_font_glyph((char)c);
        int any = 0;
        for (int r = 0; r < PLOT_FONT_H; r++) {
            any |= g[r];
            cr_assert_eq(g[r] >> PLOT_FONT_W, 0, "'%c' row %d is wider than the cell", c, r);
        }
        cr_assert(any, "'%c' is blank", c);
        for (int d = 33; d < c; d++)
            cr_assert(memcmp(g, plot_font_glyph((char)d), PLOT_FONT_H) != 0,
                      "'%c' and '%c' share a glyph", c, d);
    }
    /* Outside printable ASCII: drawn as '?'. */
    cr_assert_eq(plot_font_glyph('\t'), plot_font_glyph('?'));
    cr_assert_eq(plot_font_glyph((char)0xC3), plot_font_glyph('?'));
    cr_assert_eq(plot_font_width("", 2), 0);
    cr_assert_eq(plot_font_width("AB", 1), 2 * PLOT_FONT_ADVANCE - 1);
    cr_assert_eq(plot_font_width("AB", 3), 3 * (2 * PLOT_FONT_ADVANCE - 1));
}

Test(plot, font_turned_upwards) {
    const char *s = "Ab";
    int k = 2, len = plot_font_width(s, k), W = 40, H = 40;
    uint8_t *flat = draw_text(s, k, W, H, 0), *up = draw_text(s, k, W, H, 1);
    cr_assert_eq(ink(flat, W, H), ink(up, W, H));
    /* Upright pixel (1 + u, 1 + v) is turned to (1 + v, 1 + len - 1 - u). */
    for (int v = 0; v < PLOT_FONT_H * k; v++)
        for (int u = 0; u < len; u++)
            cr_assert_eq(flat[((size_t)(1 + v) * W + (size_t)(1 + u)) * 3],
                         up[((size_t)(1 + len - 1 - u) * W + (size_t)(1 + v)) * 3]);
    free(flat);
    free(up);
}

/* ---- bad input ---- */

/* plot_write_png must fail with a message containing path and every needle, leaving the
 * folder empty. */
static void expect_error(const char *path, const PlotSeries *s, int n, const PlotOptions *o,
                         const char *needle) {
    JtError err = {{0}};
    cr_assert_eq(plot_write_png(path, s, n, o, &err), JT_ERR, "expected an error about %s", needle);
    cr_assert(strstr(err.msg, path) != NULL, "message does not name %s: %s", path, err.msg);
    cr_assert(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "not one line: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 0, "files left behind after: %s", err.msg);
}

Test(plot, bad_input_is_refused_and_leaves_nothing) {
    PlotSeries s[3];
    series(s);
    PlotOptions o = options(0);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.png", test_tmp);

    expect_error(path, s, 0, &o, "no series");

    PlotSeries e[3] = {s[0], s[1], s[2]};
    e[1].n = 0;
    expect_error(path, e, 3, &o, "series 1 (\"trak\") has no points");

    double xs[NP];
    memcpy(xs, X, sizeof xs);
    xs[4] = NAN;
    e[1] = s[1];
    e[1].x = xs;
    expect_error(path, e, 3, &o, "x[4] = nan is not finite");
    xs[4] = INFINITY;
    expect_error(path, e, 3, &o, "x[4] = inf is not finite");

    PlotSeries many[PLOT_MAX_SERIES + 1];
    for (int i = 0; i <= PLOT_MAX_SERIES; i++)
        many[i] = s[0];
    expect_error(path, many, PLOT_MAX_SERIES + 1, &o, "11 series");

    PlotOptions bad = o;
    bad.ymin = 1.0;
    bad.ymax = 1.0;
    expect_error(path, s, 3, &bad, "y range [1, 1] is empty");
    bad.ymax = INFINITY;
    expect_error(path, s, 3, &bad, "not finite");
    bad = o;
    bad.width = 100;
    expect_error(path, s, 3, &bad, "image size 100 x 500");

    char unwritable[600];
    snprintf(unwritable, sizeof unwritable, "%s/no/such/dir/plot.png", test_tmp);
    expect_error(unwritable, s, 3, &o, "cannot create");
}
