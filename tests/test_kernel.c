/* test_kernel.c: the TRAK kernel (src/attrib/kernel.c, method.md 2.1, 2.4): X^T X and the rescaled
 * inverse against the traker library (tests/fixtures/traker/, written by
 * ref/make_traker_fixtures.py with traker 0.3.2), against an explicit double inverse, the singular
 * and auto-ridge paths, the rescale divisor, and the determinism of gram_add (bitwise the same
 * for any split of the rows into calls and any number of threads). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/kernel.h"
#include "core/linalg.h"
#include "helpers/numcheck.h"
#include "helpers/traker_fixture.h"
#include "helpers/uniform.h"
#include "io/npy.h"

static double max_abs_d(const double *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double max_abs_f(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* The definition: rows added one after the other, each product exact in double. */
static void naive_gram(const float *X, size_t n, int k, double *K) {
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += (double)X[i * k + a] * (double)X[i * k + b];
            K[(size_t)a * k + b] = s;
        }
}

/* ---------------------------------------------------------------- traker */

static void check_traker_case(const char *cas) {
    NpyHeader hx, hk, ha, hd, hl, h64;
    float *X = traker_fixture(cas, "X.npy", NPY_F32, &hx);
    float *xtx = traker_fixture(cas, "xtx.npy", NPY_F32, &hk);
    float *Atr = traker_fixture(cas, "A.npy", NPY_F32, &ha);
    float *div = traker_fixture(cas, "rescale_divisor.npy", NPY_F32, &hd);
    double *lam = traker_fixture(cas, "lambda.npy", NPY_F64, &hl);
    double *A64 = traker_fixture(cas, "A_f64.npy", NPY_F64, &h64);
    NpyHeader hf;
    float *Ftr = traker_fixture(cas, "features.npy", NPY_F32, &hf);
    cr_assert_eq(hx.ndim, 3);
    const int M = (int)hx.shape[0], k = (int)hx.shape[2];
    const size_t n = hx.shape[1], kk = (size_t)k * k;
    cr_assert(ha.shape[0] == (size_t)M && ha.shape[1] == (size_t)k && hl.ndim == 0);

    double *K = malloc(kk * sizeof(double)), *Kd = malloc(kk * sizeof(double));
    float *A = malloc(kk * sizeof(float)), *F = malloc(n * k * sizeof(float));
    float *A64f = malloc(kk * sizeof(float));
    for (int m = 0; m < M; m++) {
        const float *Xm = X + (size_t)m * n * k;
        char what[128];
        Gram g;
        gram_init(&g, k);
        for (size_t r0 = 0; r0 < n; r0 += 10) /* tiles of 10 rows, as the store is read */
            gram_add(&g, Xm + r0 * k, n - r0 < 10 ? n - r0 : 10);
        cr_assert_eq(g.rows, n);
        /* Against the definition: bitwise (exact products, row order). */
        naive_gram(Xm, n, k, K);
        cr_expect(memcmp(g.xtx, K, kk * sizeof(double)) == 0, "%s m=%d: X^T X not bitwise", cas, m);
        /* Against traker's float32 X^T X: each entry is a float32 sum of n terms, off by at most
         * ~n * 2^-24 * sum|terms| <= 64 * 6e-8 * max|K| = 4e-6 max|K|. */
        for (size_t e = 0; e < kk; e++)
            Kd[e] = xtx[(size_t)m * kk + e];
        snprintf(what, sizeof what, "%s m=%d X^T X vs traker", cas, m);
        NumDiff dk = expect_close_d(what, g.xtx, Kd, kk, 4e-6 * max_abs_d(Kd, kk), 0);

        KernelOptions opt = {.lambda = *lam, .auto_ridge = 0, .rescale = 1};
        KernelInfo info;
        JtError err;
        cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_OK, "%s", err.msg);
        cr_expect_eq(info.lambda_used, *lam);
        cr_expect_eq(info.ridge_added, 0);
        /* The divisor: traker's is the float32 mean of a float32 inverse (error ~ cond * 2^-24,
         * cond(K) < 100 here), ours the double mean of the double inverse. */
        cr_expect(fabs(info.rescale_divisor - div[m]) <= 2e-5 * div[m],
                  "%s m=%d divisor %.9g vs traker %.9g", cas, m, info.rescale_divisor, div[m]);
        /* A against float64 NumPy: both are float32 roundings of double inverses that agree to
         * ~cond * 1e-16, so at most one ulp apart (2^-23 relative; measured: bitwise equal). */
        for (size_t e = 0; e < kk; e++)
            A64f[e] = (float)A64[(size_t)m * kk + e];
        snprintf(what, sizeof what, "%s m=%d A vs float64", cas, m);
        NumDiff d64 = expect_close(what, A, A64f, kk, 1e-9 * max_abs_f(A64f, kk), 1.2e-7);
        /* A against traker: traker inverts in float32 (measured by the fixture script: 2.4e-7
         * of max|A| for ens3, 3.3e-6 for ridge2, where cond(K + lambda I) is larger). */
        snprintf(what, sizeof what, "%s m=%d A vs traker", cas, m);
        NumDiff da = expect_close(what, A, Atr + (size_t)m * kk, kk, 1e-5 * max_abs_f(A, kk), 0);
        /* Features F = X A (what traker stores in features.mmap), from our A. */
        la_sgemm(0, 0, (int)n, k, k, 1.0f, Xm, k, A, k, 0.0f, F, k);
        snprintf(what, sizeof what, "%s m=%d features vs traker", cas, m);
        NumDiff df = expect_close(what, F, Ftr + (size_t)m * n * k, n * k,
                                  1e-5 * max_abs_f(Ftr + (size_t)m * n * k, n * k), 0);
        cr_log_info("%s m=%d: max|dK|=%.2e (max|K| %.3g) divisor %.9g/%.9g max|dA| vs f64 %.2e, "
                    "vs traker %.2e (max|A| %.3g); max|dF| %.2e",
                    cas, m, dk.max_abs, max_abs_d(Kd, kk), info.rescale_divisor, (double)div[m],
                    d64.max_abs, da.max_abs, max_abs_f(A, kk), df.max_abs);
        gram_free(&g);
    }
    free(K), free(Kd), free(A), free(F), free(A64f);
    free(X), free(xtx), free(Atr), free(div), free(lam), free(A64), free(Ftr);
}

Test(kernel, traker_ens3_no_ridge) {
    check_traker_case("ens3");
}
Test(kernel, traker_ridge2_lambda) {
    check_traker_case("ridge2");
}

/* ---------------------------------------------------------------- explicit inverse */

/* Gauss-Jordan with partial pivoting in double: independent of LAPACK. */
static void gauss_jordan_inverse(const double *K, int k, double *inv) {
    double *a = malloc((size_t)k * 2 * k * sizeof(double));
    for (int r = 0; r < k; r++)
        for (int c = 0; c < 2 * k; c++)
            a[(size_t)r * 2 * k + c] = c < k ? K[(size_t)r * k + c] : (c - k == r);
    for (int c = 0; c < k; c++) {
        int p = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(a[(size_t)r * 2 * k + c]) > fabs(a[(size_t)p * 2 * k + c])) p = r;
        for (int j = 0; j < 2 * k; j++) {
            double t = a[(size_t)c * 2 * k + j];
            a[(size_t)c * 2 * k + j] = a[(size_t)p * 2 * k + j];
            a[(size_t)p * 2 * k + j] = t;
        }
        double piv = a[(size_t)c * 2 * k + c];
        for (int j = 0; j < 2 * k; j++)
            a[(size_t)c * 2 * k + j] /= piv;
        for (int r = 0; r < k; r++) {
            if (r == c) continue;
            double f = a[(size_t)r * 2 * k + c];
            for (int j = 0; j < 2 * k; j++)
                a[(size_t)r * 2 * k + j] -= f * a[(size_t)c * 2 * k + j];
        }
    }
    for (int r = 0; r < k; r++)
        for (int c = 0; c < k; c++)
            inv[(size_t)r * k + c] = a[(size_t)r * 2 * k + k + c];
    free(a);
}

Test(kernel, equals_explicit_double_inverse) {
    const int k = 7;
    const size_t n = 40;
    const double lambda = 0.25;
    float X[40 * 7], A[49], want[49];
    double K[49], inv[49];
    test_fill_uniform(X, n * k, 3);
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    naive_gram(X, n, k, K);
    for (int a = 0; a < k; a++)
        K[a * k + a] += lambda;
    gauss_jordan_inverse(K, k, inv);
    KernelOptions opt = {.lambda = lambda, .auto_ridge = 0, .rescale = 0};
    KernelInfo info;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(info.rescale_divisor, 1.0);
    cr_expect_eq(info.lambda_used, lambda);
    for (int e = 0; e < k * k; e++)
        want[e] = (float)inv[e];
    /* Both inverses are accurate to ~cond * 1e-16 in double (cond < 20 here), so only the float32
     * rounding of the output differs: one ulp, 2^-24 relative, plus slack for entries near 0. */
    expect_close("A vs Gauss-Jordan", A, want, (size_t)k * k, 1e-7 * max_abs_f(want, 49), 1.2e-7);
    for (int a = 0; a < k; a++) /* exactly symmetric */
        for (int b = 0; b < k; b++)
            cr_expect_eq(A[a * k + b], A[b * k + a]);
    gram_free(&g);
}

/* ---------------------------------------------------------------- singular, auto ridge */

Test(kernel, singular_fewer_rows_than_k_fails) {
    const int k = 16;
    const size_t n = 8;
    float X[8 * 16], A[256];
    test_fill_uniform(X, n * k, 5);
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    KernelOptions opt = {.lambda = 0, .auto_ridge = 0, .rescale = 1};
    KernelInfo info;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_ERR);
    cr_log_info("%s", err.msg);
    cr_expect(strstr(err.msg, "(n=8 rows, k=16)") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "singular") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "--lambda") && strstr(err.msg, "--auto-ridge"), "%s", err.msg);
    gram_free(&g);
}

Test(kernel, singular_collinear_columns_fail) {
    /* n >= k, but column 3 duplicates column 1: X^T X is exactly singular. */
    const int k = 6;
    const size_t n = 30;
    float X[30 * 6], A[36];
    test_fill_uniform(X, n * k, 6);
    for (size_t i = 0; i < n; i++)
        X[i * k + 3] = X[i * k + 1];
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    KernelOptions opt = {.lambda = 0, .auto_ridge = 0, .rescale = 1};
    KernelInfo info;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_ERR);
    cr_log_info("%s", err.msg);
    cr_expect(strstr(err.msg, "(n=30 rows, k=6) is singular") != NULL, "%s", err.msg);
    gram_free(&g);
}

Test(kernel, auto_ridge_recovers_and_reports_lambda) {
    const int k = 16;
    const size_t n = 8;
    float X[8 * 16], A[256], A2[256];
    test_fill_uniform(X, n * k, 7);
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    double mean_diag = 0;
    for (int a = 0; a < k; a++)
        mean_diag += g.xtx[a * k + a] / k;
    KernelOptions opt = {.lambda = 0, .auto_ridge = 1, .rescale = 1};
    KernelInfo info;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(info.ridge_added, 1);
    /* lambda_used is one of the ladder 1e-7 * mean(diag K) * 10^j. */
    double j = log10(info.lambda_used / (1e-7 * mean_diag));
    cr_expect(fabs(j - round(j)) < 1e-9 && j > -0.5 && j < 12.5, "lambda %g: j = %g",
              info.lambda_used, j);
    cr_log_info("auto ridge: lambda %.6g = 1e-7 * mean diag * 10^%.0f", info.lambda_used, j);
    for (int e = 0; e < k * k; e++)
        cr_assert(isfinite(A[e]));
    /* The same lambda given explicitly gives the same A, bit for bit. */
    KernelOptions opt2 = {.lambda = info.lambda_used, .auto_ridge = 0, .rescale = 1};
    KernelInfo info2;
    cr_assert_eq(kernel_invert(&g, &opt2, A2, &info2, &err), JT_OK, "%s", err.msg);
    cr_expect(memcmp(A, A2, sizeof A) == 0);
    cr_expect_eq(info2.ridge_added, 0);
    /* A requested lambda that already works is kept. */
    KernelOptions opt3 = {.lambda = 0.5, .auto_ridge = 1, .rescale = 1};
    cr_assert_eq(kernel_invert(&g, &opt3, A2, &info2, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(info2.lambda_used, 0.5);
    cr_expect_eq(info2.ridge_added, 0);
    gram_free(&g);
}

Test(kernel, auto_ridge_untouched_when_invertible) {
    const int k = 5;
    const size_t n = 50;
    float X[50 * 5], A[25], A2[25];
    test_fill_uniform(X, n * k, 8);
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    KernelOptions on = {.lambda = 0, .auto_ridge = 1, .rescale = 1};
    KernelOptions off = {.lambda = 0, .auto_ridge = 0, .rescale = 1};
    KernelInfo i1, i2;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &on, A, &i1, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(kernel_invert(&g, &off, A2, &i2, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(i1.ridge_added, 0);
    cr_expect_eq(i1.lambda_used, 0.0);
    cr_expect(memcmp(A, A2, sizeof A) == 0);
    gram_free(&g);
}

Test(kernel, zero_and_nonfinite_features_fail_clearly) {
    const int k = 4;
    float X[10 * 4] = {0}, A[16];
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, 10);
    KernelOptions opt = {.lambda = 0, .auto_ridge = 1, .rescale = 1};
    KernelInfo info;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_ERR);
    cr_expect(strstr(err.msg, "is zero") != NULL, "%s", err.msg);
    X[5] = NAN;
    gram_add(&g, X, 10);
    cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_ERR);
    cr_expect(strstr(err.msg, "non-finite") != NULL, "%s", err.msg);
    gram_free(&g);
}

/* ---------------------------------------------------------------- rescaling */

Test(kernel, rescale_divisor_is_mean_abs_A) {
    const int k = 12;
    const size_t n = 60;
    float X[60 * 12], A0[144], A1[144], want[144];
    test_fill_uniform(X, n * k, 9);
    for (size_t e = 0; e < n * k; e++)
        X[e] *= 1e-3f; /* feature scale of gradients / sqrt(p) */
    Gram g;
    gram_init(&g, k);
    gram_add(&g, X, n);
    KernelOptions off = {.lambda = 0, .auto_ridge = 0, .rescale = 0};
    KernelOptions on = {.lambda = 0, .auto_ridge = 0, .rescale = 1};
    KernelInfo i0, i1;
    JtError err;
    cr_assert_eq(kernel_invert(&g, &off, A0, &i0, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(kernel_invert(&g, &on, A1, &i1, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(i0.rescale_divisor, 1.0);
    double mean0 = 0, mean1 = 0;
    for (int e = 0; e < k * k; e++)
        mean0 += fabs((double)A0[e]), mean1 += fabs((double)A1[e]);
    mean0 /= k * k, mean1 /= k * k;
    /* A0 is the float32 rounding of the double inverse: its mean is within 2^-24 relative. */
    cr_expect(fabs(i1.rescale_divisor - mean0) <= 1e-7 * mean0, "divisor %.9g vs mean|A| %.9g",
              i1.rescale_divisor, mean0);
    cr_expect(fabs(mean1 - 1.0) <= 1e-7, "mean|A rescaled| = %.9g", mean1);
    for (int e = 0; e < k * k; e++)
        want[e] = (float)((double)A0[e] / i1.rescale_divisor);
    /* two float32 roundings apart at most: 2 ulp */
    expect_close("rescaled A vs A / divisor", A1, want, (size_t)k * k, 0, 2.5e-7);
    gram_free(&g);
}

/* ---------------------------------------------------------------- gram determinism */

static void gram_split(const float *X, size_t n, int k, const size_t *cuts, double *out) {
    Gram g;
    gram_init(&g, k);
    size_t r0 = 0;
    for (int c = 0; cuts[c] && r0 < n; c++) {
        size_t r1 = cuts[c] < n ? cuts[c] : n;
        gram_add(&g, X + r0 * k, r1 - r0);
        r0 = r1;
    }
    gram_add(&g, X + r0 * k, n - r0);
    cr_assert_eq(g.rows, n);
    memcpy(out, g.xtx, (size_t)k * k * sizeof(double));
    gram_free(&g);
}

Test(kernel, gram_bitwise_independent_of_split_and_threads) {
    /* k = 37: five panels of 8 with a ragged last one; n = 600 crosses the 256-row chunks. */
    const int k = 37;
    const size_t n = 600, kk = (size_t)k * k;
    float *X = malloc(n * k * sizeof(float));
    test_fill_uniform(X, n * k, 11);
    for (size_t e = 0; e < n * k; e += 7)
        X[e] *= 1e4f; /* mixed magnitudes: rounding matters */
    double *ref = malloc(kk * sizeof(double)), *got = malloc(kk * sizeof(double));
    naive_gram(X, n, k, ref);
    const size_t whole[] = {0};
    const size_t odd[] = {1, 8, 255, 256, 257, 300, 599, 0};
    const size_t tens[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 400, 500, 0};
    const size_t *splits[] = {whole, odd, tens};
    int saved = omp_get_max_threads();
    int threads[] = {1, 2, 3, 8};
    for (int t = 0; t < 4; t++) {
        omp_set_num_threads(threads[t]);
        for (int s = 0; s < 3; s++) {
            gram_split(X, n, k, splits[s], got);
            cr_expect(memcmp(got, ref, kk * sizeof(double)) == 0,
                      "threads %d split %d: X^T X differs from the row-order double sum",
                      threads[t], s);
        }
    }
    /* row by row */
    Gram g;
    gram_init(&g, k);
    for (size_t i = 0; i < n; i++)
        gram_add(&g, X + i * k, 1);
    cr_expect(memcmp(g.xtx, ref, kk * sizeof(double)) == 0, "row by row differs");
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            cr_expect_eq(g.xtx[a * k + b], g.xtx[b * k + a]);
    gram_free(&g);
    omp_set_num_threads(saved);
    free(X), free(ref), free(got);
}
