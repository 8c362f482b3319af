/* model_record.h: what a trained model folder says about itself, for the commands that retrain it
 * (lds, counterfactual): its config and scheduler, the recipe and the training data from its
 * training.json (the data is reloaded from the recorded spec and its fingerprint checked), and the
 * model's fingerprint. */
#ifndef JTRAK_MODEL_RECORD_H
#define JTRAK_MODEL_RECORD_H

#include "core/common.h"
#include "data/context.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "diffusion/train.h"
#include "unet/config.h"

typedef struct {
    UNetConfig cfg;
    SchedConfig sched;
    TrainRecipe recipe;
    Dataset data;
    uint64_t fingerprint; /* model_fingerprint of the model */
    int has_context;      /* a recipe with text contexts (TRAIN_COND_CONTEXT): */
    ContextSet context;   /* the rows' contexts, reloaded from training.json's "context" */
} ModelRecord;

/* `why` completes the error when training.json is missing ("lds retrains ..."). */
int model_record_load(ModelRecord *mr, const char *model_dir, const char *why, JtError *err);
void model_record_free(ModelRecord *mr);

#endif
