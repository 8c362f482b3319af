/* test_tokenizer_build.c: `jtrak tokenizer --bpe FILE --out DIR` (text/tokenizer_build.h):
 *  - a tiny synthetic BPE file (gzip, written here): the folder's vocabulary by the recipe
 *    (the 256 byte symbols in bytes_to_unicode's order, the same with </w>, one token per merge,
 *    the two specials), merges.txt, the pad token, and the ids clip_tokenizer gives with it;
 *  - plain text and a file without a final newline are read too;
 *  - every malformed file refused with one line naming the file and the line, nothing left
 *    behind; a non-empty --out, a pad token outside the vocabulary; the CLI's exit codes;
 *  - with the real open-clip-torch file when the ref/ venv has it (skipped otherwise; never
 *    committed): transformers' ids on the 60-string corpus (clip_corpus.json, full_eot and
 *    full_bang). (Checked once with the twin as well: transformers' CLIPTokenizer loads the built
 *    folders and gives those ids on all 60 strings; the vocab equals
 * ref/make_tokenizer_fixtures.py's rebuild, in order.) */
#include "core/common.h"
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/jsonfile.h"
#include "text/tokenizer.h"
#include "text/tokenizer_build.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

TestSuite(tokenizer_build, .init = test_tmp_setup, .fini = test_tmp_teardown);

static char g_err[4096];

/* The synthetic file: OpenCLIP's header line, then merges that build "the</w>" and "cat</w>". */
static const char *const TINY = "\"bpe_simple_vocab_16e6.txt#version: 0.2\n"
                                "t h\n"
                                "th e</w>\n"
                                "c a\n"
                                "ca t</w>\n"
                                "i n</w>\n";
enum { TINY_MERGES = 5 };

static void write_gz(const char *path, const char *text, size_t n) {
    gzFile g = gzopen(path, "wb");
    cr_assert(g);
    cr_assert_eq(gzwrite(g, text, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(g), Z_OK);
}

static void write_plain(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", test_tmp, name);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Only `keep` is in the scratch folder (nothing half-written or temporary beside it). */
static void expect_only(const char *keep) {
    DIR *d = opendir(test_tmp);
    cr_assert(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, keep))
            cr_assert_fail("left behind: %s", e->d_name);
    closedir(d);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = xmalloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    s[n] = 0;
    return s;
}

static int vocab_id(const cJSON *v, const char *tok) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(v, tok);
    cr_assert(cJSON_IsNumber(it), "no token %s", tok);
    return it->valueint;
}

Test(tokenizer_build, tiny_file_by_the_recipe) {
    char bpe[400], out[400], p[500];
    tmp_path(bpe, sizeof bpe, "tiny.txt.gz");
    tmp_path(out, sizeof out, "tok");
    write_gz(bpe, TINY, strlen(TINY));
    ClipBpeInfo info;
    JtError err;
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, &info, &err), JT_OK, "%s", err.msg);
    cr_assert(info.n_merges == TINY_MERGES && info.vocab_size == 512 + TINY_MERGES + 2);

    snprintf(p, sizeof p, "%s/vocab.json", out);
    cJSON *v = json_load_file(p, &err);
    cr_assert(v, "%s", err.msg);
    cr_assert_eq(cJSON_GetArraySize(v), 512 + TINY_MERGES + 2);
    /* bytes_to_unicode's order: "!" .. "~" first (ids 0..93), byte 0 is U+0100 at id 188 */
    cr_assert_eq(vocab_id(v, "!"), 0);
    cr_assert_eq(vocab_id(v, "~"), 93);
    cr_assert_eq(vocab_id(v, "\xc4\x80"), 188); /* U+0100, byte 0x00 */
    cr_assert_eq(vocab_id(v, "\xc3\xbf"), 187); /* U+00FF, the last printable byte */
    cr_assert_eq(vocab_id(v, "!</w>"), 256);
    cr_assert_eq(vocab_id(v, "th"), 512);
    cr_assert_eq(vocab_id(v, "the</w>"), 513);
    cr_assert_eq(vocab_id(v, "cat</w>"), 515);
    cr_assert_eq(vocab_id(v, "in</w>"), 516);
    cr_assert_eq(vocab_id(v, "<|startoftext|>"), 517);
    cr_assert_eq(vocab_id(v, "<|endoftext|>"), 518);
    cJSON_Delete(v);
    snprintf(p, sizeof p, "%s/merges.txt", out);
    char *m = read_all(p);
    cr_assert_str_eq(m, "#version: 0.2\nt h\nth e</w>\nc a\nca t</w>\ni n</w>\n");
    free(m);

    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, out, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_vocab_size(t), 519);
    cr_assert_eq(clip_tokenizer_pad_id(t), 518);
    int ids[8], n_real;
    cr_assert_eq(clip_tokenize(t, "The cat in", 8, ids, &n_real, NULL, &err), JT_OK, "%s", err.msg);
    const int want[8] = {517, 513, 515, 516, 518, 518, 518, 518};
    cr_assert(memcmp(ids, want, sizeof want) == 0, "ids %d %d %d %d %d", ids[0], ids[1], ids[2],
              ids[3], ids[4]);
    cr_assert_eq(n_real, 5);
    clip_tokenizer_free(t);
    unlink(bpe);
    expect_only("tok");
}

Test(tokenizer_build, pad_plain_text_and_no_final_newline) {
    char bpe[400], out[400];
    tmp_path(bpe, sizeof bpe, "tiny.txt");
    tmp_path(out, sizeof out, "bang");
    /* plain text (zlib reads it as is), without the final newline */
    write_plain(bpe, TINY, strlen(TINY) - 1);
    JtError err;
    ClipBpeInfo info;
    cr_assert_eq(clip_bpe_build(bpe, out, "!", &info, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(info.n_merges, TINY_MERGES);
    ClipTokenizer *t;
    cr_assert_eq(clip_tokenizer_load(&t, out, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_pad_id(t), 0, "SD-2's pad \"!\" is id 0");
    clip_tokenizer_free(t);
    /* an existing empty folder is filled */
    tmp_path(out, sizeof out, "empty");
    cr_assert_eq(mkdir(out, 0755), 0);
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, NULL, &err), JT_OK, "%s", err.msg);
    /* only the first 48,894 merges are read: a longer file's later lines are not (the last one
     * here is not even a merge). 94 x 94 two-character merges "x y", then three-character ones
     * "xy z": all distinct, each joining earlier tokens. */
    char *text = xmalloc(48894 * 8 + 64);
    size_t k = (size_t)sprintf(text, "#header\n");
    int made = 0;
    for (int x = '!'; x <= '~'; x++)
        for (int y = '!'; y <= '~'; y++, made++)
            k += (size_t)sprintf(text + k, "%c %c\n", x, y);
    for (int x = '!'; x <= '~' && made < 48894 + 2; x++)
        for (int y = '!'; y <= '~' && made < 48894 + 2; y++)
            for (int z = '!'; z <= '~' && made < 48894 + 2; z++, made++)
                k += (size_t)sprintf(text + k, "%c%c %c\n", x, y, z);
    k += (size_t)sprintf(text + k, "not a merge line\n");
    tmp_path(bpe, sizeof bpe, "long.txt.gz");
    write_gz(bpe, text, k);
    free(text);
    tmp_path(out, sizeof out, "long");
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, &info, &err), JT_OK, "%s", err.msg);
    cr_assert(info.n_merges == 48894 && info.vocab_size == 49408, "%d merges, %d tokens",
              info.n_merges, info.vocab_size);
    cr_assert_eq(clip_tokenizer_load(&t, out, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_eos_id(t), 49407);
    clip_tokenizer_free(t);
}

/* A malformed file: refused, naming the file and `what`; nothing written. */
static void refused(const char *text, size_t n, int gz, const char *what, const char *what2) {
    char bpe[400], out[400];
    tmp_path(bpe, sizeof bpe, gz ? "bad.txt.gz" : "bad.txt");
    tmp_path(out, sizeof out, "out");
    if (gz)
        write_gz(bpe, text, n);
    else
        write_plain(bpe, text, n);
    JtError err;
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, NULL, &err), JT_ERR, "accepted: %s", what);
    cr_assert(strstr(err.msg, bpe) && strstr(err.msg, what) && (!what2 || strstr(err.msg, what2)),
              "%s", err.msg);
    cr_assert(strchr(err.msg, '\n') == NULL, "one line: %s", err.msg);
    cr_assert(!exists(out), "%s: left %s", what, out);
    unlink(bpe);
    expect_only("");
}

Test(tokenizer_build, malformed_files_refused) {
    static const char *const three = "#h\nt h\nth e </w>\n";
    refused(three, strlen(three), 1, "line 3", "not a merge");
    static const char *const tab = "#h\nt\th\n";
    refused(tab, strlen(tab), 1, "line 2", "not a merge");
    static const char *const cr = "#h\nt h\r\n";
    refused(cr, strlen(cr), 1, "line 2", "not a merge");
    static const char *const empty_mid = "#h\nt h\n\nc a\n";
    refused(empty_mid, strlen(empty_mid), 1, "line 3", "not a merge");
    static const char *const unknown = "#h\nt h\nthe r\n";
    refused(unknown, strlen(unknown), 1, "line 3", "\"the\" is not a token");
    static const char *const dup = "#h\nt h\nt h\n";
    refused(dup, strlen(dup), 1, "line 3", "already a token");
    static const char *const special = "#h\n<|startoftext|> !\n";
    refused(special, strlen(special), 1, "line 2", "not a token");
    static const char *const header_only = "#version: 0.2\n";
    refused(header_only, strlen(header_only), 1, "no merges", NULL);
    static const char *const utf8 = "#h\n\xc3\x28 h\n";
    refused(utf8, strlen(utf8), 1, "line 2", "invalid UTF-8");
    static const char nul[] = "#h\nt h\n\0c a\n";
    refused(nul, sizeof nul - 1, 1, "NUL byte", NULL);
    /* a truncated gzip stream */
    char bpe[400];
    tmp_path(bpe, sizeof bpe, "cut.txt.gz");
    size_t big = 200000;
    char *text = xmalloc(big);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)('a' + (i * 7919 % 26)); /* compresses poorly enough to span blocks */
    write_gz(bpe, text, big);
    free(text);
    struct stat sb;
    cr_assert_eq(stat(bpe, &sb), 0);
    cr_assert_eq(truncate(bpe, sb.st_size / 2), 0);
    char out[400];
    tmp_path(out, sizeof out, "out");
    JtError err;
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "cut.txt.gz") && strstr(err.msg, "gzip"), "%s", err.msg);
    cr_assert(!exists(out));
    /* a missing file */
    tmp_path(bpe, sizeof bpe, "missing.txt.gz");
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "missing.txt.gz") && strstr(err.msg, "cannot open"), "%s", err.msg);
}

Test(tokenizer_build, out_and_pad_refused) {
    char bpe[400], out[400], f[500];
    tmp_path(bpe, sizeof bpe, "tiny.txt.gz");
    write_gz(bpe, TINY, strlen(TINY));
    tmp_path(out, sizeof out, "full");
    cr_assert_eq(mkdir(out, 0755), 0);
    snprintf(f, sizeof f, "%s/keep.txt", out);
    write_plain(f, "x", 1);
    JtError err;
    cr_assert_eq(clip_bpe_build(bpe, out, NULL, NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, out) && strstr(err.msg, "not empty"), "%s", err.msg);
    cr_assert(exists(f), "the folder's file is untouched");
    tmp_path(out, sizeof out, "o");
    cr_assert_eq(clip_bpe_build(bpe, out, "<pad>", NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "--pad") && strstr(err.msg, "<pad>"), "%s", err.msg);
    cr_assert(!exists(out));
    cr_assert_eq(clip_bpe_build(bpe, bpe, NULL, NULL, &err), JT_ERR);
    cr_assert(strstr(err.msg, "not a folder"), "%s", err.msg);
}

Test(tokenizer_build, cli) {
    char bpe[400], out[400], o[256], e[4096];
    tmp_path(bpe, sizeof bpe, "tiny.txt.gz");
    write_gz(bpe, TINY, strlen(TINY));
    tmp_path(out, sizeof out, "cli");
    char args[1200];
    snprintf(args, sizeof args, "tokenizer --bpe %s --out %s --pad '!'", bpe, out);
    cr_assert_eq(cli_run_out(args, o, sizeof o, e, sizeof e), 0, "%s", e);
    cr_assert(strstr(o, out) && strstr(e, "519 tokens"), "%s | %s", o, e);
    snprintf(args, sizeof args, "tokenize --tokenizer %s \"the cat\" --max-length 5", out);
    cr_assert_eq(cli_run_out(args, o, sizeof o, e, sizeof e), 0, "%s", e);
    cr_assert_str_eq(o, "517 513 515 518 0\n");
    /* the same --out again: not empty */
    cli_expect_failure(g_err, sizeof g_err, 1, "tokenizer",
                       (const char *const[]){"not empty", NULL}, "tokenizer --bpe %s --out %s", bpe,
                       out);
    cli_expect_failure(g_err, sizeof g_err, 1, "tokenizer",
                       (const char *const[]){"nothere.gz", "cannot open", NULL},
                       "tokenizer --bpe %s/nothere.gz --out %s/x", test_tmp, test_tmp);
    cli_expect_failure(g_err, sizeof g_err, 2, "tokenizer", (const char *const[]){"--out", NULL},
                       "tokenizer --bpe %s", bpe);
    cli_expect_failure(g_err, sizeof g_err, 2, "tokenizer", (const char *const[]){"--merges", NULL},
                       "tokenizer --bpe %s --out %s/y --merges 3", bpe, test_tmp);
}

/* The real file, when the reference twin's venv has it (open-clip-torch 3.3.0). */
Test(tokenizer_build, real_bpe_file_gives_transformers_ids) {
    glob_t g;
    char pat[600];
    snprintf(pat, sizeof pat,
             "%s/ref/.venv/lib/python3*/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz",
             JTRAK_SOURCE_DIR);
    if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        globfree(&g);
        cr_skip_test("open-clip-torch's BPE file is not installed (ref/.venv)");
    }
    JtError err;
    cJSON *c = json_load_file(JTRAK_FIXTURES "/tokenizer/clip_corpus.json", &err);
    cr_assert(c, "%s", err.msg);
    const cJSON *strings = cJSON_GetObjectItemCaseSensitive(c, "strings");
    const cJSON *expected = cJSON_GetObjectItemCaseSensitive(c, "expected");
    static const char *const pads[2] = {"<|endoftext|>", "!"};
    static const char *const keys[2] = {"full_eot", "full_bang"};
    for (int k = 0; k < 2; k++) {
        char out[400];
        snprintf(out, sizeof out, "%s/%s", test_tmp, keys[k]);
        ClipBpeInfo info;
        cr_assert_eq(clip_bpe_build(g.gl_pathv[0], out, pads[k], &info, &err), JT_OK, "%s",
                     err.msg);
        cr_assert(info.vocab_size == 49408 && info.n_merges == 48894);
        ClipTokenizer *t;
        cr_assert_eq(clip_tokenizer_load(&t, out, &err), JT_OK, "%s", err.msg);
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(expected, keys[k]);
        int i = 0;
        for (const cJSON *s = strings->child, *e = exp->child; s && e;
             s = s->next, e = e->next, i++) {
            int ids[77];
            cr_assert_eq(clip_tokenize(t, s->valuestring, 77, ids, NULL, NULL, &err), JT_OK, "%s",
                         err.msg);
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(e, "ids");
            int j = 0;
            for (const cJSON *w = want->child; w; w = w->next, j++)
                cr_assert_eq(ids[j], w->valueint, "%s string %d position %d", keys[k], i, j);
        }
        cr_assert_eq(i, 60);
        clip_tokenizer_free(t);
    }
    cJSON_Delete(c);
    globfree(&g);
}
