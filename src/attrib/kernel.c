/* kernel.c: the TRAK kernel (method.md 2.1, 2.4, and 6 row 7): K = X^T X accumulated in double,
 * A = (K + lambda I)^{-1} by Cholesky in double (LAPACKE dpotrf/dpocon/dpotri through linalg), then
 * TRAK's rescaling A <- A / mean_{a,b}|A[a,b]| (trak/score_computers.py,
 * BasicScoreComputer.get_x_xtx_inv), and the cast to float32. LAPACK runs single-threaded
 * (kernel_invert sets it), so the kernel is bitwise the same in every process that computes it.
 *
 * Accumulation. Every product of two float32 numbers is exact in double (24 + 24 significand bits
 * <= 53, and the exponent range fits), so each element K[a][b] is the double sum of exact terms,
 * added in training-row order: K[a][b] = (((K0 + x_0a x_0b) + x_1a x_1b) + ...). No BLAS is used
 * here because a BLAS kernel adds each row block's partial sum to C, and the blocks depend on its
 * internals; with the row order fixed per element, the result is bitwise the same however the rows
 * are split into gram_add calls and whatever the number of OpenMP threads (threads take disjoint
 * 8 x 8 output tiles; each element is accumulated by one thread from start to end). Rows are
 * converted into packed panels of 8 columns (doubles) once per chunk, and an 8 x 8 register tile
 * sweeps the chunk: the same shape as a GEMM micro-kernel, only without splitting the row sum. */
#include "attrib/kernel.h"

#include "core/linalg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    GRAM_PANEL = 8,   /* columns per packed panel = side of the register tile */
    GRAM_CHUNK = 256, /* rows packed at a time: (k/8) panels of 256 x 8 doubles stay in L2 */
};

/* Below this reciprocal condition number (1-norm estimate, LAPACKE dpocon) K + lambda I is treated
 * as singular even when dpotrf succeeds: rounding then decides the inverse in the worst directions
 * (double relative error ~ 1e-16 / rcond >= 1e-3). Exactly rank-deficient kernels (n < k,
 * duplicated or collinear columns) land near 1e-16 or fail dpotrf outright. */
#define KERNEL_RCOND_MIN 1e-13

void gram_init(Gram *g, int k) {
    CHECK(k >= 1, "gram_init: k = %d", k);
    size_t kk;
    CHECK(jt_mul_size((size_t)k, (size_t)k, &kk), "gram_init: k = %d overflows", k);
    g->k = k;
    g->xtx = xcalloc(kk, sizeof(double));
    g->rows = 0;
}

void gram_free(Gram *g) {
    if (!g) return;
    free(g->xtx);
    g->xtx = NULL;
    g->k = 0;
    g->rows = 0;
}

/* C[a][b] += sum_i Pa[i][a'] Pb[i][b'] over the nr rows of one chunk, for the 8 x 8 tile of
 * panels (pa, pb); rows added one after the other. The product is exact, so a fused multiply-add
 * (when the compiler emits one) rounds exactly like the separate multiply and add. */
static void gram_tile(double *C, int k, const double *Pa, const double *Pb, size_t nr, int pa,
                      int pb) {
    const int a0 = pa * GRAM_PANEL, b0 = pb * GRAM_PANEL;
    const int ra = k - a0 < GRAM_PANEL ? k - a0 : GRAM_PANEL;
    const int rb = k - b0 < GRAM_PANEL ? k - b0 : GRAM_PANEL;
    double acc[GRAM_PANEL][GRAM_PANEL];
    for (int a = 0; a < GRAM_PANEL; a++)
        for (int b = 0; b < GRAM_PANEL; b++)
            acc[a][b] = (a < ra && b < rb) ? C[(size_t)(a0 + a) * k + b0 + b] : 0.0;
    for (size_t i = 0; i < nr; i++) {
        const double *xa = Pa + i * GRAM_PANEL, *xb = Pb + i * GRAM_PANEL;
#pragma GCC unroll 8
        for (int a = 0; a < GRAM_PANEL; a++)
#pragma GCC unroll 8
            for (int b = 0; b < GRAM_PANEL; b++)
                acc[a][b] += xa[a] * xb[b];
    }
    for (int a = 0; a < ra; a++)
        for (int b = 0; b < rb; b++)
            C[(size_t)(a0 + a) * k + b0 + b] = acc[a][b];
}

void gram_add(Gram *g, const float *X, size_t rows) {
    CHECK(g && g->xtx, "gram_add: uninitialised Gram");
    if (rows == 0) return;
    CHECK(X, "gram_add: X is NULL");
    const int k = g->k, np = (k + GRAM_PANEL - 1) / GRAM_PANEL;
    const size_t chunk = rows < GRAM_CHUNK ? rows : GRAM_CHUNK;
    double *pack = xmalloc((size_t)np * chunk * GRAM_PANEL * sizeof(double)); /* (np, nr, 8) */
    double *C = g->xtx;
    for (size_t r0 = 0; r0 < rows; r0 += GRAM_CHUNK) {
        const size_t nr = rows - r0 < GRAM_CHUNK ? rows - r0 : GRAM_CHUNK;
#pragma omp parallel for schedule(static)
        for (int p = 0; p < np; p++) {
            double *P = pack + (size_t)p * nr * GRAM_PANEL;
            for (size_t i = 0; i < nr; i++) {
                const float *x = X + (r0 + i) * (size_t)k;
                for (int c = 0; c < GRAM_PANEL; c++) {
                    int col = p * GRAM_PANEL + c;
                    P[i * GRAM_PANEL + c] = col < k ? (double)x[col] : 0.0;
                }
            }
        }
        /* Upper triangle of panel tiles; row pa of tiles shrinks with pa, hence dynamic. */
#pragma omp parallel for schedule(dynamic, 1)
        for (int pa = 0; pa < np; pa++)
            for (int pb = pa; pb < np; pb++)
                gram_tile(C, k, pack + (size_t)pa * nr * GRAM_PANEL,
                          pack + (size_t)pb * nr * GRAM_PANEL, nr, pa, pb);
    }
    free(pack);
    /* Mirror the upper triangle (the diagonal tiles computed both halves, identically). */
#pragma omp parallel for schedule(static)
    for (int a = 1; a < k; a++)
        for (int b = 0; b < a; b++)
            C[(size_t)a * k + b] = C[(size_t)b * k + a];
    g->rows += rows;
}

/* M = K + lambda I, Cholesky (lower triangle), condition estimate. Returns 1 when K + lambda I
 * factorises with rcond >= KERNEL_RCOND_MIN; otherwise 0 with *pivot (the failing order from
 * dpotrf, 0 if it succeeded) and *rcond (0 when dpotrf failed). */
static int try_factor(const double *K, int k, double lambda, double *M, int *pivot, double *rcond) {
    size_t kk = (size_t)k * k;
    memcpy(M, K, kk * sizeof(double));
    for (int a = 0; a < k; a++)
        M[(size_t)a * k + a] += lambda;
    double anorm = 0; /* 1-norm = max column sum = max row sum (symmetric) */
    for (int a = 0; a < k; a++) {
        double s = 0;
        for (int b = 0; b < k; b++)
            s += fabs(M[(size_t)a * k + b]);
        if (s > anorm) anorm = s;
    }
    *rcond = 0;
    *pivot = la_dpotrf_lower(k, M, k);
    if (*pivot != 0) return 0;
    *rcond = la_dpocon_lower(k, M, k, anorm);
    return *rcond >= KERNEL_RCOND_MIN;
}

int kernel_invert(const Gram *g, const KernelOptions *opt, float *A, KernelInfo *info,
                  JtError *err) {
    CHECK(g && g->xtx && opt && A, "kernel_invert: NULL argument");
    CHECK(opt->lambda >= 0 && isfinite(opt->lambda), "kernel_invert: lambda = %g", opt->lambda);
    /* LAPACK's rounding depends on OpenBLAS's thread count (dpotrf/dpotri at k = 64 differ between
     * 1 and 4 threads), and the count was whatever the process had set: single-threaded after a
     * grad engine ran, OpenBLAS's default when featurize resumed with every row done. The kernel
     * is therefore always inverted single-threaded (it is O(k^3), small beside the Gram). */
    la_blas_single_threaded();
    const int k = g->k;
    const size_t kk = (size_t)k * k, n = g->rows;
    const double *K = g->xtx;
    for (size_t e = 0; e < kk; e++)
        if (!isfinite(K[e]))
            return jt_fail(err,
                           "kernel X^T X (n=%zu rows, k=%d) has non-finite entries: NaN or Inf in "
                           "the training features",
                           n, k);
    double diag = 0;
    for (int a = 0; a < k; a++)
        diag += K[(size_t)a * k + a];
    const double mean_diag = diag / k;

    double *M = xmalloc(kk * sizeof(double));
    double lambda = opt->lambda, rcond = 0;
    int pivot = 0, ridge_added = 0;
    /* rank(X^T X) <= n: with no ridge and fewer rows than features it is singular for sure. */
    int ok = (lambda == 0 && n < (size_t)k) ? 0 : try_factor(K, k, lambda, M, &pivot, &rcond);
    if (!ok && opt->auto_ridge) {
        double step = 1e-7 * mean_diag;
        for (int j = 0; j <= 12 && !ok; j++, step *= 10) {
            if (!(step > lambda)) continue; /* only ever raise the requested ridge */
            int pv;
            double rc;
            if (try_factor(K, k, step, M, &pv, &rc)) ok = 1, lambda = step, ridge_added = 1;
        }
        if (!ok) {
            free(M);
            if (mean_diag == 0)
                return jt_fail(err,
                               "kernel X^T X (n=%zu rows, k=%d) is zero: every training feature "
                               "is 0, no ridge makes it informative",
                               n, k);
            return jt_fail(err,
                           "kernel X^T X (n=%zu rows, k=%d) stays singular up to the largest "
                           "automatic ridge lambda=%g (1e5 * mean diagonal); check the features "
                           "or give a larger --lambda",
                           n, k, 1e5 * mean_diag);
        }
    }
    if (!ok) {
        free(M);
        char why[96] = "";
        if (lambda == 0 && n < (size_t)k)
            snprintf(why, sizeof why, " (rank <= n < k)");
        else if (pivot > 0)
            snprintf(why, sizeof why, " (Cholesky pivot %d of %d not positive)", pivot, k);
        else
            snprintf(why, sizeof why, " (reciprocal condition %.1e < %.0e)", rcond,
                     KERNEL_RCOND_MIN);
        if (lambda > 0)
            return jt_fail(err,
                           "kernel X^T X + lambda I (n=%zu rows, k=%d, lambda=%g) is singular%s: "
                           "fewer training rows than k or collinear features; use a larger "
                           "--lambda or --auto-ridge",
                           n, k, lambda, why);
        return jt_fail(err,
                       "kernel X^T X (n=%zu rows, k=%d) is singular%s: fewer training rows than k "
                       "or collinear features; use --lambda or --auto-ridge",
                       n, k, why);
    }

    int rc = la_dpotri_lower(k, M, k);
    CHECK(rc == 0, "dpotri failed (%d) after a successful dpotrf", rc);
    for (int a = 0; a < k; a++) /* the lower triangle holds the inverse: mirror it */
        for (int b = a + 1; b < k; b++)
            M[(size_t)a * k + b] = M[(size_t)b * k + a];

    double divisor = 1.0;
    if (opt->rescale) { /* TRAK: xtx_inv /= xtx_inv.abs().mean(); here in double */
        double s = 0;
        for (size_t e = 0; e < kk; e++)
            s += fabs(M[e]);
        divisor = s / (double)kk;
        CHECK(divisor > 0 && isfinite(divisor), "mean |A| = %g", divisor);
    }
    int overflow = 0;
    for (size_t e = 0; e < kk; e++) {
        A[e] = (float)(M[e] / divisor);
        overflow |= isinf(A[e]);
    }
    free(M);
    if (overflow)
        return jt_fail(err,
                       "kernel inverse (n=%zu rows, k=%d) overflows float32 without the mean-|A| "
                       "rescaling; turn rescaling on",
                       n, k);
    if (info) {
        info->lambda_used = lambda;
        info->rescale_divisor = divisor;
        info->ridge_added = ridge_added;
    }
    return JT_OK;
}
