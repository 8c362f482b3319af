/* train.h: DDPM training of a UNet2DModel (epsilon prediction, t ~ U{0..T-1}, loss = MSE against
 * the noise, unet2d.md 8.3) with AdamW, learning-rate warmup and cosine decay, gradient clipping
 * and EMA weights (diffusers' train_unconditional.py recipe). Every random draw (data order, flips,
 * timesteps, noise) is keyed by (seed, step, slot), so a run killed and resumed from its state
 * file ends bitwise identical to an uninterrupted one, whatever the thread count.
 *
 * The output folder is a diffusers model folder (EMA weights) plus:
 *   raw/                      the raw (non-EMA) weights as a model folder
 *   scheduler_config.json     the DDPMScheduler config of the run
 *   training.json             what the model was derived from: dataset, recipe, seed, step,
 *                             fingerprints of the data and of the weights
 *   train_state.safetensors   parameters, EMA, Adam moments and the step: for exact resume
 *   log.jsonl                 one line per logging interval */
#ifndef JTRAK_TRAIN_H
#define JTRAK_TRAIN_H

#include "core/common.h"
#include "data/context.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "unet/config.h"

#include <stdint.h>

typedef enum { LR_CONSTANT = 0, LR_COSINE = 1 } LrSchedule;

/* What the network is conditioned on in training. */
typedef enum {
    TRAIN_COND_NONE = 0, /* unconditional: the model has no num_class_embeds */
    TRAIN_COND_CLASS = 1, /* the dataset's labels; the model's null class num_class_embeds - 1
                             replaces each with probability uncond_prob (condition dropout for
                             classifier-free guidance, ldm.md 2.5) */
    TRAIN_COND_CONTEXT = 2 /* text contexts (data/context.h) for a model with cross-attention:
                              each draw takes one of its row's contexts (keyed), replaced by the
                              unconditional context with probability uncond_prob (caption
                              dropout) */
} TrainCond;

/* Everything that changes the trained weights. Two runs with equal recipes, configs and data give
 * identical weights. */
typedef struct {
    int batch;
    long steps;
    double lr;
    long warmup;
    LrSchedule lr_schedule;
    double beta1, beta2, adam_eps, weight_decay;
    double clip_norm; /* 0 = no clipping */
    double ema_max_decay, ema_inv_gamma, ema_power;
    int random_flip; /* horizontal flip with probability 1/2 per draw */
    uint64_t seed;
    TrainCond cond;
    double uncond_prob; /* probability a label becomes the null class, or a context the
                           unconditional one */
    uint64_t context_fingerprint; /* TRAIN_COND_CONTEXT: the ContextSet's; 0 otherwise */
} TrainRecipe;

/* How the run is conducted (does not change the result). */
typedef struct {
    const char *out_dir;
    long save_every; /* steps between state saves (0 = only at the end) */
    long log_every;  /* steps between log.jsonl lines */
    long stop_after; /* stop (saving the state) after this many steps of this invocation; 0 = no */
    int quiet;       /* no progress line */
} TrainControl;

/* diffusers train_unconditional.py defaults where they fit a CPU run (lr 1e-4, betas 0.95/0.999,
 * weight decay 1e-6, eps 1e-8, EMA max 0.9999 with warmup inv_gamma 1 power 0.75, clip 1,
 * cosine schedule), batch 64, 1000 steps, warmup 100, seed 0, no flip, unconditional. */
void train_recipe_default(TrainRecipe *r);

/* The recipe `jtrak train` uses for what the user leaves out: the one the project measured to give
 * clean samples (make demo: fm-xs on 5,000 Fashion-MNIST images, 1,500 steps of 64 at lr 2e-3 with
 * warmup 100; bench/lds: a 16x16 fm variant on 1,000 images, 750 steps of 64 at lr 2e-3), where
 * train_recipe_default's diffusers lr of 1e-4 over 1,000 steps leaves blurry samples. Steps: about
 * TRAIN_REC_EPOCHS passes over the data, and at least TRAIN_REC_MIN_IMAGES images seen, so a small
 * set still gets the demo's 1,500 steps of 64. It is one recipe for every config: nothing else has
 * been measured. */
#define TRAIN_REC_LR 2e-3
#define TRAIN_REC_WARMUP 100
#define TRAIN_REC_EPOCHS 20
#define TRAIN_REC_MIN_IMAGES 96000L
/* Steps of `batch` images for n_images: ceil(max(EPOCHS * n, MIN_IMAGES) / batch). */
long train_recommended_steps(size_t n_images, int batch);

/* The default condition dropout of --cond class (diffusers' and the CFG paper's 0.1). */
#define TRAIN_DEFAULT_UNCOND_PROB 0.1

/* Canonical JSON of the recipe (malloc'd), as recorded in training.json and the state file; it
 * carries "cond" ("none" | "class" | "context"), "uncond_prob" (0 when unconditional) and, for
 * "context", "context_fingerprint". */
char *train_recipe_json(const TrainRecipe *r);

/* Reads a recipe back from train_recipe_json's object (e.g. training.json's "recipe"); `where`
 * names the file in errors. A recipe without "cond" (written before conditioning existed) reads
 * as unconditional. */
int train_recipe_from_json(TrainRecipe *r, const void *cjson_object, const char *where,
                           JtError *err);

/* Learning rate at (0-based) step, as torch's LambdaLR with diffusers' get_scheduler. */
double train_lr_at(const TrainRecipe *r, long step);
/* EMA decay used after optimisation step number `step` (1-based), as diffusers' EMAModel. */
double train_ema_decay(const TrainRecipe *r, long step);

/* The label a conditional run feeds for dataset label `label` at (step, slot): the null class
 * null_class when the condition-dropout coin rng_uniform_double(seed, (TRAIN_COND, step, 0), slot)
 * falls below uncond_prob, else label. */
int train_cond_label(const TrainRecipe *r, long step, int slot, int label, int null_class);

/* Trains (or resumes) a model of config `cfg` on `data` with noise schedule `sched`. The recipe's
 * cond must match the config: TRAIN_COND_CLASS needs a labelled dataset and num_class_embeds >=
 * n_classes + 1 (every label and the null class); TRAIN_COND_NONE needs num_class_embeds unset.
 * Returns JT_OK
 * when all steps are done, JT_ERR with err filled on bad input or I/O failure; *stopped is set to 1
 * when the run stopped early after stop_after steps, 2 after SIGINT/SIGTERM (state saved). */
int train_run(const UNetConfig *cfg, const SchedConfig *sched, const Dataset *data,
              const TrainRecipe *recipe, const TrainControl *ctl, int *stopped, JtError *err);
/* The same with the text contexts of the rows (TRAIN_COND_CONTEXT; NULL otherwise): the model
 * must have cross-attention of the contexts' width, the set must serve the data's rows, and
 * uncond_prob > 0 needs its unconditional context. training.json records the set's description
 * and fingerprint. */
int train_run_ctx(const UNetConfig *cfg, const SchedConfig *sched, const Dataset *data,
                  const ContextSet *ctx, const TrainRecipe *recipe, const TrainControl *ctl,
                  int *stopped, JtError *err);
/* The context a run feeds slot `slot` of step `step` for dataset row `row`: the unconditional one
 * when the condition-dropout coin of train_cond_label falls below uncond_prob, else the row's
 * candidate picked by context_pick keyed (seed, (CONTEXT_PICK, step, 0), slot). */
const float *train_cond_context(const TrainRecipe *r, const ContextSet *ctx, long step, int slot,
                                size_t row);

#endif
