/* lds.h: `jtrak lds`, the linear datamodeling score built in (method.md 3.1, landscape.md 0):
 *  1. K random subsets of the full model's training set (fraction alpha, seeded, saved);
 *  2. one model per subset (and per extra seed) trained with the full model's recipe: by default
 *     with the full model's seed, so every subset model shares the initialisation and the stream of
 *     timesteps and noise (common random numbers keyed by seed and step) and the data is the only
 *     thing that differs; finished models are never retrained;
 *  3. the ground truth on each model: per step t (Journey-TRAK), y = -mean over R_eval draws of the
 *     denoising loss of the full model's x̂_0 at step t re-noised to level t; and the D-TRAK
 *     protocol, y = -mean loss of the final sample over a grid of timesteps; the same draws for
 *     every model; with held-out real images (the D-TRAK protocol's "val" targets), the same
 *     D-TRAK-protocol ground truth of each of them on each model (added to a finished folder
 *     without retraining anything);
 *  4. the LDS of each given score folder (folders of generated targets against the generated
 *     ground truths, folders of real targets against the held-out one, which must be the same
 *     images): the mean over targets of the Spearman correlation across
 *     subsets between the subset's summed scores and the ground truth, with a bootstrap interval
 *     resampling subsets and targets together, a permuted-scores control, and the noise ceiling
 *     measured on subsets trained twice with different seeds.
 * Output folder: manifest.json, masks.npy (K, n) uint8, models/s<k>_r<r>/, gt/s<k>_r<r>.npy
 * ((n_steps + 1, N) float64: one row per step, then the D-TRAK-protocol row), with held-out images
 * gt-heldout/manifest.json (which images) and gt-heldout/s<k>_r<r>.npy ((1, N_heldout) float64),
 * lds.json, lds.png (LDS against the step for every method, with the noise ceiling), lds-dtrak.png
 * (the D-TRAK-protocol LDS: generated targets and held-out images). The held-out set is not part
 * of manifest.json, so adding one to a finished folder keeps its subsets and models.
 * Under mpirun (core/comm.h) the subset models are shared among the processes: model q (in the
 * order subsets x replicas, then the ceiling replicas) is trained and measured by rank q % size in
 * every call, so a stopped run resumes and a finished model is never retrained; rank 0 creates or
 * checks the folder before the others check it, and evaluates and writes lds.json and the plots
 * once every process has finished. The files are the same as one process writes. */
#ifndef JTRAK_LDS_H
#define JTRAK_LDS_H

#include "core/common.h"
#include "data/dataset.h"

#include <stdint.h>

typedef struct {
    const char *model_dir;  /* the full model: its training.json gives the recipe and the data */
    const char *traj_path;  /* the targets: samples of the full model */
    const char *out_dir;
    int K;                  /* subsets (default 64) */
    double alpha;           /* subset fraction (default 0.5) */
    uint64_t subset_seed;   /* default 0 */
    int crn;                /* 1 (default): subset models use the full model's seed */
    int seeds_per_subset;   /* models per subset whose ground truths are averaged (default 1) */
    int ceiling;            /* subsets also trained with another seed for the noise ceiling (4) */
    const char *steps;      /* ground-truth steps: "900,500,100" or START:STOP:STRIDE */
    int R_eval;             /* draws per target and step (default 100) */
    int grid;               /* timesteps of the D-TRAK-protocol ground truth (default 10) */
    uint64_t gt_seed;       /* default 0 */
    const DatasetSpec *heldout; /* held-out real images (NULL: none), fitted like the training
                                   images to the model */
    const char *const *score_dirs; /* score folders to evaluate (may be none) */
    int n_scores;
    int replicates;         /* bootstrap replicates (default 1000) */
    long stop_after_models; /* train at most this many subset models in this call, per process
                               (0 = all) */
    int quiet;
} LdsOptions;

void lds_options_default(LdsOptions *o);
int lds_run(const LdsOptions *o, JtError *err);

#endif
