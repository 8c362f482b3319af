/* score.h: `jtrak score`: attribution scores of generated samples (targets, from a trajectory file)
 * or of real images (targets from a dataset, e.g. held-out test images: the "val" targets of the
 * D-TRAK protocol, landscape.md 0) against the training set of a feature store, per sampling step
 * (method.md 1.3, 2.1):
 *   journey  x̂_0 of step t re-noised to level t with R draws, with the store's output function:
 *            the denoising loss is Journey-TRAK as published (default), the squared norm is
 *            Journey-TRAK with D-TRAK's output
 *   trak     the final sample, denoising loss at R random timesteps (not step-specific)
 *   dtrak    the final sample, D-TRAK's squared-norm output at R random timesteps (needs a store
 *            featurized with the same output function)
 *   pixel    cosine similarity between x̂_0 of step t and each training image (no gradients)
 * Real targets have no trajectory: only the final-image methods take them (trak, dtrak, and pixel
 * on the image itself); journey is refused.
 * Target gradients are projected with each model's own matrix; tau_t = (1/M) sum_m X_m A_m Gamma_m^T.
 * Training rows are scored in tiles, so memory is bounded whatever n; the top-k proponents
 * (largest scores) and opponents (smallest) are kept without the dense matrix.
 *
 * Output folder: scores_t<t>.npy (n, N) float32 per step (scores_final.npy for trak/dtrak) unless
 * top-k only, topk.json, manifest.json (what the scores were derived from: the trajectory, or for
 * real targets "target_set" with the images' dataset description and fingerprint). */
#ifndef JTRAK_SCORE_H
#define JTRAK_SCORE_H

#include "core/common.h"
#include "data/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* The largest --topk (a stated limit: report keeps topk entries per target, step and side). */
#define SCORE_MAX_TOPK 100000

typedef enum { METHOD_JOURNEY = 0, METHOD_TRAK, METHOD_DTRAK, METHOD_PIXEL } ScoreMethod;

const char *score_method_name(ScoreMethod m);
int score_method_parse(const char *name, ScoreMethod *m);

typedef struct {
    const char *store_dir;  /* required except for pixel */
    const char *traj_path;  /* generated targets; or */
    const DatasetSpec *target_data; /* real targets, fitted to the training images' geometry */
    const char *out_dir;
    ScoreMethod method;
    const char *steps;      /* "all", "900,500,100", "0:1000:100" (start:stop:stride) */
    const char *targets;    /* "all" or a list of sample indices (rows of the real target set) */
    int R;                  /* draws per target (default 20) */
    int topk;               /* default 10, at most SCORE_MAX_TOPK */
    int topk_only;          /* no dense score files */
    size_t tile_rows;       /* default 4096 */
    int batch;              /* targets per gradient batch (default 16) */
    int ensemble;           /* use the store's first `ensemble` models (0 = all) */
    uint64_t seed;          /* target draw seed */
    int quiet;
} ScoreOptions;

void score_options_default(ScoreOptions *o);

/* data: the training set (for pixel without a store, it is required; with a store it is loaded
 * from the store's spec when NULL). */
int score_run(const ScoreOptions *opt, const Dataset *data, JtError *err);

#endif
