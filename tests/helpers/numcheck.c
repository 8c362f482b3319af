/* numcheck.c: see numcheck.h. */
#include "helpers/numcheck.h"

#include <criterion/criterion.h>
#include <math.h>

#define EXPECT_CLOSE_BODY(T)                                                                       \
    NumDiff r = {0, 0, 0, 0};                                                                      \
    double worst_excess = -INFINITY;                                                               \
    for (size_t i = 0; i < n; i++) {                                                               \
        double a = (double)got[i], b = (double)want[i];                                            \
        double d = fabs(a - b);                                                                    \
        double rel = d / (fabs(b) > 1e-30 ? fabs(b) : 1e-30);                                      \
        if (!(d == d)) d = INFINITY; /* NaN counts as the worst */                                \
        if (d > r.max_abs) r.max_abs = d;                                                          \
        if (rel > r.max_rel && fabs(b) > atol) r.max_rel = rel;                                    \
        double excess = d - (atol + rtol * fabs(b));                                               \
        if (excess > 0) r.n_bad++;                                                                 \
        if (excess > worst_excess) {                                                               \
            worst_excess = excess;                                                                 \
            r.worst = i;                                                                           \
        }                                                                                          \
    }                                                                                              \
    if (r.n_bad)                                                                                   \
        cr_expect_fail("%s: %zu of %zu outside atol %.3g + rtol %.3g; max abs %.3g, max rel %.3g; worst " \
                "[%zu] got %.9g want %.9g",                                                        \
                what, r.n_bad, n, atol, rtol, r.max_abs, r.max_rel, r.worst,                       \
                (double)got[r.worst], (double)want[r.worst]);                                      \
    return r;

NumDiff expect_close(const char *what, const float *got, const float *want, size_t n, double atol,
                     double rtol) {
    EXPECT_CLOSE_BODY(float)
}

NumDiff expect_close_d(const char *what, const double *got, const double *want, size_t n,
                       double atol, double rtol) {
    EXPECT_CLOSE_BODY(double)
}
