/* tokenizer_build.c: see tokenizer_build.h. The file's reading follows OpenCLIP's
 * SimpleTokenizer (open_clip/tokenizer.py: the lines after the first, at most 48,894, each split
 * into a pair) but is strict where it is lenient: a line that is not exactly two symbols, a symbol
 * that is not yet a token, a merge whose result is already a token, invalid UTF-8 and NUL bytes
 * are refused (the real file has none of these; its first 48,894 merges only join earlier
 * tokens). A final empty line (the file ending in a newline) is not a merge. */
#include "text/tokenizer_build.h"

#include "core/hash.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- a set of token strings with their ids (open addressing) ---- */

typedef struct {
    char **tok; /* (n) id -> token */
    int n, cap_tok;
    int *slot; /* (cap) token id or -1 */
    size_t cap;
} TokSet;

static void tokset_init(TokSet *s, int expect) {
    s->n = 0;
    s->cap_tok = expect;
    s->tok = xmalloc((size_t)expect * sizeof *s->tok);
    s->cap = 1;
    while (s->cap < 2 * (size_t)expect)
        s->cap <<= 1;
    s->slot = xmalloc(s->cap * sizeof *s->slot);
    for (size_t i = 0; i < s->cap; i++)
        s->slot[i] = -1;
}

static void tokset_free(TokSet *s) {
    for (int i = 0; i < s->n; i++)
        free(s->tok[i]);
    free(s->tok);
    free(s->slot);
}

/* The slot of t (its id there, or -1 where it would go). */
static size_t tokset_slot(const TokSet *s, const char *t, size_t len) {
    size_t i = hash_fnv1a(HASH_FNV_OFFSET, t, len) & (s->cap - 1);
    while (s->slot[i] >= 0) {
        const char *o = s->tok[s->slot[i]];
        if (strlen(o) == len && memcmp(o, t, len) == 0) break;
        i = (i + 1) & (s->cap - 1);
    }
    return i;
}

static int tokset_find(const TokSet *s, const char *t, size_t len) {
    return s->slot[tokset_slot(s, t, len)];
}

/* Adds t (len bytes); returns its id, or -1 when it is already there. */
static int tokset_add(TokSet *s, const char *t, size_t len) {
    size_t i = tokset_slot(s, t, len);
    if (s->slot[i] >= 0) return -1;
    CHECK(s->n < s->cap_tok, "tokset_add: more tokens than reserved");
    char *c = xmalloc(len + 1);
    memcpy(c, t, len);
    c[len] = 0;
    s->tok[s->n] = c;
    s->slot[i] = s->n;
    return s->n++;
}

/* ---- reading the file ---- */

static int read_bpe_file(const char *path, char **out, size_t *out_len, JtError *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return jt_fail(err, "%s: not a regular file", path);
    gzFile g = gzopen(path, "rb");
    if (!g) return jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    char *buf = xmalloc(cap);
    int rc = JT_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= CLIP_BPE_MAX_BYTES) {
                rc = jt_fail(err, "%s: more than %u MiB uncompressed: not a CLIP BPE file", path,
                             CLIP_BPE_MAX_BYTES >> 20);
                break;
            }
            buf = xrealloc(buf, cap *= 2);
        }
        int got = gzread(g, buf + len, (unsigned)(cap - len));
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(g, &zerr);
            rc = jt_fail(err, "%s: not a readable gzip file (%s)", path, msg);
            break;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    /* a truncated gzip stream reads as a short file; gzclose_r reports it */
    int zc = gzclose_r(g);
    if (rc == JT_OK && zc != Z_OK)
        rc = jt_fail(err, "%s: the gzip stream is truncated or corrupt (zlib error %d)", path, zc);
    if (rc == JT_OK && memchr(buf, 0, len))
        rc = jt_fail(err, "%s: a NUL byte at byte %zu (not a text file)", path,
                     (size_t)((char *)memchr(buf, 0, len) - buf));
    if (rc != JT_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return JT_OK;
}

/* Parses the merges into the vocabulary v (the 512 byte symbols already in it) and the merges
 * list m (n pairs "A B", pointers into text, which is modified: lines are NUL-terminated). */
static int parse_merges(const char *path, char *text, size_t len, TokSet *v, char ***m, int *n,
                        JtError *err) {
    char **merges = xmalloc(CLIP_BPE_MAX_MERGES * sizeof *merges);
    int k = 0;
    char *p = memchr(text, '\n', len); /* line 0: the header */
    size_t at = p ? (size_t)(p - text) + 1 : len;
    int rc = JT_OK;
    for (int line = 1; at < len && k < CLIP_BPE_MAX_MERGES; line++) {
        char *s = text + at;
        char *e = memchr(s, '\n', len - at);
        size_t n_s = e ? (size_t)(e - s) : len - at;
        at += n_s + (e ? 1 : 0);
        if (n_s == 0 && at >= len) break; /* the final newline */
        s[n_s] = 0;                       /* (the '\n', or the buffer's spare byte) */
        if (clip_utf8_check(s, n_s) != n_s) {
            rc = jt_fail(err, "%s: line %d: invalid UTF-8 at byte %zu of the line", path, line + 1,
                         clip_utf8_check(s, n_s));
            break;
        }
        char *sp = strchr(s, ' ');
        if (!sp || sp == s || sp[1] == 0 || strpbrk(sp + 1, " \t\r\v\f") ||
            strpbrk(s, "\t\r\v\f")) {
            rc = jt_fail(err,
                         "%s: line %d: \"%.60s\" is not a merge (two symbols separated by one "
                         "space)",
                         path, line + 1, s);
            break;
        }
        size_t na = (size_t)(sp - s), nb = n_s - na - 1;
        if (tokset_find(v, s, na) < 0 || tokset_find(v, sp + 1, nb) < 0) {
            rc = jt_fail(err,
                         "%s: line %d: merge \"%.60s\": \"%.*s\" is not a token yet (a merge joins "
                         "byte symbols or earlier merges)",
                         path, line + 1, s, (int)(tokset_find(v, s, na) < 0 ? na : nb),
                         tokset_find(v, s, na) < 0 ? s : sp + 1);
            break;
        }
        char joined[2 * 4096];
        if (na + nb >= sizeof joined) {
            rc = jt_fail(err, "%s: line %d: a merge of %zu bytes (too long for a token)", path,
                         line + 1, na + nb);
            break;
        }
        memcpy(joined, s, na);
        memcpy(joined + na, sp + 1, nb);
        if (tokset_add(v, joined, na + nb) < 0) {
            rc =
                jt_fail(err, "%s: line %d: merge \"%.60s\" gives \"%.*s\", already a token (id %d)",
                        path, line + 1, s, (int)(na + nb), joined, tokset_find(v, joined, na + nb));
            break;
        }
        merges[k++] = s;
    }
    if (rc == JT_OK && k == 0)
        rc = jt_fail(err, "%s: no merges after the header line (not a CLIP BPE file)", path);
    if (rc != JT_OK) {
        free(merges);
        return rc;
    }
    *m = merges;
    *n = k;
    return JT_OK;
}

/* ---- writing the folder ---- */

static cJSON *added_token(const char *content) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddTrueToObject(o, "normalized");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddFalseToObject(o, "single_word");
    return o;
}

static int write_file(const char *dir, const char *name, const char *text, size_t n, JtError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return jt_fail(err, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(text, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    return ok ? JT_OK : jt_fail(err, "%s: write failed: %s", path, strerror(errno));
}

static int write_json(const char *dir, const char *name, cJSON *o, JtError *err) {
    char *text = json_print_indent2(o);
    int rc = write_file(dir, name, text, strlen(text), err);
    free(text);
    cJSON_Delete(o);
    return rc;
}

/* The hub's SD tokenizer files (what ref/make_tokenizer_fixtures.py writes): special tokens as
 * objects, the pad token a plain string, CLIPTokenizer's options. */
static int write_folder(const char *dir, const TokSet *v, char **merges, int n, const char *pad,
                        JtError *err) {
    cJSON *vocab = cJSON_CreateObject();
    for (int i = 0; i < v->n; i++)
        cJSON_AddItemToObject(vocab, v->tok[i], cJSON_CreateNumber(i));
    char *text = cJSON_PrintUnformatted(vocab);
    CHECK(text != NULL, "cJSON_PrintUnformatted failed");
    cJSON_Delete(vocab);
    int rc = write_file(dir, "vocab.json", text, strlen(text), err);
    free(text);
    if (rc) return rc;
    size_t cap = 32, len = 0;
    for (int i = 0; i < n; i++)
        cap += strlen(merges[i]) + 1;
    char *mt = xmalloc(cap);
    len = (size_t)snprintf(mt, cap, "#version: 0.2\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(mt + len, cap - len, "%s\n", merges[i]);
    rc = write_file(dir, "merges.txt", mt, len, err);
    free(mt);
    if (rc) return rc;
    cJSON *sp = cJSON_CreateObject();
    cJSON_AddItemToObject(sp, "bos_token", added_token("<|startoftext|>"));
    cJSON_AddItemToObject(sp, "eos_token", added_token("<|endoftext|>"));
    cJSON_AddStringToObject(sp, "pad_token", pad);
    cJSON_AddItemToObject(sp, "unk_token", added_token("<|endoftext|>"));
    if ((rc = write_json(dir, "special_tokens_map.json", sp, err))) return rc;
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddFalseToObject(tc, "add_prefix_space");
    cJSON_AddItemToObject(tc, "bos_token", added_token("<|startoftext|>"));
    cJSON_AddTrueToObject(tc, "do_lower_case");
    cJSON_AddItemToObject(tc, "eos_token", added_token("<|endoftext|>"));
    cJSON_AddStringToObject(tc, "errors", "replace");
    cJSON_AddNumberToObject(tc, "model_max_length", 77);
    cJSON_AddStringToObject(tc, "pad_token", pad);
    cJSON_AddStringToObject(tc, "tokenizer_class", "CLIPTokenizer");
    cJSON_AddItemToObject(tc, "unk_token", added_token("<|endoftext|>"));
    return write_json(dir, "tokenizer_config.json", tc, err);
}

static void remove_folder(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* out_dir must be absent or an empty folder. */
static int check_out(const char *out_dir, JtError *err) {
    struct stat sb;
    if (stat(out_dir, &sb) != 0) return JT_OK;
    if (!S_ISDIR(sb.st_mode)) return jt_fail(err, "%s: --out exists and is not a folder", out_dir);
    DIR *d = opendir(out_dir);
    if (!d) return jt_fail(err, "%s: cannot read the folder: %s", out_dir, strerror(errno));
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty ? JT_OK
                 : jt_fail(err,
                           "%s: --out is not empty: writing a tokenizer here would mix its files "
                           "with others; give a new or empty folder",
                           out_dir);
}

int clip_bpe_build(const char *bpe_path, const char *out_dir, const char *pad_token,
                   ClipBpeInfo *info, JtError *err) {
    const char *pad = pad_token ? pad_token : "<|endoftext|>";
    if (check_out(out_dir, err)) return JT_ERR;
    char *text = NULL;
    size_t len = 0;
    if (read_bpe_file(bpe_path, &text, &len, err)) return JT_ERR;
    text = xrealloc(text, len + 1); /* a spare byte: the last line's terminator */
    text[len] = 0;
    TokSet v;
    tokset_init(&v, 512 + CLIP_BPE_MAX_MERGES + 2);
    /* ids 0..511: the byte symbols in bytes_to_unicode's order (its printable bytes first, then
     * the others in byte order), then the same with "</w>" */
    int order[256], k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            if (printable == (pass == 0)) order[k++] = b;
        }
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 256; i++) {
            char s[16];
            size_t n = clip_byte_symbol(order[i], s);
            if (w) memcpy(s + n, "</w>", 5), n += 4;
            CHECK(tokset_add(&v, s, n) >= 0, "byte symbol %d twice", order[i]);
        }
    char **merges = NULL;
    int n = 0;
    int rc = parse_merges(bpe_path, text, len, &v, &merges, &n, err);
    if (rc == JT_OK) {
        static const char *const specials[2] = {"<|startoftext|>", "<|endoftext|>"};
        for (int i = 0; i < 2 && rc == JT_OK; i++)
            if (tokset_add(&v, specials[i], strlen(specials[i])) < 0)
                rc = jt_fail(err, "%s: a merge gives the special token %s", bpe_path, specials[i]);
    }
    if (rc == JT_OK && tokset_find(&v, pad, strlen(pad)) < 0)
        rc = jt_fail(err, "--pad \"%.60s\": not a token of the vocabulary", pad);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out_dir, (long)getpid());
    int made = 0;
    if (rc == JT_OK) {
        remove_folder(tmp);
        rc = model_mkdirs(tmp, err);
        made = rc == JT_OK;
    }
    if (rc == JT_OK) rc = write_folder(tmp, &v, merges, n, pad, err);
    if (rc == JT_OK) { /* what was written must load as a tokenizer (the loader's checks) */
        ClipTokenizer *t;
        rc = clip_tokenizer_load(&t, tmp, err);
        if (rc == JT_OK) {
            CHECK(clip_tokenizer_vocab_size(t) == v.n,
                  "tokenizer_build: the folder has %d ids, "
                  "not %d",
                  clip_tokenizer_vocab_size(t), v.n);
            clip_tokenizer_free(t);
        }
    }
    /* rename(2) onto an empty folder replaces it */
    if (rc == JT_OK && rename(tmp, out_dir) != 0)
        rc = jt_fail(err, "%s: cannot rename %s into place: %s", out_dir, tmp, strerror(errno));
    if (rc != JT_OK && made) remove_folder(tmp);
    if (rc == JT_OK && info) {
        info->n_merges = n;
        info->vocab_size = v.n;
    }
    free(merges);
    tokset_free(&v);
    free(text);
    return rc;
}
