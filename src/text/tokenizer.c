/* tokenizer.c: the CLIP BPE tokenizer (see tokenizer.h), written from ldm.md §4.2 and from the
 * behaviour of transformers 5.23's CLIPTokenizer as measured by ref/make_tokenizer_fixtures.py:
 *
 *   1. added tokens (the special tokens) are cut out of the raw text first: those with
 *      normalized=false by exact match on the raw text, then those with normalized=true on each
 *      normalised remaining segment (leftmost-longest, as the tokenizers library does);
 *   2. each remaining segment is normalised: NFC, every run of Unicode White_Space to one space,
 *      every code point lower-cased on its own (full mapping, no final-sigma context: Rust's
 *      char::to_lowercase);
 *   3. split with CLIP's regex <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|
 *      [\p{N}]|[^\s\p{L}\p{N}]+ (matches kept). The byte-level pre-tokenizer then splits again
 *      with GPT-2's regex, which changes only the two literal special strings ("<|", the word,
 *      "|>");
 *   4. each word's bytes become GPT-2 bytes_to_unicode symbols, the last one with "</w>", and are
 *      merged by rank with a heap (lowest rank, then leftmost), an entry being still valid when
 *      the pair at its position would merge into the same new id (the tokenizers library's test);
 *      O(w log w) for a word of w bytes;
 *   5. [bos] + ids + [eos], truncated to keep bos, the first max_len-2 ids and eos, padded.
 *
 * Unicode data (NFC, general categories, White_Space, lower case) comes from ICU (libicu-dev). */
#include "text/tokenizer.h"

#include "core/hash.h"
#include "io/jsonfile.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

/* ---------------------------------------------------------------- hash maps */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* token string -> id, open addressing, capacity a power of two */
typedef struct {
    char **key;
    size_t *klen;
    int *val;
    size_t cap, count;
} StrMap;

static void strmap_init(StrMap *m, size_t expect) {
    m->cap = 16;
    while (m->cap < 2 * expect + 16)
        m->cap *= 2;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->klen = xcalloc(m->cap, sizeof *m->klen);
    m->val = xcalloc(m->cap, sizeof *m->val);
    m->count = 0;
}

static void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++)
        free(m->key[i]);
    free(m->key);
    free(m->klen);
    free(m->val);
}

static size_t strmap_slot(const StrMap *m, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & (m->cap - 1);
    while (m->key[i] && !(m->klen[i] == n && memcmp(m->key[i], s, n) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* A repeated key keeps the last id (a JSON object read into a hash map). */
static void strmap_put(StrMap *m, const char *s, size_t n, int v) {
    if (2 * (m->count + 1) > m->cap) {
        StrMap g;
        strmap_init(&g, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                size_t j = strmap_slot(&g, m->key[i], m->klen[i]);
                g.key[j] = m->key[i], g.klen[j] = m->klen[i], g.val[j] = m->val[i];
                g.count++;
            }
        free(m->key), free(m->klen), free(m->val);
        *m = g;
    }
    size_t i = strmap_slot(m, s, n);
    if (!m->key[i]) {
        m->key[i] = xmalloc(n + 1);
        memcpy(m->key[i], s, n);
        m->key[i][n] = 0;
        m->klen[i] = n;
        m->count++;
    }
    m->val[i] = v;
}

static int strmap_get(const StrMap *m, const char *s, size_t n) {
    size_t i = strmap_slot(m, s, n);
    return m->key[i] ? m->val[i] : -1;
}

/* (left id, right id) -> (rank, merged id) */
typedef struct {
    uint64_t *key; /* (a << 32 | b) + 1; 0 = empty */
    int *rank, *merged;
    size_t cap;
} PairMap;

static void pairmap_init(PairMap *m, size_t expect) {
    m->cap = 16;
    while (m->cap < 2 * expect + 16)
        m->cap *= 2;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->rank = xcalloc(m->cap, sizeof *m->rank);
    m->merged = xcalloc(m->cap, sizeof *m->merged);
}

static void pairmap_free(PairMap *m) {
    free(m->key);
    free(m->rank);
    free(m->merged);
}

static uint64_t pair_key(int a, int b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t pairmap_slot(const PairMap *m, uint64_t k) {
    size_t i = hash_u64(k) & (m->cap - 1);
    while (m->key[i] && m->key[i] != k)
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* A repeated merge keeps the later rank (the tokenizers library collects them into a map). */
static void pairmap_put(PairMap *m, int a, int b, int rank, int merged) {
    size_t i = pairmap_slot(m, pair_key(a, b));
    m->key[i] = pair_key(a, b);
    m->rank[i] = rank;
    m->merged[i] = merged;
}

static int pairmap_get(const PairMap *m, int a, int b, int *rank, int *merged) {
    size_t i = pairmap_slot(m, pair_key(a, b));
    if (!m->key[i]) return 0;
    *rank = m->rank[i];
    *merged = m->merged[i];
    return 1;
}

/* ---------------------------------------------------------------- the tokenizer */

typedef struct {
    char *content;
    size_t len;
    int id;
    int normalized;
} AddedToken;

struct ClipTokenizer {
    StrMap vocab;
    PairMap merges;
    int n_merges;
    int vocab_size; /* 1 + largest id */
    AddedToken *added;
    int n_added;
    int bos, eos, pad, unk;
    int max_len;
    int byte_id[256],
        byte_eow_id[256]; /* ids of the byte symbols alone and with "</w>" (-1: none) */
    const char *layout;
    uint64_t fingerprint; /* clip_tokenizer_fingerprint, computed at load */
};

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in
 * byte order. Returns the code point of byte b. */
static int byte_to_cp(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256 + n;
}

static size_t utf8_put(char *o, int c) {
    if (c < 0x80) return o[0] = (char)c, 1;
    if (c < 0x800) return o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 63)), 2;
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12), o[1] = (char)(0x80 | (c >> 6 & 63)),
        o[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18), o[1] = (char)(0x80 | (c >> 12 & 63));
    o[2] = (char)(0x80 | (c >> 6 & 63)), o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). Returns the byte
 * offset of the first bad sequence, or n when all is well; *cp gets the decoded code point. */
static size_t utf8_next(const unsigned char *s, size_t n, size_t i, int *cp) {
    unsigned c = s[i];
    if (c < 0x80) return *cp = (int)c, i + 1;
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || i + (size_t)len > n) return (size_t)-1;
    unsigned v = c & (0x3F >> (len - 1));
    for (int k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return (size_t)-1;
        v = v << 6 | (s[i + k] & 0x3F);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return (size_t)-1;
    return *cp = (int)v, i + (size_t)len;
}

static size_t utf8_check(const char *s, size_t n) {
    size_t i = 0;
    int cp;
    while (i < n) {
        size_t j = utf8_next((const unsigned char *)s, n, i, &cp);
        if (j == (size_t)-1) return i;
        i = j;
    }
    return n;
}

size_t clip_byte_symbol(int b, char out[5]) {
    size_t n = utf8_put(out, byte_to_cp(b & 255));
    out[n] = 0;
    return n;
}

size_t clip_utf8_check(const char *s, size_t n) {
    return utf8_check(s, n);
}

/* ---------------------------------------------------------------- loading */

typedef struct {
    const char *content; /* NULL: absent */
    int is_object, normalized;
    const char *file; /* where it was read, for messages */
} SpecialToken;

static int read_flags_plain(const cJSON *o, const char *file, const char *what, JtError *err) {
    static const char *const refused[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, refused[k]);
        if (f && cJSON_IsTrue(f))
            return jt_fail(err, "%s: %s has %s=true, which jtrak's tokenizer does not support",
                           file, what, refused[k]);
    }
    return JT_OK;
}

/* A special-token value: a string or {"content": ..., "normalized": ...}. */
static int read_special(const cJSON *v, const char *file, const char *key, SpecialToken *st,
                        JtError *err) {
    if (!v || cJSON_IsNull(v)) return JT_OK;
    if (cJSON_IsString(v)) {
        *st = (SpecialToken){v->valuestring, 0, 0, file};
        return JT_OK;
    }
    if (!cJSON_IsObject(v))
        return jt_fail(err, "%s: %s is neither a string nor an object", file, key);
    const char *c = json_str(v, "content");
    if (!c) return jt_fail(err, "%s: %s has no string \"content\"", file, key);
    /* transformers builds AddedToken(**value, special=True): normalized defaults to false */
    if (read_flags_plain(v, file, key, err)) return JT_ERR;
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(v, "normalized");
    if (nz && !cJSON_IsBool(nz))
        return jt_fail(err, "%s: %s.normalized is not a boolean", file, key);
    *st = (SpecialToken){c, 1, cJSON_IsTrue(nz), file};
    return JT_OK;
}

static void tok_add_token(ClipTokenizer *t, const char *content, int id, int normalized) {
    size_t len = strlen(content);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, content, len) == 0) return;
    t->added = xrealloc(t->added, (size_t)(t->n_added + 1) * sizeof *t->added);
    t->added[t->n_added++] = (AddedToken){xstrdup(content), len, id, normalized};
}

static int token_id(const ClipTokenizer *t, const char *s) {
    return strmap_get(&t->vocab, s, strlen(s));
}

/* Whether v is a JSON number holding an integer in [lo, hi]: the range is checked before any
 * conversion (a cast of 1e130 to an integer type is undefined behaviour). */
static int json_is_int_in(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
           v->valuedouble == floor(v->valuedouble);
}

static int load_vocab(ClipTokenizer *t, const cJSON *v, const char *file, JtError *err) {
    if (!cJSON_IsObject(v))
        return jt_fail(err, "%s: the vocabulary is not a JSON object (token -> id)", file);
    strmap_init(&t->vocab, (size_t)cJSON_GetArraySize(v));
    int n = 0;
    for (const cJSON *e = v->child; e; e = e->next, n++) {
        if (!json_is_int_in(e, 0, (double)(1 << 30) - 1))
            return jt_fail(err, "%s: token \"%s\": the id is not an integer in [0, 2^30)", file,
                           e->string);
        size_t len = strlen(e->string);
        if (len == 0) return jt_fail(err, "%s: an empty token", file);
        if (utf8_check(e->string, len) != len)
            return jt_fail(err, "%s: token \"%s\" is not valid UTF-8", file, e->string);
        const int id = (int)e->valuedouble;
        strmap_put(&t->vocab, e->string, len, id);
        if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    }
    if (n == 0) return jt_fail(err, "%s: the vocabulary is empty", file);
    return JT_OK;
}

/* One merge "a b" of rank `rank`: both symbols and their concatenation must be in the vocab. */
static int add_merge(ClipTokenizer *t, const char *a, size_t na, const char *b, size_t nb, int rank,
                     const char *file, int line, JtError *err) {
    char where[32] = "";
    if (line > 0)
        snprintf(where, sizeof where, " line %d:", line);
    else
        snprintf(where, sizeof where, " merge %d:", rank);
    int ia = strmap_get(&t->vocab, a, na), ib = strmap_get(&t->vocab, b, nb);
    if (ia < 0)
        return jt_fail(err, "%s:%s symbol \"%.*s\" is not in the vocabulary", file, where, (int)na,
                       a);
    if (ib < 0)
        return jt_fail(err, "%s:%s symbol \"%.*s\" is not in the vocabulary", file, where, (int)nb,
                       b);
    char *ab = xmalloc(na + nb + 1);
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    int iab = strmap_get(&t->vocab, ab, na + nb);
    if (iab < 0) {
        jt_fail(err, "%s:%s the merged symbol \"%.*s\" is not in the vocabulary", file, where,
                (int)(na + nb), ab);
        free(ab);
        return JT_ERR;
    }
    free(ab);
    pairmap_put(&t->merges, ia, ib, rank, iab);
    t->n_merges++;
    return JT_OK;
}

static char *read_text_file(const char *path, size_t *len, JtError *err) {
    FILE *f = jt_fopen_regular(path, err);
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *s = xmalloc(cap);
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) s = xrealloc(s, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(s);
        jt_fail(err, "%s: read error", path);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}

/* merges.txt: lines starting with "#version" are skipped; every other line is "a b" (one space),
 * its rank the order among those lines (as the tokenizers library reads the file). */
static int load_merges_txt(ClipTokenizer *t, const char *path, JtError *err) {
    size_t n;
    char *s = read_text_file(path, &n, err);
    if (!s) return JT_ERR;
    if (strlen(s) != n) {
        free(s);
        return jt_fail(err, "%s: a NUL byte in the file", path);
    }
    pairmap_init(&t->merges, n / 8 + 16);
    int rank = 0, line = 0, rc = JT_OK;
    for (char *p = s; *p && rc == JT_OK;) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        line++;
        if (len && p[len - 1] == '\r') len--;
        if (!(len >= 8 && memcmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p)) || sp == p ||
                sp + 1 == p + len)
                rc = jt_fail(err, "%s: line %d: expected two symbols \"a b\", found \"%.*s\"", path,
                             line, (int)(len > 60 ? 60 : len), p);
            else
                rc = add_merge(t, p, (size_t)(sp - p), sp + 1, len - (size_t)(sp + 1 - p), rank++,
                               path, line, err);
        }
        p = e ? e + 1 : p + strlen(p);
    }
    free(s);
    return rc;
}

/* tokenizer.json's model.merges: ["a", "b"] pairs or "a b" strings. */
static int load_merges_json(ClipTokenizer *t, const cJSON *m, const char *file, JtError *err) {
    if (!cJSON_IsArray(m)) return jt_fail(err, "%s: model.merges is not an array", file);
    pairmap_init(&t->merges, (size_t)cJSON_GetArraySize(m));
    int rank = 0;
    for (const cJSON *e = m->child; e; e = e->next, rank++) {
        const char *a, *b;
        size_t na, nb;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == e->valuestring || !sp[1])
                return jt_fail(err, "%s: model.merges[%d]: expected \"a b\", found \"%s\"", file,
                               rank, e->valuestring);
            a = e->valuestring, na = (size_t)(sp - a), b = sp + 1, nb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring, na = strlen(a);
            b = e->child->next->valuestring, nb = strlen(b);
        } else {
            return jt_fail(err, "%s: model.merges[%d] is neither \"a b\" nor a pair of strings",
                           file, rank);
        }
        if (add_merge(t, a, na, b, nb, rank, file, 0, err)) return JT_ERR;
    }
    return JT_OK;
}

/* An added token's normalized flag; absent, the tokenizers library's default: true for an
 * ordinary added token, false for a special one. */
static int added_normalized(const cJSON *e) {
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(e, "normalized");
    if (nz) return cJSON_IsTrue(nz);
    return !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
}

/* An added-token list (tokenizer_config.json's added_tokens_decoder or tokenizer.json's
 * added_tokens): its tokens and their normalized flags take precedence over the special-token
 * entries (as in transformers). */
static int load_added_list(ClipTokenizer *t, const cJSON *list, const char *file, JtError *err) {
    if (cJSON_IsObject(list)) { /* added_tokens_decoder: {"id": {...}} */
        for (const cJSON *e = list->child; e; e = e->next) {
            char *end;
            long id = strtol(e->string, &end, 10);
            const char *c = cJSON_IsObject(e) ? json_str(e, "content") : NULL;
            if (*end || end == e->string || id < 0 || id >= (1 << 30) || !c)
                return jt_fail(err,
                               "%s: added_tokens_decoder[\"%s\"] is not an id with a \"content\"",
                               file, e->string);
            if (read_flags_plain(e, file, c, err)) return JT_ERR;
            int vid = token_id(t, c);
            tok_add_token(t, c, vid >= 0 ? vid : (int)id, added_normalized(e));
        }
        return JT_OK;
    }
    if (!cJSON_IsArray(list)) return jt_fail(err, "%s: added_tokens is not an array", file);
    int k = 0;
    for (const cJSON *e = list->child; e; e = e->next, k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const char *c = cJSON_IsObject(e) ? json_str(e, "content") : NULL;
        if (!c || !json_is_int_in(id, 0, (double)(1 << 30) - 1))
            return jt_fail(err, "%s: added_tokens[%d] has no \"content\" and \"id\"", file, k);
        if (read_flags_plain(e, file, c, err)) return JT_ERR;
        int vid = token_id(t, c);
        tok_add_token(t, c, vid >= 0 ? vid : (int)id->valuedouble, added_normalized(e));
    }
    return JT_OK;
}

static int file_exists(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    struct stat sb;
    int ok = stat(p, &sb) == 0;
    free(p);
    return ok;
}

enum { SP_BOS, SP_EOS, SP_UNK, SP_PAD, N_SP };
static const char *const SP_KEY[N_SP] = {"bos_token", "eos_token", "unk_token", "pad_token"};
/* CLIPTokenizer's defaults */
static const char *const SP_DEFAULT[N_SP] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>",
                                             "<|endoftext|>"};

/* The normalized flag that transformers 5.23 ends up giving a special token that no added-token
 * list names. Its loading code adds the same content several times with different flags; the
 * rule below fits what was measured (the ten "variants" of ref/make_tokenizer_fixtures.py and the
 * SD-1 / SD-2 folders, all checked by test_tokenizer; not derived from transformers' code): when
 * unk_token or pad_token carries the content, the token is normalized only if every one of them
 * that does is an object with normalized=true (a plain string is not normalized); otherwise the
 * same rule over bos_token and eos_token. */
static int special_normalized(const SpecialToken sp[N_SP], const char *content) {
    int any = 0, all = 1;
    for (int k = SP_UNK; k <= SP_PAD; k++)
        if (sp[k].content && strcmp(sp[k].content, content) == 0)
            any = 1, all &= sp[k].is_object && sp[k].normalized;
    if (any) return all;
    for (int k = SP_BOS; k <= SP_EOS; k++)
        if (sp[k].content && strcmp(sp[k].content, content) == 0)
            any = 1, all &= sp[k].is_object && sp[k].normalized;
    return any && all;
}

static int tokenizer_load_impl(ClipTokenizer *t, const char *dir, JtError *err) {
    int rc = JT_ERR;
    cJSON *vocab_doc = NULL, *tj = NULL, *cfg = NULL, *stm = NULL;
    char *p_vocab = path_join(dir, "vocab.json"), *p_merges = path_join(dir, "merges.txt");
    char *p_tj = path_join(dir, "tokenizer.json"), *p_cfg = path_join(dir, "tokenizer_config.json");
    char *p_stm = path_join(dir, "special_tokens_map.json");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        jt_fail(err, "%s: not a tokenizer folder (no such folder)", dir);
        goto done;
    }
    /* vocab.json + merges.txt are preferred when a folder has both layouts (a diffusers pipeline's
     * tokenizer/ folder is written that way; transformers itself prefers tokenizer.json, and the
     * two hold the same vocabulary when one program wrote both). */
    int have_v = file_exists(dir, "vocab.json"), have_m = file_exists(dir, "merges.txt");
    const char *added_file = NULL;
    const cJSON *added_list = NULL;
    if (have_v && have_m) {
        t->layout = "vocab.json+merges.txt";
        if (!(vocab_doc = json_load_file(p_vocab, err))) goto done;
        if (load_vocab(t, vocab_doc, p_vocab, err) || load_merges_txt(t, p_merges, err)) goto done;
    } else if (file_exists(dir, "tokenizer.json")) {
        t->layout = "tokenizer.json";
        if (!(tj = json_load_file(p_tj, err))) goto done;
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
        if (!cJSON_IsObject(model)) {
            jt_fail(err, "%s: no \"model\" object", p_tj);
            goto done;
        }
        const char *type = json_str(model, "type");
        if (type && strcmp(type, "BPE") != 0) {
            jt_fail(err, "%s: model.type is \"%s\", not the BPE of a CLIP tokenizer", p_tj, type);
            goto done;
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        if (!v) {
            jt_fail(err, "%s: no model.vocab", p_tj);
            goto done;
        }
        if (load_vocab(t, v, p_tj, err) ||
            load_merges_json(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), p_tj, err))
            goto done;
        added_list = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
        added_file = p_tj;
    } else {
        jt_fail(err, "%s: no tokenizer files (need vocab.json + merges.txt, or tokenizer.json)%s",
                dir,
                have_v   ? ": merges.txt is missing"
                : have_m ? ": vocab.json is missing"
                         : "");
        goto done;
    }

    SpecialToken sp[N_SP];
    for (int k = 0; k < N_SP; k++)
        sp[k] = (SpecialToken){SP_DEFAULT[k], 0, 0, "CLIPTokenizer's default"};
    t->max_len = 77;
    const cJSON *decoder = NULL;
    if (file_exists(dir, "tokenizer_config.json")) {
        if (!(cfg = json_load_file(p_cfg, err))) goto done;
        if (!cJSON_IsObject(cfg)) {
            jt_fail(err, "%s: not a JSON object", p_cfg);
            goto done;
        }
        for (int k = 0; k < N_SP; k++)
            if (read_special(cJSON_GetObjectItemCaseSensitive(cfg, SP_KEY[k]), p_cfg, SP_KEY[k],
                             &sp[k], err))
                goto done;
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length");
        if (ml) {
            if (!json_is_int_in(ml, 2, 1 << 20)) {
                jt_fail(err, "%s: model_max_length is not an integer in [2, 2^20]", p_cfg);
                goto done;
            }
            t->max_len = (int)ml->valuedouble;
        }
        /* do_lower_case is not read: the tokenizers-backed CLIPTokenizer always lower-cases. */
        decoder = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    }
    /* special_tokens_map.json overrides tokenizer_config.json, and is read only when the config
     * has no added_tokens_decoder (transformers' legacy path). */
    if (!decoder && file_exists(dir, "special_tokens_map.json")) {
        if (!(stm = json_load_file(p_stm, err))) goto done;
        if (!cJSON_IsObject(stm)) {
            jt_fail(err, "%s: not a JSON object", p_stm);
            goto done;
        }
        for (int k = 0; k < N_SP; k++)
            if (read_special(cJSON_GetObjectItemCaseSensitive(stm, SP_KEY[k]), p_stm, SP_KEY[k],
                             &sp[k], err))
                goto done;
    }
    if (decoder && load_added_list(t, decoder, p_cfg, err)) goto done;
    if (added_list && load_added_list(t, added_list, added_file, err)) goto done;
    int ids[N_SP];
    for (int k = 0; k < N_SP; k++) {
        ids[k] = token_id(t, sp[k].content);
        for (int i = 0; ids[k] < 0 && i < t->n_added; i++)
            if (strcmp(t->added[i].content, sp[k].content) == 0) ids[k] = t->added[i].id;
        if (ids[k] < 0) {
            jt_fail(err, "%s: %s \"%s\" (from %s) is not in the vocabulary", dir, SP_KEY[k],
                    sp[k].content, sp[k].file);
            goto done;
        }
        if (!sp[k].content[0] ||
            utf8_check(sp[k].content, strlen(sp[k].content)) != strlen(sp[k].content)) {
            jt_fail(err, "%s: %s is empty or not valid UTF-8 (%s)", dir, SP_KEY[k], sp[k].file);
            goto done;
        }
    }
    for (int k = 0; k < N_SP; k++)
        tok_add_token(t, sp[k].content, ids[k], special_normalized(sp, sp[k].content));
    t->bos = ids[SP_BOS], t->eos = ids[SP_EOS], t->unk = ids[SP_UNK], t->pad = ids[SP_PAD];
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n = utf8_put(s, byte_to_cp(b));
        t->byte_id[b] = strmap_get(&t->vocab, s, n);
        memcpy(s + n, "</w>", 4);
        t->byte_eow_id[b] = strmap_get(&t->vocab, s, n + 4);
    }
    rc = JT_OK;
done:
    cJSON_Delete(vocab_doc);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    free(p_vocab), free(p_merges), free(p_tj), free(p_cfg), free(p_stm);
    return rc;
}

/* ---------------------------------------------------------------- fingerprint */

typedef struct {
    const char *s;
    size_t n;
    int id;
} VocabEntry;

static int vocab_entry_cmp(const void *a, const void *b) {
    const VocabEntry *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

typedef struct {
    int rank, a, b, merged;
} MergeEntry;

static int merge_entry_cmp(const void *p, const void *q) {
    const MergeEntry *x = p, *y = q;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->a != y->a) return x->a < y->a ? -1 : 1;
    return (x->b > y->b) - (x->b < y->b);
}

static uint64_t hash_int(uint64_t h, int64_t v) {
    return hash_fnv1a(h, &v, sizeof v);
}

/* FNV-1a 64 over what determines the ids, each part in a canonical order (the hash maps' slot order
 * depends on their capacity): the vocabulary sorted by (id, token), the merges by rank with their
 * ids, the added tokens in list order with their normalized flags, bos/eos/unk/pad and max_len. The
 * layout that was read is not included: vocab.json+merges.txt and tokenizer.json holding the same
 * data give the same fingerprint. */
static uint64_t tokenizer_fingerprint(const ClipTokenizer *t) {
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, "clip-bpe-v1", 11);
    VocabEntry *v = xmalloc((t->vocab.count + 1) * sizeof *v);
    size_t nv = 0;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.key[i])
            v[nv++] = (VocabEntry){t->vocab.key[i], t->vocab.klen[i], t->vocab.val[i]};
    qsort(v, nv, sizeof *v, vocab_entry_cmp);
    h = hash_int(h, (int64_t)nv);
    for (size_t i = 0; i < nv; i++) {
        h = hash_int(h, v[i].id);
        h = hash_int(h, (int64_t)v[i].n);
        h = hash_fnv1a(h, v[i].s, v[i].n);
    }
    free(v);
    size_t nm = 0;
    for (size_t i = 0; i < t->merges.cap; i++)
        nm += t->merges.key[i] != 0;
    MergeEntry *m = xmalloc((nm + 1) * sizeof *m);
    nm = 0;
    for (size_t i = 0; i < t->merges.cap; i++)
        if (t->merges.key[i]) {
            uint64_t k = t->merges.key[i] - 1;
            m[nm++] = (MergeEntry){t->merges.rank[i], (int)(uint32_t)(k >> 32), (int)(uint32_t)k,
                                   t->merges.merged[i]};
        }
    qsort(m, nm, sizeof *m, merge_entry_cmp);
    h = hash_int(h, (int64_t)nm);
    for (size_t i = 0; i < nm; i++) {
        h = hash_int(h, m[i].rank), h = hash_int(h, m[i].a);
        h = hash_int(h, m[i].b), h = hash_int(h, m[i].merged);
    }
    free(m);
    h = hash_int(h, t->n_added);
    for (int i = 0; i < t->n_added; i++) {
        h = hash_int(h, (int64_t)t->added[i].len);
        h = hash_fnv1a(h, t->added[i].content, t->added[i].len);
        h = hash_int(h, t->added[i].id), h = hash_int(h, t->added[i].normalized);
    }
    h = hash_int(h, t->bos), h = hash_int(h, t->eos), h = hash_int(h, t->unk);
    h = hash_int(h, t->pad), h = hash_int(h, t->max_len);
    return h;
}

int clip_tokenizer_load(ClipTokenizer **out, const char *dir, JtError *err) {
    ClipTokenizer *t = xcalloc(1, sizeof *t);
    if (tokenizer_load_impl(t, dir, err) != JT_OK) {
        clip_tokenizer_free(t);
        *out = NULL;
        return JT_ERR;
    }
    t->fingerprint = tokenizer_fingerprint(t);
    *out = t;
    return JT_OK;
}

void clip_tokenizer_free(ClipTokenizer *t) {
    if (!t) return;
    if (t->vocab.key) strmap_free(&t->vocab);
    if (t->merges.key) pairmap_free(&t->merges);
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t);
}

int clip_tokenizer_bos_id(const ClipTokenizer *t) {
    return t->bos;
}
int clip_tokenizer_eos_id(const ClipTokenizer *t) {
    return t->eos;
}
int clip_tokenizer_pad_id(const ClipTokenizer *t) {
    return t->pad;
}
int clip_tokenizer_max_length(const ClipTokenizer *t) {
    return t->max_len;
}
int clip_tokenizer_vocab_size(const ClipTokenizer *t) {
    return t->vocab_size;
}
uint64_t clip_tokenizer_fingerprint(const ClipTokenizer *t) {
    return t->fingerprint;
}
const char *clip_tokenizer_layout(const ClipTokenizer *t) {
    return t->layout;
}

/* ---------------------------------------------------------------- tokenizing */

typedef struct {
    const ClipTokenizer *t;
    int *ids;   /* (cap) */
    int n, cap; /* cap = max_len - 1: one id past what is kept tells that there was more */
    /* scratch for one word's BPE, grown as needed */
    int *sym, *prev, *next;
    struct HeapEntry *heap;
    size_t scratch_cap;
} Run;

typedef struct HeapEntry {
    int rank, pos, merged;
} HeapEntry;

static int run_full(const Run *r) {
    return r->n >= r->cap;
}

static void run_emit(Run *r, int id) {
    if (r->n < r->cap) r->ids[r->n++] = id;
}

static int heap_less(const HeapEntry *a, const HeapEntry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(HeapEntry *h, size_t *n, HeapEntry e) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static HeapEntry heap_pop(HeapEntry *h, size_t *n) {
    HeapEntry top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void run_push_pair(Run *r, HeapEntry *h, size_t *hn, int pos) {
    int rank, merged;
    if (r->next[pos] >= 0 &&
        pairmap_get(&r->t->merges, r->sym[pos], r->sym[r->next[pos]], &rank, &merged))
        heap_push(h, hn, (HeapEntry){rank, pos, merged});
}

/* BPE over one word (its raw UTF-8 bytes). */
static void run_word(Run *r, const unsigned char *w, size_t n) {
    if (n == 0 || run_full(r)) return;
    const ClipTokenizer *t = r->t;
    if (n > r->scratch_cap) {
        r->scratch_cap = n * 2;
        r->sym = xrealloc(r->sym, r->scratch_cap * sizeof *r->sym);
        r->prev = xrealloc(r->prev, r->scratch_cap * sizeof *r->prev);
        r->next = xrealloc(r->next, r->scratch_cap * sizeof *r->next);
        r->heap = xrealloc(r->heap, 3 * r->scratch_cap * sizeof *r->heap);
    }
    for (size_t i = 0; i < n; i++) {
        int id = i + 1 == n ? t->byte_eow_id[w[i]] : t->byte_id[w[i]];
        r->sym[i] = id >= 0 ? id : t->unk; /* a symbol missing from the vocab: unk, not fused */
        r->prev[i] = (int)i - 1;
        r->next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    /* At most n-1 merges happen and each pushes at most two entries: the heap never exceeds
     * (n-1) + 2(n-1) entries, less than 3n. */
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        run_push_pair(r, r->heap, &hn, (int)i);
    while (hn) {
        HeapEntry e = heap_pop(r->heap, &hn);
        int p = e.pos;
        if (r->sym[p] < 0 || r->next[p] < 0) continue; /* merged away, or now the last symbol */
        int q = r->next[p], rank, merged;
        if (!pairmap_get(&t->merges, r->sym[p], r->sym[q], &rank, &merged) || merged != e.merged)
            continue;
        r->sym[p] = merged;
        r->sym[q] = -1;
        r->next[p] = r->next[q];
        if (r->next[q] >= 0) r->prev[r->next[q]] = p;
        if (r->prev[p] >= 0) run_push_pair(r, r->heap, &hn, r->prev[p]);
        run_push_pair(r, r->heap, &hn, p);
    }
    for (int p = 0; p >= 0; p = r->next[p])
        run_emit(r, r->sym[p]);
}

static int is_ws(int c) {
    return c == ' ' || (c >= 0x80 && u_isUWhiteSpace(c)) || (c >= 9 && c <= 13);
}
static int is_letter(int c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    return (U_GET_GC_MASK(c) & U_GC_L_MASK) != 0;
}
static int is_number(int c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return (U_GET_GC_MASK(c) & U_GC_N_MASK) != 0;
}

/* CLIP's split regex over normalised UTF-8 text, each match a word for BPE. */
static void run_pretokenize(Run *r, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    static const char *const SPECIAL[2] = {"<|startoftext|>", "<|endoftext|>"};
    size_t i = 0;
    while (i < n && !run_full(r)) {
        int c;
        size_t j = utf8_next(u, n, i, &c);
        if (is_ws(c)) {
            i = j;
            continue;
        }
        int special = 0;
        for (int k = 0; k < 2 && !special; k++) {
            size_t len = strlen(SPECIAL[k]);
            if (n - i >= len && memcmp(s + i, SPECIAL[k], len) == 0) {
                /* GPT-2's regex (the byte-level pre-tokenizer) splits the match in three */
                run_word(r, u + i, 2);
                run_word(r, u + i + 2, len - 4);
                run_word(r, u + i + len - 2, 2);
                i += len;
                special = 1;
            }
        }
        if (special) continue;
        if (c == '\'' && j < n) {
            size_t len = 0;
            if (strchr("stmd", s[j]))
                len = 2;
            else if (n - j >= 2 && (memcmp(s + j, "re", 2) == 0 || memcmp(s + j, "ve", 2) == 0 ||
                                    memcmp(s + j, "ll", 2) == 0))
                len = 3;
            if (len) {
                run_word(r, u + i, len);
                i += len;
                continue;
            }
        }
        size_t k = j;
        if (is_letter(c)) {
            while (k < n) {
                size_t k2 = utf8_next(u, n, k, &c);
                if (!is_letter(c)) break;
                k = k2;
            }
        } else if (!is_number(c)) {
            while (k < n) {
                size_t k2 = utf8_next(u, n, k, &c);
                if (is_ws(c) || is_letter(c) || is_number(c)) break;
                k = k2;
            }
        }
        run_word(r, u + i, k - i);
        i = k;
    }
}

/* The added token (of the given normalized flag) that matches longest at s[i..n), or -1. */
static int match_added(const ClipTokenizer *t, const char *s, size_t n, size_t i, int normalized) {
    int best = -1;
    for (int a = 0; a < t->n_added; a++) {
        const AddedToken *x = &t->added[a];
        if (x->normalized == normalized && x->len <= n - i &&
            memcmp(s + i, x->content, x->len) == 0 && (best < 0 || x->len > t->added[best].len))
            best = a;
    }
    return best;
}

/* Normalises s[0..n) (valid UTF-8): NFC, White_Space runs to one space, per-code-point lower
 * case. Returns malloc'd UTF-8 and its length, or NULL with err filled (an ICU failure). */
static char *normalize(const char *s, size_t n, size_t *out_len, JtError *err) {
    UErrorCode st = U_ZERO_ERROR;
    int32_t n16 = 0;
    if (n > (size_t)INT32_MAX / 4) {
        jt_fail(err, "the text (%zu bytes) is too long", n);
        return NULL;
    }
    UChar *u16 = xmalloc((n + 1) * sizeof *u16);
    u_strFromUTF8(u16, (int32_t)n + 1, &n16, s, (int32_t)n, &st);
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st)) {
        free(u16);
        jt_fail(err, "ICU could not read the text (%s)", u_errorName(st));
        return NULL;
    }
    int32_t m = unorm2_normalize(nfc, u16, n16, NULL, 0, &st); /* preflight: the length */
    if (st == U_BUFFER_OVERFLOW_ERROR) st = U_ZERO_ERROR;
    int32_t cap = m + 1;
    UChar *c16 = xmalloc((size_t)cap * sizeof *c16);
    m = unorm2_normalize(nfc, u16, n16, c16, cap, &st);
    free(u16);
    if (U_FAILURE(st)) {
        free(c16);
        jt_fail(err, "ICU NFC normalisation failed (%s)", u_errorName(st));
        return NULL;
    }
    /* each UTF-16 unit gives at most 3 lower-case code points of at most 4 bytes (a BMP character
     * lower-cases to at most 3 BMP ones, 9 bytes) */
    char *o = xmalloc((size_t)m * 9 + 1);
    size_t k = 0;
    int in_ws = 0;
    for (int32_t i = 0; i < m;) {
        UChar32 c;
        int32_t i0 = i;
        U16_NEXT(c16, i, m, c);
        if (is_ws(c)) {
            if (!in_ws) o[k++] = ' ';
            in_ws = 1;
            continue;
        }
        in_ws = 0;
        if (c < 0x80) {
            o[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            continue;
        }
        UChar low[8];
        UErrorCode ls = U_ZERO_ERROR;
        /* the code point alone: no final-sigma context, like Rust's char::to_lowercase */
        int32_t nl = u_strToLower(low, 8, c16 + i0, i - i0, "", &ls);
        if (U_FAILURE(ls)) {
            free(c16);
            free(o);
            jt_fail(err, "ICU lower-casing failed (%s)", u_errorName(ls));
            return NULL;
        }
        for (int32_t j = 0; j < nl;) {
            UChar32 d;
            U16_NEXT(low, j, nl, d);
            k += utf8_put(o + k, d);
        }
    }
    free(c16);
    o[k] = 0;
    *out_len = k;
    return o;
}

/* Splits s[0..n) at added tokens of the given flag; the pieces between go to the next stage. */
static int run_segment(Run *r, const char *s, size_t n, int normalized_stage, JtError *err) {
    size_t start = 0, i = 0;
    while (i <= n && !run_full(r)) {
        int a = i < n ? match_added(r->t, s, n, i, normalized_stage) : -1;
        if (a < 0 && i < n) {
            i++;
            continue;
        }
        if (i > start) {
            if (normalized_stage) {
                run_pretokenize(r, s + start, i - start);
            } else {
                size_t len;
                char *norm = normalize(s + start, i - start, &len, err);
                if (!norm) return JT_ERR;
                int rc = run_segment(r, norm, len, 1, err);
                free(norm);
                if (rc) return rc;
            }
        }
        if (a < 0) break;
        run_emit(r, r->t->added[a].id);
        i += r->t->added[a].len;
        start = i;
    }
    return JT_OK;
}

int clip_tokenize(const ClipTokenizer *t, const char *text, int max_len, int *ids, int *n_real,
                  int *truncated, JtError *err) {
    if (max_len == 0) max_len = t->max_len;
    if (max_len < 2) return jt_fail(err, "max_len %d is below 2 (room for bos and eos)", max_len);
    size_t n = strlen(text), bad = utf8_check(text, n);
    if (bad != n) return jt_fail(err, "the text is not valid UTF-8 (at byte %zu)", bad);
    Run r = {.t = t, .ids = ids + 1, .n = 0, .cap = max_len - 1};
    int rc = run_segment(&r, text, n, 0, err);
    free(r.sym), free(r.prev), free(r.next), free(r.heap);
    if (rc) return rc;
    int keep = r.n > max_len - 2 ? max_len - 2 : r.n;
    ids[0] = t->bos;
    ids[keep + 1] = t->eos;
    for (int i = keep + 2; i < max_len; i++)
        ids[i] = t->pad;
    if (n_real) *n_real = keep + 2;
    if (truncated) *truncated = r.n > max_len - 2;
    return JT_OK;
}
