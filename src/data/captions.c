/* captions.c: the COCO, CSV and JSONL caption readers of captions.h. Each format is turned into a
 * list of records (image, caption) and one builder groups them image by image (a stable counting
 * sort, so each image keeps its captions in file order) and checks the per-image limits. */
#include "data/captions.h"

#include "core/hash.h"
#include "data/context.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers --------------------------------------------------------------------------------- */

int captions_utf8_valid(const char *str, size_t n, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp, min;
        if (c == 0) goto fail;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            goto fail;
        if (n - i < len) goto fail;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) goto fail;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto fail;
        i += len;
    }
    return 1;
fail:
    if (bad) *bad = i;
    return 0;
}

uint64_t captions_fingerprint_texts(const char *const *texts, size_t n) {
    static const char tag[] = "jtrak-captions-v1";
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, tag, sizeof tag - 1);
    for (size_t i = 0; i < n; i++)
        h = hash_fnv1a(h, texts[i], strlen(texts[i]) + 1); /* the NUL separates the texts */
    return h;
}

int captions_format_of(const char *path, CaptionsFormat *fmt, JtError *err) {
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *fmt = CAPTIONS_COCO;
    else if (dot && strcmp(dot, ".csv") == 0)
        *fmt = CAPTIONS_CSV;
    else if (dot && strcmp(dot, ".jsonl") == 0)
        *fmt = CAPTIONS_JSONL;
    else
        return jt_fail(err,
                       "%s: cannot tell the captions format from the name (expected .json for "
                       "COCO, .csv or .jsonl)",
                       path);
    return JT_OK;
}

/* One caption of one image, as read (before grouping). */
typedef struct {
    size_t image;
    char *text;
} Record;

typedef struct {
    Record *r;
    size_t n, cap;
} RecordList;

static void records_push(RecordList *l, size_t image, char *text) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->r = xrealloc(l->r, l->cap * sizeof *l->r);
    }
    l->r[l->n].image = image;
    l->r[l->n].text = text;
    l->n++;
}

static void records_free(RecordList *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->r[i].text);
    free(l->r);
    memset(l, 0, sizeof *l);
}

/* A caption's text checked: length, not empty, UTF-8. `where` names the entry. */
static int check_text(const char *what, const char *where, const char *s, size_t n, int is_name,
                      JtError *err) {
    const char *kind = is_name ? "file name" : "caption";
    size_t bad;
    if (n == 0) return jt_fail(err, "%s: %s: the %s is empty", what, where, kind);
    if (n > (size_t)(is_name ? CAPTIONS_MAX_NAME : CAPTIONS_MAX_TEXT))
        return jt_fail(err, "%s: %s: the %s is %zu bytes; at most %d", what, where, kind, n,
                       is_name ? CAPTIONS_MAX_NAME : CAPTIONS_MAX_TEXT);
    if (!captions_utf8_valid(s, n, &bad))
        return jt_fail(err, "%s: %s: the %s is not valid UTF-8 (%s at byte %zu)", what, where, kind,
                       s[bad] == 0 ? "a NUL byte" : "a bad sequence", bad);
    return JT_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* The folder of a path ("." when it has none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    return dup_n(path, (size_t)(slash - path));
}

/* Groups the records image by image into c (names already set, c->n images) and checks that
 * every image has 1..CONTEXT_MAX_PER_ROW captions. Takes the texts from l. */
static int build(Captions *c, RecordList *l, const char *image_root, JtError *err) {
    size_t *count = xcalloc(c->n + 1, sizeof *count);
    for (size_t i = 0; i < l->n; i++)
        count[l->r[i].image]++;
    int rc = JT_OK;
    for (size_t i = 0; i < c->n && rc == JT_OK; i++) {
        char id[48] = "";
        if (c->ids) snprintf(id, sizeof id, "image id %" PRId64 " ", c->ids[i]);
        if (count[i] == 0)
            rc = jt_fail(err, "%s: %s(%s) has no captions in 'annotations'", c->what, id,
                         c->names[i]);
        else if (count[i] > CONTEXT_MAX_PER_ROW)
            rc = jt_fail(err, "%s: %s(%s) has %zu captions; at most %d per image", c->what, id,
                         c->names[i], count[i], CONTEXT_MAX_PER_ROW);
    }
    if (rc != JT_OK) {
        free(count);
        return rc;
    }
    c->first = xmalloc((c->n + 1) * sizeof *c->first);
    c->first[0] = 0;
    for (size_t i = 0; i < c->n; i++)
        c->first[i + 1] = c->first[i] + count[i];
    c->n_texts = l->n;
    c->texts = xmalloc((l->n ? l->n : 1) * sizeof *c->texts);
    memcpy(count, c->first, c->n * sizeof *count); /* next free slot of each image */
    for (size_t i = 0; i < l->n; i++) {
        c->texts[count[l->r[i].image]++] = l->r[i].text;
        l->r[i].text = NULL;
    }
    free(count);
    char *root = image_root ? xstrdup(image_root) : dir_of(c->what);
    c->files = xmalloc(c->n * sizeof *c->files);
    for (size_t i = 0; i < c->n; i++)
        c->files[i] = c->names[i][0] == '/' ? xstrdup(c->names[i]) : path_join(root, c->names[i]);
    free(root);
    return JT_OK;
}

/* ---- CSV and JSONL: images by first appearance ------------------------------------------------
 */

/* File name -> image index, open addressing over FNV-1a. */
typedef struct {
    size_t *slot; /* image + 1, 0 = empty */
    size_t cap;   /* a power of two */
} NameMap;

static size_t name_image(Captions *c, NameMap *m, char *name) {
    if (2 * (c->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        size_t *slot = xcalloc(cap, sizeof *slot);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i]) continue;
            const char *s = c->names[m->slot[i] - 1];
            size_t h = (size_t)hash_fnv1a(HASH_FNV_OFFSET, s, strlen(s)) & (cap - 1);
            while (slot[h])
                h = (h + 1) & (cap - 1);
            slot[h] = m->slot[i];
        }
        free(m->slot);
        m->slot = slot;
        m->cap = cap;
    }
    size_t h = (size_t)hash_fnv1a(HASH_FNV_OFFSET, name, strlen(name)) & (m->cap - 1);
    while (m->slot[h]) {
        if (strcmp(c->names[m->slot[h] - 1], name) == 0) {
            free(name);
            return m->slot[h] - 1;
        }
        h = (h + 1) & (m->cap - 1);
    }
    if ((c->n & (c->n - 1)) == 0) /* grow the names at powers of two */
        c->names = xrealloc(c->names, (c->n ? 2 * c->n : 1) * sizeof *c->names);
    c->names[c->n] = name;
    m->slot[h] = ++c->n;
    return c->n - 1;
}

/* One (file, caption) record of a CSV or JSONL file: checked, then added. */
static int add_record(Captions *c, NameMap *m, RecordList *l, size_t line, const char *file,
                      size_t flen, const char *cap, size_t clen, JtError *err) {
    char where[64];
    snprintf(where, sizeof where, "line %zu", line);
    if (check_text(c->what, where, file, flen, 1, err) != JT_OK) return JT_ERR;
    if (check_text(c->what, where, cap, clen, 0, err) != JT_OK) return JT_ERR;
    size_t img = name_image(c, m, dup_n(file, flen));
    records_push(l, img, dup_n(cap, clen));
    return JT_OK;
}

/* A growing byte buffer for a CSV field (quotes undone). */
typedef struct {
    char *b;
    size_t n, cap;
} Field;

static void field_put(Field *f, char ch) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->b = xrealloc(f->b, f->cap);
    }
    f->b[f->n++] = ch;
}

char *captions_csv_field(const char *s) {
    size_t n = strlen(s), quotes = 0;
    int quote = n == 0 || s[0] == ' ' || s[n - 1] == ' ';
    for (size_t i = 0; i < n; i++) {
        quotes += s[i] == '"';
        quote |= s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    }
    if (!quote) return xstrdup(s);
    char *out = xmalloc(n + quotes + 3), *o = out;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *o++ = '"';
        *o++ = s[i];
    }
    *o++ = '"';
    *o = 0;
    return out;
}

/* RFC 4180: fields separated by ',', records by CRLF or LF; a field starting with '"' runs to the
 * next '"' not doubled, and may hold ',', newlines and "" (one quote). */
static int parse_csv(Captions *c, const char *buf, size_t len, RecordList *l, JtError *err) {
    size_t i = 0, line = 1;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) i = 3; /* a UTF-8 byte order mark */
    NameMap map = {0};
    Field f[2] = {{0}, {0}};
    int rc = JT_OK, header = 1;
    while (i < len && rc == JT_OK) {
        size_t start_line = line;
        if (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) {
            i += buf[i] == '\r' ? 2 : 1; /* a blank line */
            line++;
            continue;
        }
        int nf = 0, end = 0;
        f[0].n = f[1].n = 0;
        while (!end && rc == JT_OK) {
            Field *cur = nf < 2 ? &f[nf] : NULL;
            size_t extra = 0; /* bytes of a third or later field (only counted) */
            if (i < len && buf[i] == '"') {
                size_t open = line;
                i++;
                for (;;) {
                    if (i >= len) {
                        rc = jt_fail(err,
                                     "%s: line %zu: a quoted field opened here is never "
                                     "closed",
                                     c->what, open);
                        break;
                    }
                    if (buf[i] == '"') {
                        if (i + 1 < len && buf[i + 1] == '"') {
                            if (cur) field_put(cur, '"');
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    if (buf[i] == '\n') line++;
                    if (cur)
                        field_put(cur, buf[i]);
                    else
                        extra++;
                    if ((cur ? cur->n : extra) > CAPTIONS_MAX_TEXT + CAPTIONS_MAX_NAME) {
                        rc = jt_fail(err, "%s: line %zu: a field longer than %d bytes", c->what,
                                     open, CAPTIONS_MAX_TEXT + CAPTIONS_MAX_NAME);
                        break;
                    }
                    i++;
                }
                if (rc != JT_OK) break;
                if (i < len && buf[i] != ',' && buf[i] != '\n' &&
                    !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) {
                    rc = jt_fail(err,
                                 "%s: line %zu: text after the closing quote of field %d (a quote "
                                 "inside a quoted field is written \"\")",
                                 c->what, line, nf + 1);
                    break;
                }
            } else {
                while (i < len && buf[i] != ',' && buf[i] != '\n' &&
                       !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) {
                    if (buf[i] == '"') {
                        rc = jt_fail(err,
                                     "%s: line %zu: a quote inside an unquoted field %d (quote the "
                                     "whole field and write the quote as \"\")",
                                     c->what, line, nf + 1);
                        break;
                    }
                    if (cur) field_put(cur, buf[i]);
                    if (cur && cur->n > CAPTIONS_MAX_TEXT + CAPTIONS_MAX_NAME) {
                        rc = jt_fail(err, "%s: line %zu: a field longer than %d bytes", c->what,
                                     line, CAPTIONS_MAX_TEXT + CAPTIONS_MAX_NAME);
                        break;
                    }
                    i++;
                }
                if (rc != JT_OK) break;
            }
            nf++;
            if (i < len && buf[i] == ',') {
                i++;
            } else {
                end = 1;
                if (i < len) i += buf[i] == '\r' ? 2 : 1;
                line++;
            }
        }
        if (rc != JT_OK) break;
        if (nf != 2) {
            rc = jt_fail(err, "%s: line %zu: %d field%s, expected 2 (file,caption)", c->what,
                         start_line, nf, nf == 1 ? "" : "s");
        } else if (header) {
            if (f[0].n != 4 || memcmp(f[0].b, "file", 4) != 0 || f[1].n != 7 ||
                memcmp(f[1].b, "caption", 7) != 0)
                rc = jt_fail(err, "%s: line %zu: the first line must be the header 'file,caption'",
                             c->what, start_line);
            header = 0;
        } else {
            rc = add_record(c, &map, l, start_line, f[0].b ? f[0].b : "", f[0].n,
                            f[1].b ? f[1].b : "", f[1].n, err);
        }
    }
    if (rc == JT_OK && header)
        rc = jt_fail(err, "%s: empty: a captions CSV starts with the header 'file,caption'",
                     c->what);
    else if (rc == JT_OK && l->n == 0)
        rc = jt_fail(err, "%s: no captions after the header", c->what);
    free(f[0].b);
    free(f[1].b);
    free(map.slot);
    return rc;
}

static int parse_jsonl(Captions *c, const char *buf, size_t len, RecordList *l, JtError *err) {
    NameMap map = {0};
    int rc = JT_OK;
    size_t line = 0;
    for (size_t i = 0; i < len && rc == JT_OK;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - i;
        line++;
        const char *s = buf + i;
        i = end + 1;
        if (n && s[n - 1] == '\r') n--;
        size_t blank = 0;
        while (blank < n && (s[blank] == ' ' || s[blank] == '\t'))
            blank++;
        if (blank == n) continue;
        if (memchr(s, '\0', n)) {
            rc = jt_fail(err, "%s: line %zu: a NUL byte", c->what, line);
            break;
        }
        cJSON *o = cJSON_ParseWithLength(s, n);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file"),
                    *t = cJSON_GetObjectItemCaseSensitive(o, "caption");
        if (!cJSON_IsObject(o))
            rc = jt_fail(err,
                         "%s: line %zu: not a JSON object (each line is {\"file\": ..., "
                         "\"caption\": ...})",
                         c->what, line);
        else if (!cJSON_IsString(f))
            rc = jt_fail(err, "%s: line %zu: 'file' must be a string", c->what, line);
        else if (!cJSON_IsString(t))
            rc = jt_fail(err, "%s: line %zu: 'caption' must be a string", c->what, line);
        else
            rc = add_record(c, &map, l, line, f->valuestring, strlen(f->valuestring),
                            t->valuestring, strlen(t->valuestring), err);
        cJSON_Delete(o);
    }
    if (rc == JT_OK && l->n == 0) rc = jt_fail(err, "%s: no captions (no JSON lines)", c->what);
    free(map.slot);
    return rc;
}

/* ---- COCO ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t id;
    size_t pos;
} IdPos;

static int cmp_idpos(const void *a, const void *b) {
    const IdPos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_idpos_id(const void *a, const void *b) {
    const IdPos *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A COCO id: a JSON number holding a non-negative integer below 2^53 (exact in a double). */
static int json_id(const cJSON *o, const char *key, int64_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(int64_t)d) return 0;
    *id = (int64_t)d;
    return 1;
}

/* Sorted (id, position) pairs; the first repeated id fails, naming both entries. */
static int sorted_ids(IdPos *v, size_t n, const char *what, const char *array, JtError *err) {
    qsort(v, n, sizeof *v, cmp_idpos);
    for (size_t i = 1; i < n; i++)
        if (v[i].id == v[i - 1].id)
            return jt_fail(err, "%s: %s[%zu] and %s[%zu] have the same id %" PRId64, what, array,
                           v[i - 1].pos, array, v[i].pos, v[i].id);
    return JT_OK;
}

static int parse_coco(Captions *c, const char *buf, size_t len, RecordList *l, JtError *err) {
    /* cJSON's tree of a COCO file is several times its size (a node per value) */
    char mem_what[1100];
    snprintf(mem_what, sizeof mem_what, "%s: parsing its %zu bytes of JSON", c->what, len);
    if (jt_check_memory(jt_sat_mul(len, 8), mem_what, err) != JT_OK) return JT_ERR;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root) return jt_fail(err, "%s: not valid JSON", c->what);
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images"),
                *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    int rc = JT_OK;
    IdPos *ids = NULL, *aids = NULL;
    if (!cJSON_IsObject(root))
        rc = jt_fail(err, "%s: not a COCO captions file (the top level is not an object)", c->what);
    else if (!cJSON_IsArray(images))
        rc = jt_fail(err, "%s: not a COCO captions file: no 'images' array", c->what);
    else if (!cJSON_IsArray(anns))
        rc = jt_fail(err, "%s: not a COCO captions file: no 'annotations' array", c->what);
    else if (cJSON_GetArraySize(images) == 0)
        rc = jt_fail(err, "%s: 'images' is empty", c->what);
    if (rc != JT_OK) goto done;
    size_t n = (size_t)cJSON_GetArraySize(images);
    c->names = xcalloc(n, sizeof *c->names);
    c->ids = xcalloc(n, sizeof *c->ids);
    c->n = n; /* names not yet read stay NULL (captions_free-safe) */
    ids = xmalloc(n * sizeof *ids);
    size_t i = 0;
    for (const cJSON *e = images->child; e && rc == JT_OK; e = e->next, i++) {
        char where[96];
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(e, "file_name");
        if (!cJSON_IsObject(e)) {
            rc = jt_fail(err, "%s: images[%zu] is not an object", c->what, i);
        } else if (!json_id(e, "id", &c->ids[i])) {
            rc = jt_fail(err, "%s: images[%zu]: 'id' must be a non-negative integer", c->what, i);
        } else if (!cJSON_IsString(fn)) {
            rc = jt_fail(err, "%s: images[%zu] (id %" PRId64 "): 'file_name' must be a string",
                         c->what, i, c->ids[i]);
        } else {
            snprintf(where, sizeof where, "images[%zu] (id %" PRId64 ")", i, c->ids[i]);
            rc = check_text(c->what, where, fn->valuestring, strlen(fn->valuestring), 1, err);
            if (rc == JT_OK) c->names[i] = xstrdup(fn->valuestring);
            ids[i].id = c->ids[i];
            ids[i].pos = i;
        }
    }
    if (rc == JT_OK) rc = sorted_ids(ids, n, c->what, "images", err);
    size_t na = (size_t)cJSON_GetArraySize(anns);
    aids = xmalloc((na ? na : 1) * sizeof *aids);
    i = 0;
    for (const cJSON *e = anns->child; e && rc == JT_OK; e = e->next, i++) {
        int64_t aid, iid;
        const cJSON *cap = cJSON_GetObjectItemCaseSensitive(e, "caption");
        if (!cJSON_IsObject(e)) {
            rc = jt_fail(err, "%s: annotations[%zu] is not an object", c->what, i);
            break;
        }
        if (!json_id(e, "id", &aid)) {
            rc = jt_fail(err, "%s: annotations[%zu]: 'id' must be a non-negative integer", c->what,
                         i);
            break;
        }
        if (!json_id(e, "image_id", &iid)) {
            rc = jt_fail(err,
                         "%s: annotations[%zu] (id %" PRId64 "): 'image_id' must be a "
                         "non-negative integer",
                         c->what, i, aid);
            break;
        }
        IdPos key = {iid, 0};
        const IdPos *hit = bsearch(&key, ids, n, sizeof *ids, cmp_idpos_id);
        if (!hit) {
            rc = jt_fail(err,
                         "%s: annotations[%zu] (id %" PRId64 "): image_id %" PRId64
                         " names no image in 'images'",
                         c->what, i, aid, iid);
            break;
        }
        if (!cJSON_IsString(cap)) {
            rc = jt_fail(err, "%s: annotations[%zu] (id %" PRId64 "): 'caption' must be a string",
                         c->what, i, aid);
            break;
        }
        char where[96];
        snprintf(where, sizeof where, "annotations[%zu] (id %" PRId64 ")", i, aid);
        rc = check_text(c->what, where, cap->valuestring, strlen(cap->valuestring), 0, err);
        if (rc != JT_OK) break;
        aids[i].id = aid;
        aids[i].pos = i;
        records_push(l, hit->pos, xstrdup(cap->valuestring));
    }
    if (rc == JT_OK) rc = sorted_ids(aids, na, c->what, "annotations", err);
done:
    free(ids);
    free(aids);
    cJSON_Delete(root);
    return rc;
}

/* ---- entry points ---------------------------------------------------------------------------- */

int captions_parse(Captions *c, CaptionsFormat fmt, const char *buf, size_t len, const char *what,
                   const char *image_root, JtError *err) {
    memset(c, 0, sizeof *c);
    c->format = fmt;
    c->what = xstrdup(what);
    RecordList l = {0};
    int rc = len > CAPTIONS_MAX_FILE_BYTES
                 ? jt_fail(err, "%s: %zu bytes; captions files are read up to %zu bytes", what, len,
                           CAPTIONS_MAX_FILE_BYTES)
             : fmt == CAPTIONS_COCO ? parse_coco(c, buf, len, &l, err)
             : fmt == CAPTIONS_CSV  ? parse_csv(c, buf, len, &l, err)
                                    : parse_jsonl(c, buf, len, &l, err);
    if (rc == JT_OK) rc = build(c, &l, image_root, err);
    records_free(&l);
    if (rc != JT_OK) captions_free(c);
    return rc;
}

int captions_read(Captions *c, CaptionsFormat fmt, const char *path, const char *image_root,
                  JtError *err) {
    memset(c, 0, sizeof *c);
    FILE *fp = jt_fopen_regular(path, err);
    if (!fp) return JT_ERR;
    struct stat st;
    char *buf = NULL;
    int rc = JT_OK;
    if (fstat(fileno(fp), &st) != 0)
        rc = jt_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    else if ((uint64_t)st.st_size > (uint64_t)CAPTIONS_MAX_FILE_BYTES)
        rc = jt_fail(err, "%s: %lld bytes; captions files are read up to %zu bytes", path,
                     (long long)st.st_size, CAPTIONS_MAX_FILE_BYTES);
    size_t len = rc == JT_OK ? (size_t)st.st_size : 0;
    if (rc == JT_OK) {
        buf = xmalloc(len + 1);
        if (fread(buf, 1, len, fp) != len)
            rc = jt_fail(err, "%s: read failed (file changed?)", path);
        buf[len] = '\0';
    }
    fclose(fp);
    if (rc == JT_OK) rc = captions_parse(c, fmt, buf, len, path, image_root, err);
    free(buf);
    return rc;
}

void captions_free(Captions *c) {
    if (!c) return;
    for (size_t i = 0; c->names && i < c->n; i++)
        free(c->names[i]);
    for (size_t i = 0; c->files && i < c->n; i++)
        free(c->files[i]);
    for (size_t i = 0; c->texts && i < c->n_texts; i++)
        free(c->texts[i]);
    free(c->names);
    free(c->files);
    free(c->ids);
    free(c->first);
    free(c->texts);
    free(c->what);
    memset(c, 0, sizeof *c);
}

size_t captions_count(const Captions *c, size_t i) {
    CHECK(i < c->n, "image %zu of %zu", i, c->n);
    return c->first[i + 1] - c->first[i];
}

const char *captions_text(const Captions *c, size_t i, size_t k) {
    CHECK(k < captions_count(c, i), "caption %zu of image %zu", k, i);
    return c->texts[c->first[i] + k];
}
