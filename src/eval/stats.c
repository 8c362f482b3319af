/* stats.c: average ranks, Spearman (as scipy.stats.spearmanr), and the LDS with its bootstrap
 * intervals and permuted control (see stats.h; method.md 3.1, issue 5).
 *
 * The bootstrap does not materialise the resampled matrices. A replicate is described by
 * multiplicities: c[k] = how many times subset k was drawn, t[j] = how many times target j was
 * drawn. The Spearman correlation of a column over the resampled subsets is the count-weighted
 * Pearson correlation of the original K entries, with ranks computed from the column's sort order
 * (done once): a tie group of total multiplicity m after cum smaller draws holds ranks
 * cum + 1 .. cum + m, average cum + (m + 1) / 2. Duplicated draws of one subset are exactly such a
 * tie. The doubled centred ranks are integers, so the weighted sums are exact (for K * max
 * multiplicity up to ~3e5) and equal, bit for bit, those of ranking the resampled vector itself;
 * a replicate costs O(K) per drawn target instead of O(K log K). The mean over drawn targets
 * weights target j by t[j]. */
#include "eval/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* Below about this many elementary operations a loop runs on the calling thread: a parallel
 * region costs more than it saves on small problems, and on a loaded machine its barrier can stall
 * for a whole scheduler slice. Results do not depend on it (each item is computed by one thread).
 */
#define STATS_PAR_MIN_WORK (1 << 20)

/* ---- rank statistics ------------------------------------------------------------------------ */

void stats_work_init(StatsWork *w, int cap) {
    CHECK(cap >= 0, "stats_work_init: negative capacity %d", cap);
    size_t c = cap > 0 ? (size_t)cap : 1;
    w->cap = cap;
    w->order = xmalloc(c * sizeof *w->order);
    w->tmp = xmalloc(c * sizeof *w->tmp);
    w->rx = xmalloc(c * sizeof *w->rx);
    w->ry = xmalloc(c * sizeof *w->ry);
}

void stats_work_free(StatsWork *w) {
    free(w->order);
    free(w->tmp);
    free(w->rx);
    free(w->ry);
    memset(w, 0, sizeof *w);
}

static int any_nan(const double *x, int n) {
    for (int i = 0; i < n; i++)
        if (isnan(x[i])) return 1;
    return 0;
}

/* order = 0..n-1 sorted by x (no NaN), stable (equal values keep index order): bottom-up merge
 * sort, so the result does not depend on a library qsort. tmp is scratch (n). */
static void sort_order(const double *x, int n, int *order, int *tmp) {
    for (int i = 0; i < n; i++)
        order[i] = i;
    int *src = order, *dst = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n;
            int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                dst[o++] = x[src[b]] < x[src[a]] ? src[b++] : src[a++];
            while (a < mid)
                dst[o++] = src[a++];
            while (b < hi)
                dst[o++] = src[b++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != order) memcpy(order, src, (size_t)n * sizeof *order);
}

/* r2[i] = 2 * (average rank of x[i]) = 2 cum + m + 1 for a tie group of size m after cum smaller
 * values: an integer, held exactly in a double. */
static void twice_ranks(const double *x, int n, const int *order, double *r2) {
    int q = 0;
    while (q < n) {
        int e = q + 1;
        while (e < n && x[order[e]] == x[order[q]])
            e++;
        double v = 2.0 * q + (double)(e - q) + 1.0;
        for (int p = q; p < e; p++)
            r2[order[p]] = v;
        q = e;
    }
}

void stats_rank_average_w(const double *x, int n, double *ranks, StatsWork *w) {
    CHECK(n >= 0 && n <= w->cap, "stats_rank_average: n %d exceeds the work capacity %d", n,
          w->cap);
    if (any_nan(x, n)) {
        for (int i = 0; i < n; i++)
            ranks[i] = NAN;
        return;
    }
    sort_order(x, n, w->order, w->tmp);
    twice_ranks(x, n, w->order, ranks);
    for (int i = 0; i < n; i++)
        ranks[i] *= 0.5; /* exact: a half-integer */
}

void stats_rank_average(const double *x, int n, double *ranks) {
    StatsWork w;
    stats_work_init(&w, n);
    stats_rank_average_w(x, n, ranks, &w);
    stats_work_free(&w);
}

/* The correlation from centred sums; NaN when a side has no spread. sqrt of the product (not the
 * product of square roots) so that sxy == sxx == syy gives exactly 1: sqrt(fl(s * s)) == s in
 * binary floating point with round-to-nearest. */
static double corr_from_sums(double sxy, double sxx, double syy) {
    if (!(sxx > 0.0) || !(syy > 0.0)) return NAN;
    double r = sxy / sqrt(sxx * syy);
    if (r > 1.0) r = 1.0;
    if (r < -1.0) r = -1.0;
    return r;
}

double stats_pearson(const double *x, const double *y, int n) {
    if (n < 2 || any_nan(x, n) || any_nan(y, n)) return NAN;
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    return corr_from_sums(sxy, sxx, syy);
}

double stats_spearman_w(const double *x, const double *y, int n, StatsWork *w) {
    CHECK(n <= w->cap, "stats_spearman: n %d exceeds the work capacity %d", n, w->cap);
    if (n < 2 || any_nan(x, n) || any_nan(y, n)) return NAN;
    sort_order(x, n, w->order, w->tmp);
    twice_ranks(x, n, w->order, w->rx);
    sort_order(y, n, w->order, w->tmp);
    twice_ranks(y, n, w->order, w->ry);
    /* Doubled ranks have mean n + 1; the centred values are integers, so the sums are exact. */
    double c = (double)n + 1.0, sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++) {
        double dx = w->rx[i] - c, dy = w->ry[i] - c;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    return corr_from_sums(sxy, sxx, syy);
}

double stats_spearman(const double *x, const double *y, int n) {
    StatsWork w;
    stats_work_init(&w, n > 0 ? n : 0);
    double r = stats_spearman_w(x, y, n, &w);
    stats_work_free(&w);
    return r;
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

double stats_quantile(double *v, int n, double q) {
    CHECK(q >= 0.0 && q <= 1.0, "stats_quantile: q = %g outside [0, 1]", q);
    int m = 0; /* NaN to the end, keeping the finite (and infinite) values in front */
    for (int i = 0; i < n; i++) {
        if (!isnan(v[i])) {
            double t = v[m];
            v[m++] = v[i];
            v[i] = t;
        }
    }
    if (m == 0) return NAN;
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    double h = (m - 1) * q;
    int lo = (int)floor(h);
    if (lo >= m - 1) return v[m - 1];
    double frac = h - lo;
    return v[lo] + frac * (v[lo + 1] - v[lo]);
}

/* ---- linear datamodeling score -------------------------------------------------------------- */

void lds_predict(const uint8_t *mask, const float *scores, int K, int n, int N, double *preds) {
    CHECK(K >= 0 && n >= 0 && N >= 0, "lds_predict: negative size K %d n %d N %d", K, n, N);
#pragma omp parallel for schedule(static) if ((double)K * n * N >= STATS_PAR_MIN_WORK)
    for (int s = 0; s < K; s++) {
        double *row = preds + (size_t)s * N; /* (N) */
        for (int j = 0; j < N; j++)
            row[j] = 0.0;
        const uint8_t *m = mask + (size_t)s * n;
        for (int i = 0; i < n; i++) {
            if (!m[i]) continue;
            const float *sc = scores + (size_t)i * N;
            for (int j = 0; j < N; j++)
                row[j] += (double)sc[j];
        }
    }
}

/* Column j of a (K, N) matrix into col (K). */
static void get_column(const double *M, int K, int N, int j, double *col) {
    for (int k = 0; k < K; k++)
        col[k] = M[(size_t)k * N + j];
}

void lds_per_target(const double *preds, const double *truth, int K, int N, double *out) {
#pragma omp parallel if (16.0 * K * N >= STATS_PAR_MIN_WORK)
    {
        StatsWork w;
        stats_work_init(&w, K);
        double *cp = xmalloc((size_t)(K > 0 ? K : 1) * sizeof *cp);
        double *ct = xmalloc((size_t)(K > 0 ? K : 1) * sizeof *ct);
#pragma omp for schedule(static)
        for (int j = 0; j < N; j++) {
            get_column(preds, K, N, j, cp);
            get_column(truth, K, N, j, ct);
            out[j] = stats_spearman_w(cp, ct, K, &w);
        }
        free(cp);
        free(ct);
        stats_work_free(&w);
    }
}

LdsMean lds_mean(const double *per_target, int N) {
    LdsMean r = {NAN, 0, 0};
    double s = 0.0;
    for (int j = 0; j < N; j++) {
        if (isnan(per_target[j])) {
            r.n_skipped++;
            continue;
        }
        s += per_target[j];
        r.n_used++;
    }
    if (r.n_used > 0) r.mean = s / r.n_used;
    return r;
}

LdsMean lds_compute(const double *preds, const double *truth, int K, int N, double *per_target) {
    double *pt = per_target ? per_target : xmalloc((size_t)(N > 0 ? N : 1) * sizeof *pt);
    lds_per_target(preds, truth, K, N, pt);
    LdsMean r = lds_mean(pt, N);
    if (!per_target) free(pt);
    return r;
}

/* The sort order of every column of a (K, N) matrix, for the bootstrap. */
typedef struct {
    int *order;      /* (N, K): order[j K + q] = the subset of rank q in column j */
    uint8_t *gstart; /* (N, K): 1 where sorted position q starts a new tie group */
    uint8_t *bad; /* (N): 1 if the column holds a NaN (its correlation is NaN in every replicate) */
} ColRanks;

static void colranks_init(ColRanks *cr, const double *M, int K, int N) {
    cr->order = xmalloc((size_t)K * N * sizeof *cr->order);
    cr->gstart = xmalloc((size_t)K * N);
    cr->bad = xmalloc((size_t)N);
#pragma omp parallel if (16.0 * K * N >= STATS_PAR_MIN_WORK)
    {
        double *col = xmalloc((size_t)K * sizeof *col);
        int *tmp = xmalloc((size_t)K * sizeof *tmp);
#pragma omp for schedule(static)
        for (int j = 0; j < N; j++) {
            get_column(M, K, N, j, col);
            int *ord = cr->order + (size_t)j * K;
            uint8_t *g = cr->gstart + (size_t)j * K;
            cr->bad[j] = (uint8_t)any_nan(col, K);
            if (cr->bad[j]) {
                for (int q = 0; q < K; q++) {
                    ord[q] = q;
                    g[q] = 1;
                }
                continue;
            }
            sort_order(col, K, ord, tmp);
            for (int q = 0; q < K; q++)
                g[q] = (uint8_t)(q == 0 || col[ord[q]] != col[ord[q - 1]]);
        }
        free(col);
        free(tmp);
    }
}

static void colranks_free(ColRanks *cr) {
    free(cr->order);
    free(cr->gstart);
    free(cr->bad);
}

/* r2[k] = twice the average rank of subset k in column j when subset k is drawn c[k] times. */
static void twice_ranks_counts(const ColRanks *cr, int K, int j, const int *c, double *r2) {
    const int *ord = cr->order + (size_t)j * K;
    const uint8_t *g = cr->gstart + (size_t)j * K;
    double cum = 0.0;
    int q = 0;
    while (q < K) {
        int e = q + 1;
        while (e < K && !g[e])
            e++;
        double m = 0.0;
        for (int p = q; p < e; p++)
            m += c[ord[p]];
        double v = 2.0 * cum + m + 1.0;
        for (int p = q; p < e; p++)
            r2[ord[p]] = v;
        cum += m;
        q = e;
    }
}

/* Spearman of column j of (A, Y) over the resample c, given Y's doubled ranks ry; K draws. */
static double spearman_counts(const ColRanks *A, const double *ry, int K, int j, const int *c,
                              double *rx) {
    if (A->bad[j]) return NAN;
    twice_ranks_counts(A, K, j, c, rx);
    double mid = (double)K + 1.0, sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int k = 0; k < K; k++) {
        if (!c[k]) continue;
        double dx = rx[k] - mid, dy = ry[k] - mid, w = c[k];
        sxy += w * dx * dy;
        sxx += w * dx * dx;
        syy += w * dy * dy;
    }
    return corr_from_sums(sxy, sxx, syy);
}

/* One replicate: the mean over drawn targets (weights t) of LDS(A) (B == NULL) or of LDS(A) -
 * LDS(B) over targets where both are defined. NaN if no drawn target is defined. */
static double replicate_stat(const ColRanks *Y, const ColRanks *A, const ColRanks *B, int K, int N,
                             const int *c, const int *t, double *ry, double *rx) {
    double s = 0.0, wsum = 0.0;
    for (int j = 0; j < N; j++) {
        if (!t[j] || Y->bad[j]) continue;
        twice_ranks_counts(Y, K, j, c, ry);
        double ra = spearman_counts(A, ry, K, j, c, rx);
        if (isnan(ra)) continue;
        if (B) {
            double rb = spearman_counts(B, ry, K, j, c, rx);
            if (isnan(rb)) continue;
            ra -= rb;
        }
        s += t[j] * ra;
        wsum += t[j];
    }
    return wsum > 0.0 ? s / wsum : NAN;
}

static int check_opts(const LdsBootstrapOpts *o, int K, int N, int *B, double *level,
                      JtError *err) {
    if (K < 2) return jt_fail(err, "LDS bootstrap: need at least 2 subsets, got K = %d", K);
    if (N < 1) return jt_fail(err, "LDS bootstrap: need at least 1 target, got N = %d", N);
    size_t kn;
    if (!jt_mul_size((size_t)K, (size_t)N, &kn))
        return jt_fail(err, "LDS bootstrap: K %d x N %d overflows", K, N);
    *B = o && o->replicates ? o->replicates : LDS_DEFAULT_REPLICATES;
    *level = o && o->level != 0.0 ? o->level : LDS_DEFAULT_LEVEL;
    if (*B < 2) return jt_fail(err, "LDS bootstrap: need at least 2 replicates, got %d", *B);
    if (!(*level > 0.0 && *level < 1.0))
        return jt_fail(err, "LDS bootstrap: confidence level %g outside (0, 1)", *level);
    return JT_OK;
}

void lds_bootstrap_draw(uint64_t seed, int b, int K, int N, int targets_only, int *subset_idx,
                        int *target_idx) {
    CHECK(K >= 1 && N >= 1 && b >= 0, "lds_bootstrap_draw: bad sizes K %d N %d b %d", K, N, b);
    if (targets_only) {
        for (int k = 0; k < K; k++)
            subset_idx[k] = k;
    } else {
        uint64_t ss = rng_stream(RNG_TAG_SUBSET, (uint64_t)b, LDS_KEY_BOOT_SUBSETS);
        for (int k = 0; k < K; k++)
            subset_idx[k] = (int)rng_randint(seed, ss, (uint64_t)k, (uint32_t)K);
    }
    uint64_t st = rng_stream(RNG_TAG_SUBSET, (uint64_t)b, LDS_KEY_BOOT_TARGETS);
    for (int j = 0; j < N; j++)
        target_idx[j] = (int)rng_randint(seed, st, (uint64_t)j, (uint32_t)N);
}

double lds_resampled_mean(const double *preds, const double *truth, int K, int N,
                          const int *subset_idx, const int *target_idx) {
    StatsWork w;
    stats_work_init(&w, K);
    double *x = xmalloc((size_t)K * sizeof *x), *y = xmalloc((size_t)K * sizeof *y);
    double s = 0.0;
    int used = 0;
    for (int q = 0; q < N; q++) {
        int j = target_idx[q];
        CHECK(j >= 0 && j < N, "lds_resampled_mean: target index %d outside 0..%d", j, N - 1);
        for (int k = 0; k < K; k++) {
            int r = subset_idx[k];
            CHECK(r >= 0 && r < K, "lds_resampled_mean: subset index %d outside 0..%d", r, K - 1);
            x[k] = preds[(size_t)r * N + j];
            y[k] = truth[(size_t)r * N + j];
        }
        double rho = stats_spearman_w(x, y, K, &w);
        if (isnan(rho)) continue;
        s += rho;
        used++;
    }
    free(x);
    free(y);
    stats_work_free(&w);
    return used ? s / used : NAN;
}

/* The bootstrap of the LDS of A (or of A - B): fills out's interval fields and reps (B). */
static void bootstrap_run(const ColRanks *Y, const ColRanks *A, const ColRanks *Bm, int K, int N,
                          int nrep, double level, uint64_t seed, int targets_only, LdsInterval *out,
                          double *reps) {
#pragma omp parallel if (2.0 * nrep * K * N >= STATS_PAR_MIN_WORK)
    {
        int *c = xmalloc((size_t)K * sizeof *c);
        int *t = xmalloc((size_t)N * sizeof *t);
        int *si = xmalloc((size_t)K * sizeof *si);
        int *ti = xmalloc((size_t)N * sizeof *ti);
        double *ry = xmalloc((size_t)K * sizeof *ry);
        double *rx = xmalloc((size_t)K * sizeof *rx);
#pragma omp for schedule(dynamic, 8)
        for (int b = 0; b < nrep; b++) {
            /* Every draw of replicate b is keyed by (seed, b, k or j): independent of threads. */
            lds_bootstrap_draw(seed, b, K, N, targets_only, si, ti);
            memset(c, 0, (size_t)K * sizeof *c);
            memset(t, 0, (size_t)N * sizeof *t);
            for (int k = 0; k < K; k++)
                c[si[k]]++;
            for (int j = 0; j < N; j++)
                t[ti[j]]++;
            reps[b] = replicate_stat(Y, A, Bm, K, N, c, t, ry, rx);
        }
        free(si);
        free(ti);
        free(c);
        free(t);
        free(ry);
        free(rx);
    }
    /* Standard error over the defined replicates (two passes, in replicate order). */
    int m = 0;
    double mean = 0.0;
    for (int b = 0; b < nrep; b++)
        if (!isnan(reps[b])) {
            mean += reps[b];
            m++;
        }
    out->n_replicates = nrep;
    out->n_undefined = nrep - m;
    if (m == 0) {
        out->lo = out->hi = out->se = NAN;
        return;
    }
    mean /= m;
    double ss = 0.0;
    for (int b = 0; b < nrep; b++)
        if (!isnan(reps[b])) ss += (reps[b] - mean) * (reps[b] - mean);
    out->se = m > 1 ? sqrt(ss / (m - 1)) : NAN;
    double *sorted = xmalloc((size_t)nrep * sizeof *sorted);
    memcpy(sorted, reps, (size_t)nrep * sizeof *sorted);
    double alpha = 1.0 - level;
    out->lo = stats_quantile(sorted, nrep, alpha / 2.0);
    out->hi = stats_quantile(sorted, nrep, 1.0 - alpha / 2.0);
    free(sorted);
}

int lds_bootstrap(const double *preds, const double *truth, int K, int N,
                  const LdsBootstrapOpts *opts, LdsInterval *out, double *replicates,
                  JtError *err) {
    int nrep;
    double level;
    if (check_opts(opts, K, N, &nrep, &level, err) != JT_OK) return JT_ERR;
    memset(out, 0, sizeof *out);
    out->estimate = lds_compute(preds, truth, K, N, NULL).mean;
    ColRanks Y, A;
    colranks_init(&Y, truth, K, N);
    colranks_init(&A, preds, K, N);
    double *reps = replicates ? replicates : xmalloc((size_t)nrep * sizeof *reps);
    bootstrap_run(&Y, &A, NULL, K, N, nrep, level, opts ? opts->seed : 0,
                  opts ? opts->targets_only : 0, out, reps);
    if (!replicates) free(reps);
    colranks_free(&Y);
    colranks_free(&A);
    return JT_OK;
}

int lds_bootstrap_diff(const double *preds_a, const double *preds_b, const double *truth, int K,
                       int N, const LdsBootstrapOpts *opts, LdsInterval *out, double *replicates,
                       JtError *err) {
    int nrep;
    double level;
    if (check_opts(opts, K, N, &nrep, &level, err) != JT_OK) return JT_ERR;
    memset(out, 0, sizeof *out);
    /* The estimate on the targets where both methods are defined. */
    double *la = xmalloc((size_t)N * sizeof *la), *lb = xmalloc((size_t)N * sizeof *lb);
    lds_per_target(preds_a, truth, K, N, la);
    lds_per_target(preds_b, truth, K, N, lb);
    double s = 0.0;
    int used = 0;
    for (int j = 0; j < N; j++) {
        if (isnan(la[j]) || isnan(lb[j])) continue;
        s += la[j] - lb[j];
        used++;
    }
    out->estimate = used ? s / used : NAN;
    free(la);
    free(lb);
    ColRanks Y, A, B;
    colranks_init(&Y, truth, K, N);
    colranks_init(&A, preds_a, K, N);
    colranks_init(&B, preds_b, K, N);
    double *reps = replicates ? replicates : xmalloc((size_t)nrep * sizeof *reps);
    bootstrap_run(&Y, &A, &B, K, N, nrep, level, opts ? opts->seed : 0,
                  opts ? opts->targets_only : 0, out, reps);
    if (!replicates) free(reps);
    colranks_free(&Y);
    colranks_free(&A);
    colranks_free(&B);
    return JT_OK;
}

int lds_permuted_control(const uint8_t *mask, const float *scores, const double *truth, int K,
                         int n, int N, uint64_t perm_seed, const LdsBootstrapOpts *opts,
                         LdsInterval *out, JtError *err) {
    if (n < 1) return jt_fail(err, "LDS permuted control: need at least 1 training row, got %d", n);
    if (K < 2 || N < 1)
        return jt_fail(err,
                       "LDS permuted control: need K >= 2 subsets and N >= 1 targets, got "
                       "K = %d, N = %d",
                       K, N);
    /* Row i of the permuted scores is row perm[i] of scores. Permuting the mask's columns instead
     * (mask'[:, perm[i]] = mask[:, i]) gives the same predictions without a copy of the scores:
     * sum_i mask[s, i] scores[perm[i], j] = sum_i' mask'[s, i'] scores[i', j]. */
    uint32_t *perm = xmalloc((size_t)n * sizeof *perm);
    rng_permutation(perm, (uint32_t)n, perm_seed, rng_stream(RNG_TAG_SUBSET, 0, LDS_KEY_PERMUTE));
    uint8_t *pmask = xmalloc((size_t)K * n);
    for (int s = 0; s < K; s++)
        for (int i = 0; i < n; i++)
            pmask[(size_t)s * n + perm[i]] = mask[(size_t)s * n + i];
    free(perm);
    double *preds = xmalloc((size_t)K * N * sizeof *preds);
    lds_predict(pmask, scores, K, n, N, preds);
    free(pmask);
    int rc = lds_bootstrap(preds, truth, K, N, opts, out, NULL, err);
    free(preds);
    return rc;
}
