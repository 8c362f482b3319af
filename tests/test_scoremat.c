/* test_scoremat.c: TRAK scores in tiles (src/attrib/scoremat.c, method.md 2.1, 2.4) against the
 * traker library's own finalize_scores (tests/fixtures/traker/, written by
 * ref/make_traker_fixtures.py with traker 0.3.2): per model and the ensemble average with the
 * mean-|A| rescaling, from jtrak's own kernel (gram_add + kernel_invert) and from traker's A;
 * tiled scores against one-shot scores; the top-k tracker against a full sort (ties, opponents,
 * NaN, k > n, any push order). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/kernel.h"
#include "attrib/scoremat.h"
#include "helpers/numcheck.h"
#include "helpers/traker_fixture.h"
#include "helpers/uniform.h"
#include "io/npy.h"

static double max_abs_f(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* ---------------------------------------------------------------- traker */

/* Scores of every model and their mean, the way `jtrak score` forms them: per model, AG = A
 * Gamma^T, then training rows in tiles of 10 with weight 1 (per model) or 1/M (ensemble). A is
 * jtrak's own (own_kernel) or traker's A.npy. */
static void check_traker_scores(const char *cas, int own_kernel) {
    NpyHeader hx, hg, ha, hl, hs, hp, h64;
    float *X = traker_fixture(cas, "X.npy", NPY_F32, &hx);
    float *G = traker_fixture(cas, "Gamma.npy", NPY_F32, &hg);
    float *Atr = traker_fixture(cas, "A.npy", NPY_F32, &ha);
    double *lam = traker_fixture(cas, "lambda.npy", NPY_F64, &hl);
    float *S = traker_fixture(cas, "scores.npy", NPY_F32, &hs);
    float *Sm = traker_fixture(cas, "scores_per_model.npy", NPY_F32, &hp);
    double *S64 = traker_fixture(cas, "scores_f64.npy", NPY_F64, &h64);
    const int M = (int)hx.shape[0], k = (int)hx.shape[2], N = (int)hg.shape[1];
    const size_t n = hx.shape[1], kk = (size_t)k * k, nN = n * N;
    cr_assert(hs.shape[0] == n && hs.shape[1] == (size_t)N && hp.shape[0] == (size_t)M);

    float *A = malloc(kk * sizeof(float)), *AG = malloc((size_t)k * N * sizeof(float));
    float *ens = calloc(nN, sizeof(float)), *one = malloc(nN * sizeof(float));
    float *S64f = malloc(nN * sizeof(float));
    const char *src = own_kernel ? "jtrak A" : "traker A";
    char what[128];
    for (int m = 0; m < M; m++) {
        const float *Xm = X + (size_t)m * n * k;
        if (own_kernel) {
            Gram g;
            gram_init(&g, k);
            gram_add(&g, Xm, n);
            KernelOptions opt = {.lambda = *lam, .auto_ridge = 0, .rescale = 1};
            KernelInfo info;
            JtError err;
            cr_assert_eq(kernel_invert(&g, &opt, A, &info, &err), JT_OK, "%s", err.msg);
            gram_free(&g);
        } else {
            memcpy(A, Atr + (size_t)m * kk, kk * sizeof(float));
        }
        scoremat_prepare(A, G + (size_t)m * N * k, k, N, AG);
        memset(one, 0, nN * sizeof(float));
        for (size_t r0 = 0; r0 < n; r0 += 10) {
            size_t rows = n - r0 < 10 ? n - r0 : 10;
            scoremat_tile(Xm + r0 * k, rows, AG, k, N, 1.0f, one + r0 * N);
            scoremat_tile(Xm + r0 * k, rows, AG, k, N, 1.0f / (float)M, ens + r0 * N);
        }
        /* Per model: X (A Gamma^T) here, (X A) Gamma^T in traker, both float32 with k = 16 terms.
         * With traker's own A only that regrouping differs: measured <= 1.7e-6 of max|S|, the
         * most in ridge2, whose scores cancel (|X||A||Gamma^T| reaches 125 max|S| there), hence
         * 1e-5. With our A, traker's float32 inverse error adds (up to 3.3e-6 of max|A| in
         * ridge2; measured <= 3.5e-6 of max|S|), hence 3e-5. A missing rescale, weight or
         * transpose is off by orders of magnitude. */
        const float *want = Sm + (size_t)m * nN;
        double tol = (own_kernel ? 3e-5 : 1e-5) * max_abs_f(want, nN);
        snprintf(what, sizeof what, "%s model %d scores (%s)", cas, m, src);
        NumDiff d = expect_close(what, one, want, nN, tol, 0);
        cr_log_info("%s: max|d| %.2e (max|S| %.3g)", what, d.max_abs, max_abs_f(want, nN));
    }
    /* The ensemble: traker sums the per-model blocks in float32, divides by M and multiplies by
     * the averaged out-to-loss (1); here each block is scaled by 1/M first. */
    double tol = (own_kernel ? 3e-5 : 1e-5) * max_abs_f(S, nN); /* as per model */
    snprintf(what, sizeof what, "%s ensemble scores (%s) vs traker", cas, src);
    NumDiff d = expect_close(what, ens, S, nN, tol, 0);
    cr_log_info("%s: max|d| %.2e (max|S| %.3g)", what, d.max_abs, max_abs_f(S, nN));
    /* Against float64 NumPy: with our double kernel only the float32 score products remain
     * (measured <= 1.4e-6 of max|S|, ridge2 again); with traker's float32 A, 2.6e-6. */
    for (size_t e = 0; e < nN; e++)
        S64f[e] = (float)S64[e];
    snprintf(what, sizeof what, "%s ensemble scores (%s) vs float64", cas, src);
    tol = (own_kernel ? 1e-5 : 3e-5) * max_abs_f(S64f, nN);
    d = expect_close(what, ens, S64f, nN, tol, 0);
    cr_log_info("%s: max|d| %.2e", what, d.max_abs);
    free(A), free(AG), free(ens), free(one), free(S64f);
    free(X), free(G), free(Atr), free(lam), free(S), free(Sm), free(S64);
}

Test(scoremat, traker_ens3_own_kernel) {
    check_traker_scores("ens3", 1);
}
Test(scoremat, traker_ens3_traker_kernel) {
    check_traker_scores("ens3", 0);
}
Test(scoremat, traker_ridge2_own_kernel) {
    check_traker_scores("ridge2", 1);
}
Test(scoremat, traker_ridge2_traker_kernel) {
    check_traker_scores("ridge2", 0);
}

/* ---------------------------------------------------------------- tiles */

Test(scoremat, tiles_equal_one_shot) {
    const int k = 24, N = 5;
    const size_t n = 53;
    float *X = malloc(n * k * sizeof(float)), A[24 * 24], G[5 * 24], AG[24 * 5];
    test_fill_uniform(X, n * k, 21);
    test_fill_uniform(A, (size_t)k * k, 22);
    test_fill_uniform(G, (size_t)N * k, 23);
    scoremat_prepare(A, G, k, N, AG);
    /* AG against its definition (double): k-term float32 dot products. */
    for (int a = 0; a < k; a++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int b = 0; b < k; b++)
                s += (double)A[a * k + b] * G[j * k + b];
            cr_expect(fabs(AG[a * N + j] - s) <= 1e-5, "AG[%d][%d] %.9g vs %.9g", a, j,
                      AG[a * N + j], s);
        }
    float *full = calloc(n * N, sizeof(float)), *tiled = malloc(n * N * sizeof(float));
    scoremat_tile(X, n, AG, k, N, 0.5f, full);
    const size_t tiles[] = {1, 7, n};
    for (int t = 0; t < 3; t++) {
        memset(tiled, 0, n * N * sizeof(float));
        for (size_t r0 = 0; r0 < n; r0 += tiles[t]) {
            size_t rows = n - r0 < tiles[t] ? n - r0 : tiles[t];
            scoremat_tile(X + r0 * k, rows, AG, k, N, 0.5f, tiled + r0 * N);
        }
        /* Each score is one k-term dot product whatever the tile: BLAS may change the summation
         * order with the tile's shape, so allow a few float32 ulps of the row's magnitude. */
        char what[64];
        snprintf(what, sizeof what, "tile %zu vs one shot", tiles[t]);
        NumDiff d = expect_close(what, tiled, full, n * N, 4e-6 * max_abs_f(full, n * N), 0);
        cr_log_info("%s: max|d| %.2e%s", what, d.max_abs,
                    memcmp(tiled, full, n * N * sizeof(float)) ? "" : " (bitwise equal)");
    }
    /* out accumulates: a second pass doubles it exactly (x + x is exact in binary floating point)
     */
    scoremat_tile(X, n, AG, k, N, 0.5f, full);
    memset(tiled, 0, n * N * sizeof(float));
    scoremat_tile(X, n, AG, k, N, 1.0f, tiled);
    expect_close("accumulation", full, tiled, n * N, 4e-6 * max_abs_f(tiled, n * N), 0);
    free(X), free(full), free(tiled);
}

/* ---------------------------------------------------------------- top-k */

typedef struct {
    float v;
    size_t i;
} Ent;

static int by_pro(const void *a, const void *b) {
    const Ent *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int by_opp(const void *a, const void *b) {
    const Ent *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Pushes scores (n, N) in tiles of `tile` rows, in reverse tile order when `reverse`, and checks
 * both lists of every target against a full sort of its non-NaN scores. */
static void check_topk(const float *scores, size_t n, int N, int k, size_t tile, int reverse) {
    TopK t;
    topk_init(&t, N, k);
    size_t ntiles = (n + tile - 1) / tile;
    for (size_t q = 0; q < ntiles; q++) {
        size_t tq = reverse ? ntiles - 1 - q : q;
        size_t r0 = tq * tile, rows = n - r0 < tile ? n - r0 : tile;
        topk_push(&t, scores + r0 * N, r0, rows);
    }
    topk_finish(&t);
    Ent *all = malloc(n * sizeof(Ent));
    for (int j = 0; j < N; j++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            float v = scores[i * N + j];
            if (v == v) all[m].v = v, all[m].i = i, m++;
        }
        int want = (size_t)k < m ? k : (int)m;
        cr_assert_eq(t.count[j], want, "target %d: count %d, want %d", j, t.count[j], want);
        for (int side = 0; side < 2; side++) {
            qsort(all, m, sizeof(Ent), side ? by_opp : by_pro);
            const float *v = (side ? t.opp_val : t.pro_val) + (size_t)j * k;
            const size_t *ix = (side ? t.opp_idx : t.pro_idx) + (size_t)j * k;
            for (int r = 0; r < want; r++)
                cr_expect(v[r] == all[r].v && ix[r] == all[r].i,
                          "k=%d tile %zu%s target %d %s rank %d: (%g, row %zu), want (%g, row %zu)",
                          k, tile, reverse ? " reversed" : "", j, side ? "opponent" : "proponent",
                          r, v[r], ix[r], all[r].v, all[r].i);
        }
    }
    free(all);
    topk_free(&t);
}

Test(scoremat, topk_equals_full_sort_with_ties) {
    const size_t n = 97;
    const int N = 4;
    float *s = malloc(n * N * sizeof(float));
    test_fill_uniform(s, n * N, 31);
    for (size_t e = 0; e < n * N; e++) {
        int j = (int)(e % N);
        if (j == 0) s[e] = roundf(s[e] * 3.0f); /* 7 distinct values: ties everywhere */
        if (j == 1) s[e] = 1.0f;                /* all equal: rank = row order */
        if (j == 2 && e % 5 == 0) s[e] = NAN;   /* NaNs are skipped */
        if (j == 3 && e % 3 == 0) s[e] = -0.0f; /* -0 and +0 compare equal */
        if (j == 3 && e % 3 == 1) s[e] = 0.0f;
    }
    const int ks[] = {1, 5, 20, 97, 150};
    const size_t tiles[] = {1, 7, 32, 97};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++)
            for (int rev = 0; rev < 2; rev++)
                check_topk(s, n, N, ks[a], tiles[b], rev);
    free(s);
}

Test(scoremat, topk_large_parallel_push) {
    /* N * rows >= 65536 takes the OpenMP path over targets. */
    const size_t n = 5000;
    const int N = 16;
    float *s = malloc(n * N * sizeof(float));
    test_fill_uniform(s, n * N, 41);
    for (size_t e = 0; e < n * N; e += 3)
        s[e] = roundf(s[e] * 50.0f) / 50.0f;
    check_topk(s, n, N, 10, 5000, 0);
    check_topk(s, n, N, 10, 999, 1);
    free(s);
}

Test(scoremat, topk_zero_k_and_empty) {
    TopK t;
    topk_init(&t, 3, 0);
    float s[6] = {1, 2, 3, 4, 5, 6};
    topk_push(&t, s, 0, 2);
    topk_finish(&t);
    for (int j = 0; j < 3; j++)
        cr_expect_eq(t.count[j], 0);
    topk_free(&t);
    topk_init(&t, 2, 4);
    topk_finish(&t); /* nothing pushed */
    cr_expect_eq(t.count[0], 0);
    cr_expect_eq(t.count[1], 0);
    topk_free(&t);
}
