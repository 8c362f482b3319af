/* test_stats.c: the LDS statistics of src/eval/stats.c (method.md 3.1, issue 5).
 *
 * Against scipy (fixtures from ref/make_stats_fixtures.py, tests/fixtures/stats/): average ranks
 * and Spearman on known inputs (ties, constant vectors, NaN, n = 1 and 2, signed zeros,
 * infinities), the LDS per target, mask @ scores, resampled LDS means on explicit index sets and
 * numpy.percentile. By construction: a hand-checked case; LDS = 1 for a perfect linear datamodel
 * and -1 for its negation; near 0 for independent ground truth; the bootstrap's replicates equal
 * a direct recomputation on the resampled matrix; its interval covers the known true value in a
 * simulation with a shared subset effect, where a bootstrap over targets alone is far narrower
 * and undercovers; the permuted control is near 0; the paired interval of a method against itself
 * is exactly [0, 0]; results are bit-identical with 1 and 2 OpenMP threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "eval/stats.h"
#include "helpers/numcheck.h"
#include "io/npy.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define FIX JTRAK_FIXTURES "/stats/"

static void *load(const char *name, NpyDtype dt, NpyHeader *h) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", FIX, name);
    JtError err = {{0}};
    void *data = NULL;
    int rc = npy_read_as(path, dt, h, &data, &err);
    cr_assert_eq(rc, JT_OK, "%s", err.msg);
    return data;
}

/* got and want agree when both are NaN, or both finite within atol; returns |got - want| (0 for
 * matching NaN, INFINITY for a NaN mismatch). */
static double nan_aware_diff(double got, double want) {
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0.0 : INFINITY;
    if (got == want) return 0.0; /* also equal infinities */
    return fabs(got - want);
}

/* ---- against scipy ----------------------------------------------------------------------------
 */

Test(stats, ranks_match_scipy_rankdata) {
    NpyHeader hi, hx, hr;
    int64_t *idx = load("sp_index.npy", NPY_I64, &hi);
    double *x = load("sp_x.npy", NPY_F64, &hx);
    double *want = load("sp_rank_x.npy", NPY_F64, &hr);
    cr_assert_eq(hx.count, hr.count);
    double *got = malloc(hx.count * sizeof *got);
    double worst = 0.0;
    for (size_t c = 0; c < hi.shape[0]; c++) {
        int64_t off = idx[2 * c], n = idx[2 * c + 1];
        stats_rank_average(x + off, (int)n, got + off);
        for (int64_t i = 0; i < n; i++) {
            double d = nan_aware_diff(got[off + i], want[off + i]);
            if (d > worst) worst = d;
            /* Average ranks are half-integers on both sides: exact. */
            cr_expect(d == 0.0, "case %zu element %lld: rank %.17g, scipy %.17g", c, (long long)i,
                      got[off + i], want[off + i]);
        }
    }
    cr_log_info("rankdata: %zu cases, %zu values, max |diff| %.3g", (size_t)hi.shape[0], hx.count,
                worst);
    free(idx);
    free(x);
    free(want);
    free(got);
}

Test(stats, spearman_matches_scipy) {
    NpyHeader hi, hx, hy, hr;
    int64_t *idx = load("sp_index.npy", NPY_I64, &hi);
    double *x = load("sp_x.npy", NPY_F64, &hx);
    double *y = load("sp_y.npy", NPY_F64, &hy);
    double *want = load("sp_rho.npy", NPY_F64, &hr);
    cr_assert_eq(hr.count, hi.shape[0]);
    double worst = 0.0;
    int nan_cases = 0;
    for (size_t c = 0; c < hi.shape[0]; c++) {
        int64_t off = idx[2 * c], n = idx[2 * c + 1];
        double got = stats_spearman(x + off, y + off, (int)n);
        double d = nan_aware_diff(got, want[c]);
        nan_cases += isnan(want[c]);
        if (d > worst) worst = d;
        /* Both sides sum exact integer rank products; they differ only in how the final square
         * root and division round (scipy: corrcoef's c / sqrt(d) / sqrt(d)): a few ulp of 1. */
        cr_expect(d <= 4e-16, "case %zu (n %lld): spearman %.17g, scipy %.17g (|diff| %.3g)", c,
                  (long long)n, got, want[c], d);
    }
    cr_log_info("spearman: %zu cases (%d NaN), max |C - scipy| %.3g", (size_t)hi.shape[0],
                nan_cases, worst);
    fprintf(stderr, "spearman vs scipy: %zu cases (%d NaN), max |diff| %.3g\n", (size_t)hi.shape[0],
            nan_cases, worst);
    free(idx);
    free(x);
    free(y);
    free(want);
}

Test(stats, lds_predict_matches_numpy) {
    NpyHeader hm, hs, hp;
    uint8_t *mask = load("lds_mask.npy", NPY_U8, &hm);
    float *scores = load("lds_scores.npy", NPY_F32, &hs);
    double *want = load("lds_predict.npy", NPY_F64, &hp);
    int K = (int)hm.shape[0], n = (int)hm.shape[1], N = (int)hs.shape[1];
    cr_assert_eq(hs.shape[0], (size_t)n);
    double *got = malloc((size_t)K * N * sizeof *got);
    lds_predict(mask, scores, K, n, N, got);
    /* Sums of <= 40 float32 values in double: exact or within an ulp of the sum, whatever the
     * order numpy's BLAS adds them in. */
    expect_close_d("mask @ scores", got, want, (size_t)K * N, 1e-12, 0.0);
    free(mask);
    free(scores);
    free(want);
    free(got);
}

Test(stats, lds_per_target_matches_scipy) {
    NpyHeader hp, ht, hw;
    double *P = load("lds_preds.npy", NPY_F64, &hp);
    double *Y = load("lds_truth.npy", NPY_F64, &ht);
    double *want = load("lds_per_target.npy", NPY_F64, &hw);
    int K = (int)hp.shape[0], N = (int)hp.shape[1];
    double *got = malloc((size_t)N * sizeof *got);
    LdsMean m = lds_compute(P, Y, K, N, got);
    double worst = 0.0, s = 0.0;
    int used = 0;
    for (int j = 0; j < N; j++) {
        double d = nan_aware_diff(got[j], want[j]);
        if (d > worst) worst = d;
        cr_expect(d <= 4e-16, "target %d: %.17g, scipy %.17g", j, got[j], want[j]); /* as above */
        if (!isnan(want[j])) {
            s += want[j];
            used++;
        }
    }
    /* The fixture has a constant prediction column and a constant truth column. */
    cr_expect_eq(m.n_skipped, 2);
    cr_expect_eq(m.n_used, N - 2);
    cr_expect(fabs(m.mean - s / used) <= 1e-15, "mean %.17g, numpy nanmean %.17g", m.mean,
              s / used);
    cr_log_info("lds per target: max |C - scipy| %.3g", worst);
    free(P);
    free(Y);
    free(want);
    free(got);
}

Test(stats, resampled_means_and_percentiles_match_scipy) {
    NpyHeader hp, ht, hs, hg, hm, hq;
    double *P = load("lds_preds.npy", NPY_F64, &hp);
    double *Y = load("lds_truth.npy", NPY_F64, &ht);
    int64_t *sub = load("boot_subsets.npy", NPY_I64, &hs);
    int64_t *tgt = load("boot_targets.npy", NPY_I64, &hg);
    double *want = load("boot_means.npy", NPY_F64, &hm);
    double *pct = load("boot_percentiles.npy", NPY_F64, &hq);
    int K = (int)hp.shape[0], N = (int)hp.shape[1], R = (int)hs.shape[0];
    int *si = malloc((size_t)K * sizeof *si), *ti = malloc((size_t)N * sizeof *ti);
    double *got = malloc((size_t)R * sizeof *got);
    for (int r = 0; r < R; r++) {
        for (int k = 0; k < K; k++)
            si[k] = (int)sub[(size_t)r * K + k];
        for (int j = 0; j < N; j++)
            ti[j] = (int)tgt[(size_t)r * N + j];
        got[r] = lds_resampled_mean(P, Y, K, N, si, ti);
    }
    /* Means of <= 9 correlations, each within a few ulp of scipy's. */
    expect_close_d("resampled LDS means", got, want, (size_t)R, 1e-15, 0.0);
    double q[3] = {stats_quantile(got, R, 0.025), stats_quantile(got, R, 0.5),
                   stats_quantile(got, R, 0.975)};
    expect_close_d("percentiles 2.5/50/97.5", q, pct, 3, 1e-15, 0.0); /* same inputs, same rule */
    free(P);
    free(Y);
    free(sub);
    free(tgt);
    free(want);
    free(pct);
    free(si);
    free(ti);
    free(got);
}

/* ---- by construction ------------------------------------------------------------------------- */

Test(stats, hand_checked_cases) {
    /* y = 5 6 7 8 7: ranks 1 2 3.5 5 3.5; centred x -2 -1 0 1 2, y -2 -1 .5 2 .5:
     * sxy = 8, sxx = 10, syy = 9.5, rho = 8 / sqrt(95). */
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {5, 6, 7, 8, 7}, r[5];
    cr_expect_eq(stats_spearman(x, y, 5), 8.0 / sqrt(95.0));
    stats_rank_average(y, 5, r);
    double want_r[5] = {1, 2, 3.5, 5, 3.5};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(r[i], want_r[i]);
    /* No ties: 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 4 / 120 = 0.8. */
    double y2[5] = {2, 1, 4, 3, 5};
    cr_expect(fabs(stats_spearman(x, y2, 5) - 0.8) <= 1e-16);
    /* Constant sides, n < 2, NaN. */
    double c[5] = {3, 3, 3, 3, 3};
    cr_expect(isnan(stats_spearman(x, c, 5)));
    cr_expect(isnan(stats_spearman(c, x, 5)));
    cr_expect(isnan(stats_spearman(x, y, 1)));
    double xn[5] = {1, 2, NAN, 4, 5};
    cr_expect(isnan(stats_spearman(xn, y, 5)));
    /* Pearson: y = 2x + 1 is 1; a hand case 8 / sqrt(10 * 9.5) again on the ranks themselves. */
    double lin[5] = {3, 5, 7, 9, 11};
    cr_expect_eq(stats_pearson(x, lin, 5), 1.0);
    cr_expect(fabs(stats_pearson(x, want_r, 5) - 8.0 / sqrt(95.0)) <= 2e-16);
    /* numpy.percentile([1, 2, 3, 4], 50) = 2.5; q = 0.25 -> 1.75; NaN ignored. */
    double v[5] = {4, NAN, 1, 3, 2};
    cr_expect_eq(stats_quantile(v, 5, 0.5), 2.5);
    cr_expect_eq(stats_quantile(v, 5, 0.25), 1.75);
    cr_expect_eq(stats_quantile(v, 5, 1.0), 4.0);
}

/* x (n) standard normal from the test stream (key, a). */
static void fill_normal_d(double *x, size_t n, uint64_t key, uint64_t a) {
    uint64_t st = rng_stream(RNG_TAG_TEST, key, a);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal(1234, st, i);
}

Test(stats, perfect_and_negated_datamodel) {
    enum { K = 30, N = 12 };
    double P[K * N], Y[K * N], E[K * N];
    fill_normal_d(P, K * N, 1, 0);
    for (int i = 0; i < K * N; i++)
        P[i] = round(P[i] * 4.0) / 4.0; /* ties, as the sum of a few scores can produce */
    LdsBootstrapOpts o = {.replicates = 200, .seed = 7};
    LdsInterval ci;
    JtError err;

    memcpy(Y, P, sizeof P);
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &ci, NULL, &err), JT_OK, "%s", err.msg);
    cr_expect_eq(ci.estimate, 1.0);
    /* Every resample of a perfect datamodel is perfect, too: the interval is exactly [1, 1]. */
    cr_expect_eq(ci.lo, 1.0);
    cr_expect_eq(ci.hi, 1.0);

    for (int i = 0; i < K * N; i++)
        Y[i] = -P[i];
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &ci, NULL, &err), JT_OK);
    cr_expect_eq(ci.estimate, -1.0);
    cr_expect_eq(ci.lo, -1.0);
    cr_expect_eq(ci.hi, -1.0);

    /* Only ranks matter: a monotone transform of the predictions is still perfect. */
    for (int i = 0; i < K * N; i++)
        E[i] = exp(P[i]) - 3.0;
    cr_expect_eq(lds_compute(P, E, K, N, NULL).mean, 1.0);
}

Test(stats, independent_truth_is_near_zero) {
    enum { K = 200, N = 50 };
    double *P = malloc(sizeof(double) * K * N), *Y = malloc(sizeof(double) * K * N);
    fill_normal_d(P, (size_t)K * N, 2, 0);
    fill_normal_d(Y, (size_t)K * N, 2, 1);
    LdsBootstrapOpts o = {.replicates = 300, .seed = 11};
    LdsInterval ci;
    JtError err;
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &ci, NULL, &err), JT_OK);
    /* Independent columns: each Spearman has sd 1 / sqrt(K - 1) = 0.071, the mean of 50
     * independent ones 0.010; 0.05 is five standard deviations. */
    cr_expect(fabs(ci.estimate) < 0.05, "LDS of independent truth %.4f", ci.estimate);
    cr_expect(ci.lo <= 0.0 && 0.0 <= ci.hi, "interval [%.4f, %.4f] misses 0", ci.lo, ci.hi);
    cr_expect(ci.se > 0.005 && ci.se < 0.03, "bootstrap se %.4f, expected about 0.010", ci.se);
    free(P);
    free(Y);
}

Test(stats, bootstrap_replicates_equal_direct_recomputation) {
    NpyHeader hp, ht;
    double *P = load("lds_preds.npy", NPY_F64, &hp);
    double *Y = load("lds_truth.npy", NPY_F64, &ht);
    int K = (int)hp.shape[0], N = (int)hp.shape[1];
    enum { B = 300 };
    double reps[B], direct[B];
    int *si = malloc((size_t)K * sizeof *si), *ti = malloc((size_t)N * sizeof *ti);
    for (int targets_only = 0; targets_only <= 1; targets_only++) {
        LdsBootstrapOpts o = {.replicates = B, .seed = 99, .targets_only = targets_only};
        LdsInterval ci;
        JtError err;
        cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &ci, reps, &err), JT_OK);
        for (int b = 0; b < B; b++) {
            lds_bootstrap_draw(99, b, K, N, targets_only, si, ti);
            direct[b] = lds_resampled_mean(P, Y, K, N, si, ti);
        }
        /* Same correlations bit for bit (exact integer sums either way); the mean over drawn
         * targets adds them in another order (t[j] * rho_j vs one by one). */
        expect_close_d(targets_only ? "target-only replicates" : "replicates", reps, direct, B,
                       1e-14, 0.0);
        /* The interval is made of the replicates' quantiles (numpy's linear rule). */
        double q_lo = stats_quantile(direct, B, 0.025), q_hi = stats_quantile(direct, B, 0.975);
        cr_expect(fabs(ci.lo - q_lo) < 1e-14 && fabs(ci.hi - q_hi) < 1e-14);
        cr_expect_eq(ci.n_replicates, B);
    }
    free(P);
    free(Y);
    free(si);
    free(ti);
}

/* A simulation where the LDS is known. Subset s and target j:
 *   P[s, j] = sqrt(w) u_s + sqrt(1 - w) v_sj,
 *   Y[s, j] = r P[s, j] + sqrt(1 - r^2) (sqrt(w) e_s + sqrt(1 - w) f_sj),
 * all standard normal. For each target the K pairs are i.i.d. bivariate normal with correlation
 * r, so E[Spearman over K] = 6 / (pi (K + 1)) (asin r + (K - 2) asin(r / 2)) (Moran 1948), and
 * that is the expected LDS. u_s and e_s are shared by every target: the subset effect that makes
 * the per-target values move together, which a target-only bootstrap cannot see. */
static void simulate(double *P, double *Y, int K, int N, double w, double r, uint64_t sim) {
    double *u = malloc((size_t)K * sizeof *u), *e = malloc((size_t)K * sizeof *e);
    double *v = malloc((size_t)K * N * sizeof *v), *f = malloc((size_t)K * N * sizeof *f);
    fill_normal_d(u, (size_t)K, 100 + sim, 0);
    fill_normal_d(e, (size_t)K, 100 + sim, 1);
    fill_normal_d(v, (size_t)K * N, 100 + sim, 2);
    fill_normal_d(f, (size_t)K * N, 100 + sim, 3);
    double a = sqrt(w), b = sqrt(1.0 - w), c = sqrt(1.0 - r * r);
    for (int s = 0; s < K; s++)
        for (int j = 0; j < N; j++) {
            size_t i = (size_t)s * N + j;
            P[i] = a * u[s] + b * v[i];
            Y[i] = r * P[i] + c * (a * e[s] + b * f[i]);
        }
    free(u);
    free(e);
    free(v);
    free(f);
}

Test(stats, bootstrap_covers_known_value_and_target_only_is_too_narrow) {
    enum { K = 40, N = 30, SIMS = 100, B = 200 };
    const double w = 0.8, r = 0.6;
    const double truth =
        6.0 / (3.14159265358979323846 * (K + 1)) * (asin(r) + (K - 2) * asin(r / 2.0));
    double *P = malloc(sizeof(double) * K * N), *Y = malloc(sizeof(double) * K * N);
    int cover2 = 0, cover1 = 0;
    double width2 = 0.0, width1 = 0.0, mean_est = 0.0;
    for (int sim = 0; sim < SIMS; sim++) {
        simulate(P, Y, K, N, w, r, (uint64_t)sim);
        LdsBootstrapOpts two = {.replicates = B, .seed = 1000 + (uint64_t)sim};
        LdsBootstrapOpts one = two;
        one.targets_only = 1;
        LdsInterval c2, c1;
        JtError err;
        cr_assert_eq(lds_bootstrap(P, Y, K, N, &two, &c2, NULL, &err), JT_OK);
        cr_assert_eq(lds_bootstrap(P, Y, K, N, &one, &c1, NULL, &err), JT_OK);
        cover2 += c2.lo <= truth && truth <= c2.hi;
        cover1 += c1.lo <= truth && truth <= c1.hi;
        width2 += (c2.hi - c2.lo) / SIMS;
        width1 += (c1.hi - c1.lo) / SIMS;
        mean_est += c2.estimate / SIMS;
    }
    fprintf(stderr,
            "coverage simulation (K %d, N %d, w %.1f, r %.1f, true LDS %.4f, mean estimate %.4f):"
            " subsets+targets covers %d/%d (mean width %.3f), targets only %d/%d (width %.3f)\n",
            K, N, w, r, truth, mean_est, cover2, SIMS, width2, cover1, SIMS, width1);
    /* The estimator is unbiased for `truth`: the mean of 100 estimates is within 3 of its
     * standard errors (sd of one estimate about 0.09 here, so 0.03 is ~3.3 sd of the mean). */
    cr_expect(fabs(mean_est - truth) < 0.03, "mean estimate %.4f, truth %.4f", mean_est, truth);
    /* Nominal 95%: with 100 simulations the count has sd ~2.2; the two-way bootstrap is slightly
     * conservative, so 88 is a loose floor. */
    cr_expect(cover2 >= 88, "two-way bootstrap covered the true LDS %d/%d times", cover2, SIMS);
    /* With the subset effect shared by all targets (w = 0.8) the target-only interval is several
     * times too narrow and misses most of the time. */
    cr_expect(width2 > 2.0 * width1, "widths: two-way %.4f, target-only %.4f", width2, width1);
    cr_expect(cover1 <= 70, "target-only bootstrap covered %d/%d times", cover1, SIMS);
    free(P);
    free(Y);
}

/* mask (K, n) with about half the entries 1; scores (n, N) normal; truth = mask @ scores + noise.
 */
static void make_problem(uint8_t *mask, float *scores, double *truth, int K, int n, int N,
                         double noise) {
    uint64_t sm = rng_stream(RNG_TAG_TEST, 500, 0);
    for (size_t i = 0; i < (size_t)K * n; i++)
        mask[i] = rng_uniform(1234, sm, i) < 0.5f;
    rng_fill_normal(scores, (size_t)n * N, 1234, rng_stream(RNG_TAG_TEST, 500, 1), 0);
    lds_predict(mask, scores, K, n, N, truth);
    double *z = malloc((size_t)K * N * sizeof *z);
    fill_normal_d(z, (size_t)K * N, 500, 2);
    for (size_t i = 0; i < (size_t)K * N; i++)
        truth[i] += noise * z[i];
    free(z);
}

Test(stats, permuted_control_is_near_zero) {
    enum { K = 60, n = 200, N = 20 };
    uint8_t *mask = malloc((size_t)K * n);
    float *scores = malloc(sizeof(float) * n * N);
    double *Y = malloc(sizeof(double) * K * N), *P = malloc(sizeof(double) * K * N);
    make_problem(mask, scores, Y, K, n, N, 2.0);
    LdsBootstrapOpts o = {.replicates = 300, .seed = 5};
    LdsInterval real, perm;
    JtError err;
    lds_predict(mask, scores, K, n, N, P);
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &real, NULL, &err), JT_OK);
    cr_assert_eq(lds_permuted_control(mask, scores, Y, K, n, N, 77, &o, &perm, &err), JT_OK);
    fprintf(stderr, "permuted control: real LDS %.4f [%.4f, %.4f], permuted %.4f [%.4f, %.4f]\n",
            real.estimate, real.lo, real.hi, perm.estimate, perm.lo, perm.hi);
    /* The predictions explain most of the truth (per-subset sd ~ sqrt(100) = 10 vs noise 2). */
    cr_expect(real.estimate > 0.8, "real LDS %.4f", real.estimate);
    /* Permuted rows: each target's population correlation is sum_i s_i s_perm(i) / sum s_i^2,
     * about N(0, 1/n) (sd 0.07), plus sampling noise 1/sqrt(K) (0.13), averaged over 20 targets;
     * 0.1 is several standard deviations of the mean. */
    cr_expect(fabs(perm.estimate) < 0.1, "permuted LDS %.4f", perm.estimate);
    cr_expect(perm.lo <= 0.0 && 0.0 <= perm.hi, "permuted interval [%.4f, %.4f] misses 0", perm.lo,
              perm.hi);

    /* The control means what stats.h says: rows of scores shuffled with rng_permutation on
     * (RNG_TAG_SUBSET, 0, LDS_KEY_PERMUTE). */
    uint32_t *pi = malloc(sizeof(uint32_t) * n);
    rng_permutation(pi, n, 77, rng_stream(RNG_TAG_SUBSET, 0, LDS_KEY_PERMUTE));
    float *ps = malloc(sizeof(float) * n * N);
    for (int i = 0; i < n; i++)
        memcpy(ps + (size_t)i * N, scores + (size_t)pi[i] * N, sizeof(float) * N);
    lds_predict(mask, ps, K, n, N, P);
    LdsInterval expl;
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &expl, NULL, &err), JT_OK);
    /* Same sums added in another order: equal up to rounding, and the ranks do not move. */
    cr_expect(fabs(expl.estimate - perm.estimate) < 1e-12 && fabs(expl.lo - perm.lo) < 1e-12 &&
              fabs(expl.hi - perm.hi) < 1e-12);
    free(pi);
    free(ps);
    free(mask);
    free(scores);
    free(Y);
    free(P);
}

Test(stats, paired_difference) {
    enum { K = 60, n = 200, N = 20, B = 300 };
    uint8_t *mask = malloc((size_t)K * n);
    float *scores = malloc(sizeof(float) * n * N);
    double *Y = malloc(sizeof(double) * K * N), *Pa = malloc(sizeof(double) * K * N);
    double *Pb = malloc(sizeof(double) * K * N);
    make_problem(mask, scores, Y, K, n, N, 2.0);
    lds_predict(mask, scores, K, n, N, Pa);
    /* Method b: a's predictions plus noise, so it is worse on every subset sample. */
    double *z = malloc(sizeof(double) * K * N);
    fill_normal_d(z, (size_t)K * N, 600, 0);
    for (size_t i = 0; i < (size_t)K * N; i++)
        Pb[i] = Pa[i] + 10.0 * z[i];
    LdsBootstrapOpts o = {.replicates = B, .seed = 3};
    LdsInterval d, a, b;
    JtError err;
    double ra[B], rb[B], rd[B];

    cr_assert_eq(lds_bootstrap_diff(Pa, Pa, Y, K, N, &o, &d, rd, &err), JT_OK);
    /* A method against itself: every replicate's difference is 0 exactly. */
    cr_expect_eq(d.estimate, 0.0);
    cr_expect_eq(d.lo, 0.0);
    cr_expect_eq(d.hi, 0.0);
    cr_expect_eq(d.se, 0.0);

    cr_assert_eq(lds_bootstrap_diff(Pa, Pb, Y, K, N, &o, &d, rd, &err), JT_OK);
    cr_assert_eq(lds_bootstrap(Pa, Y, K, N, &o, &a, ra, &err), JT_OK);
    cr_assert_eq(lds_bootstrap(Pb, Y, K, N, &o, &b, rb, &err), JT_OK);
    fprintf(stderr,
            "paired: LDS a %.4f [%.4f, %.4f], b %.4f [%.4f, %.4f], a - b %.4f [%.4f, %.4f]\n",
            a.estimate, a.lo, a.hi, b.estimate, b.lo, b.hi, d.estimate, d.lo, d.hi);
    /* Paired: replicate b of the difference is the difference of the methods' replicates (same
     * resamples), up to the order of additions. */
    double dd[B];
    for (int i = 0; i < B; i++)
        dd[i] = ra[i] - rb[i];
    expect_close_d("paired replicates", rd, dd, B, 1e-14, 0.0);
    cr_expect(fabs(d.estimate - (a.estimate - b.estimate)) < 1e-14);
    /* The shared subset luck cancels: the paired interval is narrower than the unpaired sum of
     * half-widths would suggest, and it excludes 0 for a clearly worse method b. */
    cr_expect(d.lo > 0.0, "a - b interval [%.4f, %.4f] should be above 0", d.lo, d.hi);
    cr_expect(d.se < sqrt(a.se * a.se + b.se * b.se), "paired se %.4f not below unpaired %.4f",
              d.se, sqrt(a.se * a.se + b.se * b.se));
    free(mask);
    free(scores);
    free(Y);
    free(Pa);
    free(Pb);
    free(z);
}

Test(stats, identical_with_one_and_two_threads) {
#ifdef _OPENMP
    /* Large enough that every loop crosses stats.c's threshold for going parallel. */
    enum { K = 256, n = 64, N = 256, B = 100 };
    uint8_t *mask = malloc((size_t)K * n);
    float *scores = malloc(sizeof(float) * n * N);
    double *Y = malloc(sizeof(double) * K * N), *Q = malloc(sizeof(double) * K * N);
    double *P[2], *pt[2], *reps[2], *drep[2];
    LdsInterval ci[2], di[2], pc[2];
    make_problem(mask, scores, Y, K, n, N, 6.0);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        P[t] = malloc(sizeof(double) * K * N);
        pt[t] = malloc(sizeof(double) * N);
        reps[t] = malloc(sizeof(double) * B);
        drep[t] = malloc(sizeof(double) * B);
        omp_set_num_threads(t + 1);
        LdsBootstrapOpts o = {.replicates = B, .seed = 42};
        JtError err;
        lds_predict(mask, scores, K, n, N, P[t]);
        for (size_t i = 0; i < (size_t)K * N; i++)
            Q[i] = round(P[t][i]); /* a second method, with ties */
        lds_per_target(P[t], Y, K, N, pt[t]);
        cr_assert_eq(lds_bootstrap(P[t], Y, K, N, &o, &ci[t], reps[t], &err), JT_OK);
        cr_assert_eq(lds_bootstrap_diff(P[t], Q, Y, K, N, &o, &di[t], drep[t], &err), JT_OK);
        cr_assert_eq(lds_permuted_control(mask, scores, Y, K, n, N, 9, &o, &pc[t], &err), JT_OK);
    }
    omp_set_num_threads(saved);
    /* Bit for bit: every item is keyed by its index and computed start to finish by one thread. */
    cr_expect(memcmp(P[0], P[1], sizeof(double) * K * N) == 0, "predictions differ");
    cr_expect(memcmp(pt[0], pt[1], sizeof(double) * N) == 0, "per-target LDS differs");
    cr_expect(memcmp(reps[0], reps[1], sizeof(double) * B) == 0, "replicates differ");
    cr_expect(memcmp(drep[0], drep[1], sizeof(double) * B) == 0, "paired replicates differ");
    cr_expect(memcmp(&ci[0], &ci[1], sizeof ci[0]) == 0, "interval differs");
    cr_expect(memcmp(&di[0], &di[1], sizeof di[0]) == 0, "paired interval differs");
    cr_expect(memcmp(&pc[0], &pc[1], sizeof pc[0]) == 0, "permuted control differs");
    for (int t = 0; t < 2; t++) {
        free(P[t]);
        free(pt[t]);
        free(reps[t]);
        free(drep[t]);
    }
    free(mask);
    free(scores);
    free(Y);
    free(Q);
#else
    cr_skip_test("built without OpenMP");
#endif
}

Test(stats, deterministic_given_seed) {
    enum { K = 20, N = 10, B = 100 };
    double P[K * N], Y[K * N], r1[B], r2[B], r3[B];
    simulate(P, Y, K, N, 0.5, 0.5, 7);
    LdsBootstrapOpts o = {.replicates = B, .seed = 1};
    LdsInterval c;
    JtError err;
    lds_bootstrap(P, Y, K, N, &o, &c, r1, &err);
    lds_bootstrap(P, Y, K, N, &o, &c, r2, &err);
    o.seed = 2;
    lds_bootstrap(P, Y, K, N, &o, &c, r3, &err);
    cr_expect(memcmp(r1, r2, sizeof r1) == 0, "same seed, different replicates");
    cr_expect(memcmp(r1, r3, sizeof r1) != 0, "different seeds, same replicates");
}

Test(stats, undefined_targets_and_bad_arguments) {
    enum { K = 6, N = 3 };
    double P[K * N], Y[K * N];
    for (int i = 0; i < K * N; i++) {
        P[i] = 1.0; /* every prediction constant: every target NaN */
        Y[i] = i;
    }
    LdsMean m = lds_compute(P, Y, K, N, NULL);
    cr_expect(isnan(m.mean));
    cr_expect_eq(m.n_skipped, N);
    cr_expect_eq(m.n_used, 0);
    LdsBootstrapOpts o = {.replicates = 50, .seed = 1};
    LdsInterval ci;
    JtError err = {{0}};
    cr_assert_eq(lds_bootstrap(P, Y, K, N, &o, &ci, NULL, &err), JT_OK);
    cr_expect(isnan(ci.estimate) && isnan(ci.lo) && isnan(ci.hi));
    cr_expect_eq(ci.n_undefined, 50);

    cr_expect_eq(lds_bootstrap(P, Y, 1, N, &o, &ci, NULL, &err), JT_ERR);
    cr_expect(strstr(err.msg, "K = 1") != NULL, "message: %s", err.msg);
    cr_expect_eq(lds_bootstrap(P, Y, K, 0, &o, &ci, NULL, &err), JT_ERR);
    cr_expect(strstr(err.msg, "N = 0") != NULL, "message: %s", err.msg);
    o.replicates = 1;
    cr_expect_eq(lds_bootstrap(P, Y, K, N, &o, &ci, NULL, &err), JT_ERR);
    cr_expect(strstr(err.msg, "replicates") != NULL, "message: %s", err.msg);
    o.replicates = 10;
    o.level = 1.5;
    cr_expect_eq(lds_bootstrap_diff(P, P, Y, K, N, &o, &ci, NULL, &err), JT_ERR);
    cr_expect(strstr(err.msg, "level") != NULL, "message: %s", err.msg);
    uint8_t mask[K] = {0};
    float sc[N] = {0};
    cr_expect_eq(lds_permuted_control(mask, sc, Y, K, 0, N, 1, NULL, &ci, &err), JT_ERR);
    cr_expect(strstr(err.msg, "training row") != NULL, "message: %s", err.msg);
    /* Defaults: opts NULL gives 1000 replicates at 95%. */
    for (int i = 0; i < K * N; i++)
        P[i] = (i * 7) % 11;
    cr_assert_eq(lds_bootstrap(P, Y, K, N, NULL, &ci, NULL, &err), JT_OK);
    cr_expect_eq(ci.n_replicates, LDS_DEFAULT_REPLICATES);
}
