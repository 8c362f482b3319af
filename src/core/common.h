/* common.h: checks for bugs (CHECK), allocation that never returns NULL, and the error record that
 * code reading files or user input fills in (the second tier of errors in house-style.md). */
#ifndef JTRAK_COMMON_H
#define JTRAK_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A bug, not bad input: print where and abort. Always on (not assert). */
#define CHECK(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) jt_panic(__FILE__, __LINE__, #cond, __VA_ARGS__);                             \
    } while (0)

void jt_panic(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* dir/name, malloc'd (no doubled slash when dir ends with one). */
char *path_join(const char *dir, const char *name);

/* Bad input (a malformed file, a wrong argument): functions return JT_ERR and fill this with one
 * line naming the file and the tensor or field, so that the CLI can print it and tests can match it. */
typedef struct {
    char msg[1024];
} JtError;

enum { JT_OK = 0, JT_ERR = -1 };

/* Fills err (if non-NULL) and returns JT_ERR, so that `return jt_fail(err, ...)` reads naturally.
 * The message stays one line whatever it quotes from a file: control bytes (newlines, tabs,
 * escapes) are written as \xNN. */
int jt_fail(JtError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* jt_fail with a va_list, for functions that take a message format of their own. */
int jt_vfail(JtError *err, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Opens a file that must be a regular file for reading (flags O_RDONLY or O_RDWR): a FIFO, device
 * or folder in its place is refused without blocking (opened O_NONBLOCK, checked with fstat, then
 * made blocking again). Returns the fd, or -1 with err "PATH: cannot open: ..." / "PATH: not a
 * regular file". jt_fopen_regular is the same as a read-only FILE *. */
int jt_open_regular(const char *path, int flags, JtError *err);
FILE *jt_fopen_regular(const char *path, JtError *err);

/* Creates a temporary file next to path for an atomic write (then renamed over path), named
 * "<path>.tmp.<pid>.<n>" so that it is recognisable, with O_EXCL and mode 0666 less the umask.
 * First removes the stale temporaries of path that a dead process left (its pid no longer
 * exists): a later run of the same command cleans up after one that was killed. Returns the fd
 * (opened O_RDWR) and sets *tmp (malloc'd), or -1 with err filled. */
int jt_tmp_open(const char *path, char **tmp, JtError *err);
/* Removes "<path>.tmp.<pid>[.<n>]" files whose process is dead; returns how many. */
int jt_tmp_sweep(const char *path);

/* a*b with overflow detection: returns 0 on overflow (and leaves *out unset). */
int jt_mul_size(size_t a, size_t b, size_t *out);
/* a+b, the same way. */
int jt_add_size(size_t a, size_t b, size_t *out);
/* Saturating a*b and a+b (SIZE_MAX on overflow), for memory estimates: an estimate that
 * overflows is refused like one that does not fit. */
size_t jt_sat_mul(size_t a, size_t b);
size_t jt_sat_add(size_t a, size_t b);

/* This machine's physical memory in bytes (sysconf, read once; SIZE_MAX if unknown). */
size_t jt_phys_memory(void);
/* "812 GiB", "3.5 MiB", "more than 16 EiB" (SIZE_MAX) into buf. */
const char *jt_format_bytes(size_t bytes, char *buf, size_t cap);
/* Refuses work whose estimate does not fit in this machine's physical memory, before any of it
 * is allocated: fills err with "WHAT needs N GiB; this machine has M GiB" and returns JT_ERR. */
int jt_check_memory(size_t bytes, const char *what, JtError *err);

/* The index of the first NaN or infinity in x[0..n), or n when all are finite. */
size_t jt_first_nonfinite(const float *x, size_t n);
size_t jt_first_nonfinite_d(const double *x, size_t n);
/* Refuses an array read back from a file that holds a NaN or an infinity: fills err with
 * "FILE: WHAT: entry I is nan (NaN and Inf are refused)" naming the first one. For every artifact
 * and weight read (item 6 of issue 17: non-finite values never pass through silently). */
int jt_check_finite(const float *x, size_t n, const char *file, const char *what, JtError *err);
int jt_check_finite_d(const double *x, size_t n, const char *file, const char *what, JtError *err);

#endif
