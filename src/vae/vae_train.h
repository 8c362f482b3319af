/* vae_train.h: training an AutoencoderKL (ldm.md 8.2): loss = MSE(decode(posterior sample), x)
 * + beta * KL (vae.h), AdamW with linear warmup and cosine decay, gradient-norm clipping; then
 * the scaling factor SD's recipe chooses: 1 / std of the posterior means over the training set.
 * Every random draw (data order, sampling noise) is keyed by (seed, step, slot), so a run killed
 * and resumed from its state file ends bitwise identical to an uninterrupted one, whatever the
 * thread count.
 *
 * The output folder is a diffusers AutoencoderKL folder (written when the run completes) plus:
 *   training.json             what it was derived from: dataset, recipe, step, the scaling factor
 *                             and the latent statistics it came from, the weights' fingerprint
 *   train_state.safetensors   parameters, Adam moments and the step: for exact resume
 *   log.jsonl                 one line per logging interval */
#ifndef JTRAK_VAE_TRAIN_H
#define JTRAK_VAE_TRAIN_H

#include "core/common.h"
#include "data/dataset.h"
#include "vae/vae.h"

#include <stdint.h>

/* Everything that changes the trained weights. */
typedef struct {
    int batch;
    long steps;
    double lr;
    long warmup;
    double beta1, beta2, adam_eps, weight_decay;
    double clip_norm; /* 0 = no clipping */
    double kl_beta;   /* weight of the KL term */
    uint64_t seed;
} VaeRecipe;

/* How the run is conducted (does not change the result). */
typedef struct {
    const char *out_dir;
    long save_every; /* steps between state saves (0 = only at the end) */
    long log_every;  /* steps between log.jsonl lines */
    long stop_after; /* stop (saving the state) after this many steps of this invocation; 0 = no */
    int quiet;       /* no progress line */
} VaeTrainControl;

/* The defaults measured for the demo VAE (see cmd_train_vae.c --help): batch 64, lr 2e-3 with 50
 * warmup steps and cosine decay, AdamW betas 0.9/0.999, eps 1e-8, no weight decay, clip 1,
 * seed 0; steps and beta as VAE_REC_*. */
#define VAE_REC_STEPS 600L
#define VAE_REC_BETA 1e-4
void vae_recipe_default(VaeRecipe *r);
/* Canonical JSON of the recipe (malloc'd), as recorded in training.json and the state file. */
char *vae_recipe_json(const VaeRecipe *r);
/* Learning rate at (0-based) step. */
double vae_lr_at(const VaeRecipe *r, long step);

/* The sample standard deviation (n - 1) of every posterior-mean entry of the selected rows, in
 * double; batches of `batch`, progress on stderr unless quiet. */
int vae_latent_std(Vae *vae, const Dataset *data, int batch, int quiet, double *mean_out,
                   double *std_out, JtError *err);

/* Trains (or resumes) a VAE of config `cfg` on `data` (in_channels == out_channels == the data's
 * channels; the data's size divisible by the factor) into ctl->out_dir. Returns JT_OK when all
 * steps are done and the folder is written; *stopped is 1 after stop_after steps, 2 after
 * SIGINT/SIGTERM (state saved, no model folder yet). */
int vae_train_run(const VaeConfig *cfg, const Dataset *data, const VaeRecipe *r,
                  const VaeTrainControl *ctl, int *stopped, JtError *err);

#endif
