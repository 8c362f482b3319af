/* test_report.c: the HTML page and the PNG figure of src/report, from a small synthetic ReportData
 * (2 targets, 3 steps, top 2, 8x8 images with distinct patterns), written into a mkdtemp()
 * folder. The page: step labels, every score as printed, the number of embedded images, a data
 * URI that decodes (base64 decoded here, independently of the writer) to a PNG with the source
 * pixels, escaping, no external resources. The figure: its size follows the layout formula of
 * report.h and tiles hold the source pixels. Bad input: an unwritable path or a bad training row
 * gives JT_ERR naming it and leaves no file; n_targets = 0 is refused. */
#include "helpers/tmpdir.h"
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "io/png.h"
#include "report/report.h"


TestSuite(report, .init = test_tmp_setup, .fini = test_tmp_teardown);

/* Entries in a folder (not . and ..). */
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

static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    return s;
}

static size_t count_str(const char *hay, const char *needle) {
    size_t n = 0, len = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + len, needle))
        n++;
    return n;
}

/* ---- the synthetic report ---- */

enum { NT = 2, NS = 3, TOPK = 2, NTRAIN = 10, IH = 8, IW = 8 };

typedef struct {
    int steps[NS];
    float *xhat, *final, *train;
    size_t pro_idx[NT * NS * TOPK], opp_idx[NT * NS * TOPK];
    float pro_val[NT * NS * TOPK], opp_val[NT * NS * TOPK];
    size_t source[NTRAIN];
    int labels[NTRAIN];
    int target_ids[NT];
    ReportData d;
} Synth;

static const char *const CLASS_NAMES[] = {"zero", "one", "<two> & \"co\""};

/* Values on the grid k/8 - 1 (k = 0..16), exactly representable, so each converts to a known
 * byte; the patterns differ between images (gradients, checkers, stripes by index). */
static float pattern(int img, int c, int i, int j) {
    int k = (img * 5 + c * 3 + i * (1 + img % 3) + j * (2 + img % 4) + (i * j) % (img + 2)) % 17;
    return (float)k / 8.0f - 1.0f;
}

static void synth_init(Synth *s, int C) {
    memset(s, 0, sizeof *s);
    size_t img = (size_t)C * IH * IW;
    s->steps[0] = 900;
    s->steps[1] = 500;
    s->steps[2] = 100;
    s->xhat = malloc(NT * NS * img * sizeof(float));
    s->final = malloc(NT * img * sizeof(float));
    s->train = malloc(NTRAIN * img * sizeof(float));
    for (int n = 0; n < NT * NS; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < IH; i++)
                for (int j = 0; j < IW; j++)
                    s->xhat[(size_t)n * img + ((size_t)c * IH + i) * IW + j] = pattern(n, c, i, j);
    for (int n = 0; n < NT; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < IH; i++)
                for (int j = 0; j < IW; j++)
                    s->final[(size_t)n * img + ((size_t)c * IH + i) * IW + j] =
                        pattern(100 + n, c, i, j);
    for (int n = 0; n < NTRAIN; n++) {
        for (int c = 0; c < C; c++)
            for (int i = 0; i < IH; i++)
                for (int j = 0; j < IW; j++)
                    s->train[(size_t)n * img + ((size_t)c * IH + i) * IW + j] =
                        pattern(200 + n, c, i, j);
        s->source[n] = 1000 + 7 * (size_t)n;
        s->labels[n] = n % 3;
    }
    for (int t = 0; t < NT; t++)
        for (int st = 0; st < NS; st++)
            for (int r = 0; r < TOPK; r++) {
                int q = (t * NS + st) * TOPK + r;
                s->pro_idx[q] = (size_t)((t * 3 + st * 2 + r) % NTRAIN);
                s->opp_idx[q] = (size_t)((t * 5 + st * 3 + r + 7) % NTRAIN);
                /* distinct values, mixed magnitudes, to exercise "%.4g" */
                s->pro_val[q] = 0.5f / (float)(1 + q) + 0.0123f * (float)(t + 1);
                s->opp_val[q] = -1.5e-3f * (float)(1 + q) - 0.25f * (float)st;
            }
    s->target_ids[0] = 3;
    s->target_ids[1] = 11;
    s->d = (ReportData){.n_targets = NT,
                        .n_steps = NS,
                        .topk = TOPK,
                        .C = C,
                        .H = IH,
                        .W = IW,
                        .steps = s->steps,
                        .xhat = s->xhat,
                        .final = s->final,
                        .pro_idx = s->pro_idx,
                        .opp_idx = s->opp_idx,
                        .pro_val = s->pro_val,
                        .opp_val = s->opp_val,
                        .train = s->train,
                        .n_train = NTRAIN,
                        .train_source_index = s->source,
                        .train_labels = s->labels,
                        .class_names = CLASS_NAMES,
                        .n_classes = 3,
                        .target_ids = s->target_ids,
                        .title = "jtrak <test> & \"report\"",
                        .method = "journey",
                        .provenance = "model fp=abc123 <weights> & store\ncommand: jtrak score "
                                      "--steps 900,500,100 'x'"};
}

static void synth_free(Synth *s) {
    free(s->xhat);
    free(s->final);
    free(s->train);
}

/* ---- base64 decoding, written here so the test does not trust the writer's encoder ---- */

static int b64_val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes the base64 text s[0..n) (with '=' padding); returns the bytes and their count. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_n) {
    cr_assert_eq(n % 4, 0, "base64 length %zu is not a multiple of 4", n);
    unsigned char *out = malloc(n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=') {
                cr_assert_geq(i + k, n - 2, "'=' inside base64 at %zu", i + k);
                v[k] = 0;
                pad++;
            } else {
                v[k] = b64_val(s[i + k]);
                cr_assert_geq(v[k], 0, "bad base64 character '%c' at %zu", s[i + k], i + k);
            }
        }
        unsigned w =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2) out[o++] = (unsigned char)(w >> 8 & 255);
        if (pad < 1) out[o++] = (unsigned char)(w & 255);
    }
    *out_n = o;
    return out;
}

/* The k-th (0-based) data URI of the page, decoded. */
static unsigned char *nth_data_uri(const char *html, int k, size_t *n) {
    static const char key[] = "src=\"data:image/png;base64,";
    const char *p = html;
    for (int i = 0; i <= k; i++) {
        p = strstr(p, key);
        cr_assert_not_null(p, "fewer than %d data URIs", k + 1);
        p += sizeof key - 1;
    }
    const char *end = strchr(p, '"');
    cr_assert_not_null(end);
    return b64_decode(p, (size_t)(end - p), n);
}

/* Decoded pixels (h, w, c) must equal png_f32_to_u8 of the source image x (C, IH, IW). */
static void expect_image(const char *what, const unsigned char *png, size_t n, const float *x,
                         int C) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    cr_assert_geq(n, 8);
    cr_assert_eq(memcmp(png, sig, 8), 0, "%s: not a PNG signature", what);
    /* and it ends exactly with the IEND chunk (length 0, "IEND", CRC): no bytes lost or added */
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    cr_assert_geq(n, 20);
    cr_assert_eq(memcmp(png + n - 12, iend, 12), 0, "%s: does not end with IEND", what);
    int w, h, comp;
    unsigned char *pix = stbi_load_from_memory(png, (int)n, &w, &h, &comp, C);
    cr_assert_not_null(pix, "%s: stb cannot decode it: %s", what, stbi_failure_reason());
    cr_assert_eq(w, IW);
    cr_assert_eq(h, IH);
    cr_assert_eq(comp, C, "%s: %d channels, want %d", what, comp, C);
    uint8_t want[3 * IH * IW];
    png_f32_to_u8(want, x, C, IH, IW);
    for (int i = 0; i < IH * IW * C; i++)
        cr_assert_eq(pix[i], want[i], "%s: byte %d is %u, want %u", what, i, pix[i], want[i]);
    stbi_image_free(pix);
}

/* ---- HTML ---- */

static void check_html(int C) {
    Synth s;
    synth_init(&s, C);
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 1, "a temporary file was left behind");
    char *html = read_text(path);

    for (int st = 0; st < NS; st++) {
        char label[32];
        snprintf(label, sizeof label, ">t=%d<", s.steps[st]);
        cr_assert_eq(count_str(html, label), NT, "step label %s appears %zu times, want %d", label,
                     count_str(html, label), NT);
    }
    for (int q = 0; q < NT * NS * TOPK; q++) {
        char want[64];
        snprintf(want, sizeof want, "<b>" REPORT_SCORE_FMT "</b>", (double)s.pro_val[q]);
        cr_assert_not_null(strstr(html, want), "proponent score %s missing", want);
        snprintf(want, sizeof want, "<b>" REPORT_SCORE_FMT "</b>", (double)s.opp_val[q]);
        cr_assert_not_null(strstr(html, want), "opponent score %s missing", want);
    }
    /* training row, source index and class of one proponent */
    char want[128];
    size_t row = s.pro_idx[0];
    snprintf(want, sizeof want, "row %zu &middot; src %zu", row, s.source[row]);
    cr_assert_not_null(strstr(html, want), "%s missing", want);

    /* x̂_0 and final per target, then topk proponents and opponents per (target, step) */
    size_t n_img = NT * (NS + 1) + 2 * NT * NS * TOPK;
    cr_assert_eq(count_str(html, "<img "), n_img, "%zu <img> tags, want %zu",
                 count_str(html, "<img "), n_img);
    cr_assert_eq(count_str(html, "src=\"data:image/png;base64,"), n_img);
    cr_assert_eq(count_str(html, "class=\"pro\""), NT * NS * TOPK);
    cr_assert_eq(count_str(html, "class=\"opp\""), NT * NS * TOPK);
    cr_assert_not_null(strstr(html, "image-rendering:pixelated"));
    /* self-contained: nothing fetched from elsewhere */
    cr_assert_null(strstr(html, "://"), "the page refers to an external resource");
    cr_assert_null(strstr(html, "<link"));
    cr_assert_null(strstr(html, "<script"));

    /* the first image is target 0's x̂_0 at t=900; image NS+1 is its first proponent */
    size_t n;
    unsigned char *png = nth_data_uri(html, 0, &n);
    expect_image("x0-hat (0, t=900)", png, n, s.xhat, C);
    free(png);
    png = nth_data_uri(html, NS, &n);
    expect_image("final sample 0", png, n, s.final, C);
    free(png);
    png = nth_data_uri(html, NS + 1, &n);
    expect_image("first proponent", png, n, s.train + s.pro_idx[0] * (size_t)C * IH * IW, C);
    free(png);

    /* escaping: title, provenance and class names go in as entities */
    cr_assert_not_null(strstr(html, "jtrak &lt;test&gt; &amp; &quot;report&quot;"));
    cr_assert_null(strstr(html, "<test>"));
    cr_assert_not_null(strstr(html, "fp=abc123 &lt;weights&gt; &amp; store"));
    cr_assert_not_null(strstr(html, "--steps 900,500,100 &#39;x&#39;"));
    cr_assert_null(strstr(html, "<weights>"));
    cr_assert_not_null(strstr(html, "&lt;two&gt; &amp; &quot;co&quot;"));
    cr_assert_null(strstr(html, "<two>"));
    cr_assert_not_null(strstr(html, "(sample 11)"));
    free(html);
    synth_free(&s);
}

Test(report, html_gray) {
    check_html(1);
}
Test(report, html_rgb) {
    check_html(3);
}

Test(report, html_final_only_and_empty_slots) {
    /* trak/dtrak: one list per target, shown under the final sample; a missing slot is empty */
    Synth s;
    synth_init(&s, 1);
    s.d.final_only = 1;
    s.d.method = "trak";
    s.pro_idx[1] = REPORT_NO_ROW;
    char path[512];
    snprintf(path, sizeof path, "%s/final.html", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_OK, "%s", err.msg);
    char *html = read_text(path);
    size_t n_img = NT * (NS + 1) + 2 * NT * TOPK - 1;
    cr_assert_eq(count_str(html, "<img "), n_img, "%zu <img> tags, want %zu",
                 count_str(html, "<img "), n_img);
    cr_assert_eq(count_str(html, "(none)"), 1);
    free(html);
    snprintf(path, sizeof path, "%s/final.png", test_tmp);
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_OK, "%s", err.msg);

    /* no trajectory at all: the final sample and its lists only */
    s.d.n_steps = 0;
    s.d.steps = NULL;
    s.d.xhat = NULL;
    snprintf(path, sizeof path, "%s/final0.html", test_tmp);
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_OK, "%s", err.msg);
    html = read_text(path);
    n_img = NT + 2 * NT * TOPK - 1;
    cr_assert_eq(count_str(html, "<img "), n_img, "%zu <img> tags, want %zu",
                 count_str(html, "<img "), n_img);
    free(html);
    snprintf(path, sizeof path, "%s/final0.png", test_tmp);
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_OK, "%s", err.msg);
    int w, h, comp;
    unsigned char *pix = stbi_load(path, &w, &h, &comp, 3);
    cr_assert_not_null(pix);
    ReportFigureLayout L;
    cr_assert_eq(report_figure_layout(&s.d, &L, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(w, REPORT_FIG_GAP + L.cell_w + REPORT_FIG_GAP);
    cr_assert_eq(h, L.height);
    stbi_image_free(pix);
    synth_free(&s);
}

/* ---- PNG ---- */

static void check_png(int C) {
    Synth s;
    synth_init(&s, C);
    char path[512];
    snprintf(path, sizeof path, "%s/figure.png", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 1, "a temporary file was left behind");

    /* the layout formula of report.h, spelled out */
    const int F = REPORT_FIG_FRAME, G = REPORT_FIG_GAP;
    int sc = 64 / IW; /* 8x8 images: 8x */
    int cell_w = sc * IW + 2 * F, cell_h = sc * IH + 2 * F;
    int block_h = REPORT_FIG_LABEL_H + cell_h + G + 2 * TOPK * (cell_h + REPORT_FIG_SCORE_H + G) +
                  REPORT_FIG_SEP_H;
    int want_w = G + (NS + 1) * (cell_w + G);
    int want_h = G + NT * block_h + (NT - 1) * REPORT_FIG_TARGET_SEP_H;
    ReportFigureLayout L;
    cr_assert_eq(report_figure_layout(&s.d, &L, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(L.scale, sc);
    cr_assert_eq(L.width, want_w);
    cr_assert_eq(L.height, want_h);

    int w, h, comp;
    unsigned char *pix = stbi_load(path, &w, &h, &comp, 3);
    cr_assert_not_null(pix, "stb cannot read %s: %s", path, stbi_failure_reason());
    cr_assert_eq(w, want_w, "width %d, want %d", w, want_w);
    cr_assert_eq(h, want_h, "height %d, want %d", h, want_h);

    /* tiles: (x, y) of the image inside its frame, and the source image */
    size_t img = (size_t)C * IH * IW;
    int row0_y = G + REPORT_FIG_LABEL_H + F;
    int pro0_y = G + REPORT_FIG_LABEL_H + cell_h + G + F;
    int opp0_y = pro0_y - F + TOPK * (cell_h + REPORT_FIG_SCORE_H + G) + REPORT_FIG_SEP_H + F;
    int t1_y = G + block_h + REPORT_FIG_TARGET_SEP_H + REPORT_FIG_LABEL_H + F;
    struct {
        const char *what;
        int x, y;
        const float *src;
    } tiles[] = {
        {"x0-hat (target 0, t=900)", G + F, row0_y, s.xhat},
        {"x0-hat (target 0, t=100)", G + 2 * (cell_w + G) + F, row0_y, s.xhat + 2 * img},
        {"final sample of target 0", G + NS * (cell_w + G) + F, row0_y, s.final},
        {"proponent 0 (target 0, t=500)", G + (cell_w + G) + F, pro0_y,
         s.train + s.pro_idx[TOPK] * img},
        {"opponent 0 (target 0, t=900)", G + F, opp0_y, s.train + s.opp_idx[0] * img},
        {"x0-hat (target 1, t=900)", G + F, t1_y, s.xhat + NS * img},
    };
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
        uint8_t want[3 * IH * IW];
        png_f32_to_u8(want, tiles[k].src, C, IH, IW);
        for (int i = 0; i < sc * IH; i++)
            for (int j = 0; j < sc * IW; j++)
                for (int ch = 0; ch < 3; ch++) {
                    uint8_t got =
                        pix[((size_t)(tiles[k].y + i) * (size_t)w + (size_t)(tiles[k].x + j)) * 3 +
                            (size_t)ch];
                    uint8_t exp = want[((i / sc) * IW + j / sc) * C + (C == 3 ? ch : 0)];
                    cr_assert_eq(got, exp, "%s: pixel (%d, %d) channel %d is %u, want %u",
                                 tiles[k].what, i, j, ch, got, exp);
                }
    }
    /* frames: green around proponents, red around opponents (their top-left corner pixel) */
    const unsigned char *pg = pix + ((size_t)(pro0_y - F) * (size_t)w + (size_t)G) * 3;
    cr_assert(pg[1] > 120 && pg[0] < 80 && pg[2] < 100, "proponent frame is not green: %u %u %u",
              pg[0], pg[1], pg[2]);
    const unsigned char *pr = pix + ((size_t)(opp0_y - F) * (size_t)w + (size_t)G) * 3;
    cr_assert(pr[0] > 150 && pr[1] < 80 && pr[2] < 80, "opponent frame is not red: %u %u %u", pr[0],
              pr[1], pr[2]);
    const unsigned char *pt = pix + ((size_t)(row0_y - F) * (size_t)w + (size_t)G) * 3;
    cr_assert(pt[0] == pt[1] && pt[1] == pt[2] && pt[0] > 100 && pt[0] < 250,
              "trajectory frame is not gray: %u %u %u", pt[0], pt[1], pt[2]);
    /* the corner gap is background */
    cr_assert(pix[0] == 255 && pix[1] == 255 && pix[2] == 255);
    stbi_image_free(pix);
    synth_free(&s);
}

Test(report, png_gray) {
    check_png(1);
}
Test(report, png_rgb) {
    check_png(3);
}

Test(report, png_scale_for_28x28) {
    /* 28x28 (MNIST-sized) images are shown at 2x */
    ReportData d = {.n_targets = 1, .n_steps = 1, .topk = 0, .C = 1, .H = 28, .W = 28};
    ReportFigureLayout L;
    JtError err = {{0}};
    cr_assert_eq(report_figure_layout(&d, &L, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(L.scale, 2);
    cr_assert_eq(L.cell_w, 56 + 2 * REPORT_FIG_FRAME);
    cr_assert_eq(L.width, REPORT_FIG_GAP + 2 * (L.cell_w + REPORT_FIG_GAP));
}

Test(report, sample_grid_of_small_images_is_scaled_up) {
    /* 8 gray 8x8 images in 3 columns: scaled 22x (ceil(512 / 24)) by nearest neighbour; every
     * pixel of a tile is its source pixel */
    enum { N = 8, H = 8, W = 8, COLS = 3 };
    float x[N * H * W];
    for (int i = 0; i < N * H * W; i++) x[i] = (float)((i * 37) % 255) / 127.0f - 1.0f;
    char path[512];
    snprintf(path, sizeof path, "%s/grid.png", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(png_write_grid(path, x, N, 1, H, W, COLS, &err), JT_OK, "%s", err.msg);
    const int s = png_grid_scale(COLS, W);
    cr_assert_eq(s, 22);
    int w, h, c;
    unsigned char *pix = stbi_load(path, &w, &h, &c, 1);
    cr_assert(pix != NULL);
    cr_assert_eq(w, COLS * W * s + (COLS + 1) * 2);
    cr_assert_geq(w, PNG_GRID_MIN_WIDTH);
    cr_assert_eq(h, 3 * H * s + 4 * 2);
    uint8_t tile[H * W];
    for (int i = 0; i < N; i++) {
        png_f32_to_u8(tile, x + i * H * W, 1, H, W);
        int oy = 2 + (i / COLS) * (H * s + 2), ox = 2 + (i % COLS) * (W * s + 2);
        for (int y = 0; y < H * s; y++)
            for (int xx = 0; xx < W * s; xx++)
                cr_assert_eq(pix[(oy + y) * w + ox + xx], tile[(y / s) * W + xx / s],
                             "image %d pixel (%d, %d)", i, y, xx);
    }
    stbi_image_free(pix);
    /* images already wide enough are not scaled */
    cr_assert_eq(png_grid_scale(4, 256), 1);
}

/* ---- bad input ---- */

Test(report, unwritable_path_fails_and_leaves_nothing) {
    Synth s;
    synth_init(&s, 1);
    char path[512];
    JtError err = {{0}};
    snprintf(path, sizeof path, "%s/no/such/folder/report.html", test_tmp);
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, path), "error does not name the path: %s", err.msg);
    snprintf(path, sizeof path, "%s/no/such/folder/figure.png", test_tmp);
    err.msg[0] = '\0';
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, path), "error does not name the path: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 0);

    /* a path that is a folder: the temporary file is written, the rename fails, nothing is left */
    snprintf(path, sizeof path, "%s/taken", test_tmp);
    cr_assert_eq(mkdir(path, 0755), 0);
    err.msg[0] = '\0';
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, path), "error does not name the path: %s", err.msg);
    err.msg[0] = '\0';
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, path), "error does not name the path: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 1, "a temporary file was left behind");
    cr_assert_eq(count_entries(path), 0);
    synth_free(&s);
}

Test(report, no_targets_refused) {
    Synth s;
    synth_init(&s, 1);
    s.d.n_targets = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, "n_targets = 0"), "unclear message: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, "no targets"), "unclear message: %s", err.msg);
    snprintf(path, sizeof path, "%s/figure.png", test_tmp);
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, "n_targets = 0"), "unclear message: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 0);
    synth_free(&s);
}

Test(report, bad_training_row_refused) {
    Synth s;
    synth_init(&s, 1);
    /* the second opponent of target 1 at the second step (t=500) */
    s.opp_idx[(1 * NS + 1) * TOPK + 1] = NTRAIN + 89;
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", test_tmp);
    JtError err = {{0}};
    cr_assert_eq(report_write_html(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, "opponent #2 of target 1 at step t=500 is training row 99"),
                       "unclear message: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, "10 rows"), "unclear message: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 0);

    s.opp_idx[(1 * NS + 1) * TOPK + 1] = 0;
    s.d.C = 2;
    cr_assert_eq(report_write_png(path, &s.d, &err), JT_ERR);
    cr_assert_not_null(strstr(err.msg, "2 channels"), "unclear message: %s", err.msg);
    cr_assert_eq(count_entries(test_tmp), 0);
    synth_free(&s);
}
