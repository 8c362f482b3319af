/* bench_common.h: what the benchmark executables share (each bench C file is its own program). */
#ifndef JTRAK_BENCH_COMMON_H
#define JTRAK_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of ts[0..n) (sorts ts). */
static inline double bench_median(double *ts, int n) {
    qsort(ts, (size_t)n, sizeof *ts, bench_cmp_double);
    return n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
}

/* Parses a comma-separated list of positive integers ("16,64") into out[0..cap); returns how many,
 * or -1 after one error line naming the program and the option. */
static inline int bench_int_list(const char *list, int *out, int cap, const char *prog,
                                 const char *option) {
    int n = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1 << 30 || (*end && *end != ',') || n == cap) {
            fprintf(stderr, "%s: %s '%s': up to %d positive integers, comma-separated\n", prog,
                    option, list, cap);
            return -1;
        }
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) fprintf(stderr, "%s: %s is empty\n", prog, option);
    return n > 0 ? n : -1;
}

/* The process's peak resident memory so far, in MB. */
static inline double bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Whether `word` is one of the comma-separated entries of `list` ("forward,train_step"). */
static inline int bench_has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

#endif
