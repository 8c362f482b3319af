/* targets.h: where attribution targets come from. Generated targets are the samples of a
 * trajectory file (per-step methods use its x̂_0 at step t, the final-image methods its x_0);
 * real targets are images read through the data layer (e.g. held-out test images, the "val"
 * targets of the D-TRAK protocol, landscape.md 0), fitted like the training images to the model's
 * size and channels, and named by their dataset description and fingerprint. score and lds both
 * take them from here, and record and compare them with the same manifest object. */
#ifndef JTRAK_TARGETS_H
#define JTRAK_TARGETS_H

#include "core/common.h"
#include "data/dataset.h"
#include "diffusion/trajectory.h"

#include <cjson/cJSON.h>

typedef struct {
    int real;      /* 1: dataset images; 0: trajectory samples */
    Trajectory tr; /* real == 0 */
    Dataset data;  /* real == 1 */
    float *images; /* real == 1: (n, C, H, W) in [-1, 1] */
    int n, C, H, W;
} Targets;

int targets_from_trajectory(Targets *t, const char *path, JtError *err);

/* Loads spec with the model's geometry (C, H, W: the training images'); the spec's own size and
 * channels are ignored, its fit and colour options decide how the images get there. A mismatch the
 * fit cannot bridge is an error. opt names the option group in messages ("targets" for
 * --targets-data, --targets-fit, ...: every data-layer hint "--fit" becomes "--targets-fit"). */
int targets_from_data(Targets *t, const DatasetSpec *spec, int C, int H, int W, const char *opt,
                      JtError *err);

void targets_free(Targets *t);

/* The clean image of target `sample`: x̂_0 at trajectory step index k when k >= 0 (trajectory
 * targets only), else the final sample or the real image. (C, H, W) */
const float *targets_image(const Targets *t, int sample, int k);

/* Whether the targets carry class labels: a trajectory of a class-conditional model (its
 * class_labels), or a labelled real target set. */
int targets_labelled(const Targets *t);
/* The class of target `sample` (the trajectory's label, or the real image's dataset label), -1
 * when the targets are unlabelled. */
int targets_label(const Targets *t, int sample);

/* The manifest record of a real target set: {"kind": "images", "spec", "fingerprint", "n"}. */
cJSON *targets_set_json(const Targets *t);

/* Rewrites the data layer's option names in err->msg ("--fit" -> "--<opt>-fit", "--data" ->
 * "--<opt>-data") so that a hint names the option the user actually has. */
void targets_rename_options(JtError *err, const char *opt);

#endif
