/* numcheck.h: the one comparison helper of the test suite (house-style convention 6): it reports
 * the max absolute and relative error and the worst index, and fails the test when
 * |a - b| > atol + rtol * |b| anywhere. */
#ifndef JTRAK_TEST_NUMCHECK_H
#define JTRAK_TEST_NUMCHECK_H

#include <stddef.h>

typedef struct {
    double max_abs, max_rel;
    size_t worst;   /* index with the largest |a-b| - rtol*|b| excess */
    size_t n_bad;
} NumDiff;

/* Compares got against want (n floats); returns the statistics and, if any element is outside
 * atol + rtol*|want|, fails the current Criterion test with a message naming `what`. */
NumDiff expect_close(const char *what, const float *got, const float *want, size_t n, double atol,
                     double rtol);
/* Same, for doubles. */
NumDiff expect_close_d(const char *what, const double *got, const double *want, size_t n,
                       double atol, double rtol);

#endif
