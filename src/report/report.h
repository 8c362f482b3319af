/* report.h: the picture a user wants to look at. For each target (a generated sample), its
 * trajectory (x̂_0 at the scored steps, then the final sample) and, under each step, the top
 * proponents and opponents from the training set with their scores, as
 *   - one self-contained HTML page (images embedded as PNG data URIs, no external resources), and
 *   - one compact PNG figure (a grid per target, green/red frames, a tiny built-in font).
 * Both are written to a temporary name and renamed when complete; bad input is refused before
 * anything is created.
 *
 * ReportData is plain data, filled by the caller from score outputs (topk.json / TopK) and the
 * trajectory file; nothing here reads files. */
#ifndef JTRAK_REPORT_H
#define JTRAK_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

/* A top-k slot without an entry (e.g. fewer training rows than topk): shown as an empty cell. */
#define REPORT_NO_ROW SIZE_MAX

/* How scores are printed: in the HTML captions, and (shorter) under the tiles of the figure. */
#define REPORT_SCORE_FMT "%.4g"
#define REPORT_FIG_SCORE_FMT "%.3g"

typedef struct {
    int n_targets, n_steps,
        topk;           /* topk proponents and topk opponents per (target, score column) */
    int C, H, W;        /* image shape, C = 1 or 3 (targets and training images share it) */
    const int *steps;   /* (n_steps) diffusion timesteps scored, e.g. 900..0 */
    const float *xhat;  /* (n_targets, n_steps, C, H, W) x̂_0 at each step, in [-1,1];
                           may be NULL when n_steps = 0 */
    const float *final; /* (n_targets, C, H, W) the generated sample (or the real image) */
    int real_targets;   /* 1: the targets are real images (score --targets-data): no steps, and
                           the wording says "target image" where it says "final sample" */
    /* Score columns: n_steps of them (one per step), or 1 when final_only is set (trak and dtrak
     * score the final sample, not a step; the lists are then shown under the final sample). */
    int final_only;
    const size_t *pro_idx, *opp_idx; /* (n_targets, n_cols, topk) training rows or REPORT_NO_ROW;
                                        proponents by decreasing score, opponents by increasing */
    const float *pro_val, *opp_val;  /* (n_targets, n_cols, topk) scores */
    const float *train;              /* (n_train, C, H, W) training images in [-1,1], by row */
    size_t n_train;
    const size_t
        *train_source_index;        /* (n_train) or NULL: the image's index in the source dataset */
    const int *train_labels;        /* (n_train) or NULL */
    const char *const *train_files; /* (n_train) or NULL (an entry may be NULL): the file each
                                       training row came from, shown beside it */
    const char *const *train_captions; /* (n_train) or NULL (an entry may be NULL): captions */
    const char *const *class_names;    /* (n_classes) or NULL: names for train_labels */
    int n_classes;
    const int *target_ids;    /* (n_targets) or NULL: sample index in the trajectory file (image
                                 index among the real targets) */
    const int *target_labels; /* (n_targets) or NULL: each target's class (-1: none), named by
                                 class_names when it has them; shown in the HTML and as the
                                 figure's label of the final column */
    int has_guidance;         /* the targets come from a trajectory of a conditional model: */
    float guidance;           /* its classifier-free guidance scale, shown in the HTML */
    const char *const *target_prompts; /* (n_targets) or NULL: each target's prompt text (a
                                          text-conditional trajectory), shown in the HTML */
    const char *negative_prompt; /* or NULL: the text of the guidance's unconditional context */
    const char *title;           /* e.g. "jtrak: Journey-TRAK attributions"; NULL: a default */
    const char *method;     /* "journey", "trak", "dtrak", "pixel" (other names are shown as is) */
    const char *provenance; /* free text: model, store, trajectory fingerprints, command; or NULL */
} ReportData;

/* Checks shapes, pointers and training-row indices; JT_ERR with one line naming what is wrong
 * (e.g. "n_targets = 0", or the target, step and rank of an out-of-range training row). Both
 * writers call it first. */
int report_check(const ReportData *d, JtError *err);

/* The HTML page. Images are shown at an integer upscale (image-rendering: pixelated) so that the
 * longer side is at least 84 CSS pixels; every text inserted is HTML-escaped. */
int report_write_html(const char *path, const ReportData *d, JtError *err);

/* The PNG figure (RGB). Layout, with s = max(1, 64 / max(H, W)) (28x28 -> 2x, 8x8 -> 8x),
 * F = REPORT_FIG_FRAME, G = REPORT_FIG_GAP:
 *   cell      (s*W + 2F) x (s*H + 2F): the image framed (gray: trajectory, green: proponent,
 *             red: opponent); an empty slot is a light gray cell
 *   columns   n_steps + 1 (the steps, then the final sample), each cell_w wide, G apart and
 *             G from the edges: width = G + (n_steps + 1) (cell_w + G)
 *   a block   per target, top to bottom: a label band (REPORT_FIG_LABEL_H: "t=900" ... "final";
 *             with target_labels the last column's label is the target's class, in plot.h's
 *             5x7 font, cut to the cell's width),
 *             the trajectory row (cell_h + G), topk proponent rows (each
 *             cell_h + REPORT_FIG_SCORE_H + G: the tile and its score), a separator
 *             (REPORT_FIG_SEP_H, only when topk > 0), topk opponent rows
 *   height    G + n_targets * block_h + (n_targets - 1) * REPORT_FIG_TARGET_SEP_H
 * Image pixels are replicated s x s (gray images fill R, G and B alike). */
enum {
    REPORT_FIG_FRAME = 2,
    REPORT_FIG_GAP = 4,
    REPORT_FIG_LABEL_H = 12,         /* 2x font (10 px) + 2 */
    REPORT_FIG_SCORE_H = 8,          /* 1 + 1x font (5 px) + 2 */
    REPORT_FIG_SEP_H = 2 + 4,        /* a gray line, then G */
    REPORT_FIG_TARGET_SEP_H = 2 + 4, /* a dark line, then G */
};

typedef struct {
    int scale;          /* s */
    int cell_w, cell_h; /* framed tile */
    int block_h;        /* one target's block */
    int width, height;  /* the whole figure */
} ReportFigureLayout;

/* The layout above for d (d must pass report_check); JT_ERR if the figure would be too large. */
int report_figure_layout(const ReportData *d, ReportFigureLayout *L, JtError *err);

int report_write_png(const char *path, const ReportData *d, JtError *err);

#endif
