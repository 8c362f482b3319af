/* report_internal.h: pieces shared by the report's HTML page (report.c) and PNG figure
 * (figure.c): base64, PNG encoding into memory, a tiny pixel font, and indexing into ReportData.
 * Not part of the library's interface. */
#ifndef JTRAK_REPORT_INTERNAL_H
#define JTRAK_REPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "report/report.h"

/* base64.c: RFC 4648 base64 with '=' padding; returns a NUL-terminated string (*out_len chars). */
char *report_base64(const uint8_t *data, size_t n, size_t *out_len);

/* PNG encoding of pix (h, w, comp) uint8 into a malloc'd buffer through stb_image_write's
 * callback API; returns NULL if stb fails. */
uint8_t *report_png_encode(const uint8_t *pix, int w, int h, int comp, size_t *out_n);

/* font.c: a 3x5 pixel font for digits, '.', '-', '+', '=', ' ' and the letters of
 * "t", "e", "final", "nan", "inf"; other characters are drawn blank. */
enum { REPORT_FONT_W = 3, REPORT_FONT_H = 5, REPORT_FONT_ADVANCE = 4 };
/* Width in pixels of s drawn at integer scale k (no trailing spacing). */
int report_font_width(const char *s, int k);
/* Draws s into rgb (height, width, 3) with its top-left at (x, y), scale k, clipped to the
 * columns [clip_x0, clip_x1) and to the image. */
void report_font_draw(uint8_t *rgb, int width, int height, int x, int y, int clip_x0, int clip_x1,
                      const char *s, int k, const uint8_t color[3]);

/* The class of target t as text (its class name, else "class N"), or NULL when it has none. */
const char *report_target_class(const ReportData *d, int t, char *buf, size_t n);

/* Indexing (d has passed report_check). */
static inline int report_n_cols(const ReportData *d) {
    return d->final_only ? 1 : d->n_steps;
}
static inline size_t report_img_size(const ReportData *d) {
    return (size_t)d->C * (size_t)d->H * (size_t)d->W;
}
static inline const float *report_xhat(const ReportData *d, int t, int s) {
    return d->xhat + ((size_t)t * (size_t)d->n_steps + (size_t)s) * report_img_size(d);
}
static inline const float *report_final(const ReportData *d, int t) {
    return d->final + (size_t)t * report_img_size(d);
}
static inline const float *report_train(const ReportData *d, size_t row) {
    return d->train + row * report_img_size(d);
}
/* Offset of (target t, score column col, rank r) in pro_idx / opp_idx / pro_val / opp_val. */
static inline size_t report_slot(const ReportData *d, int t, int col, int r) {
    return ((size_t)t * (size_t)report_n_cols(d) + (size_t)col) * (size_t)d->topk + (size_t)r;
}
/* The figure/page column (0..n_steps, n_steps = final sample) that shows score column col. */
static inline int report_col_position(const ReportData *d, int col) {
    return d->final_only ? d->n_steps : col;
}

#endif
