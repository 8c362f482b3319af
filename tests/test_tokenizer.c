/* test_tokenizer.c: the CLIP tokenizer (src/text/tokenizer.c) against transformers 5.23's
 * CLIPTokenizer: tests/fixtures/tokenizer/clip_corpus.json holds 60 strings (40 written by hand, 20
 * seeded random) and, per folder, the
 * ids transformers gives at max_length 77 (truncation and padding on), the count of real tokens and
 * whether it truncated (ref/make_tokenizer_fixtures.py). The committed small vocabulary (both pad
 * conventions, and its tokenizer.json save) is always compared; the real 49,408-token vocabulary
 * when the twin has rebuilt it under ref/.cache/clip_tokenizer (skipped with a message otherwise).
 * Then malformed folders (one clear error each), invalid UTF-8, and the speed of a 10,000-character
 * string. */
#include "core/common.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "text/tokenizer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TOK_DIR JTRAK_FIXTURES "/tokenizer"
#define FULL_DIR JTRAK_SOURCE_DIR "/ref/.cache/clip_tokenizer"

TestSuite(tokenizer, .init = test_tmp_setup, .fini = test_tmp_teardown);

static cJSON *load_corpus(void) {
    JtError err;
    cJSON *c = json_load_file(TOK_DIR "/clip_corpus.json", &err);
    cr_assert(c, "%s", err.msg);
    return c;
}

/* Every corpus string through the folder `dir`, compared with expected[name]; returns how many. */
static int check_corpus(const char *dir, const char *name) {
    cJSON *c = load_corpus();
    const cJSON *strings = cJSON_GetObjectItem(c, "strings");
    const cJSON *exp = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "expected"), name);
    cr_assert(cJSON_IsArray(strings) && cJSON_IsArray(exp), "corpus: no expected.%s", name);
    int max_len = cJSON_GetObjectItem(c, "max_length")->valueint;
    cr_assert_eq(max_len, 77);
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, dir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_max_length(t), 77);
    int ids[77], k = 0;
    const cJSON *e = exp->child;
    for (const cJSON *s = strings->child; s; s = s->next, e = e->next, k++) {
        int n_real = -1, trunc = -1;
        cr_assert_eq(clip_tokenize(t, s->valuestring, 0, ids, &n_real, &trunc, &err), JT_OK,
                     "%s: string %d: %s", name, k, err.msg);
        const cJSON *want = cJSON_GetObjectItem(e, "ids");
        cr_assert_eq(cJSON_GetArraySize(want), 77);
        int i = 0;
        for (const cJSON *w = want->child; w; w = w->next, i++)
            cr_assert_eq(ids[i], w->valueint,
                         "%s: string %d (\"%.40s\"): id %d is %d, transformers gives %d", name, k,
                         s->valuestring, i, ids[i], w->valueint);
        cr_assert_eq(n_real, cJSON_GetObjectItem(e, "n_real")->valueint, "%s: string %d: n_real",
                     name, k);
        cr_assert_eq(trunc, cJSON_IsTrue(cJSON_GetObjectItem(e, "truncated")),
                     "%s: string %d: truncated", name, k);
    }
    clip_tokenizer_free(t);
    cJSON_Delete(c);
    return k;
}

Test(tokenizer, small_vocab_pad_endoftext) {
    cr_assert_eq(check_corpus(TOK_DIR "/clip_small", "small_eot"), 60);
}

Test(tokenizer, small_vocab_pad_bang) {
    cr_assert_eq(check_corpus(TOK_DIR "/clip_small_bang", "small_bang"), 60);
}

/* transformers 5's own save (tokenizer.json + tokenizer_config.json) gives the same ids as the
 * vocab.json + merges.txt folder it was saved from. */
Test(tokenizer, tokenizer_json_layout) {
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR "/clip_small_tj", &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(clip_tokenizer_layout(t), "tokenizer.json");
    clip_tokenizer_free(t);
    cr_assert_eq(check_corpus(TOK_DIR "/clip_small_tj", "small_eot"), 60);
}

Test(tokenizer, full_vocab) {
    struct stat sb;
    if (stat(FULL_DIR "/eot/vocab.json", &sb) != 0 || stat(FULL_DIR "/bang/vocab.json", &sb) != 0) {
        cr_skip_test(
            "the real CLIP vocabulary is not rebuilt here (run ref/make_tokenizer_fixtures.py "
            "to write %s)",
            FULL_DIR);
    }
    cr_assert_eq(check_corpus(FULL_DIR "/eot", "full_eot"), 60);
    cr_assert_eq(check_corpus(FULL_DIR "/bang", "full_bang"), 60);
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, FULL_DIR "/eot", &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_vocab_size(t), 49408);
    cr_assert_eq(clip_tokenizer_bos_id(t), 49406);
    cr_assert_eq(clip_tokenizer_eos_id(t), 49407);
    cr_assert_eq(clip_tokenizer_pad_id(t), 49407);
    clip_tokenizer_free(t);
}

Test(tokenizer, accessors_and_max_len) {
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR "/clip_small_bang", &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(clip_tokenizer_layout(t), "vocab.json+merges.txt");
    int bos = clip_tokenizer_bos_id(t), eos = clip_tokenizer_eos_id(t);
    cr_assert_eq(clip_tokenizer_pad_id(t), 0, "SD-2's pad \"!\" is id 0");
    cr_assert_neq(bos, eos);
    /* a short max_len: bos + the first 3 + eos, truncated */
    int ids[5], n_real, trunc;
    cr_assert_eq(clip_tokenize(t, "a photo of a cat", 5, ids, &n_real, &trunc, &err), JT_OK, "%s",
                 err.msg);
    cr_assert_eq(ids[0], bos);
    cr_assert_eq(ids[4], eos);
    cr_assert_eq(n_real, 5);
    cr_assert_eq(trunc, 1);
    cr_assert_eq(clip_tokenize(t, "a photo", 5, ids, &n_real, &trunc, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(n_real, 4);
    cr_assert_eq(trunc, 0);
    cr_assert_eq(ids[3], eos);
    cr_assert_eq(ids[4], 0);
    cr_assert_eq(clip_tokenize(t, "a", 1, ids, &n_real, &trunc, &err), JT_ERR);
    cr_assert(strstr(err.msg, "max_len"), "%s", err.msg);
    clip_tokenizer_free(t);
}

Test(tokenizer, invalid_utf8_refused) {
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR "/clip_small", &err), JT_OK, "%s", err.msg);
    static const char *const bad[] = {"abc\xff", "caf\xc3", "\xc0\xaf overlong",
                                      "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 past U+10FFFF"};
    int ids[77];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(clip_tokenize(t, bad[i], 0, ids, NULL, NULL, &err), JT_ERR,
                     "case %zu accepted", i);
        cr_assert(strstr(err.msg, "not valid UTF-8"), "%s", err.msg);
        cr_assert(!strchr(err.msg, '\n'));
    }
    clip_tokenizer_free(t);
}

/* The corpus's 10,000-character string, and 10,000 letters in one word (the BPE's worst case), each
 * well under a second. */
Test(tokenizer, long_input_fast) {
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR "/clip_small", &err), JT_OK, "%s", err.msg);
    cJSON *c = load_corpus();
    const char *ten_k = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "strings"), 39)->valuestring;
    char *one_word = xmalloc(10001);
    memset(one_word, 'x', 10000);
    one_word[10000] = 0;
    const char *texts[2] = {ten_k, one_word};
    for (int k = 0; k < 2; k++) {
        int ids[77], trunc;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        /* max_len 20000: nothing is truncated, so the whole text goes through BPE */
        int *big = xmalloc(20000 * sizeof *big), n_real;
        cr_assert_eq(clip_tokenize(t, texts[k], 20000, big, &n_real, &trunc, &err), JT_OK, "%s",
                     err.msg);
        cr_assert_eq(clip_tokenize(t, texts[k], 0, ids, NULL, &trunc, &err), JT_OK, "%s", err.msg);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        fprintf(stderr, "tokenizer: %zu bytes of UTF-8 -> %d tokens in %.4f s\n", strlen(texts[k]),
                n_real, s);
        /* a second is the brief's bound; sanitizer builds on a loaded machine stay well inside it
         */
        cr_assert_lt(s, 1.0, "%s took %.3f s", k ? "10,000 letters" : "the 10,000-character string",
                     s);
        cr_assert_eq(trunc, 1);
        cr_assert_eq(memcmp(big, ids, 76 * sizeof *ids), 0,
                     "the first 76 ids do not depend on max_len");
        free(big);
    }
    free(one_word);
    cJSON_Delete(c);
    clip_tokenizer_free(t);
}

/* ---------------------------------------------------------------- malformed folders */

static void put(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "w");
    cr_assert(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
    free(p);
}

/* A small valid folder: bytes a, b (and with </w>), the merge "a b</w>", the two specials. */
#define GOOD_VOCAB                                                                                 \
    "{\"a\":0,\"b\":1,\"a</w>\":2,\"b</w>\":3,\"ab</"                                              \
    "w>\":4,\"<|startoftext|>\":5,\"<|endoftext|>\":6}"

static char *folder(const char *name, const char *vocab, const char *merges, const char *stm,
                    const char *cfg) {
    char *d = path_join(test_tmp, name);
    cr_assert_eq(mkdir(d, 0777), 0);
    if (vocab) put(d, "vocab.json", vocab);
    if (merges) put(d, "merges.txt", merges);
    if (stm) put(d, "special_tokens_map.json", stm);
    if (cfg) put(d, "tokenizer_config.json", cfg);
    return d;
}

static void expect_refused(const char *dir, const char *const *want) {
    JtError err;
    ClipTokenizer *t = (ClipTokenizer *)1;
    cr_assert_eq(clip_tokenizer_load(&t, dir, &err), JT_ERR, "%s: loaded", dir);
    cr_assert_null(t);
    cr_assert(!strchr(err.msg, '\n'), "more than one line: %s", err.msg);
    for (; *want; want++)
        cr_assert(strstr(err.msg, *want), "'%s' lacks '%s'", err.msg, *want);
}

Test(tokenizer, good_small_folder_loads) {
    char *d =
        folder("good", GOOD_VOCAB, "#version: 0.2\na b</w>\n", NULL, "{\"model_max_length\": 8}");
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, d, &err), JT_OK, "%s", err.msg);
    int ids[8], n_real;
    cr_assert_eq(clip_tokenize(t, "AB a", 0, ids, &n_real, NULL, &err), JT_OK, "%s", err.msg);
    int want[8] = {5, 4, 2, 6, 6, 6, 6, 6};
    cr_assert_eq(memcmp(ids, want, sizeof want), 0, "%d %d %d %d", ids[0], ids[1], ids[2], ids[3]);
    cr_assert_eq(n_real, 4);
    clip_tokenizer_free(t);
    free(d);
}

Test(tokenizer, malformed_files_refused) {
    char *d;
    d = folder("vocab_array", "[1, 2]", "a b\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"vocab.json", "not a JSON object", NULL});
    free(d);
    d = folder("vocab_badjson", "{\"a\": 0,", "a b\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"vocab.json", "not valid JSON", NULL});
    free(d);
    d = folder("vocab_badid", "{\"a\": \"zero\"}", "a b\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"vocab.json", "token \"a\"", "integer", NULL});
    free(d);
    d = folder("vocab_negid", "{\"a\": -3}", "a b\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"vocab.json", "token \"a\"", "integer", NULL});
    free(d);
    d = folder("merge_one", GOOD_VOCAB, "#version: 0.2\na b</w>\nab\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"merges.txt", "line 3", "two symbols", NULL});
    free(d);
    d = folder("merge_three", GOOD_VOCAB, "#version: 0.2\na b c\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"merges.txt", "line 2", "two symbols", NULL});
    free(d);
    d = folder("merge_missing", GOOD_VOCAB, "#version: 0.2\na zz\n", NULL, NULL);
    expect_refused(
        d, (const char *const[]){"merges.txt", "line 2", "\"zz\" is not in the vocabulary", NULL});
    free(d);
    d = folder("merge_product", GOOD_VOCAB, "#version: 0.2\na b\n", NULL, NULL);
    expect_refused(d, (const char *const[]){"merges.txt", "merged symbol \"ab\"", NULL});
    free(d);
    d = folder("no_bos", "{\"a\":0,\"<|endoftext|>\":1}", "", NULL, NULL);
    expect_refused(
        d, (const char *const[]){"bos_token", "<|startoftext|>", "not in the vocabulary", NULL});
    free(d);
    d = folder("pad_missing", GOOD_VOCAB, "", "{\"pad_token\": \"<pad>\"}", NULL);
    expect_refused(d, (const char *const[]){"pad_token", "<pad>", "special_tokens_map.json", NULL});
    free(d);
    d = folder("stm_bad", GOOD_VOCAB, "", "{\"pad_token\": 7}", NULL);
    expect_refused(d, (const char *const[]){"special_tokens_map.json", "pad_token", NULL});
    free(d);
    d = folder("stm_nocontent", GOOD_VOCAB, "", "{\"eos_token\": {\"normalized\": true}}", NULL);
    expect_refused(d,
                   (const char *const[]){"special_tokens_map.json", "eos_token", "content", NULL});
    free(d);
    d = folder("cfg_badjson", GOOD_VOCAB, "", NULL, "{model_max_length: 77}");
    expect_refused(d, (const char *const[]){"tokenizer_config.json", "not valid JSON", NULL});
    free(d);
    d = folder("cfg_maxlen", GOOD_VOCAB, "", NULL, "{\"model_max_length\": 1e30}");
    expect_refused(d, (const char *const[]){"tokenizer_config.json", "model_max_length", NULL});
    free(d);
    d = folder("only_vocab", GOOD_VOCAB, NULL, NULL, NULL);
    expect_refused(d, (const char *const[]){"merges.txt is missing", NULL});
    free(d);
    d = folder("empty", NULL, NULL, NULL, NULL);
    expect_refused(d, (const char *const[]){"no tokenizer files", NULL});
    free(d);
    expect_refused("/nonexistent/tokenizer", (const char *const[]){"/nonexistent/tokenizer", NULL});
    d = folder("tj_pairs", NULL, NULL, NULL, NULL);
    put(d, "tokenizer.json",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": " GOOD_VOCAB ", \"merges\": [[\"a\"]]}}");
    expect_refused(d, (const char *const[]){"tokenizer.json", "model.merges[0]", NULL});
    free(d);
    d = folder("tj_wordpiece", NULL, NULL, NULL, NULL);
    put(d, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    expect_refused(d, (const char *const[]){"tokenizer.json", "WordPiece", NULL});
    free(d);
}

/* tokenizer.json with merges as "a b" strings loads like pairs. */
Test(tokenizer, tokenizer_json_string_merges) {
    char *d = folder("tj_strings", NULL, NULL, NULL, NULL);
    put(d, "tokenizer.json",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": " GOOD_VOCAB ", \"merges\": [\"a b</w>\"]}}");
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, d, &err), JT_OK, "%s", err.msg);
    int ids[4];
    cr_assert_eq(clip_tokenize(t, "ab", 4, ids, NULL, NULL, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(ids[1], 4);
    clip_tokenizer_free(t);
    free(d);
}

/* ---------------------------------------------------------------- the CLI */

Test(tokenizer, cli_tokenize) {
    char out[4096], err[4096];
    int rc = cli_run_out("tokenize --tokenizer " TOK_DIR "/clip_small 'a photo of a cat'", out,
                         sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    /* the corpus's first string is "a photo of a cat": its 77 ids, space-separated, one line */
    cJSON *c = load_corpus();
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "strings"), 0)->valuestring,
                     "a photo of a cat");
    const cJSON *ids = cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "expected"), "small_eot"), 0),
        "ids");
    char want[4096];
    size_t n = 0;
    for (const cJSON *w = ids->child; w; w = w->next)
        n += (size_t)snprintf(want + n, sizeof want - n, "%d%c", w->valueint, w->next ? ' ' : '\n');
    cr_assert_str_eq(out, want);
    cJSON_Delete(c);
    char e2[4096];
    cli_expect_failure(e2, sizeof e2, 1, "tokenize", (const char *const[]){"not valid UTF-8", NULL},
                       "tokenize --tokenizer " TOK_DIR "/clip_small \"$(printf 'a\\377')\"");
    cli_expect_failure(e2, sizeof e2, 2, "tokenize", (const char *const[]){"--tokenizer", NULL},
                       "tokenize 'a cat'");
    /* a prompt longer than the model allows: the ids are truncated and stderr says so once */
    char args[4096];
    snprintf(
        args, sizeof args, "tokenize --tokenizer %s/clip_small '%s'", TOK_DIR,
        "a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat "
        "a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat "
        "a cat a cat a cat a cat a cat a cat a cat a cat a cat a cat");
    cr_assert_eq(cli_run_out(args, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(err, "truncated") && !strstr(strstr(err, "truncated") + 1, "truncated"), "%s",
              err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
}

/* One tokenizer shared by threads: the same ids as one thread (nothing mutable in it). */
Test(tokenizer, shared_by_threads) {
    JtError err;
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, TOK_DIR "/clip_small", &err), JT_OK, "%s", err.msg);
    cJSON *c = load_corpus();
    const cJSON *strings = cJSON_GetObjectItem(c, "strings");
    int n = cJSON_GetArraySize(strings);
    const char **text = xmalloc((size_t)n * sizeof *text);
    for (int i = 0; i < n; i++)
        text[i] = cJSON_GetArrayItem(strings, i)->valuestring;
    int *one = xmalloc((size_t)n * 77 * sizeof *one),
        *many = xmalloc((size_t)n * 8 * 77 * sizeof *many);
    for (int i = 0; i < n; i++)
        cr_assert_eq(clip_tokenize(t, text[i], 0, one + 77 * i, NULL, NULL, &err), JT_OK);
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(4) reduction(+ : bad)
    for (int r = 0; r < 8 * n; r++) {
        JtError e;
        bad += clip_tokenize(t, text[r % n], 0, many + 77 * r, NULL, NULL, &e) != JT_OK;
    }
    cr_assert_eq(bad, 0);
    for (int r = 0; r < 8 * n; r++)
        cr_assert_eq(memcmp(one + 77 * (r % n), many + 77 * r, 77 * sizeof *one), 0, "run %d", r);
    free(one), free(many), free(text);
    cJSON_Delete(c);
    clip_tokenizer_free(t);
}

/* Where the pad token comes from (measured with transformers 5.23, folders like these):
 * special_tokens_map.json overrides tokenizer_config.json (SD-2's folders have pad "!" in the map
 * and "<|endoftext|>" in the config: the pad is "!"), unless the config has an
 * added_tokens_decoder, in which case the map is not read. */
#define BANG_VOCAB                                                                                 \
    "{\"!\":0,\"a\":1,\"a</w>\":2,\"!</w>\":3,\"<|startoftext|>\":4,\"<|endoftext|>\":5}"

Test(tokenizer, pad_token_precedence) {
    JtError err;
    ClipTokenizer *t;
    char *d = folder("stm_over_cfg", BANG_VOCAB, "", "{\"pad_token\": \"!\"}",
                     "{\"pad_token\": \"<|endoftext|>\"}");
    cr_assert_eq(clip_tokenizer_load(&t, d, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_pad_id(t), 0);
    int ids[6];
    /* "!" is then an added token: "a!" is a</w>, then id 0 (not "!</w>" 3); transformers gives
     * 4 2 0 5 0 0 for this folder */
    cr_assert_eq(clip_tokenize(t, "a!", 6, ids, NULL, NULL, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(ids, ((int[6]){4, 2, 0, 5, 0, 0}), sizeof ids), 0, "%d %d %d %d %d %d",
                 ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    clip_tokenizer_free(t);
    free(d);
    d = folder("decoder_ignores_stm", BANG_VOCAB, "", "{\"pad_token\": \"!\"}",
               "{\"pad_token\": \"<|endoftext|>\", \"added_tokens_decoder\": {\"5\": {\"content\": "
               "\"<|endoftext|>\", \"normalized\": false, \"special\": true}}}");
    cr_assert_eq(clip_tokenizer_load(&t, d, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_pad_id(t), 5);
    /* "!" is an ordinary word here: transformers gives 4 2 3 5 5 5 */
    cr_assert_eq(clip_tokenize(t, "a!", 6, ids, NULL, NULL, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(ids, ((int[6]){4, 2, 3, 5, 5, 5}), sizeof ids), 0, "%d %d %d %d %d %d",
                 ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    clip_tokenizer_free(t);
    free(d);
}

static void copy_file(const char *from, const char *dir, const char *name) {
    FILE *f = fopen(from, "rb");
    cr_assert(f, "cannot open %s", from);
    char *p = path_join(dir, name);
    FILE *g = fopen(p, "wb");
    cr_assert(g, "cannot write %s", p);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, g), n);
    fclose(f);
    fclose(g);
    free(p);
}

/* Ten ways of spelling the special tokens (strings or objects, normalized or not, in
 * special_tokens_map.json or tokenizer_config.json, with or without an added_tokens_decoder), each
 * over the small vocabulary: the pad id and the ids of probe strings such as "a <|ENDOFTEXT|> b
 * hi!" match transformers' (corpus "variants"). They pin down which added tokens exist and whether
 * each is matched before or after lower-casing. */
Test(tokenizer, special_token_spellings) {
    cJSON *c = load_corpus();
    const cJSON *probes = cJSON_GetObjectItem(c, "variant_probes");
    const cJSON *variants = cJSON_GetObjectItem(c, "variants");
    cr_assert_eq(cJSON_GetArraySize(variants), 10);
    for (const cJSON *v = variants->child; v; v = v->next) {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        char *d = path_join(test_tmp, name);
        cr_assert_eq(mkdir(d, 0777), 0);
        copy_file(TOK_DIR "/clip_small/vocab.json", d, "vocab.json");
        copy_file(TOK_DIR "/clip_small/merges.txt", d, "merges.txt");
        const cJSON *stm = cJSON_GetObjectItem(v, "special_tokens_map");
        if (!cJSON_IsNull(stm)) {
            char *s = cJSON_PrintUnformatted(stm);
            put(d, "special_tokens_map.json", s);
            free(s);
        }
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(v, "tokenizer_config"));
        put(d, "tokenizer_config.json", s);
        free(s);
        JtError err;
        ClipTokenizer *t;
        cr_assert_eq(clip_tokenizer_load(&t, d, &err), JT_OK, "%s: %s", name, err.msg);
        cr_assert_eq(clip_tokenizer_pad_id(t), cJSON_GetObjectItem(v, "pad_id")->valueint,
                     "%s: pad id", name);
        const cJSON *e = cJSON_GetObjectItem(v, "expected")->child;
        for (const cJSON *p = probes->child; p; p = p->next, e = e->next) {
            int ids[77], n_real;
            cr_assert_eq(clip_tokenize(t, p->valuestring, 0, ids, &n_real, NULL, &err), JT_OK, "%s",
                         err.msg);
            int i = 0;
            for (const cJSON *w = cJSON_GetObjectItem(e, "ids")->child; w; w = w->next, i++)
                cr_assert_eq(ids[i], w->valueint, "%s: \"%s\": id %d is %d, transformers gives %d",
                             name, p->valuestring, i, ids[i], w->valueint);
            cr_assert_eq(n_real, cJSON_GetObjectItem(e, "n_real")->valueint);
        }
        clip_tokenizer_free(t);
        free(d);
    }
    cJSON_Delete(c);
}
