/* figure.c: the report's PNG figure (layout in report.h): per target a block with the trajectory
 * row (x̂_0 at the scored steps, then the final sample), topk rows of proponents and topk rows of
 * opponents under the steps they were scored at, each tile framed (green / red) and its score
 * written under it in a 3x5 pixel font. Images are scaled with png_f32_to_u8 (diffusers'
 * conversion) and upscaled by pixel replication. Written through png_write (temporary name,
 * rename). */
#include "report/report.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/png.h"
#include "report/plot.h"
#include "report/report_internal.h"

static const uint8_t BG[3] = {255, 255, 255};
static const uint8_t TRAJ_FRAME[3] = {190, 190, 190};
static const uint8_t PRO_FRAME[3] = {26, 154, 58};
static const uint8_t OPP_FRAME[3] = {208, 48, 42};
static const uint8_t EMPTY_CELL[3] = {232, 232, 232};
static const uint8_t SEP_LINE[3] = {170, 170, 170};
static const uint8_t TARGET_LINE[3] = {70, 70, 70};
static const uint8_t LABEL_INK[3] = {0, 0, 0};
static const uint8_t PRO_INK[3] = {16, 110, 40};
static const uint8_t OPP_INK[3] = {160, 24, 20};

int report_figure_layout(const ReportData *d, ReportFigureLayout *L, JtError *err) {
    const int F = REPORT_FIG_FRAME, G = REPORT_FIG_GAP;
    int side = d->H > d->W ? d->H : d->W;
    L->scale = 64 / side > 1 ? 64 / side : 1;
    L->cell_w = L->scale * d->W + 2 * F;
    L->cell_h = L->scale * d->H + 2 * F;
    /* In 64-bit, then bounded: stb_image_write takes int sizes and strides. */
    long long row_h = (long long)L->cell_h + REPORT_FIG_SCORE_H + G;
    long long block = REPORT_FIG_LABEL_H + (long long)L->cell_h + G + 2LL * d->topk * row_h +
                      (d->topk > 0 ? REPORT_FIG_SEP_H : 0);
    long long width = G + ((long long)d->n_steps + 1) * (L->cell_w + G);
    long long height = G + (long long)d->n_targets * block +
                       ((long long)d->n_targets - 1) * REPORT_FIG_TARGET_SEP_H;
    if (width > 32768 || height > 65536 || width * height * 3 > INT_MAX)
        return jt_fail(err,
                       "report: the figure would be %lld x %lld pixels, too large for one PNG; "
                       "show fewer targets, steps or top-k entries",
                       width, height);
    L->block_h = (int)block;
    L->width = (int)width;
    L->height = (int)height;
    return JT_OK;
}

typedef struct {
    uint8_t *rgb; /* (height, width, 3) */
    int width, height;
} Canvas;

static void fill(Canvas *cv, int x, int y, int w, int h, const uint8_t color[3]) {
    for (int yy = y; yy < y + h; yy++)
        for (int xx = x; xx < x + w; xx++)
            memcpy(cv->rgb + ((size_t)yy * (size_t)cv->width + (size_t)xx) * 3, color, 3);
}

/* The image x (C, H, W) framed in color, its cell's top-left at (x0, y0). u8: scratch (H, W, C). */
static void tile(Canvas *cv, const ReportData *d, const ReportFigureLayout *L, int x0, int y0,
                 const float *x, const uint8_t frame[3], uint8_t *u8) {
    const int F = REPORT_FIG_FRAME, s = L->scale;
    fill(cv, x0, y0, L->cell_w, L->cell_h, frame);
    png_f32_to_u8(u8, x, d->C, d->H, d->W);
    for (int i = 0; i < d->H * s; i++)
        for (int j = 0; j < d->W * s; j++) {
            const uint8_t *p =
                u8 + ((size_t)(i / s) * (size_t)d->W + (size_t)(j / s)) * (size_t)d->C;
            uint8_t *q =
                cv->rgb + ((size_t)(y0 + F + i) * (size_t)cv->width + (size_t)(x0 + F + j)) * 3;
            q[0] = p[0];
            q[1] = p[d->C == 3 ? 1 : 0];
            q[2] = p[d->C == 3 ? 2 : 0];
        }
}

static void centered_text(Canvas *cv, int x0, int w, int y, const char *s, int k,
                          const uint8_t color[3]) {
    int tw = report_font_width(s, k);
    int x = x0 + (w - tw) / 2;
    if (x < x0) x = x0;
    report_font_draw(cv->rgb, cv->width, cv->height, x, y, x0, x0 + w, s, k, color);
}

/* The topk rows of one list (proponents or opponents) of target t, starting at y. */
static int list_rows(Canvas *cv, const ReportData *d, const ReportFigureLayout *L, int t, int pro,
                     int y, uint8_t *u8) {
    const int G = REPORT_FIG_GAP;
    const size_t *idx = pro ? d->pro_idx : d->opp_idx;
    const float *val = pro ? d->pro_val : d->opp_val;
    for (int r = 0; r < d->topk; r++) {
        for (int col = 0; col < report_n_cols(d); col++) {
            int x = G + report_col_position(d, col) * (L->cell_w + G);
            size_t slot = report_slot(d, t, col, r);
            size_t row = idx[slot];
            if (row == REPORT_NO_ROW) {
                fill(cv, x, y, L->cell_w, L->cell_h, EMPTY_CELL);
                continue;
            }
            tile(cv, d, L, x, y, report_train(d, row), pro ? PRO_FRAME : OPP_FRAME, u8);
            char score[32];
            snprintf(score, sizeof score, REPORT_FIG_SCORE_FMT, (double)val[slot]);
            centered_text(cv, x, L->cell_w, y + L->cell_h + 1, score, 1, pro ? PRO_INK : OPP_INK);
        }
        y += L->cell_h + REPORT_FIG_SCORE_H + G;
    }
    return y;
}

int report_write_png(const char *path, const ReportData *d, JtError *err) {
    if (report_check(d, err) != JT_OK) return JT_ERR;
    ReportFigureLayout L;
    if (report_figure_layout(d, &L, err) != JT_OK) return JT_ERR;
    const int G = REPORT_FIG_GAP;
    Canvas cv = {xmalloc((size_t)L.width * (size_t)L.height * 3), L.width, L.height};
    fill(&cv, 0, 0, L.width, L.height, BG);
    uint8_t *u8 = xmalloc(report_img_size(d));

    int y = G;
    for (int t = 0; t < d->n_targets; t++) {
        if (t > 0) {
            fill(&cv, 0, y, L.width, 2, TARGET_LINE);
            y += REPORT_FIG_TARGET_SEP_H;
        }
        int block_top = y;
        char label[32];
        for (int c = 0; c <= d->n_steps; c++) {
            int x = G + c * (L.cell_w + G);
            if (c < d->n_steps)
                snprintf(label, sizeof label, "t=%d", d->steps[c]);
            else
                snprintf(label, sizeof label, "%s", d->real_targets ? "image" : "final");
            char cbuf[32];
            const char *cls = c == d->n_steps ? report_target_class(d, t, cbuf, sizeof cbuf) : NULL;
            if (cls) { /* the class in the 5x7 font (letters), as many characters as fit */
                char cut[64];
                int fit = (L.cell_w + 1) / PLOT_FONT_ADVANCE;
                snprintf(cut, sizeof cut, "%.*s", fit < 63 ? fit : 63, cls);
                int tw = plot_font_width(cut, 1), xc = x + (L.cell_w - tw) / 2;
                plot_font_draw(cv.rgb, cv.width, cv.height, xc < x ? x : xc, y + 1, cut, 1,
                               LABEL_INK);
            } else {
                centered_text(&cv, x, L.cell_w, y, label, 2, LABEL_INK);
            }
            tile(&cv, d, &L, x, y + REPORT_FIG_LABEL_H,
                 c < d->n_steps ? report_xhat(d, t, c) : report_final(d, t), TRAJ_FRAME, u8);
        }
        y += REPORT_FIG_LABEL_H + L.cell_h + G;
        if (d->topk > 0) {
            y = list_rows(&cv, d, &L, t, 1, y, u8);
            fill(&cv, G, y, L.width - 2 * G, 2, SEP_LINE);
            y += REPORT_FIG_SEP_H;
            y = list_rows(&cv, d, &L, t, 0, y, u8);
        }
        CHECK(y - block_top == L.block_h, "figure block is %d px, layout says %d", y - block_top,
              L.block_h);
    }
    CHECK(y == L.height, "figure is %d px tall, layout says %d", y, L.height);
    free(u8);
    int rc = png_write_rgb(path, cv.rgb, L.width, L.height, err);
    free(cv.rgb);
    return rc;
}
