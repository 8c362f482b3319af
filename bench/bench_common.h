/* bench_common.h: what the benchmark executables share (each bench C file is its own program). */
#ifndef JTRAK_BENCH_COMMON_H
#define JTRAK_BENCH_COMMON_H

#include <stdlib.h>

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of ts[0..n) (sorts ts). */
static inline double bench_median(double *ts, int n) {
    qsort(ts, (size_t)n, sizeof *ts, bench_cmp_double);
    return n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
}

#endif
