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
