"""make_stats_fixtures.py: writes the fixtures that tests/test_stats.c compares src/eval/stats.c
against: scipy.stats.rankdata / scipy.stats.spearmanr on known inputs (ties, constant vectors,
NaN, n = 1 and 2, signed zeros, infinities, extreme magnitudes), the LDS per target of a small
(K, N) problem, the linear-datamodel predictions mask @ scores, and resampled LDS means on
explicit bootstrap index sets with numpy.percentile of them (method.md 3.1; issue 5).

Files (tests/fixtures/stats/, float64 '<f8' unless said):
  sp_index.npy        int64 (C, 2): offset and length of case c in the flat arrays
  sp_x.npy, sp_y.npy  (sum of lengths,) the inputs of every case, concatenated
  sp_rank_x.npy       (sum of lengths,) scipy.stats.rankdata(x) of each case (NaN where x has NaN)
  sp_rho.npy          (C,) scipy.stats.spearmanr(x, y).statistic (NaN: constant side, NaN, n < 2)
  lds_preds.npy, lds_truth.npy   (K, N) with ties and one constant column in each
  lds_per_target.npy  (N,) spearmanr of each column pair
  lds_mask.npy        uint8 '|u1' (K, n) 0/1;  lds_scores.npy float32 '<f4' (n, N)
  lds_predict.npy     (K, N) mask @ scores in float64
  boot_subsets.npy    int64 (R, K), boot_targets.npy int64 (R, N): explicit resamples
  boot_means.npy      (R,) mean over the drawn targets of spearmanr over the drawn subsets
                      (NaN targets skipped), on lds_preds / lds_truth
  boot_percentiles.npy (3,) numpy.percentile(boot_means, [2.5, 50, 97.5]) (default "linear")

Run: /work/venv-ref/bin/python ref/make_stats_fixtures.py [--out tests/fixtures/stats]
(needs numpy and scipy; `pip install scipy` into the venv). Deterministic: fixed numpy seeds.
Prints the scipy version and a summary line per file group on stdout.
"""

import argparse
import os
import warnings

import numpy as np
import scipy
from scipy import stats


def rho(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning: scipy returns NaN, as we want
        return float(stats.spearmanr(x, y).statistic)


def ranks(x):
    return stats.rankdata(x, method="average", nan_policy="propagate").astype(np.float64)


def spearman_cases(rng):
    c = []
    c.append(([1.0, 2.0], [3.0, 5.0]))                              # n = 2
    c.append(([1.0, 2.0], [5.0, 3.0]))                              # n = 2, reversed
    c.append(([1.0], [2.0]))                                         # n = 1: NaN
    c.append(([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]))                     # hand-checked: 0.8207826816681233
    c.append(([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]))                     # no ties: 1 - 6*4/120 = 0.8
    c.append(([3, 3, 3, 3], [1, 2, 3, 4]))                           # x constant: NaN
    c.append(([1, 2, 3, 4], [7, 7, 7, 7]))                           # y constant: NaN
    c.append(([2, 2, 2], [5, 5, 5]))                                 # both constant: NaN
    c.append(([1, 2, np.nan, 4], [1, 2, 3, 4]))                      # NaN: NaN
    c.append(([0.0, -0.0, 1.0, -1.0, 0.0], [1, 2, 3, 4, 5]))         # signed zeros tie
    c.append(([-np.inf, 0, np.inf, 1, -1, np.inf], [1, 2, 3, 4, 5, 6]))  # infinities, tie of inf
    c.append(([1e-300, 2e-300, 3e-300, 1e300, -1e300], [5, 4, 3, 2, 1]))  # extreme magnitudes
    c.append((np.arange(20.0), np.exp(np.arange(20.0) / 3)))        # monotone: exactly 1
    c.append((np.arange(20.0), -np.arange(20.0) ** 3))              # antitone: exactly -1
    c.append(([1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]))              # tied pairs: -1
    c.append(([1, 1, 1, 2], [1, 2, 3, 4]))                           # near-constant x
    # random cases: continuous, heavy ties, long
    for n, levels in ((7, 0), (10, 3), (50, 0), (200, 5), (1000, 0), (3000, 40), (3000, 2)):
        x = rng.standard_normal(n)
        y = 0.5 * x + rng.standard_normal(n)
        if levels:
            x = np.floor(x * levels / 2)
            y = np.floor(y * levels / 2)
        c.append((x, y))
    # float32-valued data (scores are float32 in the store), a tiny correlation
    x = rng.standard_normal(500).astype(np.float32).astype(np.float64)
    y = rng.standard_normal(500).astype(np.float32).astype(np.float64)
    c.append((x, y))
    return [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in c]


def write_spearman(out, rng):
    cases = spearman_cases(rng)
    index, xs, ys, rks, rhos = [], [], [], [], []
    off = 0
    for x, y in cases:
        assert x.shape == y.shape
        index.append((off, len(x)))
        off += len(x)
        xs.append(x)
        ys.append(y)
        rks.append(ranks(x))
        rhos.append(rho(x, y))
    np.save(os.path.join(out, "sp_index.npy"), np.asarray(index, np.int64))
    np.save(os.path.join(out, "sp_x.npy"), np.concatenate(xs))
    np.save(os.path.join(out, "sp_y.npy"), np.concatenate(ys))
    np.save(os.path.join(out, "sp_rank_x.npy"), np.concatenate(rks))
    np.save(os.path.join(out, "sp_rho.npy"), np.asarray(rhos, np.float64))
    print(f"spearman: {len(cases)} cases, {off} values, {int(np.isnan(rhos).sum())} NaN results")
    print(f"  hand-checked case 3: scipy {rhos[3]!r}")


def write_lds(out, rng):
    K, N, n = 24, 9, 40
    mask = (rng.random((K, n)) < 0.5).astype(np.uint8)
    scores = rng.standard_normal((n, N)).astype(np.float32)
    pred = mask.astype(np.float64) @ scores.astype(np.float64)
    np.save(os.path.join(out, "lds_mask.npy"), mask)
    np.save(os.path.join(out, "lds_scores.npy"), scores)
    np.save(os.path.join(out, "lds_predict.npy"), pred)

    preds = np.round(pred, 1)  # ties in the predictions
    truth = np.round(0.6 * preds + rng.standard_normal((K, N)), 0)  # heavy ties in the truth
    preds[:, 3] = 2.5  # a constant prediction column: NaN target
    truth[:, 7] = -1.0  # a constant truth column: NaN target
    per = np.array([rho(preds[:, j], truth[:, j]) for j in range(N)])
    np.save(os.path.join(out, "lds_preds.npy"), preds)
    np.save(os.path.join(out, "lds_truth.npy"), truth)
    np.save(os.path.join(out, "lds_per_target.npy"), per)
    print(f"lds: K {K} N {N}, per-target {np.array2string(per, precision=4)}, "
          f"mean {np.nanmean(per):.6f}")

    R = 40
    sub = rng.integers(0, K, size=(R, K)).astype(np.int64)
    tgt = rng.integers(0, N, size=(R, N)).astype(np.int64)
    means = []
    for r in range(R):
        P, Y = preds[sub[r]], truth[sub[r]]
        v = [rho(P[:, j], Y[:, j]) for j in tgt[r]]
        v = [a for a in v if not np.isnan(a)]
        means.append(np.mean(v) if v else np.nan)
    means = np.asarray(means, np.float64)
    np.save(os.path.join(out, "boot_subsets.npy"), sub)
    np.save(os.path.join(out, "boot_targets.npy"), tgt)
    np.save(os.path.join(out, "boot_means.npy"), means)
    pct = np.percentile(means, [2.5, 50, 97.5])
    np.save(os.path.join(out, "boot_percentiles.npy"), pct)
    print(f"bootstrap: {R} explicit resamples, percentiles {pct}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "stats"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}")
    write_spearman(a.out, np.random.default_rng(20240501))
    write_lds(a.out, np.random.default_rng(20240502))


if __name__ == "__main__":
    main()
