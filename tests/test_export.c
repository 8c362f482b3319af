/* test_export.c: `jtrak export` (cli/cmd_export.c), a dataset's rows as NNNNN.png + captions.csv:
 *   - the round trip: --data captions:DIR/captions.csv gives back the source's pixels row for row
 *     (Fashion-MNIST when Debian's dataset-fashion-mnist is installed; a labelled RGB image folder
 *     made here always), the templated captions ("{class}" = data_class_name), no labels;
 *   - RFC 4180 quoting of commas, quotes, newlines and edge spaces (captions_csv_field, and class
 *     names that need it read back through the CSV reader);
 *   - a captioned source keeps its own captions; --size/--fit/--color apply as for any command;
 *   - the same export again is a no-op (files untouched); every refusal (no caption and no
 *     template, {class} without labels, an empty caption, bad UTF-8, a latent source, an --out
 *     holding something else or another export, usage errors) is one line, and leaves nothing. */
#include "data/captions.h"
#include "data/dataset.h"
#include "helpers/cli_run.h"
#include "helpers/read_file.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/png.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(export, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 300);

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmp, name);
    return buf[k];
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void jtrak_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void jtrak_ok(const char *fmt, ...) {
    char args[4096], e[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_eq(cli_run(args, e, sizeof e), 0, "jtrak %s: %s", args, e);
}

static void load_spec(Dataset *ds, const char *data, const char *more_key, const char *more_val) {
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    cr_assert(data_spec_set(&s, "data", data, &err) == JT_OK, "%s", err.msg);
    if (more_key) cr_assert(data_spec_set(&s, more_key, more_val, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&s, ds, &err) == JT_OK, "%s: %s", data, err.msg);
    data_spec_free(&s);
}

/* No DIR.tmp-* beside DIR: a refused or finished export leaves no temporary folder. */
static void assert_no_tmp(void) {
    DIR *d = opendir(test_tmp);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        cr_assert_null(strstr(e->d_name, ".tmp-"), "left behind: %s", e->d_name);
    closedir(d);
}

/* Rows equal pixel for pixel (same shape), b read back from a's export. */
static void assert_same_pixels(const Dataset *a, const Dataset *b) {
    cr_assert(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w,
              "%zu x %dx%dx%d vs %zu x %dx%dx%d", a->n, a->c, a->h, a->w, b->n, b->c, b->h, b->w);
    size_t per = (size_t)a->c * a->h * a->w;
    for (size_t i = 0; i < a->n; i++)
        cr_assert(memcmp(a->pixels + i * per, b->pixels + i * per, per) == 0, "row %zu differs", i);
}

/* A labelled RGB folder source: SRC/<class>/<k>.png, classes whose names need CSV quoting. */
static const char *const CLASSES[3] = {"bag, small", "say \"hi\"", "coat"};
static void make_folder_source(const char *dir, int per_class) {
    char p[1024];
    uint8_t pix[6 * 5 * 3];
    JtError err;
    for (int c = 0; c < 3; c++) {
        snprintf(p, sizeof p, "%s/%s", dir, CLASSES[c]);
        cr_assert(mkdir(dir, 0755) == 0 || exists(dir));
        cr_assert(mkdir(p, 0755) == 0, "%s", p);
        for (int k = 0; k < per_class; k++) {
            for (size_t i = 0; i < sizeof pix; i++)
                pix[i] = (uint8_t)(i * 7 + c * 50 + k * 13);
            snprintf(p, sizeof p, "%s/%s/%d.png", dir, CLASSES[c], k);
            cr_assert(png_write(p, pix, 6, 5, 3, &err) == JT_OK, "%s", err.msg);
        }
    }
}

/* ---- the CSV field writer ------------------------------------------------------------------- */

Test(export, csv_field_quoting) {
    static const struct {
        const char *in, *want;
    } cases[] = {{"a photo of a bag", "a photo of a bag"},
                 {"bag, small", "\"bag, small\""},
                 {"say \"hi\"", "\"say \"\"hi\"\"\""},
                 {"two\nlines", "\"two\nlines\""},
                 {"cr\r\nlf", "\"cr\r\nlf\""},
                 {" lead", "\" lead\""},
                 {"trail ", "\"trail \""},
                 {"", "\"\""},
                 {"caf\xc3\xa9", "caf\xc3\xa9"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *f = captions_csv_field(cases[i].in);
        cr_assert_str_eq(f, cases[i].want, "case %zu", i);
        free(f);
    }
    /* and the reader gives every non-empty one back (the reader refuses empty captions) */
    char csv[4096] = "file,caption\n";
    size_t n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (!cases[i].in[0]) continue;
        char *f = captions_csv_field(cases[i].in);
        size_t len = strlen(csv);
        snprintf(csv + len, sizeof csv - len, "%zu.png,%s\n", i, f);
        free(f);
        n++;
    }
    Captions c;
    JtError err;
    cr_assert(captions_parse(&c, CAPTIONS_CSV, csv, strlen(csv), "t.csv", "/x", &err) == JT_OK,
              "%s", err.msg);
    cr_assert_eq(c.n, n);
    for (size_t i = 0, r = 0; i < sizeof cases / sizeof *cases; i++)
        if (cases[i].in[0]) cr_assert_str_eq(captions_text(&c, r++, 0), cases[i].in);
    captions_free(&c);
}

/* ---- round trips ---------------------------------------------------------------------------- */

Test(export, fashion_mnist_round_trip) {
    if (!exists(DATA_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz") &&
        !exists(DATA_FASHION_MNIST_DIR "/train-images-idx3-ubyte"))
        cr_skip_test("Debian's dataset-fashion-mnist is not installed");
    jtrak_ok("export --data fashion-mnist --limit 25 --caption 'a photo of a {class}' --out %s "
             "--quiet",
             tpath("fm"));
    Dataset src, back;
    load_spec(&src, "fashion-mnist", "limit", "25");
    char data[600];
    snprintf(data, sizeof data, "captions:%s", tpath("fm/captions.csv"));
    load_spec(&back, data, NULL, NULL);
    assert_same_pixels(&src, &back);
    for (size_t i = 0; i < src.n; i++) {
        char want[128], name[16];
        snprintf(want, sizeof want, "a photo of a %s", data_class_name(&src, src.labels[i]));
        cr_assert_str_eq(data_item_caption(&back, i), want, "row %zu", i);
        snprintf(name, sizeof name, "%05zu.png", i);
        cr_assert_str_eq(data_item_name(&back, i), name);
        cr_assert_eq(back.labels[i], -1); /* a captions: source has no labels */
    }
    cr_assert_str_eq(data_item_caption(&back, 0), "a photo of a Ankle boot");
    /* the manifest records what was exported */
    JtError err;
    cJSON *m = json_load_file(tpath("fm/manifest.json"), &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_str_eq(json_str(m, "format"), "jtrak-export-v1");
    char fp[17];
    cr_assert_str_eq(json_str(m, "dataset_fingerprint"), data_fingerprint_hex(&src, fp));
    cr_assert_str_eq(json_str(m, "dataset"), src.description);
    cr_assert_str_eq(json_str(m, "caption_template"), "a photo of a {class}");
    cJSON_Delete(m);
    data_free(&src);
    data_free(&back);
    assert_no_tmp();
}

Test(export, rgb_folder_round_trip_quoted_classes) {
    make_folder_source(tpath("src"), 2);
    char src_spec[600];
    snprintf(src_spec, sizeof src_spec, "folder:%s", tpath("src"));
    /* a template with a comma and quotes of its own, {class} twice */
    jtrak_ok("export --data %s --caption '{class}, that is: \"{class}\"' --out %s --quiet",
             src_spec, tpath("ex"));
    Dataset src, back;
    load_spec(&src, src_spec, NULL, NULL);
    char data[600];
    snprintf(data, sizeof data, "captions:%s", tpath("ex/captions.csv"));
    load_spec(&back, data, NULL, NULL);
    cr_assert_eq(src.c, 3);
    assert_same_pixels(&src, &back);
    for (size_t i = 0; i < src.n; i++) {
        /* the folder's classes in byte order: "bag, small", "coat", "say \"hi\"" */
        const char *cls = data_class_name(&src, src.labels[i]);
        cr_assert_str_eq(cls, CLASSES[src.labels[i] == 0 ? 0 : src.labels[i] == 1 ? 2 : 1]);
        char want[256];
        snprintf(want, sizeof want, "%s, that is: \"%s\"", cls, cls);
        cr_assert_str_eq(data_item_caption(&back, i), want, "row %zu", i);
    }
    /* the file quotes what needs it */
    char *csv = test_read_file(tpath("ex/captions.csv"), NULL);
    cr_assert(strncmp(csv, "file,caption\n00000.png,\"", 24) == 0, "%.60s", csv);
    free(csv);
    data_free(&back);

    /* a captioned source keeps its own captions (the template is not used) ... */
    jtrak_ok("export --data %s --caption 'unused {class}' --out %s --quiet", data, tpath("ex2"));
    char data2[600];
    snprintf(data2, sizeof data2, "captions:%s", tpath("ex2/captions.csv"));
    load_spec(&back, data2, NULL, NULL);
    assert_same_pixels(&src, &back);
    Dataset first;
    load_spec(&first, data, NULL, NULL);
    for (size_t i = 0; i < src.n; i++)
        cr_assert_str_eq(data_item_caption(&back, i), data_item_caption(&first, i));
    data_free(&first);
    data_free(&back);

    /* ... and the data options apply: gray, padded to 8x8, the class filter and a limit */
    jtrak_ok("export --data %s --classes coat --limit 1 --color gray --size 8 --fit pad "
             "--caption 'a {class}' --out %s --quiet",
             src_spec, tpath("ex3"));
    Dataset sel;
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    cr_assert(data_spec_set(&s, "data", src_spec, &err) == JT_OK);
    cr_assert(data_spec_set(&s, "classes", "coat", &err) == JT_OK);
    cr_assert(data_spec_set(&s, "limit", "1", &err) == JT_OK);
    cr_assert(data_spec_set(&s, "color", "gray", &err) == JT_OK);
    cr_assert(data_spec_set(&s, "fit", "pad", &err) == JT_OK);
    cr_assert(data_spec_set(&s, "size", "8", &err) == JT_OK);
    cr_assert(data_load(&s, &sel, &err) == JT_OK, "%s", err.msg);
    data_spec_free(&s);
    char data3[600];
    snprintf(data3, sizeof data3, "captions:%s", tpath("ex3/captions.csv"));
    load_spec(&back, data3, NULL, NULL);
    cr_assert_eq(back.c, 1);
    assert_same_pixels(&sel, &back);
    cr_assert_str_eq(data_item_caption(&back, 0), "a coat");
    data_free(&back);
    data_free(&sel);
    data_free(&src);
    assert_no_tmp();
}

Test(export, same_export_again_is_a_no_op) {
    make_folder_source(tpath("src"), 1);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "export --data folder:%s --caption 'a {class}' --out %s",
             tpath("src"), tpath("ex"));
    jtrak_ok("%s --quiet", cmd);
    struct stat a, b;
    cr_assert(stat(tpath("ex/00000.png"), &a) == 0);
    char out[1024], err[4096];
    cr_assert_eq(cli_run_out(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(err, "already holds this export") != NULL, "%s", err);
    cr_assert(strstr(out, tpath("ex")) != NULL, "%s", out);
    cr_assert(stat(tpath("ex/00000.png"), &b) == 0);
    cr_assert(a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
                  a.st_mtim.tv_nsec == b.st_mtim.tv_nsec,
              "the PNG was rewritten");
    /* an empty --out folder is taken */
    cr_assert(mkdir(tpath("empty"), 0755) == 0);
    jtrak_ok("export --data folder:%s --caption 'a {class}' --out %s --quiet", tpath("src"),
             tpath("empty"));
    cr_assert(exists(tpath("empty/captions.csv")));
    assert_no_tmp();
}

/* ---- refusals ------------------------------------------------------------------------------- */

Test(export, refusals) {
    make_folder_source(tpath("src"), 1);
    char err[8192];
    char src[512];
    snprintf(src, sizeof src, "%s", tpath("src"));
    /* a source without captions and no template */
    static const char *const w_notmpl[] = {"has no caption", "--caption TEMPLATE", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_notmpl, "export --data folder:%s --out %s",
                       src, tpath("o1"));
    cr_assert(!exists(tpath("o1")));
    /* {class} for unlabelled rows (a flat folder) */
    cr_assert(mkdir(tpath("flat"), 0755) == 0);
    uint8_t px[4] = {1, 2, 3, 4};
    JtError e;
    cr_assert(png_write(tpath("flat/a.png"), px, 2, 2, 1, &e) == JT_OK);
    static const char *const w_nolabel[] = {"{class} needs the row's class name", "no label", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_nolabel,
                       "export --data folder:%s --caption 'a {class}' --out %s", tpath("flat"),
                       tpath("o2"));
    cr_assert(!exists(tpath("o2")));
    /* without {class} an unlabelled source takes the template as it is */
    jtrak_ok("export --data folder:%s --caption 'a thing' --out %s --quiet", tpath("flat"),
             tpath("o3"));
    /* an empty caption */
    static const char *const w_empty[] = {"is empty", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_empty,
                       "export --data folder:%s --caption '' --out %s", src, tpath("o4"));
    /* not UTF-8: a usage error */
    static const char *const w_utf8[] = {"--caption", "UTF-8", NULL};
    cli_expect_failure(err, sizeof err, 2, "export", w_utf8,
                       "export --data folder:%s --caption \"$(printf 'a \\377 {class}')\" --out %s",
                       src, tpath("o5"));
    /* usage: no --out, an unknown option, a bad data option */
    static const char *const w_out[] = {"--out DIR is required", NULL};
    cli_expect_failure(err, sizeof err, 2, "export", w_out, "export --data folder:%s", src);
    static const char *const w_unk[] = {"--frobnicate", NULL};
    cli_expect_failure(err, sizeof err, 2, "export", w_unk,
                       "export --data folder:%s --out %s --frobnicate 1", src, tpath("o6"));
    static const char *const w_fit[] = {"--fit", NULL};
    cli_expect_failure(err, sizeof err, 2, "export", w_fit,
                       "export --data folder:%s --out %s --fit sideways", src, tpath("o6"));
    static const char *const w_size[] = {"--size banana", NULL};
    cli_expect_failure(err, sizeof err, 2, "export", w_size,
                       "export --data folder:%s --out %s --size banana", src, tpath("o6"));
    /* a source that does not load */
    static const char *const w_missing[] = {"nowhere", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_missing,
                       "export --data folder:%s/nowhere --caption x --out %s", test_tmp,
                       tpath("o6"));
    cr_assert(!exists(tpath("o6")));

    /* --out: a file, a folder holding other things, another artifact, another export */
    FILE *f = fopen(tpath("afile"), "w");
    fputs("x", f);
    fclose(f);
    static const char *const w_file[] = {"afile", "not a folder", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_file,
                       "export --data folder:%s --caption x --out %s", src, tpath("afile"));
    cr_assert(mkdir(tpath("busy"), 0755) == 0);
    f = fopen(tpath("busy/notes.txt"), "w");
    fputs("mine", f);
    fclose(f);
    static const char *const w_busy[] = {"busy", "not an image export", "notes.txt", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_busy,
                       "export --data folder:%s --caption x --out %s", src, tpath("busy"));
    cr_assert(mkdir(tpath("store"), 0755) == 0);
    f = fopen(tpath("store/manifest.json"), "w");
    fputs("{\"format\": \"jtrak-features-v1\"}", f);
    fclose(f);
    static const char *const w_store[] = {"a feature store", "not an image export", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_store,
                       "export --data folder:%s --caption x --out %s", src, tpath("store"));
    jtrak_ok("export --data folder:%s --caption 'a {class}' --out %s --quiet", src, tpath("ex"));
    static const char *const w_other[] = {"holds another export", "give a new or empty --out",
                                          NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_other,
                       "export --data folder:%s --caption 'the {class}' --out %s", src,
                       tpath("ex"));
    cli_expect_failure(err, sizeof err, 1, "export", w_other,
                       "export --data folder:%s --limit 2 --caption 'a {class}' --out %s", src,
                       tpath("ex"));
    /* the export was left as it was, and an export folder is protected from other commands */
    char *csv = test_read_file(tpath("ex/captions.csv"), NULL);
    cr_assert(strstr(csv, "a coat") != NULL);
    free(csv);
    static const char *const w_prot[] = {"an image export", NULL};
    cli_expect_failure(
        err, sizeof err, 1, "train", w_prot,
        "train --config t8 --data folder:%s --color gray --size 8 --fit resize --steps 1 "
        "--out %s --quiet",
        src, tpath("ex"));
    assert_no_tmp();
}

/* A latent source has no pixels: refused, naming it. */
Test(export, latent_source_refused) {
    make_folder_source(tpath("src"), 2);
    jtrak_ok("train-vae --data folder:%s --color gray --size 32 --fit pad --steps 1 --batch 2 "
             "--out %s --quiet",
             tpath("src"), tpath("vae"));
    jtrak_ok("encode --vae %s --data folder:%s --color gray --size 32 --fit pad --out %s --quiet",
             tpath("vae"), tpath("src"), tpath("lat.npy"));
    char err[8192];
    static const char *const w_lat[] = {"latent rows have no pixels", NULL};
    cli_expect_failure(err, sizeof err, 1, "export", w_lat,
                       "export --data latents:%s --caption x --out %s", tpath("lat.npy"),
                       tpath("o"));
    cr_assert(!exists(tpath("o")));
    assert_no_tmp();
}
