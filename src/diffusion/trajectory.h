/* trajectory.h: sampling with full trajectories (method.md 1.1, 1.3). For every sample and every
 * sampler step k (timestep t_k, descending) the file keeps the step's input x_t, the predicted
 * x̂_0 (diffusers' clipped pred_original_sample) and the sampler noise z that the step added (zero
 * where none), so that attribution can re-noise x̂_0 at step t and counterfactual regeneration can
 * replay the exact same noise from x_t or from x_T.
 *
 * A class-conditional model samples each trajectory with its own class label (ldm.md 2.5; the
 * null class num_class_embeds - 1 is unconditional sampling) and a guidance weight w: w = 1 runs
 * the conditional eps alone, any other w classifier-free guidance eps_u + w (eps_c - eps_u)
 * (denoiser_eps_guided). Both are recorded, and replay uses them. A model with cross-attention
 * (UNet2DConditionModel) samples each trajectory with its own text context (L, D) (the prompt's
 * encoder hidden states), and guidance needs the unconditional context (the empty prompt's), which
 * the file keeps as well.
 *
 * File (safetensors): "x_T" (N,C,H,W), "x_t" (N,S,C,H,W), "x0_hat" (N,S,C,H,W), "noise"
 * (N,S,C,H,W), "x_0" (N,C,H,W) the final samples, "timesteps" (S) I32, "class_labels" (N) I32
 * when class-conditional, "encoder_hidden_states" (N,L,D) with text contexts and
 * "uncond_context" (L,D) when guided; metadata: sampler, steps, eta, seed, model fingerprint, cond
 * ("none" | "class" | "context" | "class+context"), guidance ("%.9g"), context_source (where the
 * contexts came from, for people), prompts (a JSON array of each sample's prompt text, when
 * known), negative_prompt (the text of the unconditional context, when one was given), format
 * "jtrak-trajectory-v1". Files written before
 * conditioning existed (no cond, guidance) load as unconditional with guidance 1. */
#ifndef JTRAK_TRAJECTORY_H
#define JTRAK_TRAJECTORY_H

#include "core/common.h"
#include "diffusion/denoiser.h"
#include "diffusion/schedule.h"
#include "unet/unet.h"

#include <stdint.h>

typedef enum { SAMPLER_DDPM = 0, SAMPLER_DDIM = 1 } SamplerKind;

typedef struct {
    SamplerKind sampler;
    int steps;     /* number of inference steps (set_timesteps); DDPM default 1000, DDIM 50 */
    float eta;     /* DDIM only */
    uint64_t seed; /* x_T and sampler noise of sample i come from streams keyed by (seed, i) */
    int n;         /* samples */
    int batch;     /* U-Net batch (memory bound), all samples share the timestep */
    int quiet;
    const int *labels; /* (n) class of each sample (class-conditional model), or NULL */
    float guidance;    /* conditional: 1 = conditional eps, else CFG weight w (0 = unconditional) */
    /* A model with cross-attention: each sample's context (n, L, D), and the unconditional one
     * (L, D) that guidance (w != 1) needs; ctx_len L and ctx_dim D. */
    const float *context, *uncond_context;
    int ctx_len, ctx_dim;
    const char *context_source; /* recorded as metadata (NULL: none) */
    const char *const *prompts; /* (n) each sample's prompt text, or NULL: metadata, for people */
    const char *negative_prompt; /* the text uncond_context encodes, or NULL: metadata */
} SampleOptions;

typedef struct {
    int n, S, C, H, W;
    SamplerKind sampler;
    int num_inference_steps;
    float eta;
    uint64_t seed;
    uint64_t model_fingerprint;
    int *timesteps; /* (S) */
    float *x_T;     /* (n, C, H, W) */
    float *x_t;     /* (n, S, C, H, W) the input of step k */
    float *x0_hat;  /* (n, S, C, H, W) */
    float *noise;   /* (n, S, C, H, W) z added by step k (zeros when none) */
    float *x_0;     /* (n, C, H, W) */
    int *labels;    /* (n) class label of each sample, or NULL (unconditional model) */
    float guidance; /* classifier-free guidance weight (1 = none; always 1 when unconditional) */
    float *context; /* (n, L, D) text context of each sample, or NULL */
    float *uncond_context; /* (L, D), or NULL (unguided) */
    int ctx_len, ctx_dim;  /* L, D; 0 without contexts */
    char *context_source;  /* or NULL */
    char **prompts;        /* (n) the samples' prompt texts (metadata "prompts", a JSON array),
                              or NULL; not in the fingerprint (texts for people) */
    char *negative_prompt; /* metadata "negative_prompt" (guided, from a negative prompt), or
                              NULL; not in the fingerprint (uncond_context is) */
    uint64_t fingerprint; /* traj_fingerprint, set by traj_load (0 otherwise) */
} Trajectory;

/* Runs the sampler. x_T (n,C,H,W) may be given; otherwise drawn from the seed. opt->labels must
 * be given exactly for a class-conditional model (JT_ERR naming the options otherwise), each in
 * 0..num_class_embeds-1; opt->context exactly for a model with cross-attention, ctx_dim its
 * cross_attention_dim; guidance must be finite. */
int traj_sample(const UNet *net, const NoiseSchedule *sched, const SampleOptions *opt,
                const float *x_T, Trajectory *out, JtError *err);
/* Counterfactual regeneration: runs sample j's sampler again with `net` from step index k0 (its
 * stored x_t; k0 = 0 starts from x_T) to the end, adding the stored sampler noise at every step,
 * and writes the final sample into x0 (C, H, W). With the trajectory's own model it reproduces
 * x_0 exactly. The trajectory's labels and guidance are used; a model whose conditioning differs
 * (unconditional vs class-conditional, or too few classes for the labels) is refused. */
int traj_replay(const UNet *net, const NoiseSchedule *sched, const Trajectory *tr, int j, int k0,
                float *x0, JtError *err);
int traj_save(const Trajectory *tr, const char *path, JtError *err);
/* Loads and checks a trajectory file: the timesteps must lie in 0..TRAJ_MAX_T-1 and strictly
 * descend (no duplicates), as every sampler's do; tr->fingerprint is set. Errors name the file. */
int traj_load(Trajectory *tr, const char *path, JtError *err);
/* The bound traj_load puts on timesteps when no schedule is known yet. */
#define TRAJ_MAX_T 1000000
/* Whether every timestep is < T, the train timesteps of the schedule `what` (e.g. "the schedule of
 * MODEL_DIR") that will noise them: JT_ERR naming the file (path) and the step otherwise. */
int traj_check_schedule(const Trajectory *tr, const char *path, int T, const char *what,
                        JtError *err);
/* FNV-1a 64 over what the file holds (sampler settings, seed, model fingerprint, conditioning,
 * timesteps and every tensor): what a score folder records to name the trajectory it scored, so
 * that a file re-sampled in place is not paired with old scores. */
uint64_t traj_fingerprint(const Trajectory *tr);
/* When `recorded` (16 hex digits from a manifest at manifest_path; NULL in folders made before it
 * was recorded: nothing to compare) differs from tr's fingerprint: JT_ERR naming both files. */
int traj_check_recorded(const Trajectory *tr, const char *path, const char *recorded,
                        const char *manifest_path, JtError *err);
void traj_free(Trajectory *tr);
/* Whether the trajectory is conditional (class labels or text contexts). */
int traj_conditional(const Trajectory *tr);
/* The conditioning of the samples from j on (a batch of consecutive samples): their labels and
 * contexts, and the shared unconditional context. */
Cond traj_cond(const Trajectory *tr, int j);
/* Index of timestep t in the trajectory, or -1. */
int traj_step_index(const Trajectory *tr, int t);
const char *traj_sampler_name(SamplerKind k);

#endif
