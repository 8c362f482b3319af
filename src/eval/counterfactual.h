/* counterfactual.h: `jtrak counterfactual` (method.md 3.2): for chosen targets and a step t,
 * remove k training images (the top-k by tau_t from a score folder, k random ones, or the k
 * nearest to the sample in pixel space), retrain from scratch with the full model's recipe and
 * seed, regenerate with the same sampler noise, both from the stored x_t and from x_T, and measure
 * how far the new sample lands from the original (RMSE in [-1, 1] pixel units; mean and 95%
 * interval over targets). Output folder: models/<target>_<kind>/, counterfactual.json,
 * counterfactual.png (per target: the original, then the regenerations from x_t after removing
 * top-k, random-k and nearest-k). Under mpirun (core/comm.h) the models are shared among the
 * processes (model q = (target q / 3, kind q % 3) by rank q % size) and rank 0 writes the results
 * once every process has finished: the same as one process writes. */
#ifndef JTRAK_COUNTERFACTUAL_H
#define JTRAK_COUNTERFACTUAL_H

#include "core/common.h"

#include <stdint.h>

typedef struct {
    const char *model_dir;  /* the full model (training.json: recipe and data) */
    const char *traj_path;  /* its samples */
    const char *scores_dir; /* a score folder with scores at step t */
    const char *out_dir;
    int step;               /* t */
    int k;                  /* images removed (default 10) */
    const char *targets;    /* "all" or a list of sample indices */
    uint64_t seed;          /* random removal */
    int quiet;
} CounterfactualOptions;

void counterfactual_options_default(CounterfactualOptions *o);
int counterfactual_run(const CounterfactualOptions *o, JtError *err);

#endif
