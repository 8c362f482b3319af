/* test_captions.c: captioned datasets (issue 14 item 4):
 *   - the COCO captions_*.json, CSV and JSONL readers (data/captions.h) on the hand-made fixture
 *     tests/fixtures/captions/ (make_fixture.py): image order, captions per image in file order,
 *     RFC 4180 quoting, and every malformed input refused with a message naming file and entry;
 *   - the coco: and captions: sources: rows, item names, first captions, the pixels (the same
 *     files through folder:), selection, COCO's default image folder, descriptions read back;
 *   - encode-text --captions end to end on the tiny CLIP (tests/fixtures/clip/clip2_gelu, vocab
 *     1000) and tokenizer (tests/fixtures/tokenizer/clip_small, 869 ids, all < 1000): the (N, K, L,
 *     D) file equals each caption encoded alone, the manifest's fingerprints, the texts file;
 *   - a context file made for another dataset refused by context_load and by train. */
#include "data/captions.h"
#include "data/context.h"
#include "data/dataset.h"
#include "helpers/cli_run.h"
#include "helpers/tiny_cond.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "model/model.h"
#include "model/model_kind.h"
#include "text/text_encode.h"
#include "unet/unet.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FIX JTRAK_FIXTURES "/captions"
#define COCO FIX "/coco/annotations/captions_val2017.json"
#define CSV FIX "/plain/captions.csv"
#define JSONL FIX "/plain/captions.jsonl"
#define CLIP JTRAK_FIXTURES "/clip/clip2_gelu"
#define TOK JTRAK_FIXTURES "/tokenizer/clip_small"

TestSuite(captions, .init = test_tmp_setup, .fini = test_tmp_teardown, .timeout = 300);

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", test_tmp, name);
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---- readers --------------------------------------------------------------------------------- */

Test(captions, coco_order_and_captions) {
    Captions c;
    JtError err;
    cr_assert(captions_read(&c, CAPTIONS_COCO, COCO, "/imgs", &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(c.n, 3);
    /* the order of the "images" array (397, 139, 285), not sorted by id or name */
    cr_assert_eq(c.ids[0], 397);
    cr_assert_eq(c.ids[1], 139);
    cr_assert_eq(c.ids[2], 285);
    cr_assert_str_eq(c.names[1], "000000000139.png");
    cr_assert_str_eq(c.files[1], "/imgs/000000000139.png");
    cr_assert_eq(captions_count(&c, 0), 5);
    cr_assert_eq(captions_count(&c, 1), 5);
    cr_assert_eq(captions_count(&c, 2), 6);
    cr_assert_eq(c.n_texts, 16);
    /* each image's captions in annotation order, though the annotations interleave the images */
    cr_assert_str_eq(captions_text(&c, 0, 0), "A man is in a kitchen making pizzas.");
    cr_assert_str_eq(captions_text(&c, 0, 4), "A chef prepares food in a restaurant kitchen.");
    cr_assert_str_eq(captions_text(&c, 1, 1), "A room with chairs, a table, and a woman in it.");
    cr_assert_str_eq(captions_text(&c, 2, 5),
                     "A bear with a \xc3\xa9 in its caption, and \"quotes\".");
    captions_free(&c);
    /* without a root: the annotations file's folder */
    cr_assert(captions_read(&c, CAPTIONS_COCO, COCO, NULL, &err) == JT_OK, "%s", err.msg);
    cr_assert_str_eq(c.files[0], FIX "/coco/annotations/000000000397.png");
    captions_free(&c);
}

static void check_plain(const Captions *c) {
    cr_assert_eq(c->n, 3);
    cr_assert_null(c->ids);
    /* images in the order of their first record; b.png's two captions in file order */
    cr_assert_str_eq(c->names[0], "b.png");
    cr_assert_str_eq(c->names[1], "a.png");
    cr_assert_str_eq(c->names[2], "sub/c.png");
    cr_assert_str_eq(c->files[2], FIX "/plain/sub/c.png");
    cr_assert_eq(captions_count(c, 0), 2);
    cr_assert_str_eq(captions_text(c, 0, 0), "a red, round thing");
    cr_assert_str_eq(captions_text(c, 0, 1), "b's second caption");
    cr_assert_str_eq(captions_text(c, 1, 0), "a \"quoted\" word");
    cr_assert_str_eq(captions_text(c, 2, 0), "two\nlines");
}

Test(captions, csv_and_jsonl_agree) {
    Captions a, b;
    JtError err;
    cr_assert(captions_read(&a, CAPTIONS_CSV, CSV, NULL, &err) == JT_OK, "%s", err.msg);
    cr_assert(captions_read(&b, CAPTIONS_JSONL, JSONL, NULL, &err) == JT_OK, "%s", err.msg);
    check_plain(&a);
    check_plain(&b);
    const char *ta[4], *tb[4];
    for (size_t i = 0; i < 4; i++)
        ta[i] = a.texts[i], tb[i] = b.texts[i];
    cr_assert_eq(captions_fingerprint_texts(ta, 4), captions_fingerprint_texts(tb, 4));
    ta[3] = "other";
    cr_assert_neq(captions_fingerprint_texts(ta, 4), captions_fingerprint_texts(tb, 4));
    captions_free(&a);
    captions_free(&b);
}

static void parse_ok(CaptionsFormat fmt, const char *text, Captions *c) {
    JtError err;
    cr_assert(captions_parse(c, fmt, text, strlen(text), "mem.csv", "/r", &err) == JT_OK, "%s: %s",
              text, err.msg);
}

Test(captions, csv_quoting_cases) {
    Captions c;
    parse_ok(CAPTIONS_CSV,
             "\xef\xbb\xbf"
             "file,caption\r\n\"x,1.png\",\"\"\"\"\r\n"
             "/abs/y.png,\"a,b\r\nc\"\r\n\"x,1.png\",plain",
             &c);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.names[0], "x,1.png");
    cr_assert_str_eq(c.files[0], "/r/x,1.png");
    cr_assert_str_eq(captions_text(&c, 0, 0), "\"");
    cr_assert_str_eq(captions_text(&c, 0, 1), "plain");
    cr_assert_str_eq(c.files[1], "/abs/y.png");
    cr_assert_str_eq(captions_text(&c, 1, 0), "a,b\r\nc");
    captions_free(&c);
}

/* Expects a refusal whose message contains every one of want (NULL-terminated). */
static void refused(CaptionsFormat fmt, const char *text, size_t len, const char *const *want) {
    Captions c;
    JtError err = {{0}};
    int rc = captions_parse(&c, fmt, text, len, "bad.file", NULL, &err);
    cr_assert_eq(rc, JT_ERR, "accepted: %.*s", (int)len, text);
    cr_assert_null(c.texts);
    cr_assert(strstr(err.msg, "bad.file") != NULL, "message does not name the file: %s", err.msg);
    for (int i = 0; want[i]; i++)
        cr_assert(strstr(err.msg, want[i]) != NULL, "'%s' not in: %s", want[i], err.msg);
}

#define REFUSED(fmt, text, ...)                                                                    \
    do {                                                                                           \
        static const char *const w_[] = {__VA_ARGS__, NULL};                                       \
        refused(fmt, text, sizeof text - 1, w_);                                                   \
    } while (0)

Test(captions, csv_refusals) {
    REFUSED(CAPTIONS_CSV, "", "empty", "header");
    REFUSED(CAPTIONS_CSV, "name,text\na,b\n", "line 1", "header 'file,caption'");
    REFUSED(CAPTIONS_CSV, "file,caption\n", "no captions after the header");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,x,y\n", "line 2", "3 fields");
    REFUSED(CAPTIONS_CSV, "file,caption\n\na.png\n", "line 3", "1 field,");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,\"open\nstill\n", "line 2", "never closed");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,\"x\"y\n", "line 2", "after the closing quote");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,say \"hi\"\n", "line 2", "quote inside an unquoted");
    REFUSED(CAPTIONS_CSV, "file,caption\n,a caption\n", "line 2", "file name is empty");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,\n", "line 2", "caption is empty");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,bad \xff byte\n", "line 2", "not valid UTF-8",
            "byte 4");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,over\xc0\xaflong\n", "not valid UTF-8");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,surrogate \xed\xa0\x80\n", "not valid UTF-8");
    REFUSED(CAPTIONS_CSV, "file,caption\na.png,nul \0 byte\n", "a NUL byte");
}

Test(captions, jsonl_refusals) {
    REFUSED(CAPTIONS_JSONL, "\n  \n", "no captions");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a.png\", \"caption\": \"x\"}\n[1]\n", "line 2",
            "not a JSON object");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a.png\", \"caption\": \"x\"\n", "line 1",
            "not a JSON object");
    REFUSED(CAPTIONS_JSONL, "{\"file\": 3, \"caption\": \"x\"}\n", "line 1",
            "'file' must be a string");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a.png\"}\n", "line 1", "'caption' must be a string");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a.png\", \"caption\": \"\"}\n", "caption is empty");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a.png\", \"caption\": \"\\u0000x\"}\n",
            "caption is empty");
    REFUSED(CAPTIONS_JSONL, "{\"file\": \"a\xfe.png\", \"caption\": \"x\"}\n", "file name",
            "not valid UTF-8");
}

#define IMG(id, name) "{\"id\": " #id ", \"file_name\": \"" name "\"}"
#define ANN(iid, id, cap) "{\"image_id\": " #iid ", \"id\": " #id ", \"caption\": " cap "}"

Test(captions, coco_refusals) {
    REFUSED(CAPTIONS_COCO, "{\"images\": [", "not valid JSON");
    REFUSED(CAPTIONS_COCO, "[]", "top level is not an object");
    REFUSED(CAPTIONS_COCO, "{\"annotations\": []}", "no 'images' array");
    REFUSED(CAPTIONS_COCO, "{\"images\": []}", "no 'annotations' array");
    REFUSED(CAPTIONS_COCO, "{\"images\": [], \"annotations\": []}", "'images' is empty");
    REFUSED(CAPTIONS_COCO, "{\"images\": [3], \"annotations\": []}", "images[0] is not an object");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [{\"id\": -1, \"file_name\": \"a\"}], \"annotations\": []}", "images[0]",
            "'id' must be a non-negative integer");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [{\"id\": 1.5, \"file_name\": \"a\"}], \"annotations\": []}", "images[0]",
            "'id' must be a non-negative integer");
    REFUSED(CAPTIONS_COCO, "{\"images\": [{\"id\": 4, \"file_name\": 7}], \"annotations\": []}",
            "images[0] (id 4)", "'file_name' must be a string");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") ", " IMG(5, "b.jpg") ", " IMG(
                4, "c.jpg") "], \"annotations\": []}",
            "images[0] and images[2] have the same id 4");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [" ANN(4, 1, "\"x\"") ", " ANN(
                9, 2, "\"y\"") "]}",
            "annotations[1] (id 2)", "image_id 9 names no image");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [" ANN(4, 1, "\"x\"") ", " ANN(
                4, 1, "\"y\"") "]}",
            "annotations[0] and annotations[1] have the same id 1");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [" ANN(4, 1, "[\"x\"]") "]}",
            "annotations[0] (id 1)", "'caption' must be a string");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [" ANN(4, 1, "\"\"") "]}",
            "annotations[0] (id 1)", "caption is empty");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") ", " IMG(8, "b.jpg") "], \"annotations\": [" ANN(
                4, 1, "\"x\"") "]}",
            "image id 8 (b.jpg) has no captions");
    REFUSED(CAPTIONS_COCO, "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [3]}",
            "annotations[0] is not an object");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [{\"image_id\": 4, \"caption\": "
                                             "\"x\"}]}",
            "annotations[0]", "'id' must be");
    REFUSED(
        CAPTIONS_COCO,
        "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [{\"id\": 1, \"caption\": \"x\"}]}",
        "annotations[0] (id 1)", "'image_id' must be");
    REFUSED(CAPTIONS_COCO,
            "{\"images\": [" IMG(4, "a.jpg") "], \"annotations\": [" ANN(4, 1, "\"bad \xff\"") "]}",
            "annotations[0] (id 1)", "not valid UTF-8");
}

Test(captions, limits) {
    /* a caption past CAPTIONS_MAX_TEXT, and more captions of one image than a context row holds */
    size_t big = CAPTIONS_MAX_TEXT + 10;
    char *text = malloc(big + 64);
    int n = snprintf(text, 64, "file,caption\na.png,");
    memset(text + n, 'x', CAPTIONS_MAX_TEXT + 1);
    strcpy(text + n + CAPTIONS_MAX_TEXT + 1, "\n");
    static const char *const w_long[] = {"line 2", "16385 bytes; at most 16384", NULL};
    refused(CAPTIONS_CSV, text, strlen(text), w_long);
    free(text);
    size_t cap = 32 + (CONTEXT_MAX_PER_ROW + 1) * 16;
    char *many = malloc(cap), *p = many;
    p += sprintf(p, "file,caption\n");
    for (int i = 0; i <= CONTEXT_MAX_PER_ROW; i++)
        p += sprintf(p, "a.png,c%d\n", i);
    static const char *const w_many[] = {"(a.png) has 1025 captions; at most 1024", NULL};
    refused(CAPTIONS_CSV, many, strlen(many), w_many);
    free(many);
    /* the file size is refused before anything is read (the buffer is never touched) */
    static const char *const w_size[] = {"bytes; captions files are read up to", NULL};
    refused(CAPTIONS_JSONL, "", CAPTIONS_MAX_FILE_BYTES + 1, w_size);
    Captions c;
    JtError err;
    cr_assert_eq(captions_format_of("x.txt", &(CaptionsFormat){0}, &err), JT_ERR);
    cr_assert(strstr(err.msg, "x.txt: cannot tell the captions format") != NULL, "%s", err.msg);
    cr_assert_eq(captions_read(&c, CAPTIONS_CSV, FIX "/none.csv", NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "none.csv") != NULL, "%s", err.msg);
}

/* ---- sources -----------------------------------------------------------------------------------
 */

static void load(const char *data, const char *limit, Dataset *ds) {
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    cr_assert(data_spec_set(&s, "data", data, &err) == JT_OK, "%s", err.msg);
    if (limit) cr_assert(data_spec_set(&s, "limit", limit, &err) == JT_OK, "%s", err.msg);
    cr_assert(data_load(&s, ds, &err) == JT_OK, "%s: %s", data, err.msg);
    data_spec_free(&s);
}

static void load_fails(const char *data, const char *want1, const char *want2) {
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    Dataset ds;
    int rc = data_spec_set(&s, "data", data, &err);
    if (rc == JT_OK) rc = data_load(&s, &ds, &err);
    cr_assert_eq(rc, JT_ERR, "%s loaded", data);
    cr_assert(strstr(err.msg, want1) != NULL, "'%s' not in: %s", want1, err.msg);
    if (want2) cr_assert(strstr(err.msg, want2) != NULL, "'%s' not in: %s", want2, err.msg);
    data_spec_free(&s);
}

Test(captions, coco_source_rows_names_pixels) {
    Dataset ds, folder;
    load("coco:" COCO, NULL, &ds);
    load("folder:" FIX "/coco/val2017", NULL, &folder);
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.c, 3);
    cr_assert_eq(ds.h, 8);
    cr_assert_eq(ds.n_classes, 0);
    cr_assert_eq(ds.labels[0], -1);
    cr_assert_str_eq(data_item_name(&ds, 0), "000000000397.png");
    cr_assert_str_eq(data_item_name(&ds, 2), "000000000285.png");
    cr_assert_str_eq(data_item_caption(&ds, 1), "A woman stands in the dining area at the table.");
    /* the folder reader sorts by name (139, 285, 397): the same pixels in COCO's order */
    const size_t per = 3 * 8 * 8, from_folder[3] = {2, 0, 1};
    for (int i = 0; i < 3; i++)
        cr_assert(memcmp(ds.pixels + i * per, folder.pixels + from_folder[i] * per, per) == 0,
                  "row %d", i);
    /* the description reads back to the same dataset */
    DatasetSpec s;
    JtError err;
    cr_assert(data_spec_parse(&s, ds.description, &err) == JT_OK, "%s", err.msg);
    Dataset again;
    cr_assert(data_load(&s, &again, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(again.fingerprint, ds.fingerprint);
    cr_assert_eq(data_rows_text_fingerprint(&again), data_rows_text_fingerprint(&ds));
    data_free(&again);
    data_spec_free(&s);
    /* an explicit image folder, a limit */
    Dataset lim;
    load("coco:" COCO "," FIX "/coco/val2017", "2", &lim);
    cr_assert_eq(lim.n, 2);
    cr_assert_eq(lim.n_source, 3);
    cr_assert(memcmp(lim.pixels, ds.pixels, 2 * per) == 0);
    cr_assert_neq(data_rows_text_fingerprint(&lim), data_rows_text_fingerprint(&ds));
    data_free(&lim);
    data_free(&ds);
    data_free(&folder);
}

Test(captions, plain_sources_and_selection) {
    Dataset a, b;
    load("captions:" CSV, NULL, &a);
    load(JSONL, NULL, &b); /* a bare *.jsonl path is a captions: source */
    cr_assert_eq(a.n, 3);
    cr_assert_str_eq(data_item_name(&a, 0), "b.png");
    cr_assert_str_eq(data_item_name(&a, 2), "sub/c.png");
    cr_assert_str_eq(data_item_caption(&a, 0), "a red, round thing");
    cr_assert_str_eq(data_item_caption(&a, 2), "two\nlines");
    cr_assert_eq(a.fingerprint, b.fingerprint);
    cr_assert_eq(data_rows_text_fingerprint(&a), data_rows_text_fingerprint(&b));
    /* the indices file keeps rows in its order */
    char idx[300];
    tmp_path(idx, sizeof idx, "idx.txt");
    FILE *f = fopen(idx, "w");
    fputs("2\n0\n", f);
    fclose(f);
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    cr_assert(data_spec_set(&s, "data", "captions:" CSV, &err) == JT_OK);
    cr_assert(data_spec_set(&s, "indices", idx, &err) == JT_OK);
    Dataset sel;
    cr_assert(data_load(&s, &sel, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(sel.n, 2);
    cr_assert_str_eq(data_item_name(&sel, 0), "sub/c.png");
    cr_assert_str_eq(data_item_name(&sel, 1), "b.png");
    data_spec_free(&s);
    data_free(&sel);
    data_free(&a);
    data_free(&b);
}

Test(captions, source_refusals) {
    load_fails("coco:", "nothing after the ':'", NULL);
    load_fails("coco:" FIX "/plain/captions.csv,x", "a COCO annotations file is .json", NULL);
    load_fails("captions:" COCO, "a captions file is .csv or .jsonl", NULL);
    load_fails("captions:" CSV ",", "expected captions:FILE.csv", NULL);
    /* a name that does not say the split: the image folder must be given */
    char other[300];
    tmp_path(other, sizeof other, "mine.json");
    FILE *f = fopen(other, "w");
    fputs("{}", f);
    fclose(f);
    char spec[400];
    snprintf(spec, sizeof spec, "coco:%s", other);
    load_fails(spec, "cannot tell the image folder", ",IMAGEDIR");
    /* a file the captions name that is not there, named in the message */
    char csv[300];
    tmp_path(csv, sizeof csv, "c.csv");
    f = fopen(csv, "w");
    fputs("file,caption\nmissing.png,a thing\n", f);
    fclose(f);
    snprintf(spec, sizeof spec, "captions:%s", csv);
    load_fails(spec, "missing.png", NULL);
    /* unlabelled: a class filter is refused */
    DatasetSpec s;
    data_spec_init(&s);
    JtError err;
    Dataset ds;
    cr_assert(data_spec_set(&s, "data", "captions:" CSV, &err) == JT_OK);
    cr_assert(data_spec_set(&s, "classes", "1", &err) == JT_OK);
    cr_assert_eq(data_load(&s, &ds, &err), JT_ERR);
    data_spec_free(&s);
}

/* ---- encode-text --captions
 * ---------------------------------------------------------------------- */

static float *read_f32(const char *path, NpyHeader *h) {
    void *v = NULL;
    JtError err;
    cr_assert(npy_read(path, h, &v, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(h->dtype, NPY_F32);
    return v;
}

static void encode_coco(const char *out, const char *extra) {
    char cmd[2000], err[4096];
    snprintf(cmd, sizeof cmd,
             "encode-text --captions coco:" COCO " --text-encoder " CLIP " --tokenizer " TOK
             " --out %s %s",
             out, extra);
    cr_assert_eq(cli_run(cmd, err, sizeof err), 0, "%s", err);
}

Test(captions, encode_text_equals_each_caption_alone) {
    char out[300];
    tmp_path(out, sizeof out, "ctx.npy");
    encode_coco(out, "--batch 3");
    NpyHeader h;
    float *ctx = read_f32(out, &h);
    cr_assert_eq(h.ndim, 4);
    cr_assert_eq(h.shape[0], 3);
    cr_assert_eq(h.shape[1], 5, "K: the fewest captions of any image (285 has 6)");
    cr_assert_eq(h.shape[2], 77);
    cr_assert_eq(h.shape[3], 32);
    Captions c;
    JtError err;
    cr_assert(captions_read(&c, CAPTIONS_COCO, COCO, NULL, &err) == JT_OK, "%s", err.msg);
    Model *m;
    ClipTokenizer *tok;
    cr_assert(model_load(CLIP, &m, &err) == JT_OK, "%s", err.msg);
    cr_assert(clip_tokenizer_load(&tok, TOK, &err) == JT_OK, "%s", err.msg);
    const size_t LD = 77 * 32;
    float *one = malloc(LD * sizeof *one);
    const char *texts[15];
    for (size_t i = 0; i < 3; i++)
        for (size_t k = 0; k < 5; k++) {
            const char *t = captions_text(&c, i, k);
            texts[i * 5 + k] = t;
            cr_assert(text_encode(tok, model_text_encoder_const(m), &t, 1, 0, one, NULL, &err) ==
                          JT_OK,
                      "%s", err.msg);
            /* bit for bit: a context does not depend on its batch (text_encode.h) */
            cr_assert(memcmp(one, ctx + (i * 5 + k) * LD, LD * sizeof *one) == 0,
                      "row %zu caption %zu differs from encoding it alone", i, k);
        }
    /* the manifest */
    char mp[320], tp[320], hx[17];
    snprintf(mp, sizeof mp, "%s.json", out);
    cJSON *j = json_load_file(mp, &err);
    cr_assert_not_null(j, "%s", err.msg);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)clip_tokenizer_fingerprint(tok));
    cr_assert_str_eq(json_str(j, "tokenizer_fingerprint"), hx);
    cr_assert_str_eq(json_str(j, "text_encoder_fingerprint"),
                     model_fingerprint_hex(model_fingerprint(m), hx));
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)captions_fingerprint_texts(texts, 15));
    cr_assert_str_eq(json_str(j, "captions_fnv1a64"), hx);
    Dataset ds;
    load("coco:" COCO, NULL, &ds);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)data_rows_text_fingerprint(&ds));
    cr_assert_str_eq(json_str(j, "dataset_text_fingerprint"), hx);
    cr_assert(strstr(json_str(j, "dataset"), "data=coco:/") != NULL);
    cr_assert_eq(cJSON_GetObjectItem(j, "captions_per_image")->valueint, 5);
    cr_assert_eq(cJSON_GetObjectItem(j, "captions_per_image_max")->valueint, 6);
    cJSON_Delete(j);
    /* the texts beside it, read by context_load as the table's captions */
    tmp_path(tp, sizeof tp, "ctx.json");
    ContextSpec cs = {0};
    char cond[320];
    snprintf(cond, sizeof cond, "npy:%s", out);
    cs.file = cond;
    ContextSet set;
    cr_assert(context_load(&set, &cs, &ds, &err) == JT_OK, "%s", err.msg);
    cr_assert_eq(set.k, 5);
    cr_assert_not_null(set.captions);
    cr_assert_str_eq(set.captions[7], captions_text(&c, 1, 2));
    context_free(&set);
    data_free(&ds);
    free(one);
    free(ctx);
    clip_tokenizer_free(tok);
    model_free(m);
    captions_free(&c);
}

Test(captions, encode_text_options) {
    char k2[300], k5[300], lim[300], pl[300], err[4096];
    tmp_path(k2, sizeof k2, "k2.npy");
    tmp_path(k5, sizeof k5, "k5.npy");
    tmp_path(lim, sizeof lim, "lim.npy");
    tmp_path(pl, sizeof pl, "plain.npy");
    encode_coco(k5, "");
    encode_coco(k2, "--captions-per-image 2 --clip-skip 1");
    encode_coco(lim, "--limit 2");
    NpyHeader h2, h5, hl;
    float *a = read_f32(k2, &h2), *b = read_f32(k5, &h5), *l = read_f32(lim, &hl);
    cr_assert_eq(h2.shape[1], 2);
    cr_assert_eq(hl.shape[0], 2);
    cr_assert_eq(hl.shape[1], 5);
    const size_t LD = 77 * 32;
    /* --limit 2: the first two rows, unchanged */
    cr_assert(memcmp(l, b, 2 * 5 * LD * sizeof(float)) == 0);
    /* clip skip 1 is another layer's state: not the same numbers */
    cr_assert(memcmp(a, b, LD * sizeof(float)) != 0);
    free(a), free(b), free(l);
    /* one caption for some images: (N, L, D) */
    char cmd[1500];
    snprintf(cmd, sizeof cmd,
             "encode-text --captions captions:" CSV " --text-encoder " CLIP " --tokenizer " TOK
             " --out %s",
             pl);
    cr_assert_eq(cli_run(cmd, err, sizeof err), 0, "%s", err);
    NpyHeader hp;
    float *p = read_f32(pl, &hp);
    cr_assert_eq(hp.ndim, 3);
    cr_assert_eq(hp.shape[0], 3);
    free(p);
}

Test(captions, encode_text_refusals) {
    char out[300], err[4096];
    tmp_path(out, sizeof out, "bad.npy");
    static const char *const w_k[] = {"--captions-per-image 6", "row 0 (000000000397.png)",
                                      "only 5 captions", NULL};
    cli_expect_failure(err, sizeof err, 1, "encode-text", w_k,
                       "encode-text --captions coco:" COCO " --text-encoder " CLIP
                       " --tokenizer " TOK " --out %s --captions-per-image 6",
                       out);
    static const char *const w_kind[] = {"not a captioned dataset", NULL};
    cli_expect_failure(err, sizeof err, 2, "encode-text", w_kind,
                       "encode-text --captions folder:/tmp --text-encoder " CLIP " --tokenizer " TOK
                       " --out %s",
                       out);
    static const char *const w_both[] = {"one of --ids, --captions and --text", NULL};
    cli_expect_failure(err, sizeof err, 2, "encode-text", w_both,
                       "encode-text --captions coco:" COCO " --ids x.npy --text-encoder " CLIP
                       " --tokenizer " TOK " --out %s",
                       out);
    static const char *const w_tok[] = {"--tokenizer", NULL};
    cli_expect_failure(err, sizeof err, 2, "encode-text", w_tok,
                       "encode-text --captions coco:" COCO " --text-encoder " CLIP " --out %s",
                       out);
    static const char *const w_skip[] = {"clip skip 5", NULL};
    cli_expect_failure(err, sizeof err, 1, "encode-text", w_skip,
                       "encode-text --captions coco:" COCO " --text-encoder " CLIP
                       " --tokenizer " TOK " --out %s --clip-skip 5",
                       out);
    static const char *const w_limit[] = {"--limit", NULL};
    cli_expect_failure(err, sizeof err, 2, "encode-text", w_limit,
                       "encode-text --captions coco:" COCO " --text-encoder " CLIP
                       " --tokenizer " TOK " --out %s --limit x",
                       out);
    /* nothing half-written is left behind */
    char man[320], txt[320];
    snprintf(man, sizeof man, "%s.json", out);
    tmp_path(txt, sizeof txt, "bad.json");
    cr_assert(!exists(out) && !exists(man) && !exists(txt));
}

/* ---- a context file made for another dataset
 * ------------------------------------------------------ */

/* A tiny UNet2DConditionModel config for 8x8 RGB and 32-wide contexts (the fixture CLIP's). */
static void write_cond_config(const char *path) {
    test_write_tiny_cond_config(path, 3, 8, 32);
}

Test(captions, context_for_another_dataset_refused) {
    char coco[300], plain[300], cfg[300], out[300], cmd[2000], err[4096];
    tmp_path(coco, sizeof coco, "coco.npy");
    tmp_path(plain, sizeof plain, "plain.npy");
    tmp_path(cfg, sizeof cfg, "cond.json");
    tmp_path(out, sizeof out, "model");
    encode_coco(coco, "");
    snprintf(cmd, sizeof cmd,
             "encode-text --captions captions:" CSV " --text-encoder " CLIP " --tokenizer " TOK
             " --out %s",
             plain);
    cr_assert_eq(cli_run(cmd, err, sizeof err), 0, "%s", err);
    /* the CSV dataset has 3 rows too: only the recorded dataset tells the files apart */
    Dataset ds;
    load("captions:" CSV, NULL, &ds);
    ContextSet set;
    JtError jerr;
    char cond[320];
    snprintf(cond, sizeof cond, "npy:%s", coco);
    ContextSpec spec = {cond, NULL, NULL};
    cr_assert_eq(context_load(&set, &spec, &ds, &jerr), JT_ERR);
    cr_assert(strstr(jerr.msg, "made for another dataset") != NULL, "%s", jerr.msg);
    cr_assert(strstr(jerr.msg, "captions_val2017.json") != NULL, "%s", jerr.msg);
    snprintf(cond, sizeof cond, "npy:%s", plain);
    cr_assert(context_load(&set, &spec, &ds, &jerr) == JT_OK, "%s", jerr.msg);
    context_free(&set);
    data_free(&ds);
    /* and through train: refused with the other file, trained with its own */
    write_cond_config(cfg);
    static const char *const want[] = {"made for another dataset", "encode-text --captions", NULL};
    cli_expect_failure(err, sizeof err, 1, "train", want,
                       "train --config %s --out %s --data captions:" CSV
                       " --cond npy:%s --steps 1 --batch 2 --quiet",
                       cfg, out, coco);
    snprintf(cmd, sizeof cmd,
             "train --config %s --out %s --data captions:" CSV
             " --cond npy:%s --steps 1 --batch 2 --quiet",
             cfg, out, plain);
    cr_assert_eq(cli_run(cmd, err, sizeof err), 0, "%s", err);
}
