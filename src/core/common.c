/* common.c: see common.h. */
#include "core/common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void jt_panic(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "jtrak: internal error at %s:%d: check `%s` failed: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    CHECK(p != NULL, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    CHECK(q != NULL, "out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *path_join(const char *dir, const char *name) {
    size_t dl = strlen(dir), n = dl + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", name);
    return p;
}

int jt_vfail(JtError *err, const char *fmt, va_list ap) {
    if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return JT_ERR;
}

int jt_fail(JtError *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jt_vfail(err, fmt, ap);
    va_end(ap);
    return JT_ERR;
}

int jt_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int jt_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

size_t jt_sat_mul(size_t a, size_t b) {
    size_t r;
    return jt_mul_size(a, b, &r) ? r : SIZE_MAX;
}

size_t jt_sat_add(size_t a, size_t b) {
    size_t r;
    return jt_add_size(a, b, &r) ? r : SIZE_MAX;
}

size_t jt_phys_memory(void) {
    static size_t cached; /* the value does not change while a process runs */
    if (!cached) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        cached = pages > 0 && page > 0 ? jt_sat_mul((size_t)pages, (size_t)page) : SIZE_MAX;
    }
    return cached;
}

const char *jt_format_bytes(size_t bytes, char *buf, size_t cap) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes == SIZE_MAX) {
        snprintf(buf, cap, "more than 16 EiB");
        return buf;
    }
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 6) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%zu bytes", bytes);
    else
        snprintf(buf, cap, v < 10 ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

int jt_check_memory(size_t bytes, const char *what, JtError *err) {
    size_t have = jt_phys_memory();
    if (bytes <= have) return JT_OK;
    char need[32], phys[32];
    return jt_fail(err, "%s needs %s; this machine has %s", what,
                   jt_format_bytes(bytes, need, sizeof need),
                   jt_format_bytes(have, phys, sizeof phys));
}

size_t jt_first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

size_t jt_first_nonfinite_d(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

static int nonfinite_fail(size_t i, double v, const char *file, const char *what, JtError *err) {
    return jt_fail(err, "%s: %s: entry %zu is %s (NaN and Inf are refused)", file, what, i,
                   isnan(v) ? "NaN"
                   : v > 0  ? "+Inf"
                            : "-Inf");
}

int jt_check_finite(const float *x, size_t n, const char *file, const char *what, JtError *err) {
    size_t i = jt_first_nonfinite(x, n);
    return i == n ? JT_OK : nonfinite_fail(i, x[i], file, what, err);
}

int jt_check_finite_d(const double *x, size_t n, const char *file, const char *what, JtError *err) {
    size_t i = jt_first_nonfinite_d(x, n);
    return i == n ? JT_OK : nonfinite_fail(i, x[i], file, what, err);
}
