/* select.c: which images of a source a DatasetSpec keeps, in order: the indices file (its order,
 * no duplicates), then the class filter (labels or class names), then the first-N limit. The
 * result lists source indices, so that row i of a Dataset can always be traced to its image. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/source.h"

/* Lower-case letters and digits only: "Ankle boot", "ankle-boot" and "ankle_boot" all match. */
static void name_key(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        if (isalnum((unsigned char)*s)) out[n++] = (char)tolower((unsigned char)*s);
    out[n] = '\0';
}

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    return s;
}

/* Parses a whole token as a non-negative decimal integer. */
static int parse_index(const char *tok, size_t len, unsigned long long *v) {
    if (len == 0 || len > 19) return 0;
    unsigned long long x = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9') return 0;
        x = x * 10 + (unsigned long long)(tok[i] - '0');
    }
    *v = x;
    return 1;
}

/* Turns the class filter text into keep[label] flags. */
static int resolve_classes(const char *text, const DataSource *src, unsigned char *keep,
                           JtError *err) {
    if (src->n_classes == 0 || !src->labels)
        return jt_fail(err, "%s has no labels, so the class filter '%s' cannot apply", src->what,
                       text);
    char *copy = xstrdup(text);
    int rc = JT_OK, any = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && rc == JT_OK;
         tok = strtok_r(NULL, ",", &save)) {
        tok = (char *)skip_ws(tok);
        size_t len = strlen(tok);
        while (len > 0 && isspace((unsigned char)tok[len - 1]))
            tok[--len] = '\0';
        if (len == 0) continue;
        unsigned long long v;
        int label = -1;
        if (parse_index(tok, len, &v)) {
            if (v >= (unsigned long long)src->n_classes)
                rc = jt_fail(err, "class %llu is not in %s (labels are 0..%d)", v, src->what,
                             src->n_classes - 1);
            else
                label = (int)v;
        } else {
            char want[128], have[128];
            name_key(want, sizeof want, tok);
            for (int k = 0; k < src->n_classes && label < 0; k++) {
                if (!src->class_names || !src->class_names[k]) continue;
                name_key(have, sizeof have, src->class_names[k]);
                if (want[0] && strcmp(want, have) == 0) label = k;
            }
            if (label < 0) {
                char list[512];
                size_t used = 0;
                list[0] = '\0';
                for (int k = 0; k < src->n_classes && used + 1 < sizeof list; k++) {
                    int w = snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                                     src->class_names ? src->class_names[k] : "?");
                    if (w > 0) used += (size_t)w;
                }
                rc = jt_fail(err, "'%s' is not a class of %s (classes: %s)", tok, src->what, list);
            }
        }
        if (label >= 0) {
            keep[label] = 1;
            any = 1;
        }
    }
    free(copy);
    if (rc == JT_OK && !any) rc = jt_fail(err, "the class filter '%s' names no class", text);
    return rc;
}

int data_classes_canonical(const char *text, const DataSource *src, char **out, JtError *err) {
    *out = NULL;
    unsigned char *keep = xcalloc((size_t)(src->n_classes > 0 ? src->n_classes : 1), 1);
    if (resolve_classes(text, src, keep, err) != JT_OK) {
        free(keep);
        return JT_ERR;
    }
    size_t cap = (size_t)src->n_classes * 12 + 1, used = 0;
    char *buf = xmalloc(cap);
    buf[0] = '\0';
    for (int k = 0; k < src->n_classes; k++)
        if (keep[k]) used += (size_t)snprintf(buf + used, cap - used, "%s%d", used ? "," : "", k);
    free(keep);
    *out = buf;
    return JT_OK;
}

/* Reads the index file into *out (source indices, file order). */
static int read_index_file(const char *path, const DataSource *src, size_t **out, size_t *n,
                           JtError *err) {
    FILE *fp = fopen(path, "r");
    if (!fp) return jt_fail(err, "%s: cannot open index file: %s", path, strerror(errno));
    /* first_line[i]: line where source index i was listed (0 = not yet), to report duplicates. */
    size_t *first_line = xcalloc(src->n, sizeof(size_t));
    size_t cap = 256, cnt = 0, lineno = 0;
    size_t *idx = xmalloc(cap * sizeof(size_t));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = JT_OK;
    while (rc == JT_OK && (len = getline(&line, &lcap, fp)) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        const char *s = skip_ws(line);
        size_t tl = strlen(s);
        while (tl > 0 && isspace((unsigned char)s[tl - 1]))
            tl--;
        if (tl == 0) continue;
        unsigned long long v;
        if (!parse_index(s, tl, &v)) {
            rc = jt_fail(err, "%s:%zu: '%.*s' is not an index (one non-negative integer per line)",
                         path, lineno, (int)(tl > 40 ? 40 : tl), s);
        } else if (v >= src->n) {
            rc = jt_fail(err, "%s:%zu: index %llu is out of range (%s has %zu images, 0..%zu)",
                         path, lineno, v, src->what, src->n, src->n - 1);
        } else if (first_line[v]) {
            rc = jt_fail(err, "%s:%zu: index %llu is listed twice (first on line %zu)", path,
                         lineno, v, first_line[v]);
        } else {
            first_line[v] = lineno;
            if (cnt == cap) {
                cap *= 2;
                idx = xrealloc(idx, cap * sizeof(size_t));
            }
            idx[cnt++] = (size_t)v;
        }
    }
    if (rc == JT_OK && ferror(fp)) rc = jt_fail(err, "%s: read failed", path);
    if (rc == JT_OK && cnt == 0) rc = jt_fail(err, "%s: lists no indices", path);
    free(line);
    free(first_line);
    fclose(fp);
    if (rc != JT_OK) {
        free(idx);
        return rc;
    }
    *out = idx;
    *n = cnt;
    return JT_OK;
}

int data_select(const DatasetSpec *spec, const DataSource *src, size_t **rows, size_t *n,
                JtError *err) {
    *rows = NULL;
    *n = 0;
    size_t *sel = NULL, cnt = 0;
    if (spec->index_file) {
        if (read_index_file(spec->index_file, src, &sel, &cnt, err) != JT_OK) return JT_ERR;
    } else {
        cnt = src->n;
        sel = xmalloc((cnt ? cnt : 1) * sizeof(size_t));
        for (size_t i = 0; i < cnt; i++)
            sel[i] = i;
    }
    if (spec->classes) {
        unsigned char *keep = xcalloc((size_t)(src->n_classes > 0 ? src->n_classes : 1), 1);
        if (resolve_classes(spec->classes, src, keep, err) != JT_OK) {
            free(keep);
            free(sel);
            return JT_ERR;
        }
        size_t before = cnt, k = 0;
        for (size_t i = 0; i < cnt; i++)
            if (keep[src->labels[sel[i]]]) sel[k++] = sel[i];
        cnt = k;
        free(keep);
        if (cnt == 0) {
            free(sel);
            if (spec->index_file)
                return jt_fail(err,
                               "class filter %s leaves no images (of the %zu listed in %s; "
                               "labels are 0..%d)",
                               spec->classes, before, spec->index_file, src->n_classes - 1);
            return jt_fail(err, "class filter %s leaves no images in %s (labels are 0..%d)",
                           spec->classes, src->what, src->n_classes - 1);
        }
    }
    if (spec->limit > 0 && spec->limit < cnt) cnt = spec->limit;
    if (cnt == 0) {
        free(sel);
        return jt_fail(err, "%s: no images selected", src->what);
    }
    *rows = sel;
    *n = cnt;
    return JT_OK;
}
