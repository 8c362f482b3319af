/* lds_internal.h: what lds.c (subsets, subset models, ground truths) shares with lds_eval.c (the
 * score folders against the ground truths: LDS, permuted control, class baseline, noise ceiling,
 * lds.json and the plots). */
#ifndef JTRAK_LDS_INTERNAL_H
#define JTRAK_LDS_INTERNAL_H

#include "attrib/targets.h"
#include "diffusion/trajectory.h"
#include "eval/lds.h"
#include "eval/model_record.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* Everything lds derives from: the full model, its recipe and data, the targets. */
typedef struct {
    ModelRecord mr;
    Trajectory tr;      /* generated targets */
    int *kidx, n_steps; /* ground-truth steps: indices into tr */
    uint8_t *mask;      /* (K, n) */
    int have_held;      /* held-out real images given */
    Targets held;
} LdsInputs;

/* Measures the ground truth of the model in model_dir (in->mr gives the schedule and geometry):
 * gt (n_steps + 1, tr.n) for the generated targets, or (1, held.n) for the held-out images, each
 * target with its own class on a class-conditional model (denoiser_loss, forward only). */
int lds_ground_truth(const LdsOptions *o, const LdsInputs *in, const char *model_dir, int heldout,
                     double *gt, JtError *err);

/* The ground truth of subset model (k, r): generated targets (n_steps + 1, tr.n), or held-out
 * images (1, held.n). */
int lds_read_gt(const LdsOptions *o, const LdsInputs *in, int heldout, int k, int r, double *gt,
                JtError *err);

/* Checks that every score folder belongs to this run (before hours of training, and again when
 * evaluating): the error names the folder and what differs. */
int lds_check_score_folders(const LdsOptions *o, const LdsInputs *in, JtError *err);

/* Evaluates every score folder (and the class baseline) against the ground truths: results gets
 * "noise_ceiling" and "lds"; the table goes to stdout. */
int lds_evaluate_all(const LdsOptions *o, const LdsInputs *in, cJSON *results, JtError *err);

/* lds.png (per step) and lds-dtrak.png (the D-TRAK protocol), from results. */
int lds_write_plots(const LdsOptions *o, const LdsInputs *in, const cJSON *results, JtError *err);

#endif
