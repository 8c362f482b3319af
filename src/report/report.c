/* report.c: checking ReportData, PNG encoding into memory, and the self-contained HTML page (see
 * report.h). The page is one file: CSS inline, every image a PNG data URI (stb_image_write's
 * callback API into a buffer, then base64), upscaled by the browser with image-rendering:
 * pixelated. Text from the caller (title, provenance, class names) is HTML-escaped. The file is
 * streamed into a temporary name next to the target and renamed when complete (AtomicFile). */
#include "report/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "io/png.h"
#include "io/safetensors.h"
#include "report/report_internal.h"

/* ---- checks ---- */

/* What the target's own image is called: a generated sample's last step, or a real image. */
static const char *final_noun(const ReportData *d) {
    return d->real_targets ? "target image" : "final sample";
}

/* "(sample 3)" after a target's number: its index in the trajectory file, or among the images. */
static void put_target_id(FILE *fp, const ReportData *d, int t) {
    if (d->target_ids)
        fprintf(fp, " (%s %d)", d->real_targets ? "image" : "sample", d->target_ids[t]);
}

static void col_name(const ReportData *d, int col, char *buf, size_t n) {
    if (d->final_only)
        snprintf(buf, n, "the %s", final_noun(d));
    else
        snprintf(buf, n, "step t=%d", d->steps[col]);
}

static int check_rows(const ReportData *d, const size_t *idx, const char *what, JtError *err) {
    for (int t = 0; t < d->n_targets; t++)
        for (int col = 0; col < report_n_cols(d); col++)
            for (int r = 0; r < d->topk; r++) {
                size_t row = idx[report_slot(d, t, col, r)];
                if (row == REPORT_NO_ROW || row < d->n_train) continue;
                char cn[64];
                col_name(d, col, cn, sizeof cn);
                return jt_fail(err,
                               "report: %s #%d of target %d at %s is training row %zu, but the "
                               "training set has %zu rows",
                               what, r + 1, t, cn, row, d->n_train);
            }
    return JT_OK;
}

int report_check(const ReportData *d, JtError *err) {
    CHECK(d != NULL, "report_check: no data");
    if (d->n_targets < 1)
        return jt_fail(err, "report: n_targets = %d: there are no targets to report", d->n_targets);
    if (d->n_steps < 0 || (d->n_steps == 0 && !d->final_only))
        return jt_fail(err,
                       "report: n_steps = %d: no scored steps (and the scores are not "
                       "final_only)",
                       d->n_steps);
    if (d->topk < 0) return jt_fail(err, "report: topk = %d is negative", d->topk);
    if (d->C != 1 && d->C != 3)
        return jt_fail(err,
                       "report: images have %d channels; only 1 (gray) or 3 (RGB) can be "
                       "shown",
                       d->C);
    if (d->H < 1 || d->W < 1 || d->H > 8192 || d->W > 8192)
        return jt_fail(err, "report: image size %dx%d is out of range (1..8192)", d->H, d->W);
    if (!d->final) return jt_fail(err, "report: no final samples (final is NULL)");
    if (d->n_steps > 0 && (!d->steps || !d->xhat))
        return jt_fail(err, "report: n_steps = %d but %s is NULL", d->n_steps,
                       d->steps ? "xhat" : "steps");
    size_t img = report_img_size(d), tmp;
    if (!jt_mul_size((size_t)d->n_targets * (size_t)(d->n_steps + 1), img, &tmp) ||
        !jt_mul_size((size_t)d->n_targets * (size_t)report_n_cols(d), (size_t)d->topk + 1, &tmp) ||
        !jt_mul_size(d->n_train, img, &tmp))
        return jt_fail(err,
                       "report: sizes overflow (n_targets %d, n_steps %d, topk %d, "
                       "n_train %zu, image %dx%dx%d)",
                       d->n_targets, d->n_steps, d->topk, d->n_train, d->C, d->H, d->W);
    if (d->topk > 0) {
        if (!d->pro_idx || !d->opp_idx || !d->pro_val || !d->opp_val)
            return jt_fail(err, "report: topk = %d but the proponent/opponent arrays are NULL",
                           d->topk);
        if (d->n_train > 0 && !d->train)
            return jt_fail(err, "report: n_train = %zu but train is NULL", d->n_train);
        if (check_rows(d, d->pro_idx, "proponent", err) != JT_OK) return JT_ERR;
        if (check_rows(d, d->opp_idx, "opponent", err) != JT_OK) return JT_ERR;
    }
    if (d->class_names && d->n_classes < 0)
        return jt_fail(err, "report: n_classes = %d is negative", d->n_classes);
    return JT_OK;
}

/* ---- PNG into memory ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} MemSink;

static void mem_sink(void *ctx, void *data, int size) {
    MemSink *m = ctx;
    if (size <= 0) return;
    if (m->n + (size_t)size > m->cap) {
        m->cap = 2 * (m->n + (size_t)size);
        m->p = xrealloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

uint8_t *report_png_encode(const uint8_t *pix, int w, int h, int comp, size_t *out_n) {
    MemSink m = {NULL, 0, 0};
    if (!stbi_write_png_to_func(mem_sink, &m, w, h, comp, pix, w * comp)) {
        free(m.p);
        return NULL;
    }
    *out_n = m.n;
    return m.p;
}

/* "data:image/png;base64,..." for one (C, H, W) image in [-1, 1]. */
static char *image_data_uri(const ReportData *d, const float *x) {
    static const char prefix[] = "data:image/png;base64,";
    uint8_t *pix = xmalloc(report_img_size(d));
    png_f32_to_u8(pix, x, d->C, d->H, d->W);
    size_t png_n = 0;
    uint8_t *png = report_png_encode(pix, d->W, d->H, d->C, &png_n);
    CHECK(png != NULL, "stb_image_write failed to encode a %dx%dx%d image", d->W, d->H, d->C);
    size_t b64_n;
    char *b64 = report_base64(png, png_n, &b64_n);
    char *uri = xmalloc(sizeof prefix + b64_n);
    memcpy(uri, prefix, sizeof prefix - 1);
    memcpy(uri + sizeof prefix - 1, b64, b64_n + 1);
    free(b64);
    free(png);
    free(pix);
    return uri;
}

/* ---- HTML ---- */

static void put_esc(FILE *fp, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", fp);
            break;
        case '<':
            fputs("&lt;", fp);
            break;
        case '>':
            fputs("&gt;", fp);
            break;
        case '"':
            fputs("&quot;", fp);
            break;
        case '\'':
            fputs("&#39;", fp);
            break;
        default:
            fputc(*s, fp);
        }
    }
}

/* The class name of a training row, or NULL when labels are unknown. */
static const char *class_text(const ReportData *d, size_t row, char *buf, size_t n) {
    if (!d->train_labels) return NULL;
    int label = d->train_labels[row];
    if (d->class_names && label >= 0 && label < d->n_classes && d->class_names[label])
        return d->class_names[label];
    snprintf(buf, n, "class %d", label);
    return buf;
}

const char *report_target_class(const ReportData *d, int t, char *buf, size_t n) {
    if (!d->target_labels || d->target_labels[t] < 0) return NULL;
    int label = d->target_labels[t];
    if (d->class_names && label < d->n_classes && d->class_names[label])
        return d->class_names[label];
    snprintf(buf, n, "class %d", label);
    return buf;
}

/* ", class Sandal, guidance 3" after a target's heading: its class and the sampler's guidance;
 * a text-conditional target's prompt, guidance and negative prompt on a line of their own. */
static void put_target_cond(FILE *fp, const ReportData *d, int t) {
    char buf[32];
    const char *cls = report_target_class(d, t, buf, sizeof buf);
    if (cls) {
        fputs(", class ", fp);
        put_esc(fp, cls);
    }
    const char *prompt = d->target_prompts ? d->target_prompts[t] : NULL;
    if (d->has_guidance && !prompt) fprintf(fp, ", guidance %g", d->guidance);
    if (!prompt) return;
    fputs("<br><span class=\"prompt\">prompt &ldquo;", fp);
    put_esc(fp, prompt);
    fputs("&rdquo;", fp);
    if (d->has_guidance) fprintf(fp, ", guidance %g", d->guidance);
    if (d->negative_prompt && d->guidance != 1.0f) {
        fputs(", negative prompt &ldquo;", fp);
        put_esc(fp, d->negative_prompt);
        fputs("&rdquo;", fp);
    }
    fputs("</span>", fp);
}

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em 2em;color:#222;"
    "background:#fcfcfc}\n"
    "h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin:1.6em 0 .4em}\n"
    ".intro{max-width:62em;line-height:1.45}\n"
    ".meta{color:#555;font-size:.9em}\n"
    "pre.prov{background:#f0f0f0;padding:.6em .8em;max-width:100%;overflow-x:auto;"
    "font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}\n"
    "nav a{margin-right:.8em}\n"
    "table.target{border-collapse:separate;border-spacing:8px 4px}\n"
    "table.target th{font-size:13px;font-weight:600;padding:2px}\n"
    "table.target th.row{text-align:right;vertical-align:middle;white-space:nowrap;color:#444}\n"
    "table.target td{vertical-align:top;text-align:center;padding:0}\n"
    "td.final{border-left:2px dashed #bbb;padding-left:8px}\n"
    "tr.opp-row>*{border-top:1px solid #ddd;padding-top:8px}\n"
    "img{image-rendering:crisp-edges;image-rendering:pixelated;display:block;margin:0 auto}\n"
    ".traj img{border:3px solid #bbb}\n"
    "figure{margin:0 0 8px 0}\n"
    "figure.pro img{border:3px solid #1a9a3a}\n"
    "figure.opp img{border:3px solid #d0302a}\n"
    "figcaption{font-size:11px;line-height:1.3;color:#333;font-variant-numeric:tabular-nums}\n"
    "figure.pro figcaption b{color:#137a2d}figure.opp figcaption b{color:#b0201a}\n"
    "figcaption .file,figcaption .caption{display:inline-block;max-width:12em;"
    "overflow-wrap:anywhere;color:#555}\n"
    ".empty{color:#aaa;font-size:11px}\n"
    "h2 .prompt{font-weight:400;font-size:.85em;color:#333}\n"
    ".pro-t{color:#137a2d;font-weight:600}.opp-t{color:#b0201a;font-weight:600}\n";

/* The method's sentence into buf (empty for an unknown method); noun is final_noun. */
static void method_blurb(const char *m, const char *noun, char *buf, size_t n) {
    buf[0] = '\0';
    if (!m) return;
    if (strcmp(m, "journey") == 0)
        snprintf(buf, n,
                 "Journey-TRAK: at each scored step t, x&#770;<sub>0</sub> is re-noised to "
                 "level t and the TRAK score of the denoising loss there is computed for "
                 "every training image (&tau;<sub>t</sub>).");
    else if (strcmp(m, "trak") == 0)
        snprintf(buf, n,
                 "TRAK on the %s: the denoising loss at random timesteps. The scores are "
                 "not specific to a step.",
                 noun);
    else if (strcmp(m, "dtrak") == 0)
        snprintf(buf, n,
                 "D-TRAK on the %s: the squared norm of the predicted noise at random "
                 "timesteps. The scores are not specific to a step.",
                 noun);
    else if (strcmp(m, "pixel") == 0)
        snprintf(buf, n,
                 "Pixel baseline: cosine similarity between x&#770;<sub>0</sub> at step t "
                 "and each training image (no model gradients).");
}

static void write_intro(FILE *fp, const ReportData *d) {
    int pixel = d->method && strcmp(d->method, "pixel") == 0;
    fprintf(fp, "<p class=\"intro\">Each block below is one %s (a <i>target</i>). ",
            d->real_targets ? "real image" : "generated image");
    if (d->n_steps > 0)
        fputs("The top row shows the model's estimate of the clean image, x&#770;<sub>0</sub>, at "
              "each scored sampling step t (from noisy, large t, to nearly done, small t), then "
              "the final sample. ",
              fp);
    else
        fprintf(fp, "The top row shows the %s. ", final_noun(d));
    if (d->final_only)
        fprintf(fp, "The scores are for the %s as a whole, so one list is shown, under it: ",
                final_noun(d));
    else
        fputs("Under each step are the training images that score highest and lowest at that "
              "step: ",
              fp);
    if (pixel)
        fputs("the most similar (<span class=\"pro-t\">green frames</span>) and the least similar "
              "(<span class=\"opp-t\">red frames</span>). These are similarities, not "
              "attributions: a baseline to compare against. ",
              fp);
    else
        fputs("<span class=\"pro-t\">proponents</span> (green frames, largest scores) are training "
              "images that make the model more likely to produce this image at that step; "
              "<span class=\"opp-t\">opponents</span> (red frames, most negative scores) make it "
              "less likely. Scores are TRAK-style attributions, comparable within a step. ",
              fp);
    fputs("Each caption gives the score, the training row (the image's index in the training set "
          "as selected) and, where known, its index in the source dataset and its class.</p>\n",
          fp);
    fputs("<p class=\"meta\">", fp);
    if (d->method) {
        fputs("Method: <b>", fp);
        put_esc(fp, d->method);
        fputs("</b>. ", fp);
        char blurb[512];
        method_blurb(d->method, final_noun(d), blurb, sizeof blurb);
        if (blurb[0]) fprintf(fp, "%s ", blurb);
    }
    fprintf(fp, "%d target%s, %d step%s, top %d, %zu training images.</p>\n", d->n_targets,
            d->n_targets == 1 ? "" : "s", d->n_steps, d->n_steps == 1 ? "" : "s", d->topk,
            d->n_train);
    if (d->provenance && d->provenance[0]) {
        fputs("<details open><summary>Provenance</summary><pre class=\"prov\">", fp);
        put_esc(fp, d->provenance);
        fputs("</pre></details>\n", fp);
    }
}

typedef struct {
    const ReportData *d;
    FILE *fp;
    char **train_uri; /* (n_train) lazily encoded data URIs, since rows repeat across steps */
    int disp_w, disp_h;
} Html;

static void put_img(Html *h, const char *uri, const char *alt, const char *title) {
    fprintf(h->fp, "<img src=\"%s\" width=\"%d\" height=\"%d\" alt=\"", uri, h->disp_w, h->disp_h);
    put_esc(h->fp, alt);
    fputs("\" title=\"", h->fp);
    put_esc(h->fp, title);
    fputs("\">", h->fp);
}

static void put_entry(Html *h, int t, int col, int r, int pro) {
    const ReportData *d = h->d;
    size_t slot = report_slot(d, t, col, r);
    size_t row = (pro ? d->pro_idx : d->opp_idx)[slot];
    float val = (pro ? d->pro_val : d->opp_val)[slot];
    const char *kind = pro ? "proponent" : "opponent";
    if (row == REPORT_NO_ROW) {
        fprintf(h->fp, "<figure class=\"%s\"><div class=\"empty\">(none)</div></figure>",
                pro ? "pro" : "opp");
        return;
    }
    if (!h->train_uri[row]) h->train_uri[row] = image_data_uri(d, report_train(d, row));
    char score[64], where[128], cls_buf[32], alt[96], title[512];
    snprintf(score, sizeof score, REPORT_SCORE_FMT, (double)val);
    if (d->train_source_index)
        snprintf(where, sizeof where, "row %zu &middot; src %zu", row, d->train_source_index[row]);
    else
        snprintf(where, sizeof where, "row %zu", row);
    const char *cls = class_text(d, row, cls_buf, sizeof cls_buf);
    snprintf(alt, sizeof alt, "%s %d: training row %zu", kind, r + 1, row);
    int k =
        snprintf(title, sizeof title, "%s %d, score %s, training row %zu", kind, r + 1, score, row);
    if (d->train_source_index && k > 0 && (size_t)k < sizeof title)
        k += snprintf(title + k, sizeof title - (size_t)k, ", source index %zu",
                      d->train_source_index[row]);
    if (cls && k > 0 && (size_t)k < sizeof title)
        k += snprintf(title + k, sizeof title - (size_t)k, ", %s", cls);
    const char *file = d->train_files ? d->train_files[row] : NULL;
    const char *cap = d->train_captions ? d->train_captions[row] : NULL;
    if (file && k > 0 && (size_t)k < sizeof title)
        k += snprintf(title + k, sizeof title - (size_t)k, ", %s", file);
    if (cap && k > 0 && (size_t)k < sizeof title)
        snprintf(title + k, sizeof title - (size_t)k, ": %s", cap);
    fprintf(h->fp, "<figure class=\"%s\">", pro ? "pro" : "opp");
    put_img(h, h->train_uri[row], alt, title);
    fprintf(h->fp, "<figcaption><b>%s</b><br>%s", score, where);
    if (cls) {
        fputs("<br>", h->fp);
        put_esc(h->fp, cls);
    }
    if (file) {
        fputs("<br><span class=\"file\">", h->fp);
        put_esc(h->fp, file);
        fputs("</span>", h->fp);
    }
    if (cap) {
        fputs("<br><span class=\"caption\">", h->fp);
        put_esc(h->fp, cap);
        fputs("</span>", h->fp);
    }
    fputs("</figcaption></figure>", h->fp);
}

static void put_list_row(Html *h, int t, int pro) {
    const ReportData *d = h->d;
    fprintf(h->fp, "<tr class=\"%s\"><th class=\"row\"><span class=\"%s\">%s</span><br>top %d</th>",
            pro ? "pro-row" : "opp-row", pro ? "pro-t" : "opp-t", pro ? "proponents" : "opponents",
            d->topk);
    for (int c = 0; c <= d->n_steps; c++) {
        int col = -1; /* the score column shown at page column c, if any */
        if (d->final_only ? c == d->n_steps : c < d->n_steps) col = d->final_only ? 0 : c;
        fprintf(h->fp, "<td%s>", c == d->n_steps ? " class=\"final\"" : "");
        if (col >= 0)
            for (int r = 0; r < d->topk; r++)
                put_entry(h, t, col, r, pro);
        fputs("</td>", h->fp);
    }
    fputs("</tr>\n", h->fp);
}

static void put_target(Html *h, int t) {
    const ReportData *d = h->d;
    FILE *fp = h->fp;
    fprintf(fp, "<section id=\"target%d\"><h2>Target %d", t, t);
    put_target_id(fp, d, t);
    put_target_cond(fp, d, t);
    fputs("</h2>\n<table class=\"target\">\n<tr><th></th>", fp);
    for (int s = 0; s < d->n_steps; s++)
        fprintf(fp, "<th>t=%d</th>", d->steps[s]);
    fprintf(fp, "<th>%s</th></tr>\n<tr class=\"traj\"><th class=\"row\">x&#770;<sub>0</sub></th>",
            final_noun(d));
    char alt[64], title[96];
    for (int s = 0; s < d->n_steps; s++) {
        char *uri = image_data_uri(d, report_xhat(d, t, s));
        snprintf(alt, sizeof alt, "x0-hat of target %d at t=%d", t, d->steps[s]);
        snprintf(title, sizeof title, "target %d: x\xcc\x82_0 at t=%d", t, d->steps[s]);
        fputs("<td>", fp);
        put_img(h, uri, alt, title);
        fputs("</td>", fp);
        free(uri);
    }
    char *uri = image_data_uri(d, report_final(d, t));
    snprintf(alt, sizeof alt, "%s of target %d", final_noun(d), t);
    fputs("<td class=\"final\">", fp);
    put_img(h, uri, alt, alt);
    fputs("</td></tr>\n", fp);
    free(uri);
    if (d->topk > 0) {
        put_list_row(h, t, 1);
        put_list_row(h, t, 0);
    }
    fputs("</table></section>\n", fp);
}

int report_write_html(const char *path, const ReportData *d, JtError *err) {
    if (report_check(d, err) != JT_OK) return JT_ERR;
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != JT_OK) return JT_ERR;
    Html h = {d, af.fp, xcalloc(d->n_train ? d->n_train : 1, sizeof(char *)), 0, 0};
    /* An integer upscale so that the longer side is at least 84 CSS pixels (28x28 -> 3x). */
    int side = d->H > d->W ? d->H : d->W;
    int k = side >= 84 ? 1 : (84 + side - 1) / side;
    h.disp_w = k * d->W;
    h.disp_h = k * d->H;

    const char *title = d->title && d->title[0] ? d->title : "jtrak: attribution report";
    FILE *fp = af.fp;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", fp);
    put_esc(fp, title);
    fprintf(fp, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", CSS);
    put_esc(fp, title);
    fputs("</h1>\n", fp);
    write_intro(fp, d);
    if (d->n_targets > 1) {
        fputs("<nav>Targets:", fp);
        for (int t = 0; t < d->n_targets; t++) {
            fprintf(fp, " <a href=\"#target%d\">%d", t, t);
            put_target_id(fp, d, t);
            fputs("</a>", fp);
        }
        fputs("</nav>\n", fp);
    }
    for (int t = 0; t < d->n_targets; t++)
        put_target(&h, t);
    fputs("</body>\n</html>\n", fp);

    for (size_t i = 0; i < d->n_train; i++)
        free(h.train_uri[i]);
    free(h.train_uri);
    return atomic_file_commit(&af, err);
}
