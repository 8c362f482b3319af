/* artifact.h: what kind of jtrak artifact a folder holds, told by its marker files, so that every
 * command that writes a folder refuses one that holds another kind (architecture.md: an output
 * never overwrites another artifact): a feature store or score or LDS folder (manifest.json's
 * "format"), a counterfactual folder (counterfactual.json), a trajectory folder
 * (trajectory.safetensors), a training run (training.json or train_state.safetensors), a model
 * folder (config.json with diffusion_pytorch_model.safetensors), a pipeline folder
 * (model_index.json), an image export (manifest.json's format jtrak-export-v1). */
#ifndef JTRAK_ARTIFACT_H
#define JTRAK_ARTIFACT_H

#include "core/common.h"

#include <stddef.h>

typedef enum {
    ARTIFACT_NONE = 0,   /* missing, or empty (a lock file aside) */
    ARTIFACT_UNKNOWN,    /* files, but no jtrak marker (or a manifest of unknown format) */
    ARTIFACT_MODEL,      /* a diffusers model folder (or a transformers CLIPTextModel one) without a
                            jtrak training record */
    ARTIFACT_TRAINING,   /* a jtrak train folder (a model folder with its training record) */
    ARTIFACT_TRAJECTORY, /* a jtrak sample folder */
    ARTIFACT_STORE,      /* a feature store (jtrak-features-v1) */
    ARTIFACT_SCORES,     /* a score folder (jtrak-scores-v1) */
    ARTIFACT_LDS,        /* an LDS folder (jtrak-lds-v1, or its gt-heldout jtrak-lds-heldout-v1) */
    ARTIFACT_COUNTERFACTUAL, /* a counterfactual folder (counterfactual.json) */
    ARTIFACT_PIPELINE,       /* a diffusers pipeline folder (model_index.json) */
    ARTIFACT_EXPORT,         /* PNGs + captions.csv written by jtrak export (jtrak-export-v1) */
    ARTIFACT_KINDS
} ArtifactKind;

/* The kind of what dir holds; marker (may be NULL) receives the file that told it, e.g.
 * "manifest.json (format jtrak-features-v1)". A path that is not a folder is ARTIFACT_UNKNOWN. */
ArtifactKind artifact_kind(const char *dir, char *marker, size_t cap);
/* "a feature store", "a score folder", ... */
const char *artifact_kind_name(ArtifactKind k);

/* For a command's output folder dir (given as option opt, e.g. "--out"): JT_OK when it is
 * missing, empty, holds no jtrak artifact, or holds one of the kinds in ok (n_ok of them: the
 * command's own, whose run-specific checks the command makes itself); otherwise JT_ERR naming the
 * folder, what it holds and the marker: "OUT: --out holds a feature store (manifest.json, format
 * jtrak-features-v1), not a score folder: writing here would overwrite it; give a new or empty
 * --out". want names what the command writes (e.g. "a score folder"). */
int artifact_check_out(const char *dir, const char *opt, const char *want, const ArtifactKind *ok,
                       int n_ok, JtError *err);

#endif
