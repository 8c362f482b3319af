/* stats.h: the statistics of the linear datamodeling score (method.md 3.1; issue 5): average ranks
 * and Spearman's rank correlation as scipy.stats.rankdata / scipy.stats.spearmanr compute them, the
 * LDS (per target and its mean over targets), a bootstrap confidence interval that resamples
 * subsets and targets together, paired intervals for the difference between two methods, and the
 * permuted-scores control.
 *
 * Conventions. Matrices are row-major: a mask (K, n) has one row per subset model, scores (n, N)
 * one row per training example (the layout of attrib/scoremat.h), predictions and ground truth
 * (K, N) one row per subset and one column per target. Everything accumulates in double.
 *
 * Why the bootstrap resamples subsets and targets together: the N per-target Spearman values are
 * all computed on the same K subset models, so the luck of the subset draw is shared by every
 * target. A bootstrap over targets alone treats the N values as independent and misses that
 * shared variance (its interval can be several times too narrow); resampling the K subsets as well
 * puts it back (a two-way "pigeonhole" bootstrap, slightly conservative by construction).
 *
 * Determinism: replicate b draws its K subset indices from rng_randint(seed,
 * rng_stream(RNG_TAG_SUBSET, b, LDS_KEY_BOOT_SUBSETS), k, K) and its N target indices from
 * rng_randint(seed, rng_stream(RNG_TAG_SUBSET, b, LDS_KEY_BOOT_TARGETS), j, N); the permuted
 * control uses rng_permutation(.., rng_stream(RNG_TAG_SUBSET, 0, LDS_KEY_PERMUTE)). The second
 * keys are large constants so these streams never meet the subset-drawing streams (subset id, 0).
 * Replicates run in parallel (OpenMP) but each is computed start to finish by one thread in a
 * fixed order, so every result is bit-identical for any number of threads. */
#ifndef JTRAK_EVAL_STATS_H
#define JTRAK_EVAL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define LDS_KEY_BOOT_SUBSETS 0x4c44532d53554253ull /* "LDS-SUBS" */
#define LDS_KEY_BOOT_TARGETS 0x4c44532d54475453ull /* "LDS-TGTS" */
#define LDS_KEY_PERMUTE 0x4c44532d5045524dull      /* "LDS-PERM" */

#define LDS_DEFAULT_REPLICATES 1000
#define LDS_DEFAULT_LEVEL 0.95

/* ---- rank statistics ------------------------------------------------------------------------ */

/* Scratch for ranking n values (so that loops over many columns allocate once). */
typedef struct {
    int cap;
    int *order, *tmp; /* (cap) */
    double *rx, *ry;  /* (cap) */
} StatsWork;

void stats_work_init(StatsWork *w, int cap);
void stats_work_free(StatsWork *w);

/* ranks[i] = the average rank (1-based) of x[i] among x[0..n-1]: tied values share the mean of the
 * ranks they span, as scipy.stats.rankdata(x, method="average"). If any x is NaN every rank is NaN
 * (rankdata's nan_policy="propagate"). Ranks are half-integers, hence exact. */
void stats_rank_average(const double *x, int n, double *ranks);
void stats_rank_average_w(const double *x, int n, double *ranks, StatsWork *w);

/* Pearson's correlation in double (two passes: means, then centred sums), clipped to [-1, 1]; NaN
 * when n < 2, when either side is constant or when an input is NaN. */
double stats_pearson(const double *x, const double *y, int n);

/* Spearman's rank correlation: Pearson's correlation of the average ranks, as
 * scipy.stats.spearmanr(x, y).statistic: NaN when n < 2, when either side is constant (scipy warns
 * ConstantInputWarning and returns NaN) or when an input is NaN. The centred doubled ranks
 * 2 r - (n + 1) are integers, so the sums are exact for n up to about 3e5; only the final square
 * root and division round. */
double stats_spearman(const double *x, const double *y, int n);
double stats_spearman_w(const double *x, const double *y, int n, StatsWork *w);

/* The q-quantile (0 <= q <= 1) of the n finite values v, numpy.percentile's default "linear"
 * rule (Hyndman-Fan type 7): with v sorted, h = (n - 1) q, v[floor h] + (h - floor h) (v[floor h
 * + 1] - v[floor h]). v is sorted in place; NaN values are moved to the end and ignored. Returns
 * NaN when no value is finite. */
double stats_quantile(double *v, int n, double q);

/* ---- linear datamodeling score -------------------------------------------------------------- */

/* Predictions of the linear datamodel: preds (K, N) = mask (K, n) @ scores (n, N), that is
 * preds[s, j] = sum of the scores of target j over the training examples in subset s. mask entries
 * are 0 or 1 (any non-zero counts as 1). Accumulated in double; parallel over subsets. */
void lds_predict(const uint8_t *mask, const float *scores, int K, int n, int N, double *preds);

/* out[j] (N) = Spearman correlation across the K subsets of preds[:, j] and truth[:, j]; NaN for a
 * target whose predictions or ground truth are constant across the subsets. */
void lds_per_target(const double *preds, const double *truth, int K, int N, double *out);

typedef struct {
    double mean;   /* mean of the finite per-target values (NaN if there is none) */
    int n_used;    /* targets averaged */
    int n_skipped; /* targets skipped because their value is NaN */
} LdsMean;

/* Mean of per-target LDS values (N), skipping NaN targets and counting them. */
LdsMean lds_mean(const double *per_target, int N);
/* lds_per_target followed by lds_mean; per_target (N) may be NULL. */
LdsMean lds_compute(const double *preds, const double *truth, int K, int N, double *per_target);

typedef struct {
    int replicates;   /* B; 0 means LDS_DEFAULT_REPLICATES */
    double level;     /* confidence level; 0 means LDS_DEFAULT_LEVEL */
    uint64_t seed;    /* Philox key of the resampling draws */
    int targets_only; /* 1: resample targets only, keeping the K subsets fixed. Too narrow for
                         LDS (see the top of this file); kept to show exactly that. */
} LdsBootstrapOpts;

typedef struct {
    double estimate;  /* the statistic on the data as given */
    double lo, hi;    /* percentile interval: quantiles (1 -/+ level) / 2 of the replicates */
    double se;        /* bootstrap standard error: standard deviation (ddof 1) of the replicates */
    int n_replicates; /* replicates drawn (B) */
    int n_undefined;  /* replicates whose statistic was NaN (every resampled target constant);
                         left out of lo, hi and se */
} LdsInterval;

/* The draws of bootstrap replicate b (see the top of this file): subset_idx (K) and target_idx (N),
 * each uniform on 0..K-1 / 0..N-1 with replacement. With targets_only the subsets are not drawn:
 * subset_idx[k] = k. Public so that a test or a twin can rebuild any replicate. */
void lds_bootstrap_draw(uint64_t seed, int b, int K, int N, int targets_only, int *subset_idx,
                        int *target_idx);

/* The mean LDS of the resampled problem, computed directly: rows subset_idx (K) and columns
 * target_idx (N) of preds and truth form a (K, N) pair whose lds_compute mean is returned (NaN
 * targets skipped; NaN if none is defined). The slow reference for the bootstrap's replicates. */
double lds_resampled_mean(const double *preds, const double *truth, int K, int N,
                          const int *subset_idx, const int *target_idx);

/* Bootstrap interval of the mean LDS of one method. In replicate b, subsets s_1..s_K and targets
 * t_1..t_N are drawn with replacement (keyed as said at the top); the statistic is the mean, over
 * the N drawn targets (with multiplicity, skipping NaN ones), of the Spearman correlation across
 * the K drawn subsets (tied duplicates get average ranks). replicates (B) may be NULL; if not, it
 * receives every replicate's statistic. Returns JT_ERR with a message for bad arguments. */
int lds_bootstrap(const double *preds, const double *truth, int K, int N,
                  const LdsBootstrapOpts *opts, LdsInterval *out, double *replicates, JtError *err);

/* Paired interval for LDS(a) - LDS(b) on the same ground truth: both methods see the same
 * resamples; a target counts only where both methods' correlations are defined (in the estimate
 * and in each replicate). The interval of a method against itself is exactly [0, 0]. */
int lds_bootstrap_diff(const double *preds_a, const double *preds_b, const double *truth, int K,
                       int N, const LdsBootstrapOpts *opts, LdsInterval *out, double *replicates,
                       JtError *err);

/* The permuted control: training rows of scores are shuffled by a random permutation (seeded with
 * perm_seed on the stream (RNG_TAG_SUBSET, 0, LDS_KEY_PERMUTE)), predictions recomputed with
 * lds_predict, and the LDS and its bootstrap interval (opts) computed as for a method. A sound
 * pipeline gives a value near zero. */
int lds_permuted_control(const uint8_t *mask, const float *scores, const double *truth, int K,
                         int n, int N, uint64_t perm_seed, const LdsBootstrapOpts *opts,
                         LdsInterval *out, JtError *err);

#endif
