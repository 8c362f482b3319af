/* test_journey.c: what a new user meets on the way from their own images to a report (issue 16):
 * a folder of PNGs in class sub-folders whose file names reach topk.json and the HTML page, a
 * non-square model trained, sampled, featurized and scored end to end, the size an architecture
 * cannot take refused with its divisor, the recipe train uses when given none, and the help that
 * says which folder layouts are read. Each stage runs the jtrak binary as a user would. */
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/npy.h"
#include "io/png.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(journey, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 600);

static char g_err[16384], g_out[65536];

/* Runs jtrak with printf-style arguments and asserts it succeeded. */
static void run_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run_ok(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = cli_run_out(args, g_out, sizeof g_out, g_err, sizeof g_err);
    cr_assert_eq(rc, 0, "jtrak %s: exit %d; stderr: %s", args, rc, g_err);
}

static char *slurp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *slurp(const char *fmt, ...) {
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static int exists(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A two-level 8-16 channel U-Net (divisor 2), small enough for a few steps in a test. */
static void write_tiny_config(const char *sub, const char *sample_size) {
    char p[512], cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"_class_name\":\"UNet2DModel\",\"sample_size\":%s,\"in_channels\":1,"
             "\"out_channels\":1,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
             "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
             "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}",
             sample_size);
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fputs(cfg, f);
    fclose(f);
}

/* Every proponent and opponent of topk.json, checked by check(item, arg). Returns the count. */
static int for_each_listed(const char *topk_text, void (*check)(const cJSON *, void *), void *arg) {
    cJSON *root = cJSON_Parse(topk_text);
    cr_assert(root != NULL, "topk.json does not parse");
    const cJSON *res = cJSON_GetObjectItem(root, "results"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, res) {
        for (int side = 0; side < 2; side++) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItem(e, side ? "opponents" : "proponents")) {
                check(it, arg);
                n++;
            }
        }
    }
    cJSON_Delete(root);
    return n;
}

/* The folder test's layout: classes "bag" and "coat" (sorted: labels 0, 1), three files each,
 * named so that byte order differs from creation order. Source index i is names[i]. */
static const char *const FOLDER_FILES[6] = {"bag/a1.png",  "bag/b2.png",  "bag/c3.png",
                                            "coat/x1.png", "coat/y2.png", "coat/z3.png"};

static void check_file_name(const cJSON *it, void *arg) {
    (void)arg;
    const cJSON *src = cJSON_GetObjectItem(it, "source_index");
    const cJSON *file = cJSON_GetObjectItem(it, "file");
    cr_assert(cJSON_IsNumber(src) && cJSON_IsString(file), "an entry lacks source_index or file");
    int si = src->valueint;
    cr_assert(si >= 0 && si < 6, "source_index %d", si);
    /* the name is the one of that source image, relative to the folder: not a neighbour's, not
     * an absolute path */
    cr_expect_str_eq(file->valuestring, FOLDER_FILES[si], "row of source image %d", si);
    cr_expect(!cJSON_GetObjectItem(it, "caption"), "a folder has no captions");
}

/* folder: data in class sub-folders: file names beside the rows in topk.json and the report. */
Test(journey, folder_file_names_reach_topk_and_report) {
    const char *t = test_tmp;
    char p[512];
    JtError err;
    mkdir((snprintf(p, sizeof p, "%s/imgs", t), p), 0755);
    mkdir((snprintf(p, sizeof p, "%s/imgs/bag", t), p), 0755);
    mkdir((snprintf(p, sizeof p, "%s/imgs/coat", t), p), 0755);
    /* written in reverse so that the directory order is unlikely to be the sorted one */
    for (int i = 5; i >= 0; i--) {
        uint8_t px[64];
        for (int j = 0; j < 64; j++)
            px[j] = (uint8_t)((j * (i + 3) * 29 + i * 71) & 255);
        snprintf(p, sizeof p, "%s/imgs/%s", t, FOLDER_FILES[i]);
        cr_assert(png_write_gray(p, px, 8, 8, &err) == JT_OK, "%s", err.msg);
    }
    write_tiny_config("tiny.json", "8");
    /* --indices keeps the rows in an order other than the source's: row != source index */
    FILE *f = fopen((snprintf(p, sizeof p, "%s/idx.txt", t), p), "w");
    fputs("4\n1\n5\n0\n3\n2\n", f);
    fclose(f);
    /* a trailing slash, as shells complete folder names: still names relative to the folder */
    const char *data = "--data folder:%s/imgs/ --indices %s/idx.txt";
    char d[1200];
    snprintf(d, sizeof d, data, t, t);
    run_ok("train --config %s/tiny.json %s --steps 3 --batch 4 --quiet --out %s/m", t, d, t);
    run_ok("sample --model %s/m --out %s/s --n 2 --steps 4 --quiet", t, t);
    run_ok("featurize --models %s/m %s --k 4 --S 2 --batch 3 --quiet --out %s/f", t, d, t);
    run_ok("score --store %s/f --trajectory %s/s/trajectory.safetensors --steps all --R 1 "
           "--topk 3 --quiet --out %s/sc",
           t, t, t);
    run_ok("report --scores %s/sc", t);

    char *topk = slurp("%s/sc/topk.json", t);
    int n = for_each_listed(topk, check_file_name, NULL);
    cr_expect_eq(n, 2 * 4 * 2 * 3, "2 targets x 4 steps x (3 proponents + 3 opponents)");
    free(topk);

    char *html = slurp("%s/sc/report.html", t);
    int shown = 0;
    for (int i = 0; i < 6; i++)
        shown += strstr(html, FOLDER_FILES[i]) != NULL;
    /* 3 of 6 rows on each side of every cell: at least 3 different files are on the page */
    cr_expect(shown >= 3, "the report shows %d of the training file names", shown);
    /* names relative to the folder (CLASS/NAME), not absolute paths */
    cr_expect(strstr(html, "class=\"file\">bag/") || strstr(html, "class=\"file\">coat/"),
              "no CLASS/NAME file line in the captions");
    cr_expect(!strstr(html, "class=\"file\">/"), "a file is shown by its absolute path");
    free(html);
}

/* The data help of every command that reads training data says which folder layouts are read. */
Test(journey, help_names_the_folder_layouts) {
    const char *cmds[] = {"train", "featurize", "score"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        run_ok("%s --help", cmds[i]);
        cr_expect(strstr(g_out, "DIR/*.png (unlabelled)"), "%s --help: flat layout", cmds[i]);
        cr_expect(strstr(g_out, "DIR/CLASS/*.png (labelled"), "%s --help: class layout", cmds[i]);
        cr_expect(strstr(g_out, "sorted order"), "%s --help: how labels are numbered", cmds[i]);
    }
}

/* n random gray h x w images (uint8 (n, h, w) .npy) at sub, labels 0..2 beside them at lab.npy. */
static void write_npy_images(const char *sub, size_t n, int h, int w) {
    uint8_t *pix = malloc(n * (size_t)h * (size_t)w);
    int64_t *lab = malloc(n * sizeof(int64_t));
    for (size_t i = 0; i < n * (size_t)h * (size_t)w; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (size_t i = 0; i < n; i++)
        lab[i] = (int64_t)(i % 3);
    char p[512];
    size_t shape[3] = {n, (size_t)h, (size_t)w}, ls[1] = {n};
    JtError err;
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    cr_assert(npy_write(p, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/lab.npy", test_tmp);
    cr_assert(npy_write(p, NPY_I64, 1, ls, lab, &err) == JT_OK, "%s", err.msg);
    free(pix);
    free(lab);
}

/* An 8x12 model from a shipped config (t8 is an 8x8 architecture; the data's size wins), trained
 * for a few steps, sampled, featurized, scored and reported: every stage takes H != W. */
Test(journey, non_square_model_end_to_end) {
    const char *t = test_tmp;
    write_npy_images("img.npy", 6, 8, 12);
    run_ok("train --config t8 --data npy:%s/img.npy --steps 2 --batch 3 --out %s/m", t, t);
    cr_expect(strstr(g_err, "8x12"), "the train: line does not show the size: %s", g_err);
    char *cfg = slurp("%s/m/config.json", t);
    cr_expect(strstr(cfg, "\"sample_size\": [8, 12]"), "config.json: %s", cfg);
    free(cfg);
    run_ok("info %s/m", t);
    cr_expect(strstr(g_out, "8x12"), "info: %s", g_out);
    run_ok("sample --model %s/m --out %s/s --n 2 --steps 3 --quiet", t, t);
    run_ok("featurize --models %s/m --data npy:%s/img.npy --k 4 --S 2 --quiet --out %s/f", t, t, t);
    run_ok("score --store %s/f --trajectory %s/s/trajectory.safetensors --steps all --R 1 "
           "--topk 2 --quiet --out %s/sc",
           t, t, t);
    run_ok("report --scores %s/sc", t);
    char *html = slurp("%s/sc/report.html", t);
    /* the images are shown at their aspect: 12 wide for 8 high (an upscale of both) */
    int w = 0, h = 0;
    const char *img = strstr(html, "<img src=");
    cr_assert(img && sscanf(strstr(img, "width=\""), "width=\"%d\" height=\"%d\"", &w, &h) == 2);
    cr_expect(w * 8 == h * 12, "report image %dx%d is not 12:8", w, h);
    free(html);

    /* The trained model refuses square data of its old preset size, naming [8, 12]. */
    write_npy_images("sq.npy", 6, 8, 8);
    char args[1024];
    snprintf(args, sizeof args,
             "featurize --models %s/m --data npy:%s/sq.npy --k 4 --S 2 --quiet --out %s/f2", t, t,
             t);
    cr_expect_eq(cli_run(args, g_err, sizeof g_err), 1, "%s", g_err);
    cr_expect(strstr(g_err, "8x8") && strstr(g_err, "8x12"), "%s", g_err);
    cr_expect(!exists("f2"), "a refused featurize left its store");
}

/* --size picks the geometry of a shipped config; a size the architecture cannot take is one line
 * naming the divisor, before any data is read, and nothing is left behind. */
Test(journey, train_size_and_its_divisor) {
    const char *t = test_tmp;
    write_npy_images("img.npy", 6, 12, 16);
    char args[1024];
    /* fm-xs: 3 levels, sides must be multiples of 4 */
    snprintf(args, sizeof args,
             "train --config fm-xs --size 12x18 --data npy:%s/img.npy --fit resize --out %s/o", t,
             t);
    cr_expect_eq(cli_run(args, g_err, sizeof g_err), 1, "%s", g_err);
    cr_expect(strncmp(g_err, "jtrak train: --size 12x18:", 26) == 0, "%s", g_err);
    cr_expect(strstr(g_err, "multiples of 4") && strstr(g_err, "3-level"), "%s", g_err);
    cr_expect(strstr(g_err, "--size 12x16") && strstr(g_err, "--size 12x20"), "%s", g_err);
    const char *nl = strchr(g_err, '\n');
    cr_expect(nl && nl[1] == 0, "not one line: %s", g_err);
    /* the data's own size, when no --size: 10x10 does not fit fm-xs either */
    write_npy_images("ten.npy", 6, 10, 10);
    snprintf(args, sizeof args, "train --config fm-xs --data npy:%s/ten.npy --out %s/o", t, t);
    cr_expect_eq(cli_run(args, g_err, sizeof g_err), 1, "%s", g_err);
    cr_expect(strstr(g_err, "--config fm-xs at the data's size") && strstr(g_err, "10x10") &&
                  strstr(g_err, "multiples of 4") && strstr(g_err, "--size 8 or --size 12"),
              "%s", g_err);
    snprintf(args, sizeof args, "train --config fm-xs --size 0x3 --out %s/o", t);
    cr_expect_eq(cli_run(args, g_err, sizeof g_err), 2, "%s", g_err);
    cr_expect(strstr(g_err, "--size 0x3"), "%s", g_err);
    cr_expect(!exists("o"), "a refused train left its output folder");

    /* --size 8x12 with --fit resize: a 12x16 source brought to 8x12, the config says so */
    run_ok("train --config fm-xs --size 8x12 --data npy:%s/img.npy --fit resize --steps 1 "
           "--batch 2 --quiet --out %s/m",
           t, t);
    char *cfg = slurp("%s/m/config.json", t);
    cr_expect(strstr(cfg, "\"sample_size\": [8, 12]"), "config.json: %s", cfg);
    free(cfg);
}

/* What train takes when given no recipe: the measured recommendation, said on the train: line
 * and recorded in training.json; given values are kept and not called recommended. */
Test(journey, train_recommended_recipe) {
    const char *t = test_tmp;
    write_npy_images("img.npy", 6, 8, 8);
    /* a small set: the floor of 96,000 images seen, 1,500 steps of 64 */
    run_ok("train --config t8 --data npy:%s/img.npy --stop-after 1 --out %s/m", t, t);
    cr_expect(strstr(g_err, "1500 steps of 64, lr 0.002, warmup 100") &&
                  strstr(g_err, "(recommended steps, lr, warmup"),
              "%s", g_err);
    char *rec = slurp("%s/m/training.json", t);
    cJSON *root = cJSON_Parse(rec), *r = cJSON_GetObjectItem(root, "recipe");
    cr_assert(r, "training.json has no recipe: %s", rec);
    cr_expect_eq(cJSON_GetObjectItem(r, "steps")->valuedouble, 1500);
    cr_expect_float_eq(cJSON_GetObjectItem(r, "lr")->valuedouble, 2e-3, 1e-12);
    cr_expect_eq(cJSON_GetObjectItem(r, "warmup")->valuedouble, 100);
    cJSON_Delete(root);
    free(rec);
    /* 20 passes over 6000 images with batch 100: 1,200 steps (above the floor's 960) */
    write_npy_images("big.npy", 6000, 8, 8);
    run_ok("train --config t8 --data npy:%s/big.npy --batch 100 --lr 1e-3 --stop-after 1 "
           "--out %s/b",
           t, t);
    cr_expect(strstr(g_err, "1200 steps of 100, lr 0.001, warmup 100") &&
                  strstr(g_err, "(recommended steps, warmup:"),
              "%s", g_err);
    /* all given: nothing recommended */
    run_ok("train --config t8 --data npy:%s/img.npy --steps 2 --lr 1e-3 --warmup 1 --batch 2 "
           "--out %s/c",
           t, t);
    cr_expect(strstr(g_err, "2 steps of 2, lr 0.001, warmup 1") && !strstr(g_err, "recommended"),
              "%s", g_err);
}
