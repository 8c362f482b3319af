/* common.c: see common.h. */
#include "core/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    if (!err) return JT_ERR;
    char raw[sizeof err->msg];
    vsnprintf(raw, sizeof raw, fmt, ap);
    /* one place for every message built from file content: control bytes become \xNN (UTF-8
     * bytes >= 0x80 pass, the messages themselves use x̂) */
    size_t o = 0, cap = sizeof err->msg;
    for (const unsigned char *s = (const unsigned char *)raw; *s && o + 1 < cap; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            if (o + 5 > cap) break;
            snprintf(err->msg + o, cap - o, "\\x%02x", *s);
            o += 4;
        } else {
            err->msg[o++] = (char)*s;
        }
    }
    err->msg[o] = 0;
    return JT_ERR;
}

int jt_fail(JtError *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jt_vfail(err, fmt, ap);
    va_end(ap);
    return JT_ERR;
}

/* "<base>.tmp.<pid>" or "<base>.tmp.<pid>.<n>" (or the older "<base>.tmp<pid>.<n>"): the pid */
static long tmp_pid_of(const char *name, const char *base) {
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, ".tmp", 4) != 0) return -1;
    const char *s = name + bl + 4;
    if (*s == '.') s++;
    if (*s < '0' || *s > '9') return -1;
    char *end;
    long pid = strtol(s, &end, 10);
    if (*end == '.') {
        const char *c = end + 1;
        if (!*c) return -1;
        for (; *c; c++)
            if (*c < '0' || *c > '9') return -1;
    } else if (*end) {
        return -1;
    }
    return pid > 0 ? pid : -1;
}

int jt_tmp_sweep(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : xstrdup(".");
    if (slash) dir[slash - path + (slash == path)] = 0;
    const char *base = slash ? slash + 1 : path;
    int removed = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        long pid = tmp_pid_of(e->d_name, base);
        if (pid < 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char *p = path_join(dir, e->d_name);
        if (unlink(p) == 0) removed++;
        free(p);
    }
    if (d) closedir(d);
    free(dir);
    return removed;
}

int jt_tmp_open(const char *path, char **tmp, JtError *err) {
    static unsigned counter = 0;
    jt_tmp_sweep(path);
    size_t cap = strlen(path) + 64;
    char *name = xmalloc(cap);
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(name, cap, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
        int fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *tmp = name;
            return fd;
        }
        if (errno != EEXIST) {
            jt_fail(err, "%s: cannot create temporary file %s: %s", path, name, strerror(errno));
            free(name);
            return -1;
        }
    }
    jt_fail(err, "%s: cannot find a free temporary name", path);
    free(name);
    return -1;
}

int jt_open_regular(const char *path, int flags, JtError *err) {
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        jt_fail(err, "%s: not a regular file (%s)", path,
                S_ISDIR(sb.st_mode)    ? "a folder"
                : S_ISFIFO(sb.st_mode) ? "a FIFO"
                                       : "a device or socket");
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

FILE *jt_fopen_regular(const char *path, JtError *err) {
    int fd = jt_open_regular(path, O_RDONLY, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
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
