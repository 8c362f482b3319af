/* paramsel.c: see paramsel.h. Patterns are matched as runs of whole dot-separated components of
 * the diffusers names; the selection is packed in layout order (graph_compact_offsets). */
#include "attrib/paramsel.h"

#include "nn/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Does `pat` (len bytes) occur in name as whole components? */
static int component_match(const char *name, const char *pat, size_t len) {
    const size_t n = strlen(name);
    for (size_t i = 0; i + len <= n; i++) {
        if (i > 0 && name[i - 1] != '.') continue;
        if (i + len < n && name[i + len] != '.') continue;
        if (memcmp(name + i, pat, len) == 0) return 1;
    }
    return 0;
}

int param_select_matches(const char *patterns, const char *name) {
    if (strcmp(patterns, PARAMSEL_ALL) == 0) return 1;
    const char *p = patterns;
    while (*p) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0 && component_match(name, p, len)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* "a, b, c" -> "a,b,c" (malloc'd); JT_ERR on an empty pattern. */
static int canonical(const char *in, char **out, JtError *err) {
    const size_t n = strlen(in);
    char *c = xmalloc(n + 1);
    size_t w = 0;
    const char *p = in;
    for (;;) {
        const char *e = strchr(p, ',');
        const char *end = e ? e : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == p) {
            free(c);
            return jt_fail(err, "--params '%s': an empty pattern (patterns are separated by ',')",
                           in);
        }
        if (w) c[w++] = ',';
        memcpy(c + w, p, (size_t)(end - p));
        w += (size_t)(end - p);
        if (!e) break;
        p = e + 1;
    }
    c[w] = '\0';
    *out = c;
    return JT_OK;
}

void param_select_free(ParamSelect *s) {
    free(s->patterns);
    free(s->compact);
    memset(s, 0, sizeof *s);
}

/* A few names of the layout for a message: the first ones and some that differ in their module. */
static void example_names(const ParamLayout *l, char *buf, size_t cap) {
    size_t w = 0;
    int shown = 0;
    buf[0] = '\0';
    const int step = l->count > 4 ? l->count / 4 : 1;
    for (int i = 0; i < l->count && shown < 4; i += step, shown++) {
        int k = snprintf(buf + w, cap - w, "%s'%s'", shown ? ", " : "", l->entries[i].name);
        if (k < 0 || (size_t)k >= cap - w) break;
        w += (size_t)k;
    }
}

int param_select_init(ParamSelect *s, const ParamLayout *l, const char *patterns, const char *what,
                      JtError *err) {
    memset(s, 0, sizeof *s);
    if (!patterns || !*patterns) patterns = PARAMSEL_ALL;
    if (canonical(patterns, &s->patterns, err) != JT_OK) return JT_ERR;
    s->all = strcmp(s->patterns, PARAMSEL_ALL) == 0;
    const size_t pl = strlen(s->patterns);
    if (!s->all && (strncmp(s->patterns, "all,", 4) == 0 || strstr(s->patterns, ",all,") ||
                    (pl > 4 && strcmp(s->patterns + pl - 4, ",all") == 0))) {
        const int rc =
            jt_fail(err, "--params '%s': 'all' cannot be combined with other patterns", patterns);
        param_select_free(s);
        return rc;
    }
    unsigned char *keep = xcalloc((size_t)l->count + 1, 1);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < l->count; i++) {
        keep[i] = (unsigned char)(s->all || param_select_matches(s->patterns, l->entries[i].name));
        if (!keep[i]) continue;
        h = fnv1a(h, l->entries[i].name, strlen(l->entries[i].name));
        h = fnv1a(h, "\n", 1);
        s->n_tensors++;
    }
    s->fingerprint = h;
    /* every pattern must select something */
    const char *p = s->patterns;
    while (!s->all && *p) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        int hit = 0;
        for (int i = 0; i < l->count && !hit; i++)
            hit = component_match(l->entries[i].name, p, len);
        if (!hit) {
            char names[512];
            example_names(l, names, sizeof names);
            const int rc = jt_fail(err,
                                   "--params: pattern '%.*s' matches no parameter of %s (a "
                                   "pattern is whole dot-separated components of a diffusers "
                                   "name; its %d names look like %s)",
                                   (int)len, p, what, l->count, names);
            free(keep);
            param_select_free(s);
            return rc;
        }
        if (!e) break;
        p = e + 1;
    }
    if (s->all) {
        s->count = l->total;
    } else {
        s->compact = xmalloc(((size_t)l->count + 1) * sizeof *s->compact);
        s->count = graph_compact_offsets(l, keep, s->compact);
    }
    free(keep);
    return JT_OK;
}
