/* fixture_npy.c: see fixture_npy.h. */
#include "helpers/fixture_npy.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the whole file and parses the header; returns the data (malloc'd) of elem-byte items. */
static void *npy_load(const char *path, const char *want_descr, size_t elem, NpyShape *out) {
    FILE *f = fopen(path, "rb");
    if (!f) cr_assert_fail("%s: cannot open fixture (run ref/make_*_fixtures.py?)", path);
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        cr_assert_fail("%s: not a .npy file", path);
    size_t hlen;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) cr_assert_fail("%s: truncated header", path);
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)more[0] << 16) |
               ((size_t)more[1] << 24);
    }
    char *h = malloc(hlen + 1);
    if (!h || fread(h, 1, hlen, f) != hlen) cr_assert_fail("%s: truncated header", path);
    h[hlen] = 0;
    char descr[16] = "";
    const char *d = strstr(h, "'descr':");
    if (!d || sscanf(d, "'descr': '%15[^']'", descr) != 1) cr_assert_fail("%s: no descr", path);
    if (strcmp(descr, want_descr) != 0)
        cr_assert_fail("%s: dtype %s, expected %s", path, descr, want_descr);
    if (!strstr(h, "'fortran_order': False")) cr_assert_fail("%s: not C order", path);
    const char *s = strstr(h, "'shape':");
    if (!s || !(s = strchr(s, '('))) cr_assert_fail("%s: no shape", path);
    NpyShape sh = {0, {0}, 1};
    s++;
    while (*s && *s != ')') {
        char *e;
        unsigned long long v = strtoull(s, &e, 10);
        if (e == s) {
            s++;
            continue;
        }
        if (sh.ndim == NPY_MAX_DIMS) cr_assert_fail("%s: too many dimensions", path);
        sh.shape[sh.ndim++] = (size_t)v;
        sh.n *= (size_t)v;
        s = e;
    }
    free(h);
    void *data = malloc(sh.n * elem + 1);
    if (!data || fread(data, elem, sh.n, f) != sh.n) cr_assert_fail("%s: truncated data", path);
    fclose(f);
    if (out) *out = sh;
    return data;
}

float *fixture_npy_f32(const char *path, NpyShape *shape) {
    return npy_load(path, "<f4", sizeof(float), shape);
}

int64_t *fixture_npy_i64(const char *path, NpyShape *shape) {
    return npy_load(path, "<i8", sizeof(int64_t), shape);
}
